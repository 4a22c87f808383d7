# The device side of bench/recovery.py (not a benchmark to run by itself): one live agent per
# process, under either interpreter:
#
#   micropython -X heapsize=... -m mp_recovery key=value...   (client: agent/mqtt.py)
#   python3 bench/mp_recovery.py key=value...                 (client: paho_client, or client=mqtt)
#
# The agent's buffer (the profile's, on a FileStore in the empty folder `store`), its events log
# (store/events) and its uplink, made as agent/runtime.py makes them: the profile's window,
# keepalive and backoff (backoff_min_ms / backoff_max_ms override them), the schema document and
# a health message at each connect. Once the uplink is connected and its birth messages are
# acknowledged it prints "connected", then plays the reference day from the file `day` into
# Buffer.append, as the sampler feeds it: one batch's 420 readings every `period_ms` of wall
# time (the buffer cuts and stores each batch at its 420th reading and wakes the uplink). The
# driver takes the broker down and brings it back meanwhile. The run ends once the whole day is
# stored and every batch acknowledged (or after timeout_s); the uplink then stops.
#
# `day`: for each of the 144 batches, 420 times (int32, ms from the day's start `t0`), 420
# channel numbers (uint8), 420 values (int32, at the channel's resolution), little-endian.
#
# Output, times as time.time_ns() (the same clock as the driver's time.time_ns()):
#   try <t>          the uplink makes a client (a connect attempt begins)
#   conn <t>         connect() returned (CONNACK)
#   cut <seq> <t>    the buffer stored batch seq (after its 420th reading)
#   ack <seq> <t>    batch seq's PUBACK reached the buffer's ack
# then "key value" lines (stored, acked, connects, last_error, heap figures on MicroPython) and
# "ok 1" last.
import gc
import sys

_MPY = sys.implementation.name == "micropython"

import array  # noqa: E402
import asyncio  # noqa: E402
import time  # noqa: E402

if not _MPY:
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mp_uplink import DEVICE, _diff, _us, client_class, new_client  # noqa: E402

BATCHES = 144
ROWS = 420
TICK_MS = 5
STALL_US = 50000


def options(argv):
    o = {"client": "", "host": "127.0.0.1", "period_ms": 50, "timeout_s": 60, "t0": 0,
         "backoff_min_ms": 0, "backoff_max_ms": 0, "ca": ""}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("port", "period_ms", "timeout_s", "t0", "backoff_min_ms", "backoff_max_ms"):
            value = int(value)
        o[key] = value
    return o


class Times:
    """Event times, in arrays made before the run (no allocation per event)."""

    def __init__(self):
        self.cut = array.array("q", [0] * BATCHES)
        self.ack = array.array("q", [0] * BATCHES)
        self.tries = []
        self.conns = []
        self.stalls = []     # (end, us): the event loop ran nothing else for > STALL_US
        self.slowest = {}    # what -> the longest one, us: the feeder's batch of 420 appends
        #                      (with the cut: the batch written to the log), the buffer's ack

    def took(self, what, us):
        if us > self.slowest.get(what, 0):
            self.slowest[what] = us

    def report(self):
        for end, us in self.stalls:
            print("stall %d %d" % (end, us))
        for what in self.slowest:
            print(what, self.slowest[what])
        for t in self.tries:
            print("try", t)
        for t in self.conns:
            print("conn", t)
        for seq in range(BATCHES):
            if self.cut[seq]:
                print("cut %d %d" % (seq, self.cut[seq]))
            if self.ack[seq]:
                print("ack %d %d" % (seq, self.ack[seq]))


async def feed(o, buf, log, times):
    """Plays the day into the buffer, one batch every period_ms, on an absolute schedule."""
    ts = array.array("i", [0] * ROWS)
    chs = array.array("B", [0] * ROWS)
    vals = array.array("i", [0] * ROWS)
    f = open(o["day"], "rb")
    t0 = o["t0"]
    start = _us()
    for k in range(BATCHES):
        f.readinto(ts)
        f.readinto(chs)
        f.readinto(vals)
        t = _us()
        for i in range(ROWS):
            buf.append(t0 + ts[i], chs[i], vals[i])
        times.took("feed_max_us", _diff(_us(), t))
        seq = log.last_seq
        if 0 <= seq < BATCHES and not times.cut[seq]:
            times.cut[seq] = time.time_ns()
        ahead_us = (k + 1) * o["period_ms"] * 1000 - _diff(_us(), start)
        await asyncio.sleep(max(ahead_us, 0) / 1000000)
    f.close()


async def watch(times, running):
    """Notes every time the event loop was held up (by the feeder, a file write, a connect...)
    for more than STALL_US beyond a TICK_MS sleep: the shared machine or the agent itself."""
    last = _us()
    while running[0]:
        await asyncio.sleep(TICK_MS / 1000)
        now = _us()
        late = _diff(now, last) - TICK_MS * 1000
        if late > STALL_US and len(times.stalls) < 64:
            times.stalls.append((time.time_ns(), late))
        last = now


async def run(o):
    from agent import batch, cbor
    from agent import profile as compiled
    from agent.clock import SystemClock
    from agent.events import Events
    from agent.log import Log
    from agent.store import FileStore
    from agent.uplink import Topics, Uplink
    p = compiled.load(o["profile"])
    u = p["uplink"]
    store = FileStore(o["store"])
    buf = compiled.buffer(p, store=store, device_id=DEVICE)
    buf.open()
    buf.set_synced(True)
    limit = max(8192, p["buffer"]["max_bytes"] // 16)  # as agent/runtime.py sizes it
    events = Events(Log(FileStore(o["store"] + "/events"), limit, limit // 4, batch.seq_of),
                    DEVICE)
    events.open()
    log = buf.log
    schema_doc = compiled.schema(p).to_cbor()
    sensors = [s["name"] for s in p["sensors"]]
    Client = client_class(o["client"])[0]
    clock = SystemClock()
    started = clock.monotonic()
    times = Times()
    backoff_min = o["backoff_min_ms"] or u["backoff_min_ms"]
    backoff_max = o["backoff_max_ms"] or u["backoff_max_ms"]
    keepalive_s = u["keepalive_ms"] // 1000

    def make(will):
        times.tries.append(time.time_ns())
        cl = new_client(Client, o, None, keepalive_s, will)
        real_connect = cl.connect

        async def connect():
            await real_connect()
            times.conns.append(time.time_ns())
        cl.connect = connect
        return cl

    def health(uplink):
        # agent/runtime.py's health message, with this run's counters (no sampler: zeros).
        t, synced = clock.now()
        return cbor.dumps({
            "v": 1, "device": DEVICE, "boot": log.boot, "t": t, "synced": synced,
            "uptime_s": (clock.monotonic() - started) // 1000,
            "heap_free": gc.mem_free() if _MPY else None,
            "heap_used": gc.mem_alloc() if _MPY else None,
            "batches_queued": log.unacked, "buffer_bytes": log.size, "dropped": log.dropped,
            "readings_waiting": buf.n, "events_queued": events.log.unacked,
            "connects": uplink.connects, "reconnects": uplink.reconnects,
            "last_error": uplink.last_error, "rssi": None,
            "sensors": dict((n, {"readings": 0, "suppressed": 0, "errors": 0}) for n in sensors)})

    up = Uplink(make, buf, events, Topics(u["prefix"], DEVICE), clock, window=u["window"],
                backoff_min_ms=backoff_min, backoff_max_ms=backoff_max, schema=schema_doc,
                health=health, health_ms=u["health_ms"])
    buf.notify = up.notify
    events.notify = up.notify
    print("window", u["window"])
    print("backoff_min_ms", backoff_min)
    print("backoff_max_ms", backoff_max)
    print("keepalive_ms", u["keepalive_ms"])
    p = u = None
    real_ack = buf.ack

    def ack(seq):
        t = _us()
        ok = real_ack(seq)
        times.took("ack_max_us", _diff(_us(), t))
        if 0 <= seq < BATCHES:
            times.ack[seq] = time.time_ns()
        return ok
    buf.ack = ack

    gc.collect()
    m_ready = gc.mem_alloc() if _MPY else 0
    task = asyncio.create_task(up.run())
    running = [True]
    watcher = asyncio.create_task(watch(times, running))
    failed = None
    deadline = time.time() + o["timeout_s"]
    while not up.connected:
        await asyncio.sleep(0.01)
        if time.time() > deadline:
            failed = "no connection"
            break
    feeder = None
    if failed is None:
        await asyncio.sleep(0.3)  # status, schema and health acknowledged: nothing in flight
        print("connected")
        flush = getattr(sys.stdout, "flush", None)
        if flush is not None:
            flush()
        feeder = asyncio.create_task(feed(o, buf, log, times))
    while failed is None:
        await asyncio.sleep(0.01)
        if feeder.done() and log.unacked == 0 and log.last_seq + 1 >= BATCHES:
            break
        if task.done():
            failed = "the uplink's run() ended"
        elif time.time() > deadline:
            failed = "timeout: %d of %d batches stored, %d unacknowledged" % (
                log.last_seq + 1, BATCHES, log.unacked)
    gc.collect()
    m_end = gc.mem_alloc() if _MPY else 0
    running[0] = False
    await up.stop()
    await task
    await watcher
    if feeder is not None and not feeder.done():
        feeder.cancel()
    stored = log.last_seq + 1
    unacked = log.unacked
    buf.close()
    events.close()
    times.report()
    print("stored", stored)
    print("unacked", unacked)
    print("connects", up.connects)
    print("last_error", up.last_error)
    if _MPY:
        print("m_ready", m_ready)
        print("m_end", m_end)
        print("heap_size", gc.mem_alloc() + gc.mem_free())
    if failed is None and (stored != BATCHES or unacked):
        failed = "%d batches stored, %d unacknowledged" % (stored, unacked)
    if failed:
        print("failed", failed)
        return False
    return True


def main():
    if asyncio.run(run(options(sys.argv[1:]))):
        print("ok 1")
    else:
        sys.exit(1)


if __name__ == "__main__":
    main()
