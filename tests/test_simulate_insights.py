"""Insights end to end: a `tether simulate` fleet's detectors run in its agents, their events
travel through the embedded broker to the ingest's insights table, and the report scores them
against the models' truth."""
import asyncio
import json
import sqlite3

from simulator.fleet import DEFAULT_FLEET, Fleet, load_fleet

DAY_MS = 86400000


def test_every_insight_a_device_sends_reaches_the_ingest_and_is_scored(tmp_path):
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 12), str(tmp_path), 3 * DAY_MS, speed=None, seed=21)
    report = asyncio.run(fleet.run())
    assert report["fleet"]["lost"] == 0 and report["fleet"]["events_lost"] == 0
    with sqlite3.connect(fleet.db_path) as db:
        stored = dict(db.execute("SELECT device, count(*) FROM insights GROUP BY device"))
        as_events = db.execute("SELECT count(*) FROM events WHERE state = 'insight'").fetchone()
        kinds = {e for (e,) in db.execute("SELECT DISTINCT event FROM insights")}
        fields = [json.loads(f) for (f,) in db.execute("SELECT fields FROM insights")]
    sent = {d.device_id: d.agent.insights.sent for d in fleet.devices if d.agent.insights.sent}
    assert stored == sent
    assert as_events == (sum(sent.values()),)
    assert all(isinstance(f, dict) and f for f in fields)
    # A three-day fleet of every example appliance: each kind has spoken. (The events that take
    # weeks, empty, refills and maintenance_due, travel the same path: tests/test_ingest.py
    # stores every event of every kind.)
    assert {"forecast", "reorder", "cartridge_replaced", "dose_taken", "dose_missed", "cycle",
            "energy_report"} <= kinds, kinds
    assert set(report["insight_scores"]) == {"consumables", "doses", "motors"}
    judged = {row["name"].split(" (")[0]: row for row in report["insight_scores"]["doses"]}
    for name in ("dose_missed specificity", "dose_taken precision", "dose_taken recall"):
        assert judged[name]["value"] is not None and judged[name]["ok"], judged[name]
    assert [d["insights"] for d in report["devices"]] == [
        stored.get(d.device_id, 0) for d in fleet.devices]
