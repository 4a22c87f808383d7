"""Per-topic handling on a store: what each message adds to the database (docs/ingest.md).

Handlers is the half of the Ingest (ingest/subscriber.py) that runs in its writer thread, inside
the writer's transaction on self._db (a Store): each message in a savepoint of its own, so that
a bad one leaves only a `malformed` row (first the group goes without savepoints, and again with
them when a message fails: Handlers._savepoints). Its SQL is written once for every backend, in
the dialect of ingest/store/__init__.py; PostgreSQL stores a group's batches together
(_store_deferred). What a group of messages changed is gathered in a Delta and applied to the
process's counters after the COMMIT.
"""
import binascii
import json
import logging
import time

from agent import batch_decode, cbor, ids
from agent.batch import COMPACT

from ingest import decode, fastdecode, numbering, repair
from ingest.decode import Bad
from ingest.store import ADD_BATCH, UPSERT_DEVICE
from ingest.topics import parse_topic

log = logging.getLogger("tether.ingest")


# Health reports and replies have no number to de-duplicate on, as batches and events do. One
# the broker delivers again (the ingest stopped after storing it and before its PUBACK went) is
# a device's newest of its kind, before any later one: it is compared with the device's last
# few, as they are stored (jsonb comes back parsed, SQLite's text is parsed here).
RECENT = 5


def _again(rows, doc):
    """Whether doc is among rows' first column (JSON text, or parsed already)."""
    for (stored,) in rows:
        if isinstance(stored, (str, bytes)):
            try:
                stored = json.loads(stored)
            except ValueError:
                continue
        if stored == doc:
            return True
    return False


class Delta:
    """What one message (or one group of them) changed, applied to the counters after COMMIT."""

    __slots__ = ("counts", "devices", "units", "stores", "logs", "recount")

    def __init__(self):
        self.counts = {}
        self.devices = {}
        self.units = []
        self.stores = []  # ((device, kind, store id), number) met
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
        self.stores += other.stores
        self.logs += other.logs
        self.recount = self.recount or other.recount


def one_line(exc):
    """An error's message on one line (psycopg's span several)."""
    return " ".join(str(exc).split())


class Retry(Exception):
    """A message failed in a group stored without savepoints: roll back, store it with them."""


class Handlers:
    """Needs self._db (a Store), self._schemas (decode.Schemas), self._units (a set),
    self._stores, self._newest_log (dicts), self._shared_ids (a set),
    self.prefix, self.client_id, self.max_held and self.hold_timeout."""

    # (device, channel, unit) stored by the current transaction: its later batches skip them
    _group_units = frozenset()
    # (device, kind, store id) -> its number (ingest/numbering.py) met by the current
    # transaction (those committed: self._stores)
    _group_stores = None
    # Batches decoded and checked, their storing put off to the group's end (_store_deferred):
    # [(batch, payload, its `batches` row, its devices row)]; None: each stored as it comes.
    _deferred = None
    # Each message in a savepoint of its own. The writer stores a group first without them (a
    # savepoint costs a round trip, and PostgreSQL a subtransaction, a message), and again with
    # them if a message fails: the same rows either way.
    _savepoints = True

    def _one(self, m):
        """One message in its own SAVEPOINT: a bad one leaves only a `malformed` row."""
        return self._guarded("m", m[0], m[1], m[4], self._handle, m)

    def _guarded(self, name, topic, payload, received_at, fn, *args):
        """fn(*args, delta) inside SAVEPOINT name; when the message turns out bad (or trips
        anything but a database failure) its writes are undone and a `malformed` row stays.
        Without self._savepoints: fn(*args, delta) alone, and Retry when it fails."""
        db = self._db
        d = Delta()
        if not self._savepoints:
            try:
                fn(*args, d)
            except Exception as exc:  # noqa: BLE001 - the group again, each message in a savepoint
                if db.failed(exc):
                    raise
                raise Retry()
            return d
        db.execute("SAVEPOINT " + name)
        try:
            fn(*args, d)
        except Exception as exc:  # noqa: BLE001 - nothing a message carries may stop the ingest
            if db.failed(exc):
                raise  # locked, disk full, I/O, connection lost: the whole group again
            db.execute("ROLLBACK TO " + name)
            self._group_units.difference_update(d.units)
            for key, _ in d.stores:
                self._group_stores.pop(key, None)
            d = Delta()
            if isinstance(exc, Bad):
                reason = exc.reason
            elif isinstance(exc, (OverflowError,) + db.BadValue):
                reason = "a value out of range or of an unsupported type (%s)" % one_line(exc)
            elif isinstance(exc, db.Error):  # e.g. a key too big for its index
                reason = "the database refused it: %s" % one_line(exc)
            else:
                log.exception("unexpected error on a message on %s", topic)
                reason = "internal error: %s: %s" % (type(exc).__name__, exc)
            self._malformed(topic, payload, received_at, reason, d)
        db.execute("RELEASE " + name)
        return d

    def _malformed(self, topic, payload, received_at, reason, d):
        prefix = decode.malformed_hex(payload)
        reason = decode.text(reason)
        self._db.execute("INSERT INTO malformed (received_at, topic, reason, bytes, payload_hex) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (received_at, topic, reason, len(payload), prefix))
        d.add("malformed")
        d.logs.append((logging.WARNING, "malformed message on %s: %s (%d bytes: %s%s)",
                       topic if len(topic) <= 200 else topic[:200] + "...", reason, len(payload),
                       prefix, "..." if len(payload) > decode.HEX_PREFIX else ""))

    def _handle(self, m, d):
        topic, payload, qos, mid, received_at, gen = m
        kind, device = parse_topic(topic, self.prefix)
        if kind is None:
            raise Bad("not a Tether topic ({prefix}/{device}/up/batch|event|health|schema or "
                      "{prefix}/{device}/status)")
        if not ids.valid(device):
            raise Bad("the device id in the topic is not " + ids.WHAT)
        if len(payload) > decode.MAX_PAYLOAD:
            # before any decoding: 10 MB of CBOR held the one writer 11 s, every device waiting
            raise Bad("a payload of %d bytes, more than the %d any Tether message is (a batch's "
                      "max_bytes is at most 64 KiB)" % (len(payload), decode.MAX_PAYLOAD))
        if kind == "batch":
            self._batch(device, payload, received_at, topic, False, d)
            return
        if self._deferred:
            # Before any other message: it locks its device's row, and the rows of the devices
            # before it in the group's order are locked first (see Ingest._commit); and what
            # it does follows the batches before it (a schema sets its device's schema_id; a
            # health report and a reply read the stored numbers)
            d.merge(self._store_deferred())
        if kind == "event":
            self._event(device, payload, received_at, d)
        elif kind == "health":
            self._health(device, payload, received_at, d)
        elif kind == "schema":
            self._schema(device, payload, received_at, d)
        else:
            self._status(device, payload, received_at, d)

    def _store_of(self, device, kind, store, received_at, d, add=True):
        """(base, dropped_base) of the device's store (ingest/numbering.py): what its sequence
        numbers and its dropped count take here; None for a store not met when add is False."""
        key = (device, kind, store)
        got = self._stores.get(key)
        if got is None:
            got = self._group_stores.get(key)
        if got is None:
            if add and self._deferred:
                d.merge(self._store_deferred())  # a new store settles what the ones before lack
            got = numbering.number(self._db, device, kind, store, received_at, d, add)
            if got is None:
                return None
            self._group_stores[key] = got
            d.stores.append((key, got))
        if kind == "batch":
            newest = self._newest_log.get(device, -1)
            if got[0] > newest:
                self._newest_log[device] = got[0]
            elif got[0] < newest and device not in self._shared_ids:
                # Each log draws a random store id: two boards flashed with one id (no {uid})
                # publish two logs' batches in turn, which read as one erased log after another.
                self._shared_ids.add(device)
                d.logs.append((logging.WARNING, "device %s: a batch of its earlier log (its store "
                               "%d here) came after one of its newer log (store %d): a late one, "
                               "or two devices publishing under one device id (each needs its "
                               "own: a device.id with {uid})", device, got[0], newest))
        return got[0] << numbering.SHIFT, got[1]

    def _number(self, device, kind, store, seq, received_at, d):
        """A batch's or event's sequence number as the ingest keeps it, and its store's
        dropped_base."""
        if seq >> numbering.SHIFT:
            raise Bad("%s %d of %s: past 2^32 (a device numbers below that)" % (kind, seq, device))
        base, dropped = self._store_of(device, kind, store, received_at, d)
        return seq + base, dropped

    def _seen(self, device, received_at):
        self._db.execute("INSERT INTO devices (device, first_seen, last_seen) VALUES (?, ?, ?) "
                         "ON CONFLICT (device) DO UPDATE SET "
                         "last_seen = greatest(devices.last_seen, excluded.last_seen)",
                         (device, received_at, received_at))

    # -- batches --

    def _batch(self, device, payload, received_at, topic, held, d):
        schemas = self._schemas
        schemas.missing = None
        try:
            b = fastdecode.decode(payload, schemas)
        except cbor.CBORError as exc:
            if schemas.missing is None or held:
                raise Bad("batch: %s" % (exc,))
            self._hold(device, payload, received_at, topic, schemas.missing, d)
            return
        except Bad as exc:
            raise Bad("batch: %s" % (exc.reason,))
        except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug on hostile input
            raise Bad("batch: %s: %s" % (type(exc).__name__, exc))
        self._store(device, b, payload, received_at, d)

    def _duplicate(self, device, seq, payload, received_at, d):
        db = self._db
        row = db.execute("SELECT crc32 FROM batches WHERE device = ? AND seq = ?",
                         (device, seq)).fetchone()
        if row is not None and row[0] != binascii.crc32(payload):
            raise _other_bytes(device, seq)
        self._seen(device, received_at)
        db.execute("UPDATE devices SET duplicates = duplicates + 1 WHERE device = ?", (device,))
        d.add("duplicates", device=device)

    def _store(self, device, b, payload, received_at, d):
        decode.check_envelope(device, b)
        b.seq, dropped = self._number(device, "batch", b.store, b.seq, received_at, d)
        b.dropped += dropped  # the device's total: a log made afresh counts from 0
        count = b.count
        seq = b.seq
        row = (device, seq, b.boot, b.dropped, int(b.synced),
               "compact" if b.encoding == COMPACT else "senml", int(b.deflated), b.schema_id,
               len(payload), binascii.crc32(payload), received_at, count, b.t_first, b.t_last,
               self.client_id)
        # the devices row's (device, schema_id, first_seen, last_seen, last_boot, last_seq,
        # last_t_ms, dropped_reported, readings), then repaired and repaired_readings
        device_row = (device, b.schema_id, received_at, received_at, b.boot, seq, b.t_last,
                      b.dropped, count)
        if self._deferred is not None:
            self._deferred.append((b, payload, row, device_row))
            return
        self._store_now(b, payload, row, device_row, d)

    def _store_now(self, b, payload, row, device_row, d):
        """The batch b stored as it comes: its row in `batches`, or its count as a duplicate."""
        db = self._db
        device, seq, received_at = row[0], row[1], row[10]
        added = db.add_batch(row, device_row)  # PostgreSQL: one statement
        if added is None:
            added = self._add_batch(row, device_row)
        stored, repaired = added
        if not stored:
            self._duplicate(device, seq, payload, received_at, d)
            return
        if repaired:
            db.execute("UPDATE batches SET repaired = 1 WHERE device = ? AND seq = ?",
                       (device, seq))
        self._stored(device, b, repaired, d)

    def _stored(self, device, b, repaired, d, channels=None):
        """What follows a batch's row in `batches`: its readings, its channels, the counts.
        channels: a dict that takes the channels' rows, (device, channel) -> unit, for the
        caller to store (Store.add_channels); without it each is stored here."""
        db = self._db
        count = b.count
        if repaired:
            d.add("repaired")
            d.add("repaired_readings", count)
        db.insert_batch(device, b.seq, b)
        for name, unit in b.units.items():
            key = (device, name, unit)
            if key not in self._units and key not in self._group_units:
                if channels is None:
                    db.execute("INSERT INTO channels (device, channel, unit) VALUES (?, ?, ?) "
                               "ON CONFLICT (device, channel) DO UPDATE SET unit = excluded.unit",
                               key)
                else:
                    channels[key[:2]] = unit  # a later batch's unit replaces an earlier one's
                d.units.append(key)
                self._group_units.add(key)
        d.add("batches", device=device)
        d.add("readings", count, device=device)

    def _store_deferred(self, last=False):
        """A Delta: the batches _store put off (Store.add_batches), stored with the same rows
        as each stored as it came. Their rows into `batches` in one statement; then each as
        _store goes on (readings); the new channels' rows in one statement; then the devices'
        rows, one per device whose stored batches are a run of consecutive numbers in order,
        all with readings (what one DEVICE_UPDATE sums exactly), and a row per batch for any
        other device; then the duplicates, device by device. A single batch goes as _store
        stores it. last: the group's end, where the readings are written before the devices'
        rows are locked. Retry when a batch fails: the group again, each message on its own.
        The batches' keys and the new channels' rows are all taken before the first device's
        row: a batch or a channel stored at the same moment by another process that holds a row
        of a device before it deadlocks (PostgreSQL breaks it, the group is stored again;
        docs/ingest.md)."""
        items, self._deferred = self._deferred, []
        d = Delta()
        if not items:
            return d
        db = self._db
        try:
            if len(items) == 1:
                self._store_now(*items[0], d=d)
                return d
            first = {}
            for i, item in enumerate(items):
                first.setdefault(item[2][:2], i)  # the first of a (device, seq): the one stored
            added = db.add_batches([items[i][2] for i in first.values()])
            runs = {}  # device -> [(device_row, repaired)] of its batches stored, in order
            channels = {}
            again = {}  # device -> [(seq, payload, received_at)] of its duplicates, in order
            for i, (b, payload, row, device_row) in enumerate(items):
                key = row[:2]
                if first[key] != i or key not in added:
                    again.setdefault(row[0], []).append((row[1], payload, row[10]))
                    continue
                repaired = added[key]
                if repaired:
                    db.execute("UPDATE batches SET repaired = 1 WHERE device = ? AND seq = ?",
                               key)
                runs.setdefault(row[0], []).append((device_row, repaired))
                self._stored(row[0], b, repaired, d, channels)
            if channels:
                db.add_channels(sorted(k + (u,) for k, u in channels.items()))
            if last:
                db.write_readings()
            self._update_devices(runs, again, d)
        except Exception as exc:  # noqa: BLE001 - as _guarded: the database's, or a message's
            if db.failed(exc):
                raise
            raise Retry()
        return d

    def _update_devices(self, runs, again, d):
        """The devices' rows for the batches stored, then the duplicates', device by device in
        order: the order in which the group's messages lock the rows (processes that take them
        in one order never deadlock over them). Within a device, its stored batches' row comes
        before its duplicates' (the row's first_seen is that of its first batch)."""
        db = self._db
        summed = []
        for device in sorted(set(runs) | set(again)):
            run = runs.get(device, ())
            seqs = [r[5] for r, _ in run]
            if run and (all(r[6] is not None for r, _ in run)
                        and seqs == list(range(seqs[0], seqs[0] + len(seqs)))):
                rows = [r for r, _ in run]
                schema_ids = [r[1] for r in rows if r[1] is not None]
                repaired = [r[8] for r, rep in run if rep]
                summed.append((device, schema_ids[-1] if schema_ids else None, rows[0][2],
                               max(r[3] for r in rows), max(r[4] for r in rows), seqs[-1],
                               rows[-1][6], max(r[7] for r in rows), sum(r[8] for r in rows),
                               len(rows), len(repaired), sum(repaired)))
            elif run:
                if summed:
                    db.update_devices(summed)
                    summed = []
                for device_row, repaired in run:
                    db.execute(UPSERT_DEVICE, device_row + (int(repaired),
                                                            device_row[-1] if repaired else 0))
            if device in again:
                if summed:
                    db.update_devices(summed)
                    summed = []
                for seq, payload, received_at in again[device]:
                    self._duplicate(device, seq, payload, received_at, d)
        if summed:
            db.update_devices(summed)

    def _add_batch(self, row, device_row):
        """(stored, repaired): the batch's row into `batches`; when it is new there, repair's
        bookkeeping and the devices row (Store.add_batch: the same in one statement)."""
        db = self._db
        if db.execute(ADD_BATCH, row).rowcount == 0:
            return False, False
        repaired = repair.arrived(db, row[0], "batch", row[1])
        db.execute(UPSERT_DEVICE, device_row + (int(repaired), device_row[-1] if repaired else 0))
        return True, repaired

    def _hold(self, device, payload, received_at, topic, schema_id, d):
        """A compact batch whose schema has not arrived: kept in `held` until it does."""
        b = batch_decode.read_envelope(payload)
        decode.check_envelope(device, b)
        db = self._db
        if self._deferred:
            d.merge(self._store_deferred())  # as before any other message; one may be this one
        b.seq = self._number(device, "batch", b.store, b.seq, received_at, d)[0]
        if db.execute("SELECT 1 FROM batches WHERE device = ? AND seq = ?",
                      (device, b.seq)).fetchone() is not None:
            self._duplicate(device, b.seq, payload, received_at, d)
            return
        cur = db.execute("INSERT INTO held (device, seq, schema_id, received_at, topic, payload) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (device, b.seq, decode.check_int(schema_id, "schema id"), received_at,
                          topic, payload))
        self._seen(device, received_at)
        if cur.rowcount == 0:
            # held already: the same bytes are a copy; other bytes are another batch under its
            # number, as for a stored one (it was counted a copy, and left no trace)
            held = db.execute("SELECT payload FROM held WHERE device = ? AND seq = ?",
                              (device, b.seq)).fetchone()
            if held is not None and bytes(held[0]) != bytes(payload):
                raise _other_bytes(device, b.seq)
            db.execute("UPDATE devices SET duplicates = duplicates + 1 WHERE device = ?",
                       (device,))
            d.add("duplicates", device=device)
            return
        d.add("held_total", device=device)
        d.recount = True
        active = db.execute("SELECT count(*) FROM held WHERE given_up_at IS NULL").fetchone()[0]
        if active > self.max_held:
            # The oldest of the device holding the most: a device flooding batches of a schema
            # it never sends gave up on every other device's (their schema on its way).
            most = db.execute("SELECT device FROM held WHERE given_up_at IS NULL GROUP BY device "
                              "ORDER BY count(*) DESC, device LIMIT 1").fetchone()[0]
            self._give_up(db.execute(
                "SELECT device, seq, schema_id, received_at, topic, payload FROM held "
                "WHERE given_up_at IS NULL AND device = ? ORDER BY received_at LIMIT ?",
                (most, active - self.max_held)).fetchall(), "more than %d batches wait for a "
                "schema, the most of them %s's" % (self.max_held, most), d)

    def _give_up(self, rows, why, d):
        """Marks the held rows given up, and says so in `malformed`: only those still not given
        up (another ingest on the database may have given them up since they were read)."""
        now = time.time()
        for device, seq, schema_id, received_at, topic, payload in rows:
            if self._db.execute("UPDATE held SET given_up_at = ? WHERE device = ? AND seq = ? "
                                "AND given_up_at IS NULL", (now, device, seq)).rowcount != 1:
                continue
            self._malformed(topic, payload, received_at,
                            "undecodable: compact batch %d needs schema %#010x, which has not "
                            "arrived (%s); kept in `held`" % (seq, schema_id, why), d)
            d.add("undecodable")

    def _resolve(self, schema_id, d):
        """Decodes and stores the held batches of a schema that has now arrived: those this
        transaction takes out of `held` (another ingest on the database may be taking them)."""
        db = self._db
        rows = db.execute("DELETE FROM held WHERE schema_id = ? "
                          "RETURNING device, seq, received_at, topic, payload",
                          (schema_id,)).fetchall()
        for device, seq, received_at, topic, payload in rows:
            d.merge(self._guarded("h", topic, payload, received_at, self._batch, device, payload,
                                  received_at, topic, True))
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
            schema = decode.schema(payload)
        except Exception as exc:  # noqa: BLE001
            raise Bad("schema: %s" % (exc,))
        try:
            for name, unit, _, _ in schema.channels:
                decode.check_name(name, "channel")
                decode.check_name(unit, "unit")
        except Bad as exc:
            raise Bad("schema: %s" % (exc.reason,))
        sid = schema.id
        known = dict.get(self._schemas, sid)
        if known is not None and known.channels != schema.channels:
            # A CRC-32 names a schema, it does not vouch for it: a device may forge a document
            # with another's id. The first one stays; this one is said, and not bound to it.
            raise Bad("schema: its id %d is a different schema's, stored first (two documents "
                      "of one CRC-32: a forgery or a collision); this one is not used" % sid)
        db = self._db
        db.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (sid, payload, json.dumps([[n, u, m, e] for n, u, m, e in schema.channels]),
                    received_at))
        self._seen(device, received_at)
        db.execute("UPDATE devices SET schema_id = ? WHERE device = ?", (sid, device))
        d.add("schemas")
        if not dict.__contains__(self._schemas, sid):
            dict.__setitem__(self._schemas, sid, schema)
        self._resolve(sid, d)

    def _event(self, device, payload, received_at, d):
        e = decode.event(device, payload)
        db = self._db
        if isinstance(e, decode.Reply):
            self._seen(device, received_at)
            if _again(db.execute("SELECT body FROM replies WHERE device = ? ORDER BY "
                                 "received_at DESC LIMIT %d" % RECENT, (device,)).fetchall(),
                      json.loads(e.body)):
                d.add("reply_duplicates")   # its repair reply, if it is one, was read then
                return
            db.execute("INSERT INTO replies (device, received_at, reply, ok, body) "
                       "VALUES (?, ?, ?, ?, ?)", (device, received_at, e.reply, e.ok, e.body))
            d.add("replies")
            if e.is_repair():
                def base(kind, store):
                    got = self._store_of(device, kind, store, received_at, d, False)
                    return None if got is None else got[0]
                try:
                    repair.reply(db, device, e.doc, received_at, d, base)
                except ValueError as exc:
                    raise Bad("reply to a resend command: %s" % (exc,))
            return
        e.seq = self._number(device, "event", e.store, e.seq, received_at, d)[0]
        cur = db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, "
                         "state, value, detail, received_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (device, e.seq, e.boot, e.t, e.synced, e.event, e.sensor, e.state,
                          e.value, e.detail, received_at))
        self._seen(device, received_at)
        if cur.rowcount == 0:
            was = db.execute("SELECT t_ms, event, sensor, state FROM events WHERE device = ? "
                             "AND seq = ?", (device, e.seq)).fetchone()
            if was is not None and tuple(was) != (e.t, e.event, e.sensor, e.state):
                # Not the same event again: one under a number an earlier one took (a device
                # whose store was wiped numbers from 0 again). Counted as a duplicate, it was
                # gone without a trace; as malformed it is seen, as such batches are.
                raise Bad("event %d of %s arrived again with other content (did the device "
                          "lose its sequence numbers?)" % (e.seq, device))
            db.execute("UPDATE devices SET event_duplicates = event_duplicates + 1 "
                       "WHERE device = ?", (device,))
            d.add("event_duplicates")
            return
        if e.fields is not None:
            db.execute("INSERT INTO insights (device, seq, t_ms, synced, event, sensor, value, "
                       "fields, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (device, e.seq, e.t, e.synced, e.event, e.sensor, e.value, e.detail,
                        received_at))
            d.add("insights")
        repaired = repair.arrived(db, device, "event", e.seq)
        if repaired:
            db.execute("UPDATE events SET repaired = 1 WHERE device = ? AND seq = ?",
                       (device, e.seq))
            d.add("events_repaired")
        db.execute("UPDATE devices SET events = events + 1, events_repaired = events_repaired + ?, "
                   "last_event_seq = greatest(coalesce(last_event_seq, -1), ?), "
                   "event_done = CASE WHEN event_done = ? - 1 THEN ? ELSE event_done END "
                   "WHERE device = ?", (int(repaired), e.seq, e.seq, e.seq, device))
        d.add("events")

    def _health(self, device, payload, received_at, d):
        t, dropped, seq, document = decode.health(device, payload)
        db = self._db
        self._seen(device, received_at)
        again = _again([row[1:] for row in db.execute(
            "SELECT t_ms, health FROM health WHERE device = ? ORDER BY received_at DESC "
            "LIMIT %d" % RECENT, (device,)).fetchall() if row[0] == t], json.loads(document))
        if not again:     # one row; what it says is taken again as it was (it is the same)
            db.execute("INSERT INTO health (device, received_at, t_ms, health) "
                       "VALUES (?, ?, ?, ?)", (device, received_at, t, document))
        now = {}
        current = False  # the report's batch log is the device's newest: not a late one
        for kind in repair.KINDS:
            if kind not in (seq or {}):
                continue
            oldest, newest, store = seq[kind]
            # A report makes a store known only where the device has no batch log yet (a new
            # device), or its events' log beside the current batch log: a report of a batch log
            # not met yet (made afresh, before its first batch) or replaced since (late) says
            # nothing of the numbers the ingest has.
            got = self._store_of(device, kind, store, received_at, d, False)
            if got is None and (current if kind == "event" and "batch" in seq else
                                db.execute("SELECT 1 FROM stores WHERE device = ? AND kind = ?",
                                           (device, kind)).fetchone() is None):
                got = self._store_of(device, kind, store, received_at, d)
            if got is None:
                if kind == "batch":
                    dropped = None
                continue
            at = got[0]
            db.execute("UPDATE stores SET reported = greatest(coalesce(reported, -1), ?) "
                       "WHERE device = ? AND kind = ? AND store = ?", (newest, device, kind, store))
            is_current = at >> numbering.SHIFT == numbering.current(db, device, kind)
            if kind == "batch":
                dropped += got[1]
                current = is_current
            if is_current:
                now[kind] = (None if oldest is None else oldest + at, newest + at, at)
        db.execute("UPDATE devices SET last_health_at = ?, "
                   "dropped_health = greatest(dropped_health, coalesce(?, 0)) WHERE device = ?",
                   (received_at, dropped, device))
        repair.note_health(db, device, now)
        d.add("health_duplicates" if again else "health")

    def _status(self, device, payload, received_at, d):
        status = decode.status(payload)
        if status is None:
            return
        self._db.execute(
            "INSERT INTO devices (device, first_seen, last_seen, last_status, status_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
            "last_status = excluded.last_status, status_at = excluded.status_at",
            (device, received_at, received_at, status, received_at))
        d.add("status")


def _other_bytes(device, seq):
    """A batch number that came again with other bytes, stored or held: another batch."""
    return Bad("batch %d of %s arrived again with other bytes (did the device lose its sequence "
               "numbers?)" % (seq, device))
