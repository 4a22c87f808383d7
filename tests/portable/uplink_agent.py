# An agent process for the uplink's fault tests: the real buffer and uplink over a real broker,
# fed with numbered readings at a steady rate instead of sensors. Runs under CPython (paho
# transport) and MicroPython (agent/mqtt.py):
#
#   python3 tests/portable/uplink_agent.py   STORE HOST PORT DEVICE READINGS [key=value...]
#   micropython -m uplink_agent              STORE HOST PORT DEVICE READINGS [key=value...]
#
# Options: per_batch (readings a batch, 20), rate (readings a second, 400), window (4), max_bytes
# (buffer, 65536), batch_bytes (2048), ack_timeout_ms (3000), linger_s (after the last reading,
# wait this long for acks, 30), client ("mqtt" or "paho"; default: paho on CPython), stable_ms (the
# uplink's, 10000), show_backoff (1: print "backoff CAP" for each reconnect delay the uplink draws,
# and draw the shortest). Reading i has time i*10 ms (device time) and value i, so a consumer can
# tell exactly which readings arrived. It prints a line when a batch becomes durable ("stored
# SEQ"), when one is acknowledged ("acked SEQ"), and at the end ("done"); a restart on the same
# STORE continues after the last reading that became durable.
import asyncio
import sys

from agent import batch
from agent.buffer import Buffer
from agent.clock import SystemClock
from agent.log import Log
from agent.schema import Schema
from agent.store import FileStore
from agent.uplink import Topics, Uplink

SCHEMA = Schema([("n", "", 1, 0)])


def options(argv):
    opts = {"per_batch": 20, "rate": 400, "window": 4, "max_bytes": 65536, "linger_s": 30,
            "client": None, "batch_bytes": 2048, "ack_timeout_ms": 3000, "stable_ms": 10000,
            "show_backoff": 0}
    for arg in argv:
        key, _, value = arg.partition("=")
        opts[key] = value if key == "client" else int(value)
    return opts


def client_class(name):
    if name == "mqtt" or (name is None and sys.implementation.name == "micropython"):
        from agent.mqtt import Client
    else:
        from agent.host.paho_client import Client
    return Client


class ShownBackoff:
    """The uplink's random source: says what cap each reconnect delay was drawn under, so a
    test reads how the backoff grew from counts, not from how long anything took."""

    def randint(self, a, b):
        print("backoff", b)
        return a


class Tracking(Log):
    """Prints each batch as it becomes durable (the log syncs right after) and as it is acked."""

    def append_batch(self, seq, count, data):
        Log.append_batch(self, seq, count, data)
        self.stored = seq

    def sync(self):
        Log.sync(self)
        if getattr(self, "stored", None) is not None:
            print("stored", self.stored)
            self.stored = None

    def ack(self, seq):
        ok = Log.ack(self, seq)
        if ok:
            print("acked", seq)
        return ok


async def main(argv):
    store, host, port, device, total = argv[0], argv[1], int(argv[2]), argv[3], int(argv[4])
    o = options(argv[5:])
    log = Tracking(FileStore(store), o["max_bytes"], max(o["max_bytes"] // 8, 2048), batch.seq_of)
    enc = batch.Encoder(device, SCHEMA, "compact", False, o["batch_bytes"], o["per_batch"])
    buf = Buffer(log, enc, o["per_batch"], 3600000, o["per_batch"], 3600000)
    buf.open()
    # Continue after the last reading that survived: the readings not yet in a batch are in RAM.
    first = buf.seq * o["per_batch"] + buf.n
    print("open", buf.seq, first, log.boot)
    Client = client_class(o["client"])
    cls_args = {}

    def make(will):
        return Client(device, host, port, keepalive_s=5, will=will, timeout_ms=2000, **cls_args)

    up = Uplink(make, buf, None, Topics("tether/v1", device), SystemClock(), window=o["window"],
                backoff_min_ms=50, backoff_max_ms=1000, ack_timeout_ms=o["ack_timeout_ms"],
                stable_ms=o["stable_ms"], rng=ShownBackoff() if o["show_backoff"] else None)
    buf.notify = up.notify
    task = asyncio.create_task(up.run())
    step = max(1, o["rate"] // 100)  # readings per 10 ms tick
    i = first
    while i < total:
        for _ in range(step):
            if i < total:
                buf.append(i * 10, 0, i)
                i += 1
        await asyncio.sleep(0.01)
    buf.cut()
    for _ in range(o["linger_s"] * 20):
        if log.unacked == 0:
            break
        await asyncio.sleep(0.05)
    print("done", log.unacked, log.dropped)
    await up.stop()
    await task


asyncio.run(main(sys.argv[1:]))
