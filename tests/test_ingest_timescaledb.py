"""The ingest on a PostgreSQL server with TimescaleDB installed (ingest/store/postgres.py,
timescaledb()): readings_packed is a hypertable with a chunk a day where the extension is
loaded, and daily partitions, with a warning, where it is installed but not loaded.

TimescaleDB is optional (no Debian package of it): these tests run only on a machine whose
PostgreSQL has it installed, and are skipped, saying so, elsewhere."""
import logging
import uuid

import psycopg
import pytest

from ingest.store import postgres as postgres_store
from tests.test_ingest_groups import GOOD, store

DAY = postgres_store.DAY_MS
T0 = 1764720000000  # 2025-12-03T00:00:00Z


@pytest.fixture(autouse=True)
def store_clock_on_t0(monkeypatch):
    """The stores take the day after T0 for today: the days around it get partitions, however long
    after 2025 the tests run (a year on, T0 would be older than the year partitioned)."""
    monkeypatch.setattr(postgres_store.PostgresStore, "clock", staticmethod(lambda: (T0 + 86400000) / 1000))
LOADED = {"shared_preload_libraries": "'timescaledb'", "timescaledb.telemetry_level": "off"}


@pytest.fixture(autouse=True)
def installed(postgres):
    with psycopg.connect(postgres.url) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
                        ).fetchone() is None:
            pytest.skip("TimescaleDB is not installed on this machine's PostgreSQL")


def database(server, name, owner=None):
    """A new database's URL; owner: it belongs to a new ordinary role of that name (no
    superuser, no pg_read_all_settings), whom the URL logs in as."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        if owner:
            conn.execute('CREATE ROLE "%s" LOGIN' % owner)
            conn.execute('CREATE DATABASE "%s" OWNER "%s"' % (name, owner))
        else:
            conn.execute('CREATE DATABASE "%s"' % name)
    return "postgresql://%s@%s:%d/%s" % (owner or server.user, server.host, server.port, name)


@pytest.mark.parametrize("owner", [None, "tsdb_owner"])
def test_installed_but_not_loaded_the_readings_are_partitioned_and_a_warning_says_why(
        postgres, owner, caplog):
    caplog.set_level(logging.WARNING, logger="tether.ingest")
    url = database(postgres, "t_" + uuid.uuid4().hex[:12], owner)
    store = postgres_store.connect(url)  # it refused CREATE EXTENSION: "must be preloaded"
    try:
        assert store.execute("SELECT readings FROM tether_layout").fetchone() == ("partitions",)
        assert store.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
                             ).fetchone() == (0,)
    finally:
        store.close()
    assert 'could not be created in this database (extension "timescaledb" must be preloaded)' \
        in caplog.text


def test_loaded_a_database_owner_who_is_no_superuser_gets_the_hypertable(postgres_factory):
    server = postgres_factory(settings=LOADED)
    store = postgres_store.connect(database(server, "hyper_owned", "app"))
    try:  # TimescaleDB is a trusted extension: the database's owner may create it
        assert store.execute("SELECT readings FROM tether_layout").fetchone() == ("hypertable",)
        assert store.execute("SELECT current_setting('is_superuser')").fetchone() == ("off",)
    finally:
        store.close()


def test_loaded_the_readings_are_a_hypertable_whose_days_drop_whole(postgres_factory):
    server = postgres_factory(settings=LOADED)
    store = postgres_store.connect(database(server, "hyper"))
    try:
        assert store.execute("SELECT readings FROM tether_layout").fetchone() == ("hypertable",)
        store.begin()
        for day in range(3):
            store.insert_readings("dev-1", day, [(T0 + day * DAY + 5, "power", day),
                                                 (T0 + day * DAY + 6, "power", day)])
        store.commit()
        assert store.execute("SELECT count(*) FROM reading_partitions").fetchone() == (0,)
        assert store.execute("SELECT range_start_integer FROM timescaledb_information.chunks "
                             "WHERE hypertable_name = 'readings_packed' ORDER BY 1").fetchall() == [
            (T0,), (T0 + DAY,), (T0 + 2 * DAY,)]
        assert store.execute("SELECT t_ms, value FROM readings ORDER BY t_ms").fetchall() == [
            (T0 + day * DAY + k, float(day)) for day in range(3) for k in (5, 6)]
        assert store.execute("SELECT tether_drop_readings(?)", (T0 + 2 * DAY,)).fetchone() == (2,)
        assert store.execute("SELECT DISTINCT value FROM readings").fetchall() == [(2.0,)]
        store.begin()  # a late batch of a dropped day gets its chunk again, no error
        store.insert_readings("dev-1", 9, [(T0 + 7, "power", 9)])
        store.commit()
        assert store.execute("SELECT count(*) FROM readings").fetchone() == (3,)
    finally:
        store.close()


def test_loaded_the_ingest_stores_a_group_into_the_hypertable(postgres_factory):
    server = postgres_factory(settings=LOADED)
    url = database(server, "hyper_ingest")
    rows, stats = store(url, [GOOD])
    assert stats["batches"] == 2 and stats.get("malformed", 0) == 0
    assert len(rows["readings"]) == 12
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT readings FROM tether_layout").fetchone() == ("hypertable",)
        assert conn.execute("SELECT count(*) FROM timescaledb_information.chunks WHERE "
                            "hypertable_name = 'readings_packed'").fetchone()[0] >= 1
