"""channel_batches: the first, lowest, highest and last reading of every batch and channel, kept
by the ingest on both backends (ingest/store), filled in when an older database is migrated,
and what the console's charts of long spans are thinned from (console/reads.py series)."""
import random
import sqlite3

import psycopg
import pytest

from console import reads
from ingest.store import open_store, postgres
from ingest.store import sqlite as sqlite_layout

T0 = 1764720000000  # 2025-12-03T00:00:00Z


@pytest.fixture(autouse=True)
def store_clock_on_t0(monkeypatch):
    """The stores take the day after T0 for today: the days around it get partitions, however long
    after 2025 the tests run (a year on, T0 would be older than the year partitioned)."""
    monkeypatch.setattr(postgres.PostgresStore, "clock", staticmethod(lambda: (T0 + 86400000) / 1000))
COLUMNS = ("SELECT device, channel, t_first, seq, v_first, t_low, v_low, t_high, v_high, t_last, "
           "v_last FROM channel_batches ORDER BY device, channel, seq")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "f.sqlite")
    return request.getfixturevalue("postgres_url")


def store_batches(url, batches):
    """batches: [(device, seq, [(t_ms, channel, value)])], each stored as the ingest stores one."""
    store = open_store(url)
    try:
        store.begin()
        for device, seq, rows in batches:
            store.execute("INSERT INTO batches (device, seq, boot, dropped, synced, encoding, "
                          "deflated, bytes, crc32, received_at, readings, t_first, t_last) "
                          "VALUES (?, ?, 1, 0, 1, 'senml', 0, 1, 0, 1.0, ?, ?, ?)",
                          (device, seq, len(rows), rows[0][0], rows[-1][0]))
            store.insert_readings(device, seq, rows)
        store.commit()
    finally:
        store.close()


def stored(url):
    store = open_store(url)
    try:
        return [tuple(r) for r in store.execute(COLUMNS).fetchall()]
    finally:
        store.close()


MIXED = [("dev-1", 1, [(T0, "power", 7.5), (T0, "state", "on"), (T0 + 10, "power", 2),
                       (T0 + 10, "state", "off"), (T0 + 20, "power", 9.25),
                       (T0 + 30, "power", 2), (T0 + 30, "door", True),
                       (T0 + 40, "power", 4.0), (T0 + 40, "door", False)]),
         ("dev-1", 2, [(T0 + 50, "power", -3.0),
                       # the least 64-bit integer; two readings at each of two times
                       (T0 + 50, "counter", -2 ** 63), (T0 + 60, "counter", 5),
                       (T0 + 50, "level", 1), (T0 + 50, "level", 2), (T0 + 60, "level", 3),
                       (T0 + 60, "level", 4)])]


def test_each_batch_keeps_per_channel_its_first_lowest_highest_and_last_reading(url):
    store_batches(url, MIXED)
    rows = stored(url)
    numbers = [r for r in rows if r[1] != "state"]
    assert numbers == [
        ("dev-1", "counter", T0 + 50, 2, -2 ** 63, T0 + 50, -2 ** 63, T0 + 60, 5, T0 + 60, 5),
        ("dev-1", "door", T0 + 30, 1, 1, T0 + 40, 0, T0 + 30, 1, T0 + 40, 0),
        # first and last in the batch's order where two share a time
        ("dev-1", "level", T0 + 50, 2, 1, T0 + 50, 1, T0 + 60, 4, T0 + 60, 4),
        # the first of two equal lows; the last reading is not the highest
        ("dev-1", "power", T0, 1, 7.5, T0 + 10, 2, T0 + 20, 9.25, T0 + 40, 4),
        ("dev-1", "power", T0 + 50, 2, -3, T0 + 50, -3, T0 + 50, -3, T0 + 50, -3)]
    # text has a first and a last reading but no number: no low or high
    (state,) = [r for r in rows if r[1] == "state"]
    assert state[:4] == ("dev-1", "state", T0, 1) and state[5:9] == (None,) * 4
    assert state[9] == T0 + 10


def downgrade(url):
    """The database as the layout before channel_batches left it."""
    if url.startswith("postgresql:"):  # layout 3: the columns, the views over both tables gone
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP VIEW channel_batches")
            conn.execute("DROP VIEW readings")
            conn.execute("DROP TABLE readings_outside")
            conn.execute("CREATE VIEW readings AS SELECT p.device, r.t_ms, p.channel, r.value, "
                         "p.seq, r.text FROM readings_packed p CROSS JOIN LATERAL "
                         "unnest(p.t_ms, p.value, p.text) AS r (t_ms, value, text)")
            conn.execute("ALTER TABLE readings_packed DROP COLUMN t_low, DROP COLUMN v_low, "
                         "DROP COLUMN t_high, DROP COLUMN v_high")
            conn.execute("DROP TABLE stores")
            conn.execute("DROP INDEX events_alarms")
            conn.execute("DROP INDEX events_sensor_errors")
            conn.execute("UPDATE tether_layout SET version = 3")
        assert postgres.VERSION == 8
    else:  # layout 5
        conn = sqlite3.connect(url)
        conn.executescript("DROP TABLE channel_batches; DROP TABLE stores; "
                           "DROP INDEX events_alarms; DROP INDEX events_sensor_errors; "
                           "PRAGMA user_version = 5;")
        conn.close()
        assert sqlite_layout.DB_VERSION == 9


def test_an_older_database_gets_them_from_the_readings_it_holds(url):
    store_batches(url, MIXED)
    made = stored(url)
    downgrade(url)
    assert stored(url) == made  # the migration's, as the ingest stores them
    # an ingest of the older layout, still running, writes no extremes: read, they are there
    if url.startswith("postgresql:"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE readings_packed SET t_low = NULL, v_low = NULL, "
                         "t_high = NULL, v_high = NULL")
        assert stored(url) == made


def walk(batches, size, seed=5):
    """A power meter's batches: a random walk every 10 s, with one spike up and one down."""
    rng = random.Random(seed)
    v, out = 100.0, []
    for seq in range(1, batches + 1):
        rows = []
        for i in range(size):
            v = round(v + rng.uniform(-1, 1), 1)
            rows.append((T0 + ((seq - 1) * size + i) * 10000, "power", v))
        out.append(("meter-1", seq, rows))
    up, down = out[len(out) * 2 // 5][2], out[len(out) // 40][2]
    up[7] = (up[7][0], "power", 2500.0)
    down[3] = (down[3][0], "power", -40.0)
    return out


def expected(batches, start, end, buckets):
    """The chart's points from whole batches: of each stretch, the first reading of its first
    batch, the lowest and highest (the first of equals), the last of its last batch."""
    width = max(1, (end - start) // buckets + 1)
    stretches = {}
    for _, _, rows in batches:
        if start <= rows[0][0] <= end:
            stretches.setdefault((rows[0][0] - start) // width, []).append(rows)
    points = {}
    for group in stretches.values():
        readings = [r for rows in group for r in rows]
        low = min(readings, key=lambda r: (r[2], r[0]))
        high = max(readings, key=lambda r: (r[2], -r[0]))
        for t, _, v in (group[0][0], low, high, group[-1][-1]):
            points[t] = v
    return [[t, points[t]] for t in sorted(points)]


def test_a_long_span_is_thinned_from_whole_batches_and_keeps_every_extreme(url):
    batches = walk(3000, 20)  # 60,000 readings, about a week
    store_batches(url, batches)
    readings = {t: v for _, _, rows in batches for t, _, v in rows}
    end = batches[-1][2][-1][0]
    db = reads.Database(url)
    points = reads.series(db, "meter-1", "power", None, end)
    assert points == expected(batches, T0, end, reads.MAX_POINTS // 4)
    assert len(points) <= reads.MAX_POINTS
    assert all(readings[t] == v for t, v in points)  # real readings at their own times
    values = [v for _, v in points]
    assert max(values) == 2500.0 and min(values) == -40.0
    assert points[0] == [T0, readings[T0]] and points[-1] == [end, readings[end]]
    # a span starting inside the data: only the batches that begin in it
    start = end - 2 * 86400000
    assert reads.series(db, "meter-1", "power", start, end) == expected(
        batches, start, end, reads.MAX_POINTS // 4)


def test_fewer_batches_than_stretches_are_thinned_from_their_readings(url):
    batches = walk(100, 200, seed=9)  # 100 batches of 200: each stretch is inside one batch
    store_batches(url, batches)
    end = batches[-1][2][-1][0]
    points = reads.series(reads.Database(url), "meter-1", "power", None, end)
    width = (end - T0) // (reads.MAX_POINTS // 4) + 1
    # four points a stretch of 67 readings: far more than four a batch
    assert len(points) > 4 * len(batches)
    readings = [(t, v) for _, _, rows in batches for t, _, v in rows]
    for b in range(0, 300, 37):
        stretch = [(t, v) for t, v in readings if (t - T0) // width == b]
        lowest = min(stretch, key=lambda r: (r[1], r[0]))
        assert [lowest[0], lowest[1]] in points


def test_the_console_brings_an_older_database_up_to_date_before_drawing_it(url):
    from console.server import prepare
    batches = walk(400, 20)
    store_batches(url, batches)
    downgrade(url)
    prepare(url)
    end = batches[-1][2][-1][0]
    assert reads.series(reads.Database(url), "meter-1", "power", None, end) == expected(
        batches, T0, end, reads.MAX_POINTS // 4)
