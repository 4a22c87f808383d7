# agent/uplink.py against a fake client with the MQTT client's interface: the window, acks that
# advance the buffer, a dropped connection that re-sends the unacked batches with DUP, birth and
# will, commands, health, backoff. Both interpreters; the real brokers are in tests/test_uplink*.
MICROPYTHON_HEAP = "128k"

import asyncio

from agent import batch
from agent.buffer import Buffer
from agent.clock import FakeClock
from agent.log import Log
from agent.schema import Schema
from agent.store import RamStore
from agent.uplink import Topics, Uplink

SCHEMA = Schema([("a", "", 1, 0)])


class FakeClient:
    """The client interface, in memory. The test plays the broker: it acks, drops, refuses."""
    made = []

    def __init__(self, will, refuse=False):
        self.will = will
        self.refuse = refuse
        self.connected = False
        self.on_puback = None
        self.on_message = None
        self.on_close = None
        self.sent = []          # (pid, topic, payload, qos, retain, dup)
        self.subscribed = []
        self.pid = 0
        self.closed = False
        FakeClient.made.append(self)

    async def connect(self):
        await asyncio.sleep(0)
        if self.refuse:
            raise OSError(111, "connection refused")
        self.connected = True

    async def publish(self, topic, payload, qos=1, retain=False, dup=False):
        if not self.connected:
            raise OSError(32, "not connected")
        self.pid += 1
        self.sent.append((self.pid, topic, bytes(payload), qos, retain, dup))
        return self.pid

    async def subscribe(self, topic, qos=1):
        self.subscribed.append(topic)

    async def disconnect(self):
        self.connected = False

    def close(self):
        self.connected = False
        self.closed = True

    def drop(self):
        """The broker goes away."""
        self.connected = False
        self.on_close(OSError(104, "reset"))

    def batches(self):
        return [(pid, batch.seq_of(p), dup) for pid, t, p, q, r, dup in self.sent
                if t.endswith("/up/batch")]


def make_buffer(n_batches):
    log = Log(RamStore(), 1 << 20, 1 << 16, batch.seq_of)
    buf = Buffer(log, batch.Encoder("dev", SCHEMA, "compact", False, 512, 4), 4, 600000, 4, 600000)
    buf.open()
    for i in range(4 * n_batches):
        buf.append(1000 * i, 0, i)
    return buf


def uplink(buf, refuse_first=0, window=3):
    FakeClient.made = []
    state = {"n": 0}

    def make(will):
        state["n"] += 1
        return FakeClient(will, refuse=state["n"] <= refuse_first)

    class Rng:
        def randint(self, a, b):
            return b
    clock = FakeClock()
    up = Uplink(make, buf, None, Topics("tether/v1", "dev"), clock, window=window,
                backoff_min_ms=2, backoff_max_ms=16, rng=Rng(), wall=clock)
    buf.notify = up.notify
    return up


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


def run(coro):
    asyncio.run(coro)


async def connection(i):
    """The i-th client, once connected (the backoff before it is a few ms of real time)."""
    for _ in range(5000):
        if len(FakeClient.made) > i and FakeClient.made[i].connected:
            return FakeClient.made[i]
        await asyncio.sleep(0.001)
    raise AssertionError("no connection %d" % i)


def test_a_window_of_batches_goes_out_and_each_puback_advances_the_buffer():
    async def main():
        buf = make_buffer(5)
        up = uplink(buf)
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        assert [s for _, s, _ in c.batches()] == [0, 1, 2]  # the window: 3 in flight
        assert c.sent[0][1:5] == ("tether/v1/dev/status", b"online", 1, True)
        assert c.will == ("tether/v1/dev/status", b"offline", 1, True)
        assert c.subscribed == ["tether/v1/dev/down/cmd"]
        c.on_puback(c.batches()[0][0])
        await settle()
        assert [s for _, s, _ in c.batches()] == [0, 1, 2, 3]
        assert buf.log.acked == 0 and buf.log.unacked == 4
        for pid, _, _ in c.batches()[1:]:
            c.on_puback(pid)
        await settle()
        for pid, _, _ in c.batches()[4:]:
            c.on_puback(pid)
        await settle()
        assert buf.log.unacked == 0 and buf.log.acked == 4
        await up.stop()
        await task
        assert c.sent[-1][1:5] == ("tether/v1/dev/status", b"offline", 1, True)
    run(main())


def test_a_dropped_connection_resends_every_unacked_batch_in_order_with_dup():
    async def main():
        buf = make_buffer(4)
        up = uplink(buf)
        task = asyncio.create_task(up.run())
        await settle()
        c1 = FakeClient.made[0]
        c1.on_puback(c1.batches()[1][0])  # seq 1 acked out of order, seq 0 and 2 not
        c1.drop()
        for _ in range(10):
            await asyncio.sleep(0.005)
        c2 = FakeClient.made[1]
        assert c1.closed
        got = c2.batches()
        assert [(s, d) for _, s, d in got] == [(0, True), (1, True), (2, True)]
        for pid, _, _ in got:
            c2.on_puback(pid)
        await settle()
        assert [(s, d) for _, s, d in c2.batches()[3:]] == [(3, False)]
        assert up.reconnects == 1 and "reset" in up.last_error
        await up.stop()
        await task
    run(main())


def test_connect_failures_back_off_and_batches_wait_in_the_buffer():
    async def main():
        buf = make_buffer(2)
        up = uplink(buf, refuse_first=4)
        task = asyncio.create_task(up.run())
        for _ in range(40):
            await asyncio.sleep(0.005)
        assert len(FakeClient.made) == 5 and FakeClient.made[4].connected
        assert "refused" in up.last_error
        assert [s for _, s, _ in FakeClient.made[4].batches()] == [0, 1]
        await up.stop()
        await task
    run(main())


def test_a_new_batch_wakes_the_uplink_at_once():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        assert c.batches() == []
        for i in range(4):
            buf.append(1000 * i, 0, i)  # the 4th reading closes a batch
        await settle()
        assert [s for _, s, _ in c.batches()] == [0]
        await up.stop()
        await task
    run(main())


def test_commands_are_answered_on_the_event_topic():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        seen = []

        async def on_command(payload, retained, size, limit):
            seen.append(payload)
            return b"reply:" + payload, lambda: seen.append("then")
        up.on_command = on_command
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        c.on_message("tether/v1/dev/down/cmd", b"x", False)
        c.on_message("tether/v1/other/down/cmd", b"not mine", False)
        await settle()
        assert seen == [b"x", "then"]
        assert c.sent[-1][1:4] == ("tether/v1/dev/up/event", b"reply:x", 1)
        await up.stop()
        await task
    run(main())


def test_a_command_too_large_for_the_client_is_counted_and_handed_on_with_its_size():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        seen = []

        async def on_command(payload, retained, size, limit):
            seen.append((payload, retained, size, limit))
            return (None if retained else b"error"), None
        up.on_command = on_command
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        c.on_too_large("tether/v1/dev/down/cmd", 100000, 2018, b"head", False)
        c.on_too_large("tether/v1/dev/down/cmd", 3000, 2018, b"head2", True)
        c.on_too_large("tether/v1/other/down/cmd", 5000, 2016, b"theirs", False)
        c.on_message("tether/v1/dev/down/cmd", b"small", True)
        await settle()
        assert seen == [(b"head", False, 100000, 2018), (b"head2", True, 3000, 2018),
                        (b"small", True, None, None)]
        assert up.too_large == 3  # every message read past counts, whatever its topic
        # a command answered with None (a repeat, a retained one) gets no reply at all
        assert [p for _, t, p, _, _, _ in c.sent if t.endswith("/up/event")] == [b"error"]
        await up.stop()
        await task
    run(main())


def backoff_caps(up):
    """The list each backoff's cap goes into (the delay drawn is the least under it)."""
    caps = []

    class Rng:
        def randint(self, a, b):
            caps.append(b)
            return a
    up.rng = Rng()
    return caps


def test_a_connection_that_ends_soon_after_connack_counts_as_a_failure_for_the_backoff():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        clock = up.clock
        caps = backoff_caps(up)
        up.stable_ms = 5000
        task = asyncio.create_task(up.run())
        # Eight connections, each dropped by the broker at once (as a retained command that
        # made the client fail did): each counts as a failure, and after the five quick retries
        # the backoff grows.
        for i in range(8):
            (await connection(i)).drop()
        # The ninth holds for stable_ms: the backoff after it starts again from the bottom.
        c = await connection(8)
        clock.advance(5000)
        c.drop()
        await connection(9)
        assert caps == [2, 2, 2, 2, 2, 4, 8, 16, 2]
        assert up.connects == 10
        await up.stop()
        await task
    run(main())


class Unresolved(OSError):
    """What agent.mqtt's client raises for a broker name that does not resolve."""
    unresolved = True


class NoSuchName(FakeClient):
    async def connect(self):
        await asyncio.sleep(0)
        raise Unresolved("cannot resolve broker.invalid (DNS error -202)")


def test_a_broker_name_that_does_not_resolve_is_retried_without_quick_retries():
    # On a board each failed lookup blocks sampling for some 14 s: five quick retries of it
    # took most of a minute's readings.
    async def main():
        buf = make_buffer(1)
        up = uplink(buf)
        caps = backoff_caps(up)
        made = []

        def make(will):
            made.append(will)
            return (NoSuchName if len(made) < 4 else FakeClient)(will)
        up.make_client = make
        task = asyncio.create_task(up.run())
        await connection(3)
        assert up.last_error == "Unresolved: cannot resolve broker.invalid (DNS error -202)"
        assert caps == [4, 8, 16] and up.errors == 3  # doubling from the first retry
        await up.stop()
        await task
    run(main())


def test_health_goes_out_on_connect_and_schema_is_retained():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        up.health = lambda u: b"health %d" % u.connects
        up.schema = SCHEMA.to_cbor()
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        topics = [(t, p, r) for _, t, p, q, r, d in c.sent]
        assert ("tether/v1/dev/up/schema", SCHEMA.to_cbor(), True) in topics
        assert ("tether/v1/dev/up/health", b"health 1", False) in topics
        await up.stop()
        await task
    run(main())


def test_a_device_that_publishes_only_health_keeps_no_list_of_its_pubacks():
    # Every PUBACK not of a batch or event in flight was kept, and only a batch's publish
    # emptied the list: a device whose sensors all failed grew it by one a report for good
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        up.health = lambda u: b"health"
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        for _ in range(50):
            up.report_health()
            await settle()
            c.on_puback(c.sent[-1][0])
        await settle()
        assert len([1 for _, t, p, q, r, d in c.sent if t.endswith("/up/health")]) == 51
        assert up.early is None
        await up.stop()
        await task
    run(main())


class AcksWhilePublishing(FakeClient):
    """A broker whose PUBACK comes before publish() returns the packet id."""

    async def publish(self, topic, payload, qos=1, retain=False, dup=False):
        pid = await FakeClient.publish(self, topic, payload, qos, retain, dup)
        if topic.endswith("/up/batch"):
            self.on_puback(pid)
        return pid


def test_a_puback_that_comes_before_its_publish_returns_still_acks_the_batch():
    async def main():
        buf = make_buffer(2)
        up = uplink(buf)
        up.make_client = AcksWhilePublishing
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        assert [seq for _, seq, _ in c.batches()] == [0, 1]
        assert up.acked == 2 and buf.log.acked == 1 and not up.inflight
        assert up.early is None
        await up.stop()
        await task
    run(main())


def test_health_goes_out_again_once_the_backlog_at_connect_is_delivered():
    async def main():
        buf = make_buffer(3)
        up = uplink(buf)
        up.health = lambda u: b"health %d" % u.acked
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        health = lambda: [p for _, t, p, q, r, d in c.sent if t.endswith("/up/health")]  # noqa
        assert health() == [b"health 0"]
        for pid, seq, _ in c.batches()[:2]:
            c.on_puback(pid)
            await settle()
        assert health() == [b"health 0"]  # batch 2 is still on its way
        pid, seq, _ = c.batches()[2]
        c.on_puback(pid)
        await settle()
        assert seq == 2 and health() == [b"health 0", b"health 3"]
        buf.append(20000, 0, 1)  # a batch formed while connected is no backlog
        buf.cut()
        await settle()
        c.on_puback(c.batches()[-1][0])
        await settle()
        assert health() == [b"health 0", b"health 3"]
        await up.stop()
        await task
    run(main())


def test_a_health_report_asked_for_goes_out_at_once_and_once_per_call():
    async def main():
        buf = make_buffer(0)
        up = uplink(buf)
        up.health = lambda u: b"health %d" % u.connects
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        health = lambda: [p for _, t, p, q, r, d in c.sent if t.endswith("/up/health")]  # noqa
        assert health() == [b"health 1"]
        await settle()
        assert health() == [b"health 1"]  # the next is due in health_ms
        up.report_health()
        await settle()
        assert health() == [b"health 1", b"health 1"]
        await settle()
        assert len(health()) == 2  # once per call
        await up.stop()
        await task
    run(main())


def test_a_broker_that_never_acknowledges_is_left_and_the_batches_go_again():
    async def main():
        buf = make_buffer(2)
        up = uplink(buf)
        clock = up.clock
        up.ack_timeout_ms = 1000
        task = asyncio.create_task(up.run())
        await settle()
        c1 = FakeClient.made[0]
        assert [s for _, s, _ in c1.batches()] == [0, 1]
        clock.advance(999)
        up.notify()
        await settle()
        assert len(FakeClient.made) == 1  # not yet
        clock.advance(1)
        up.notify()
        for _ in range(10):
            await asyncio.sleep(0.005)
        assert c1.closed and "no PUBACK for 1000 ms" in up.last_error
        c2 = FakeClient.made[1]
        assert [(s, d) for _, s, d in c2.batches()] == [(0, True), (1, True)]
        await up.stop()
        await task
    run(main())


def test_connections_left_for_want_of_pubacks_count_as_failures_however_long_they_lasted():
    # ack_timeout (30 s by default) is longer than stable_ms: every connection given up on a
    # broker that never acknowledges counted as a good one, and the device came back at the
    # minimum backoff, republishing its window, for as long as the fault lasted.
    async def main():
        buf = make_buffer(2)
        up = uplink(buf)
        clock = up.clock
        caps = backoff_caps(up)
        up.stable_ms = 500
        up.ack_timeout_ms = 1000
        task = asyncio.create_task(up.run())
        for i in range(8):
            await connection(i)
            clock.advance(1000)
            up.notify()
        await connection(8)
        assert caps == [2, 2, 2, 2, 2, 4, 8, 16]
        assert "no PUBACK for 1000 ms" in up.last_error
        await up.stop()
        await task
    run(main())


def test_a_puback_that_comes_before_publish_returns_still_acks_its_batch():
    class EagerClient(FakeClient):
        async def publish(self, topic, payload, qos=1, retain=False, dup=False):
            pid = await FakeClient.publish(self, topic, payload, qos, retain, dup)
            if topic.endswith("/up/batch"):
                self.on_puback(pid)  # the broker was quicker than our return
            return pid

    async def main():
        buf = make_buffer(3)
        up = uplink(buf)
        up.make_client = lambda will: EagerClient(will)
        task = asyncio.create_task(up.run())
        await settle()
        assert buf.log.unacked == 0 and buf.log.acked == 2
        await up.stop()
        await task
    run(main())


def test_a_client_that_cannot_be_made_is_retried_not_fatal():
    async def main():
        buf = make_buffer(1)
        up = uplink(buf)
        made = []

        def make(will):
            made.append(will)
            if len(made) < 3:
                raise MemoryError("no room for the client's buffers")
            return FakeClient(will)
        up.make_client = make
        task = asyncio.create_task(up.run())
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert len(made) == 3 and up.connected and "MemoryError" in up.last_error
        await up.stop()
        await task
    run(main())


def publish_all_and_ack(up, c):
    """Acks every batch c carries until nothing is left in flight."""
    async def main():
        while True:
            await settle()
            pending = [pid for pid, _, _ in c.batches() if pid in up.inflight]
            if not pending:
                return
            for pid in pending:
                c.on_puback(pid)
    return main()


def test_a_repair_goes_out_byte_identical_behind_live_batches_and_leaves_the_ack_cursor():
    async def main():
        buf = make_buffer(6)
        up = uplink(buf)
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        await publish_all_and_ack(up, c)
        assert buf.log.acked == 5 and buf.log.unacked == 0
        first = dict((batch.seq_of(p), p) for _, t, p, q, r, d in c.sent if t.endswith("/batch"))
        n = len(c.sent)
        # Two live batches and a repair of three old ones wait together: live ones go first.
        assert up.repair("batch", [[1, 3]])
        for i in range(24, 32):
            buf.append(1000 * i, 0, i)
        await settle()
        new = c.sent[n:]
        assert [(batch.seq_of(p), q, r) for _, t, p, q, r, d in new] == [
            (6, 1, False), (7, 1, False), (1, 1, False)]  # the window (3) is full
        await publish_all_and_ack(up, c)
        repairs = [(batch.seq_of(p), p, t) for _, t, p, q, r, d in c.sent[n + 2:]]
        assert [s for s, _, _ in repairs] == [1, 2, 3]
        for seq, payload, topic in repairs:
            assert topic == "tether/v1/dev/up/batch" and payload == first[seq]
        # The repairs' PUBACKs moved nothing: the cursor is where the live acks left it.
        assert buf.log.acked == 7 and buf.log.unacked == 0 and up.repairs == []
        await up.stop()
        await task
    run(main())


def test_a_repaired_batch_of_an_earlier_profile_goes_out_behind_its_schema_document():
    # After a profile change the old document is published, unretained, before the batches made
    # under it; a resend of one of them later went out alone, and no backend could decode it.
    from agent import schema_change
    async def main():
        buf = make_buffer(4)
        schema_change._write(buf.store, [(2, b"old-schema")])   # batches 0-2: the old profile
        up = uplink(buf)
        up.schema = b"new-schema"
        task = asyncio.create_task(up.run())
        await settle()
        c = FakeClient.made[0]
        await publish_all_and_ack(up, c)
        n = len(c.sent)
        assert up.repair("batch", [[1, 3]])
        await settle()
        await publish_all_and_ack(up, c)
        got = [(t.rsplit("/", 1)[1], p if t.endswith("/schema") else batch.seq_of(p))
               for _, t, p, q, r, d in c.sent[n:]]
        assert got == [("schema", b"old-schema"), ("batch", 1), ("batch", 2), ("batch", 3)]
        n = len(c.sent)
        assert up.repair("batch", [[0, 0]])   # once a connection: not again
        await settle()
        await publish_all_and_ack(up, c)
        assert [t.rsplit("/", 1)[1] for _, t, p, q, r, d in c.sent[n:]] == ["batch"]
        await up.stop()
        await task
    run(main())


def test_repairs_in_flight_when_the_connection_drops_go_again_after_the_reconnect():
    async def main():
        buf = make_buffer(4)
        up = uplink(buf)
        task = asyncio.create_task(up.run())
        await settle()
        c1 = FakeClient.made[0]
        await publish_all_and_ack(up, c1)
        sent = dict((batch.seq_of(p), p) for _, t, p, q, r, d in c1.sent if t.endswith("/batch"))
        assert up.repair("batch", [[0, 3]])
        await settle()
        assert [s for _, s, _ in c1.batches()][4:] == [0, 1, 2]
        c1.on_puback(c1.batches()[4][0])  # repair 0 arrived; 1 and 2 did not
        c1.drop()
        for _ in range(10):
            await asyncio.sleep(0.005)
        c2 = FakeClient.made[1]
        await publish_all_and_ack(up, c2)
        got = [(batch.seq_of(p), p) for _, t, p, q, r, d in c2.sent if t.endswith("/batch")]
        assert [s for s, _ in got] == [1, 2, 3]
        assert all(p == sent[s] for s, p in got)
        assert buf.log.acked == 3 and up.repairs == []
        await up.stop()
        await task
    run(main())


def test_the_repair_queue_is_bounded_and_a_range_already_waiting_is_not_queued_twice():
    buf = make_buffer(0)
    up = uplink(buf)
    assert up.repair("batch", [[0, 100]])
    assert up.repair("batch", [[10, 20], [0, 100]])  # inside what waits: nothing new
    assert up.repairs == [[0, 0, 100]]
    for i in range(31):
        assert up.repair("event", [[i * 2, i * 2]])
    assert not up.repair("batch", [[500, 500]])
    assert len(up.repairs) == 32
