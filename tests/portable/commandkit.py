# A whole agent on the sim platform for one sensor, with no uplink, and a command through it:
# what the command tests share (test_insight_command.py, test_insight_interval.py).
import asyncio

from agent import cbor, cbor_decode
from agent.clock import FakeClock
from agent.runtime import Agent
from agent.store import RamStore
from hal.sim.platform import SimPlatform


def profile(sensor, buses=()):
    return {
        "v": 1, "device": {"id": "dev-i"}, "platform": "sim", "buses": list(buses),
        "sensors": [sensor],
        "batch": {"max_age_ms": 3600000, "max_bytes": 256, "max_readings": 4},
        "buffer": {"flush_ms": 3600000, "max_bytes": 4096, "path": "buffer", "ram_readings": 4,
                   "storage": "ram"},
        "uplink": {"backoff_max_ms": 300000, "backoff_min_ms": 1000, "client_id": "dev-i",
                   "deflate": False, "encoding": "compact", "health_ms": 300000,
                   "host": "127.0.0.1", "port": 1883, "keepalive_ms": 60000,
                   "ack_timeout_ms": 30000, "prefix": "tether/v1", "tls": False, "window": 4},
    }


class NoClient:
    def __init__(self, *args, **kw):
        raise OSError("not in these tests")


def agent(sensor, events_store=None, synced=True, buses=()):
    p = profile(sensor, buses)
    a = Agent(p, SimPlatform(p), FakeClock(0, 1767225600000 if synced else None), NoClient,
              store=RamStore(), events_store=events_store or RamStore())
    a.open()
    return a


def command(a, fields):
    reply, then = asyncio.run(a.commands.handle(cbor.dumps(fields)))
    return cbor_decode.loads(reply)
