"""simulator/broker.py: the embedded broker (rumqttd from the `iotcore` package, in a child
process) does what Tether relies on, proven with our two clients, the portable asyncio one
(agent/mqtt.py) and the paho one (agent/host/paho_client.py): QoS 1 with a window in flight,
retained messages, the will, shared subscriptions, persistent sessions (paho with
clean_session=False, as an ingest connects), 200 clients at once; and its own life cycle."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import paho.mqtt.client as paho
import pytest

from agent import mqtt as portable
from agent.host import paho_client
from simulator.broker import BrokerError, EmbeddedBroker

CLIENTS = {"portable": portable.Client, "paho": paho_client.Client}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def broker():
    b = EmbeddedBroker()
    asyncio.run(b.start())
    yield b
    asyncio.run(b.stop())


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


def client(broker, kind, client_id, **kwargs):
    kwargs.setdefault("max_packet", 8192)
    return CLIENTS[kind](client_id, "127.0.0.1", broker.port, **kwargs)


async def subscriber(broker, kind, topic, client_id):
    got = []
    c = client(broker, kind, client_id)
    c.on_message = lambda t, p, r: got.append((t, p))
    await c.connect()
    assert await c.subscribe(topic, 1) == 1
    return c, got


async def publish_all(c, topic_of, payloads, window):
    """Publish payloads with at most `window` waiting for their PUBACK; returns the acked ids."""
    acked = []
    free = asyncio.Semaphore(window)
    inflight = set()
    most = [0]

    def on_puback(pid):
        acked.append(pid)
        inflight.discard(pid)
        free.release()
    c.on_puback = on_puback
    for i, p in enumerate(payloads):
        await free.acquire()
        pid = await c.publish(topic_of(i), p, qos=1)
        inflight.add(pid)
        most[0] = max(most[0], len(inflight))
    await until(lambda: len(acked) == len(payloads))
    return acked, most[0]


class PahoSession:
    """A plain paho 3.1.1 client in its own thread, as an ingest connects: clean_session=False
    to keep its subscriptions and queued messages while away."""

    def __init__(self, broker, client_id, clean_session):
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean_session, protocol=paho.MQTTv311)
        self.got = []
        self.session_present = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        assert self._connected.wait(5), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.session_present = flags.session_present
        self._connected.set()

    def subscribe(self, topic):
        self.c.subscribe(topic, 1)
        assert self._subscribed.wait(5), "no SUBACK"

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


# --- MQTT as Tether uses it ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["portable", "paho"])
def test_qos1_with_a_window_in_flight_every_message_acked_and_delivered_in_order(broker, kind):
    async def main():
        topic = "tether/v1/win-%s/up/batch" % kind
        sub, got = await subscriber(broker, kind, topic, "win-sub-" + kind)
        pub = client(broker, kind, "win-%s" % kind)
        await pub.connect()
        payloads = [b"%05d" % i + bytes(145) for i in range(1000)]   # a compact batch's size
        acked, most = await publish_all(pub, lambda i: topic, payloads, window=16)
        await until(lambda: len(got) == len(payloads))
        await pub.disconnect()
        await sub.disconnect()
        assert len(set(acked)) == len(payloads)
        assert 2 <= most <= 16, "%d in flight at most" % most
        assert [p for _, p in got] == payloads
    run(main())


def test_a_whole_window_written_before_any_puback_is_read_is_acknowledged_whole(broker):
    """The window is full for sure: the portable client's socket is not read while it writes 32
    PUBLISHes, so the broker has all 32 outstanding at once; then every PUBACK arrives."""
    async def main():
        pub = client(broker, "portable", "full-window")
        await pub.connect()
        acked = []
        pub.on_puback = acked.append
        pub._writer.transport.pause_reading()
        pids = [await pub.publish("tether/v1/full/up/batch", b"%02d" % i, qos=1) for i in range(32)]
        await asyncio.sleep(0.2)
        assert acked == []
        pub._writer.transport.resume_reading()
        await until(lambda: len(acked) == 32)
        assert acked == pids
        await pub.disconnect()
    run(main())


@pytest.mark.parametrize("kind", ["portable", "paho"])
def test_retained_message_reaches_a_late_subscriber_and_only_the_latest(broker, kind):
    async def main():
        topic = "tether/v1/ret-%s/status" % kind
        pub = client(broker, kind, "ret-" + kind)
        await pub.connect()
        done = []
        pub.on_puback = done.append
        await pub.publish(topic, b"offline", qos=1, retain=True)
        await pub.publish(topic, b"online", qos=1, retain=True)
        await pub.publish("tether/v1/ret-%s/up/batch" % kind, b"not retained", qos=1)
        await until(lambda: len(done) == 3)
        await pub.disconnect()
        sub, got = await subscriber(broker, kind, "tether/v1/ret-%s/#" % kind, "ret-sub-" + kind)
        await until(lambda: got)
        await asyncio.sleep(0.3)
        await sub.disconnect()
        assert got == [(topic, b"online")]
    run(main())


@pytest.mark.parametrize("kind", ["portable", "paho"])
def test_will_on_an_abrupt_close_and_none_on_disconnect(broker, kind):
    async def main():
        prefix = "will-%s/v1" % kind  # a topic prefix of its own: no retained status of others
        dropped, clean = prefix + "/dev-a/status", prefix + "/dev-b/status"
        sub, got = await subscriber(broker, "portable", prefix + "/+/status", "will-sub-" + kind)
        a = client(broker, kind, "will-" + kind, will=(dropped, b"offline", 1, True))
        b = client(broker, kind, "nowill-" + kind, will=(clean, b"offline", 1, True))
        await a.connect()
        await b.connect()
        await b.disconnect()  # DISCONNECT: the broker discards the will
        a.close()             # no DISCONNECT: the broker publishes the will
        await until(lambda: got)
        await asyncio.sleep(0.3)
        assert got == [(dropped, b"offline")]
        # retained: a subscriber arriving later still sees the device offline
        late, late_got = await subscriber(broker, kind, dropped, "will-late-" + kind)
        await until(lambda: late_got)
        await sub.disconnect()
        await late.disconnect()
        assert late_got == [(dropped, b"offline")]
    run(main())


def test_shared_subscription_splits_the_messages_between_two_subscribers(broker):
    async def main():
        group = "$share/ingest/tether/v1/+/up/batch"
        a, got_a = await subscriber(broker, "portable", group, "ingest-a")
        b, got_b = await subscriber(broker, "paho", group, "ingest-b")
        pub = client(broker, "portable", "share-pub")
        await pub.connect()
        payloads = [b"s%04d" % i for i in range(400)]
        await publish_all(pub, lambda i: "tether/v1/dev-%d/up/batch" % (i % 8), payloads, 16)
        await until(lambda: len(got_a) + len(got_b) >= len(payloads))
        await asyncio.sleep(0.3)
        for c in (pub, a, b):
            await c.disconnect()
        assert got_a and got_b, "one subscriber got nothing: %d / %d" % (len(got_a), len(got_b))
        together = [p for _, p in got_a + got_b]
        assert sorted(together) == payloads  # each message to exactly one of them
        # they get the real topic, not the filter
        assert all(t.startswith("tether/v1/dev-") for t, _ in got_a + got_b)
    run(main())


def test_several_shared_filters_each_in_a_group_of_its_own_split_between_two_ingests(broker):
    """As an ingest subscribes: batch, event and health each shared. rumqttd keys a shared
    subscription by its group name alone, so each filter has a group of its own (in one group,
    only one of the filters would ever deliver: simulator/broker.py's doc)."""
    kinds = ("batch", "event", "health")

    async def main():
        subs = []
        for name, kind_of_client in (("a", "portable"), ("b", "paho")):
            got = []
            c = client(broker, kind_of_client, "multi-ingest-" + name)
            c.on_message = lambda t, p, r, got=got: got.append(p)
            await c.connect()
            for kind in kinds:
                assert await c.subscribe("$share/ingest-%s/multi/v1/+/up/%s" % (kind, kind)) == 1
            subs.append((c, got))
        pub = client(broker, "portable", "multi-pub")
        await pub.connect()
        payloads = [b"%s-%03d" % (kind.encode(), i) for kind in kinds for i in range(60)]
        await publish_all(pub, lambda i: "multi/v1/dev-%d/up/%s" % (i % 4, kinds[i // 60]),
                          payloads, 16)
        (a, got_a), (b, got_b) = subs
        await until(lambda: len(got_a) + len(got_b) >= len(payloads))
        await asyncio.sleep(0.3)
        for c in (pub, a, b):
            await c.disconnect()
        assert sorted(got_a + got_b) == sorted(payloads)
        for kind in kinds:
            assert any(p.startswith(kind.encode()) for p in got_a), kind
            assert any(p.startswith(kind.encode()) for p in got_b), kind
    run(main())


def test_persistent_session_gets_what_was_published_while_it_was_away(broker):
    ingest = PahoSession(broker, "ingest-persistent", clean_session=False)
    ingest.subscribe("tether/v1/+/up/batch")
    ingest.close()
    payloads = [b"q%03d" % i for i in range(100)]

    async def publish():
        for kind in CLIENTS:
            pub = client(broker, kind, "away-" + kind)
            await pub.connect()
            half = payloads[:50] if kind == "portable" else payloads[50:]
            await publish_all(pub, lambda i: "tether/v1/away-%s/up/batch" % kind, half, 8)
            await pub.disconnect()
    run(publish())
    back = PahoSession(broker, "ingest-persistent", clean_session=False)  # no SUBSCRIBE
    deadline = time.monotonic() + 10
    while len(back.got) < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    back.close()
    assert back.session_present
    assert [p for _, p in back.got] == payloads
    fresh = PahoSession(broker, "ingest-persistent", clean_session=True)  # discards the session
    fresh.close()
    assert not fresh.session_present


def test_200_concurrent_connections_each_publishing(broker):
    async def main():
        sub, got = await subscriber(broker, "portable", "tether/v1/+/up/batch", "many-sub")
        devices = [client(broker, "portable" if i % 2 else "paho", "many-%03d" % i,
                          max_packet=512) for i in range(200)]
        acked = []

        async def device(i, c):
            await c.connect()
            c.on_puback = acked.append
            await c.publish("tether/v1/many-%03d/up/batch" % i, b"%03d" % i + bytes(147), qos=1)
        await asyncio.gather(*(device(i, c) for i, c in enumerate(devices)))
        await until(lambda: len(acked) == 200 and len(got) == 200)
        assert all(c.connected for c in devices)
        await asyncio.gather(*(c.disconnect() for c in devices))
        await sub.disconnect()
        assert sorted(t for t, _ in got) == ["tether/v1/many-%03d/up/batch" % i for i in range(200)]
    run(main())


# --- its life cycle ----------------------------------------------------------------------------

def test_start_picks_a_free_loopback_port_and_stop_frees_it_for_a_restart():
    async def main():
        b = EmbeddedBroker()
        assert b.url is None
        await b.start()
        port = b.port
        assert b.url == "mqtt://127.0.0.1:%d" % port and b.running
        c = client(b, "portable", "life")
        await c.connect()   # start() returned: it accepts MQTT at once
        closed = asyncio.Event()
        c.on_close = lambda exc: closed.set()
        await b.stop()
        assert not b.running
        await asyncio.wait_for(closed.wait(), 5)  # its clients see the end
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        await b.start()     # a broker restart: the same port
        assert b.port == port
        c = client(b, "portable", "life")
        await c.connect()
        await c.disconnect()
        await b.stop()
    run(main())


def test_overlapping_restarts_from_concurrent_tasks_take_turns():
    async def main():
        b = EmbeddedBroker()
        await b.start()
        port = b.port

        async def restart():
            await b.stop()
            await b.start()
        await asyncio.gather(*(restart() for _ in range(3)))
        assert b.running and b.port == port
        c = client(b, "portable", "after-restarts")
        await c.connect()
        await c.disconnect()
        await b.stop()
    run(main())


def test_a_port_in_use_is_an_error_with_the_brokers_word():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        b = EmbeddedBroker(port=taken.getsockname()[1])
        with pytest.raises(BrokerError, match="in use"):
            run(b.start())
        assert not b.running


def test_a_restart_whose_port_was_taken_meanwhile_fails_instead_of_moving():
    # Its clients (a fleet's devices, its ingest) know that port alone: a broker moved to another
    # one left the ingest reconnecting to the old port and the run waiting for it.
    async def main():
        b = EmbeddedBroker()
        await b.start()
        port = b.port
        await b.stop()
        with socket.socket() as taken:
            # the broker's closed connections may leave the port in TIME_WAIT
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", port))
            taken.listen(1)
            with pytest.raises(BrokerError, match="in use"):
                await b.start()
        assert b.port == port and not b.running
    run(main())


def test_the_broker_process_ends_with_the_simulator_however_it_ends(tmp_path):
    """SIGKILL the process that started it: the broker notices its stdin pipe closing and exits,
    so no orphan keeps the port."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys, time
        sys.path.insert(0, %r)
        from simulator.broker import EmbeddedBroker
        async def main():
            b = EmbeddedBroker()
            await b.start()
            print(b.pid, b.port, flush=True)
            time.sleep(60)
        asyncio.run(main())
    """ % ROOT))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid, port = map(int, parent.stdout.readline().split())
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the broker outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid):
    """Running, and not a zombie waiting for whoever adopted it to reap it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
