"""The SQLite backend: one file in WAL mode, shared by the ingest processes of one machine (see
ingest/store/__init__.py for what a backend provides, docs/ingest.md for the tables).

The layout has a version (PRAGMA user_version): SCHEMA_SQL is version 1, MIGRATIONS[v] takes a
file from version v to v + 1, and a new file gets them all.
"""
import os
import re
import sqlite3
import time

from ingest import store as base

DB_VERSION = 9  # PRAGMA user_version: SCHEMA_SQL (version 1), then each of MIGRATIONS

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

# What the fleet console (console/actions.py) was told about an action needing someone: the
# latest acknowledgement or snooze per device, action and sensor ('' for none), at the fleet's
# clock (at_ms), with what it was judged on (value: the drop count, the last reading's time) and
# the device's reply where it went to the device. Shared by both backends.
ACKS_SQL = """
CREATE TABLE acks (
    device TEXT NOT NULL,
    action TEXT NOT NULL,
    sensor TEXT NOT NULL,
    done TEXT NOT NULL CHECK (done IN ('ack', 'snooze')),
    at_ms INTEGER NOT NULL,
    until_ms INTEGER,
    value REAL,
    received_at REAL NOT NULL,
    reply TEXT,
    PRIMARY KEY (device, action, sensor)
);
CREATE INDEX replies_by_device ON replies (device, received_at);
"""

# MIGRATIONS[v] takes a file from layout version v to v + 1; a new file gets them all.
MIGRATIONS = {
    1: """
-- End-to-end repair (ingest/repair.py): what health reports say each device has published,
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
    3: """
-- A simulated fleet's parts of its report (simulator/parts.py): what only the devices know,
-- stored by each process that ran a range of the fleet, as JSON. `tether report` merges them.
CREATE TABLE sim_parts (
    run TEXT NOT NULL,
    first_device INTEGER NOT NULL,
    devices INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run, first_device)
);
""",
    4: ACKS_SQL,
    5: """
-- Per batch and channel: its first and last reading (in the batch's order) and its lowest and
-- highest number, each with its time, so that a chart of a long span (console/reads.py) reads a
-- row per batch instead of every reading. Filled from `readings` for a file that has them, as
-- the ingest would have: first and last in the order stored (rowid), the first of equals.
CREATE TABLE channel_batches (
    device TEXT NOT NULL,
    channel TEXT NOT NULL,
    t_first INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    v_first,
    t_low INTEGER,
    v_low,
    t_high INTEGER,
    v_high,
    t_last INTEGER NOT NULL,
    v_last,
    PRIMARY KEY (device, channel, t_first, seq)
) WITHOUT ROWID;
INSERT INTO channel_batches
    SELECT device, channel, max(CASE WHEN kf = 1 THEN t_ms END), seq,
           max(CASE WHEN kf = 1 THEN value END),
           max(CASE WHEN kl = 1 AND n THEN t_ms END), max(CASE WHEN kl = 1 AND n THEN value END),
           max(CASE WHEN kh = 1 AND n THEN t_ms END), max(CASE WHEN kh = 1 AND n THEN value END),
           max(CASE WHEN kt = 1 THEN t_ms END), max(CASE WHEN kt = 1 THEN value END)
    FROM (SELECT device, channel, seq, t_ms, value, n,
                 row_number() OVER (PARTITION BY device, channel, seq ORDER BY id) AS kf,
                 row_number() OVER (PARTITION BY device, channel, seq ORDER BY id DESC) AS kt,
                 row_number() OVER (PARTITION BY device, channel, seq
                                    ORDER BY n DESC, value, id) AS kl,
                 row_number() OVER (PARTITION BY device, channel, seq
                                    ORDER BY n DESC, value DESC, id) AS kh
          FROM (SELECT rowid AS id, device, channel, seq, t_ms, value,
                       typeof(value) IN ('integer', 'real') AND value > -9e999
                       AND value < 9e999 AS n
                FROM readings))
    GROUP BY device, channel, seq;
""",
    6: base.STORES_SQL.format(id="INTEGER", real="REAL") + """
ALTER TABLE lost RENAME TO lost_before;
CREATE TABLE lost (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('broker', 'dropped', 'erased')),
    recorded_at REAL NOT NULL,
    PRIMARY KEY (device, kind, seq)
) WITHOUT ROWID;
INSERT INTO lost SELECT device, kind, seq, reason, recorded_at FROM lost_before;
DROP TABLE lost_before;
DROP VIEW gaps;
CREATE VIEW gaps AS
    SELECT device, prev + 1 AS from_seq, seq - 1 AS to_seq, seq - prev - 1 AS missing
    FROM (SELECT device, seq, LAG(seq) OVER (PARTITION BY device, seq >> 32 ORDER BY seq) AS prev
          FROM batches)
    WHERE seq > prev + 1;
""",
    7: """
-- The console's standing alarms (console/actions.py): threshold events the profile marks as
-- alarms carry the detail 'alarm' (docs/wire-format.md), a few among a fleet's millions.
CREATE INDEX events_alarms ON events (device, sensor, event, seq) WHERE detail = 'alarm';
""",
    8: """
-- The console's failing sensors (console/actions.py): each sensor's newest sensor_error
CREATE INDEX events_sensor_errors ON events (device, sensor, seq)
    WHERE event = 'sensor_error';
""",
}


def _check_tables(db, db_path, version):
    """RuntimeError unless the file has the tables of its layout version: user_version alone
    does not tell the ingest's file from another program's (which must not be migrated)."""
    sql = SCHEMA_SQL + "".join(MIGRATIONS[v] for v in range(1, version))
    found = {name for (name,) in db.execute("SELECT name FROM sqlite_master "
                                            "WHERE type IN ('table', 'view')")}
    missing = [name for name in re.findall(r"CREATE (?:TABLE|VIEW) (\w+)", sql)
               if name not in found]
    if missing:
        raise RuntimeError("%s is an SQLite file of something else, not of the Tether ingest "
                           "(user_version %d, and no table %s)" % (db_path, version, missing[0]))


def _wal(db, timeout):
    """The journal mode after switching to WAL. SQLite answers 'database is locked' at once,
    without its busy timeout, while another connection holds the file (two ingests starting
    on a new file together): tried again until timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _script(db, sql):
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


class SQLiteStore(base.Store):
    Error = sqlite3.Error
    Failure = sqlite3.OperationalError
    BadValue = (sqlite3.InterfaceError, sqlite3.ProgrammingError)
    FUNCTIONS = {"greatest": "max", "least": "min"}  # SQLite's max() and min() of two or more

    def __init__(self, conn, target):
        base.Store.__init__(self, conn, target)
        self.identity = os.path.abspath(target)

    def translate(self, sql):
        return base.function_names(sql, self.FUNCTIONS)

    def begin(self):
        # A write lock on the whole file at once: two processes never interleave a transaction.
        self.conn.execute("BEGIN IMMEDIATE")

    def insert_readings(self, device, seq, rows):
        self.conn.executemany("INSERT INTO readings (device, t_ms, channel, value, seq) "
                              "VALUES (?, ?, ?, ?, ?)",
                              [(device, t, n, v, seq) for t, n, v in rows])
        per = {}
        for t, n, v in rows:
            c = per.get(n)
            if c is None:
                c = per[n] = ([], [])
            c[0].append(t)
            c[1].append(v)
        self.conn.executemany(
            "INSERT INTO channel_batches (device, channel, t_first, seq, v_first, t_low, v_low, "
            "t_high, v_high, t_last, v_last) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(device, n, ts[0], seq, vs[0]) + base.extremes(ts, vs) + (ts[-1], vs[-1])
             for n, (ts, vs) in per.items()])

    def slot(self, prefix):
        if self.target == ":memory:":
            return base.PidSlot(prefix)
        try:
            return base.FileSlot(prefix, self.target)
        except ImportError:
            return base.PidSlot(prefix)


Store = SQLiteStore  # the backend contract's name for it (ingest/store/__init__.py)


def connect(db_path, timeout=30.0, create=True):
    """A store on the ingest's SQLite file. create: in WAL mode, created with the layout of
    docs/ingest.md when new, migrated in one transaction when older (version 1 gains the repair
    columns and tables); refuses a file of a newer layout version. Without create: as it is, for
    reading."""
    if not create:
        if db_path != ":memory:" and not os.path.exists(db_path):
            # sqlite3 would make an empty file: reading must leave no file behind
            raise sqlite3.OperationalError("no such file")
        db = sqlite3.connect(db_path, timeout=timeout, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        return SQLiteStore(db, db_path)
    folder = os.path.dirname(os.path.abspath(db_path))
    if db_path != ":memory:" and not os.path.isdir(folder):
        # sqlite3 says only "unable to open database file"
        raise sqlite3.OperationalError("there is no folder %s to make it in" % folder)
    db = sqlite3.connect(db_path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        mode = _wal(db, timeout)
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
            else:
                _check_tables(db, db_path, version)
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
    return SQLiteStore(db, db_path)
