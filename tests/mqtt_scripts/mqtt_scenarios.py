# Scenarios that drive agent.mqtt.Client, portable: tests/test_mqtt_client.py runs each one
# in-process under CPython and as `micropython -X heapsize=64k -m mqtt_scenarios NAME JSON` under
# the real MicroPython binary (compiled to .mpy), then checks the outcome on the host side (a paho
# subscriber, the fake broker's recorded bytes, the mosquitto log).
#
# A scenario gets `cfg` (a dict, the JSON argument) and `emit(dict)` (a line of JSON on stdout
# under MicroPython: the host can act on it, e.g. kill the broker on {"event": "ready"}), and
# returns a dict. OSError and MQTTError leaving a scenario are returned as {"error": ...}.
import asyncio
import sys
from binascii import hexlify, unhexlify
from hashlib import sha256

from agent.mqtt import Client, MQTTError, ticks_diff, ticks_ms

try:
    import gc
    mem_alloc = gc.mem_alloc
except (ImportError, AttributeError):  # CPython
    gc = None
    mem_alloc = None

MPY = sys.implementation.name == "micropython"


def unhex(s):
    if isinstance(s, list):  # [n, seed]: the test's pattern(n, seed), too long to pass as hex
        b = bytearray(s[0])
        for i in range(s[0]):
            b[i] = (i * 31 + s[1]) & 0xFF
        return bytes(b)
    return unhexlify(s)


def tohex(b):
    return hexlify(b).decode()


def describe(exc):
    if exc is None:
        return None
    return {"type": type(exc).__name__, "oserror": isinstance(exc, OSError),
            "mqtt": isinstance(exc, MQTTError), "code": getattr(exc, "code", None),
            "errno": exc.errno if isinstance(exc, OSError) else None, "msg": str(exc)}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_ssl(tls):
    import ssl
    if MPY:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=_read(tls["ca_der"]))
        if tls.get("cert_der"):
            ctx.load_cert_chain(_read(tls["cert_der"]), _read(tls["key_der"]))
    else:
        ctx = ssl.create_default_context(cafile=tls["ca_pem"])
        if tls.get("cert_pem"):
            ctx.load_cert_chain(tls["cert_pem"], tls["key_pem"])
    return ctx


class Probe:
    """A client and what its callbacks saw."""

    def __init__(self, cfg):
        will = cfg.get("will")
        if will:
            will = (will[0], unhex(will[1]), will[2], will[3])
        self.client = c = Client(
            cfg.get("client_id", "tester"), cfg["host"], cfg["port"],
            keepalive_s=cfg.get("keepalive", 60), username=cfg.get("username"),
            password=cfg.get("password"), ssl=make_ssl(cfg["tls"]) if cfg.get("tls") else None,
            server_hostname=cfg.get("server_hostname"), will=will,
            timeout_ms=cfg.get("timeout_ms", 5000), max_packet=cfg.get("max_packet", 2048))
        self.acks = []
        self.msgs = []
        self.bigs = []
        self.closes = []
        self.closed = asyncio.Event()
        self.acked = asyncio.Event()
        self.got = asyncio.Event()
        self.want_acks = 0
        self.want_msgs = 0
        self.peak = 0
        self.sampling = True
        self.watchdog = None
        self.watchdog_ms = 0
        self.deadline = 0
        c.on_puback = self.on_puback
        c.on_message = self.on_message
        c.on_too_large = self.on_too_large
        c.on_close = self.on_close

    def sample(self):
        if mem_alloc is not None and self.sampling:
            m = mem_alloc()
            if m > self.peak:
                self.peak = m

    def on_puback(self, pid):
        self.sample()
        self.acks.append(pid)
        if len(self.acks) >= self.want_acks:
            self.acked.set()

    def on_message(self, topic, payload, retain):
        # [topic, length, SHA-256, retain]: exact, and small enough for a 64k heap and its report
        self.msgs.append([topic, len(payload), tohex(sha256(payload).digest()), retain])
        if len(self.msgs) + len(self.bigs) >= self.want_msgs:
            self.got.set()

    def on_too_large(self, topic, size, limit, head, retain):
        self.bigs.append([topic, size, limit, tohex(head), retain])
        if len(self.msgs) + len(self.bigs) >= self.want_msgs:
            self.got.set()

    def on_close(self, exc):
        self.closes.append(describe(exc))
        self.closed.set()

    async def wait_acks(self, n, ms):
        """Until n PUBACKs arrived or ms passed. An Event and a watchdog task rather than
        wait_for: the heap scenario waits once a message and should measure the client."""
        self.want_acks = n
        if len(self.acks) >= n:
            return True
        self.acked.clear()
        if self.watchdog is None or self.watchdog_ms != ms:
            self.watchdog_ms = ms
            self.watchdog = asyncio.create_task(self._watch(ms))
        self.deadline = ticks_ms() + ms  # (ticks arithmetic: tests run far from a wrap)
        while len(self.acks) < n and ticks_diff(self.deadline, ticks_ms()) > 0:
            await self.acked.wait()
            self.acked.clear()
        return len(self.acks) >= n

    async def _watch(self, ms):
        while True:
            await sleep_ms(ms // 4 + 1)
            if ticks_diff(self.deadline, ticks_ms()) <= 0:
                self.acked.set()

    async def wait_event(self, ev, ms):
        try:
            if MPY:
                await asyncio.wait_for_ms(ev.wait(), ms)
            else:
                await asyncio.wait_for(ev.wait(), ms / 1000)
            return True
        except asyncio.TimeoutError:
            return False

    def stop(self):
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def report(self, **extra):
        self.stop()
        extra["acks"] = self.acks
        extra["msgs"] = self.msgs
        extra["bigs"] = self.bigs
        extra["closes"] = self.closes
        extra["connected"] = self.client.connected
        return extra


async def sleep_ms(ms):
    if MPY:
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


# ---- scenarios ----

async def publish(cfg, emit):
    """Connect, publish cfg["messages"] ([topic, payload, qos, retain, dup], the payload in hex or
    as [n, seed] for pattern(n, seed)), wait for every
    QoS 1 PUBACK, then disconnect (or stay, with cfg["stay_ms"])."""
    p = Probe(cfg)
    await p.client.connect()
    emit({"event": "connected"})
    pids = []
    for m in cfg.get("messages", ()):
        dup = m[4] if len(m) > 4 else False
        pids.append(await p.client.publish(m[0], unhex(m[1]), qos=m[2], retain=m[3], dup=dup))
    want = len([m for m in cfg.get("messages", ()) if m[2]])
    all_acked = await p.wait_acks(want, cfg.get("ack_ms", 5000))
    if cfg.get("stay_ms"):
        await sleep_ms(cfg["stay_ms"])
    if cfg.get("disconnect", True):
        await p.client.disconnect()
    return p.report(pids=pids, all_acked=all_acked)


async def will(cfg, emit):
    """Connect with a will, then end with close() (will sent) or disconnect() (no will)."""
    p = Probe(cfg)
    await p.client.connect()
    if cfg["end"] == "close":
        p.client.close()
    else:
        await p.client.disconnect()
    return p.report()


async def subscribe(cfg, emit):
    """Subscribe to cfg["filter"], announce it, and collect cfg["expect"] messages (those
    larger than max_packet included)."""
    p = Probe(cfg)
    await p.client.connect()
    granted = await p.client.subscribe(cfg["filter"], cfg.get("qos", 1))
    p.want_msgs = cfg.get("expect", 0)
    emit({"event": "subscribed", "granted": granted})
    if p.want_msgs:
        await p.wait_event(p.got, cfg.get("wait_ms", 5000))
    await sleep_ms(cfg.get("linger_ms", 0))
    still = p.client.connected
    await p.client.disconnect()
    return p.report(granted=granted, connected_at_end=still)


async def idle(cfg, emit):
    """Connect, stay quiet for cfg["idle_ms"] (only keepalive pings), then publish one QoS 1
    message: it is acknowledged only if the broker kept the connection."""
    p = Probe(cfg)
    await p.client.connect()
    await sleep_ms(cfg["idle_ms"])
    alive = p.client.connected
    try:
        await p.client.publish(cfg["topic"], b"after idle", qos=1)
        acked = await p.wait_acks(1, 3000)
    except OSError:
        acked = False
    await p.client.disconnect()
    return p.report(alive_after_idle=alive, acked=acked)


async def wait_close(cfg, emit):
    """Connect, emit "ready" (the host then kills, pauses or corrupts the broker) and measure how
    long until on_close fires."""
    p = Probe(cfg)
    await p.client.connect()
    if cfg.get("publish"):
        await p.client.publish(cfg["publish"], b"x", qos=1)
    t = ticks_ms()
    emit({"event": "ready"})
    closed = await p.wait_event(p.closed, cfg.get("within_ms", 10000))
    after = ticks_diff(ticks_ms(), t)
    try:
        await p.client.publish("t", b"after close", qos=1)
        publish_after = None
    except OSError as exc:
        publish_after = describe(exc)
    return p.report(closed=closed, closed_after_ms=after, publish_after=publish_after)


async def connect_only(cfg, emit):
    """Connect and report how long it took or how it failed (with the elapsed time)."""
    p = Probe(cfg)
    t = ticks_ms()
    try:
        await p.client.connect()
    except (OSError, MQTTError) as exc:
        return p.report(error=describe(exc), elapsed_ms=ticks_diff(ticks_ms(), t))
    elapsed = ticks_diff(ticks_ms(), t)
    await p.client.disconnect()
    return p.report(error=None, elapsed_ms=elapsed)


async def subscribe_refused(cfg, emit):
    p = Probe(cfg)
    await p.client.connect()
    try:
        granted = await p.client.subscribe(cfg["filter"])
        err = None
    except (OSError, MQTTError) as exc:
        granted = None
        err = describe(exc)
    still = p.client.connected
    await p.client.disconnect()
    return p.report(granted=granted, error=err, connected_after=still)


async def heap(cfg, emit):
    """cfg["count"] QoS 1 messages of cfg["size"] bytes, stop-and-wait (each waits for its
    PUBACK). Reports gc.mem_alloc(): before connecting (imports done), live once connected, the
    peak (sampled after each publish and in each on_puback, with a gc.collect() before each
    publish, so: the live heap plus what one message allocates), and the bytes one message
    allocates (the last 10 messages with the collector off)."""
    if gc:
        gc.collect()
    base = mem_alloc() if mem_alloc else 0
    p = Probe(cfg)
    await p.client.connect()
    if gc:
        gc.collect()
    live_connected = mem_alloc() if mem_alloc else 0
    p.peak = live_connected
    payload = bytearray(cfg["size"])
    for i in range(len(payload)):
        payload[i] = (i * 7) & 0xFF
    topic = cfg["topic"]
    n = cfg["count"]
    last = 10
    per_msg = None
    a0 = 0
    t = ticks_ms()
    for i in range(n):
        payload[0] = i >> 8
        payload[1] = i & 0xFF
        if gc and i <= n - last:
            gc.collect()
            if i == n - last:
                p.sampling = False  # the peak is over the messages with a collect before each
                gc.disable()
                a0 = mem_alloc()
        await p.client.publish(topic, payload, qos=1)
        p.sample()
        if not await p.wait_acks(i + 1, 5000):
            break
    if gc:
        per_msg = (mem_alloc() - a0) // last
        gc.enable()
    elapsed = ticks_diff(ticks_ms(), t)
    if gc:
        gc.collect()
    live_end = mem_alloc() if mem_alloc else 0
    await p.client.disconnect()
    r = p.report(base=base, live_connected=live_connected, peak=p.peak, live_end=live_end,
                 alloc_per_message=per_msg, elapsed_ms=elapsed,
                 heap_total=(gc.mem_alloc() + gc.mem_free()) if gc else 0)
    r["acks"] = len(p.acks)  # the list itself is long and not needed
    return r


async def concurrent(cfg, emit):
    """cfg["tasks"] tasks publish cfg["count"] QoS 1 messages each at the same time, payload i
    of task t being cfg["size"] bytes: t, i >> 8, i & 0xFF, then (t + i + k) & 0xFF at k. The
    host checks that no two packets interleave and each task's messages keep their order."""
    p = Probe(cfg)
    await p.client.connect()
    size = cfg["size"]

    async def one(t):
        buf = bytearray(size)
        for i in range(cfg["count"]):
            buf[0] = t
            buf[1] = i >> 8
            buf[2] = i & 0xFF
            for k in range(3, size):
                buf[k] = (t + i + k) & 0xFF
            await p.client.publish("c/%d" % t, buf, qos=1)

    await asyncio.gather(*[one(t) for t in range(cfg["tasks"])])
    await sleep_ms(cfg.get("stay_ms", 0))
    await p.client.disconnect()
    return p.report()


async def flood(cfg, emit):
    """Publish cfg["size"]-byte QoS 0 messages (at most cfg["count"]) to a broker that does not
    read: once the socket is full a publish must fail within timeout_ms, not hang. (QoS 0: a
    thousand QoS 1 ids waiting for their PUBACK would not fit a 64k heap; the uplink's window
    keeps a few.)"""
    p = Probe(cfg)
    await p.client.connect()
    payload = bytearray(cfg["size"])
    sent = 0
    t = ticks_ms()
    err = None
    try:
        for _ in range(cfg["count"]):
            await p.client.publish("flood", payload, qos=0)
            sent += 1
            t = ticks_ms()  # the last publish that went through
    except OSError as exc:
        err = describe(exc)
    return p.report(sent=sent, error=err, stuck_ms=ticks_diff(ticks_ms(), t))


async def slow_link(cfg, emit):
    """Publish cfg["count"] messages of cfg["size"] bytes (QoS 0) through a send buffer of
    cfg["sndbuf"] bytes to a broker that reads slowly but steadily: each takes longer than
    timeout_ms to leave, and must still go whole."""
    p = Probe(cfg)
    await p.client.connect()
    if sys.implementation.name == "micropython":
        sock = p.client._sock
    else:
        sock = p.client._writer.get_extra_info("socket")
        # asyncio's own buffer too, which would take a whole batch at once
        p.client._writer.transport.set_write_buffer_limits(0)
    sock.setsockopt(1, 7, cfg["sndbuf"])    # SOL_SOCKET, SO_SNDBUF (Linux)
    payload = bytearray(cfg["size"])
    sent = 0
    err = None
    try:
        for _ in range(cfg["count"]):
            await p.client.publish("slow", payload, qos=0)
            await p.client._flush()     # what the next write would wait for: all of it gone
            sent += 1
        await p.client.disconnect()
    except OSError as exc:
        err = describe(exc)
    return p.report(sent=sent, error=err)


async def two_subscribes(cfg, emit):
    p = Probe(cfg)
    await p.client.connect()
    granted = await asyncio.gather(p.client.subscribe("a/#"), p.client.subscribe("b/#"))
    await p.client.disconnect()
    return p.report(granted=list(granted))


async def reconnects(cfg, emit):
    """A board's uplink through an outage: after reserve(cfg["max_packet"]), cfg["rounds"]
    rounds of three clients, as the uplink makes a new one per attempt: one connects, publishes
    and disconnects, one is refused (cfg["refused_port"]), one connects, publishes and is closed
    without DISCONNECT (the network gone). Reports whether every client that connected took the
    reserved pair and (MicroPython) the bytes a connect() allocated, the collector off: the last
    round's, then one more without a reservation, which makes its own pair."""
    from agent import mqtt
    mqtt.reserve(cfg["max_packet"])
    rx = mqtt._reserved[0][0]
    same = True
    connects = 0
    passed = plain = None
    try:
        for r in range(cfg["rounds"] + 1):
            alone = r == cfg["rounds"]
            if alone:  # as a client of the host: nothing reserved, nothing passed on
                mqtt._passed_on = 0
                del mqtt._reserved[:]
            for port, end in ((cfg["port"], "disconnect"), (cfg["refused_port"], None),
                              (cfg["port"], "close")):
                if alone and end != "close":
                    continue
                if gc:
                    gc.collect()
                c = Client("reconnects", cfg["host"], port, max_packet=cfg["max_packet"])
                measure = gc and r >= cfg["rounds"] - 1 and end == "close"
                if measure:
                    gc.collect()
                    gc.disable()
                    a0 = mem_alloc()
                try:
                    await c.connect()
                except OSError:
                    continue
                finally:
                    if measure:
                        if alone:
                            plain = mem_alloc() - a0
                        else:
                            passed = mem_alloc() - a0
                        gc.enable()
                if not alone:
                    connects += 1
                    same = same and c._rx is rx
                await c.publish(cfg["topic"], b"x", qos=1)
                if end == "close":
                    c.close()
                else:
                    await c.disconnect()
                c = None
    finally:
        mqtt._passed_on = 0  # in-process under CPython, later scenarios keep their own
        del mqtt._reserved[:]
    return {"same": same, "connects": connects, "allocated_passed": passed,
            "allocated_plain": plain}


SCENARIOS = {"publish": publish, "concurrent": concurrent, "flood": flood,
             "two_subscribes": two_subscribes, "will": will, "subscribe": subscribe, "idle": idle,
             "wait_close": wait_close, "connect_only": connect_only,
             "subscribe_refused": subscribe_refused, "heap": heap,
             "reconnects": reconnects, "slow_link": slow_link}


async def run(name, cfg, emit):
    try:
        return await SCENARIOS[name](cfg, emit)
    except (OSError, MQTTError) as exc:
        return {"error": describe(exc)}


def main():
    # micropython -m mqtt_scenarios NAME CFG.json (a file: this binary dies on an argument of 256
    # bytes or more, "FATAL: uncaught NLR").
    import json
    name = sys.argv[1]
    with open(sys.argv[2]) as f:
        cfg = json.load(f)

    def emit(event):
        print(json.dumps(event))

    result = asyncio.run(run(name, cfg, emit))
    print(json.dumps({"result": result}))


if __name__ == "__main__":
    main()
