"""The reference ingest: Tether batches, events and health from an MQTT broker into a database.

The cloud side a platform engineer starts from (docs/ingest.md). Several processes split one
fleet through an MQTT shared subscription and may share one database (a SQLite file in WAL mode,
or PostgreSQL: ingest/store):

    from ingest import Ingest, summary
    ingest = Ingest("localhost", 1883, "fleet.sqlite")
    ingest.start()            # connected and subscribed
    ...
    ingest.wait_idle(30)      # nothing arrived for a moment, and all of it is stored
    ingest.stop()
    summary("fleet.sqlite")   # per device: readings, batches, duplicates, gaps, dropped ...

Every message is stored in a transaction before the broker gets its PUBACK (paho's manual
acknowledgements), so a crash never loses what the broker believes delivered; a batch that
arrives twice (a re-send after a lost PUBACK, a restarted ingest) is stored once and counted as
a duplicate, across processes, by the primary key (device, seq). This module holds the paho
client's life cycle and the writer thread; ingest/handlers.py what each message stores.

    tether ingest --broker mqtt://localhost:1883 --db fleet.sqlite
"""
import logging
import queue
import threading
import time

from agent import cbor

from ingest import decode, topics
from ingest import repair as repair_mod
from ingest.decode import Schemas, schema as read_schema
from ingest.handlers import Delta, Handlers, Retry, one_line
from ingest.store import StoreError, client_base, open_store

log = logging.getLogger("tether.ingest")


class _LogLimit:
    """At most `burst` lines per `window` seconds, then one line saying how many were left out."""

    def __init__(self, burst=20, window=10.0):
        self.burst = burst
        self.window = window
        self.start = 0.0
        self.lines = 0
        self.skipped = 0

    def __call__(self, level, msg, *args):
        if not log.isEnabledFor(level):
            return  # not shown: it takes none of the burst
        now = time.monotonic()
        if now - self.start >= self.window:
            if self.skipped:
                log.warning("%d more lines like these (malformed messages, devices' new logs, "
                            "refused repairs) were not logged", self.skipped)
            self.start, self.lines, self.skipped = now, 0, 0
        if self.lines < self.burst:
            self.lines += 1
            log.log(level, msg, *args)
        else:
            self.skipped += 1


_STOP = object()
MAX_QUEUED = 64 << 20  # payload bytes waiting for the writer (a group's worth many times over)
REFUSALS = 3  # attempts of a group the database refuses before its messages go one by one
LEAVE_S = 10.0  # stop(leave=True): how long the broker may take to answer the UNSUBSCRIBE
# A first connect with no session warns of another id's session only when that id stored the
# database's newest batch longer ago than this: sooner, it is likely a hot standby's other half
QUIET_S = 600.0


class Cut(bytes):
    """The first bytes of a payload too large to be any Tether message; len() is its size (the
    bytes it holds are bytes.__len__'s: what the queue counts)."""

    def __new__(cls, head, size):
        cut = bytes.__new__(cls, head)
        cut.size = size
        return cut

    def __len__(self):
        return self.size


class TLSFileError(RuntimeError):
    """A --ca, --cert or --key that does not load: the command's mistake, not the network's."""


class Ingest(Handlers):
    """Subscribes, decodes, de-duplicates and stores; see the module docstring and docs/ingest.md.

    tls: None (plain MQTT), True (the system's CAs), an ssl.SSLContext, or a dict with `ca` and
    optionally `cert`/`key` (mutual TLS). client_id: None takes a fixed id per process slot
    (Store.slot); persistent=False asks for a clean session instead of a persistent one.
    group=None (the default) subscribes without a shared subscription: one process, and the
    mode that loses nothing across a broker restart (docs/ingest.md, "Which mode is safe
    where"); a group name splits the fleet between the processes of that group.
    ack_after_store=False acknowledges each message as it arrives instead of after its COMMIT:
    the broker then never holds a backlog for this process (Mosquitto drops messages past
    `max_queued_messages`, 1000 by default, for a client that falls behind), but what has
    arrived and is not yet stored is lost if the process dies. repair: True (the defaults of
    ingest.repair.Policy), a Policy, or False: ask devices to re-send what is missing
    (ingest/repair.py); it needs every batch of a device in this one database. db_path: a SQLite
    file or a postgresql:// URL (ingest/url.py db_url). clock: the time it is (Unix seconds) for
    the days PostgreSQL partitions (the simulator gives its device time); None: the system's.
    devices: the only device ids stored (a set), the others' messages acknowledged and left
    (a simulated fleet on a broker other devices use); None: every device.
    """

    def __init__(self, broker_host, broker_port, db_path, group=None,
                 prefix="tether/v1", client_id=None, username=None, password=None, tls=None,
                 persistent=True, keepalive=30, max_held=5000, hold_timeout=60.0,
                 group_size=500, ack_after_store=True, repair=True, clock=None, devices=None):
        topics.check_group(group)
        prefix = topics.check_prefix(prefix)
        if client_id is not None and not client_id and persistent:
            # paho refuses it with a persistent session: a broker makes one up, and the ingest's
            # session would not be found again (a clean session may leave it to the broker)
            raise ValueError("--client-id: empty (leave it out for a fixed id per process slot, "
                             "or give --clean-session)")
        for what, text in (("--client-id", client_id), ("--username", username),
                           ("the password", password)):
            if text is not None and len(text.encode("utf-8", "surrogatepass")) > 65535:
                # an MQTT string's length is 2 bytes: paho failed in struct.pack
                raise ValueError("%s: longer than MQTT's 65535 bytes" % what)
        self.host = broker_host
        self.port = int(broker_port)
        self.db_path = str(db_path)
        self.group = group
        self.prefix = prefix
        self.client_id = client_id
        self.username = username
        self.password = password
        self.tls = tls
        self.persistent = persistent
        self.keepalive = keepalive
        self.max_held = max_held
        self.hold_timeout = hold_timeout
        self.group_size = group_size
        self.ack_after_store = ack_after_store
        self.clock = clock
        self.devices = devices
        if repair is True:
            repair = repair_mod.Policy()
        self.policy = repair or None
        self._repair = None
        self._next_plan = 0.0
        self._probe = None  # when a connect found no session: the tails may have been lost
        self.topics = topics.subscriptions(self.prefix, group)
        self._subscribing = self.topics
        self._sub_mid = None
        self._asked = None          # a set while a resumed session skipped retained schemas
        self._last_id = self._last_at = None
        self._q = queue.Queue()
        self._queued = 0          # payload bytes in _q: at most MAX_QUEUED (_on_message)
        self._flooded = 0.0       # when the last dropped QoS 0 message was said
        self._lock = threading.Lock()
        self._counts = {}
        self._devices = {}
        self._held_now = 0
        self._gen = 0
        self._connected = False
        self.ever_connected = False   # a session on the broker exists only once this is true
        self._ready = False  # subscribed on the current connection
        self._subscribed = threading.Event()
        self._left = threading.Event()      # the broker answered our UNSUBSCRIBE (stop(leave))
        self._failed = None
        self._stopping = False
        self._given_up = False  # stopping while the database fails: what waits stays unstored
        self._last_message = time.monotonic()
        self._limit = _LogLimit()
        self._schemas = Schemas()
        self._units = set()
        self._stores = {}
        self._newest_log = {}   # device -> the newest number of its batch logs met here
        self._shared_ids = set()  # devices told of as publishing two logs' batches in turn
        self._client = None
        self._writer = None
        self._db = None
        self._slot = None

    # ---- life cycle ----

    def start(self, timeout=10.0):
        """Opens the database, connects, subscribes; returns once the SUBACK arrived. Raises
        RuntimeError when the broker refuses the connection or a subscription, or when nothing
        answers within timeout."""
        import paho.mqtt.client as paho

        tls = self._tls_context() if self.tls else None
        self._stopping = False
        self._given_up = False
        self._failed = None
        self._unanswered = None  # why the broker last closed a connection before its CONNACK
        self._subscribed.clear()
        self._db = open_store(self.db_path)
        if self.clock is not None:
            self._db.clock = self.clock
        try:
            try:
                self._load()
            except self._db.Error as exc:  # said in one line, as open_store says its errors
                raise StoreError("%s: %s" % (self._db.name(self.db_path), one_line(exc)))
            if self.client_id is None:
                self._slot = self._db.slot(client_base(self._db.identity, self.group,
                                                       self.prefix))
                self.client_id = self._slot.client_id
            if self.policy is not None:
                self._repair = repair_mod.Repair(self.policy, self.prefix, self.client_id)
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=not self.persistent, protocol=paho.MQTTv311,
                                 manual_ack=True)
            if self.username is not None:
                client.username_pw_set(self.username, self.password)
            if tls is not None:
                client.tls_set_context(tls)
            client.reconnect_delay_set(1, 30)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_unsubscribe = self._on_unsubscribe
            client.on_message = self._on_message
            client.on_disconnect = self._on_disconnect
            self._client = client
            self._writer = threading.Thread(target=self._write_loop, name="tether-ingest-writer",
                                            daemon=True)
            self._writer.start()
            try:
                client.connect(self.host, self.port, self.keepalive)
            except OSError as exc:  # refused, unreachable, a TLS failure: said as it is
                raise RuntimeError("cannot connect to the broker %s:%d: %s"
                                   % (self.host, self.port, exc))
            client.loop_start()
            if not self._subscribed.wait(timeout):
                raise RuntimeError("no answer from the broker %s:%d within %.0f s%s"
                                   % (self.host, self.port, timeout, "" if self._unanswered
                                      is None else "; " + self._not_mqtt()))
            if self._failed:
                raise RuntimeError("broker %s:%d: %s" % (self.host, self.port, self._failed))
        except BaseException:
            self.stop()
            raise
        log.info("subscribed to %s on %s:%d as %s", ", ".join(self.topics), self.host, self.port,
                 self.client_id)
        return self

    def _load(self):
        """The schemas and the count of held batches the database has from before."""
        for sid, doc in self._db.execute("SELECT schema_id, document FROM schemas"):
            try:
                dict.__setitem__(self._schemas, sid, read_schema(doc))
            except cbor.CBORError:
                pass
        self._held_now = self._db.execute(
            "SELECT count(*) FROM held WHERE given_up_at IS NULL").fetchone()[0]
        # The client id that stored the newest batch of the device heard last: a first connect
        # that finds no session says whose session the broker may still be queuing for
        newest = self._db.execute(
            "SELECT device FROM devices ORDER BY last_seen DESC LIMIT 1").fetchone()
        last = newest and self._db.execute(
            "SELECT ingest, received_at FROM batches WHERE device = ? ORDER BY seq DESC "
            "LIMIT 1", (newest[0],)).fetchone()
        self._last_id, self._last_at = (last[0], last[1]) if last else (None, None)

    def _ask_schemas(self, total):
        """A batch held for its schema while a resumed session took no retained schemas (a
        database restored from a backup: the schema's message went to the one before): that
        device's schema topic subscribed, so the broker sends its retained schema, alone."""
        asked = self._asked
        client = self._client
        if asked is None or client is None:
            return
        for device, counts in total.devices.items():
            if counts.get("held_total") and device not in asked:
                asked.add(device)
                client.subscribe("%s/%s/up/schema" % (self.prefix, device), 1)

    def _tls_context(self):
        import ssl
        if isinstance(self.tls, ssl.SSLContext):
            return self.tls
        if self.tls is True:
            return ssl.create_default_context()
        try:
            ctx = ssl.create_default_context(cafile=self.tls.get("ca"))
        except (OSError, ValueError) as exc:
            raise TLSFileError("TLS: cannot load the CA certificates %s: %s"
                               % (self.tls.get("ca"), one_line(exc)))
        if self.tls.get("cert"):
            try:
                ctx.load_cert_chain(self.tls["cert"], self.tls.get("key"))
            except (OSError, ValueError) as exc:
                raise TLSFileError("TLS: cannot load the client certificate %s and its key: %s"
                                   % (self.tls["cert"], one_line(exc)))
        return ctx

    def stop(self, drain=2.0, leave=False):
        """Stores what has arrived (for up to `drain` seconds, acknowledging it), disconnects
        (a persistent session stays on the broker, which queues this process's share until it
        is back) and closes the database. leave=True, for a process that is not coming back
        (a simulated run's ingest, whose session is then removed): it unsubscribes first, so
        that a share group's broker sends the others' messages to the members that stay
        instead of queueing them for a session about to go."""
        self._stopping = True
        if self._client is not None and self._connected:
            if leave:
                # the UNSUBACK's wait is not the drain's: a busy broker may take a while, and
                # the drain only starts once nothing more can be assigned to this member
                self._left.clear()
                self._client.unsubscribe(list(self.topics))
                self._left.wait(LEAVE_S)
            deadline = time.monotonic() + drain
            while self._q.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:  # noqa: BLE001 - closing whatever state it is in
                pass
            self._client.loop_stop()
            self._client = None
            self._connected = False
        if self._writer is not None:
            self._q.put(_STOP)
            self._writer.join()
            self._writer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def wait_idle(self, timeout=30.0, quiet=0.5):
        """True once nothing has arrived for `quiet` seconds (counted from this call at the
        earliest: a message may be on its way) and everything that arrived is stored; False if
        that did not happen within timeout."""
        called = time.monotonic()
        deadline = called + timeout
        while True:
            now = time.monotonic()
            if not self._q.unfinished_tasks and now - max(self._last_message, called) >= quiet:
                return True
            if now >= deadline:
                return False
            time.sleep(0.02)

    def quiet_s(self):
        """Seconds since the last message arrived, if every message that arrived is stored; 0
        while some are not."""
        if self._q.unfinished_tasks:
            return 0.0
        return time.monotonic() - self._last_message

    def stored(self):
        """Messages taken from the broker and dealt with (stored, or counted as bad) so far."""
        with self._lock:
            return self._counts.get("messages", 0)

    def stats(self):
        """This process's counters: messages, batches, readings, duplicates, malformed, held
        (waiting for their schema now), undecodable, events (insights: those of them that are
        insight events), health, replies, connected (and
        subscribed), connections (made so far), and per device {batches, readings, duplicates};
        repair: requests (resend commands sent), repaired (batches that came in answer to one),
        repaired_readings, events_repaired, lost_at_broker and dropped_by_device (batches the
        replies settled), events_lost_at_broker, events_dropped_by_device, repair_refused,
        stores_replaced (a device's batches or events came from a new log: ingest/numbering.py),
        erased_with_device and events_erased_with_device (what the old log had published and
        not delivered); flooded: QoS 0 messages dropped while MAX_QUEUED bytes waited to be
        stored."""
        with self._lock:
            out = {k: 0 for k in ("messages", "batches", "readings", "duplicates", "malformed",
                                  "undecodable", "events", "insights", "event_duplicates", "health",
                                  "health_duplicates", "replies", "reply_duplicates", "status", "schemas", "requests", "repaired",
                                  "stores_replaced",
                                  "repaired_readings", "events_repaired", "lost_at_broker",
                                  "dropped_by_device", "events_lost_at_broker",
                                  "events_dropped_by_device", "erased_with_device",
                                  "events_erased_with_device", "repair_refused", "flooded")}
            out.update(self._counts)
            out["held"] = self._held_now
            out["connected"] = self._ready
            out["connections"] = self._gen
            out["devices"] = {d: {"batches": c.get("batches", 0), "readings": c.get("readings", 0),
                                  "duplicates": c.get("duplicates", 0)}
                              for d, c in self._devices.items()}
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- paho callbacks (its network thread) ----

    def _not_mqtt(self):
        return ("it closed the connection without answering (%s): is that port a plain MQTT "
                "listener? (not a websockets one; a TLS one is mqtts://), or is the broker at "
                "its max_connections, or restarting?" % self._unanswered)

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            self._failed = "connection refused: %s" % reason
            self._subscribed.set()
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._failed = self._unanswered = None
        self._gen += 1
        again = self.ever_connected
        self.ever_connected = True
        self._connected = True
        self._ready = False
        filters = self.topics
        self._asked = None
        if getattr(flags, "session_present", False):
            log.info("connected to %s:%d, session resumed", self.host, self.port)
            if dict.__len__(self._schemas) and not self._held_now:
                # The session kept the subscriptions, and queued what came meanwhile. Taken
                # again, the retained schemas and statuses of the whole fleet (two a device)
                # came again on top of that queue, past the broker's max_queued_messages: it
                # dropped the live batches behind them, and the statuses it dropped showed
                # "unknown". Subscribed all the same: the others (a group's shared ones are
                # not kept by mosquitto), and these for a database that has no schema yet (a
                # --client-id given to a new file) or batches waiting for theirs (one
                # restored from a backup: the schema's message went to the old one).
                kept = set(topics.retained(self.prefix))
                filters = [t for t in filters if t not in kept]
                self._asked = set()    # devices whose retained schema was asked for since
        else:
            self._probe = time.time()  # nothing was kept for it meanwhile: see repair.probe
            if again and self.persistent:  # a broker restarted without persistence: said
                log.warning("connected to %s:%d again, and the broker kept no session: what "
                            "it held for this ingest is gone; the devices are asked for it",
                            self.host, self.port)
            elif self.persistent and self._last_id not in (None, self.client_id) and (
                    self.group is None):
                # (a group's members store one database under ids of their own.) An ingest
                # that stored a batch lately may be a hot standby's other half, running: said,
                # not warned of; or one stopped a moment ago to restart under a new id.
                quiet = time.time() - self._last_at > QUIET_S
                (log.warning if quiet else log.info)(
                    "no session on %s:%d for %s, and this database's newest batch "
                    "came to %s, %.0f min ago: a changed --db host, port, database, "
                    "user or options, topic prefix, host name or --group makes another "
                    "default client id; if no ingest runs as %s any more, the broker "
                    "may still be queuing the fleet's messages for it: --client-id %s "
                    "takes them, or retire that session (docs/ingest.md, Delivery)",
                    self.host, self.port, self.client_id, self._last_id,
                    (time.time() - self._last_at) / 60, self._last_id, self._last_id)
            elif self.persistent and self._last_id is not None and (
                    self._last_id == self.client_id):
                log.warning("no session on %s:%d for %s, which stored this database's newest "
                            "batch: what was published while it was away is gone from the "
                            "broker (restarted without persistence, or the session expired); "
                            "the devices are asked for it", self.host, self.port, self.client_id)
        self._subscribing = filters
        self._sub_mid = client.subscribe([(t, 1) for t in filters])[1]   # (result, mid)

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        if mid != self._sub_mid:    # one device's schema asked for (_ask_schemas)
            if reasons and reasons[0].is_failure:
                log.warning("the broker refused a device's schema topic: %s", reasons[0])
            return
        bad = [t for t, r in zip(self._subscribing, reasons) if r.is_failure]
        if bad:
            self._failed = "subscription refused: %s" % ", ".join(bad)
            log.error("the broker refused the subscriptions %s", ", ".join(bad))
        else:
            self._ready = True
        self._subscribed.set()

    def _on_unsubscribe(self, client, userdata, mid, reasons, properties):
        self._left.set()  # what the broker had sent before it is in the queue (one socket)

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        was = self._connected
        self._connected = False
        self._ready = False
        if self._stopping:
            return
        # paho names a connection the broker closed (or the network lost) by MQTT 5's
        # generic code, which read as an error of the ingest's own
        why = str(reason)
        if getattr(reason, "value", None) == 128:
            why = "the connection was closed by the broker or lost"
        if was:
            log.warning("lost the broker %s:%d (%s); reconnecting", self.host, self.port, why)
        elif self._failed is None and self._unanswered != why:
            # Closed before any CONNACK: not a broker lost (a refusal was said by _on_connect)
            self._unanswered = why
            log.warning("broker %s:%d: %s; trying again", self.host, self.port,
                        self._not_mqtt())

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        self._last_message = time.monotonic()
        if self.devices is not None and topic[len(self.prefix) + 1:].split("/", 1)[0] not in (
                self.devices):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return
        payload = msg.payload
        if len(payload) > decode.MAX_PAYLOAD:
            # Never queued whole: the writer refuses it by its size, and the malformed row
            # keeps its first bytes (paho takes up to the broker's packet limit, 256 MB).
            payload = Cut(payload[:decode.HEX_PREFIX], len(payload))
        else:
            payload = bytes(payload)
        while self._queued > MAX_QUEUED and not self._stopping:
            if not msg.qos:
                # Nothing resends a QoS 0 message: dropped, counted and said, rather than the
                # process's memory (one device's flood of 1 MB reports took 1.4 GB).
                with self._lock:
                    self._counts["flooded"] = self._counts.get("flooded", 0) + 1
                if time.monotonic() - self._flooded > 60:
                    self._flooded = time.monotonic()
                    log.warning("more than %d MB of messages wait to be stored: QoS 0 ones are "
                                "dropped (stats: flooded) until the writer catches up",
                                MAX_QUEUED >> 20)
                return
            time.sleep(0.01)  # QoS 1: the broker waits, holding them, while this thread does
        if msg.qos and not self.ack_after_store:
            client.ack(msg.mid, msg.qos)
        with self._lock:
            self._queued += bytes.__len__(payload)
        self._q.put((topic, payload, msg.qos, msg.mid, time.time(), self._gen))

    def _fate(self):
        """What becomes of messages not stored: the broker's to send again, unless they were
        acknowledged on receipt, when they are gone."""
        if self.ack_after_store:
            return "not acknowledged: the broker sends them again after a reconnect"
        return ("acknowledged on receipt (--ack-on-receipt): LOST, the broker will not send "
                "them again; the devices' repair asks for them if they still hold them")

    # ---- the writer thread ----

    def _write_loop(self):
        next_chores = time.monotonic() + 1.0
        stop = False
        while not stop:
            group = []
            try:
                first = self._q.get(timeout=0.25)
            except queue.Empty:
                first = None
            if first is _STOP:
                self._q.task_done()
                break
            if first is not None:
                group.append(first)
                while len(group) < self.group_size:
                    try:
                        m = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if m is _STOP:
                        self._q.task_done()
                        stop = True
                        break
                    group.append(m)
            chores = time.monotonic() >= next_chores
            if chores:
                next_chores = time.monotonic() + 1.0
            if group or chores:
                try:
                    self._commit(group, chores)
                except Exception:  # noqa: BLE001 - the writer must outlive any bug
                    log.exception("could not store %d messages (%s)", len(group), self._fate())
                    if self._db.in_transaction:
                        self._db.rollback()
            with self._lock:
                self._queued -= sum(bytes.__len__(m[1]) for m in group)
            for _ in group:
                self._q.task_done()

    def _commit(self, group, chores):
        if self._given_up:
            return  # counted in the one line that said so
        db = self._db
        backoff = 0.05
        failing = False  # the database failed this group: its recovery gets a line too
        savepoints = False  # Handlers._savepoints: with them once a message failed without
        refusals = 0  # attempts the database refused for what the group holds, not failing itself
        refused = None  # the group's one message is stored as malformed, with this reason
        while True:
            total = Delta()
            commands = []
            try:
                planning = (chores and self._repair is not None and self._ready
                            and not self._stopping and time.monotonic() >= self._next_plan)
                if chores and not group and not planning and not self._held_exists():
                    return
                db.begin()
                self._group_units = set()
                self._group_stores = {}
                self._savepoints = savepoints
                self._deferred = [] if not savepoints and db.add_batches is not None else None
                # Device by device (each device's messages in the order they came): processes
                # sharing a database then lock the devices' rows in one order and never
                # deadlock over them. Acknowledged below in the order they came, as MQTT asks.
                for m in sorted(group, key=self._device_of):
                    if refused is None:
                        total.merge(self._one(m))
                    else:
                        d = Delta()
                        self._malformed(m[0], m[1], m[4], refused, d)
                        total.merge(d)
                if chores:
                    self._chores(total)
                if self._deferred is not None:
                    total.merge(self._store_deferred(last=True))
                    self._deferred = None
                probed = None
                if planning:
                    began = time.monotonic()
                    commands, probed = self._plan(db)
                    # At most a twentieth of the writer's time: a big fleet at full speed has
                    # thousands of devices whose health is a batch ahead at any moment.
                    self._next_plan = began + 20 * (time.monotonic() - began)
                held = None
                if chores or total.recount:
                    held = db.execute("SELECT count(*) FROM held WHERE given_up_at IS NULL"
                                      ).fetchone()[0]
                db.commit()
                if probed is not None and self._probe == probed:
                    self._probe = None
                if failing:  # the last line said it failed: not left standing
                    log.warning("the database stores again: %d messages stored, %d wait",
                                len(group), self._q.qsize())
                break
            except Retry:
                db.rollback()
                savepoints = True
                self._deferred = None
            except db.Error as exc:
                if db.in_transaction:
                    db.rollback()
                if group and not db.failed(exc):
                    # Past the messages' savepoints (at the COMMIT, say): one message may be
                    # what the database refuses. Alone in its transaction, it alone is malformed.
                    refusals += 1
                    if refusals >= REFUSALS:
                        if len(group) > 1:
                            log.error("the database refuses a group of %d messages (%s): storing "
                                      "them one by one", len(group), one_line(exc))
                            for m in group:
                                self._commit([m], False)
                            return
                        refused = "the database refused it: %s" % one_line(exc)
                        continue
                # The group being tried and what came since: both wait, unacknowledged (the
                # group alone read "0 messages wait" when the failing work was the repair's).
                log.error("the database: %s; trying again in %.1f s (%d messages wait, %s)",
                          one_line(exc), backoff, len(group) + self._q.qsize(),
                          "not acknowledged" if self.ack_after_store else
                          "acknowledged on receipt (--ack-on-receipt)")
                failing = True
                if self._stopping and backoff > 1:
                    # this group and every one still queued, said once (it said 0, then 65)
                    self._given_up = True
                    log.error("stopping with %d messages not stored (%s)", len(group) + sum(
                        1 for m in list(self._q.queue) if m is not _STOP), self._fate())
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        with self._lock:
            self._counts["messages"] = self._counts.get("messages", 0) + len(group)
            for k, n in total.counts.items():
                self._counts[k] = self._counts.get(k, 0) + n
            for device, counts in total.devices.items():
                d = self._devices.setdefault(device, {})
                for k, n in counts.items():
                    d[k] = d.get(k, 0) + n
            if held is not None:
                self._held_now = held
        self._units.update(total.units)
        self._stores.update(total.stores)
        self._ask_schemas(total)
        for args in total.logs:
            self._limit(*args)
        client = self._client
        for topic, payload in commands if client is not None else ():
            # After the COMMIT: another process sees the claim before the device can answer.
            # Not connected: the request times out and is made again.
            client.publish(topic, payload, 1)
        if commands:
            with self._lock:
                self._counts["requests"] = self._counts.get("requests", 0) + len(commands)
        if self.ack_after_store:
            for topic, payload, qos, mid, received_at, gen in group:
                if qos and gen == self._gen and self._connected:
                    client.ack(mid, qos)

    def _device_of(self, m):
        return m[0][len(self.prefix) + 1:].split("/", 1)[0]

    def _plan(self, db):
        """(resend commands, the probe made): repair's planning, in a savepoint of its own, so
        that a bug there cannot roll back the messages stored in the same transaction."""
        if not db.planning():
            return [], None  # another process is planning the fleet's repairs
        probed = self._probe
        db.execute("SAVEPOINT planning")
        try:
            if probed is not None:
                repair_mod.probe(db, probed)
            commands = self._repair.plan(db, time.time())
        except Exception as exc:  # noqa: BLE001 - the messages are stored whatever planning does
            if db.failed(exc):
                raise  # the database's failure: the whole group again
            log.exception("repair planning failed; the messages are stored, planning is tried "
                          "again")
            db.execute("ROLLBACK TO planning")
            db.execute("RELEASE planning")
            return [], None
        db.execute("RELEASE planning")
        return commands, probed

    def repair_pending(self):
        """True while a probe (after a connect that found no session) waits for the next
        planning pass, or while not subscribed: repairing() cannot see those yet."""
        return self._repair is not None and (self._probe is not None or not self._ready)

    def _held_exists(self):
        return self._db.execute("SELECT 1 FROM held LIMIT 1").fetchone() is not None