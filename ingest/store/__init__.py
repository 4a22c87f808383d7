"""Where the ingest stores: open_store(url) picks the backend by the URL (ingest/url.py db_url):
a SQLite path (store/sqlite.py, the embedded default) or postgresql://... (a store/postgres.py).

The handlers, repair and the queries write their SQL once, for both backends, in this dialect:
`?` placeholders; greatest(a, b) and least(a, b) for the scalar max and min (given arguments
that are never NULL: SQLite's max() is NULL if one is, PostgreSQL's GREATEST skips it);
`INSERT ... ON CONFLICT (...) DO NOTHING | DO UPDATE SET ...` (never INSERT OR IGNORE / OR
REPLACE); SAVEPOINT, ROLLBACK TO, RELEASE; JSON documents bound and read back as text.
Store.execute turns a statement into the backend's dialect (translate()).

The backend contract. A backend module provides:

    connect(target, timeout, create=True) -> Store
        a connection to the database `target` (a path or a URL); with create, a new database
        gets the layout (docs/ingest.md, "The SQLite file" for SQLite's) and an older one is
        migrated in one transaction, and one of an unknown (newer) layout version is refused
        with RuntimeError saying so; without create (the read side) nothing is checked or
        changed.
    Store       its subclass of Store below, which provides:

    Error       the exception class of any database error: the writer rolls back and stores
                the whole group of messages again, later (nothing is acknowledged before)
    Failure     the exception classes the database's own failures are among (locked, disk
                full, connection lost)
    failed(exc) True when exc is a failure of the database itself, not of what a message
                made it do: inside a message's savepoint it is re-raised, not blamed on the
                message (the base class's: an instance of Failure)
    BadValue    a tuple of exception classes a value from a message can cause (out of range,
                unsupported type): the message is stored as malformed
    translate(sql) -> sql in the backend's dialect (the result is cached per statement)
    begin()     starts the writer's transaction and takes whatever lock makes processes that
                share the database apply one transaction at a time where it matters (SQLite:
                BEGIN IMMEDIATE, a lock on the whole file)
    insert_readings(device, seq, rows)
                stores a batch's readings [(t_ms, channel, value)] (SQLite: executemany;
                PostgreSQL: COPY), in the current transaction, and what `channel_batches`
                shows of them: per channel, its first and last reading in the batch's order
                and its lowest and highest number (extremes())
    add_batch(row, device_row)
                (stored, repaired) of ADD_BATCH, repair.arrived and UPSERT_DEVICE in fewer
                round trips, or None (the base class's): the handlers run them one by one
    add_batches(rows)
                the batches' rows (ADD_BATCH's values, no two with one (device, seq)) into
                `batches` and repair.arrived for those stored, in a statement or two: {(device,
                seq): repaired} of those stored; None (the base class's): the handlers store
                each batch as it comes. With it, the handlers put a group's batches off until
                the group's end (Handlers._store_deferred)
    update_devices(rows)
                UPSERT_DEVICE of many devices' rows at once (each device once; `batches`, the
                row's count of batches)
    write_readings()
                writes the readings insert_readings gathered, if it gathers them until the
                commit (PostgreSQL's COPY): before update_devices, so that the devices' rows,
                which other processes wait for, stay locked only until the commit
    insert_batch(device, seq, batch)
                the same for a decoded batch (ingest/fastdecode.Decoded); the base class's
                passes its readings to insert_readings, PostgreSQL's takes its columns
                [(channel, [t_ms], [value])] as they are
    planning()  True when this transaction may plan repairs: one process at a time, whatever
                it takes (SQLite: always, begin() locked the file; PostgreSQL: an advisory
                lock, not waited for: False while another process holds it)
    slot(base)  an object with client_id and release(): a client id, the same after a restart,
                that no other process sharing the database holds at the moment
    identity    what names the database in client ids (the absolute path; the URL without
                its password)
    name(target)  (a static method) the database as error messages name it (no password)

The base class's execute, executemany, commit, rollback, in_transaction and close work on a
DB-API connection that has execute() (sqlite3; psycopg 3) in autocommit mode, with transactions
begun by begin(); a backend overrides what differs. open_store turns Store.Error raised while
connecting into StoreError (a RuntimeError) naming the database, so that commands say it in one
line.

The layout (its DDL, version and migrations) belongs to the backend. What the shared SQL
needs of it: the tables and columns of docs/ingest.md ("The SQLite file"), with the same names,
primary keys and ON CONFLICT targets (a table may be a partitioned one, or `readings` a view
with insert_readings writing what lies under it), and the relations users query, with the same
names and columns on every backend (docs/ingest.md, "Querying the database").
"""
import hashlib
import os
import re
import socket

from ingest.url import db_url, hide_password

DIALECT = {}  # shared statement -> a backend's, per backend class: see Store.execute


# A device's logs, store id -> number (ingest/numbering.py), in both backends' layouts: the
# devices known when it was added had one each, from before store ids (store id 0). reported:
# the newest its health reports said it published (its own numbers); dropped_base: the device's
# dropped readings before it (a log made afresh counts from 0).
STORES_SQL = """
CREATE TABLE stores (
    device TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('batch', 'event')),
    store {id} NOT NULL,
    number INTEGER NOT NULL,
    first_seen {real} NOT NULL,
    reported {id},
    dropped_base {id} NOT NULL DEFAULT 0,
    PRIMARY KEY (device, kind, store),
    UNIQUE (device, kind, number)
);
INSERT INTO stores (device, kind, store, number, first_seen, reported)
    SELECT device, 'batch', 0, 0, first_seen, batch_newest FROM devices;
INSERT INTO stores (device, kind, store, number, first_seen, reported)
    SELECT device, 'event', 0, 0, first_seen, event_newest FROM devices;
"""


# A batch newly stored: its row in `batches` (ON CONFLICT: a duplicate), and what it adds to its
# device's row (Handlers._add_batch; PostgreSQL's add_batch runs the same in one statement).
BATCH_COLUMNS = (
    "batches (device, seq, boot, dropped, synced, encoding, deflated, schema_id, bytes, crc32, "
    "received_at, readings, t_first, t_last, ingest) ")
ADD_BATCH = ("INSERT INTO " + BATCH_COLUMNS + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT DO NOTHING")
DEVICE_COLUMNS = (
    "devices (device, schema_id, first_seen, last_seen, last_boot, last_seq, "
    "last_t_ms, dropped_reported, readings, batches, repaired, repaired_readings) ")
DEVICE_UPDATE = (
    "ON CONFLICT (device) DO UPDATE SET "
    # (each column of the stored row named devices.x: PostgreSQL would find x ambiguous
    # between it and excluded.x)
    "schema_id = coalesce(excluded.schema_id, devices.schema_id), "
    "last_seen = greatest(devices.last_seen, excluded.last_seen), "
    "last_boot = greatest(coalesce(devices.last_boot, 0), excluded.last_boot), "
    "last_t_ms = CASE WHEN devices.last_seq IS NULL "
    "OR excluded.last_seq > devices.last_seq "
    "THEN coalesce(excluded.last_t_ms, devices.last_t_ms) ELSE devices.last_t_ms END, "
    "last_seq = greatest(coalesce(devices.last_seq, -1), excluded.last_seq), "
    "dropped_reported = greatest(devices.dropped_reported, excluded.dropped_reported), "
    "batches = devices.batches + excluded.batches, "
    "readings = devices.readings + excluded.readings, "
    "repaired = devices.repaired + excluded.repaired, "
    "repaired_readings = devices.repaired_readings + excluded.repaired_readings, "
    # in order: every batch up to this one is here (ingest/repair.py). A row may sum a run of
    # `batches` batches with consecutive numbers, stored in that order, up to last_seq (Store.
    # add_batches): done moves past the run from anywhere just before or in it.
    "batch_done = CASE WHEN devices.batch_done BETWEEN excluded.last_seq - excluded.batches "
    "AND excluded.last_seq - 1 THEN excluded.last_seq ELSE devices.batch_done END")
UPSERT_DEVICE = ("INSERT INTO " + DEVICE_COLUMNS + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
                 + DEVICE_UPDATE)


def extremes(ts, values):
    """(t_low, v_low, t_high, v_high) of a channel's readings in a batch (times ts, values):
    its lowest and highest finite numbers with their times, the first of equals; Nones when it
    has none (text, NaN). Kept per batch and channel so that a chart of a month reads a row
    per batch instead of every reading (console/reads.py series)."""
    try:  # the usual batch, all numbers: in C
        lo, hi = min(values), max(values)
        if lo - lo == 0 and hi - hi == 0:  # finite: a NaN first or an infinity would not be
            return ts[values.index(lo)], lo, ts[values.index(hi)], hi
    except TypeError:  # text or None among them
        pass
    low = high = None
    for t, v in zip(ts, values):
        if isinstance(v, (int, float)) and v - v == 0:
            if low is None or v < low[1]:
                low = (t, v)
            if high is None or v > high[1]:
                high = (t, v)
    return (low or (None, None)) + (high or (None, None))


class Store:
    """A connection to the ingest's database, speaking the shared dialect (see above)."""

    Error = Exception
    Failure = Exception
    BadValue = ()

    def __init__(self, conn, target):
        self.conn = conn
        self.target = target
        self.identity = target
        self._dialect = DIALECT.setdefault(type(self), {})

    def translate(self, sql):
        return sql

    def failed(self, exc):
        return isinstance(exc, self.Failure)

    @staticmethod
    def name(target):
        """target as messages show it (a URL without its password)."""
        return target

    def _sql(self, sql):
        out = self._dialect.get(sql)
        if out is None:
            out = self._dialect[sql] = self.translate(sql)
        return out

    def execute(self, sql, args=()):
        return self.conn.execute(self._sql(sql), args)

    def executemany(self, sql, rows):
        return self.conn.executemany(self._sql(sql), rows)

    def begin(self):
        raise NotImplementedError

    def commit(self):
        self.conn.execute("COMMIT")

    def rollback(self):
        self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self):
        return self.conn.in_transaction

    def insert_readings(self, device, seq, rows):
        raise NotImplementedError

    def insert_batch(self, device, seq, batch):
        self.insert_readings(device, seq, batch.readings)

    def add_batch(self, row, device_row):
        return None  # the handlers run ADD_BATCH, repair.arrived, UPSERT_DEVICE one by one

    add_batches = None  # nor any group of batches at once

    def write_readings(self):
        pass  # written as they come

    def planning(self):
        return True

    def slot(self, base):
        return PidSlot(base)

    def close(self):
        self.conn.close()


def function_names(sql, names):
    """sql with each call of a function in names ({"greatest": "max"}) renamed."""
    return re.sub(r"\b(%s)\(" % "|".join(names), lambda m: names[m.group(1)] + "(", sql)


def open_store(url, timeout=30.0, create=True):
    """A Store on the database `url` (a SQLite path or postgresql://...): see the module
    docstring. BadURL for a value that is neither; RuntimeError for a database of another
    program or of a newer layout."""
    backend, target = db_url(str(url))
    if backend == "sqlite":
        from ingest.store import sqlite as module
    else:
        try:
            from ingest.store import postgres as module
        except ImportError as exc:
            raise StoreError("%s: this ingest cannot store into PostgreSQL (%s)"
                             % (hide_password(target), exc)) from exc
    try:
        return module.connect(target, timeout, create=create)
    except module.Store.Error as exc:
        raise StoreError("%s: %s" % (module.Store.name(target), exc)) from exc


class StoreError(RuntimeError):
    """A database that could not be opened (not one, unreachable, refused): the message says
    which and why."""


connect_db = open_store


def client_base(identity, group, prefix="tether/v1"):
    """The start of an ingest's default client id: this host, and which database, group and
    topic prefix (another prefix on the same database resumed the old prefix's session, whose
    subscriptions the broker kept: the new prefix's were never made). The default prefix adds
    nothing: the ids from before it was counted stay."""
    host = socket.gethostname().split(".")[0][:24] or "host"
    key = "%s|%s" % (identity, group) + ("" if prefix == "tether/v1" else "|" + prefix)
    where = hashlib.sha1(key.encode()).hexdigest()[:6]
    return "tether-ingest-%s-%s" % (host, where)


class PidSlot:
    """A client id of this process alone: a new session after each restart."""

    file = None

    def __init__(self, base):
        self.client_id = "%s-p%d" % (base, os.getpid())

    def release(self):
        pass


class FileSlot:
    """A default client id that is the same after a restart and differs between the processes
    sharing one database: slot i is held by an flock on `{prefix}.ingest-{i}.lock`, and the
    lowest free slot is taken."""

    def __init__(self, base, prefix):
        import fcntl  # ImportError where there is no flock (Windows): see PidSlot

        self.file = None
        for i in range(1000):
            f = open("%s.ingest-%d.lock" % (prefix, i), "a+")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.file = f
            self.client_id = "%s-%d" % (base, i)
            return
        raise RuntimeError("no free ingest slot next to %s" % prefix)

    def release(self):
        if self.file is not None:
            self.file.close()  # closing drops the flock
            self.file = None
