"""agent/host/paho_client.py against a real mosquitto (plain, passwords, TLS, mutual TLS), and
against socket servers for what mosquitto will not do (never answer, never acknowledge)."""
import asyncio
import errno
import socket
import ssl
import threading
import time

import pytest

from agent.host.paho_client import ERR_PROTOCOL, ERR_TOO_LARGE, Client, MQTTError
from simulator.lab.mosquitto import FakeBroker, free_port

# Brokers: the `mosquitto`, `mosquitto_factory` and `tls_files` fixtures (tests/conftest_broker.py);
# FakeBroker (simulator/lab/mosquitto.py) for what mosquitto will not do: never PUBACK, refuse a SUBSCRIBE;
# a bare listening socket for a server that never answers at all.


# --- helpers -------------------------------------------------------------------------------------

def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def client(broker, client_id, **kwargs):
    return Client(client_id, "127.0.0.1", broker.port, **kwargs)


async def subscriber(broker, topic, client_id="sub"):
    """A connected client subscribed to topic; returns (client, list of (topic, payload))."""
    got = []
    sub = client(broker, client_id)
    sub.on_message = lambda t, p, r: got.append((t, p))
    await sub.connect()
    await sub.subscribe(topic, 1)
    return sub, got


async def until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


# --- tests ---------------------------------------------------------------------------------------

def test_connect_publish_qos0_and_qos1_callbacks_in_the_loop_thread(mosquitto):
    async def main():
        loop_thread = threading.current_thread()
        before = set(threading.enumerate())
        sub, got = await subscriber(mosquitto, "t/#")
        seen_threads = []

        def on_message(topic, payload, retain):
            seen_threads.append(threading.current_thread())
            got.append((topic, payload))
        sub.on_message = on_message

        pub = client(mosquitto, "pub")
        acks = []
        pub.on_puback = lambda pid: (acks.append(pid),
                                     seen_threads.append(threading.current_thread()))
        assert not pub.connected
        await pub.connect()
        assert pub.connected
        assert await pub.publish("t/zero", b"\x00zero", qos=0) is None
        pid = await pub.publish("t/one", bytearray(b"one\xff"), qos=1)
        assert isinstance(pid, int) and 1 <= pid <= 65535
        await until(lambda: acks == [pid] and len(got) == 2)
        assert got == [("t/zero", b"\x00zero"), ("t/one", b"one\xff")]
        assert all(isinstance(p, bytes) for _, p in got)
        assert seen_threads and all(t is loop_thread for t in seen_threads)
        # paho runs no network thread of its own: the only new threads are the loop's
        # default executor's (where paho's blocking connect() runs)
        extra = set(threading.enumerate()) - before
        assert all(t.name.startswith("asyncio_") for t in extra), extra
        await pub.disconnect()
        await sub.disconnect()
        assert not pub.connected
    run(main())


def test_subscribe_receives_only_its_topics_and_qos1_downlink(mosquitto):
    async def main():
        dev, got = await subscriber(mosquitto, "tether/v1/dev-1/down/cmd", "dev-1")
        other = client(mosquitto, "cloud")
        await other.connect()
        await other.publish("tether/v1/dev-2/down/cmd", b"not mine", 1)
        await other.publish("tether/v1/dev-1/down/cmd", b"\xa1\x62id\x01", 1)
        await until(lambda: got)
        await asyncio.sleep(0.1)
        assert got == [("tether/v1/dev-1/down/cmd", b"\xa1\x62id\x01")]
        assert await dev.subscribe("a/+/c", 0) == 0     # the granted QoS
        await other.disconnect()
        await dev.disconnect()
    run(main())


def test_subscribe_refused_raises_mqtt_error():
    broker = FakeBroker(suback=0x80)

    async def main():
        c = Client("dev", "127.0.0.1", broker.port)
        await c.connect()
        with pytest.raises(MQTTError) as err:
            await c.subscribe("theirs/x", 1)
        assert err.value.code == 0x80
        assert c.connected     # a refused subscription does not end the connection
        c.close()
    try:
        run(main())
    finally:
        broker.close()


def test_subscribe_timeout():
    broker = FakeBroker(suback=None)

    async def main():
        c = Client("dev", "127.0.0.1", broker.port, timeout_ms=300)
        await c.connect()
        with pytest.raises(asyncio.TimeoutError) as err:
            await c.subscribe("x", 1)
        assert isinstance(err.value, OSError) and err.value.errno == errno.ETIMEDOUT
        c.close()
    try:
        run(main())
    finally:
        broker.close()


def test_will_on_close_but_not_on_disconnect(mosquitto):
    async def main():
        sub, got = await subscriber(mosquitto, "status/#")
        a = client(mosquitto, "a", will=("status/a", b"offline", 1, False))
        b = client(mosquitto, "b", will=("status/b", b"offline", 1, False))
        closes = []
        a.on_close = closes.append
        await a.connect()
        await b.connect()
        await a.publish("status/a", b"online", 1)
        await until(lambda: len(got) == 1)
        a.close()
        assert not a.connected
        with pytest.raises(OSError):
            await a.publish("status/a", b"x", 1)
        await b.disconnect()
        await until(lambda: len(got) == 2)
        await asyncio.sleep(0.3)     # b's will would have come by now
        assert got == [("status/a", b"online"), ("status/a", b"offline")]
        assert closes == [None]      # once, with no error: the caller closed it
        a.close()                    # again: nothing happens
        assert closes == [None]
        await sub.disconnect()
    run(main())


def test_will_on_close_with_unread_data_and_no_time_wait_left(mosquitto):
    """close() while the broker is still sending: the broker publishes the will all the same.
    close() resets the connection (SO_LINGER 0), so it leaves no TIME_WAIT behind on this side,
    where paho's bind-before-connect would keep the port from being used again for a minute."""
    async def main():
        sub, got = await subscriber(mosquitto, "status/#")
        a = client(mosquitto, "a", will=("status/a", b"gone", 0, False))
        await a.connect()
        await a.subscribe("flood", 0)
        for i in range(50):
            await sub.publish("flood", b"x" * 1000, 0)
        local_port = a._sock.getsockname()[1]
        a.close()
        await until(lambda: ("status/a", b"gone") in got)
        with socket.socket() as probe:    # no SO_REUSEADDR: fails while in TIME_WAIT
            probe.bind(("0.0.0.0", local_port))
        await sub.disconnect()
    run(main())


def test_broker_killed_reports_on_close_promptly_and_publish_raises(mosquitto):
    async def main():
        c = client(mosquitto, "dev")
        closed = asyncio.Event()
        reasons = []
        c.on_close = lambda exc: (reasons.append(exc), closed.set())
        await c.connect()
        await c.publish("t", b"x", 1)
        mosquitto.kill()
        await asyncio.wait_for(closed.wait(), 10)  # the reset, long before any keepalive
        assert not c.connected
        assert len(reasons) == 1 and isinstance(reasons[0], OSError)
        with pytest.raises(OSError):
            await c.publish("t", b"y", 1)
        with pytest.raises(OSError):
            await c.subscribe("t", 1)
        c.close()
        await c.disconnect()      # after the end: harmless
        assert len(reasons) == 1
    run(main())


def test_refused_connect_raises_mqtt_error(mosquitto_factory):
    broker = mosquitto_factory(users={"device-A": "s3cret"})

    async def main():
        for kwargs in ({}, {"username": "device-A", "password": "wrong"}):
            c = client(broker, "dev", **kwargs)
            closes = []
            c.on_close = closes.append
            with pytest.raises(MQTTError) as err:
                await c.connect()
            assert err.value.code in (4, 5)   # 3.1.1 return codes, as on the wire
            assert "wrong" not in str(err.value) and not c.connected and closes == []
            assert "wrong" not in repr(c)
        ok = client(broker, "dev", username="device-A", password="s3cret")
        await ok.connect()
        await ok.publish("t", b"x", 1)
        await ok.disconnect()
    run(main())


@pytest.mark.parametrize("rc", [1, 2, 3, 4, 5])
def test_every_connack_refusal_is_its_return_code(rc):
    broker = FakeBroker(connack=bytes((0x20, 2, 0, rc)))

    async def main():
        c = Client("dev", "127.0.0.1", broker.port)
        with pytest.raises(MQTTError) as err:
            await c.connect()
        assert err.value.code == rc and not c.connected
    try:
        run(main())
    finally:
        broker.close()


def test_messages_larger_than_max_packet_are_read_past_reported_acknowledged_and_the_connection_stays(
        mosquitto):
    """As in the portable client: max_packet bounds what comes in. A larger message never
    reaches on_message: on_too_large gets its size, the largest payload it could have had and
    its first 64 bytes; it is acknowledged (the broker does not send it again) and the
    connection stays up. 3 KiB, 100 KiB and 1 MiB, one retained, one QoS 0."""
    async def main():
        dev = client(mosquitto, "dev", max_packet=256)
        got, bigs, closes = [], [], []
        dev.on_message = lambda t, p, r: got.append((p, r))
        dev.on_too_large = lambda t, size, limit, head, r: bigs.append((t, size, limit, head, r))
        dev.on_close = closes.append
        cloud = client(mosquitto, "cloud")
        await cloud.connect()
        retained = bytes(range(256)) * 20
        await cloud.publish("cmd", retained, 1, retain=True)
        await dev.connect()
        await dev.subscribe("cmd", 1)
        await until(lambda: bigs)
        fits = b"a" * (256 - 7)      # 2 + 3 + 2 + 249 = 256: fits
        over = b"b" * (256 - 6)      # one byte more
        big = [bytes([i]) * n for i, n in enumerate((3 * 1024, 100 * 1024, 1024 * 1024))]
        for payload in [fits, over] + big:
            await cloud.publish("cmd", payload, 1)
        await cloud.publish("cmd", big[0], 0)
        await cloud.publish("cmd", b"after", 1)
        await until(lambda: len(got) == 2, timeout=20)
        assert got == [(fits, False), (b"after", False)]
        assert bigs == ([("cmd", len(retained), 249, retained[:64], True)]
                        + [("cmd", len(p), 249, p[:64], False) for p in [over] + big]
                        + [("cmd", len(big[0]), 251, big[0][:64], False)])
        assert dev.connected and closes == []
        await cloud.disconnect()
        await dev.disconnect()
        log = mosquitto.log_when(lambda text: text.count("Received PUBACK from dev") >= 7)
        assert log.count("Received PUBACK from dev") == 7    # every QoS 1 one, once
        assert log.count("as dev ") == 1                      # one connection
    run(main(), timeout=60)


def test_a_large_message_is_never_held_whole_in_memory(mosquitto):
    """paho alone appends every piece of a packet to one buffer: a 4 MiB message would take
    4 MiB. Through the gate, what this process allocates while it arrives stays near
    max_packet. The sender is another process, so that its copy is not counted."""
    import subprocess
    import sys
    import tracemalloc
    size = 4 * 1024 * 1024
    send = ("import sys, paho.mqtt.publish as p; p.single('cmd', b'x' * %d, qos=1, "
            "hostname='127.0.0.1', port=%d)" % (size, mosquitto.port))

    async def main():
        dev = client(mosquitto, "dev", max_packet=2048)
        bigs = []
        dev.on_too_large = lambda t, n, limit, head, r: bigs.append(n)
        await dev.connect()
        await dev.subscribe("cmd", 1)
        tracemalloc.start()
        try:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", send)
            assert await proc.wait() == 0
            await until(lambda: bigs, timeout=20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert bigs == [size]
        assert peak < 256 * 1024, peak
        assert dev.connected
        await dev.disconnect()
    run(main(), timeout=60)


@pytest.mark.parametrize("packet,code", [
    (b"\x90\xff\xff\x03" + b"\x00" * 64, ERR_TOO_LARGE),           # a SUBACK that large
    (b"\x30\xff\xff\x03\xff\x00" + b"a" * 3000, ERR_TOO_LARGE),     # a topic that large
    (b"\x34\xff\xff\x03\x00\x01a\x00\x01" + b"a" * 3000, ERR_PROTOCOL),  # QoS 2
    (b"\x32\xff\xff\x03\x00\x02\xff\xfe\x00\x01" + b"a" * 3000, ERR_PROTOCOL),  # not UTF-8
    # a fifth remaining-length byte (2.2.3: at most four); then what looks like a PUBLISH
    # that must not be taken for one
    (b"\xd0\xff\xff\xff\xff\x7f\x32\xff\xff\x03\x00\x01a\x00\x07" + b"a" * 3000,
     ERR_PROTOCOL),
], ids=["suback", "topic", "qos-2", "topic-not-utf8", "length-5-bytes"])
def test_a_large_packet_that_is_no_valid_publish_closes_the_connection(packet, code):
    broker = FakeBroker(after_connack=packet)

    async def main():
        c = Client("dev", "127.0.0.1", broker.port, max_packet=256)
        closes = []
        c.on_close = closes.append
        c.on_too_large = lambda *args: closes.append("reported")
        await c.connect()
        await until(lambda: closes)
        assert isinstance(closes[0], MQTTError) and closes[0].code == code, closes
        assert not c.connected
    try:
        run(main())
    finally:
        broker.close()


def test_connect_to_a_closed_port_raises_oserror():
    async def main():
        c = Client("dev", "127.0.0.1", free_port(), timeout_ms=2000)
        with pytest.raises(OSError) as err:
            await c.connect()
        assert not isinstance(err.value, asyncio.TimeoutError)
        assert not c.connected
    run(main())


def test_connect_timeout_against_a_listener_that_never_answers():
    """TCP is accepted (by the kernel's backlog) but no CONNACK ever comes; the event loop keeps
    running meanwhile."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        task = asyncio.ensure_future(ticker())
        c = Client("dev", "127.0.0.1", port, timeout_ms=400)
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError) as err:
            await c.connect()
        elapsed = time.monotonic() - t0
        # the portable client's timeout: an OSError(ETIMEDOUT); this is both
        assert isinstance(err.value, OSError) and err.value.errno == errno.ETIMEDOUT
        task.cancel()
        assert elapsed > 0.35  # it waited its timeout_ms
        assert ticks > 15
        assert not c.connected
        with pytest.raises(OSError):
            await c.publish("t", b"x", 1)
    try:
        run(main())
    finally:
        listener.close()


def connections(broker):
    """FakeBroker's packets, cut into connections at each CONNECT."""
    out = []
    for first, body in broker.packets:
        if first == 0x10:
            out.append([])
        out[-1].append((first, body))
    return out


def test_nothing_paho_held_reappears_on_a_new_connection():
    """QoS 1 publishes the broker never acknowledged, then the connection drops: they are gone
    with it. The next connection (same Client object, or a new one) sends none of them: the
    uplink re-sends from its own buffer."""
    broker = FakeBroker()

    async def main():
        c = Client("dev", "127.0.0.1", broker.port)
        closed = asyncio.Event()
        c.on_close = lambda exc: closed.set()
        await c.connect()
        pids = [await c.publish("t", b"batch-%d" % i, 1) for i in range(30)]
        assert len(set(pids)) == 30
        await until(lambda: len(broker.packets) == 31)   # CONNECT + 30 PUBLISH
        for conn in broker.conns:                        # the broker goes away
            conn.shutdown(socket.SHUT_RDWR)
        await asyncio.wait_for(closed.wait(), 2)
        with pytest.raises(OSError):
            await c.publish("t", b"late", 1)
        await c.connect()                        # the same object, a new connection
        await c.publish("t", b"new", 1)
        await until(lambda: len(broker.packets) == 33)
        await asyncio.sleep(0.3)
        second = connections(broker)[1]
        assert [first for first, _ in second] == [0x10, 0x32]    # CONNECT, PUBLISH QoS 1
        assert second[1][1].endswith(b"new")
        c.close()
        fresh = Client("dev", "127.0.0.1", broker.port)
        await fresh.connect()
        await asyncio.sleep(0.3)
        assert [first for first, _ in connections(broker)[2]] == [0x10]
        fresh.close()
        # the CONNECT: MQTT 3.1.1 (level 4), clean session
        connect = broker.packets[0][1]
        assert connect[:7] == b"\x00\x04MQTT\x04" and connect[7] & 0x02
    try:
        run(main())
    finally:
        broker.close()


def test_dup_is_set_on_the_wire_when_the_uplink_re_sends():
    """paho's publish() has no DUP argument; the client sets the flag in the packet paho queued
    (a paho upgrade that changes its internals makes this test fail, not the uplink)."""
    broker = FakeBroker()

    async def main():
        c = Client("dev", "127.0.0.1", broker.port)
        await c.connect()
        await c.publish("t", b"first", 1, retain=True)
        await c.publish("t", b"again", 1, dup=True)
        await c.publish("t", b"again", 1, retain=True, dup=True)
        await c.publish("t", b"q0", 0)
        with pytest.raises(ValueError):
            await c.publish("t", b"q0", 0, dup=True)    # [MQTT-3.3.1-2]
        await until(lambda: len(broker.packets) == 5)
        firsts = [first for first, _ in broker.packets[1:]]
        assert firsts == [0x33, 0x3A, 0x3B, 0x30]
        assert [body[-5:] for _, body in broker.packets[1:3]] == [b"first", b"again"]
        c.close()
    try:
        run(main())
    finally:
        broker.close()


def test_keepalive_pings_hold_an_idle_connection(mosquitto):
    async def main():
        c = client(mosquitto, "idle", keepalive_s=1)
        closes = []
        c.on_close = closes.append
        await c.connect()
        await asyncio.sleep(2.6)    # mosquitto drops a silent client after 1.5 keepalives
        assert c.connected and closes == []
        acks = []
        c.on_puback = acks.append
        pid = await c.publish("t", b"x", 1)
        await until(lambda: acks == [pid])
        await c.disconnect()
    run(main())


def test_keepalive_timeout_when_the_broker_stops_answering():
    broker = FakeBroker(pingresp=False)

    async def main():
        c = Client("dev", "127.0.0.1", broker.port, keepalive_s=1)
        closed = asyncio.Event()
        reasons = []
        c.on_close = lambda exc: (reasons.append(exc), closed.set())
        await c.connect()
        t0 = time.monotonic()
        await asyncio.wait_for(closed.wait(), 20)
        assert time.monotonic() - t0 > 0.9  # the keepalive found it, not a reset
        assert isinstance(reasons[0], OSError) and reasons[0].errno == errno.ETIMEDOUT
        assert not c.connected
        assert (0xC0, b"") in broker.packets     # it did send a PINGREQ
    try:
        run(main())
    finally:
        broker.close()


def test_disconnect_sends_what_was_queued_first(mosquitto):
    async def main():
        sub, got = await subscriber(mosquitto, "q")
        c = client(mosquitto, "dev", will=("q", b"will", 0, False))
        await c.connect()
        for i in range(200):
            await c.publish("q", b"%d" % i, 0)
        await c.disconnect()      # DISCONNECT goes out behind the 200
        await until(lambda: len(got) == 200)
        await asyncio.sleep(0.2)
        assert [p for _, p in got] == [b"%d" % i for i in range(200)]
        await sub.disconnect()
    run(main())


def test_close_while_connecting_and_cancelled_connect():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    async def main():
        c = Client("dev", "127.0.0.1", port, timeout_ms=5000)
        task = asyncio.ensure_future(c.connect())
        await asyncio.sleep(0.2)
        c.close()
        with pytest.raises(OSError):
            await task
        c2 = Client("dev", "127.0.0.1", port, timeout_ms=5000)
        task = asyncio.ensure_future(c2.connect())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not c.connected and not c2.connected
    try:
        run(main())
    finally:
        listener.close()


def test_window_of_20_delivers_1000_publishes_in_order(mosquitto):
    """1000 QoS 1 publishes of 500 B, at most 20 unacknowledged at a time, the way the uplink
    drives it: every one arrives once, in order, byte for byte."""
    n, window = 1000, 20
    payloads = [(b"%06d" % i) + bytes((i * 7 + j) & 0xFF for j in range(494)) for i in range(n)]

    async def main():
        sub, got = await subscriber(mosquitto, "tether/v1/dev/up/batch")
        pub = client(mosquitto, "dev")
        slots = asyncio.Semaphore(window)
        inflight = set()
        peak = 0
        acked = []

        def on_puback(pid):
            inflight.discard(pid)
            acked.append(pid)
            slots.release()
        pub.on_puback = on_puback
        await pub.connect()
        t0 = time.monotonic()
        for payload in payloads:
            await slots.acquire()
            pid = await pub.publish("tether/v1/dev/up/batch", payload, 1)
            assert pid not in inflight
            inflight.add(pid)
            peak = max(peak, len(inflight))
        await until(lambda: len(acked) == n and len(got) == n, timeout=15)
        elapsed = time.monotonic() - t0
        assert peak == window
        assert [p for _, p in got] == payloads
        await pub.disconnect()
        await sub.disconnect()
        return elapsed
    elapsed = run(main(), timeout=25)
    print("1000 x 500 B QoS 1, window 20: %.2f s" % elapsed)


def test_many_clients_in_one_loop_without_threads(mosquitto):
    """The simulator's case, scaled down: 300 connections in one event loop, each publishing and
    getting its PUBACK, without a thread per connection."""
    n = 300

    async def main():
        clients = [client(mosquitto, "dev-%d" % i) for i in range(n)]
        acks = []
        for c in clients:
            c.on_puback = acks.append
        await asyncio.gather(*(c.connect() for c in clients))
        assert threading.active_count() < 20
        for c in clients:
            await c.publish("fleet/%s" % c.client_id, b"x" * 100, 1)
        await until(lambda: len(acks) == n)
        await asyncio.gather(*(c.disconnect() for c in clients))
    run(main())


# --- TLS ----------------------------------------------------------------------------------------

def tls_context(tls_files, device=None):
    ctx = ssl.create_default_context(cafile=str(tls_files.ca_pem))
    if device is not None:
        files = tls_files.client(device)
        ctx.load_cert_chain(str(files["cert_pem"]), str(files["key_pem"]))
    return ctx


def test_tls_verifies_the_broker_and_server_hostname_names_it(mosquitto_factory, tls_files):
    """The server certificate is for localhost and 127.0.0.1. Connecting to 127.0.0.1 with
    server_hostname="localhost" verifies (and sends SNI for) localhost; with a name the
    certificate does not carry it fails, even though the address itself is in the certificate:
    server_hostname, not host, is what gets checked. Host name checking cannot be switched off
    by the context passed in."""
    broker = mosquitto_factory(tls="server")

    async def main():
        sub, got = await subscriber(broker, "tls/#")
        for host, name in (("127.0.0.1", "localhost"), ("localhost", None),
                           ("127.0.0.1", None)):
            c = Client("dev", host, broker.tls_port, ssl=tls_context(tls_files),
                       server_hostname=name)
            acks = []
            c.on_puback = acks.append
            await c.connect()
            pid = await c.publish("tls/%s" % name, b"over tls", 1)
            await until(lambda: acks == [pid])
            await c.disconnect()
        await until(lambda: len(got) == 3)

        lax = tls_context(tls_files)
        lax.check_hostname = False
        for ctx in (tls_context(tls_files), lax):
            c = Client("dev", "127.0.0.1", broker.tls_port, ssl=ctx,
                       server_hostname="broker.example", timeout_ms=3000)
            with pytest.raises(ssl.SSLCertVerificationError):
                await c.connect()
            assert not c.connected
        # a CA that did not sign the broker's certificate
        c = Client("dev", "127.0.0.1", broker.tls_port, ssl=ssl.create_default_context(),
                   timeout_ms=3000)
        with pytest.raises(ssl.SSLCertVerificationError):
            await c.connect()
        await sub.disconnect()
    run(main())


def test_mutual_tls(mosquitto_factory, tls_files):
    """Mutual TLS (the broker takes the certificate's CN as the user name): without a client
    certificate the connection fails with an OSError; with one, messages flow both ways."""
    broker = mosquitto_factory(tls="mutual")

    async def main():
        c = Client("device-A", "127.0.0.1", broker.tls_port, ssl=tls_context(tls_files),
                   server_hostname="localhost", timeout_ms=3000)
        with pytest.raises(OSError):
            await c.connect()
        assert not c.connected

        got = []
        sub = Client("device-B", "127.0.0.1", broker.tls_port,
                     ssl=tls_context(tls_files, "device-B"), server_hostname="localhost")
        sub.on_message = lambda t, p, r: got.append(p)
        await sub.connect()
        await sub.subscribe("burst", 1)
        pub = Client("device-A", "127.0.0.1", broker.tls_port,
                     ssl=tls_context(tls_files, "device-A"), server_hostname="localhost")
        acks = []
        pub.on_puback = acks.append
        await pub.connect()
        payloads = [b"%04d" % i + b"." * 60 for i in range(400)]
        for p in payloads:
            await pub.publish("burst", p, 1)
        await until(lambda: len(acks) == 400)
        await until(lambda: len(got) == 400)
        assert got == payloads
        await pub.disconnect()
        await sub.disconnect()
    run(main())


def test_a_large_message_among_others_in_one_tls_record_is_read_past(tls_files):
    """The gate stops after each message it reads past; the messages behind it in the same
    TLS record, decrypted and invisible to the selector, are still read."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(tls_files.server_cert), str(tls_files.server_key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    big = b"\x30\x90\x4e\x00\x03cmd" + b"B" * 9995      # a QoS 0 PUBLISH of 10000 bytes

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)       # the CONNECT
            small = [bytes((0x30, 7, 0, 3)) + b"cmd" + b"m%d" % i for i in range(6)]
            tls.sendall(b"\x20\x02\x00\x00" + b"".join(small[:3]) + big + big
                        + b"".join(small[3:]))
            ended.wait(60)  # open until the client has read all
    ended = threading.Event()
    threading.Thread(target=serve, daemon=True).start()

    async def main():
        got, bigs = [], []
        c = Client("dev", "127.0.0.1", port, ssl=tls_context(tls_files),
                   server_hostname="localhost", max_packet=256)
        c.on_message = lambda t, p, r: got.append(p)
        c.on_too_large = lambda t, n, limit, head, r: bigs.append((n, head))
        await c.connect()
        await until(lambda: len(got) == 6)
        assert got == [b"m%d" % i for i in range(6)]
        assert bigs == [(9995, b"B" * 64)] * 2
        assert c.connected
        c.close()
    try:
        run(main())
    finally:
        ended.set()
        listener.close()


def test_several_packets_in_one_tls_record_are_all_read(tls_files):
    """A broker may pack several MQTT packets into one TLS record. Once the SSL object has
    read that record, the rest of its packets wait decrypted inside it, where the selector
    cannot see them: the client must read them before it waits on the socket again."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(tls_files.server_cert), str(tls_files.server_key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    messages = [b"cmd-%d" % i for i in range(40)]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)       # the CONNECT
            burst = b"\x20\x02\x00\x00" + b"".join(
                bytes((0x30, 5 + len(m), 0, 3)) + b"cmd" + m for m in messages)
            tls.sendall(burst)   # one write: one TLS record
            ended.wait(60)  # open until the client has read all
    ended = threading.Event()
    threading.Thread(target=serve, daemon=True).start()

    async def main():
        got = []
        c = Client("dev", "127.0.0.1", port, ssl=tls_context(tls_files),
                   server_hostname="localhost")
        c.on_message = lambda t, p, r: got.append(p)
        await c.connect()
        await until(lambda: len(got) == len(messages))
        assert got == messages
        c.close()
    try:
        run(main())
    finally:
        ended.set()
        listener.close()


def test_a_client_key_written_for_cpython_to_read_is_not_left_behind(tls_files, tmp_path):
    # Every agent built with a client certificate (tether run, check, build) left a copy of
    # its key in a folder of its own under /tmp.
    from agent.host import tls
    files = tls_files.client("device-A")
    ctx = tls.context(tls_files.ca_pem.read_text(), files["cert_pem"].read_text(),
                      files["key_pem"].read_text(), tmpdir=str(tmp_path))
    assert isinstance(ctx, ssl.SSLContext) and list(tmp_path.iterdir()) == []
