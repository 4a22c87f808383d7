"""The reference ingest: Tether batches, events and health from an MQTT broker into one SQLite file.

The cloud side a platform engineer starts from (docs/ingest.md). Several processes split one
fleet through an MQTT shared subscription and may share one SQLite file (WAL mode):

    from simulator.ingest import Ingest, summary
    ingest = Ingest("localhost", 1883, "fleet.sqlite")
    ingest.start()            # connected and subscribed
    ...
    ingest.wait_idle(30)      # nothing arrived for a moment, and all of it is stored
    ingest.stop()
    summary("fleet.sqlite")   # per device: readings, batches, duplicates, gaps, dropped ...

Every message is stored in a transaction before the broker gets its PUBACK (paho's manual
acknowledgements), so a crash never loses what the broker believes delivered; a batch that
arrives twice (a re-send after a lost PUBACK, a restarted ingest) is stored once and counted as
a duplicate, across processes, by the primary key (device, seq).

    python -m simulator.ingest --broker mqtt://localhost:1883 --db fleet.sqlite
"""
import binascii
import hashlib
import json
import logging
import math
import os
import queue
import socket
import sqlite3
import threading
import time
from urllib.parse import unquote, urlsplit

from agent import batch_decode, cbor, cbor_decode
from agent import events_decode, ids
from agent.batch import COMPACT
from agent.schema import Schema
from simulator import repair as repair_mod

log = logging.getLogger("tether.ingest")

DB_VERSION = 3  # PRAGMA user_version: SCHEMA_SQL (version 1), then each of MIGRATIONS
SHARED = ("batch", "event", "health")  # split between the processes of a group
EVERYONE = ("up/schema", "status")  # every process needs every schema (and status)
HEX_PREFIX = 16  # bytes of a malformed payload kept (as hex) in the log and the table
INT64 = 1 << 63

SCHEMA_SQL = """
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    schema_id INTEGER,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_boot INTEGER,
    last_seq INTEGER,
    last_t_ms INTEGER,
    dropped_reported INTEGER NOT NULL DEFAULT 0,
    dropped_health INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    event_duplicates INTEGER NOT NULL DEFAULT 0,
    last_status TEXT,
    status_at REAL,
    last_health_at REAL
);
CREATE TABLE batches (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    deflated INTEGER NOT NULL,
    schema_id INTEGER,
    bytes INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    received_at REAL NOT NULL,
    readings INTEGER NOT NULL,
    t_first INTEGER,
    t_last INTEGER,
    ingest TEXT,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE readings (
    device TEXT NOT NULL,
    t_ms INTEGER NOT NULL,
    channel TEXT NOT NULL,
    value,
    seq INTEGER NOT NULL
);
CREATE INDEX readings_by_channel ON readings (device, channel, t_ms);
CREATE TABLE channels (
    device TEXT NOT NULL,
    channel TEXT NOT NULL,
    unit TEXT,
    PRIMARY KEY (device, channel)
) WITHOUT ROWID;
CREATE TABLE events (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    event TEXT NOT NULL,
    sensor TEXT NOT NULL,
    state TEXT NOT NULL,
    value,
    detail TEXT,
    received_at REAL NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE replies (
    device TEXT NOT NULL,
    received_at REAL NOT NULL,
    reply,
    ok INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE health (
    device TEXT NOT NULL,
    received_at REAL NOT NULL,
    t_ms INTEGER,
    health TEXT NOT NULL
);
CREATE INDEX health_by_device ON health (device, received_at);
CREATE TABLE schemas (
    schema_id INTEGER PRIMARY KEY,
    document BLOB NOT NULL,
    channels TEXT NOT NULL,
    first_seen REAL NOT NULL
);
CREATE TABLE held (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    schema_id INTEGER NOT NULL,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    given_up_at REAL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX held_by_schema ON held (schema_id);
CREATE INDEX held_by_age ON held (given_up_at, received_at);
CREATE TABLE malformed (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    payload_hex TEXT NOT NULL
);
CREATE VIEW gaps AS
    SELECT device, prev + 1 AS from_seq, seq - 1 AS to_seq, seq - prev - 1 AS missing
    FROM (SELECT device, seq, LAG(seq) OVER (PARTITION BY device ORDER BY seq) AS prev
          FROM batches)
    WHERE seq > prev + 1;
"""

# MIGRATIONS[v] takes a file from layout version v to v + 1; a new file gets them all.
MIGRATIONS = {
    1: """
-- End-to-end repair (simulator/repair.py): what health reports say each device has published,
-- how far every sequence number is stored or settled, what was asked for, and what will not come.
ALTER TABLE devices ADD COLUMN last_event_seq INTEGER;
ALTER TABLE devices ADD COLUMN batch_oldest INTEGER;
ALTER TABLE devices ADD COLUMN batch_newest INTEGER;
ALTER TABLE devices ADD COLUMN event_oldest INTEGER;
ALTER TABLE devices ADD COLUMN event_newest INTEGER;
ALTER TABLE devices ADD COLUMN batch_done INTEGER;
ALTER TABLE devices ADD COLUMN event_done INTEGER;
ALTER TABLE devices ADD COLUMN repaired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN repaired_readings INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN events_repaired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN repaired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN repaired INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET last_event_seq = (SELECT max(seq) FROM events e WHERE e.device = devices.device);
CREATE TABLE requests (
    device TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ranges TEXT NOT NULL,
    sent_at REAL NOT NULL,
    answered_at REAL,
    ingest TEXT
) WITHOUT ROWID;
CREATE TABLE asked (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    asked_at REAL NOT NULL,
    asks INTEGER NOT NULL,
    PRIMARY KEY (device, kind, seq)
) WITHOUT ROWID;
CREATE TABLE lost (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('broker', 'dropped')),
    recorded_at REAL NOT NULL,
    PRIMARY KEY (device, kind, seq)
) WITHOUT ROWID;
CREATE TABLE repair_bucket (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    tokens REAL NOT NULL,
    at REAL NOT NULL
);
""",
    2: """
-- Insights (agent/insights, docs/insights.md): the events whose state is 'insight', with their
-- fields as JSON (json_extract(fields, '$.days') ...). They stay in `events` too, where their
-- sequence numbers are accounted for.
CREATE TABLE insights (
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    event TEXT NOT NULL,
    sensor TEXT NOT NULL,
    value,
    fields TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX insights_by_event ON insights (event, device, t_ms);
""",
}
INSIGHT = "insight"  # the state of an insight event (agent/insights)
MAX_FIELDS = 64


def _script(db, sql):
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


class Bad(Exception):
    """A message that is not what its topic promises: stored in `malformed`, acknowledged."""

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason


class _Schemas(dict):
    """schema id -> Schema, noting the id a compact batch asked for and did not find."""

    missing = None

    def __bool__(self):  # the decoder does `schemas or {}`: an empty table must stay this one
        return True

    def get(self, key, default=None):
        found = dict.get(self, key, default)
        if found is None:
            self.missing = key
        return found


class _Delta:
    """What one message (or one group of them) changed, applied to the counters after COMMIT."""

    __slots__ = ("counts", "devices", "units", "logs", "recount")

    def __init__(self):
        self.counts = {}
        self.devices = {}
        self.units = []
        self.logs = []
        self.recount = False  # batches were held or released: count `held` again

    def add(self, key, n=1, device=None):
        self.counts[key] = self.counts.get(key, 0) + n
        if device is not None:
            d = self.devices.get(device)
            if d is None:
                d = self.devices[device] = {}
            d[key] = d.get(key, 0) + n

    def merge(self, other):
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n
        for device, counts in other.devices.items():
            d = self.devices.setdefault(device, {})
            for k, n in counts.items():
                d[k] = d.get(k, 0) + n
        self.units += other.units
        self.logs += other.logs
        self.recount = self.recount or other.recount


class _LogLimit:
    """At most `burst` lines per `window` seconds, then one line saying how many were left out."""

    def __init__(self, burst=20, window=10.0):
        self.burst = burst
        self.window = window
        self.start = 0.0
        self.lines = 0
        self.skipped = 0

    def __call__(self, level, msg, *args):
        now = time.monotonic()
        if now - self.start >= self.window:
            if self.skipped:
                log.warning("%d more malformed messages were not logged", self.skipped)
            self.start, self.lines, self.skipped = now, 0, 0
        if self.lines < self.burst:
            self.lines += 1
            log.log(level, msg, *args)
        else:
            self.skipped += 1


def parse_broker(url):
    """(host, port, tls, username, password) from mqtt://[user[:password]@]host[:port] or
    mqtts://...; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("expected a broker URL like mqtt://host:1883 or mqtts://host:8883, "
                         "not %r" % url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a broker URL has no path or query: %r" % url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # :0 too, which is no port, not the default one
        raise ValueError("the port in %r is not a number from 1 to 65535" % url)
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if port is None:
        port = 8883 if tls else 1883
    return parts.hostname, port, tls, user, password


def parse_topic(topic, prefix):
    """(kind, device) for `{prefix}/{device}/up/{batch,event,health,schema}` and
    `{prefix}/{device}/status`; (None, None) for anything else."""
    if not topic.startswith(prefix + "/"):
        return None, None
    parts = topic[len(prefix) + 1:].split("/")
    if not parts[0]:
        return None, None
    if len(parts) == 3 and parts[1] == "up" and parts[2] in ("batch", "event", "health", "schema"):
        return parts[2], parts[0]
    if len(parts) == 2 and parts[1] == "status":
        return "status", parts[0]
    return None, None


def _insight_fields(detail):
    """An insight event's fields (a flat CBOR map: text keys, numbers, text, booleans, null or
    short lists of those) as JSON types; Bad for anything else."""
    if not isinstance(detail, dict) or len(detail) > MAX_FIELDS:
        raise Bad("insight event: its detail must be a map of at most %d fields" % MAX_FIELDS)
    out = {}
    for k, v in detail.items():
        if not isinstance(k, str):
            raise Bad("insight event: field name %r is not text" % (k,))
        if isinstance(v, float) and not math.isfinite(v):
            v = None  # as jsonable() stores NaN: the event is kept, the figure is not
        items = v if isinstance(v, list) else [v]
        if len(items) > MAX_FIELDS or not all(
                x is None or isinstance(x, (str, bool)) or
                (isinstance(x, int) and -INT64 <= x < INT64) or
                isinstance(x, float) for x in items):
            raise Bad("insight event: field %r is not a number, text, true/false, null or a "
                      "short list of those" % (k,))
        out[k] = [None if isinstance(x, float) and not math.isfinite(x) else x
                  for x in v] if isinstance(v, list) else v
    return out


def jsonable(x, depth=0):
    """A decoded CBOR item as JSON types: bytes as hex, tags as {"tag", "value"}, NaN and the
    infinities as null, keys as text."""
    if depth > 32:
        return None
    if isinstance(x, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, depth + 1) for v in x]
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, cbor.Tag):
        return {"tag": x.tag, "value": jsonable(x.value, depth + 1)}
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return repr(x)


def _check_int(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or not -INT64 <= v < INT64:
        raise Bad("%s %r is not a 64-bit integer" % (what, v))
    return v


def connect_db(db_path, timeout=30.0):
    """A connection to the ingest's SQLite file, in WAL mode, created with the layout of
    docs/ingest.md when new, migrated in one transaction when older (version 1 gains the repair
    columns and tables); refuses a file of a newer layout version."""
    db = sqlite3.connect(db_path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and db_path != ":memory:":
            raise RuntimeError("%s: SQLite would not switch to WAL mode (%s)" % (db_path, mode))
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise RuntimeError("%s is an SQLite file of something else, not of the "
                                       "Tether ingest" % db_path)
                _script(db, SCHEMA_SQL)
                version = 1
            elif version > DB_VERSION:
                raise RuntimeError("%s has ingest layout version %d, of a newer ingest; this one "
                                   "reads version %d and older" % (db_path, version, DB_VERSION))
            if version < DB_VERSION:
                for v in range(version, DB_VERSION):
                    _script(db, MIGRATIONS[v])
                db.execute("PRAGMA user_version = %d" % DB_VERSION)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except BaseException:
        db.close()
        raise
    return db


class _Slot:
    """A default client id that is the same after a restart and differs between the processes
    sharing one SQLite file: slot i is held by an flock on `{db}.ingest-{i}.lock`, and the
    lowest free slot is taken."""

    def __init__(self, db_path, group):
        self.file = None
        host = socket.gethostname().split(".")[0][:24] or "host"
        where = hashlib.sha1(("%s|%s" % (os.path.abspath(db_path), group)).encode()
                             ).hexdigest()[:6]
        base = "tether-ingest-%s-%s" % (host, where)
        try:
            import fcntl
        except ImportError:  # no flock (Windows): a new session per process
            self.client_id = "%s-p%d" % (base, os.getpid())
            return
        if db_path == ":memory:":
            self.client_id = "%s-p%d" % (base, os.getpid())
            return
        for i in range(1000):
            f = open("%s.ingest-%d.lock" % (db_path, i), "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.file = f
            self.client_id = "%s-%d" % (base, i)
            return
        raise RuntimeError("no free ingest slot next to %s" % db_path)

    def release(self):
        if self.file is not None:
            self.file.close()  # closing drops the flock
            self.file = None


_STOP = object()


class Ingest:
    """Subscribes, decodes, de-duplicates and stores; see the module docstring and docs/ingest.md.

    tls: None (plain MQTT), True (the system's CAs), an ssl.SSLContext, or a dict with `ca` and
    optionally `cert`/`key` (mutual TLS). client_id: None takes a fixed id per process slot
    (see _Slot); persistent=False asks for a clean session instead of a persistent one.
    group=None (the default) subscribes without a shared subscription: one process, and the
    mode that loses nothing across a broker restart (docs/ingest.md, "Which mode is safe
    where"); a group name splits the fleet between the processes of that group.
    ack_after_store=False acknowledges each message as it arrives instead of after its COMMIT:
    the broker then never holds a backlog for this process (Mosquitto drops messages past
    `max_queued_messages`, 1000 by default, for a client that falls behind), but what has
    arrived and is not yet stored is lost if the process dies. repair: True (the defaults of
    simulator.repair.Policy), a Policy, or False: ask devices to re-send what is missing
    (simulator/repair.py); it needs every batch of a device in this one database.
    """

    def __init__(self, broker_host, broker_port, db_path, group=None,
                 prefix="tether/v1", client_id=None, username=None, password=None, tls=None,
                 persistent=True, keepalive=30, max_held=5000, hold_timeout=60.0,
                 group_size=500, ack_after_store=True, repair=True):
        if group is not None and (not group or any(c in group for c in "/+#")):
            raise ValueError("a shared subscription group is a non-empty name without / + #")
        if not prefix.strip("/") or any(c in prefix for c in "+#"):
            raise ValueError("a topic prefix is a non-empty topic without wildcards")
        self.host = broker_host
        self.port = int(broker_port)
        self.db_path = str(db_path)
        self.group = group
        self.prefix = prefix.rstrip("/")
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
        if repair is True:
            repair = repair_mod.Policy()
        self.policy = repair or None
        self._repair = None
        self._next_plan = 0.0
        self._probe = None  # when a connect found no session: the tails may have been lost
        # A group per topic filter: rumqttd delivers only one filter's messages to a group that
        # holds several (measured), and no broker minds the extra groups. None: a broker
        # without shared subscriptions.
        self.topics = (["%s%s/+/up/%s" % ("" if group is None else "$share/%s-%s/" % (group, k),
                                          self.prefix, k) for k in SHARED]
                       + ["%s/+/%s" % (self.prefix, k) for k in EVERYONE])
        self._q = queue.Queue()
        self._lock = threading.Lock()
        self._counts = {}
        self._devices = {}
        self._held_now = 0
        self._gen = 0
        self._connected = False
        self._ready = False  # subscribed on the current connection
        self._subscribed = threading.Event()
        self._failed = None
        self._stopping = False
        self._last_message = time.monotonic()
        self._limit = _LogLimit()
        self._schemas = _Schemas()
        self._units = set()
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
        self._failed = None
        self._subscribed.clear()
        self._db = connect_db(self.db_path)
        try:
            for sid, doc in self._db.execute("SELECT schema_id, document FROM schemas"):
                try:
                    dict.__setitem__(self._schemas, sid, Schema.from_cbor(doc))
                except cbor.CBORError:
                    pass
            self._held_now = self._db.execute(
                "SELECT count(*) FROM held WHERE given_up_at IS NULL").fetchone()[0]
            if self.client_id is None:
                self._slot = _Slot(self.db_path, self.group)
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
                raise RuntimeError("no answer from the broker %s:%d within %.0f s"
                                   % (self.host, self.port, timeout))
            if self._failed:
                raise RuntimeError("broker %s:%d: %s" % (self.host, self.port, self._failed))
        except BaseException:
            self.stop()
            raise
        log.info("subscribed to %s on %s:%d as %s", ", ".join(self.topics), self.host, self.port,
                 self.client_id)
        return self

    def _tls_context(self):
        import ssl
        if isinstance(self.tls, ssl.SSLContext):
            return self.tls
        if self.tls is True:
            return ssl.create_default_context()
        try:
            ctx = ssl.create_default_context(cafile=self.tls.get("ca"))
        except (OSError, ValueError) as exc:
            raise RuntimeError("TLS: cannot load the CA certificates %s: %s"
                               % (self.tls.get("ca"), exc))
        if self.tls.get("cert"):
            try:
                ctx.load_cert_chain(self.tls["cert"], self.tls.get("key"))
            except (OSError, ValueError) as exc:
                raise RuntimeError("TLS: cannot load the client certificate %s and its key: %s"
                                   % (self.tls["cert"], exc))
        return ctx

    def stop(self, drain=2.0):
        """Stores what has arrived (for up to `drain` seconds, acknowledging it), disconnects
        (a persistent session stays on the broker, which queues this process's share until it
        is back) and closes the database."""
        self._stopping = True
        if self._client is not None and self._connected:
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
        replies settled), events_lost_at_broker, events_dropped_by_device, repair_refused."""
        with self._lock:
            out = {k: 0 for k in ("messages", "batches", "readings", "duplicates", "malformed",
                                  "undecodable", "events", "insights", "event_duplicates", "health",
                                  "replies", "status", "schemas", "requests", "repaired",
                                  "repaired_readings", "events_repaired", "lost_at_broker",
                                  "dropped_by_device", "events_lost_at_broker",
                                  "events_dropped_by_device", "repair_refused")}
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

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            self._failed = "connection refused: %s" % reason
            self._subscribed.set()
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._gen += 1
        self._connected = True
        self._ready = False
        if getattr(flags, "session_present", False):
            log.info("connected to %s:%d, session resumed", self.host, self.port)
        else:
            self._probe = time.time()  # nothing was kept for it meanwhile: see repair.probe
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        bad = [t for t, r in zip(self.topics, reasons) if r.is_failure]
        if bad:
            self._failed = "subscription refused: %s" % ", ".join(bad)
            log.error("the broker refused the subscriptions %s", ", ".join(bad))
        else:
            self._ready = True
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        self._connected = False
        self._ready = False
        if not self._stopping:
            log.warning("lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "replace")
        self._last_message = time.monotonic()
        if msg.qos and not self.ack_after_store:
            client.ack(msg.mid, msg.qos)
        self._q.put((topic, bytes(msg.payload), msg.qos, msg.mid, time.time(), self._gen))

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
                    log.exception("could not store %d messages (not acknowledged: the broker "
                                  "sends them again after a reconnect)", len(group))
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
            for _ in group:
                self._q.task_done()

    def _commit(self, group, chores):
        db = self._db
        backoff = 0.05
        while True:
            total = _Delta()
            commands = []
            try:
                planning = (chores and self._repair is not None and self._ready
                            and not self._stopping and time.monotonic() >= self._next_plan)
                if chores and not group and not planning and not self._held_exists():
                    return
                db.execute("BEGIN IMMEDIATE")
                for m in group:
                    total.merge(self._one(m))
                if chores:
                    self._chores(total)
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
                db.execute("COMMIT")
                if probed is not None and self._probe == probed:
                    self._probe = None
                break
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                log.error("SQLite: %s; trying again in %.1f s", exc, backoff)
                if self._stopping and backoff > 1:
                    log.error("stopping with %d messages not stored: the broker sends them "
                              "again", len(group))
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

    def _plan(self, db):
        """(resend commands, the probe made): repair's planning, in a savepoint of its own, so
        that a bug there cannot roll back the messages stored in the same transaction."""
        probed = self._probe
        db.execute("SAVEPOINT planning")
        try:
            if probed is not None:
                repair_mod.probe(db, probed)
            commands = self._repair.plan(db, time.time())
        except sqlite3.Error:
            raise
        except Exception:  # noqa: BLE001 - the messages must be stored whatever planning does
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

    def _one(self, m):
        """One message in its own SAVEPOINT: a bad one leaves only a `malformed` row."""
        return self._guarded("m", m[0], m[1], m[4], self._handle, m)

    def _guarded(self, name, topic, payload, received_at, fn, *args):
        """fn(*args, delta) inside SAVEPOINT name; when the message turns out bad (or trips
        anything but a database failure) its writes are undone and a `malformed` row stays."""
        db = self._db
        d = _Delta()
        db.execute("SAVEPOINT " + name)
        try:
            fn(*args, d)
        except sqlite3.OperationalError:
            raise  # locked, disk full, I/O: the whole group again
        except Exception as exc:  # noqa: BLE001 - nothing a message carries may stop the ingest
            db.execute("ROLLBACK TO " + name)
            d = _Delta()
            if isinstance(exc, Bad):
                reason = exc.reason
            elif isinstance(exc, (OverflowError, sqlite3.InterfaceError,
                                  sqlite3.ProgrammingError)):
                reason = "a value out of range or of an unsupported type (%s)" % exc
            else:
                log.exception("unexpected error on a message on %s", topic)
                reason = "internal error: %s: %s" % (type(exc).__name__, exc)
            self._malformed(topic, payload, received_at, reason, d)
        db.execute("RELEASE " + name)
        return d

    def _malformed(self, topic, payload, received_at, reason, d):
        prefix = payload[:HEX_PREFIX].hex()
        self._db.execute("INSERT INTO malformed (received_at, topic, reason, bytes, payload_hex) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (received_at, topic, reason, len(payload), prefix))
        d.add("malformed")
        d.logs.append((logging.WARNING, "malformed message on %s: %s (%d bytes: %s%s)",
                       topic if len(topic) <= 200 else topic[:200] + "...", reason, len(payload),
                       prefix, "..." if len(payload) > HEX_PREFIX else ""))

    def _handle(self, m, d):
        topic, payload, qos, mid, received_at, gen = m
        kind, device = parse_topic(topic, self.prefix)
        if kind is None:
            raise Bad("not a Tether topic ({prefix}/{device}/up/batch|event|health|schema or "
                      "{prefix}/{device}/status)")
        if not ids.valid(device):
            raise Bad("the device id in the topic is not " + ids.WHAT)
        if kind == "batch":
            self._batch(device, payload, received_at, topic, False, d)
        elif kind == "event":
            self._event(device, payload, received_at, d)
        elif kind == "health":
            self._health(device, payload, received_at, d)
        elif kind == "schema":
            self._schema(device, payload, received_at, d)
        else:
            self._status(device, payload, received_at, d)

    def _seen(self, device, received_at):
        self._db.execute("INSERT INTO devices (device, first_seen, last_seen) VALUES (?, ?, ?) "
                         "ON CONFLICT (device) DO UPDATE SET "
                         "last_seen = max(last_seen, excluded.last_seen)",
                         (device, received_at, received_at))

    # -- batches --

    def _batch(self, device, payload, received_at, topic, held, d):
        schemas = self._schemas
        schemas.missing = None
        try:
            b = batch_decode.decode(payload, schemas)
        except cbor.CBORError as exc:
            if schemas.missing is None or held:
                raise Bad("batch: %s" % (exc,))
            self._hold(device, payload, received_at, topic, schemas.missing, d)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug on hostile input
            raise Bad("batch: %s: %s" % (type(exc).__name__, exc))
        self._store(device, b, payload, received_at, d)

    def _envelope_of(self, device, b):
        if b.device != device:
            raise Bad("a batch of device %r on the topic of %r" % (b.device, device))
        _check_int(b.seq, "sequence number")
        _check_int(b.boot, "boot count")
        _check_int(b.dropped, "dropped count")

    def _duplicate(self, device, seq, payload, received_at, d):
        db = self._db
        row = db.execute("SELECT crc32 FROM batches WHERE device = ? AND seq = ?",
                         (device, seq)).fetchone()
        if row is not None and row[0] != binascii.crc32(payload):
            raise Bad("batch %d of %s arrived again with other bytes (did the device lose its "
                      "sequence numbers?)" % (seq, device))
        self._seen(device, received_at)
        db.execute("UPDATE devices SET duplicates = duplicates + 1 WHERE device = ?", (device,))
        d.add("duplicates", device=device)

    def _store(self, device, b, payload, received_at, d):
        self._envelope_of(device, b)
        db = self._db
        readings = b.readings
        seq = b.seq
        cur = db.execute(
            "INSERT OR IGNORE INTO batches (device, seq, boot, dropped, synced, encoding, "
            "deflated, schema_id, bytes, crc32, received_at, readings, t_first, t_last, ingest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, seq, b.boot, b.dropped, int(b.synced),
             "compact" if b.encoding == COMPACT else "senml", int(b.deflated), b.schema_id,
             len(payload), binascii.crc32(payload), received_at, len(readings),
             readings[0][0] if readings else None, readings[-1][0] if readings else None,
             self.client_id))
        if cur.rowcount == 0:
            self._duplicate(device, seq, payload, received_at, d)
            return
        repaired = repair_mod.arrived(db, device, "batch", seq)
        if repaired:
            db.execute("UPDATE batches SET repaired = 1 WHERE device = ? AND seq = ?",
                       (device, seq))
            d.add("repaired")
            d.add("repaired_readings", len(readings))
        db.executemany("INSERT INTO readings (device, t_ms, channel, value, seq) "
                       "VALUES (?, ?, ?, ?, ?)", [(device, t, n, v, seq) for t, n, v in readings])
        for name, unit in b.units.items():
            key = (device, name, unit)
            if key not in self._units:
                db.execute("INSERT OR REPLACE INTO channels (device, channel, unit) "
                           "VALUES (?, ?, ?)", key)
                d.units.append(key)
        db.execute(
            "INSERT INTO devices (device, schema_id, first_seen, last_seen, last_boot, last_seq, "
            "last_t_ms, dropped_reported, batches, readings, repaired, repaired_readings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) "
            "ON CONFLICT (device) DO UPDATE SET "
            "schema_id = coalesce(excluded.schema_id, schema_id), "
            "last_seen = max(last_seen, excluded.last_seen), "
            "last_boot = max(coalesce(last_boot, 0), excluded.last_boot), "
            "last_t_ms = CASE WHEN last_seq IS NULL OR excluded.last_seq > last_seq "
            "THEN coalesce(excluded.last_t_ms, last_t_ms) ELSE last_t_ms END, "
            "last_seq = max(coalesce(last_seq, -1), excluded.last_seq), "
            "dropped_reported = max(dropped_reported, excluded.dropped_reported), "
            "batches = batches + 1, readings = readings + excluded.readings, "
            "repaired = repaired + excluded.repaired, "
            "repaired_readings = repaired_readings + excluded.repaired_readings, "
            # in order: every batch up to this one is here (simulator/repair.py)
            "batch_done = CASE WHEN batch_done = excluded.last_seq - 1 THEN excluded.last_seq "
            "ELSE batch_done END",
            (device, b.schema_id, received_at, received_at, b.boot, seq,
             readings[-1][0] if readings else None, b.dropped, len(readings), int(repaired),
             len(readings) if repaired else 0))
        d.add("batches", device=device)
        d.add("readings", len(readings), device=device)

    def _hold(self, device, payload, received_at, topic, schema_id, d):
        """A compact batch whose schema has not arrived: kept in `held` until it does."""
        b = batch_decode.read_envelope(payload)
        self._envelope_of(device, b)
        db = self._db
        if db.execute("SELECT 1 FROM batches WHERE device = ? AND seq = ?",
                      (device, b.seq)).fetchone() is not None:
            self._duplicate(device, b.seq, payload, received_at, d)
            return
        cur = db.execute("INSERT OR IGNORE INTO held (device, seq, schema_id, received_at, topic, "
                         "payload) VALUES (?, ?, ?, ?, ?, ?)",
                         (device, b.seq, _check_int(schema_id, "schema id"), received_at, topic,
                          payload))
        self._seen(device, received_at)
        if cur.rowcount == 0:
            db.execute("UPDATE devices SET duplicates = duplicates + 1 WHERE device = ?",
                       (device,))
            d.add("duplicates", device=device)
            return
        d.add("held_total")
        d.recount = True
        active = db.execute("SELECT count(*) FROM held WHERE given_up_at IS NULL").fetchone()[0]
        if active > self.max_held:
            self._give_up(db.execute(
                "SELECT device, seq, schema_id, received_at, topic, payload FROM held "
                "WHERE given_up_at IS NULL ORDER BY received_at LIMIT ?",
                (active - self.max_held,)).fetchall(), "more than %d batches wait for a schema"
                % self.max_held, d)

    def _give_up(self, rows, why, d):
        now = time.time()
        for device, seq, schema_id, received_at, topic, payload in rows:
            self._db.execute("UPDATE held SET given_up_at = ? WHERE device = ? AND seq = ?",
                             (now, device, seq))
            self._malformed(topic, payload, received_at,
                            "undecodable: compact batch %d needs schema %#010x, which has not "
                            "arrived (%s); kept in `held`" % (seq, schema_id, why), d)
            d.add("undecodable")

    def _resolve(self, schema_id, d):
        """Decodes and stores the held batches of a schema that has now arrived."""
        db = self._db
        rows = db.execute("SELECT device, seq, received_at, topic, payload FROM held "
                          "WHERE schema_id = ?", (schema_id,)).fetchall()
        for device, seq, received_at, topic, payload in rows:
            d.merge(self._guarded("h", topic, payload, received_at, self._batch, device, payload,
                                  received_at, topic, True))
            db.execute("DELETE FROM held WHERE device = ? AND seq = ?", (device, seq))
            d.add("resolved")
        if rows:
            d.recount = True

    def _chores(self, d):
        """Once a second when batches wait for a schema: decode those whose schema is known now
        (held by another process, or before a restart), give up on those held too long."""
        db = self._db
        for (sid,) in db.execute("SELECT DISTINCT schema_id FROM held").fetchall():
            if dict.__contains__(self._schemas, sid):
                self._resolve(sid, d)
        old = db.execute("SELECT device, seq, schema_id, received_at, topic, payload FROM held "
                         "WHERE given_up_at IS NULL AND received_at < ?",
                         (time.time() - self.hold_timeout,)).fetchall()
        if old:
            self._give_up(old, "waited %g s" % self.hold_timeout, d)

    # -- the other topics --

    def _schema(self, device, payload, received_at, d):
        if not payload:
            return  # a retained schema being cleared
        try:
            schema = Schema.from_cbor(payload)
        except Exception as exc:  # noqa: BLE001
            raise Bad("schema: %s" % (exc,))
        sid = schema.id
        db = self._db
        db.execute("INSERT OR IGNORE INTO schemas (schema_id, document, channels, first_seen) "
                   "VALUES (?, ?, ?, ?)",
                   (sid, payload, json.dumps([[n, u, m, e] for n, u, m, e in schema.channels]),
                    received_at))
        self._seen(device, received_at)
        db.execute("UPDATE devices SET schema_id = ? WHERE device = ?", (sid, device))
        d.add("schemas")
        if not dict.__contains__(self._schemas, sid):
            dict.__setitem__(self._schemas, sid, schema)
        self._resolve(sid, d)

    def _event(self, device, payload, received_at, d):
        try:
            doc = cbor_decode.loads(payload)
        except Exception as exc:  # noqa: BLE001
            raise Bad("event: not CBOR: %s" % (exc,))
        db = self._db
        if isinstance(doc, dict):
            if "reply" not in doc or not isinstance(doc.get("ok"), bool):
                raise Bad("event: a CBOR map that is not a command reply {reply, ok, ...}")
            reply = doc["reply"]
            if not (reply is None or isinstance(reply, str)
                    or (isinstance(reply, int) and -INT64 <= reply < INT64)):
                reply = json.dumps(jsonable(reply))
            self._seen(device, received_at)
            db.execute("INSERT INTO replies (device, received_at, reply, ok, body) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (device, received_at, reply, int(doc["ok"]), json.dumps(jsonable(doc))))
            d.add("replies")
            if isinstance(reply, str) and reply.startswith(repair_mod.ID_PREFIX):
                try:
                    repair_mod.reply(db, device, doc, received_at, d)
                except ValueError as exc:
                    raise Bad("reply to a resend command: %s" % (exc,))
            return
        try:
            e = events_decode.decode(payload)
        except Exception as exc:  # noqa: BLE001
            raise Bad("event: %s" % (exc,))
        if e.device != device:
            raise Bad("an event of device %r on the topic of %r" % (e.device, device))
        for v, what in ((e.seq, "event seq"), (e.boot, "boot count"), (e.t, "event time")):
            _check_int(v, what)
        value = e.value
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise Bad("event value %r is not a number" % (value,))
        fields = None
        if e.state == INSIGHT:
            fields = _insight_fields(e.detail)
            detail = json.dumps(fields, sort_keys=True)
        elif e.detail is not None and not isinstance(e.detail, str):
            raise Bad("event detail is not text")
        else:
            detail = e.detail
        cur = db.execute("INSERT OR IGNORE INTO events (device, seq, boot, t_ms, synced, event, "
                         "sensor, state, value, detail, received_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (device, e.seq, e.boot, e.t, int(e.synced), e.event, e.sensor, e.state,
                          value, detail, received_at))
        self._seen(device, received_at)
        if cur.rowcount == 0:
            db.execute("UPDATE devices SET event_duplicates = event_duplicates + 1 "
                       "WHERE device = ?", (device,))
            d.add("event_duplicates")
            return
        if fields is not None:
            db.execute("INSERT INTO insights (device, seq, t_ms, synced, event, sensor, value, "
                       "fields, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (device, e.seq, e.t, int(e.synced), e.event, e.sensor, value, detail,
                        received_at))
            d.add("insights")
        repaired = repair_mod.arrived(db, device, "event", e.seq)
        if repaired:
            db.execute("UPDATE events SET repaired = 1 WHERE device = ? AND seq = ?",
                       (device, e.seq))
            d.add("events_repaired")
        db.execute("UPDATE devices SET events = events + 1, events_repaired = events_repaired + ?, "
                   "last_event_seq = max(coalesce(last_event_seq, -1), ?), "
                   "event_done = CASE WHEN event_done = ? - 1 THEN ? ELSE event_done END "
                   "WHERE device = ?", (int(repaired), e.seq, e.seq, e.seq, device))
        d.add("events")

    def _health(self, device, payload, received_at, d):
        try:
            doc = cbor_decode.loads(payload)
        except Exception as exc:  # noqa: BLE001
            raise Bad("health: not CBOR: %s" % (exc,))
        if not isinstance(doc, dict):
            raise Bad("health: not a CBOR map")
        if "device" in doc and doc["device"] != device:
            raise Bad("health of device %r on the topic of %r" % (doc["device"], device))
        t = doc.get("t")
        if not isinstance(t, int) or isinstance(t, bool) or not -INT64 <= t < INT64:
            t = None
        dropped = doc.get("dropped")
        if not isinstance(dropped, int) or isinstance(dropped, bool) or not 0 <= dropped < INT64:
            dropped = 0
        seq = None
        if "seq" in doc:
            try:
                seq = repair_mod.parse_seq(doc["seq"])
            except ValueError as exc:
                raise Bad("health: %s" % (exc,))
        db = self._db
        db.execute("INSERT INTO health (device, received_at, t_ms, health) VALUES (?, ?, ?, ?)",
                   (device, received_at, t, json.dumps(jsonable(doc), sort_keys=True)))
        self._seen(device, received_at)
        db.execute("UPDATE devices SET last_health_at = ?, "
                   "dropped_health = max(dropped_health, ?) WHERE device = ?",
                   (received_at, dropped, device))
        if seq:
            repair_mod.note_health(db, device, seq)
        d.add("health")

    def _status(self, device, payload, received_at, d):
        if not payload:
            return  # a retained status being cleared
        if payload not in (b"online", b"offline"):
            raise Bad("status is neither online nor offline")
        db = self._db
        db.execute("INSERT INTO devices (device, first_seen, last_seen, last_status, status_at) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                   "last_status = excluded.last_status, status_at = excluded.status_at",
                   (device, received_at, received_at, payload.decode(), received_at))
        d.add("status")


# ---- reading the database (for reports) ----

def _open(db_path):
    db = sqlite3.connect(str(db_path), timeout=30.0)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


REPAIR_COUNTS = ("lost_at_broker", "dropped_by_device", "events_lost_at_broker",
                 "events_dropped_by_device")


def summary(db_path):
    """Per device, from the database alone: readings, batches, duplicates, gaps [(from_seq,
    to_seq)] (missing between stored batches, settled or not), first_seq, last_seq,
    dropped_reported (the largest running total of the batch envelopes), dropped_health (of the
    health reports), events, held, last_status, last_boot; and repair: repaired and
    repaired_readings (batches, and their readings, that came in answer to a resend command),
    lost_at_broker and dropped_by_device (batches the device said it no longer holds, or
    dropped unsent), events_repaired, events_lost_at_broker, events_dropped_by_device, newest
    (the newest batch the device's health reported), open (batches missing up to it and not
    settled: being repaired)."""
    with _closing(_open(db_path)) as db:
        out = {}
        for (device, dup, dropped, dropped_health, status, boot, repaired, repaired_readings,
             events_repaired, newest) in db.execute(
                "SELECT device, duplicates, dropped_reported, dropped_health, last_status, "
                "last_boot, repaired, repaired_readings, events_repaired, batch_newest "
                "FROM devices ORDER BY device"):
            out[device] = {"readings": 0, "batches": 0, "duplicates": dup, "gaps": [],
                           "first_seq": None, "last_seq": None, "dropped_reported": dropped,
                           "dropped_health": dropped_health, "events": 0, "held": 0,
                           "last_status": status, "last_boot": boot, "repaired": repaired,
                           "repaired_readings": repaired_readings,
                           "events_repaired": events_repaired, "newest": newest, "open": 0}
            for key in REPAIR_COUNTS:
                out[device][key] = 0

        def each(sql):
            for row in db.execute(sql):
                yield out.setdefault(row[0], {}), row[1:]

        for d, (n,) in each("SELECT device, count(*) FROM readings GROUP BY device"):
            d["readings"] = n
        for d, (n, lo, hi) in each("SELECT device, count(*), min(seq), max(seq) FROM batches "
                                   "GROUP BY device"):
            d["batches"], d["first_seq"], d["last_seq"] = n, lo, hi
        for d, (lo, hi) in each("SELECT device, from_seq, to_seq FROM gaps "
                                "ORDER BY device, from_seq"):
            d["gaps"].append((lo, hi))
        for d, (n,) in each("SELECT device, count(*) FROM events GROUP BY device"):
            d["events"] = n
        for d, (n,) in each("SELECT device, count(*) FROM held GROUP BY device"):
            d["held"] = n
        for d, (kind, reason, n) in each("SELECT device, kind, reason, count(*) FROM lost "
                                         "GROUP BY device, kind, reason"):
            d[("events_" if kind == "event" else "") + _REASON[reason]] = n
        for d, (n,) in each(_OPEN_SQL + " GROUP BY device"):
            d["open"] = n
        return out


_REASON = {"broker": "lost_at_broker", "dropped": "dropped_by_device"}


def _open_sql(kind):
    """Per device: the batches (or events) missing between `done` and the newest known that are
    neither stored nor settled in `lost`."""
    table, last = ("batches", "last_seq") if kind == "batch" else ("events", "last_event_seq")
    return ("SELECT device, max(coalesce({last}, -1), coalesce({k}_newest, -1)) - {k}_done "
            "- (SELECT count(*) FROM {table} x WHERE x.device = devices.device "
            "AND x.seq > devices.{k}_done) "
            "- (SELECT count(*) FROM lost l WHERE l.device = devices.device AND l.kind = '{k}' "
            "AND l.seq > devices.{k}_done) {held}FROM devices WHERE {k}_done IS NOT NULL"
            ).format(k=kind, table=table, last=last, held=(
                # compact batches waiting for their schema are here, as repair.plan counts them
                "- (SELECT count(*) FROM held h WHERE h.device = devices.device "
                "AND h.seq > devices.batch_done) " if kind == "batch" else ""))


_OPEN_SQL = _open_sql("batch")


def repairing(db_path):
    """Batches and events of the file's devices that are missing up to the newest their health
    reported and not settled (being repaired, or still on their way); 0 when all are whole."""
    with _closing(_open(db_path)) as db:
        return sum(max(0, n) for kind in ("batch", "event")
                   for _, n in db.execute(_open_sql(kind)))


def totals(db_path):
    """The whole file: devices, batches, readings, duplicates, events, health reports, gaps
    (missing batches), malformed messages, held batches (and of those, given up on); repaired,
    repaired_readings, lost_at_broker, dropped_by_device, events_repaired,
    events_lost_at_broker, events_dropped_by_device (see summary)."""
    with _closing(_open(db_path)) as db:
        one = lambda sql: db.execute(sql).fetchone()[0] or 0  # noqa: E731
        return {
            "devices": one("SELECT count(*) FROM devices"),
            "batches": one("SELECT count(*) FROM batches"),
            "readings": one("SELECT count(*) FROM readings"),
            "duplicates": one("SELECT sum(duplicates) FROM devices"),
            "events": one("SELECT count(*) FROM events"),
            "health": one("SELECT count(*) FROM health"),
            "missing": one("SELECT sum(missing) FROM gaps"),
            "malformed": one("SELECT count(*) FROM malformed"),
            "held": one("SELECT count(*) FROM held"),
            "given_up": one("SELECT count(*) FROM held WHERE given_up_at IS NOT NULL"),
            "repaired": one("SELECT sum(repaired) FROM devices"),
            "repaired_readings": one("SELECT sum(repaired_readings) FROM devices"),
            "events_repaired": one("SELECT sum(events_repaired) FROM devices"),
            "lost_at_broker": one("SELECT count(*) FROM lost WHERE kind = 'batch' "
                                  "AND reason = 'broker'"),
            "dropped_by_device": one("SELECT count(*) FROM lost WHERE kind = 'batch' "
                                     "AND reason = 'dropped'"),
            "events_lost_at_broker": one("SELECT count(*) FROM lost WHERE kind = 'event' "
                                         "AND reason = 'broker'"),
            "events_dropped_by_device": one("SELECT count(*) FROM lost WHERE kind = 'event' "
                                            "AND reason = 'dropped'"),
        }


def lost_seqs(db_path, kind="batch", reason="broker"):
    """{device: [seq]}: the batches (or events) recorded as lost at the broker (reason
    "broker") or dropped by the device ("dropped")."""
    with _closing(_open(db_path)) as db:
        out = {}
        for device, seq in db.execute("SELECT device, seq FROM lost WHERE kind = ? AND reason = ? "
                                      "ORDER BY device, seq", (kind, reason)):
            out.setdefault(device, []).append(seq)
        return out


def series(db_path, device, channel):
    """[(t_ms, value)] of one channel of one device, in time order (for plots)."""
    with _closing(_open(db_path)) as db:
        return db.execute("SELECT t_ms, value FROM readings WHERE device = ? AND channel = ? "
                          "ORDER BY t_ms", (device, channel)).fetchall()


def insights(db_path, device=None):
    """[(device, t_ms, event, sensor, value, fields dict)] in time order per device: what the
    simulator scores against the truth and plots."""
    sql = "SELECT device, t_ms, event, sensor, value, fields FROM insights"
    args = ()
    if device is not None:
        sql += " WHERE device = ?"
        args = (device,)
    with _closing(_open(db_path)) as db:
        rows = db.execute(sql + " ORDER BY device, t_ms, seq", args).fetchall()
    return [(d, t, e, s, v, json.loads(f)) for d, t, e, s, v, f in rows]


class _closing:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()


if __name__ == "__main__":
    import sys

    from firmware.ingest_cmd import standalone
    sys.exit(standalone())
