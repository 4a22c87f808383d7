"""agent/host/paho_client.py against a real mosquitto, and against plain socket servers written
here for what mosquitto will not do (never answer, never acknowledge)."""
import asyncio
import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from agent.host.paho_client import ERR_TOO_LARGE, Client, MQTTError

MOSQUITTO = "/usr/sbin/mosquitto"


# --- a minimal mosquitto fixture (until tests/broker.py lands) ------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Mosquitto:
    def __init__(self, folder, extra=""):
        binary = MOSQUITTO if os.path.exists(MOSQUITTO) else shutil.which("mosquitto")
        if binary is None:
            pytest.fail("mosquitto is missing: apt-get install mosquitto")
        self.port = _free_port()
        conf = folder / ("mosquitto-%d.conf" % self.port)
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "user root\n%s" % (self.port, extra))
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("mosquitto did not start: %s" % self.proc.stderr.read())
                time.sleep(0.02)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stderr.close()


@pytest.fixture
def mosquitto_factory(tmp_path):
    started = []

    def start(extra=""):
        broker = _Mosquitto(tmp_path, extra)
        started.append(broker)
        return broker
    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory):
    return mosquitto_factory()


# --- helpers -------------------------------------------------------------------------------------

def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def client(broker, client_id, **kwargs):
    return Client(client_id, "127.0.0.1", broker.port, **kwargs)


async def subscriber(broker, topic, client_id="sub"):
    """A connected client subscribed to topic; returns (client, list of (topic, payload))."""
    got = []
    sub = client(broker, client_id)
    sub.on_message = lambda t, p: got.append((t, p))
    await sub.connect()
    await sub.subscribe(topic, 1)
    return sub, got


async def until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


class FakeBroker:
    """A plain socket server that speaks just enough MQTT: CONNACK to each CONNECT, SUBACK to
    each SUBSCRIBE, never a PUBACK or PINGRESP. Records what each connection sent."""

    def __init__(self, connack=0, suback=0):
        self.connack = connack     # the CONNACK return code, None: no CONNACK
        self.suback = suback       # the SUBACK return code, None: no SUBACK
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.connections = []     # per connection: list of (packet type, body bytes)
        self.socks = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            packets = []
            self.connections.append(packets)
            self.socks.append(sock)
            threading.Thread(target=self._serve, args=(sock, packets), daemon=True).start()

    def _serve(self, sock, packets):
        f = sock.makefile("rb")
        try:
            while True:
                head = f.read(1)
                if not head:
                    return
                length, mult = 0, 1
                while True:
                    b = f.read(1)[0]
                    length += (b & 127) * mult
                    mult *= 128
                    if b < 128:
                        break
                body = f.read(length)
                packets.append((head[0], body))
                if head[0] == 0x10 and self.connack is not None:
                    sock.sendall(bytes((0x20, 2, 0, self.connack)))
                elif head[0] == 0x82 and self.suback is not None:
                    sock.sendall(bytes((0x90, 3, body[0], body[1], self.suback)))
        except (OSError, IndexError, ValueError):
            return
        finally:
            f.close()
            sock.close()

    def drop(self):
        """End every open connection (a crash of the broker, as far as the client sees)."""
        for sock in self.socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.listener.close()
        self.drop()


# --- tests ---------------------------------------------------------------------------------------

def test_connect_publish_qos0_and_qos1_callbacks_in_the_loop_thread(mosquitto):
    async def main():
        loop_thread = threading.current_thread()
        before = set(threading.enumerate())
        sub, got = await subscriber(mosquitto, "t/#")
        seen_threads = []

        def on_message(topic, payload):
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


def test_will_on_close_with_tls_off_and_unread_data(mosquitto):
    """close() with bytes still unread in the socket (the kernel would answer a plain close()
    with RST): the broker still publishes the will."""
    async def main():
        sub, got = await subscriber(mosquitto, "status/#")
        a = client(mosquitto, "a", will=("status/a", b"gone", 0, False))
        await a.connect()
        await a.subscribe("flood", 0)
        for i in range(50):
            await sub.publish("flood", b"x" * 1000, 0)
        a.close()
        await until(lambda: ("status/a", b"gone") in got)
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
        t0 = time.monotonic()
        mosquitto.kill()
        await asyncio.wait_for(closed.wait(), 1.0)
        assert time.monotonic() - t0 < 1.0
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


def test_refused_connect_raises_mqtt_error(mosquitto_factory, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "device-A", "s3cret"], check=True)
    broker = mosquitto_factory("allow_anonymous false\npassword_file %s\n" % passwd)

    async def main():
        for kwargs in ({}, {"username": "device-A", "password": "wrong"}):
            c = client(broker, "dev", **kwargs)
            closes = []
            c.on_close = closes.append
            with pytest.raises(MQTTError) as err:
                await c.connect()
            assert err.value.code in (4, 5)   # 3.1.1 return codes, as on the wire
            assert "wrong" not in str(err.value) and not c.connected and closes == []
        ok = client(broker, "dev", username="device-A", password="s3cret")
        await ok.connect()
        await ok.publish("t", b"x", 1)
        await ok.disconnect()
    run(main())


@pytest.mark.parametrize("rc", [1, 2, 3, 4, 5])
def test_every_connack_refusal_is_its_return_code(rc):
    broker = FakeBroker(connack=rc)

    async def main():
        c = Client("dev", "127.0.0.1", broker.port)
        with pytest.raises(MQTTError) as err:
            await c.connect()
        assert err.value.code == rc and not c.connected
    try:
        run(main())
    finally:
        broker.close()


def test_an_incoming_packet_over_max_packet_closes_the_connection(mosquitto):
    """As the portable client does: max_packet bounds what comes in; a larger packet ends the
    connection with MQTTError(ERR_TOO_LARGE) instead of reaching on_message."""
    async def main():
        dev = client(mosquitto, "dev", max_packet=256)
        got, closes = [], []
        dev.on_message = lambda t, p: got.append(p)
        dev.on_close = closes.append
        await dev.connect()
        await dev.subscribe("cmd", 1)
        cloud = client(mosquitto, "cloud")
        await cloud.connect()
        await cloud.publish("cmd", b"a" * (256 - 7), 1)    # 2 + 3 + 2 + 249 = 256: fits
        await cloud.publish("cmd", b"b" * (256 - 6), 1)
        await until(lambda: closes)
        assert got == [b"a" * 249]
        assert isinstance(closes[0], MQTTError) and closes[0].code == ERR_TOO_LARGE
        assert not dev.connected
        await cloud.disconnect()
    run(main())


def test_connect_to_a_closed_port_raises_oserror():
    async def main():
        c = Client("dev", "127.0.0.1", _free_port(), timeout_ms=2000)
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
        assert 0.35 < elapsed < 1.5
        assert ticks > 15
        assert not c.connected
        with pytest.raises(OSError):
            await c.publish("t", b"x", 1)
    try:
        run(main())
    finally:
        listener.close()


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
        await until(lambda: len(broker.connections[0]) == 31)   # CONNECT + 30 PUBLISH
        broker.drop()
        await asyncio.wait_for(closed.wait(), 2)
        with pytest.raises(OSError):
            await c.publish("t", b"late", 1)
        await c.connect()                        # the same object, a new connection
        await c.publish("t", b"new", 1, dup=True)   # dup is accepted (and ignored)
        await until(lambda: len(broker.connections[1]) == 2)
        await asyncio.sleep(0.3)
        second = broker.connections[1]
        assert [p[0] >> 4 for p in second] == [1, 3]
        assert second[1][0] == 0x32 and second[1][1].endswith(b"new")  # QoS 1, DUP 0
        c.close()
        fresh = Client("dev", "127.0.0.1", broker.port)
        await fresh.connect()
        await asyncio.sleep(0.3)
        assert [p[0] >> 4 for p in broker.connections[2]] == [1]
        fresh.close()
        # the CONNECT: MQTT 3.1.1 (level 4), clean session
        connect = broker.connections[0][0][1]
        assert connect[:7] == b"\x00\x04MQTT\x04" and connect[7] & 0x02
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
    broker = FakeBroker()     # answers CONNECT, never PINGREQ

    async def main():
        c = Client("dev", "127.0.0.1", broker.port, keepalive_s=1)
        closed = asyncio.Event()
        reasons = []
        c.on_close = lambda exc: (reasons.append(exc), closed.set())
        await c.connect()
        t0 = time.monotonic()
        await asyncio.wait_for(closed.wait(), 4)
        assert 0.9 < time.monotonic() - t0 < 3.5
        assert isinstance(reasons[0], OSError) and reasons[0].errno == errno.ETIMEDOUT
        assert not c.connected
        assert any(p[0] >> 4 == 12 for p in broker.connections[0])   # it did send a PINGREQ
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
