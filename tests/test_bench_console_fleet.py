"""bench/console_fleet.py, the console benchmark's synthetic fleet: what it writes is what the
ingest's read side reads (ingest/queries.py), whole and coherent, and the same on SQLite and
PostgreSQL."""
import json

from bench import console_fleet
from ingest import queries
from ingest.store import open_store

NOW_MS = 1796300000000
DEVICES = 12


def rows(url, sql, args=()):
    db = open_store(url, create=False)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test_the_fleet_reads_back_whole_and_the_same_on_sqlite_and_postgresql(tmp_path,
                                                                           postgres_url):
    sqlite = str(tmp_path / "fleet.sqlite")
    written = console_fleet.fill(sqlite, DEVICES, now_ms=NOW_MS)
    assert console_fleet.fill(postgres_url, DEVICES, now_ms=NOW_MS) == written

    totals = queries.totals(sqlite)
    assert totals == queries.totals(postgres_url)
    assert totals["devices"] == written["devices"] == DEVICES
    assert (totals["readings"], totals["batches"], totals["events"], totals["health"]) == (
        written["readings"], written["batches"], written["events"], written["health"])
    assert totals["missing"] == 0 and totals["malformed"] == 0 and totals["held"] == 0

    summary = queries.summary(sqlite)
    assert summary == queries.summary(postgres_url)
    assert sorted(summary) == sorted(console_fleet.device_ids(DEVICES))
    for device in console_fleet.DETAILED:  # a whole month: every batch, readings as counted
        d = summary[device]
        assert (d["batches"], d["first_seq"], d["last_seq"], d["gaps"], d["open"]) == (
            4320, 0, 4319, [], 0)
        stored, = rows(sqlite, "SELECT readings FROM devices WHERE device = ?", (device,))
        assert d["readings"] == stored[0] > 4320
    # The printer's month: 4 inks every minute and its power, the newest reading now.
    per_channel = dict(rows(sqlite, "SELECT channel, count(*) FROM readings WHERE device = ? "
                                    "GROUP BY channel", (console_fleet.DETAILED[0],)))
    assert [per_channel["ink_%s" % k] for k in "cmyk"] == [30 * 1440] * 4
    assert 0 < per_channel["power"] < 30 * 1440
    newest, = rows(sqlite, "SELECT max(t_ms) FROM readings")
    assert NOW_MS - 600000 < newest[0] <= NOW_MS

    # Every insight is an event of the same sequence number, with the same fields.
    events = {(d, s): (e, json.loads(detail)) for d, s, e, detail in rows(
        sqlite, "SELECT device, seq, event, detail FROM events WHERE state = 'insight'")}
    insights = {(d, s): (e, json.loads(f)) for d, s, e, f in rows(
        sqlite, "SELECT device, seq, event, fields FROM insights")}
    assert insights == events
    kinds = {e for e, _ in insights.values()}
    assert {"forecast", "dose_taken", "cycle", "energy_report"} <= kinds
    for device, health in rows(sqlite, "SELECT device, health FROM health"):
        doc = json.loads(health)
        assert doc["v"] == 1 and doc["device"] == device
