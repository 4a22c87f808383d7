# The uplink: store-and-forward over MQTT, written once for both transports.
#
# It takes the oldest batches (and events) from the buffer, publishes them with QoS 1, keeps up
# to `window` of them in flight, and lets the buffer advance its cursor only on each PUBACK. A
# connection lost at any point loses nothing: the unacknowledged ones are handed out again,
# oldest first, after the next connect, byte-identical and with the DUP flag. It reconnects for
# as long as it runs, with exponential backoff and full jitter, and never makes the sampler wait.
# A connection that ends within stable_ms of its CONNACK counts as a failed attempt: a broker
# that accepts and then drops the device at once is retried at the backoff's growing pace, not
# in a tight loop.
#
# Repairs (docs/uplink.md): ranges of batches or events that the ingest asked for again are
# re-published from the log, byte-identical, on their normal topic, only when the live ones leave
# room in the window. Their PUBACKs do not move the log's cursor (the log acked them long ago).
#
# The client (agent/mqtt.py on a board, agent/host/paho_client.py on CPython) is made afresh for
# each connection by make_client(will), so no transport keeps messages of its own across a
# dropped connection: the buffer is the only queue.
import asyncio
import random

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_BATCH = const(0)
_EVENT = const(1)
QUICK_RETRIES = const(5)  # reconnects tried at the minimum backoff before it starts to double
REPAIR_RANGES = const(32)  # ranges waiting to be re-sent, at most: two commands' worth
MAX_WAITING = const(8)     # commands waiting to be run, at most
ONLINE = b"online"
REFUSED_CMD = "the broker refused the subscription to %s: commands cannot reach the device"
OFFLINE = b"offline"


class Topics:
    def __init__(self, prefix, device):
        base = "%s/%s/" % (prefix, device)
        self.batch = base + "up/batch"
        self.event = base + "up/event"
        self.health = base + "up/health"
        self.schema = base + "up/schema"
        self.status = base + "status"
        self.cmd = base + "down/cmd"


class Uplink:
    def __init__(self, make_client, buffer, events, topics, clock, window=4,
                 backoff_min_ms=1000, backoff_max_ms=300000, schema=None, on_command=None,
                 health=None, health_ms=300000, ack_timeout_ms=30000, rng=None, wall=None,
                 stable_ms=10000):
        """make_client(will) -> a client not yet connected (agent/mqtt.py's interface);
        buffer: agent.buffer.Buffer; events: agent.events.Events or None; clock: the device's
        (agent.clock), which times health reports; wall: the clock network timeouts are measured
        on, the real one by default (they differ in the simulator, whose device time runs fast);
        schema: the schema document compact batches need (published retained), or None;
        on_command(payload, retained, size, limit) -> an awaitable of (reply bytes or None,
        then or None), then() being called once the reply is published (agent.commands:
        size and limit are None but for a command larger than the client takes, of which
        payload is then the first bytes); health(uplink) -> the health message bytes;
        ack_timeout_ms: a connection whose oldest message in flight gets no PUBACK for this long
        is dropped and made again (a broker that accepts and never acknowledges);
        stable_ms: a connection that ends sooner after its CONNACK counts as a failure."""
        self.make_client = make_client
        self.buffer = buffer
        self.events = events
        self.topics = topics
        self.clock = clock
        if wall is None:
            from agent.clock import SystemClock
            wall = SystemClock()
        self.wall = wall
        self.window = window
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.schema = schema
        self.on_command = on_command
        self.health = health
        self.health_ms = health_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.stable_ms = stable_ms
        self.progress_at = 0     # when a PUBACK last came, or the window last started filling
        self.rng = rng or random
        self.client = None
        self.inflight = {}       # packet id -> (kind, seq, a repair)
        self.repairs = []        # [kind, from, to] waiting to be re-sent, oldest first
        # PUBACKs that came while a batch's or event's publish() was still running; None
        # between them (kept always, a device that published only health reports, statuses and
        # replies grew it by one a report for good: 35 KB a month on a board)
        self.early = None
        self.told = False        # the earlier profiles' schema documents published (a repair's)
        self.sent = [-1, -1]     # highest seq ever published, per kind: a lower one is a re-send
        self.health_now = False  # report_health() was called
        self.wakeup = asyncio.Event()
        self.stopped = asyncio.Event()
        self.commands = []       # downlink commands not yet handled: on_command's arguments
        self.stopping = False
        # For health reports.
        self.connects = 0
        self.reconnects = 0
        self.last_error = None
        self.errors = 0            # failed attempts and lost connections: each last_error
        self.published = 0
        self.acked = 0
        self.stalled = False     # the connection ended by ack_timeout
        # SenML profiles: fn() -> the channels' schema document, for compact batches an
        # earlier profile left in the buffer
        self.compact_doc = None
        self.told_compact = False
        self.too_large = 0       # incoming messages larger than the client takes, read past
        self.commands_dropped = 0  # commands that came while MAX_WAITING waited

    def notify(self):
        """Something new to send (a batch, an event, a flush): the buffer and events call it."""
        self.wakeup.set()

    def report_health(self):
        """A health report goes out at once (when not connected, the one every connect sends
        stands for it), and the next periodic one health_ms later: how the ingest learns the
        newest sequence numbers when no periodic report is due soon."""
        self.health_now = True
        self.wakeup.set()

    @property
    def connected(self):
        return self.client is not None and self.client.connected

    # -- the connection loop -------------------------------------------------------------------

    async def run(self):
        """Connects, drains, reconnects, until stop()."""
        failures = 0
        while not self.stopping:
            client = None
            connected_at = None
            try:
                client = self.make_client((self.topics.status, OFFLINE, 1, True))
                client.on_puback = self._puback
                client.on_message = self._message
                client.on_too_large = self._too_large
                client.on_close = self._closed
                await client.connect()
                connected_at = self.wall.monotonic()
                self.client = client
                self.connects += 1
                if self.connects > 1:
                    self.reconnects += 1
                await client.publish(self.topics.status, ONLINE, 1, True)
                try:
                    await client.subscribe(self.topics.cmd, 1)
                except Exception as exc:
                    # MQTTError's code (agent.mqtt is not imported here: a board's heap)
                    if getattr(exc, "code", None) != 0x80:
                        raise
                    # A broker whose policy denies it (AWS IoT, EMQX, HiveMQ, a Mosquitto
                    # ACL): the data still goes; commands come once a connection gets it.
                    self.last_error = REFUSED_CMD % self.topics.cmd
                    self.errors += 1
                self.told = self.told_compact = False
                if self.schema is not None:
                    # not retained: the profile's own stays the topic's retained one
                    for doc in self.buffer.earlier_schemas():
                        await client.publish(self.topics.schema, doc, 1, False)
                    await client.publish(self.topics.schema, self.schema, 1, True)
                await self._pump(client)
            except Exception as exc:  # OSError, MQTTError, a timeout: every failure retries
                self.last_error = describe(exc)
                self.errors += 1
                if getattr(exc, "unresolved", False):
                    # No quick retries: on a board each failed lookup held up sampling for some
                    # 14 s, and five of them at the minimum backoff took most of a minute's
                    # readings. A broker restart, what quick retries are for, resolves.
                    failures = max(failures, QUICK_RETRIES)
            self._drop(client)
            if self.stopping:
                break
            # A connection the device gave up for want of PUBACKs is a failure however long it
            # lasted (ack_timeout is longer than stable_ms): a broker that never acknowledges
            # was met at the minimum backoff, for as long as it lasted.
            if connected_at is not None and not self.stalled \
                    and self.wall.monotonic() - connected_at >= self.stable_ms:
                failures = 0
            self.stalled = False
            # Full jitter (a random delay up to the capped exponential): a fleet that lost its
            # broker together does not come back together. The first five retries (2.5-5 s)
            # stay at the minimum: most outages are a broker restart of seconds, and doubling
            # from the first retry kept devices away for 4-8 s after a 2 s one
            # (bench/recovery.py).
            cap = min(self.backoff_max_ms,
                      self.backoff_min_ms << min(max(failures + 1 - QUICK_RETRIES, 0), 20))
            failures += 1
            await self._sleep(self.rng.randint(self.backoff_min_ms // 2, max(cap, 1)))

    async def _sleep(self, ms):
        # Not on `wakeup`: new readings must not cut a backoff short.
        try:
            await asyncio.wait_for(self.stopped.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass

    def _drop(self, client):
        self.client = None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        # Repairs in flight go back to the front of their queue: sent again after the connect.
        back = []
        for pid in self.inflight:
            kind, seq, repair = self.inflight[pid]
            if repair:
                back.append([kind, seq, seq])
        back.sort(key=_seq_of_range)
        self.repairs = back + self.repairs
        self.inflight = {}
        self.buffer.rewind()
        if self.events is not None:
            self.events.rewind()

    async def stop(self, graceful=True):
        """Ends run(); graceful: publishes `offline` and disconnects (no will)."""
        self.stopping = True
        self.stopped.set()
        client = self.client
        if client is not None and client.connected and graceful:
            try:
                await client.publish(self.topics.status, OFFLINE, 1, True)
                await client.disconnect()
            except Exception:
                pass
        self.wakeup.set()

    # -- while connected -----------------------------------------------------------------------

    def _queued(self):
        return self.buffer.log.unacked + (self.events.log.unacked if self.events else 0)

    async def _pump(self, client):
        clock = self.clock
        health_due = clock.monotonic()
        # A backlog at connect: health goes out again once it is delivered, so the ingest learns
        # the newest sequence numbers at once. A broker that loses part of a backlog (a restart,
        # a full queue) loses the health report sent at connect with it, and no later batch
        # would show the tail missing until the next report.
        backlog = self._queued() > 0
        while client.connected and not self.stopping:
            self.wakeup.clear()
            while self.commands:
                await self._command(client, self.commands.pop(0))
            await self._fill(client)
            now = clock.monotonic()
            if backlog and not self.inflight and not self._queued():
                backlog = False
                health_due = now
            if self.health is not None and (now >= health_due or self.health_now):
                self.health_now = False
                await client.publish(self.topics.health, self.health(self), 1)
                health_due = now + self.health_ms
            if not client.connected:
                break
            wait = health_due - now
            if self.inflight:
                left = self.progress_at + self.ack_timeout_ms - self.wall.monotonic()
                if left <= 0:
                    self.stalled = True
                    raise OSError("no PUBACK for %d ms (uplink.ack_timeout)" % self.ack_timeout_ms)
                wait = min(wait, left)
            try:
                await asyncio.wait_for(self.wakeup.wait(), max(wait, 1) / 1000)
            except asyncio.TimeoutError:
                pass

    async def _fill(self, client):
        """Publishes the oldest unsent events, then batches, then repairs, up to the window."""
        while len(self.inflight) < self.window and client.connected:
            repair = False
            kind = _EVENT
            item = self.events.next_event() if self.events is not None else None
            if item is None:
                kind = _BATCH
                item = self.buffer.next_batch()
            if item is None:
                item = self._next_repair()
                if item is None:
                    return
                kind, seq, data = item
                repair = True
                if kind == _BATCH and self.schema is not None and not self.told:
                    # one made under an earlier profile needs that document, published
                    # unretained the first time and maybe lost with the batch: those kept, once
                    # a connection, before the first batch sent again
                    self.told = True
                    for doc in self.buffer.kept_schemas():
                        await client.publish(self.topics.schema, doc, 1, False)
            else:
                seq, data = item
            if kind == _BATCH and self.compact_doc is not None and not self.told_compact:
                from agent.batch import compact
                if compact(data):
                    # a SenML profile's, left waiting by a compact one before it: its
                    # documents, unretained (a SenML device's topic keeps none), once a
                    # connection
                    self.told_compact = True
                    for doc in self.buffer.kept_schemas():
                        await client.publish(self.topics.schema, doc, 1, False)
                    await client.publish(self.topics.schema, self.compact_doc(), 1, False)
            if not self.inflight:
                self.progress_at = self.wall.monotonic()
            dup = seq <= self.sent[kind] and not repair
            # A PUBACK may come back before publish() returns (a client that yields after
            # writing): _puback keeps such early ones here until the packet id is known.
            self.early = []
            try:
                pid = await client.publish(self.topics.batch if kind == _BATCH
                                           else self.topics.event, data, 1, False, dup)
            finally:
                early, self.early = self.early, None
            self.inflight[pid] = (kind, seq, repair)
            if pid in early:
                self._puback(pid)
            if seq > self.sent[kind]:
                self.sent[kind] = seq
            self.published += 1

    def _next_repair(self):
        """(kind, seq, bytes) of the next repair the log still holds, or None."""
        while self.repairs:
            r = self.repairs[0]
            kind, seq = r[0], r[1]
            if seq == r[2]:
                self.repairs.pop(0)
            else:
                r[1] = seq + 1
            log = self.buffer.log if kind == _BATCH else self.events.log
            # One the log has not had acked yet goes out anyway, through next_batch().
            if seq <= log.acked:
                data = log.held(seq)
                if data is not None:  # else the space was needed since the request
                    return kind, seq, data
        return None

    def repair(self, kind, ranges):
        """Queues ranges ([from, to], inclusive) of batches (kind "batch") or events ("event")
        to be re-published. Returns False, queueing nothing, when there is no room."""
        k = _BATCH if kind == "batch" else _EVENT
        new = []
        for a, b in ranges:
            for r in self.repairs:
                if r[0] == k and r[1] <= a and b <= r[2]:
                    break  # asked again while waiting: already queued
            else:
                new.append([k, a, b])
        if len(self.repairs) + len(new) > REPAIR_RANGES:
            return False
        self.repairs += new
        self.wakeup.set()
        return True

    def _puback(self, pid):
        entry = self.inflight.pop(pid, None)
        if entry is None:
            if self.early is not None:  # too early, or a status, schema, health or reply
                self.early.append(pid)
            return
        kind, seq, repair = entry
        self.progress_at = self.wall.monotonic()
        # A repair's batch was acked long ago: the log's cursor is not its business.
        if not repair:
            if kind == _BATCH:
                self.buffer.ack(seq)
            else:
                self.events.ack(seq)
        self.acked += 1
        self.wakeup.set()

    def _closed(self, exc):
        if exc is not None:
            self.last_error = describe(exc)
            self.errors += 1
        self.wakeup.set()

    def _message(self, topic, payload, retain):
        self._queue(topic, (payload, retain, None, None))

    def _too_large(self, topic, size, limit, head, retain):
        self.too_large += 1
        self._queue(topic, (head, retain, size, limit))

    def _queue(self, topic, command):
        if topic != self.topics.cmd:
            return
        # A flood of commands cannot fill the heap: past a few waiting, they are dropped,
        # unanswered (a reply would need the heap the flood is kept from) but counted.
        if len(self.commands) < MAX_WAITING:
            self.commands.append(command)
            self.wakeup.set()
        else:
            self.commands_dropped += 1

    async def _command(self, client, command):
        if self.on_command is None:
            return
        reply, then = await self.on_command(*command)
        if reply is not None:
            await client.publish(self.topics.event, reply, 1)
        if then is not None:
            then()


def _seq_of_range(r):
    return r[1]


def describe(exc):
    """An exception in words: its type, and its text when it has one."""
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
