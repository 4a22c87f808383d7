"""The ingest's PostgreSQL store (ingest/store/postgres.py) against a real PostgreSQL server:
its layout and versions, readings stored with COPY and read back through the views, partitions
by day, exact de-duplication between processes, and a server restarted under it."""
import threading

import psycopg
import pytest

from ingest.store import postgres

DAY = postgres.DAY_MS
T0 = 1764720000000  # 2025-12-03T00:00:00Z


def batch_row(store, device, seq, n=3, t0=T0):
    return store.execute(
        "INSERT INTO batches (device, seq, boot, dropped, synced, encoding, deflated, schema_id, "
        "bytes, crc32, received_at, readings, t_first, t_last, ingest) "
        "VALUES (?, ?, 1, 0, 1, 'compact', 0, NULL, 10, 0, 0.0, ?, ?, ?, 'test') "
        "ON CONFLICT DO NOTHING", (device, seq, n, t0, t0 + n)).rowcount


def test_a_new_database_gets_the_versioned_layout_and_the_readings_view(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        assert store.execute("SELECT version, readings FROM tether_layout").fetchone() == (
            postgres.VERSION, "partitions")
        for name in postgres.TABLES + postgres.VIEWS:
            assert store.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] == name
        assert [c for (c,) in store.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'readings' "
            "ORDER BY ordinal_position")] == ["device", "t_ms", "channel", "value", "seq", "text"]
    finally:
        store.close()
    postgres.connect(postgres_url).close()  # a second open finds it made


def test_readings_are_copied_at_commit_and_read_back_through_the_view(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        assert batch_row(store, "dev-1", 7) == 1
        store.insert_readings("dev-1", 7, [(T0, "power", 71.4), (T0, "state", "on"),
                                           (T0, "door", True), (T0 + 10, "power", 72),
                                           (T0 + 10, "state", "off"), (T0 + 10, "door", False)])
        assert store.execute("SELECT count(*) FROM readings").fetchone()[0] == 0  # not yet
        store.commit()
        assert store.execute("SELECT device, t_ms, channel, value, text, seq FROM readings "
                             "ORDER BY channel, t_ms").fetchall() == [
            ("dev-1", T0, "door", 1.0, None, 7), ("dev-1", T0 + 10, "door", 0.0, None, 7),
            ("dev-1", T0, "power", 71.4, None, 7), ("dev-1", T0 + 10, "power", 72.0, None, 7),
            ("dev-1", T0, "state", None, "on", 7), ("dev-1", T0 + 10, "state", None, "off", 7)]
        # one stored row per batch and channel
        assert store.execute("SELECT count(*) FROM readings_packed").fetchone()[0] == 3
    finally:
        store.close()


def test_a_message_rolled_back_to_its_savepoint_leaves_no_readings(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        for seq, keep in ((1, True), (2, False), (3, True)):
            store.execute("SAVEPOINT m")
            batch_row(store, "dev-1", seq)
            store.insert_readings("dev-1", seq, [(T0 + seq, "power", seq)])
            if not keep:
                store.execute("ROLLBACK TO m")
            store.execute("RELEASE m")
        store.commit()
        assert store.execute("SELECT seq, value FROM readings ORDER BY seq").fetchall() == [
            (1, 1.0), (3, 3.0)]
        assert [s for (s,) in store.execute("SELECT seq FROM batches ORDER BY seq")] == [1, 3]
    finally:
        store.close()


def test_values_it_cannot_store_fail_the_message_not_the_commit(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        with pytest.raises(OverflowError):
            store.insert_readings("dev-1", 1, [(1 << 63, "power", 1)])
        with pytest.raises(OverflowError):
            store.insert_readings("dev-1", 1, [(T0, "power", 10 ** 400)])
        with pytest.raises(store.BadValue):
            store.insert_readings("dev-1", 1, [(T0, "name", "a\x00b")])
        store.commit()
        assert store.execute("SELECT count(*) FROM readings").fetchone()[0] == 0
    finally:
        store.close()


def test_readings_fall_into_a_partition_per_day_and_old_days_drop_whole(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        for day in range(3):
            store.insert_readings("dev-1", day, [(T0 + day * DAY + 5, "power", day),
                                                 (T0 + day * DAY + 6, "power", day)])
        store.commit()
        assert store.execute("SELECT name FROM reading_partitions ORDER BY t_from").fetchall() == [
            ("readings_packed_20251203",), ("readings_packed_20251204",),
            ("readings_packed_20251205",)]
        assert store.execute("SELECT tableoid::regclass::text, seq FROM readings_packed "
                             "ORDER BY seq").fetchall() == [
            ("readings_packed_20251203", 0), ("readings_packed_20251204", 1),
            ("readings_packed_20251205", 2)]
        assert store.execute("SELECT tether_drop_readings(?)", (T0 + 2 * DAY,)).fetchone()[0] == 2
        assert store.execute("SELECT DISTINCT value FROM readings").fetchall() == [(2.0,)]
        assert store.execute("SELECT to_regclass('readings_packed_20251203')").fetchone()[0] is None
    finally:
        store.close()


def test_a_partition_is_made_while_other_writers_hold_theirs_open(postgres_url):
    writer, other = postgres.connect(postgres_url), postgres.connect(postgres_url)
    try:
        other.begin()
        other.insert_readings("dev-2", 1, [(T0, "power", 1)])
        other.commit()
        other.begin()
        other.insert_readings("dev-2", 2, [(T0 + 1, "power", 2)])
        other._copy(other._pending)  # its transaction now holds a lock on readings_packed
        other._pending = []
        writer.begin()
        writer.insert_readings("dev-1", 1, [(T0 + DAY, "power", 3)])  # a new day
        writer.commit()
        other.commit()
        assert other.execute("SELECT device, value FROM readings ORDER BY value").fetchall() == [
            ("dev-2", 1.0), ("dev-2", 2.0), ("dev-1", 3.0)]
    finally:
        writer.close()
        other.close()


def test_two_processes_storing_one_batch_store_it_once(postgres_url):
    first, second = postgres.connect(postgres_url), postgres.connect(postgres_url)
    try:
        first.begin()
        assert batch_row(first, "dev-1", 1) == 1
        result = {}

        def store_again():
            second.begin()
            result["rows"] = batch_row(second, "dev-1", 1)  # waits for the first to commit
            second.commit()

        thread = threading.Thread(target=store_again)
        thread.start()
        first.commit()
        thread.join(30)
        assert result == {"rows": 0}
        assert first.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    finally:
        first.close()
        second.close()


def test_json_and_sums_read_back_as_the_sqlite_store_gives_them(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        store.execute("INSERT INTO health (device, received_at, t_ms, health) "
                      "VALUES (?, ?, ?, ?)", ("dev-1", 1.5, 1 << 62, '{"rssi": -60}'))
        store.execute("INSERT INTO health (device, received_at, t_ms, health) "
                      "VALUES (?, ?, ?, ?)", ("dev-1", 2.5, 1 << 62, '{"rssi": -61}'))
        store.commit()
        assert store.execute("SELECT health FROM health ORDER BY received_at").fetchall() == [
            ('{"rssi": -60}',), ('{"rssi": -61}',)]
        assert store.execute("SELECT sum(t_ms) FROM health").fetchone()[0] == 1 << 63
        assert store.execute("SELECT health->>'rssi' FROM health ORDER BY received_at"
                             ).fetchall() == [("-60",), ("-61",)]
    finally:
        store.close()


def test_a_newer_layout_is_refused_and_an_older_one_upgraded(postgres_url, monkeypatch):
    postgres.connect(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE tether_layout SET version = %s", (postgres.VERSION + 1,))
    with pytest.raises(RuntimeError, match="has ingest layout version %d, of a newer ingest; "
                       "this one reads version %d and older"
                       % (postgres.VERSION + 1, postgres.VERSION)):
        postgres.connect(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE tether_layout SET version = %s", (postgres.VERSION,))
    monkeypatch.setattr(postgres, "VERSION", postgres.VERSION + 1)
    monkeypatch.setitem(postgres.MIGRATIONS, postgres.VERSION - 1,
                        "ALTER TABLE devices ADD COLUMN colour text")
    store = postgres.connect(postgres_url)
    try:
        assert store.execute("SELECT version FROM tether_layout").fetchone()[0] == (
            postgres.VERSION)
        assert store.execute("SELECT count(colour) FROM devices").fetchone()[0] == 0
    finally:
        store.close()


def test_tables_of_another_program_are_refused(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE devices (serial text)")
    with pytest.raises(RuntimeError, match="has tables or views named devices but no "
                       "tether_layout: they are not the Tether ingest's"):
        postgres.connect(postgres_url)


def test_the_password_stays_out_of_messages():
    url = "postgresql://ingest:s3cret@db.example:5432/fleet"
    assert postgres.PostgresStore.name(url) == "postgresql://ingest:***@db.example:5432/fleet"


def test_a_restarted_server_is_a_failure_and_the_next_begin_reconnects(postgres_factory):
    server = postgres_factory()
    store = postgres.connect(server.url)
    try:
        store.begin()
        batch_row(store, "dev-1", 1)
        store.commit()
        server.restart()
        with pytest.raises(store.Failure):  # the old connection is gone
            store.begin()
            batch_row(store, "dev-1", 2)
        assert not store.in_transaction
        store.rollback()
        store.begin()
        assert batch_row(store, "dev-1", 2) == 1
        store.commit()
        server.halt()
        with pytest.raises(store.Failure):  # nothing answers: the writer waits and tries again
            store.rollback()
            store.begin()
        server.start()
        store.begin()
        assert batch_row(store, "dev-1", 3) == 1
        store.commit()
        assert [s for (s,) in store.execute("SELECT seq FROM batches ORDER BY seq")] == [1, 2, 3]
    finally:
        store.close()
