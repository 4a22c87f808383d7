"""How many readings and bytes a profile puts on the air in a day (for `tether check`).

The bytes come from the real encoder, run on a synthetic batch: each channel drifts by a step
of its resolution now and then, which is how ink levels, pill counts and energy counters
behave. A noisy channel costs more than this estimate, a constant one less. The health reports
(`uplink.health_every`) are the agent's own, made on the sim platform as the device makes them at
start: on a small profile they are most of the bytes.
"""
import array
import random

from agent import profile as compiled
from agent.cbor import BufferFull

DAY_MS = 86400000


def mqtt_publish_overhead(topic, payload_len):
    """Bytes an MQTT 3.1.1 QoS 1 PUBLISH adds to a payload: fixed header, topic, packet id."""
    remaining = 2 + len(topic) + 2 + payload_len
    length_bytes = 1
    while remaining >= 128 ** length_bytes:
        length_bytes += 1
    return 1 + length_bytes + 2 + len(topic) + 2


def synthetic_batch(profile, rnd):
    """Rows (t_ms, channel, scaled value) that fill one batch as the batch policy cuts it."""
    sensors = profile["sensors"]
    policy = profile["batch"]
    span = policy["max_age_ms"]
    due = [0] * len(sensors)
    values = [1000] * len(sensors)
    rows = []
    t = 0
    while t < span and len(rows) < policy["max_readings"]:
        for c, s in enumerate(sensors):
            if due[c] <= t and len(rows) < policy["max_readings"]:
                if rnd.random() < 0.1:
                    values[c] += rnd.choice((-1, 1))
                rows.append((t, c, values[c]))
                due[c] = t + s["interval_ms"]
        t = min(due)
    return rows, t


def health_bytes(profile):
    """The bytes of one health report of this profile, with MQTT's framing, as its agent makes
    the first one (on the sim platform: its chips and insights, no broker)."""
    from agent.clock import FakeClock
    from agent.runtime import Agent
    from agent.store import RamStore
    from hal.sim.platform import SimPlatform

    class NoClient:
        def __init__(self, *args, **kwargs):
            raise OSError("no broker here")

    class Uplink:
        connects = reconnects = too_large = commands_dropped = 0
        last_error = None
        sent = [-1, -1]

    p = dict(profile, device=dict(profile["device"],
                                  id=profile["device"]["id"].replace("{uid}", "a1b2c3d4e5f6")))
    agent = Agent(p, SimPlatform(p), FakeClock(0, 1767225600000), NoClient, store=RamStore(),
                  events_store=RamStore())
    size = len(agent.health(Uplink()))
    topic = "%s/%s/up/health" % (p["uplink"]["prefix"], p["device"]["id"])
    return size + mqtt_publish_overhead(topic, size)


def estimate(profile):
    """{"readings_per_day", "batches_per_day", "bytes_per_day", "health_per_day",
    "health_bytes_per_day"} for a compiled profile."""
    per_day = sum(DAY_MS // s["interval_ms"] for s in profile["sensors"])
    healths = DAY_MS / profile["uplink"]["health_ms"]
    health = {"health_per_day": healths,
              "health_bytes_per_day": int(healths * health_bytes(profile))}
    rows, span = synthetic_batch(profile, random.Random(1))
    if not rows:
        return dict(health, readings_per_day=0, batches_per_day=0.0, bytes_per_day=0)
    enc = compiled.encoder(profile, device_id=profile["device"]["id"].replace("{uid}", "a1b2c3"))
    ts, chs = array.array("i", [r[0] for r in rows]), array.array("B", [r[1] for r in rows])
    vals = array.array("i", [r[2] for r in rows])
    k = len(rows)
    while True:     # as the buffer cuts: fewer readings a batch when they pass batch.max_bytes
        try:
            data = enc.encode(0, ts, chs, vals, 0, k, 1000, 1, 0, True)
            break
        except BufferFull:
            if k == 1:
                raise
            k //= 2
    topic = "%s/%s/up/batch" % (profile["uplink"]["prefix"], enc.device)
    per_batch = len(data) + mqtt_publish_overhead(topic, len(data))
    batches = per_day / k
    return dict(health, readings_per_day=per_day, batches_per_day=batches,
                bytes_per_day=int(batches * per_batch))
