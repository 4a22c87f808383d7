"""Two ingests on one PostgreSQL database and the batches held for a schema
(ingest/handlers.py): a held batch is given up once, and decoded and stored once, however the
two processes' transactions interleave."""
import threading
import time

import psycopg

from ingest.handlers import Delta
from ingest.store import open_store
from ingest.subscriber import Ingest
from tests.test_ingest_groups import SCHEMA, compact, msg


def ingest(url, name):
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = name
    i._db = open_store(url)
    return i


def one(i, sql):
    return i._db.execute(sql).fetchone()[0]


def test_a_held_batch_read_by_two_ingests_is_given_up_once(postgres_url):
    a, b = ingest(postgres_url, "a"), ingest(postgres_url, "b")
    try:
        a._commit([msg("dev-1", "batch", compact("dev-1", 0), 1)], False)
        assert one(a, "SELECT count(*) FROM held") == 1
        # b reads the held batches past their time; a gives them up and commits first
        rows = b._db.execute("SELECT device, seq, schema_id, received_at, topic, payload "
                             "FROM held WHERE given_up_at IS NULL").fetchall()
        a._commit([], True)
        assert one(a, "SELECT count(*) FROM malformed") == 1
        b._db.begin()
        d = Delta()
        b._give_up(rows, "test", d)
        b._db.commit()
        assert d.counts == {}
        assert one(a, "SELECT count(*) FROM malformed") == 1
    finally:
        a._db.close()
        b._db.close()


def test_a_held_batch_resolved_by_two_ingests_at_once_is_stored_once(postgres_url, postgres):
    a, b = ingest(postgres_url, "a"), ingest(postgres_url, "b")
    try:
        a._commit([msg("dev-1", "batch", compact("dev-1", 0), 1)], False)
        for i in (a, b):
            dict.__setitem__(i._schemas, SCHEMA.id, SCHEMA)
            i._group_units = set()
        database = postgres_url.rsplit("/", 1)[1]
        da, db = Delta(), Delta()
        a._db.begin()
        a._resolve(SCHEMA.id, da)

        def other():
            b._db.begin()
            b._resolve(SCHEMA.id, db)
            b._db.commit()
        thread = threading.Thread(target=other)
        thread.start()
        # b's transaction waits for a's row locks: a commits only then
        with psycopg.connect(postgres.url, autocommit=True) as watch:
            deadline = time.monotonic() + 30
            while watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                "AND wait_event_type = 'Lock'", (database,)).fetchone()[0] == 0:
                assert time.monotonic() < deadline, "b's transaction never waited for a's"
                time.sleep(0.01)
        a._db.commit()
        thread.join(30)
        assert not thread.is_alive()
        assert (da.counts.get("resolved"), db.counts.get("resolved")) == (1, None)
        assert one(a, "SELECT count(*) FROM batches") == 1
        assert one(a, "SELECT duplicates FROM devices WHERE device = 'dev-1'") == 0
        assert one(a, "SELECT count(*) FROM held") == 0
    finally:
        a._db.close()
        b._db.close()
