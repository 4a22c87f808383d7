"""The PostgreSQL backend: the ingest's fleet-scale store (docs/ingest.md, "PostgreSQL").

    tether ingest --db postgresql://user:password@host:5432/fleet

The same tables, columns and meaning as the SQLite layout (docs/ingest.md), in PostgreSQL's types
(JSON documents as jsonb), except the readings: they are stored one row per batch and channel,
with the batch's times and values of that channel as arrays (`readings_packed`), which
bench/ingest.py measures several times faster to write than a row per reading and 8x smaller,
and no slower to read back. Users query the relations every backend has (docs/ingest.md,
"Querying the database"): the tables `events`, `insights`, `health`, and the view

    readings (device, t_ms, channel, value, seq, text)     one row per reading (unnest)

whose `value` is the number (true/false as 1/0); a text reading (SenML `vs`) has value NULL and
its string in `text`, the one column SQLite's `readings` does not have.

readings_packed is partitioned by time: a range partition per UTC day of t_first (the batch's
first time of that channel), named readings_packed_YYYYMMDD, created when the first batch of
that day arrives and listed in `reading_partitions`. Old data goes a day at a time, without a
DELETE: `SELECT tether_drop_readings(before_ms)` drops every partition wholly before it. Where
the TimescaleDB extension is installed and loaded (shared_preload_libraries), readings_packed is
a hypertable on t_first instead (chunks of a day) and TimescaleDB's drop_chunks() does the same.
Only the days of the last year and the next day (by the store's clock) get partitions or
chunks: rows of other days (a clock never synced, counting from 1970; a broken or hostile one;
a backlog older than a year) go in the plain table readings_outside, which the views read too.
A device could otherwise make a partition per day it names, and past some thousands every query
of the views fails ("out of shared memory": a lock per partition).

The layout has a version (table `tether_layout`): SCHEMA_SQL is version 1, MIGRATIONS[v] takes
a database from version v to v + 1 in one transaction; a newer version, or tables of the same
names without `tether_layout`, are refused with a message saying so.

Several ingest processes (one shared subscription group, on one machine or many) write one
database at once. What keeps de-duplication exact is the primary keys with INSERT ... ON
CONFLICT DO NOTHING, whose row count says whether this transaction stored the row: two
processes storing the same batch at once both try, one inserts, the other waits for its commit
and counts a duplicate. Counters are updated in place (UPDATE ... SET n = n + 1), never read
and written back. Repair planning is serialised by a transaction-scoped advisory lock
(planning()). A deadlock, a serialisation failure or a lost connection (the server
restarted) is a failure of the database (PostgresStore.failed, by SQLSTATE): the writer rolls
back and stores the whole group again (the next begin() reconnects), and acknowledges nothing
to the broker before its COMMIT.
"""
import datetime
import logging
import os
import struct
import tempfile
import time

import psycopg
import psycopg.conninfo
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from ingest import store as base
from ingest.store import STORES_SQL
from ingest.url import hide_password, secrets_of

log = logging.getLogger("tether.ingest")

VERSION = 8  # tether_layout.version: SCHEMA_SQL, then each of MIGRATIONS
DAY_MS = 86400000  # one partition (or hypertable chunk) of readings_packed
DAYS_BACK, DAYS_AHEAD = 366, 1  # the days of t_first that get one (by PostgresStore.clock)
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
LAYOUT_LOCK = 0x7e7e1a01  # advisory lock keys (one number space per database)
PARTITION_LOCK = 0x7e7e1a02
PLAN_LOCK = 0x7e7e1a03
# SQLSTATE classes a message's own values cause (PostgresStore.failed()): data (22), a
# constraint (23), a program limit such as a key too big for its index (54).
MESSAGE_CLASSES = ("22", "23", "54")
TABLES = ("devices", "batches", "readings_packed", "readings_outside", "reading_partitions",
          "channels", "events",
          "replies", "health", "schemas", "held", "malformed", "requests", "asked", "lost",
          "repair_bucket", "insights", "sim_parts", "acks", "stores")
VIEWS = ("readings", "gaps", "channel_batches")

SCHEMA_SQL = """
CREATE TABLE tether_layout (
    id integer PRIMARY KEY CHECK (id = 0),
    version integer NOT NULL,
    readings text NOT NULL CHECK (readings IN ('partitions', 'hypertable'))
);
CREATE TABLE devices (
    device text PRIMARY KEY,
    schema_id bigint,
    first_seen double precision NOT NULL,
    last_seen double precision NOT NULL,
    last_boot bigint,
    last_seq bigint,
    last_t_ms bigint,
    dropped_reported bigint NOT NULL DEFAULT 0,
    dropped_health bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    readings bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    events bigint NOT NULL DEFAULT 0,
    event_duplicates bigint NOT NULL DEFAULT 0,
    last_status text,
    status_at double precision,
    last_health_at double precision,
    last_event_seq bigint,
    batch_oldest bigint,
    batch_newest bigint,
    event_oldest bigint,
    event_newest bigint,
    batch_done bigint,
    event_done bigint,
    repaired bigint NOT NULL DEFAULT 0,
    repaired_readings bigint NOT NULL DEFAULT 0,
    events_repaired bigint NOT NULL DEFAULT 0
);
CREATE TABLE batches (
    device text NOT NULL,
    seq bigint NOT NULL,
    boot bigint NOT NULL,
    dropped bigint NOT NULL,
    synced integer NOT NULL,
    encoding text NOT NULL,
    deflated integer NOT NULL,
    schema_id bigint,
    bytes integer NOT NULL,
    crc32 bigint NOT NULL,
    received_at double precision NOT NULL,
    readings integer NOT NULL,
    t_first bigint,
    t_last bigint,
    ingest text,
    repaired integer NOT NULL DEFAULT 0,
    PRIMARY KEY (device, seq)
);
-- One row per batch and channel. No primary key: a batch's readings are stored only by the
-- transaction whose INSERT into `batches` stored the batch.
CREATE TABLE readings_packed (
    device text NOT NULL,
    seq bigint NOT NULL,
    channel text NOT NULL,
    t_first bigint NOT NULL,
    t_ms bigint[] NOT NULL,
    value double precision[] NOT NULL,
    text text[]
) {packed_options};
CREATE INDEX readings_packed_by_channel ON readings_packed (device, channel, t_first);
CREATE TABLE reading_partitions (
    name text PRIMARY KEY,
    t_from bigint NOT NULL,
    t_to bigint NOT NULL
);
CREATE TABLE channels (
    device text NOT NULL,
    channel text NOT NULL,
    unit text,
    PRIMARY KEY (device, channel)
);
CREATE TABLE events (
    device text NOT NULL,
    seq bigint NOT NULL,
    boot bigint NOT NULL,
    t_ms bigint NOT NULL,
    synced integer NOT NULL,
    event text NOT NULL,
    sensor text NOT NULL,
    state text NOT NULL,
    value double precision,
    detail text,
    received_at double precision NOT NULL,
    repaired integer NOT NULL DEFAULT 0,
    PRIMARY KEY (device, seq)
);
CREATE TABLE replies (
    device text NOT NULL,
    received_at double precision NOT NULL,
    reply text,
    ok integer NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE health (
    device text NOT NULL,
    received_at double precision NOT NULL,
    t_ms bigint,
    health jsonb NOT NULL
);
CREATE INDEX health_by_device ON health (device, received_at);
CREATE TABLE schemas (
    schema_id bigint PRIMARY KEY,
    document bytea NOT NULL,
    channels text NOT NULL,
    first_seen double precision NOT NULL
);
CREATE TABLE held (
    device text NOT NULL,
    seq bigint NOT NULL,
    schema_id bigint NOT NULL,
    received_at double precision NOT NULL,
    topic text NOT NULL,
    payload bytea NOT NULL,
    given_up_at double precision,
    PRIMARY KEY (device, seq)
);
CREATE INDEX held_by_schema ON held (schema_id);
CREATE INDEX held_by_age ON held (given_up_at, received_at);
CREATE TABLE malformed (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at double precision NOT NULL,
    topic text NOT NULL,
    reason text NOT NULL,
    bytes integer NOT NULL,
    payload_hex text NOT NULL
);
CREATE TABLE requests (
    device text PRIMARY KEY,
    id text NOT NULL,
    kind text NOT NULL,
    ranges text NOT NULL,
    sent_at double precision NOT NULL,
    answered_at double precision,
    ingest text
);
CREATE TABLE asked (
    device text NOT NULL,
    kind text NOT NULL,
    seq bigint NOT NULL,
    asked_at double precision NOT NULL,
    asks integer NOT NULL,
    PRIMARY KEY (device, kind, seq)
);
CREATE TABLE lost (
    device text NOT NULL,
    kind text NOT NULL,
    seq bigint NOT NULL,
    reason text NOT NULL CHECK (reason IN ('broker', 'dropped')),
    recorded_at double precision NOT NULL,
    PRIMARY KEY (device, kind, seq)
);
CREATE TABLE repair_bucket (
    id integer PRIMARY KEY CHECK (id = 0),
    tokens double precision NOT NULL,
    at double precision NOT NULL
);
CREATE TABLE insights (
    device text NOT NULL,
    seq bigint NOT NULL,
    t_ms bigint NOT NULL,
    synced integer NOT NULL,
    event text NOT NULL,
    sensor text NOT NULL,
    value double precision,
    fields jsonb NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE INDEX insights_by_event ON insights (event, device, t_ms);
CREATE VIEW gaps AS
    SELECT device, prev + 1 AS from_seq, seq - 1 AS to_seq, seq - prev - 1 AS missing
    FROM (SELECT device, seq, lag(seq) OVER (PARTITION BY device ORDER BY seq) AS prev
          FROM batches) b
    WHERE seq > prev + 1;
CREATE VIEW readings AS
    SELECT p.device, r.t_ms, p.channel, r.value, p.seq, r.text
    FROM readings_packed p CROSS JOIN LATERAL unnest(p.t_ms, p.value, p.text)
         AS r (t_ms, value, text);
-- tether_drop_readings(before_ms) is made by the migrations (DROP_READINGS), in its newest form
"""

# channel_batches over `source` (a relation aliased p): a row's first, lowest, highest and last
# readings; the lowest and highest worked out from the arrays for rows stored without them.
CHANNEL_BATCHES = """CREATE OR REPLACE VIEW channel_batches AS
    SELECT p.device, p.channel, p.t_first, p.seq, p.value[1] AS v_first,
           coalesce(p.t_low, lo.t) AS t_low, coalesce(p.v_low, lo.v) AS v_low,
           coalesce(p.t_high, hi.t) AS t_high, coalesce(p.v_high, hi.v) AS v_high,
           p.t_ms[cardinality(p.t_ms)] AS t_last, p.value[cardinality(p.value)] AS v_last
    FROM {source} p
    LEFT JOIN LATERAL (SELECT t, v FROM unnest(p.t_ms, p.value) AS u (t, v)
                       WHERE p.v_low IS NULL AND v NOT IN ('NaN', 'Infinity', '-Infinity')
                       ORDER BY v, t LIMIT 1) lo ON true
    LEFT JOIN LATERAL (SELECT t, v FROM unnest(p.t_ms, p.value) AS u (t, v)
                       WHERE p.v_low IS NULL AND v NOT IN ('NaN', 'Infinity', '-Infinity')
                       ORDER BY v DESC, t LIMIT 1) hi ON true;
"""


# MIGRATIONS[v]: SQL taking a database from layout version v to v + 1.
# tether_drop_readings(before_ms): the days of readings wholly before before_ms, and the health
# reports and command replies received before it (docs/ingest.md, Partitions)
DROP_READINGS = """
CREATE OR REPLACE FUNCTION tether_drop_readings(before_ms bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    p record;
    n integer := 0;
    cut numeric;
BEGIN
    -- the days wholly before before_ms (a day's start near the ends of bigint is past them)
    cut := greatest(floor(before_ms::numeric / 86400000) * 86400000, -9223372036854775808);
    DELETE FROM readings_outside WHERE t_first < cut::bigint;
    -- what the ingest keeps of a device besides its readings, by when it came: a health
    -- report every 5 minutes outgrew the readings it was kept beside
    DELETE FROM health WHERE received_at < before_ms / 1000.0;
    DELETE FROM replies WHERE received_at < before_ms / 1000.0;
    IF (SELECT readings FROM tether_layout) = 'hypertable' THEN
        EXECUTE 'SELECT count(*) FROM drop_chunks(''readings_packed'', older_than => $1)'
            INTO n USING before_ms;
        RETURN n;
    END IF;
    PERFORM pg_advisory_xact_lock(%d);
    -- At most 500 a call: each holds its locks until the call ends, and thousands ran the
    -- server out of shared memory (a database of an older ingest has a partition for every
    -- day a device named). Called again, it drops the next ones.
    FOR p IN SELECT name FROM reading_partitions WHERE t_to <= before_ms ORDER BY t_from
             LIMIT 500 LOOP
        EXECUTE format('DROP TABLE IF EXISTS %%I', p.name);
        DELETE FROM reading_partitions WHERE name = p.name;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
""" % PARTITION_LOCK

MIGRATIONS = {
    # A simulated fleet's parts of its report (simulator/parts.py), one per process that ran a
    # range of the fleet's devices, as JSON text; `tether report` merges them.
    1: """
CREATE TABLE sim_parts (
    run text NOT NULL,
    first_device integer NOT NULL,
    devices integer NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (run, first_device)
);
""",
    # What the fleet console was told about an action (ingest/store/sqlite.py, ACKS_SQL).
    2: """
CREATE TABLE acks (
    device text NOT NULL,
    action text NOT NULL,
    sensor text NOT NULL,
    done text NOT NULL CHECK (done IN ('ack', 'snooze')),
    at_ms bigint NOT NULL,
    until_ms bigint,
    value double precision,
    received_at double precision NOT NULL,
    reply text,
    PRIMARY KEY (device, action, sensor)
);
CREATE INDEX replies_by_device ON replies (device, received_at);
""",
    # Each row's lowest and highest number with their times, and the view of them that SQLite's
    # channel_batches table is (ingest/store/sqlite.py): a chart of a long span reads a row per
    # batch instead of every reading (console/reads.py). Columns added without a default take
    # no rewrite and hold their lock for a moment; the rows stored before (or by an ingest of
    # the older layout, still running) have theirs worked out from the arrays when read.
    3: """
ALTER TABLE readings_packed ADD COLUMN t_low bigint, ADD COLUMN v_low double precision,
    ADD COLUMN t_high bigint, ADD COLUMN v_high double precision;
""" + CHANNEL_BATCHES.format(source="readings_packed"),
    # Rows whose day gets no partition (PostgresStore._add), and the views over both tables.
    # Rows of a day wholly before tether_drop_readings' time go from it too.
    4: """
CREATE TABLE readings_outside (LIKE readings_packed INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE INDEX readings_outside_by_channel ON readings_outside (device, channel, t_first);
CREATE INDEX readings_outside_by_time ON readings_outside (t_first);
CREATE OR REPLACE VIEW readings AS
    SELECT p.device, r.t_ms, p.channel, r.value, p.seq, r.text
    FROM (SELECT device, seq, channel, t_ms, value, text FROM readings_packed
          UNION ALL
          SELECT device, seq, channel, t_ms, value, text FROM readings_outside) p
    CROSS JOIN LATERAL unnest(p.t_ms, p.value, p.text) AS r (t_ms, value, text);
""" + CHANNEL_BATCHES.format(source=(
        "(SELECT device, channel, t_first, seq, t_ms, value, t_low, v_low, t_high, v_high "
        "FROM readings_packed UNION ALL "
        "SELECT device, channel, t_first, seq, t_ms, value, t_low, v_low, t_high, v_high "
        "FROM readings_outside)")) + """
""" + DROP_READINGS,
    # A device's logs (ingest/numbering.py): the devices known so far had one, store 0; what an
    # erased log took with it is `erased` in `lost`; a gap is between two batches of one store.
    5: STORES_SQL.format(id="bigint", real="double precision") + """
ALTER TABLE lost DROP CONSTRAINT lost_reason_check,
    ADD CONSTRAINT lost_reason_check CHECK (reason IN ('broker', 'dropped', 'erased'));
CREATE OR REPLACE VIEW gaps AS
    SELECT device, prev + 1 AS from_seq, seq - 1 AS to_seq, seq - prev - 1 AS missing
    FROM (SELECT device, seq, lag(seq) OVER (PARTITION BY device, seq >> 32 ORDER BY seq) AS prev
          FROM batches) b
    WHERE seq > prev + 1;
""",
    6: """
-- The console's standing alarms (console/actions.py): threshold events the profile marks as
-- alarms carry the detail 'alarm' (docs/wire-format.md), a few among a fleet's millions.
CREATE INDEX events_alarms ON events (device, sensor, event, seq) WHERE detail = 'alarm';
""",
    7: DROP_READINGS + """
-- The console's failing sensors (console/actions.py): each sensor's newest sensor_error
CREATE INDEX events_sensor_errors ON events (device, sensor, seq)
    WHERE event = 'sensor_error';
""",
}


class TextLoader(Loader):
    """jsonb read back as its text, as the SQLite backend gives it (the shared code parses)."""

    def load(self, data):
        return bytes(data).decode()


class NumberLoader(Loader):
    """numeric (what sum() of a bigint column gives) as an int when whole, as SQLite gives it."""

    def load(self, data):
        text = bytes(data).decode()
        if "." in text or "e" in text.lower() or text == "NaN":
            return float(text)
        return int(text)


def hide_secrets(message, url):
    """libpq's message without what it repeats of url (pieces of the URI, the password)."""
    for secret in secrets_of(url):
        message = message.replace(secret, "***")
    return message


def _connect(url, timeout, name="tether-ingest"):
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)),
                               application_name=name)
        # A lock another session holds waits `timeout` at most, as SQLite's busy timeout: a
        # forgotten `LOCK TABLE` stalled the ingest without a line, and every console page
        # (unless the URL's options, the role, the database or the server set one of theirs).
        conn.execute("SELECT set_config('lock_timeout', %s, false) FROM pg_settings "
                     "WHERE name = 'lock_timeout' AND source = 'default'",
                     ("%dms" % max(1, int(timeout * 1000)),))
    except psycopg.Error as exc:  # libpq's message spans lines: said in one
        raise psycopg.OperationalError(" ".join(hide_secrets(str(exc), url).split())) from None
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("numeric", NumberLoader)
    return conn


def partition_of(t_ms):
    """(name, t_from, t_to) of the readings_packed partition holding t_first = t_ms: its UTC day
    (t_from None: no lower bound; t_to None: no upper bound, at the ends of bigint)."""
    start = t_ms // DAY_MS * DAY_MS
    end = start + DAY_MS
    try:
        day = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=start)
        name = "readings_packed_%04d%02d%02d" % (day.year, day.month, day.day)
    except OverflowError:  # past the years 1 to 9999: a hostile or broken clock
        name = "readings_packed_%s%d" % ("m" if start < 0 else "p", abs(start) // DAY_MS)
    return (name, start if start >= INT64_MIN else None, end if end <= INT64_MAX else None)


# What names a database in a URL: the rest (sslmode, connect_timeout, application_name...) says
# how to reach it, and a change of those gave the ingest another default client id, stranding
# the session the broker kept queuing for the old one
NAMES = ("host", "hostaddr", "port", "dbname", "user", "options")


def identity(url):
    """Which database url names, whatever way it is written: its host, port, database, user
    and options (a password moved from the URL to PGPASSWORD, as the docs advise, or an
    sslmode added, keeps the ingest's default client id, and so the session the broker queues
    for it)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return hide_password(url)
    return " ".join("%s=%s" % (k, parts[k]) for k in sorted(parts) if k in NAMES)


class PostgresStore(base.Store):
    """A connection to the ingest's PostgreSQL database (the backend contract of
    ingest/store/__init__.py). Readings are gathered per transaction and written with one COPY
    just before its COMMIT; a savepoint rolled back drops those of its messages."""

    Error = psycopg.Error
    Failure = (psycopg.OperationalError, psycopg.InterfaceError)  # failed() picks among them
    BadValue = (psycopg.DataError,)
    clock = staticmethod(time.time)  # what day it is, for _days_dated (the simulator's: its own)

    def __init__(self, conn, url, timeout=30.0):
        base.Store.__init__(self, conn, url)
        self.identity = identity(url)
        self.timeout = timeout
        self.app = conn.info.parameter_status("application_name") or "tether-ingest"
        self._pending = []  # readings_packed rows of the current transaction, for one COPY
        self._pending_outside = []  # and readings_outside's (_dated)
        self._marks = []  # (savepoint, len(_pending), len(_pending_outside)) as they nest
        self._release = None  # a RELEASE not sent yet: it goes with the next statement
        self._days = set()  # t_ms // DAY_MS of the partitions known to exist
        self._side = None  # a second connection: partitions attach there, outside the writer's
        self._mode = None
        self._outside = True  # not between begin() and commit() or rollback()

    @staticmethod
    def name(target):
        return hide_password(target)

    def failed(self, exc):
        """By SQLSTATE: what a message's values cause (22: data, 23: a constraint, 54: a key too
        big for its index) is the message's, to store as malformed; anything else is the
        database's, tried again: the connection (08, or no SQLSTATE: libpq lost it), a
        transaction the server rolled back (40), resources (53), the operator (57), the system
        (58), a lock (55P03), and also a missing table or privilege (42) or a server's own
        error (XX): those stall the ingest, logged, rather than throw good messages away."""
        if isinstance(exc, psycopg.InterfaceError):
            return True
        if not isinstance(exc, psycopg.Error):
            return False
        state = exc.sqlstate
        if state is None:
            return isinstance(exc, psycopg.OperationalError)
        if state == "25006":
            # A session keeps the default_transaction_read_only it began with (a database set
            # read-only, a standby promoted): the next begin() opens a new one, which sees the
            # database as it is now. On the old one it failed for good after the reset.
            self.conn.close()
        diag = getattr(exc, "diag", None)
        if state == "23514" and getattr(diag, "table_name", None) in ("readings_packed", None) \
                and getattr(diag, "constraint_name", None) is None:
            # No partition for the row (a CHECK constraint's violation names the constraint;
            # PostgreSQL before 14 names no table either):
            # a day's partition dropped or detached by hand under the ingest is the database's,
            # made again at the retry (_partition), not the messages' to store as malformed.
            return True
        return state[:2] not in MESSAGE_CLASSES

    # ---- the shared dialect ----

    def translate(self, sql):
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql, args=()):
        if self._outside and (self.conn.closed or self.conn.broken):
            self.reconnect()  # a query between transactions after the server came back
        out = self._sql(sql)
        if sql.startswith(("SAVEPOINT ", "ROLLBACK TO ", "RELEASE ")):
            verb = sql.split()[0]
            self._savepoint(sql.split()[-1], verb)
            if verb == "RELEASE" and self._release is None:
                self._release = out  # sent with what comes next: one round trip a message fewer
                return None
            if verb == "SAVEPOINT" and self._release is not None:
                release, self._release = self._release, None
                return self.conn.execute(release + "; " + out)  # no parameters: one message
        return self._run(out, args)

    def _run(self, sql, args=()):
        """conn.execute(sql, args), after the RELEASE left for later, if one was."""
        self._flush()
        return self.conn.execute(sql, args)

    def _flush(self):
        if self._release is not None:
            release, self._release = self._release, None
            self.conn.execute(release)

    def executemany(self, sql, rows):
        self._flush()
        cur = self.conn.cursor()
        cur.executemany(self._sql(sql), rows)
        return cur

    def _savepoint(self, name, verb):
        if verb == "SAVEPOINT":
            self._marks.append((name, len(self._pending), len(self._pending_outside)))
            return
        while self._marks and self._marks[-1][0] != name:
            self._marks.pop()  # released or rolled back with an outer one
        if not self._marks:
            return
        if verb == "ROLLBACK":  # the savepoint itself stays, as in SQL
            del self._pending[self._marks[-1][1]:]
            del self._pending_outside[self._marks[-1][2]:]
        else:
            self._marks.pop()

    # ---- transactions ----

    def begin(self):
        if self.conn.closed or self.conn.broken:
            self.reconnect()
        self._pending = []
        self._pending_outside = []
        self._marks = []
        self._release = None
        self.conn.execute("BEGIN")
        self._outside = False

    def commit(self):
        self.write_readings()
        self._outside = True  # committed or not: a COMMIT that fails ends the transaction
        release, self._release = self._release, None
        self.conn.execute("COMMIT" if release is None else release + "; COMMIT")

    def write_readings(self):
        """The readings gathered so far, COPYed now (a savepoint rolled back after this keeps
        them: Handlers calls it only where it has none)."""
        if not self._pending and not self._pending_outside:
            return
        self._flush()
        try:
            if self._pending:
                self._copy(self._pending)
        except psycopg.errors.CheckViolation:
            # No partition for a row: another process dropped a day this one knew of
            # (tether_drop_readings). Made again when the group is stored again.
            self._days.clear()
            raise
        self._pending = []
        if self._pending_outside:
            self._copy(self._pending_outside, "readings_outside")
            self._pending_outside = []

    def rollback(self):
        self._pending = []
        self._pending_outside = []
        self._marks = []
        self._release = None
        self._outside = True
        try:
            self.conn.execute("ROLLBACK")
        except psycopg.Error:  # the connection is gone: begin() makes a new one
            self.conn.close()

    @property
    def in_transaction(self):
        if self.conn.closed or self.conn.broken:
            # The transaction died with the connection (the server killed it mid-transaction):
            # the next query between transactions must reconnect, as begin() does.
            self._outside = True
            return False
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    def planning(self):
        # Not waiting: a process that waited here while holding rows another one's planning
        # needs would deadlock with it; this one plans at its next pass instead.
        return self._run("SELECT pg_try_advisory_xact_lock(%s)",
                                 (PLAN_LOCK,)).fetchone()[0]

    def reconnect(self):
        """A new connection after the old one broke (the server restarted): raises
        psycopg.OperationalError while the server does not answer."""
        try:
            self.conn.close()
        except psycopg.Error:
            pass
        self.conn = _connect(self.target, self.timeout, self.app)
        self._release = None
        if self._side is not None:
            self._side.close()
            self._side = None

    def close(self):
        if self._side is not None:
            self._side.close()
            self._side = None
        self.conn.close()

    def add_batch(self, row, device_row):
        """(stored, repaired): the shared ADD_BATCH, repair.arrived and UPSERT_DEVICE in one
        statement, each part of it done only when the batch's row was inserted."""
        cur = self._run(ADD_BATCH_SQL, row + (row[0], row[1], row[0], row[1]) + device_row
                                + device_row[-1:])
        stored, asked = cur.fetchone()
        return stored > 0, asked > 0

    def add_batches(self, rows):
        """{(device, seq): repaired} of the rows stored: a group's batches (keys unique) in one
        statement, ADD_BATCH_SQL's first three parts on them all."""
        cur = self._run(ADD_BATCHES_SQL, [list(c) for c in zip(*rows)])
        return {(device, seq): repaired for device, seq, repaired in cur.fetchall()}

    def add_channels(self, rows):
        """Each (device, channel, unit) of rows (sorted, each (device, channel) once) into
        `channels`, as the one-row upsert of Handlers._stored: a group's in one statement."""
        self._run(ADD_CHANNELS_SQL, [list(c) for c in zip(*rows)])

    def update_devices(self, rows):
        """UPSERT_DEVICE of rows that each sum a device's batches (Handlers._store_deferred)."""
        self._run(UPDATE_DEVICES_SQL, [list(c) for c in zip(*rows)])

    # ---- readings ----

    def insert_readings(self, device, seq, rows):
        """A batch's readings [(t_ms, channel, value)] (time order) as one readings_packed row
        per channel, written by commit(). A value that cannot be stored raises here (OverflowError
        or DataError: the message is malformed), never later in the COPY."""
        per = {}
        for t, name, value in rows:
            if not INT64_MIN <= t <= INT64_MAX:
                raise OverflowError("reading time %r is not a 64-bit integer" % (t,))
            c = per.get(name)
            if c is None:
                c = per[name] = ([], [], None)
            c[0].append(t)
            if isinstance(value, str):
                if "\x00" in value:
                    raise psycopg.DataError("a text reading with a NUL character")
                if c[2] is None:
                    per[name] = c = (c[0], c[1], [None] * len(c[1]))
                c[1].append(None)
                c[2].append(value)
            else:
                f = float(value)
                if f != f:  # NaN: NULL, as SQLite stores it (an average then skips it)
                    if c[2] is None:
                        per[name] = c = (c[0], c[1], [None] * len(c[1]))
                    c[1].append(None)
                    c[2].append(None)
                    continue
                c[1].append(f)
                if c[2] is not None:
                    c[2].append(None)
        if "\x00" in device or any("\x00" in name for name in per):
            raise psycopg.DataError("a device or channel name with a NUL character")
        days = self._days_dated()
        for name, (ts, values, texts) in per.items():
            self._add(days, ts[0], row_data((device, seq, name, ts[0], ts, values, texts)
                                            + base.extremes(ts, values)))

    def insert_batch(self, device, seq, batch):
        """insert_readings of a decoded batch (an ingest/fastdecode.Decoded), from its columns:
        no tuple per reading. The same rows, and the same errors (from insert_readings)."""
        if batch.text or "\x00" in device:
            return self.insert_readings(device, seq, batch.readings)
        columns = batch.columns
        checked = None  # the columns of a batch's full slots share one list of times
        for name, ts, values in columns:
            total = sum(values)  # NaN if a value is (in C: no loop here)
            if "\x00" in name or total != total:  # insert_readings' way: NULL for a NaN
                return self.insert_readings(device, seq, batch.readings)
            if ts is not checked:
                if not INT64_MIN <= min(ts) <= max(ts) <= INT64_MAX:
                    return self.insert_readings(device, seq, batch.readings)
                checked = ts
        head = _head(device, seq)
        times = {}  # id(ts) -> ts's field: the columns of a batch's full slots share one list
        rows = []
        try:
            for name, ts, values in columns:
                field = times.get(id(ts))
                if field is None:
                    field = times[id(ts)] = _array("q", INT8, ts)
                # ints go in as they are: struct packs them as doubles. Their extremes are
                # those of the doubles while they convert exactly (2^53), as in insert_readings.
                low_high = base.extremes(ts, values)
                if low_high[1] is not None and max(-low_high[1], low_high[3]) > _EXACT:
                    low_high = base.extremes(ts, list(map(float, values)))
                rows.append(head + _tail(name, ts[0], field, values, None, low_high))
        except struct.error:  # an int past a double's range: insert_readings says so
            return self.insert_readings(device, seq, batch.readings)
        days = self._days_dated()
        for (name, ts, values), row in zip(columns, rows):
            self._add(days, ts[0], row)

    def _days_dated(self):
        """(first, last) day (t_ms // DAY_MS) whose readings go in readings_packed: a year back
        to tomorrow by the clock. Other days' go in readings_outside, so that no clock, broken or
        hostile, makes more than some 370 partitions (or hypertable chunks)."""
        today = int(self.clock() * 1000) // DAY_MS
        return today - DAYS_BACK, today + DAYS_AHEAD

    def _add(self, days, t_first, row):
        """A row (row_data) to COPY at the commit, into the table its t_first's day goes in."""
        if days[0] <= t_first // DAY_MS <= days[1]:
            if self._mode != "hypertable":
                self._partition(t_first)
            self._pending.append(row)
        else:
            self._pending_outside.append(row)

    def _copy(self, data, table="readings_packed"):
        """COPY of readings_packed rows as row_data() encodes them (into table)."""
        with self.conn.cursor().copy("COPY %s (device, seq, channel, t_first, t_ms, value, text, "
                                     "t_low, v_low, t_high, v_high) "
                                     "FROM STDIN (FORMAT BINARY)" % table) as copy:
            copy.write(b"".join([COPY_HEADER] + data + [COPY_TRAILER]))

    def _partition(self, t_ms):
        day = t_ms // DAY_MS
        if day in self._days:
            return
        name, lo, hi = partition_of(t_ms)
        # On a connection of its own, outside the writer's transaction: ATTACH PARTITION takes a
        # lock that inserts into the other partitions do not wait for, nor it for them (CREATE
        # TABLE ... PARTITION OF would wait for every open transaction that wrote readings).
        side = self._side
        if side is None or side.closed or side.broken:
            side = self._side = _connect(self.target, self.timeout)
        try:
            with side.transaction():
                side.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
                listed = side.execute("SELECT 1 FROM reading_partitions WHERE name = %s",
                                      (name,)).fetchone() is not None
                there, attached = side.execute(
                    "SELECT c.oid, c.relispartition FROM pg_class c WHERE c.oid = "
                    "to_regclass(%s)", ('"%s"' % name,)).fetchone() or (None, False)
                bounds = ("MINVALUE" if lo is None else lo, "MAXVALUE" if hi is None else hi)
                if listed and not attached:
                    # listed, and dropped or detached by hand (not by tether_drop_readings):
                    # every batch of its day was refused until the row went
                    log.warning("the partition %s for the readings of its day was %s by hand: "
                                "%s", name, *(("detached", "attached again") if there else
                                              ("dropped", "made again")))
                    if there is not None:
                        side.execute('ALTER TABLE readings_packed ATTACH PARTITION "%s" FOR '
                                     'VALUES FROM (%s) TO (%s)' % ((name,) + bounds))
                    else:
                        side.execute("DELETE FROM reading_partitions WHERE name = %s", (name,))
                        listed = False
                        there = None
                if not listed:
                    # a table of its name and no row (the row deleted by hand): taken as it is,
                    # attached if need be; CREATE TABLE failed on it at every try for good
                    if there is None:
                        side.execute('CREATE TABLE "%s" (LIKE readings_packed INCLUDING '
                                     'DEFAULTS INCLUDING CONSTRAINTS)' % name)
                    if not attached:
                        side.execute('ALTER TABLE readings_packed ATTACH PARTITION "%s" FOR '
                                     'VALUES FROM (%s) TO (%s)' % ((name,) + bounds))
                    side.execute("INSERT INTO reading_partitions (name, t_from, t_to) "
                                 "VALUES (%s, %s, %s)", (name, INT64_MIN if lo is None else lo,
                                                         INT64_MAX if hi is None else hi))
        except psycopg.errors.InsufficientPrivilege as exc:
            # A role that may only read and write stops here at each new day: say what it needs
            # (the same class of error, so it is still the database's, retried until granted).
            raise psycopg.errors.InsufficientPrivilege(
                "cannot make the partition %s for the readings of a new day: the ingest's role "
                "must own readings_packed and may create tables in its schema (docs/ingest.md, "
                "PostgreSQL): %s" % (name, str(exc).splitlines()[0])) from exc
        self._days.add(day)

    def slot(self, prefix):
        """A client id per process slot on this machine (held by an flock in the temp folder),
        the same after a restart; processes on other machines have another host in `prefix`."""
        try:
            return base.FileSlot(prefix, os.path.join(tempfile.gettempdir(), prefix))
        except ImportError:
            return base.PidSlot(prefix)


Store = PostgresStore  # the backend contract's name for it (ingest/store/__init__.py)


# COPY's binary format, written here: twice as fast as psycopg's row by row (bench/ingest.py).
# A field is its length (int32, -1 for NULL) and its bytes; an array is ndim, has-NULLs, the
# element type's OID, its length and lower bound (int32 each), then its elements as fields.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
ROW_FIELDS = struct.pack(">h", 11)
NULL = struct.pack(">i", -1)
INT8, FLOAT8, TEXT = 20, 701, 25
_structs = {}


def _array(code, oid, items):
    """A one-dimensional array without NULLs of 8-byte elements (int8 "q", float8 "d")."""
    n = len(items)
    packer = _structs.get((code, n))
    if packer is None:
        if len(_structs) > 256:  # batches of many sizes (a hostile device): start again
            _structs.clear()
        packer = _structs[code, n] = struct.Struct(">6i" + ("i" + code) * n)
    args = [8] * (2 * n)
    args[1::2] = items
    return packer.pack(20 + 12 * n, 1, 0, oid, n, 1, *args)


def _array_with_nulls(oid, items):
    parts = [struct.pack(">5i", 1, 1, oid, len(items), 1)]
    for x in items:
        if x is None:
            parts.append(NULL)
        elif oid == TEXT:
            parts.append(_text(x))
        else:
            parts.append(struct.pack(">id", 8, x))
    body = b"".join(parts)
    return struct.pack(">i", len(body)) + body


def _text(value):
    data = value.encode()
    return struct.pack(">i", len(data)) + data


_SEQ = struct.Struct(">iq")
_EXACT = 2 ** 53  # ints up to this convert to doubles exactly
_EXTREMES = struct.Struct(">iqidiqid")
NULLS = NULL * 4


def _head(device, seq):
    """A readings_packed row's field count, device and seq."""
    return ROW_FIELDS + _text(device) + _SEQ.pack(8, seq)


def _tail(channel, t_first, times, values, texts, low_high):
    """The rest of the row: times is the t_ms field, made by _array (one for the columns that
    share it)."""
    out = [_text(channel), _SEQ.pack(8, t_first), times]
    if texts is None:
        out += (_array("d", FLOAT8, values), NULL)
    else:
        out += (_array_with_nulls(FLOAT8, values), _array_with_nulls(TEXT, texts))
    t_low, v_low, t_high, v_high = low_high
    out.append(NULLS if v_low is None else _EXTREMES.pack(8, t_low, 8, v_low, 8, t_high, 8,
                                                          v_high))
    return b"".join(out)


def row_data(row):
    """COPY's binary form of a readings_packed row (device, seq, channel, t_first, t_ms, value,
    text, t_low, v_low, t_high, v_high)."""
    device, seq, channel, t_first, ts, values, texts = row[:7]
    return _head(device, seq) + _tail(channel, t_first, _array("q", INT8, ts), values, texts,
                                      row[7:])


# Store.add_batch in one round trip: data-modifying WITH queries, each run only when `stored`
# inserted the batch (a duplicate changes nothing), their parameters typed where a SELECT list
# would leave them unknown.
ADD_BATCH_SQL = PostgresStore.translate(None, (
    "WITH stored AS (" + base.ADD_BATCH + " RETURNING 1), "
    "asked AS (DELETE FROM asked WHERE device = ? AND kind = 'batch' AND seq = ? "
    "AND EXISTS (SELECT 1 FROM stored) RETURNING 1), "
    "lost AS (DELETE FROM lost WHERE device = ? AND kind = 'batch' AND seq = ? "
    "AND EXISTS (SELECT 1 FROM stored)), "
    "repaired AS (SELECT count(*) AS n FROM asked), "
    "device AS (INSERT INTO " + base.DEVICE_COLUMNS +
    "SELECT ?::text, ?::bigint, ?::float8, ?::float8, ?::bigint, ?::bigint, ?::bigint, "
    "?::bigint, ?::bigint AS readings, 1, repaired.n, repaired.n * ?::bigint FROM stored, repaired "
    + base.DEVICE_UPDATE + ") "
    "SELECT (SELECT count(*) FROM stored), (SELECT n FROM repaired)"))


# Store.add_batches: the rows as arrays, a column each (one parameter per column however many
# rows: the statement is prepared once); asked and lost are settled for the rows inserted.
ADD_BATCHES_SQL = PostgresStore.translate(None, (
    "WITH stored AS (INSERT INTO " + base.BATCH_COLUMNS +
    "SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::integer[], "
    "?::text[], ?::integer[], ?::bigint[], ?::integer[], ?::bigint[], ?::float8[], "
    "?::integer[], ?::bigint[], ?::bigint[], ?::text[]) "
    "ON CONFLICT DO NOTHING RETURNING device, seq), "
    "asked AS (DELETE FROM asked a USING stored s WHERE a.device = s.device "
    "AND a.kind = 'batch' AND a.seq = s.seq RETURNING a.device, a.seq), "
    "lost AS (DELETE FROM lost l USING stored s WHERE l.device = s.device "
    "AND l.kind = 'batch' AND l.seq = s.seq) "
    "SELECT s.device, s.seq, EXISTS (SELECT 1 FROM asked a WHERE a.device = s.device "
    "AND a.seq = s.seq) FROM stored s"))
UPDATE_DEVICES_SQL = PostgresStore.translate(None, (
    "INSERT INTO " + base.DEVICE_COLUMNS +
    "SELECT * FROM unnest(?::text[], ?::bigint[], ?::float8[], ?::float8[], ?::bigint[], "
    "?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) "
    + base.DEVICE_UPDATE))


ADD_CHANNELS_SQL = PostgresStore.translate(None, (
    "INSERT INTO channels (device, channel, unit) "
    "SELECT * FROM unnest(?::text[], ?::text[], ?::text[]) "
    "ON CONFLICT (device, channel) DO UPDATE SET unit = excluded.unit"))


def timescaledb(conn, url, timeout):
    """True where readings_packed can be a hypertable: TimescaleDB is in this database already,
    or installed on the server and created in it now. Installed but not loaded at the server's
    start, CREATE EXTENSION refuses it ("must be preloaded", a FATAL error that ends the
    session), as it does for a role that may not: so it is tried on a connection of its own, and
    on failure the readings are partitioned and a warning says why. (The server's
    shared_preload_libraries would tell the first case, but an ordinary role may not read it.)"""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return True
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
                    ).fetchone() is None:
        return False
    try:
        with _connect(url, timeout) as probe:  # autocommit: made for all, or not at all
            probe.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error as exc:
        log.warning("%s: TimescaleDB is installed on the server but could not be created in "
                    "this database (%s): the readings go in daily partitions, not a hypertable",
                    hide_password(url), exc.diag.message_primary or " ".join(str(exc).split()))
        return False


def connect(url, timeout=30.0, create=True):
    """A store on the database `url`. create: a new database gets the layout (a hypertable for
    the readings where TimescaleDB is available), an older one is migrated in one transaction,
    and one of a newer layout, or with tables of these names and no `tether_layout`, is refused
    with RuntimeError. Without create: as it is, for reading."""
    conn = _connect(url, timeout, "tether-ingest" if create else "tether-read")
    store = PostgresStore(conn, url, timeout)
    if create:
        try:
            store._mode = setup(conn, url, timeout)
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.close()
            # One line, and what it needs: the server's error quotes the statement over three.
            raise psycopg.errors.InsufficientPrivilege(
                "%s; the ingest's role lays out its tables the first time and migrates them "
                "after: it must be able to create tables in its schema, or own it "
                "(docs/ingest.md, PostgreSQL)" % str(exc).splitlines()[0]) from exc
        except BaseException:
            conn.close()
            raise
    return store


def setup(conn, url, timeout):
    """Creates or migrates the layout (see connect); returns how readings are partitioned."""
    where = hide_password(url)
    with conn.transaction():
        # Processes starting at once: one creates, the others find it made (however long a
        # migration of a big database takes: no lock_timeout here).
        conn.execute("SET LOCAL lock_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LAYOUT_LOCK,))
        if conn.execute("SELECT to_regclass('tether_layout')").fetchone()[0] is None:
            found = [name for name in TABLES + VIEWS if conn.execute(
                "SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None]
            if found:
                raise RuntimeError("%s has tables or views named %s but no tether_layout: they "
                                   "are not the Tether ingest's (use another database, or a "
                                   "schema of its own: CREATE SCHEMA tether, then "
                                   "?options=-csearch_path%%3Dtether)"
                                   % (where, ", ".join(found)))
            mode = "partitions"
            if timescaledb(conn, url, timeout):
                mode = "hypertable"
            _script(conn, SCHEMA_SQL.format(
                packed_options="PARTITION BY RANGE (t_first)" if mode == "partitions" else ""))
            if mode == "hypertable":
                conn.execute("SELECT create_hypertable('readings_packed', 't_first', "
                             "chunk_time_interval => %s::bigint)", (DAY_MS,))
            conn.execute("INSERT INTO tether_layout (id, version, readings) VALUES (0, 1, %s)",
                         (mode,))
        version, mode = conn.execute("SELECT version, readings FROM tether_layout").fetchone()
        if version > VERSION:
            raise RuntimeError("%s has ingest layout version %d, of a newer ingest; this one "
                               "reads version %d and older" % (where, version, VERSION))
        for v in range(version, VERSION):
            _script(conn, MIGRATIONS[v])
        if version < VERSION:
            conn.execute("UPDATE tether_layout SET version = %s", (VERSION,))
    return mode


def _script(conn, sql):
    conn.execute(sql)  # without parameters psycopg sends it whole: several statements at once
