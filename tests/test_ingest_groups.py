"""A group of messages is stored first without a savepoint per message, and again with them when
a message fails (ingest/handlers.py, Handlers._savepoints): the rows are the same as if each
message had been stored on its own, on SQLite and on PostgreSQL."""
import array

import pytest

from agent import batch
from agent.schema import Schema
from ingest.store import open_store
from ingest.subscriber import Ingest

PREFIX = "tether/v1"
SCHEMA = Schema([("power", "W", 1, -1), ("pills", "", 1, 0)])
T0 = 1763856000000


def compact(device, seq, base=T0):
    ts = array.array("q", [0, 0, 10000, 10000, 20000, 20000])
    chs = array.array("B", [0, 1, 0, 1, 0, 1])
    vals = array.array("q", [714, 3, 716, 3, 700, 2])
    enc = batch.Encoder(device, SCHEMA, "compact", max_readings=6)
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
