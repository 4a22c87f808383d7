"""A group of messages is stored first without a savepoint per message, and again with them when
a message fails (ingest/handlers.py, Handlers._savepoints): the rows are the same as if each
message had been stored on its own, on SQLite and on PostgreSQL."""
import array
import random
import re

import pytest

from agent import batch
from agent.schema import Schema
from ingest.store import open_store
from ingest.subscriber import Ingest

PREFIX = "tether/v1"
SCHEMA = Schema([("power", "W", 1, -1), ("pills", "", 1, 0)])
T0 = 1763856000000


def compact(device, seq, base=T0, schema=SCHEMA):
    ts = array.array("q", [0, 0, 10000, 10000, 20000, 20000])
    chs = array.array("B", [0, 1, 0, 1, 0, 1])
    vals = array.array("q", [714, 3, 716, 3, 700, 2])
    enc = batch.Encoder(device, schema, "compact", max_readings=6)
    return bytes(enc.encode(base, ts, chs, vals, 0, 6, seq, 1, 0, True))


def msg(device, kind, payload, k):
    return ("%s/%s/up/%s" % (PREFIX, device, kind), payload, 1, k, 1.0e9 + k, 0)


GOOD = [msg("dev-1", "schema", SCHEMA.to_cbor(), 0), msg("dev-1", "batch", compact("dev-1", 0), 1),
        msg("dev-2", "batch", compact("dev-2", 0), 2)]
BAD = [
    msg("dev-1", "batch", compact("dev-1", 0)[:-3], 3),           # cut short: malformed
    msg("dev-1", "batch", compact("dev-1", 0, T0 + 1), 4),        # seq 0 again, other bytes
    msg("dev-2", "batch", compact("dev-3", 1), 5),                # another device's batch
    msg("dev-2", "batch", compact("dev-2", 2, 1 << 63), 6),       # times past 64 bits
    msg("dev-2", "status", b"maybe", 7),
]
TABLES = {
    "batches": "device, seq, readings, t_first, t_last, repaired",
    "devices": "device, batches, readings, duplicates, last_seq, batch_done",
    "malformed": "topic, reason",
    "channels": "device, channel, unit",
    "readings": "device, t_ms, channel, value",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return lambda name: str(tmp_path / (name + ".sqlite"))
    server = request.getfixturevalue("postgres")
    import psycopg

    def make(name):
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s"' % name)
            conn.execute('CREATE DATABASE "%s"' % name)
        return "postgresql://%s@%s:%d/%s" % (server.user, server.host, server.port, name)
    return make


def store(url, groups):
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = "groups"
    i._db = open_store(url)
    try:
        for group in groups:
            i._commit(group, False)
        return {t: sorted(i._db.execute("SELECT %s FROM %s" % (cols, t)).fetchall(), key=repr)
                for t, cols in TABLES.items()}, i.stats()
    finally:
        i._db.close()


def test_a_group_with_bad_messages_stores_what_its_messages_store_one_by_one(db_url):
    messages = GOOD + BAD
    together, stats = store(db_url("groups_together"), [messages])
    alone, alone_stats = store(db_url("groups_alone"), [[m] for m in messages])
    assert together == alone
    assert stats == alone_stats
    assert stats["batches"] == 2 and stats["malformed"] == 5
    assert len(together["readings"]) == 12


def test_a_group_of_good_messages_is_stored_whole(db_url):
    rows, stats = store(db_url("groups_good"), [GOOD])
    assert stats["batches"] == 2 and stats.get("malformed", 0) == 0
    assert [r[:3] for r in rows["batches"]] == [("dev-1", 0, 6), ("dev-2", 0, 6)]


# ---- PostgreSQL's batches of a group in one statement (Store.add_batches) ----

ALL_TABLES = ("batches", "devices", "malformed", "channels", "readings", "asked", "lost", "held",
              "health", "events", "schemas")
SCHEMA_B = Schema([("power", "kW", 1, -3), ("pills", "", 1, 0)])  # dev-3's, known to no one yet
SCHEMA_C = Schema([("power", "kW", 1, -4), ("pills", "", 1, 0)])


class LockOrder:
    """The devices whose rows each transaction of a store writes, in the order it writes them
    (the order it locks them in)."""

    def __init__(self, db):
        self.transactions = []
        for name in ("begin", "execute", "add_batch", "update_devices"):
            setattr(db, name, self._wrap(name, getattr(db, name)))

    def _wrap(self, name, fn):
        def call(*args):
            if name == "begin":
                self.transactions.append([])
            elif name == "add_batch":
                self.transactions[-1].append(args[0][0])
            elif name == "update_devices":
                self.transactions[-1].extend(row[0] for row in args[0])
            elif re.match(r"(INSERT INTO|UPDATE) devices\b", args[0]):
                self.transactions[-1].append(args[1][0] if args[0].startswith("INSERT")
                                             else args[1][-1])
            return fn(*args)
        return call


def fleet(seed):
    """[group of messages]: five devices' batches in a shuffled order, with what an ingest
    meets: batches out of order, twice, once with other bytes, before their schema (held, then
    resolved), one without readings (no last time), health reports (which start batch_done,
    an early one before the batches it moves over), events and a status."""
    from agent import cbor
    from tests.test_repair import event, health
    rng = random.Random(seed)
    lists = []
    for n in range(4):
        device = "dev-%d" % n
        schema = SCHEMA_B if n == 3 else SCHEMA
        seqs = list(range(10))
        for k in range(9):
            if rng.random() < 0.25:
                seqs[k], seqs[k + 1] = seqs[k + 1], seqs[k]
        msgs = [(device, "batch", compact(device, s, T0 + 30000 * s, schema)) for s in seqs]
        for k in rng.sample(range(10), 2):
            msgs.insert(rng.randrange(k, len(msgs) + 1), msgs[k])
        if rng.random() < 0.5:
            s = rng.randrange(10)
            msgs.insert(rng.randrange(len(msgs)), (device, "batch",
                                                   compact(device, s, T0 + 30000 * s + 1,
                                                           schema)))
        for s in range(2):
            msgs.insert(rng.randrange(len(msgs)), (device, "event", event(device, s)))
        msgs.append((device, "batch", cbor.dumps([1, device, 10, 1, 0, 0, 1, cbor.dumps([])])))
        for _ in range(2):
            oldest = rng.randrange(8)
            msgs.insert(rng.randrange(len(msgs)), (device, "health",
                                                   health(device, batch=(oldest, 10))))
        msgs.insert(rng.randrange(len(msgs)), (device, "status", b"offline"))
        msgs.insert(rng.randrange(3), (device, "health", health(device, batch=(0, 10))))
        after = [k for k, m in enumerate(msgs) if m[1] == "batch"][1] + 1 if n == 3 else 0
        msgs.insert(after, (device, "schema", schema.to_cbor()))  # dev-3's after two batches
        lists.append(msgs)
    # and a device whose schema came from another: its first batch makes its row, the batch's
    # duplicate right behind it
    first = compact("dev-4", 0, T0)
    lists.append([("dev-4", "batch", first), ("dev-4", "batch", first)]
                 + [("dev-4", "batch", compact("dev-4", s, T0 + 30000 * s)) for s in range(1, 6)])
    messages = [msg(*lists[0].pop(0), k=0)]  # dev-0's schema
    while any(lists):
        device, kind, payload = rng.choice([m for m in lists if m]).pop(0)
        messages.append(msg(device, kind, payload, len(messages)))
    messages = [m if "/up/status" not in m[0] else (m[0].replace("/up/", "/"),) + m[1:]
                for m in messages]
    groups = []
    while messages:
        size = rng.randint(1, 25)
        groups.append(messages[:size])
        messages = messages[size:]
    return groups


def store_fleet(url, groups, together):
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = "groups"
    i._db = open_store(url)
    summed = []
    try:
        db = i._db
        if together:
            update_devices = db.update_devices
            db.update_devices = lambda rows: summed.extend(rows) or update_devices(rows)
        else:
            db.add_batches = None  # each batch stored as it comes
        db.begin()
        for device in ("dev-0", "dev-1", "dev-3"):  # asked for by a repair, or settled as lost
            db.execute("INSERT INTO asked (device, kind, seq, asked_at, asks) "
                       "VALUES (?, 'batch', 4, 1.0, 1)", (device,))
            db.execute("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                       "VALUES (?, 'batch', 6, 'broker', 1.0)", (device,))
        db.commit()
        locks = LockOrder(db)
        for group in groups:
            i._commit(group, False)
        rows = {t: sorted(db.execute("SELECT * FROM %s" % t).fetchall(), key=repr)
                for t in ALL_TABLES}
        rows["done"] = db.execute("SELECT device, batch_done FROM devices WHERE batch_done "
                                  "IS NOT NULL ORDER BY device").fetchall()
        return rows, i.stats(), summed, locks.transactions
    finally:
        i._db.close()


@pytest.mark.parametrize("seed", range(12))
def test_a_groups_batches_in_one_statement_store_what_they_store_one_by_one(postgres, seed):
    """PostgreSQL stores a group's batches with one INSERT and sums each device's row over its
    batches: every table ends as when each batch is stored as it comes, whatever the order."""
    import psycopg
    groups = fleet(seed)
    urls = []
    for name in ("fleet_together_%d" % seed, "fleet_alone_%d" % seed):
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s"' % name)
            conn.execute('CREATE DATABASE "%s"' % name)
        urls.append("postgresql://%s@%s:%d/%s" % (postgres.user, postgres.host, postgres.port,
                                                   name))
    together, stats, summed, locks = store_fleet(urls[0], groups, True)
    alone, alone_stats, none, alone_locks = store_fleet(urls[1], groups, False)
    assert none == [] and max(row[9] for row in summed) >= 2  # runs of batches were summed
    for table in ALL_TABLES:
        assert together[table] == alone[table], table
    assert stats == alone_stats
    assert stats["batches"] == 50 and stats["repaired"] == 3 and stats["duplicates"] >= 5
    assert stats["resolved"] >= 2 and stats["events"] == 8  # dev-3's first two batches held
    assert len(together["done"]) == 4  # health reports started every device's batch_done
    # Every transaction writes the devices' rows in the group's order, as one by one: two
    # processes sharing the database then never wait for each other in a circle.
    for transaction in locks + alone_locks:
        assert transaction == sorted(transaction), transaction


def test_a_unit_changed_within_a_group_ends_as_when_its_batches_are_stored_one_by_one(postgres):
    """A device re-flashed with a new unit whose batches of both units come in one group: the
    group's channels go in one statement (Store.add_channels), with the unit each batch would
    have left, in the order they came."""
    import psycopg
    urls = []
    for name in ("units_together", "units_alone"):
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s"' % name)
            conn.execute('CREATE DATABASE "%s"' % name)
        urls.append("postgresql://%s@%s:%d/%s" % (postgres.user, postgres.host, postgres.port,
                                                   name))
    group = [msg("dev-1", "schema", SCHEMA.to_cbor(), 0),
             msg("dev-1", "schema", SCHEMA_C.to_cbor(), 1)]
    for seq, schema in enumerate((SCHEMA, SCHEMA_C, SCHEMA, SCHEMA_C)):
        group.append(msg("dev-1", "batch", compact("dev-1", seq, T0 + 30000 * seq, schema),
                         2 + seq))
    together, stats, summed, _ = store_fleet(urls[0], [group], True)
    alone, alone_stats, _, _ = store_fleet(urls[1], [group], False)
    assert summed  # the batches went together
    assert together == alone and stats == alone_stats
    assert together["channels"] == [("dev-1", "pills", ""), ("dev-1", "power", "kW")]
