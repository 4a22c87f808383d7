# The device side of bench/uplink.py (not a benchmark to run by itself): one run per process,
# under either interpreter:
#
#   micropython -X heapsize=256k -m mp_uplink key=value...   (client: agent/mqtt.py)
#   python3 bench/mp_uplink.py key=value...                  (client: agent/host/paho_client.py)
#
# mode=drain: opens the buffer in `store` (a FileStore folder holding the backlog as the agent
#   stored it; the drain acks, so pass a copy), builds the uplink as agent/runtime.py does
#   (events log in store/events, the schema document for compact batches, a health message at
#   connect), runs it against the broker and stops it (offline, DISCONNECT) once every stored
#   batch and every other message is acknowledged. buffer=log: the uplink drains the Log itself
#   (it has the Buffer's next_batch/ack/rewind), without the Buffer's row arrays and encoder,
#   the events log, and agent.profile/buffer/schema (the schema document comes from the file
#   `schema`).
# mode=client: no uplink: agent/mqtt.py's client alone publishes the stored batches, read from
#   the Log, up to `window` in flight, and acks each in the Log on its PUBACK.
# mode=file: the least that publishes the day: agent/mqtt.py's client alone publishes the stored
#   batch payloads read one at a time from the file `payloads` (a 4-byte little-endian length,
#   then the bytes, for each) into one reused buffer, up to `window` in flight; no Log, no
#   uplink.
# mode=connect: the uplink's client alone connects (the same CONNECT, will included) and
#   disconnects: the connection's own cost on the wire.
#
# Keys: mode, profile (compiled profile, JSON), store, host, port, window (default: the
# profile's), client (mqtt | paho; default mqtt on MicroPython, paho on CPython), ca (a PEM
# file: TLS, verified against it, server_hostname "localhost"), expect (batches the store must
# hold), heap (1: sample gc.mem_alloc(); MicroPython), timeout_s, buffer, schema, payloads,
# early_ack_fix (0, the default: agent/uplink.py handles a PUBACK that comes before publish()
# returns; 1: hold it in the benchmark, as before that fix), pause (1: drain: once all is
# acknowledged, connect: once connected, print "drained" / "connected" and wait for a line on
# stdin before going on, so that the driver can read its byte counters at that moment).
#
# Times (us, from the moment the client is made, right before connect()): connack_us
# (connect() returned: TCP, TLS, CONNECT, CONNACK), first_us (the first batch read to be
# published), all_us (the last stored batch acknowledged: its PUBACK reached the buffer's ack).
# heap=1 (once the first batch is read): at every packet the client writes (client._send, inside
# publish()), every batch read from the buffer and every batch's PUBACK, gc.collect() then
# gc.mem_alloc() (the live heap), with gc disabled in between, so that what is allocated between
# two points is counted whole (net of what MicroPython frees explicitly, e.g. a list shrinking).
# Live heap (MicroPython): m_start = the runtime and this script's code; m_imports = what
# importing asyncio adds; m_open = all of it once the mode's own imports are done and the
# profile, buffer or log are loaded and opened; m_ready = + the uplink and/or client made;
# m_idle = connected, everything acknowledged, nothing in flight.
# Output: "key value" lines, "ok 1" last.
import gc
import sys

_MPY = sys.implementation.name == "micropython"
gc.collect()
_M_START = gc.mem_alloc() if _MPY else 0  # the runtime and this script's code

import asyncio  # noqa: E402
import time  # noqa: E402

if not _MPY:
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEVICE = "printer-0001"
STATUS = "tether/v1/%s/status" % DEVICE
BATCH_TOPIC = "tether/v1/%s/up/batch" % DEVICE

if _MPY:
    _us = time.ticks_us
    _diff = time.ticks_diff
else:
    def _us():
        return int(time.perf_counter() * 1000000)

    def _diff(a, b):
        return a - b


def _alloc():
    return gc.mem_alloc() if _MPY else 0


def options(argv):
    o = {"mode": "drain", "window": 0, "client": "", "ca": "", "expect": -1, "heap": 0,
         "timeout_s": 60, "host": "127.0.0.1", "buffer": "buffer", "schema": "",
         "payloads": "", "early_ack_fix": 0, "pause": 0}
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("port", "window", "expect", "heap", "timeout_s", "early_ack_fix", "pause"):
            value = int(value)
        o[key] = value
    return o


def client_class(name):
    """(the client class, whether it is agent/mqtt.py's)"""
    if name == "mqtt" or (not name and _MPY):
        from agent.mqtt import Client
        return Client, True
    from agent.host.paho_client import Client
    return Client, False


def load_json(path):
    import json
    f = open(path)
    p = json.load(f)
    f.close()
    return p


def read_file(path, mode="rb"):
    f = open(path, mode)
    data = f.read()
    f.close()
    return data


def tls_context(o):
    if not o["ca"]:
        return None
    from agent import tls
    return tls.context(read_file(o["ca"], "r"), None, None)


def new_client(Client, o, ctx, keepalive_s, will, heap=None):
    """A client of the bench's broker; with heap sampling on, each send samples the heap."""
    cl = Client(DEVICE, o["host"], o["port"], keepalive_s=keepalive_s, ssl=ctx,
                server_hostname="localhost" if ctx is not None else None, will=will)
    if heap is not None and heap.wanted:
        real_send = cl._send

        def send(data, n):
            heap.sample("client._send")
            return real_send(data, n)
        cl._send = send
    return cl


class LogOnly:
    """What the Uplink asks of a Buffer, over a bare Log: its batches as they are stored."""

    def __init__(self, log):
        self.log = log
        self.notify = None

    def next_batch(self):
        return self.log.next_batch()

    def ack(self, seq):
        return self.log.ack(seq)

    def rewind(self):
        return self.log.rewind()

    def earlier_schemas(self):
        return ()       # one profile: no earlier schema documents to publish first

    def kept_schemas(self):
        return ()

    def close(self):
        self.log.close()


def log_of(p, store):
    """agent/profile.py's log for the profile, without the Buffer around it."""
    from agent import batch
    from agent.log import Log
    b = p["buffer"]
    return Log(store, b["max_bytes"], max(b["max_bytes"] // 8, p["batch"]["max_bytes"]),
               batch.seq_of)


class Heap:
    """Heap samples (MicroPython): the live peak and where it was; the net growth of
    gc.mem_alloc() between points (gc off), in total and at most."""

    def __init__(self, on):
        self.wanted = on and _MPY
        self.on = False
        self.peak = 0
        self.peak_at = ""
        self.raw_peak = 0
        self.prev = 0
        self.last = ""
        self.alloc = 0
        self.alloc_max = 0
        self.alloc_max_at = ""
        self.points = 0

    def start(self):
        if not self.wanted or self.on:
            return
        gc.collect()
        self.prev = gc.mem_alloc()
        gc.disable()  # gc.collect() still runs; nothing collects between two points
        self.on = True

    def sample(self, where):
        if not self.on:
            return
        raw = gc.mem_alloc()
        gc.collect()
        live = gc.mem_alloc()
        got = raw - self.prev
        self.prev = live
        self.points += 1
        self.alloc += got
        if got > self.alloc_max:
            self.alloc_max = got
            self.alloc_max_at = where
        if raw > self.raw_peak:
            self.raw_peak = raw
        if live > self.peak:
            self.peak = live
            self.peak_at = where

    def stop(self):
        if self.on:
            self.on = False
            gc.enable()

    def report(self):
        print("peak", self.peak)
        print("peak_at", self.peak_at)
        print("raw_peak", self.raw_peak)
        print("alloc", self.alloc)
        print("alloc_max", self.alloc_max)
        print("alloc_max_at", self.alloc_max_at)
        print("points", self.points)


class St:
    def __init__(self):
        self.t0 = None
        self.t_conn = None
        self.t_first = None
        self.t_all = None
        self.acked = 0
        self.pubacks = 0
        self.health_bytes = 0
        self.early = 0
        self.publishing = False
        self.buffer_us = 0   # in the buffer's next_batch and ack (reads, state file writes)


def report(st, heap, m):
    print("m_start", _M_START)
    print("health_bytes", st.health_bytes)
    print("early_pubacks", st.early)
    print("buffer_us", st.buffer_us)
    if st.t0 is not None and st.t_conn is not None:
        print("connack_us", _diff(st.t_conn, st.t0))
    if st.t_first is not None:
        print("first_us", _diff(st.t_first, st.t0))
    if st.t_all is not None:
        print("all_us", _diff(st.t_all, st.t0))
    if _MPY:
        print("m_imports", _M_IMPORTED - _M_START)
        for key in ("m_open", "m_ready", "m_idle"):
            print(key, m[key])
        if heap.wanted:
            heap.report()
        print("heap_size", gc.mem_alloc() + gc.mem_free())


async def drain(o):
    from agent import batch, cbor
    from agent.log import Log
    from agent.store import FileStore
    from agent.clock import SystemClock
    from agent.uplink import Topics, Uplink
    heap = Heap(o["heap"])
    m = {}
    lean = o["buffer"] == "log"
    if lean:
        p = load_json(o["profile"])
    else:
        from agent import profile as compiled
        p = compiled.load(o["profile"])
    u = p["uplink"]
    sensors = [s["name"] for s in p["sensors"]]
    window = o["window"] or u["window"]
    store = FileStore(o["store"])
    events = None
    if lean:
        log = log_of(p, store)
        log.open()
        buf = LogOnly(log)
        schema_doc = read_file(o["schema"]) if u["encoding"] == "compact" else None
    else:
        from agent.events import Events
        buf = compiled.buffer(p, store=store, device_id=DEVICE)
        buf.open()
        limit = max(8192, p["buffer"]["max_bytes"] // 16)  # as agent/runtime.py sizes it
        events = Events(Log(FileStore(o["store"] + "/events"), limit, limit // 4, batch.seq_of),
                        DEVICE)
        events.open()
        log = buf.log
        schema_doc = compiled.schema(p).to_cbor() if u["encoding"] == "compact" else None
    stored = log.unacked
    ctx = tls_context(o)
    Client, portable = client_class(o["client"])
    fix = o["early_ack_fix"] and portable
    keepalive_s = u["keepalive_ms"] // 1000
    clock = SystemClock()
    started = clock.monotonic()
    p = u = None
    gc.collect()
    m["m_open"] = _alloc()
    st = St()
    done = asyncio.Event()

    def make(will):
        st.t0 = _us()
        cl = new_client(Client, o, ctx, keepalive_s, will, heap)
        real_connect = cl.connect

        async def connect():
            await real_connect()
            st.t_conn = _us()
        cl.connect = connect
        return cl

    def health(uplink):
        # agent/runtime.py's health message, with this run's counters (no sampler: zeros).
        t, synced = clock.now()
        msg = cbor.dumps({
            "v": 1, "device": DEVICE, "boot": log.boot, "t": t, "synced": synced,
            "uptime_s": (clock.monotonic() - started) // 1000,
            "heap_free": gc.mem_free() if _MPY else None,
            "heap_used": gc.mem_alloc() if _MPY else None,
            "batches_queued": log.unacked, "buffer_bytes": log.size, "dropped": log.dropped,
            "readings_waiting": 0 if lean else buf.n,
            "events_queued": 0 if events is None else events.log.unacked,
            "connects": uplink.connects, "reconnects": uplink.reconnects,
            "last_error": uplink.last_error, "rssi": None,
            "sensors": dict((n, {"readings": 0, "suppressed": 0, "errors": 0}) for n in sensors)})
        st.health_bytes = len(msg)
        return msg

    up = Uplink(make, buf, events, Topics("tether/v1", DEVICE), clock, window=window,
                schema=schema_doc, health=health, health_ms=3600000)
    buf.notify = up.notify
    if events is not None:
        events.notify = up.notify
    # status online, the schema (compact), one health message: acknowledged besides the batches
    fixed = 2 + (1 if schema_doc is not None else 0)
    real_next = buf.next_batch
    real_ack = buf.ack
    real_puback = up._puback
    held = []

    def delivered():
        st.pubacks += 1
        if st.pubacks >= fixed + stored and not log.unacked:
            done.set()

    def puback(pid):
        # agent/mqtt.py's publish() yields (await _sleep_ms(0)) after writing, so a PUBACK can
        # come before the uplink has noted the packet id that publish() returns (in _fill(),
        # self.inflight[pid] = ...), and its _puback() would drop it as not a batch's: that
        # batch would wait for the PUBACK timeout and a reconnect. With early_ack_fix such a
        # PUBACK is held, and handed over when _fill() next asks the buffer for a batch, which
        # it does once it has noted the id. (Only batches are in up.inflight: the status,
        # schema and health PUBACKs wait there too, and are then ignored as before.)
        if fix and st.publishing and pid not in up.inflight:
            held.append(pid)
            return
        real_puback(pid)
        delivered()
    up._puback = puback  # the uplink hands self._puback to each client it makes

    def release():
        while held:
            pid = held.pop()
            if pid in up.inflight:
                st.early += 1
            real_puback(pid)
            delivered()

    def next_batch():
        release()
        t = _us()
        item = real_next()
        st.buffer_us += _diff(_us(), t)
        st.publishing = item is not None  # _fill() publishes it next
        if item is not None:
            if st.t_first is None:
                st.t_first = _us()
                heap.start()
            heap.sample("next batch read")
        return item
    buf.next_batch = next_batch

    def ack(seq):
        t = _us()
        ok = real_ack(seq)
        st.buffer_us += _diff(_us(), t)
        st.acked += 1
        heap.sample("PUBACK")
        if log.unacked == 0 and st.t_all is None:
            st.t_all = _us()
            if st.pubacks >= fixed + stored:
                done.set()
        return ok
    buf.ack = ack

    gc.collect()
    m["m_ready"] = _alloc()
    task = asyncio.create_task(up.run())
    failed = None
    deadline = time.time() + o["timeout_s"]
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.2)
        except asyncio.TimeoutError:
            pass
        release()  # a PUBACK still held (the uplink has long noted its id)
        if task.done() and not done.is_set():
            failed = "the uplink's run() ended"  # its exception follows at `await task`
            break
        if up.last_error is not None and not done.is_set():
            # a connection failed (or a MemoryError in the uplink): this run is spoilt already
            failed = "the connection failed: %s" % up.last_error
            break
        if time.time() > deadline:
            failed = "timeout: %d of %d batches acknowledged in %d s" % (
                st.acked, stored, o["timeout_s"])
            break
    heap.stop()
    gc.collect()
    m["m_idle"] = _alloc()  # connected, nothing in flight, the backlog drained
    connects = up.connects
    if o["pause"]:
        pause("drained")
    await up.stop()
    await task
    buf.close()
    if events is not None:
        events.close()
    print("stored", stored)
    print("acked", st.acked)
    print("published", up.published)
    print("pubacks", st.pubacks)
    print("connects", connects)
    print("last_error", up.last_error)
    report(st, heap, m)
    return check(failed, stored, st.acked, log.unacked, o)


def check(failed, stored, acked, unacked, o):
    if failed:
        print("failed", failed)
        return False
    if o["expect"] >= 0 and stored != o["expect"]:
        print("failed", "the store holds %d batches, not %d" % (stored, o["expect"]))
        return False
    if acked != stored or unacked:
        print("failed", "%d of %d batches acknowledged" % (acked, stored))
        return False
    return True


async def client_only(o):
    from agent.store import FileStore
    heap = Heap(o["heap"])
    m = {}
    p = load_json(o["profile"])
    window = o["window"] or p["uplink"]["window"]
    keepalive_s = p["uplink"]["keepalive_ms"] // 1000
    log = log_of(p, FileStore(o["store"]))
    log.open()
    p = None
    stored = log.unacked
    ctx = tls_context(o)
    Client = client_class(o["client"])[0]
    gc.collect()
    m["m_open"] = _alloc()
    st = St()
    inflight = {}   # packet id -> batch seq
    early = []      # PUBACKs that came before publish() returned their packet id
    wake = asyncio.Event()

    def on_puback(pid):
        seq = inflight.pop(pid, None)
        if seq is None:
            early.append(pid)
            return
        acked(seq)

    def acked(seq):
        log.ack(seq)
        st.acked += 1
        heap.sample("PUBACK")
        if log.unacked == 0 and st.t_all is None:
            st.t_all = _us()
        wake.set()

    st.t0 = _us()
    cl = new_client(Client, o, ctx, keepalive_s, (STATUS, b"offline", 1, True), heap)
    cl.on_puback = on_puback
    gc.collect()
    m["m_ready"] = _alloc()
    failed = None
    try:
        await cl.connect()
        st.t_conn = _us()
        deadline = time.time() + o["timeout_s"]
        while log.unacked:
            while len(inflight) < window:
                item = log.next_batch()
                if item is None:
                    break
                if st.t_first is None:
                    st.t_first = _us()
                    heap.start()
                heap.sample("next batch read")
                seq, data = item
                pid = await cl.publish(BATCH_TOPIC, data, 1)
                if pid in early:
                    early.remove(pid)
                    st.early += 1
                    acked(seq)
                else:
                    inflight[pid] = seq
            if not log.unacked:
                break
            if not cl.connected or time.time() > deadline:
                raise OSError("connection lost" if not cl.connected else "timeout")
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 1)
            except asyncio.TimeoutError:
                pass
    except Exception as exc:
        failed = "%s: %s" % (type(exc).__name__, exc)
    heap.stop()
    gc.collect()
    m["m_idle"] = _alloc()
    if cl.connected:
        await cl.disconnect()
    log.close()
    print("stored", stored)
    print("acked", st.acked)
    print("connects", 1)
    print("last_error", failed)
    report(st, heap, m)
    return check(failed, stored, st.acked, log.unacked, o)


async def file_only(o):
    heap = Heap(o["heap"])
    m = {}
    window = o["window"] or 4
    f = open(o["payloads"], "rb")
    head = bytearray(4)
    size = 0  # the largest payload: the size of the one buffer they are read into
    while f.readinto(head) == 4:
        n = head[0] | head[1] << 8 | head[2] << 16 | head[3] << 24
        size = max(size, n)
        f.seek(n, 1)
    f.seek(0)
    view = memoryview(bytearray(size))
    ctx = tls_context(o)
    Client = client_class(o["client"])[0]
    gc.collect()
    m["m_open"] = _alloc()
    st = St()
    st.stored = 0
    inflight = {}   # packet id -> True
    early = []
    wake = asyncio.Event()

    def on_puback(pid):
        if inflight.pop(pid, None) is None:
            early.append(pid)
            return
        acked()

    def acked():
        st.acked += 1
        heap.sample("PUBACK")
        wake.set()

    st.t0 = _us()
    cl = new_client(Client, o, ctx, 60, (STATUS, b"offline", 1, True), heap)
    cl.on_puback = on_puback
    gc.collect()
    m["m_ready"] = _alloc()
    failed = None
    try:
        await cl.connect()
        st.t_conn = _us()
        deadline = time.time() + o["timeout_s"]
        more = True
        while more or inflight:
            while more and len(inflight) < window:
                if f.readinto(head) != 4:
                    more = False
                    break
                n = head[0] | head[1] << 8 | head[2] << 16 | head[3] << 24
                if f.readinto(view[:n]) != n:  # a slice of a memoryview: no copy
                    raise OSError("short payload file")
                if st.t_first is None:
                    st.t_first = _us()
                    heap.start()
                heap.sample("next batch read")
                st.stored += 1
                pid = await cl.publish(BATCH_TOPIC, view[:n], 1)
                if pid in early:
                    early.remove(pid)
                    st.early += 1
                    acked()
                else:
                    inflight[pid] = True
            if not inflight:
                break
            if not cl.connected or time.time() > deadline:
                raise OSError("connection lost" if not cl.connected else "timeout")
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 1)
            except asyncio.TimeoutError:
                pass
        st.t_all = _us()
    except Exception as exc:
        failed = "%s: %s" % (type(exc).__name__, exc)
    heap.stop()
    gc.collect()
    m["m_idle"] = _alloc()
    if cl.connected:
        await cl.disconnect()
    f.close()
    print("stored", st.stored)
    print("acked", st.acked)
    print("connects", 1)
    print("last_error", failed)
    report(st, heap, m)
    return check(failed, st.stored, st.acked, 0, o)


async def connect_only(o):
    Client = client_class(o["client"])[0]
    ctx = tls_context(o)
    cl = new_client(Client, o, ctx, 60, (STATUS, b"offline", 1, True))
    await cl.connect()
    sock = getattr(cl, "_mqttc", None)  # paho_client: paho's (TLS) socket
    sock = sock.socket() if sock is not None else None
    if hasattr(sock, "version"):
        print("tls %s %s" % (sock.version(), sock.cipher()[0]))
    elif ctx is not None:
        import ssl
        print("tls", getattr(ssl, "MBEDTLS_VERSION", "?"))
    if o["pause"]:
        pause("connected")
    await cl.disconnect()
    return True


def pause(marker):
    """Says marker and waits for a line on stdin: the driver reads its byte counters meanwhile
    (blocking: nothing else needs to happen)."""
    print(marker)
    flush = getattr(sys.stdout, "flush", None)
    if flush is not None:
        flush()
    sys.stdin.readline()


gc.collect()
_M_IMPORTED = gc.mem_alloc() if _MPY else 0


def main():
    o = options(sys.argv[1:])
    run = {"drain": drain, "client": client_only, "file": file_only,
           "connect": connect_only}[o["mode"]]
    if asyncio.run(run(o)):
        print("ok 1")
    else:
        sys.exit(1)


if __name__ == "__main__":
    main()
