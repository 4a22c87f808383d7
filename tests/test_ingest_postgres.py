"""The ingest on PostgreSQL (ingest/store/postgres.py) against a real PostgreSQL server: the
store's layout and versions, readings stored with COPY and read back through the view,
partitions by day, exact de-duplication between processes, a server restarted under it; and
end to end through mosquitto: two `tether ingest` processes in one group, one killed with
SIGKILL, PostgreSQL restarted under a running ingest, and a `tether simulate` fleet."""
import json
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from agent import batch_decode
from ingest import totals
from ingest.store import postgres

DAY = postgres.DAY_MS
T0 = 1764720000000  # 2025-12-03T00:00:00Z


@pytest.fixture(autouse=True)
def store_clock_on_t0(monkeypatch):
    """The stores take the day after T0 for today: the days around it get partitions, however long
    after 2025 the tests run (a year on, T0 would be older than the year partitioned)."""
    monkeypatch.setattr(postgres.PostgresStore, "clock", staticmethod(lambda: (T0 + 86400000) / 1000))


def batch_row(store, device, seq, n=3, t0=T0):
    return store.execute(
        "INSERT INTO batches (device, seq, boot, dropped, synced, encoding, deflated, schema_id, "
        "bytes, crc32, received_at, readings, t_first, t_last, ingest) "
        "VALUES (?, ?, 1, 0, 1, 'compact', 0, NULL, 10, 0, 0.0, ?, ?, ?, 'test') "
        "ON CONFLICT DO NOTHING", (device, seq, n, t0, t0 + n)).rowcount


def waiting_for_a_lock(conn, timeout=60):
    """True once another session of the server waits for a lock (False after timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND pid <> pg_backend_pid()").fetchone()[0]:
            return True
        time.sleep(0.05)
    return False


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


class Columns:
    """A decoded batch as ingest/fastdecode gives it (Decoded): columns of ints, no text."""
    text = False

    def __init__(self, columns):
        self.columns = columns
        self.readings = sorted((t, name, v) for name, ts, vs in columns for t, v in zip(ts, vs))


@pytest.mark.parametrize("values", [[3, 1, 2, 1], [2 ** 53, 2 ** 53 + 1, 5, -2 ** 60],
                                    [10 ** 400, 1, 2, 3]])
def test_a_batch_from_its_columns_stores_the_rows_of_its_readings(postgres_url, values):
    """insert_batch packs ints as they come; the rows are insert_readings', or its error, and
    the extremes are those of the doubles stored (2^53 and 2^53 + 1 are one double: the
    highest is the first of them)."""
    store = postgres.connect(postgres_url)
    times = [T0 + 10 * k for k in range(len(values))]
    batch = Columns([("power", times, values), ("pills", times, [7] * len(values))])
    try:
        outcomes = []
        for seq, insert in enumerate((store.insert_batch, store.insert_readings)):
            store.begin()
            batch_row(store, "dev-%d" % seq, seq, len(values), T0)
            try:
                insert("dev-%d" % seq, seq, batch if seq == 0 else batch.readings)
            except OverflowError as exc:
                outcomes.append(str(exc))
                store.rollback()
                continue
            store.commit()
            outcomes.append(store.execute(
                "SELECT channel, t_first, t_low, v_low, t_high, v_high, t_ms, value FROM "
                "readings_packed WHERE device = ? ORDER BY channel", ("dev-%d" % seq,)
            ).fetchall())
        assert outcomes[0] == outcomes[1]
        if values[0] == 10 ** 400:
            assert "too large" in outcomes[0]
        else:
            assert len(outcomes[0]) == 2
    finally:
        store.close()


def test_a_message_rolled_back_to_its_savepoint_leaves_no_readings(postgres_url):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        for seq, keep in ((1, True), (2, False), (3, True)):
            store.execute("SAVEPOINT m")
            batch_row(store, "dev-1", seq)
            # and a channel of 1970 (readings_outside)
            store.insert_readings("dev-1", seq, [(T0 + seq, "power", seq), (seq, "up", -seq)])
            if not keep:
                store.execute("ROLLBACK TO m")
            store.execute("RELEASE m")
        store.commit()
        assert store.execute("SELECT seq, value FROM readings ORDER BY seq, value").fetchall() == [
            (1, -1.0), (1, 1.0), (3, -3.0), (3, 3.0)]
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


def test_dropping_old_days_takes_the_health_reports_and_replies_received_before_too(
        postgres_url):
    # A health report every 5 minutes is some 250 KB a device a day: under retention of the
    # readings it grew for good, past them
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        for day in range(3):
            at = (T0 + day * DAY) / 1000.0
            store.execute("INSERT INTO health (device, received_at, t_ms, health) VALUES "
                          "('dev-1', ?, ?, '{}')", (at, T0 + day * DAY))
            store.execute("INSERT INTO replies (device, reply, received_at, ok, body) VALUES "
                          "('dev-1', ?, ?, 1, '{}')", ("r%d" % day, at))
        store.commit()
        store.execute("SELECT tether_drop_readings(?)", (T0 + 2 * DAY,))
        assert store.execute("SELECT received_at FROM health").fetchall() == [
            ((T0 + 2 * DAY) / 1000.0,)]
        assert store.execute("SELECT reply FROM replies").fetchall() == [("r2",)]
    finally:
        store.close()


def test_days_outside_the_year_partitioned_make_no_partitions_and_are_read_and_dropped(
        postgres_url):
    """A clock never synced (1970), broken or hostile names any day: one partition a day would
    let one device make thousands, past which every query of the views fails. Only a year back
    to tomorrow (the store's clock: the day after T0) get partitions; the rest go in
    readings_outside, read through the same views and dropped by the same call."""
    days = [-400, -366, -365, 0, 1, 2, 3, 400] + [-20000 - 97 * k for k in range(50)] + [
        500 + 97 * k for k in range(50)]
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        for seq, day in enumerate(days):
            store.insert_readings("dev-1", seq, [(T0 + day * DAY + 5, "power", day),
                                                 (T0 + day * DAY + 9, "power", day + 0.5)])
        store.insert_readings("dev-2", 0, [(7000, "up", 7)])  # ms since boot: 1970
        store.insert_batch("dev-2", 1, Columns([("power", [T0 - 800 * DAY], [8])]))
        store.commit()
        assert store.execute("SELECT name FROM reading_partitions ORDER BY t_from").fetchall() == [
            (postgres.partition_of(T0 + day * DAY)[0],) for day in (-365, 0, 1, 2)]
        assert store.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                             "'readings_packed'::regclass").fetchone() == (4,)
        outside = sorted(days[:2] + days[6:])
        assert [d for (d,) in store.execute(
            "SELECT v_first FROM readings_outside JOIN channel_batches USING (device, seq, channel) "
            "WHERE device = 'dev-1' ORDER BY v_first")] == outside
        # every reading through the views, whichever table holds it
        assert store.execute("SELECT count(*), sum(value) FROM readings WHERE device = 'dev-1'"
                             ).fetchone() == (2 * len(days), 2.0 * sum(days) + 0.5 * len(days))
        assert store.execute("SELECT device, t_ms, value FROM readings WHERE device = 'dev-2' "
                             "ORDER BY t_ms").fetchall() == [
            ("dev-2", 7000, 7.0), ("dev-2", T0 - 800 * DAY, 8.0)]
        assert store.execute("SELECT t_first, t_low, v_low, t_last, v_last FROM channel_batches "
                             "WHERE device = 'dev-1' AND seq = %d" % days.index(400)).fetchone() \
            == (T0 + 400 * DAY + 5, T0 + 400 * DAY + 5, 400.0, T0 + 400 * DAY + 9, 400.5)
        # the days wholly before T0 + 2 days go, in both tables; later ones stay
        store.begin()
        assert store.execute("SELECT tether_drop_readings(?)", (T0 + 2 * DAY + 7,)
                             ).fetchone() == (3,)
        store.commit()
        assert [d for (d,) in store.execute(
            "SELECT DISTINCT value FROM readings WHERE value = round(value) ORDER BY 1")] == [
            2.0, 3.0, 400.0] + [float(d) for d in days[8:] if d >= 2]
        assert store.execute("SELECT count(*) FROM readings WHERE device = 'dev-2'"
                             ).fetchone() == (0,)
        # at the ends of bigint too (a day's start near them is past them)
        store.begin()
        for end in (postgres.INT64_MIN, postgres.INT64_MAX):
            assert store.execute("SELECT tether_drop_readings(?)", (end,)).fetchone()[0] >= 0
        store.commit()
        assert store.execute("SELECT count(*) FROM readings").fetchone() == (0,)
    finally:
        store.close()


def test_a_nan_reading_is_stored_null_as_sqlite_stores_it_and_averages_skip_it(postgres_url):
    # Stored as NaN, an hour's avg() and max() were NaN, where SQLite's were the other readings'.
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        nan = float("nan")
        store.insert_readings("dev-1", 1, [(T0, "temp", 20.0), (T0 + 1, "temp", nan),
                                           (T0 + 2, "temp", 24.0)])
        store.insert_batch("dev-1", 2, Columns([("temp", [T0 + 3, T0 + 4], [nan, 22.0])]))
        store.commit()
        assert store.execute("SELECT count(*), count(value), avg(value), max(value) FROM readings "
                             "WHERE channel = 'temp'").fetchone() == (5, 3, 22.0, 24.0)
        assert store.execute("SELECT v_first, v_low, v_high FROM channel_batches ORDER BY seq"
                             ).fetchall() == [(20.0, 20.0, 24.0), (None, 22.0, 22.0)]
    finally:
        store.close()


def test_retention_drops_at_most_500_partitions_a_call_and_the_rest_at_the_next(postgres_url):
    # An older ingest's database with a partition for every day a device named: one call for
    # all of them ran the server out of shared memory (a lock each until the call ends).
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        store.execute(
            "DO $$ BEGIN FOR d IN 0..599 LOOP "
            "EXECUTE format('CREATE TABLE %I PARTITION OF readings_packed FOR VALUES FROM (%s) "
            "TO (%s)', 'readings_packed_old' || d, d * 86400000::bigint, (d + 1) * 86400000::bigint); "
            "INSERT INTO reading_partitions VALUES ('readings_packed_old' || d, d * 86400000::bigint, "
            "(d + 1) * 86400000::bigint); END LOOP; END $$")
        store.commit()
        got = []
        for _ in range(3):
            store.begin()
            got.append(store.execute("SELECT tether_drop_readings(?)", (T0,)).fetchone()[0])
            store.commit()
        assert got == [500, 100, 0]
        assert store.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                             "'readings_packed'::regclass").fetchone() == (0,)
    finally:
        store.close()


def test_a_role_that_may_not_create_the_layout_is_told_so_in_one_line(postgres_url):
    owner = postgres.connect(postgres_url)
    owner.close()
    role = "ro_" + postgres_url.rsplit("/", 1)[1]
    scheme, rest = postgres_url.split("://", 1)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute('CREATE ROLE "%s" LOGIN' % role)
        conn.execute('CREATE DATABASE "%s_new" OWNER tether' % role)  # empty: to lay out
    url = "%s://%s@%s_new" % (scheme, role, rest.split("@", 1)[1].rsplit("/", 1)[0] + "/" + role)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            postgres.connect(url)
        assert "\n" not in str(info.value)
        assert str(info.value).startswith("permission denied for schema public; the ingest's "
                                          "role lays out its tables the first time")
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute('DROP DATABASE "%s_new" WITH (FORCE)' % role)


def test_a_future_day_stored_outside_is_partitioned_when_its_time_comes_and_both_read(
        postgres_url, monkeypatch):
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        store.insert_readings("dev-1", 1, [(T0 + 30 * DAY, "power", 1)])  # a clock ahead
        store.commit()
        monkeypatch.setattr(postgres.PostgresStore, "clock",
                            staticmethod(lambda: (T0 + 30 * DAY) / 1000))
        store.begin()
        store.insert_readings("dev-1", 2, [(T0 + 30 * DAY + 1, "power", 2)])
        store.commit()
        assert store.execute("SELECT name FROM reading_partitions").fetchall() == [
            ("readings_packed_20260102",)]
        assert store.execute("SELECT tableoid::regclass::text, seq FROM readings_packed").fetchall(
            ) == [("readings_packed_20260102", 2)]
        assert store.execute("SELECT seq FROM readings_outside").fetchall() == [(1,)]
        assert store.execute("SELECT seq, value FROM readings ORDER BY seq").fetchall() == [
            (1, 1.0), (2, 2.0)]
    finally:
        store.close()


def test_a_role_that_may_only_read_and_write_is_told_what_a_new_days_partition_needs(
        postgres_url):
    owner = postgres.connect(postgres_url)          # lays the database out
    role = "rw_" + postgres_url.rsplit("/", 1)[1]
    try:
        for sql in ('CREATE ROLE "%s" LOGIN' % role,
                    'GRANT USAGE ON SCHEMA public TO "%s"' % role,
                    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "%s"'
                    % role):
            owner.execute(sql)
        owner.conn.commit()
        scheme, rest = postgres_url.split("://", 1)
        writer = postgres.connect("%s://%s@%s" % (scheme, role, rest.split("@", 1)[1]))
        try:
            writer.begin()
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                writer.insert_readings("dev-1", 1, [(T0, "power", 1)])
            assert str(info.value).startswith(
                "cannot make the partition readings_packed_20251203 for the readings of a new "
                "day: the ingest's role must own readings_packed and may create tables in its "
                "schema (docs/ingest.md, PostgreSQL): permission denied for schema public")
            # The same SQLSTATE: the database's failure, retried until granted, never the
            # message's (stored as malformed).
            assert info.value.sqlstate == "42501"
        finally:
            writer.close()
    finally:
        owner.close()


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
    # The ingest's own statement (Store.add_batch: the batch's row, repair's bookkeeping and the
    # devices row): the second waits for the first's COMMIT, then finds the batch there.
    first, second = postgres.connect(postgres_url), postgres.connect(postgres_url)
    row = ("dev-1", 1, 1, 0, 1, "compact", 0, None, 10, 0, 0.0, 3, T0, T0 + 3, "test")
    device_row = ("dev-1", None, 0.0, 0.0, 1, 1, T0 + 3, 0, 3)
    try:
        first.begin()
        assert first.add_batch(row, device_row) == (True, False)
        result = {}

        def store_again():
            second.begin()
            result["added"] = second.add_batch(row, device_row)  # waits for the first's COMMIT
            second.commit()

        thread = threading.Thread(target=store_again)
        thread.start()
        assert waiting_for_a_lock(first)  # the second is inside its statement, waiting
        first.commit()
        thread.join(30)
        assert result == {"added": (False, False)}
        assert first.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
        assert first.execute("SELECT batches, readings FROM devices").fetchall() == [(1, 3)]
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


@pytest.fixture
def store_and_other(postgres_url):
    """A store, and a session of someone else's on its database (a DBA's psql)."""
    store = postgres.connect(postgres_url)
    other = psycopg.connect(postgres_url, autocommit=True)
    try:
        yield store, other
    finally:
        other.close()
        store.close()


def readings_stored(store, seq, rows):
    store.begin()
    store.insert_readings("dev-1", seq, rows)
    store.commit()


def stored_at_the_retry(store, seq, rows):
    """The first try fails as the database's failure (tried again, not malformed); the retry
    stores the readings."""
    store.begin()
    store.insert_readings("dev-1", seq, rows)
    with pytest.raises(psycopg.errors.CheckViolation) as exc:
        store.commit()
    assert store.failed(exc.value)
    store.rollback()
    readings_stored(store, seq, rows)


def test_a_days_partition_dropped_by_hand_is_made_again_and_its_readings_stored(
        store_and_other):
    # Listed in reading_partitions and gone: every batch of the day was refused as malformed
    # until the row was deleted by hand.
    store, other = store_and_other
    readings_stored(store, 1, [(T0, "temp", 20.0)])
    other.execute('DROP TABLE "%s"' % postgres.partition_of(T0)[0])
    stored_at_the_retry(store, 2, [(T0 + 1, "temp", 21.0)])
    assert store.execute("SELECT seq, value FROM readings").fetchall() == [(2, 21.0)]
    # detached by hand, it is attached again with its rows
    other.execute('ALTER TABLE readings_packed DETACH PARTITION "%s"'
                  % postgres.partition_of(T0)[0])
    stored_at_the_retry(store, 3, [(T0 + 2, "temp", 22.0)])
    assert store.execute("SELECT seq, value FROM readings ORDER BY seq").fetchall() == [
        (2, 21.0), (3, 22.0)]


def test_a_partition_whose_row_was_deleted_by_hand_is_taken_as_it_is(postgres_url,
                                                                     store_and_other):
    # CREATE TABLE of its name failed at every try, for good
    store, other = store_and_other
    readings_stored(store, 1, [(T0, "temp", 20.0)])
    other.execute("DELETE FROM reading_partitions WHERE name = %s",
                  (postgres.partition_of(T0)[0],))
    again = postgres.connect(postgres_url)  # knows no day yet
    try:
        readings_stored(again, 2, [(T0 + 1, "temp", 21.0)])
    finally:
        again.close()
    assert store.execute("SELECT seq, value FROM readings ORDER BY seq").fetchall() == [
        (1, 20.0), (2, 21.0)]
    assert store.execute("SELECT count(*) FROM reading_partitions WHERE name = ?",
                         (postgres.partition_of(T0)[0],)).fetchone() == (1,)


def test_a_check_the_rows_break_is_still_the_messages_fault(postgres_url):
    # Only a row with no partition is the database's: a CHECK names its constraint
    store = postgres.connect(postgres_url)
    try:
        store.begin()
        with pytest.raises(psycopg.errors.CheckViolation) as exc:
            store.execute("INSERT INTO tether_layout (id, version, readings) VALUES (1, 1, 'x')")
        assert not store.failed(exc.value)
        store.rollback()
    finally:
        store.close()


def test_the_lock_timeout_a_url_sets_is_kept_and_a_readers_name_survives_a_reconnect(
        postgres_url):
    store = postgres.connect(postgres_url + "?options=-c%20lock_timeout%3D0", create=False)
    try:
        assert store.execute("SHOW lock_timeout").fetchone() == ("0",)
        store.reconnect()
        assert store.execute("SELECT current_setting('application_name'), "
                             "current_setting('lock_timeout')").fetchone() == ("tether-read", "0")
    finally:
        store.close()
    store = postgres.connect(postgres_url, timeout=2.0, create=False)
    try:
        assert store.execute("SHOW lock_timeout").fetchone() == ("2s",)
    finally:
        store.close()


def test_a_database_set_read_only_and_back_is_written_again_on_a_new_session(store_and_other):
    # A session keeps the read-only default it began with: after the reset the ingest failed
    # for good until its connection was killed by hand.
    store, other = store_and_other
    name = other.execute("SELECT current_database()").fetchone()[0]
    other.execute('ALTER DATABASE "%s" SET default_transaction_read_only = on' % name)
    store.reconnect()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as exc:
        store.begin()
        batch_row(store, "dev-1", 1)
    assert store.failed(exc.value)
    other.execute('ALTER DATABASE "%s" RESET default_transaction_read_only' % name)
    store.rollback()
    store.begin()
    assert batch_row(store, "dev-1", 1) == 1
    store.commit()


def test_a_table_locked_by_another_session_is_a_failure_after_the_timeout_not_a_silent_wait(
        postgres_url):
    # `LOCK TABLE batches` forgotten in a psql session stalled the ingest without a line.
    store = postgres.connect(postgres_url, timeout=1.0)
    other = psycopg.connect(postgres_url)
    try:
        # the server ends the lock's session after a minute, should the store wait for good
        other.execute("SET idle_in_transaction_session_timeout = '60s'")
        other.execute("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable) as exc:
            store.begin()
            batch_row(store, "dev-1", 1)
        assert store.failed(exc.value)
        store.rollback()
        other.rollback()
        store.begin()
        assert batch_row(store, "dev-1", 1) == 1
        store.commit()
    finally:
        other.close()
        store.close()


# ---- the ingest end to end: tether ingest and tether simulate on PostgreSQL, through mosquitto

PREFIX = "tether/v1"


@pytest.fixture(scope="module")
def fleet_batches():
    """{device: batches}: two hours of the reference printer for three devices (12 batches of
    420 readings each), and the schema."""
    import json

    from firmware.profile.compile import compile as compile_profile
    from simulator import reference
    from tests.test_ingest import encode
    profile, errors = compile_profile("examples/reference-printer.yaml")
    assert not errors
    lines = [json.dumps(r) for r in reference.readings(hours=2)]
    out = {}
    for n in range(3):
        schema, batches = encode(profile, lines, "printer-%04d" % n)
        out["printer-%04d" % n] = batches
    return schema, out


@pytest.fixture
def broker(mosquitto_factory):
    return mosquitto_factory(log_type="error warning", extra_conf="max_queued_messages 0")


@pytest.fixture
def publish(broker):
    from tests.test_ingest import Publisher
    p = Publisher(broker.port)
    yield p
    p.close()


class IngestProcess:
    """`tether ingest` on PostgreSQL in a process of its own (for SIGKILL)."""

    def __init__(self, broker, url, *options):
        self.args = [sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                     "mqtt://127.0.0.1:%d" % broker.port, "--db", url, "--every", "0.5",
                     "--quiet"] + list(options)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        first = self.proc.stdout.readline()  # printed once subscribed
        assert first.startswith("ingest "), first + self.proc.stderr.read()
        return self

    def wait_log(self, pattern, timeout=60):
        """Reads its log until a line matches pattern (a regular expression)."""
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            lines.append(line)
            if re.search(pattern, line) or not line:
                break
        assert re.search(pattern, lines[-1]), "".join(lines)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err


WAITING = r"trying again in .* \([1-9][0-9]* messages wait, not acknowledged\)"


def wait_for(url, batches, duplicates=0, timeout=60):
    """The database's totals once it holds `batches` batches and has counted `duplicates` (or
    as they are after timeout: the caller's assertions then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        t = totals(url)
        if (t["batches"] >= batches and t["duplicates"] >= duplicates) \
                or time.monotonic() > deadline:
            return t
        time.sleep(0.1)


def assert_stored_exactly(url, schema, devices):
    """Every reading of every batch published, once: as the batches decode."""
    expected = []
    for device, batches in devices.items():
        for data in batches:
            b = batch_decode.decode(data, {schema.id: schema})
            expected += [(device, t, n, float(v), b.seq) for t, n, v in b.readings]
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT device, t_ms, channel, value, seq FROM readings").fetchall()
    assert sorted(stored) == sorted(expected)


def test_two_ingest_processes_in_one_group_store_everything_once(broker, publish, postgres_url,
                                                                 fleet_batches):
    schema, devices = fleet_batches
    ingests = [IngestProcess(broker, postgres_url, "--group", "pg").start() for _ in range(2)]
    try:
        for device, batches in devices.items():
            publish.schema(device, schema)
        for device, batches in devices.items():
            publish.batches(device, batches + batches[:4])  # four sent twice (lost PUBACKs)
        n = sum(len(b) for b in devices.values())
        t = wait_for(postgres_url, n, duplicates=12)
    finally:
        results = [i.stop() for i in ingests]
    assert [code for code, _, _ in results] == [0, 0], results
    assert (t["batches"], t["duplicates"], t["malformed"]) == (n, 12, 0)
    assert_stored_exactly(postgres_url, schema, devices)
    with psycopg.connect(postgres_url) as conn:  # the group split the batches between the two
        assert conn.execute("SELECT count(DISTINCT ingest) FROM batches").fetchone()[0] == 2


def test_an_ingest_killed_with_messages_it_has_not_committed_loses_nothing(
        broker, publish, postgres_url, fleet_batches, tmp_path):
    schema, devices = fleet_batches
    ingest = IngestProcess(broker, postgres_url, "--client-id", "pg-kill").start()
    for device in devices:
        publish.schema(device, schema)
    for device, batches in devices.items():
        publish.batches(device, batches[:2])
    assert wait_for(postgres_url, 2 * len(devices))["batches"] == 2 * len(devices)
    # Another session locks `batches`: the ingest takes the next messages from the broker and
    # is inside its transaction with them, uncommitted, when SIGKILL comes. Had it acknowledged
    # them on receipt (--ack-on-receipt), the broker would not send them again: lost.
    with psycopg.connect(postgres_url) as locker:
        locker.execute("LOCK TABLE batches IN SHARE ROW EXCLUSIVE MODE")
        for device, batches in devices.items():
            publish.batches(device, batches[2:6])
        assert waiting_for_a_lock(locker)
        ingest.kill()
        locker.rollback()
    for device, batches in devices.items():
        publish.batches(device, batches[6:])  # queued by the broker in its session
    ingest.start()
    try:
        t = wait_for(postgres_url, sum(len(b) for b in devices.values()))
    finally:
        code, _, err = ingest.stop()
    assert code == 0, err
    assert t["batches"] == sum(len(b) for b in devices.values()) and t["malformed"] == 0
    assert_stored_exactly(postgres_url, schema, devices)
    # tether decode takes the schema of a compact batch from the database
    (tmp_path / "one.cbor").write_bytes(devices["printer-0000"][0])
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "decode", "--db", postgres_url,
                           str(tmp_path / "one.cbor")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 420


def test_postgresql_restarted_under_the_ingest_loses_nothing(broker, publish, postgres_factory,
                                                             fleet_batches):
    schema, devices = fleet_batches
    server = postgres_factory()
    names = sorted(devices)
    ingest = IngestProcess(broker, server.url, "--client-id", "pg-restart").start()
    try:
        for device in names:
            publish.schema(device, schema)
        publish.batches(names[0], devices[names[0]])
        assert wait_for(server.url, 12)["batches"] == 12
        # The server goes away under a running ingest: it waits, trying again, and stores
        # what arrived meanwhile once the server is back.
        server.halt()
        publish.batches(names[1], devices[names[1]])
        ingest.wait_log(WAITING)  # it has them, and cannot store them
        server.start()
        assert wait_for(server.url, 24)["batches"] == 24
        # Down again, and the ingest dies meanwhile: what it took from the broker and could not
        # commit was never acknowledged, so the broker sends it again to the next process.
        server.halt()
        publish.batches(names[2], devices[names[2]])
        ingest.wait_log(WAITING)
        ingest.kill()
        server.start()
        ingest.start()
        t = wait_for(server.url, 36)
    finally:
        code, _, err = ingest.stop()
    assert code == 0, err
    assert (t["batches"], t["malformed"]) == (36, 0)
    assert_stored_exactly(server.url, schema, devices)


def test_tether_ingest_refuses_a_newer_layout_in_one_line(broker, postgres_url):
    postgres.connect(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE tether_layout SET version = 99")
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:%d" % broker.port, "--db", postgres_url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "tether ingest: %s has ingest layout version 99, of a newer ingest; this one reads "
        "version %d and older" % (postgres_url, postgres.VERSION)]


def test_a_simulated_fleet_through_mosquitto_into_postgresql_loses_nothing(broker, postgres_url,
                                                                           tmp_path):
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "simulate", "--devices", "4", "--duration", "6h",
         "--speed", "max", "--seed", "3", "--faults", "power:every=2h,share=0.5",
         "--broker", "mqtt://127.0.0.1:%d" % broker.port, "--workdir", str(tmp_path / "w"),
         "--db", postgres_url, "--report", str(report_path)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    f = report["fleet"]
    assert (f["lost"], f["events_lost"], f["waiting"]) == (0, 0, 0), f
    assert f["power_cuts"] >= 1
    with psycopg.connect(postgres_url) as conn:
        readings = dict(conn.execute("SELECT device, count(*) FROM readings GROUP BY device"))
        events = dict(conn.execute("SELECT device, count(*) FROM events GROUP BY device"))
    for d in report["devices"]:
        # what the device buffered, less what a power cut took from RAM, is what is stored
        assert d["generated"] - d["power_cut_window"] == d["delivered"] \
            == readings[d["device"]], d
        assert d["events_raised"] == d["events"] == events.get(d["device"], 0), d
    assert sum(readings.values()) == f["delivered"] > 0
    # the run's days are partitioned, as a fleet's days are (device time is the ingest's now)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT name FROM reading_partitions").fetchall() == [
            ("readings_packed_20251123",)]
        assert conn.execute("SELECT count(*) FROM readings_outside").fetchone() == (0,)
    assert "psql %s" % postgres_url in proc.stdout
    # a second run into the same database is refused: it would mix two fleets
    again = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "simulate", "--devices", "1", "--duration", "1h",
         "--workdir", str(tmp_path / "w2"), "--db", postgres_url],
        capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stderr == ("tether simulate: --db: %s holds the devices of an earlier run: a "
                            "run starts from an empty database (drop and create it)\n"
                            % postgres_url)


def test_a_day_dropped_by_another_process_is_made_again_when_its_readings_come(postgres_url):
    writer, other = postgres.connect(postgres_url), postgres.connect(postgres_url)
    try:
        writer.begin()
        writer.insert_readings("dev-1", 1, [(T0, "power", 1)])
        writer.commit()
        other.execute("SELECT tether_drop_readings(?)", (T0 + DAY,))
        writer.begin()
        writer.insert_readings("dev-1", 2, [(T0 + 1, "power", 2)])  # a late batch of that day
        with pytest.raises(writer.Error):
            writer.commit()
        writer.rollback()
        writer.begin()  # the writer stores the group again
        writer.insert_readings("dev-1", 2, [(T0 + 1, "power", 2)])
        writer.commit()
        assert writer.execute("SELECT seq, value FROM readings").fetchall() == [(2, 2.0)]
    finally:
        writer.close()
        other.close()


def test_an_unreachable_server_is_said_in_one_line_without_the_password(broker):
    for command in (["ingest", "--broker", "mqtt://127.0.0.1:%d" % broker.port],
                    ["simulate", "--devices", "1", "--duration", "1h"]):
        proc = subprocess.run([sys.executable, "-m", "firmware.cli"] + command
                              + ["--db", "postgresql://ingest:s3cret@127.0.0.1:1/fleet"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode in (1, 2)
        [line] = proc.stderr.splitlines()
        assert line.startswith("tether %s: postgresql://ingest:***@127.0.0.1:1/fleet: "
                               "connection failed: " % command[0]), line
        assert "s3cret" not in proc.stdout + proc.stderr
