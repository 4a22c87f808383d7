"""The fleet console without a browser: what needs someone and when it stops, the fleet table's
paging, the charts' thinning, and every input the app takes checked, over a real console
server on loopback (tests/test_console_browser.py drives the pages in Chromium)."""
import http.client
import json
import re
import sqlite3
import time

import pytest

from console import actions, reads
from console.server import Server
from ingest.store import open_store

DAY = reads.DAY_MS
NOW = 1764028800000  # device time, far from the wall clock: a simulated fleet's


def make_db(path, devices=("printer-1", "bottle-1", "washer-1")):
    db = open_store(str(path))
    db.begin()
    for i, d in enumerate(devices):
        db.execute("INSERT INTO devices (device, first_seen, last_seen, last_t_ms, last_status, "
                   "dropped_reported) VALUES (?, ?, ?, ?, ?, ?)",
                   (d, 1.0, 2.0 + i, NOW - i * 60000, "online", 0))
    db.commit()
    return db


def pages(path, *urls):
    """The bodies of urls, as a console on the database at path serves them."""
    server = Server(str(path), port=0).start()
    try:
        return [request(server, "GET", url)[1] for url in urls]
    finally:
        server.stop()


def insight(db, device, seq, t_ms, event, sensor, value=None, **fields):
    db.begin()
    db.execute("INSERT INTO insights (device, seq, t_ms, synced, event, sensor, value, fields, "
               "received_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)",
               (device, seq, t_ms, event, sensor, value, json.dumps(fields), float(seq)))
    db.commit()


def needed(path, now=NOW, **kw):
    database = reads.Database(str(path))
    rows, _, _ = reads.FleetCache(database).refresh()
    return [(a["kind"], a["device"], a["sensor"]) for a in actions.needed(database, rows, now,
                                                                          **kw)], database


def test_a_database_file_made_again_in_its_place_is_read_not_the_old_one(tmp_path):
    # tether simulate into the same workdir makes the file again: the console went on showing
    # the deleted one's fleet, live mark and all.
    import os
    path = tmp_path / "fleet.sqlite"
    make_db(path, ("printer-1",)).close()
    database = reads.Database(str(path))
    assert database.rows("SELECT device FROM devices") == [("printer-1",)]
    make_db(tmp_path / "new.sqlite", ("washer-1", "washer-2")).close()
    os.replace(tmp_path / "new.sqlite", path)
    assert database.rows("SELECT device FROM devices ORDER BY 1") == [("washer-1",), ("washer-2",)]


def test_a_device_whose_clock_never_synced_is_judged_by_when_it_was_last_heard(tmp_path):
    # Its times count from boot (1970): "nothing heard for 20792 days" while it reported, and
    # the fleet shown "as of 1970" when it was the only one.
    import time as _time
    db = make_db(tmp_path / "f.sqlite", ())
    db.begin()
    now = _time.time()
    for device, t_ms, seen in (("fresh", 4321364, now - 60), ("gone", 4321364, now - 5 * 3600)):
        db.execute("INSERT INTO devices (device, first_seen, last_seen, last_t_ms, last_status, "
                   "dropped_reported) VALUES (?, ?, ?, ?, 'online', 0)", (device, 1.0, seen, t_ms))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, now_ms, simulated = reads.FleetCache(database).refresh()
    assert not simulated and abs(now_ms - now * 1000) < 60000
    shown = actions.needed(database, rows, now_ms)
    assert [(a["kind"], a["device"]) for a in shown] == [("silent", "gone")]
    assert shown[0]["evidence"].startswith("nothing heard for 5")
    # The fleet page and the device page said "20422.0 days ago (1970-01-01 00:00 UTC)".
    fleet, page = pages(tmp_path / "f.sqlite", "/fleet", "/device/gone")
    assert "5 h 00 min ago (its clock is not synced)" in fleet and "days ago" not in fleet
    assert "Last reading 5 h 00 min ago (its clock is not synced);" in page


def test_a_reorder_needs_someone_until_a_new_cartridge_is_in(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - DAY, "reorder", "ink_c", 6.1, days=6.1, level=9.0,
            lead_days=10, rate_per_day=1.4, low_days=4.0, high_days=9.0)
    shown, _ = needed(tmp_path / "f.sqlite")
    assert shown == [("reorder", "printer-1", "ink_c")]
    insight(db, "printer-1", 2, NOW - 1000, "cartridge_replaced", "ink_c", 100.0)
    assert needed(tmp_path / "f.sqlite")[0] == []


def test_a_reorder_row_shows_the_level_now_and_sorts_by_the_days_left_now(tmp_path):
    # It showed the level and days of when the reorder was sent ("34.6 % left, 17.0 days" 18.5
    # days on, with 1.5 % left), and the rows were sorted by those.
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - 18 * DAY, "reorder", "ink_y", 17.0, days=17.0, level=34.6)
    insight(db, "printer-1", 2, NOW - DAY, "reorder", "ink_c", 6.1, days=6.1, level=9.0)
    db.begin()
    db.execute("INSERT INTO channel_batches (device, channel, t_first, seq, v_first, t_low, "
               "v_low, t_high, v_high, t_last, v_last) VALUES ('printer-1', 'ink_y', ?, 9, 2.0, "
               "?, 1.5, ?, 2.0, ?, 1.5)", (NOW - 600000, NOW - 1000, NOW - 600000, NOW - 1000))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    shown = actions.needed(database, rows, NOW)
    assert [a["sensor"] for a in shown] == ["ink_y", "ink_c"]  # -1 day left before 5.1
    assert shown[0]["evidence"].startswith("now 1.5 % left, about -1 days to empty; reorder sent "
                                           "at 34.6 % left, 17.0 days to empty")
    assert shown[1]["evidence"].startswith("now about 5.1 days to empty; ")


def test_an_action_links_to_its_device_over_a_span_that_holds_its_evidence(tmp_path):
    # the device page opens on 7 days: a reorder of 9 days ago had no mark, line or row there
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - 9 * DAY, "reorder", "ink_y", 17.0, days=17.0, level=34.6)
    insight(db, "printer-1", 2, NOW - DAY, "reorder", "ink_c", 6.1, days=6.1, level=9.0)
    insight(db, "printer-1", 3, NOW - 40 * DAY, "reorder", "ink_k", 6.1, days=6.1, level=9.0)
    server = Server(str(tmp_path / "f.sqlite"), port=0).start()
    try:
        _, body, _ = request(server, "GET", "/")
    finally:
        server.stop()
    rows = {}
    for row in body.split("<tr data-device=")[1:]:
        rows[row.split('data-sensor="')[1].split('"')[0]] = row.split('href="')[1].split('"')[0]
    assert rows["ink_y"] == "/device/printer-1?span=30d"
    assert rows["ink_c"] == "/device/printer-1"
    assert rows["ink_k"] == "/device/printer-1?span=all"


def test_a_reorder_rows_days_left_now_are_the_level_now_at_the_forecasts_rate(tmp_path):
    # "now 2.2 % left, about -4.7 days to empty": the reorder's days less the days since ran
    # on past empty while ink was left
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - 12 * DAY, "reorder", "ink_k", 7.3, days=7.3, level=40.0,
            rate_per_day=4.0)
    db.begin()
    db.execute("INSERT INTO channel_batches (device, channel, t_first, seq, v_first, t_low, "
               "v_low, t_high, v_high, t_last, v_last) VALUES ('printer-1', 'ink_k', ?, 9, 2.4, "
               "?, 2.2, ?, 2.4, ?, 2.2)", (NOW - 600000, NOW - 1000, NOW - 600000, NOW - 1000))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    shown = actions.needed(database, rows, NOW)
    assert shown[0]["evidence"].startswith("now 2.2 % left, about 0.6 days to empty; ")


def test_a_reorder_rows_days_left_now_follow_the_devices_newest_forecast(tmp_path):
    # the reorder's rate over the level now gave one date, the chart (level over rate) another,
    # the device's own forecast a third
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - 8 * DAY, "reorder", "ink_c", 15.9, days=15.9, level=9.0,
            rate_per_day=0.6)
    insight(db, "printer-1", 2, NOW - DAY // 2, "forecast", "ink_c", 3.24, level=1.33,
            rate_per_day=0.6, weekly=True)
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    shown = actions.needed(database, rows, NOW)
    assert shown[0]["evidence"].startswith("now about 2.7 days to empty; "), shown[0]["evidence"]


def test_an_empty_cartridge_replaces_its_reorder_and_comes_first(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - 3 * DAY, "reorder", "ink_k", 2.0, days=2.0, level=3.0)
    insight(db, "printer-1", 2, NOW - 2 * DAY, "maintenance_due", "power", 18.0, drift_pct=18.0)
    insight(db, "printer-1", 3, NOW - DAY, "empty", "ink_k", 0.0, level=0.0, reordered=True)
    shown, _ = needed(tmp_path / "f.sqlite")
    assert shown == [("empty", "printer-1", "ink_k"), ("maintenance_due", "printer-1", "power")]
    # whether a reorder went out, both ways (it said only "never reordered")
    assert actions._insight("empty", "p", "ink_k", 0, 0.0, {"level": 0.0, "reordered": True})[
        "evidence"] == "empty at 0 %, reordered before"
    assert actions._insight("empty", "p", "ink_k", 0, 0.0, {"level": 0.0, "reordered": False})[
        "evidence"] == "empty at 0 %, never reordered"


def test_a_health_reports_uptime_reads_in_days_and_hours():
    from console.app import _uptime
    assert [_uptime(s) for s in (472806, 12000, 90, None, True)] == [
        "5 d 11 h", "3 h 20 min", "1 min", "", ""]


def test_missed_doses_of_the_last_week_count_per_bottle(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    for seq, days in enumerate((9, 3, 1)):
        t = NOW - days * DAY
        insight(db, "bottle-1", seq, t, "dose_missed", "pills", None, scheduled=t - 3600000,
                close=t)
    insight(db, "printer-1", 9, NOW - DAY, "dose_missed", "pills", None, scheduled=NOW - DAY)
    # a second bottle on one device: a row of its own (one row for both acknowledged the
    # first bottle's insight and hid the second's misses)
    insight(db, "bottle-1", 5, NOW - 2 * DAY, "dose_missed", "vitamin_d", None,
            scheduled=NOW - 2 * DAY)
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, now, _ = reads.FleetCache(database).refresh()
    one, other, two = sorted(actions.needed(database, rows, NOW),
                             key=lambda a: (a["device"], a["sensor"]))
    assert (one["device"], one["kind"], one["sensor"], one["figures"]["missed"]) == (
        "bottle-1", "dose_missed", "pills", 2)
    assert one["evidence"].startswith("2 doses missed in the last 7 days")
    assert (other["sensor"], other["figures"]["missed"]) == ("vitamin_d", 1)
    assert (two["device"], two["figures"]["missed"]) == ("printer-1", 1)


def threshold_event(db, device, seq, boot, t_ms, event, sensor, state, value, detail="alarm"):
    db.begin()
    db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, state, value, "
               "detail, received_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
               (device, seq, boot, t_ms, event, sensor, state, value, detail, float(seq)))
    db.commit()


def test_an_alarm_threshold_stands_in_actions_until_it_clears(tmp_path):
    # A fridge's cabinet at 9.3 C (food spoiling) was in no list: only insights were
    path = tmp_path / "f.sqlite"
    db = make_db(path, ("fridge-1", "fridge-2"))
    threshold_event(db, "fridge-1", 0, 1, NOW - 3600000, "cabinet_warm", "cabinet", "raised", 9.3)
    threshold_event(db, "fridge-1", 1, 1, NOW - 60000, "undervoltage", "voltage", "raised", 201,
                    detail=None)                         # not marked an alarm: not listed
    threshold_event(db, "fridge-2", 0, 1, NOW - 7200000, "cabinet_warm", "cabinet", "raised", 8.4)
    threshold_event(db, "fridge-2", 1, 1, NOW - 3600000, "cabinet_warm", "cabinet", "cleared", 6.9)
    got, database = needed(path)
    assert got == [("alarm", "fridge-1", "cabinet")]
    a = actions.needed(database, reads.FleetCache(database).refresh()[0], NOW)[0]
    assert a["title"] == "Alarm" and a["event"] is None     # nothing to send a device
    assert a["evidence"].startswith("cabinet_warm: 9.3 at ")
    assert a["evidence"].endswith(", not cleared since")
    # restarted with the cabinet cool again: the device tells `cleared` at its first reading
    threshold_event(db, "fridge-1", 2, 2, NOW - 1000, "cabinet_warm", "cabinet", "cleared", 4.0)
    assert needed(path)[0] == []


def test_two_alarms_of_one_sensor_are_one_row_and_either_raised_again_brings_it_back(tmp_path):
    path = tmp_path / "f.sqlite"
    db = make_db(path, ("fridge-1",))
    threshold_event(db, "fridge-1", 0, 1, NOW - 3600000, "cabinet_warm", "cabinet", "raised", 9.3)
    threshold_event(db, "fridge-1", 1, 1, NOW - 1800000, "door_open", "cabinet", "raised", 12.0)
    got, database = needed(path)
    assert got == [("alarm", "fridge-1", "cabinet")]
    a = actions.needed(database, reads.FleetCache(database).refresh()[0], NOW)[0]
    assert [e["event"] for e in a["figures"]["events"]] == ["cabinet_warm", "door_open"]
    assert "cabinet_warm: 9.3" in a["evidence"] and "door_open: 12" in a["evidence"]
    db.begin()
    db.execute("INSERT INTO acks (device, action, sensor, done, at_ms, value, received_at) "
               "VALUES ('fridge-1', 'alarm', 'cabinet', 'ack', ?, ?, 1.0)",
               (NOW, actions.judged_on(a)))
    db.commit()
    assert needed(path)[0] == []
    threshold_event(db, "fridge-1", 2, 1, NOW - 60000, "door_open", "cabinet", "cleared", 7.0)
    threshold_event(db, "fridge-1", 3, 1, NOW - 1000, "door_open", "cabinet", "raised", 11.0)
    assert needed(path)[0] == [("alarm", "fridge-1", "cabinet")]


def test_an_alarm_of_a_clock_never_synced_is_judged_by_its_order_and_dated_by_its_arrival(
        tmp_path):
    # its times count from boot: an acknowledged alarm cleared and raised again after a restart
    # (a smaller time) stayed hidden, and the row said "at Thu 01 Jan 01:00" and 20,000 days ago
    import time as _time
    path = tmp_path / "f.sqlite"
    db = make_db(path, ("fridge-1",))
    database = reads.Database(str(path))
    arrived = _time.time() - 60

    def event(seq, boot, t, state):
        db.begin()
        db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, state, "
                   "value, detail, received_at) VALUES ('fridge-1', ?, ?, ?, 0, 'cabinet_warm', "
                   "'cabinet', ?, 9.0, 'alarm', ?)", (seq, boot, t, state, arrived))
        db.commit()
    event(0, 1, 3600000, "raised")
    (a,) = actions.needed(database, reads.FleetCache(database).refresh()[0], NOW)
    assert abs(a["t_ms"] - arrived * 1000) < 5000
    assert "01 Jan" not in a["evidence"] and "1970" not in a["evidence"], a["evidence"]
    db.begin()
    db.execute("INSERT INTO acks (device, action, sensor, done, at_ms, value, received_at) "
               "VALUES ('fridge-1', 'alarm', 'cabinet', 'ack', ?, ?, 1.0)",
               (NOW, actions.judged_on(a)))
    db.commit()
    event(1, 1, 3700000, "cleared")
    event(2, 2, 60000, "raised")     # after a restart: its time is smaller, its number not
    assert needed(path)[0] == [("alarm", "fridge-1", "cabinet")]


def test_a_restart_while_an_alarm_stands_does_not_undo_its_acknowledgement(tmp_path):
    # the state starts afresh at boot: the device raises it again, which is not news
    path = tmp_path / "f.sqlite"
    db = make_db(path, ("fridge-1",))
    threshold_event(db, "fridge-1", 0, 1, NOW - 3600000, "cabinet_warm", "cabinet", "raised", 9.3)
    got, database = needed(path)
    a = actions.needed(database, reads.FleetCache(database).refresh()[0], NOW)[0]
    db.begin()
    db.execute("INSERT INTO acks (device, action, sensor, done, at_ms, value, received_at) "
               "VALUES ('fridge-1', 'alarm', 'cabinet', 'ack', ?, ?, 1.0)",
               (NOW, actions.judged_on(a)))
    db.commit()
    threshold_event(db, "fridge-1", 1, 2, NOW - 1000, "cabinet_warm", "cabinet", "raised", 9.1)
    assert needed(path)[0] == []


def test_an_alarm_renamed_or_removed_in_the_profile_is_not_listed_for_good(tmp_path):
    # the device tells every alarm of a sensor at each boot: one the newest telling left out
    # is no longer the profile's
    path = tmp_path / "f.sqlite"
    db = make_db(path, ("fridge-1",))
    threshold_event(db, "fridge-1", 0, 1, NOW - 99 * DAY, "cabinet_warm", "cabinet", "raised", 9)
    assert needed(path)[0] == [("alarm", "fridge-1", "cabinet")]
    threshold_event(db, "fridge-1", 1, 2, NOW - DAY, "cabinet_hot", "cabinet", "cleared", 4.0)
    assert needed(path)[0] == []


def test_the_alarms_query_reads_the_alarm_index_not_every_event(tmp_path):
    # a fleet's events table holds millions of cycles and forecasts
    make_db(tmp_path / "f.sqlite", ()).close()
    conn = sqlite3.connect(str(tmp_path / "f.sqlite"))
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + actions.ALARMS_SQL))
    assert "events_alarms" in plan, plan
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + actions.FAILING_SQL))
    assert "events_sensor_errors" in plan, plan


def test_an_acknowledgement_hides_an_action_until_something_newer_comes(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "washer-1", 1, NOW - DAY, "maintenance_due", "power", 20.0, drift_pct=20.0)
    db.begin()
    db.execute("INSERT INTO acks (device, action, sensor, done, at_ms, value, received_at) "
               "VALUES ('washer-1', 'maintenance_due', 'power', 'ack', ?, ?, 1.0)",
               (NOW, NOW - DAY))
    db.commit()
    assert needed(tmp_path / "f.sqlite")[0] == []
    insight(db, "washer-1", 2, NOW - 1000, "maintenance_due", "power", 25.0, drift_pct=25.0)
    assert needed(tmp_path / "f.sqlite")[0] == [("maintenance_due", "washer-1", "power")]


def test_a_snooze_hides_an_action_until_it_ends(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "bottle-1", 1, NOW - DAY, "refill_needed", "pills", 3.0, count=6, days_left=3.0,
            per_day=2)
    db.begin()
    db.execute("INSERT INTO acks (device, action, sensor, done, at_ms, until_ms, received_at) "
               "VALUES ('bottle-1', 'refill_needed', 'pills', 'snooze', ?, ?, 1.0)",
               (NOW, NOW + DAY))
    db.commit()
    assert needed(tmp_path / "f.sqlite")[0] == []
    later, _ = needed(tmp_path / "f.sqlite", now=NOW + DAY + 1, silent_ms=2 * DAY)
    assert later == [("refill_needed", "bottle-1", "pills")]


def test_silent_and_dropping_devices_need_someone(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    db.execute("UPDATE devices SET last_t_ms = ?, last_status = 'offline' "
               "WHERE device = 'bottle-1'", (NOW - 5 * 3600000,))
    db.execute("UPDATE devices SET dropped_reported = 42 WHERE device = 'washer-1'")
    db.execute("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
               "VALUES ('washer-1', 'batch', 7, 'broker', 1.0)")
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    shown = {a["kind"]: a for a in actions.needed(database, rows, NOW)}
    assert set(shown) == {"silent", "dropping"}
    assert shown["silent"]["device"] == "bottle-1"
    assert "5 h 00 min" in shown["silent"]["evidence"]
    assert shown["dropping"]["evidence"] == ("42 readings dropped by a full buffer; 1 batch "
                                             "lost at the broker")


def test_a_device_heard_but_never_read_falls_silent_once_it_was_first_heard_long_ago(
        tmp_path, monkeypatch):
    # Offline, last heard three days ago, no reading ever: "offline · never" on the fleet page
    # and nothing on the actions page, whose Silent is "no reading for longer than --silent".
    import time
    db = make_db(tmp_path / "f.sqlite")
    wall = time.time()
    db.begin()
    for device, first in (("new-1", wall - 3 * 86400), ("new-2", wall - 60)):
        db.execute("INSERT INTO devices (device, first_seen, last_seen, last_status) "
                   "VALUES (?, ?, ?, 'offline')", (device, first, first))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    silent = [a for a in actions.needed(database, rows, NOW) if a["kind"] == "silent"]
    assert [a["device"] for a in silent] == ["new-1"], silent   # not one heard a minute ago
    assert silent[0]["evidence"].startswith("no reading since it was first heard, 3 d")
    assert silent[0]["evidence"].endswith(" ago (offline)")


def test_batches_an_erased_flash_took_are_said_so_not_dropped_unsent(tmp_path):
    # The ingest settles what an erased log had published and never delivered as `erased`
    # (ingest/numbering.py); called "dropped unsent", it read as a full buffer.
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    for seq in (4, 5):
        db.execute("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                   "VALUES ('washer-1', 'batch', ?, 'erased', 1.0)", (seq,))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    (a,) = [a for a in actions.needed(database, rows, NOW) if a["kind"] == "dropping"]
    assert a["device"] == "washer-1" and a["figures"]["erased"] == 2
    assert a["evidence"] == ("2 batches published and never delivered went with an erased "
                             "flash (a new log since, numbered from 0)")


def test_a_device_page_says_its_buffer_was_made_afresh_and_what_went_with_the_old_one(
        tmp_path):
    # An erased board looked like one that had rebooted: its boot count back at 1, nothing said.
    import html
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    for store, number in ((0x10001, 0), (0x20002, 1), (0x30003, 2)):
        db.execute("INSERT INTO stores (device, kind, store, number, first_seen) "
                   "VALUES ('washer-1', 'batch', ?, ?, ?)", (store, number, NOW / 1000 - number))
    for seq in (4, 5):
        db.execute("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                   "VALUES ('washer-1', 'batch', ?, 'erased', 1.0)", (seq,))
    db.commit()
    washer, printer = pages(tmp_path / "f.sqlite", "/device/washer-1?span=all",
                            "/device/printer-1?span=all")
    said = " ".join(html.unescape(washer).split())
    assert ("Its buffer was made afresh 2 times (an erased flash or a new card), the last first "
            "heard from ") in said
    assert ("its boot count and batch numbers started again there, and 2 batches it had "
            "published and not delivered went with the old one.") in said
    assert "made afresh" not in printer


def test_batches_refused_as_copies_show_a_device_whose_store_was_wiped(tmp_path):
    # Refused as malformed, a wiped device's data was visible only in the ingest's log: the
    # console showed it healthy, with 0 dropped.
    import time
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    for seq in (6, 7, 8):
        db.execute("INSERT INTO malformed (received_at, topic, reason, bytes, payload_hex) "
                   "VALUES (?, 'tether/v1/printer-1/up/batch', ?, 100, '')",
                   (time.time(), "batch %d of printer-1 arrived again with other bytes (did "
                                 "the device lose its sequence numbers?)" % seq))
    db.execute("INSERT INTO malformed (received_at, topic, reason, bytes, payload_hex) "
               "VALUES (?, 'tether/v1/printer-1/up/batch', 'not CBOR', 3, '')", (time.time(),))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    (a,) = [a for a in actions.needed(database, rows, NOW) if a["kind"] == "dropping"]
    assert a["device"] == "printer-1" and a["figures"]["refused"] == 3
    assert a["evidence"].startswith("3 batches or events refused in the last 7 days: their "
                                    "numbers were taken by earlier ones")


def test_the_fleet_clock_is_the_wall_clock_for_a_live_fleet_and_device_time_for_a_simulated():
    wall = 1800000000000
    # live: the newest reading's time is when it arrived, however long ago that was
    assert reads.fleet_now(wall - 60000, (wall - 59000) / 1000, wall) == (wall, False)
    assert reads.fleet_now(wall - 9 * DAY, (wall - 9 * DAY) / 1000, wall) == (wall, False)
    # every device silent for 3 h, then an ingest restart: their retained statuses arrive now
    assert reads.fleet_now(wall - 3 * 3600000, wall / 1000, wall) == (wall, False)
    # simulated: device time runs far from the time its messages arrive
    assert reads.fleet_now(NOW, wall / 1000, wall) == (NOW, True)
    assert reads.fleet_now(None, None, wall) == (wall, False)


def test_the_fleet_table_filters_sorts_and_pages_with_unknown_values_last():
    rows = {"d%03d" % i: {"device": "d%03d" % i, "status": "online" if i % 2 else "offline",
                          "model": "Acme %d" % (i % 3), "version": "0.1.0",
                          "rssi": None if i % 5 == 0 else -40 - i} for i in range(250)}
    page, total, pages = reads.fleet_page(rows, sort="rssi", order="desc", per_page=100)
    assert (total, pages, len(page)) == (250, 3, 100)
    assert page[0]["device"] == "d001" and page[0]["rssi"] == -41
    last, _, _ = reads.fleet_page(rows, sort="rssi", order="desc", page=3, per_page=100)
    assert all(r["rssi"] is None for r in last[-50:])
    page, total, _ = reads.fleet_page(rows, q="ACME 2", status="offline", per_page=500)
    assert total == len(page) == sum(1 for i in range(250) if i % 3 == 2 and i % 2 == 0)


def test_a_months_readings_come_thinned_from_the_database_with_their_extremes(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    start = NOW - 30 * DAY
    rows = [(start + i * 10000, "power", 1.0) for i in range(30 * 8640)]  # every 10 s
    rows[54321] = (rows[54321][0], "power", 2500.0)
    rows[7] = (rows[7][0], "power", -5.0)
    db.begin()
    db.insert_readings("printer-1", 1, rows)
    db.execute("INSERT INTO batches (device, seq, boot, dropped, synced, encoding, deflated, "
               "bytes, crc32, received_at, readings, t_first, t_last) "
               "VALUES ('printer-1', 1, 1, 0, 1, 'senml', 0, 1, 0, 1.0, ?, ?, ?)",
               (len(rows), start, rows[-1][0]))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    points = reads.series(database, "printer-1", "power", None, rows[-1][0])
    assert len(points) <= reads.MAX_POINTS
    values = [v for _, v in points]
    assert max(values) == 2500.0 and min(values) == -5.0
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    assert points[0][0] == start and points[-1][0] == rows[-1][0]
    # a count that only falls (pills taken) is drawn falling: no stretch invents a rise
    db.begin()
    db.insert_readings("bottle-1", 1, [(start + i * 60000, "pills", float(60 - i // 700))
                                       for i in range(30 * 1440)])
    db.execute("INSERT INTO batches (device, seq, boot, dropped, synced, encoding, deflated, "
               "bytes, crc32, received_at, readings, t_first, t_last) "
               "VALUES ('bottle-1', 1, 1, 0, 1, 'senml', 0, 1, 0, 1.0, 1, ?, ?)", (start, NOW))
    db.commit()
    pills = [v for _, v in reads.series(database, "bottle-1", "pills", None, NOW)]
    assert pills == sorted(pills, reverse=True) and pills[0] == 60.0 and len(pills) <= 1200
    # a short span: every reading as it is
    assert reads.series(database, "printer-1", "power", NOW - DAY, NOW - DAY + 30000) == [
        [NOW - DAY + i * 10000, 1.0] for i in range(4)]



def test_the_whole_history_starts_at_the_first_synced_batch_not_at_1970(tmp_path):
    # A device that ran an hour before its clock synced: "all" spanned 56 years, every synced
    # reading in the chart's last pixel.
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    db.insert_readings("printer-1", 1, [(3600000 + i * 60000, "power", 1.0) for i in range(60)])
    db.insert_readings("printer-1", 2, [(NOW - DAY + i * 60000, "power", 2.0)
                                        for i in range(1440)])
    for seq, synced, t0, t1 in ((1, 0, 3600000, 3600000 + 59 * 60000),
                                (2, 1, NOW - DAY, NOW - 60000)):
        db.execute("INSERT INTO batches (device, seq, boot, dropped, synced, encoding, "
                   "deflated, bytes, crc32, received_at, readings, t_first, t_last) "
                   "VALUES ('printer-1', ?, 1, 0, ?, 'senml', 0, 1, 0, 1.0, 1, ?, ?)",
                   (seq, synced, t0, t1))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    points = reads.series(database, "printer-1", "power", None, NOW - 60000)
    assert points[0] == [NOW - DAY, 2.0] and len(points) > 100
    assert {v for _, v in points} == {2.0}

def test_an_event_and_a_report_from_before_the_clocks_sync_are_listed_when_they_arrived(
        tmp_path):
    # A board's alarm, re-sent at each boot before NTP, was in no span and listed in 1970
    db = make_db(tmp_path / "f.sqlite", ("printer-1",))
    db.begin()
    arrived = NOW / 1000 - 3600
    for seq, t_ms, synced, event in ((1, 36302952, 0, "overvoltage"),
                                     (2, NOW - 2 * DAY, 1, "door_open")):
        db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, state, "
                   "value, detail, received_at) VALUES ('printer-1', ?, 1, ?, ?, ?, 'v', "
                   "'raised', 230, 'alarm', ?)", (seq, t_ms, synced, event, arrived))
    db.execute("INSERT INTO health (device, received_at, t_ms, health) VALUES "
               "('printer-1', ?, 36302952, '{}')", (arrived,))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    d = reads.device_detail(database, "printer-1", "1d", charts=False)
    assert [(e["event"], e["t_ms"], e["received"]) for e in d["events"]] == [
        ("overvoltage", NOW - 3600000, True)]       # the other one is two days old
    assert d["events_in_span"] == 1
    assert [(h["t_ms"], h["received"]) for h in d["health"]] == [(NOW - 3600000, True)]
    everything = reads.device_detail(database, "printer-1", "all", charts=False)["events"]
    assert [e["event"] for e in everything] == ["overvoltage", "door_open"]  # newest first
    body, = pages(tmp_path / "f.sqlite", "/device/printer-1")
    assert "1970" not in body and body.count("(received)") == 2


def test_a_device_whose_newest_reading_is_dated_at_the_start_of_time_has_a_page(tmp_path):
    db = make_db(tmp_path / "f.sqlite", ("edge-min",))
    db.begin()
    db.execute("UPDATE devices SET last_t_ms = ?", (-(1 << 63) + 807,))
    db.commit()
    d = reads.device_detail(reads.Database(str(tmp_path / "f.sqlite")), "edge-min", "1d")
    assert d["start"] == -(1 << 63) and d["events"] == []


def test_a_sensor_failing_now_is_an_action_and_one_that_recovered_or_rebooted_well_is_not(
        tmp_path):
    # A fridge's dead probe read as "no alarm", and the device was not silent: its power meter
    # reported on. Nothing on the page said so.
    db = make_db(tmp_path / "f.sqlite", ("fridge-1", "fridge-2", "fridge-3"))
    db.begin()
    db.execute("UPDATE devices SET last_boot = 2")
    db.execute("INSERT INTO devices (device, first_seen, last_seen, last_t_ms, last_status, "
               "dropped_reported, last_boot) VALUES ('fridge-4', 1.0, 2.0, ?, 'online', 0, 2)",
               (NOW,))
    for device, seq, boot, state in (("fridge-1", 1, 2, "raised"),
                                     ("fridge-2", 1, 1, "raised"),     # before its reboot
                                     ("fridge-3", 1, 2, "raised"), ("fridge-3", 2, 2, "cleared"),
                                     # rebooted, and its only sensor dead: no batch of boot 3
                                     ("fridge-4", 1, 3, "raised")):
        db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, state, "
                   "value, detail, received_at) VALUES (?, ?, ?, ?, 1, 'sensor_error', "
                   "'cabinet', ?, NULL, 'SHT3x at i2c1:0x44 did not acknowledge', 1.0)",
                   (device, seq, boot, NOW - reads.HOUR_MS + seq, state))
    db.commit()
    got, database = needed(tmp_path / "f.sqlite")
    assert got == [("failing", "fridge-1", "cabinet"), ("failing", "fridge-4", "cabinet")]
    rows, _, _ = reads.FleetCache(database).refresh()
    a = actions.needed(database, rows, NOW)[0]
    assert a["title"] == "Sensor failing" and a["figures"]["seq"] == 1
    assert a["evidence"].endswith(": SHT3x at i2c1:0x44 did not acknowledge"), a["evidence"]
    body, = pages(tmp_path / "f.sqlite", "/")
    assert "Sensor failing" in body and "SHT3x at i2c1:0x44 did not acknowledge" in body


# ---- the app over HTTP ----------------------------------------------------------------------

@pytest.fixture
def fleet_db(tmp_path):
    path = tmp_path / "fleet.sqlite"
    db = make_db(path)
    insight(db, "printer-1", 1, NOW - DAY, "reorder", "ink_c", 6.1, days=6.1, level=9.0,
            lead_days=10, rate_per_day=1.4)
    db.close()
    return str(path)


@pytest.fixture
def console(fleet_db):
    server = Server(fleet_db, host="127.0.0.1", port=0).start()
    yield server
    server.stop()


def request(server, method, path, body=None, headers=None):
    port = server.sock.getsockname()[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    out = r.status, r.read().decode(), dict(r.getheaders())
    conn.close()
    return out


@pytest.mark.parametrize("path, message", [
    ("/fleet?sort=bogus", "sort: one of device, status"),
    ("/fleet?page=0", "page: a whole number from 1 to 1000000, not &#39;0&#39;"),
    ("/fleet?page=99999999999", "page: a whole number"),
    ("/fleet?order=sideways", "order: one of asc, desc"),
    ("/fleet?q=" + "x" * 101, "q: at most 100 characters"),
    ("/fleet?colour=red", "unknown query parameter &#39;colour&#39;"),
    ("/?fragment=2", "fragment: one of 1"),
    ("/?kind=coffee", "kind: one of &#34;&#34;, alarm, failing, empty"),
    ("/?page=x", "page: a whole number"),
    ("/device/printer-1?span=2y", "span: one of 1d, 7d, 30d, all"),
    ("/device/-rm%20-rf", "device: an id of 1 to 64 letters"),
    ("/device/" + "a" * 65, "device: an id of 1 to 64 letters"),
])
def test_bad_query_parameters_get_a_400_saying_what_was_expected(console, path, message):
    status, body, _ = request(console, "GET", path)
    assert status == 400
    assert message in body
    assert "Traceback" not in body


def test_an_unknown_device_or_page_is_a_404_page(console):
    status, body, _ = request(console, "GET", "/device/nobody")
    assert status == 404 and "no device nobody in this database" in body
    status, body, _ = request(console, "GET", "/nowhere")
    assert status == 404 and "no page /nowhere" in body


def test_pages_show_the_database_on_loopback_without_the_token(console):
    status, body, _ = request(console, "GET", "/")
    assert status == 200
    assert 'data-device="printer-1" data-kind="reorder" data-sensor="ink_c"' in body
    status, body, _ = request(console, "GET", "/fleet")
    assert status == 200
    assert all('<tr data-device="%s">' % d in body for d in ("printer-1", "bottle-1", "washer-1"))


def command(server, doc, token=None, headers=None):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    status, body, _ = request(server, "POST", "/api/command", json.dumps(doc), h)
    return status, json.loads(body)


def test_commands_need_the_token_even_on_loopback(console):
    status, body = command(console, {"command": "ping", "device": "printer-1"})
    assert status == 401 and "commands need the console's token" in body["error"]
    status, body = command(console, {"command": "ping", "device": "printer-1"}, "wrong-token")
    assert status == 401


def test_a_command_from_another_site_is_refused(console):
    status, body = command(console, {"command": "ping", "device": "printer-1"}, console.token,
                           {"Origin": "http://evil.example"})
    assert status == 403 and "the console's own page" in body["error"]


@pytest.mark.parametrize("doc, message", [
    ({"command": "format"}, "command: one of ping, diag, set_interval, ack, snooze, settings"),
    ({"command": "ping", "device": "a b"}, "device: an id"),
    ({"command": "ping", "device": "printer-1", "extra": 1}, "ping takes no extra"),
    ({"command": "set_interval", "device": "printer-1", "sensor": "ink_c", "interval_ms": 5},
     "interval_ms: an integer from 100 to 86400000"),
    ({"command": "set_interval", "device": "printer-1", "sensor": "ink c", "interval_ms": 1000},
     "sensor: a sensor name"),
    ({"command": "snooze", "device": "printer-1", "kind": "reorder", "sensor": "ink_c",
      "for_ms": 91 * DAY}, "for_ms: an integer from 60000"),
    ({"command": "ack", "device": "printer-1", "kind": "coffee", "sensor": ""}, "kind: one of"),
    ([1, 2], "a command is a JSON object"),
])
def test_bad_commands_get_a_400_saying_what_was_expected(console, doc, message):
    status, body = command(console, doc, console.token)
    assert status == 400 and body["ok"] is False   # one key to check, as for any answer
    assert message in body["error"]


def test_a_command_whose_media_type_only_mentions_json_is_refused(console):
    # `text/plain; x=application/json` is a type a page on another site may send without a
    # preflight: it passed a substring test.
    for kind in ("text/plain; x=application/json", "application/jsonx"):
        status, body = command(console, {"command": "ping", "device": "printer-1"},
                               console.token, headers={"Content-Type": kind})
        assert (status, body) == (400, {"ok": False, "error": "a command is a JSON object "
                                        "(Content-Type: application/json)"}), kind
    status, _ = command(console, {"command": "ping", "device": "printer-1"}, console.token,
                        headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 200


def test_a_command_that_is_not_json_is_refused(console):
    status, body, _ = request(console, "POST", "/api/command", "{not json",
                              {"Content-Type": "application/json",
                               "Authorization": "Bearer " + console.token})
    assert status == 400 and json.loads(body)["error"].startswith("not JSON")


def test_a_command_nested_too_deep_is_a_400_not_a_500(console):
    status, body, _ = request(console, "POST", "/api/command", "[" * 2040 + "]" * 2040,
                              {"Content-Type": "application/json",
                               "Authorization": "Bearer " + console.token})
    assert status == 400 and "nested too deep" in json.loads(body)["error"]


def test_the_printed_link_carries_a_token_with_plus_or_hash_quoted(fleet_db):
    # Unquoted, ?token=pass+word#1 opened as "pass word" and gave a 401.
    server = Server(fleet_db, host="0.0.0.0", port=0, token="pass+word#1").start()
    try:
        assert server.url.endswith("/?token=pass%2Bword%231")
        status, _, _ = request(server, "GET", "/?token=pass%2Bword%231")  # the link's path
        assert status == 303, status  # taken: on to the page, with the token in a cookie
    finally:
        server.stop()


def test_without_a_broker_a_command_says_commands_are_off(console):
    status, body = command(console, {"command": "ping", "device": "printer-1"}, console.token)
    assert status == 200 and body == {"ok": False, "error": "this console has no broker: start "
                                      "it with --broker URL to command devices"}
    # and the actions page says so before a button is clicked, as the device page does
    status, page, _ = request(console, "GET", "/")
    assert status == 200 and "This console has no broker (--broker): an acknowledgement or a " \
        "snooze reaches no device." in page


def silent_bottle(tmp_path):
    """(path, db) of a fleet whose bottle-1 was last heard 9 hours ago: a Silent row."""
    path = tmp_path / "f.sqlite"
    db = make_db(path)
    db.begin()
    db.execute("UPDATE devices SET last_t_ms = ? WHERE device = 'bottle-1'", (NOW - 9 * 3600000,))
    db.commit()
    return path, db


def test_acknowledging_a_silent_device_stays_in_the_console_and_hides_it(tmp_path):
    path, db = silent_bottle(tmp_path)
    server = Server(str(path), port=0).start()
    try:
        doc = {"command": "ack", "device": "bottle-1", "kind": "silent", "sensor": ""}
        status, body = command(server, doc, server.token)
        assert status == 200 and body["ok"] and body["reply"] is None
        assert needed(path)[0] == []
        status, body = command(server, doc, server.token)
        assert body == {"ok": False, "error": "no 'silent' action for bottle-1 now (the actions "
                                              "page lists none)"}
    finally:
        server.stop()
    assert db.execute("SELECT device, action, done FROM acks").fetchall() == [
        ("bottle-1", "silent", "ack")]


def test_an_answer_to_a_row_that_changed_since_the_page_showed_it_is_refused(tmp_path):
    # A raise (a newer insight, a device heard and silent again, more drops) that came between
    # the page's drawing and the click was acknowledged unseen: the answer names what it saw.
    path, db = silent_bottle(tmp_path)
    server = Server(str(path), port=0).start()
    try:
        status, body, _ = request(server, "GET", "/")
        assert 'data-device="bottle-1" data-kind="silent" data-sensor="" data-seen="%d"' % (
            NOW - 9 * 3600000) in body
        doc = {"command": "ack", "device": "bottle-1", "kind": "silent", "sensor": "",
               "seen": NOW - 10 * 3600000}     # the row as it stood an hour before
        status, body = command(server, doc, server.token)
        assert status == 200 and body["ok"] is False and body["changed"] is True
        assert body["error"].startswith("the Silent row of bottle-1 changed since the page "
                                        "showed it (now: nothing heard for 9 h"), body
        assert needed(path)[0] == [("silent", "bottle-1", "")]    # not recorded
        for wrong in (True, "1", 1.5):
            status, body = command(server, dict(doc, seen=wrong), server.token)
            assert status == 400 and "seen:" in body["error"]
        doc["seen"] = NOW - 9 * 3600000
        status, body = command(server, dict(doc, command="snooze", for_ms=86400000),
                               server.token)
        assert body["ok"] and needed(path)[0] == []
    finally:
        server.stop()


def test_an_acknowledgement_the_database_cannot_record_is_said_and_the_row_stays(
        tmp_path, monkeypatch):
    # It failed with "database is locked" after one try, in words that suggested a device had
    # been told (a silent device's row sends nothing).
    from console import app
    path, db = silent_bottle(tmp_path)
    monkeypatch.setattr(reads, "BUSY_S", 0.2)
    monkeypatch.setattr(app, "RECORD_PAUSE_S", 0)
    server = Server(str(path), port=0).start()
    lock = sqlite3.connect(str(path), isolation_level=None)
    try:
        doc = {"command": "ack", "device": "bottle-1", "kind": "silent", "sensor": ""}
        lock.execute("BEGIN EXCLUSIVE")
        status, body = command(server, doc, server.token)
        assert status == 200 and body == {"ok": False, "error": "the console could not record "
                                          "it (database is locked): the row stays up; answer "
                                          "it again later"}, body
        lock.execute("ROLLBACK")
        assert needed(path)[0] == [("silent", "bottle-1", "")]
        status, body = command(server, doc, server.token)
        assert body["ok"] and needed(path)[0] == []
    finally:
        lock.close()
        server.stop()


def test_on_another_address_every_page_needs_the_token(fleet_db):
    server = Server(fleet_db, host="0.0.0.0", port=0, token="s3cret-token").start()
    try:
        status, body, _ = request(server, "GET", "/fleet")
        assert status == 401 and "needs its token" in body
        status, body, _ = request(server, "GET", "/fleet?token=guess")
        assert status == 401 and "wrong token" in body
        status, _, headers = request(server, "GET", "/fleet?token=s3cret-token&sort=model")
        assert status == 303 and headers["location"] == "/fleet?sort=model"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"]
        status, body, _ = request(server, "GET", "/fleet?sort=model", headers={"Cookie": cookie})
        assert status == 200 and "printer-1" in body
        status, body, _ = request(server, "GET", "/api/stream",
                                  headers={"Authorization": "Bearer nope"})
        assert status == 401
        status, body, _ = request(server, "GET", "/healthz")
        assert (status, body) == (200, "ok")
    finally:
        server.stop()


def test_behind_a_proxy_on_loopback_pages_need_the_token_and_commands_pass_the_origin_check(
        fleet_db):
    server = Server(fleet_db, host="127.0.0.1", port=0, token="s3cret-token",
                    behind_proxy=True).start()
    try:
        proxied = {"Host": "console.example.com", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": "203.0.113.9"}
        status, body, _ = request(server, "GET", "/fleet", headers=proxied)
        assert status == 401 and "needs its token" in body   # not open to whoever reaches it
        status, body, _ = request(server, "GET", "/fleet",
                                  headers=dict(proxied, Authorization="Bearer s3cret-token"))
        assert status == 200 and "printer-1" in body
        # The browser's Origin is the proxy's https:// site: it matches once the proxy's
        # X-Forwarded-Proto is taken, and does not without it.
        page = dict(proxied, Origin="https://console.example.com")
        status, body = command(server, {"command": "ping", "device": "printer-1"},
                               "s3cret-token", page)
        assert status == 200 and "this console has no broker" in body["error"]
        del page["X-Forwarded-Proto"]
        status, body = command(server, {"command": "ping", "device": "printer-1"},
                               "s3cret-token", page)
        assert status == 403
    finally:
        server.stop()


def test_a_database_that_cannot_be_read_is_a_503_that_says_why():
    server = Server("postgresql://tether@127.0.0.1:1/fleet", port=0).start()
    try:
        status, body, _ = request(server, "GET", "/fleet")
        assert status == 503
        assert "the database cannot be read:" in body and "Traceback" not in body
    finally:
        server.stop()


def test_a_long_list_of_actions_comes_a_hundred_rows_a_page_and_by_kind(tmp_path):
    path = tmp_path / "f.sqlite"
    make_db(path, devices=["bottle-%03d" % i for i in range(150)]).close()
    db = open_store(str(path))
    db.begin()
    db.execute("UPDATE devices SET last_t_ms = ?", (NOW - 9 * 3600000,))
    db.execute("UPDATE devices SET last_t_ms = ?, dropped_reported = 3 WHERE device = "
               "'bottle-000'", (NOW,))
    db.commit()
    first, second, dropping = pages(path, "/", "/?page=2", "/?kind=dropping")
    assert "<strong>150</strong> things need someone, on 150 of 150 devices" in first
    row = '" data-kind="%s" data-sensor='
    assert first.count(row % "silent") == 100 and "page 1 of 2" in first
    assert second.count(row % "silent") == 49 and second.count(row % "dropping") == 1
    assert dropping.count("<tr data-device=") == 1


def test_pages_load_every_asset_from_the_console_itself(console):
    import gzip
    import re

    from console.app import chart_js
    for path in ("/", "/fleet", "/device/printer-1?span=all"):
        _, body, _ = request(console, "GET", path)
        assert not re.search(r'(src|href)="(https?:)?//', body), path
    status, _, headers = request(console, "GET", "/static/chart.js")
    assert status == 200 and "content-encoding" not in headers
    port = console.sock.getsockname()[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/static/chart.js", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    with open(chart_js(), "rb") as f:
        assert gzip.decompress(r.read()) == f.read()
    assert r.getheader("content-encoding") == "gzip"
    conn.close()


def test_the_console_refuses_a_database_that_is_not_an_ingests(tmp_path, postgres_url):
    from console.server import prepare
    other = tmp_path / "other.sqlite"
    import sqlite3
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(RuntimeError, match="holds no Tether ingest database"):
        prepare(str(other))
    with pytest.raises(RuntimeError, match="holds no Tether ingest database"):
        prepare(postgres_url)  # an empty database is left empty
    import psycopg
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0] == 0


def test_an_ingest_database_locked_by_another_session_is_said_locked_not_foreign(
        postgres_url, monkeypatch):
    # With a lock timeout, a `LOCK TABLE devices` left open in psql made `tether console` say
    # the database held no ingest's
    import psycopg
    from console import server
    make_db(postgres_url).close()
    opened = server.open_store
    monkeypatch.setattr(server, "open_store",
                        lambda url, timeout=30.0, create=True: opened(url, 1.0, create))
    with psycopg.connect(postgres_url) as other:
        other.execute("SET idle_in_transaction_session_timeout = '60s'")
        other.execute("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(RuntimeError) as exc:
            server.prepare(postgres_url)
    assert "cannot be read: " in str(exc.value) and "lock" in str(exc.value)
    assert "holds no Tether ingest database" not in str(exc.value)


def test_many_pages_at_once_hold_a_few_postgresql_connections_not_one_per_request(postgres_url):
    import threading
    import psycopg
    make_db(postgres_url).close()
    server = Server(postgres_url, host="127.0.0.1", port=0).start()
    paths = ["/", "/fleet", "/device/printer-1", "/device/washer-1?fragment=lists"] * 10
    start = threading.Barrier(len(paths))
    codes = []

    def get(path):
        start.wait(10)
        codes.append(request(server, "GET", path)[0])
    try:
        threads = [threading.Thread(target=get, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with psycopg.connect(postgres_url) as conn:  # client backends: not TimescaleDB's workers
            held = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND pid <> pg_backend_pid() AND "
                                "backend_type = 'client backend'").fetchone()[0]
    finally:
        server.stop()
    assert codes == [200] * len(paths)
    assert 1 <= held <= reads.READ_THREADS + reads.SERIES_THREADS, held


def test_a_read_on_a_connection_the_server_ended_is_made_again_on_a_new_one(postgres_url):
    # Each reading thread's first page after a server restart (or a terminated backend) was a
    # 503 "terminating connection due to administrator command".
    import psycopg
    make_db(postgres_url).close()
    db = reads.Database(postgres_url)
    assert db.rows("SELECT count(*) FROM devices") == [(3,)]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = 'tether-read'").fetchone()[0]
    assert ended == 1
    assert db.rows("SELECT count(*) FROM devices") == [(3,)]


def test_an_older_database_gains_the_acknowledgements_table(tmp_path):
    from console.server import prepare
    from ingest.store import sqlite as sqlite_layout
    path = tmp_path / "old.sqlite"
    make_db(path).close()
    import sqlite3
    conn = sqlite3.connect(str(path))
    conn.executescript("DROP TABLE acks; DROP INDEX replies_by_device; "
                       "DROP TABLE channel_batches; DROP TABLE stores; "
                       "DROP INDEX events_alarms; DROP INDEX events_sensor_errors; "
                       "PRAGMA user_version = 4;")
    conn.close()
    prepare(str(path))
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_layout.DB_VERSION
    assert conn.execute("SELECT count(*) FROM acks").fetchone()[0] == 0
    conn.close()


def test_a_page_of_another_site_resolving_to_loopback_is_refused(console):
    status, body, _ = request(console, "GET", "/fleet", headers={"Host": "attacker.example"})
    assert status == 403 and "answers to 127.0.0.1 and localhost only" in body
    status, body = command(console, {"command": "ping", "device": "printer-1"}, console.token,
                           {"Host": "attacker.example"})
    assert status == 403


def test_opening_the_printed_url_keeps_the_pages_query_as_it_was(fleet_db):
    server = Server(fleet_db, host="0.0.0.0", port=0, token="s3cret-token").start()
    port = server.sock.getsockname()[1]
    try:
        status, _, headers = request(server, "GET", "/fleet?q=a%26status%3Doffline"
                                                    "&token=s3cret-token")
    finally:
        server.stop()
    assert status == 303 and headers["location"] == "/fleet?q=a%26status%3Doffline"
    # a cookie per port: browsers share cookies between the ports of a host
    assert headers["set-cookie"].startswith("tether_console_%d=" % port)


def test_a_page_number_in_other_digits_is_refused_not_crashed_on(console):
    status, body, _ = request(console, "GET", "/fleet?page=%C2%B2")
    assert status == 400 and "page: a whole number" in body


def test_a_device_that_sent_nonsense_in_its_insight_fields_still_has_a_page(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "printer-1", 1, NOW - DAY, "reorder", "ink_c", 6.1, days="5" * 40, level=9.0,
            rate_per_day=True, lead_days=None)
    insight(db, "printer-1", 2, NOW - 1000, "forecast", "ink_c", 6.1, days=1e300, level="x",
            rate_per_day=-1.0)
    server = Server(str(tmp_path / "f.sqlite"), port=0).start()
    try:
        status, body, _ = request(server, "GET", "/device/printer-1?span=all")
        status_actions, _, _ = request(server, "GET", "/")
    finally:
        server.stop()
    assert (status, status_actions) == (200, 200)


def test_a_status_change_alone_reaches_the_fleet_table(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    cache = reads.FleetCache(reads.Database(str(tmp_path / "f.sqlite")))
    assert cache.refresh()[0]["bottle-1"]["status"] == "online"
    db.begin()  # what the ingest does with a last will: status and its time, nothing else
    db.execute("UPDATE devices SET last_status = 'offline', status_at = 9.0 "
               "WHERE device = 'bottle-1'")
    db.commit()
    assert cache.refresh()[0]["bottle-1"]["status"] == "offline"


def test_a_live_fleet_that_goes_quiet_falls_silent_as_the_wall_clock_runs_on(tmp_path,
                                                                                monkeypatch):
    wall = [NOW / 1000 + 30]
    monkeypatch.setattr(reads.time, "time", lambda: wall[0])
    db = make_db(tmp_path / "f.sqlite", devices=("printer-1",))
    db.begin()
    db.execute("UPDATE devices SET last_seen = ?", (NOW / 1000 + 1,))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    cache = reads.FleetCache(database)
    rows, now, simulated = cache.refresh()
    assert (now, simulated) == (NOW + 30000, False)
    assert actions.needed(database, rows, now) == []
    wall[0] += 3 * 3600  # nothing arrives for three hours
    rows, now, _ = cache.refresh()
    assert now == NOW + 30000 + 3 * reads.HOUR_MS
    assert [a["kind"] for a in actions.needed(database, rows, now)] == ["silent"]


def test_one_clock_far_ahead_does_not_make_the_rest_of_the_fleet_silent(tmp_path, monkeypatch):
    monkeypatch.setattr(reads.time, "time", lambda: NOW / 1000)
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    db.execute("UPDATE devices SET last_seen = ? / 1000.0 + 1", (NOW,))
    db.execute("UPDATE devices SET last_t_ms = ? WHERE device = 'washer-1'", (NOW + 400 * DAY,))
    db.commit()
    _, now, simulated = reads.FleetCache(reads.Database(str(tmp_path / "f.sqlite"))).refresh()
    assert (now, simulated) == (NOW, False)


def test_a_device_that_never_synced_does_not_make_a_fleet_silent_for_a_month_simulated(
        tmp_path, monkeypatch):
    # Its message of now beside a silent device's reading of 38 days ago: "as of 38 days ago
    # (simulated time)", and nothing silent, for as long as that device kept sending
    monkeypatch.setattr(reads.time, "time", lambda: NOW / 1000)
    db = make_db(tmp_path / "f.sqlite", ("site-1",))
    db.begin()
    db.execute("UPDATE devices SET last_t_ms = ?, last_seen = ?", (NOW - 38 * DAY,
                                                                   NOW / 1000 - 38 * 86400))
    db.execute("INSERT INTO devices (device, first_seen, last_seen, last_t_ms, last_status, "
               "dropped_reported) VALUES ('esp-2', 1.0, ?, 12000, 'online', 0)", (NOW / 1000,))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, now, simulated = reads.FleetCache(database).refresh()
    assert (now, simulated) == (NOW, False)
    assert [(a["kind"], a["device"]) for a in actions.needed(database, rows, now)] == [
        ("silent", "site-1")]


def test_a_device_whose_clock_runs_ahead_falls_silent_by_when_it_was_last_heard(
        tmp_path, monkeypatch):
    # Its reading dated a year ahead was "just now" and not silent until the year had passed
    from console import app as app_mod
    monkeypatch.setattr(reads.time, "time", lambda: NOW / 1000)
    monkeypatch.setattr(actions.time, "time", lambda: NOW / 1000)
    monkeypatch.setattr(app_mod.time, "time", lambda: NOW / 1000)
    db = make_db(tmp_path / "f.sqlite", ("printer-1", "fast-1"))
    db.begin()
    db.execute("UPDATE devices SET last_seen = ?", (NOW / 1000 - 60,))
    db.execute("UPDATE devices SET last_t_ms = ?, last_seen = ? WHERE device = 'fast-1'",
               (NOW + 365 * DAY, NOW / 1000 - 3 * 3600))
    db.commit()
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, now, simulated = reads.FleetCache(database).refresh()
    assert (now, simulated) == (NOW, False)
    (a,) = actions.needed(database, rows, now)
    assert (a["kind"], a["device"], a["figures"]["silent_ms"]) == ("silent", "fast-1",
                                                                   3 * reads.HOUR_MS)
    assert app_mod._heard(rows["fast-1"], now) == "3 h 00 min ago (its clock is 365 d 0 h ahead)"
    assert app_mod._heard(rows["printer-1"], now) == "just now"


@pytest.mark.parametrize("doc", [
    {"command": ["ping"], "device": "printer-1"},
    {"command": {"a": 1}, "device": "printer-1"},
    {"command": "ack", "device": "printer-1", "kind": ["reorder"], "sensor": ""},
    {"command": "ack", "device": "printer-1", "kind": {"x": 1}, "sensor": ""},
])
def test_a_command_field_of_the_wrong_type_is_a_400_not_a_500(console, doc):
    status, body = command(console, doc, console.token)
    assert status == 400 and ("command: one of" in body["error"] or "kind: one of" in
                              body["error"]), body


def test_a_command_for_a_device_the_database_does_not_know_is_a_404_and_not_sent(console):
    status, body = command(console, {"command": "ping", "device": "nosuch-dev"}, console.token)
    assert status == 404 and body == {"ok": False,
                                      "error": "no device nosuch-dev in this database"}


def test_a_command_body_past_4_kb_is_a_400_and_the_bearer_scheme_takes_any_case(console):
    big = b'{"command": "ping", "pad": "' + b"x" * (1 << 20) + b'"}'
    status, body, _ = request(console, "POST", "/api/command", big,
                              {"Content-Type": "application/json",
                               "Authorization": "bearer " + console.token})  # any case
    assert status == 400 and json.loads(body)["error"] == "a command is at most 4096 bytes"


def test_the_json_data_of_a_device_answers_its_errors_in_json(console):
    status, body, headers = request(console, "GET", "/device/nobody/data")
    assert status == 404 and json.loads(body) == {
        "ok": False, "error": "no device nobody in this database"}
    status, body, headers = request(console, "GET", "/device/printer-1/data?span=2y")
    assert status == 400 and json.loads(body)["error"].startswith("span: one of")


def test_the_cycle_chart_draws_what_the_device_charts_and_where_its_sum_grows():
    # A fridge charts the median of every 3 cycles' capacity, which falls as it wears: the
    # line is below the baseline, at its slack (the chart once drew baseline + 6 spreads,
    # above it, whatever the profile's drift settings and per cycle).
    from console.reads import _cycles
    feats = [5.0, 5.2, 4.9, 4.8, 4.6, 4.7, 4.5, 4.4, 4.6]
    insights = [(1000 * i, "cycle", "power", 1.0, {"start": 1000 * i, "watch": "capacity",
                                                   "feature": v})
                for i, v in enumerate(feats)]
    insights.append((9000, "maintenance_due", "power", -8.0, {
        "watch": "capacity", "baseline": 5.0, "spread": 0.2, "recent": 4.6, "drift_pct": -8.0,
        "cusum": 6.1, "cycles": 3, "slack": 1, "limit": 6, "batch": 3}))
    chart = _cycles(insights)
    assert chart["points"] == [[2000, 5.0], [5000, 4.7], [8000, 4.5]]
    assert chart["unit"] == "compressor's cycling, median of each 3 cycles"
    lines = {line["label"]: line["points"] for line in chart["lines"]}
    assert lines["learnt baseline"] == [[2000, 5.0], [8000, 5.0]]
    assert lines["past this the chart's sum grows (baseline - 1 spread)"] == [
        [2000, 4.8], [8000, 4.8]]
    from console.actions import _insight
    text = _insight("maintenance_due", "f", "power", 9000, -8.0, insights[-1][4])["evidence"]
    assert text.endswith("CUSUM 6.1 (limit 6) after 3 points of 3 cycles")


def test_a_device_field_of_another_type_is_shown_not_a_500():
    # drift_pct "n/a" from one fridge took the actions page down for the whole fleet.
    from console.actions import _insight
    text = _insight("maintenance_due", "f", "power", 9000, None, {
        "watch": "capacity", "drift_pct": "n/a", "baseline": 5.0, "cycles": 3})["evidence"]
    assert text.startswith("compressor's cycling n/a % from this unit's normal 5")


def test_a_refused_broker_login_is_told_as_the_broker_said_it():
    # "Unspecified error" from the disconnect that follows replaced the CONNACK's reason.
    from paho.mqtt.reasoncodes import ReasonCode
    from paho.mqtt.packettypes import PacketTypes
    from console.commands import Commander
    c = Commander("mqtt://127.0.0.1:1")
    c._on_connect(None, None, None, ReasonCode(PacketTypes.CONNACK, identifier=135), None)
    c._on_disconnect(None, None, None, ReasonCode(PacketTypes.DISCONNECT, identifier=128), None)
    assert (c.connected, c.last_error) == (False, "Not authorized")


def test_a_command_waiting_for_its_subscription_gets_the_reconnects_suback():
    # The first connection's SUBACK never came: the command's Event stayed in the table for
    # good, and the command timed out though the new connection subscribed
    import threading
    from paho.mqtt.reasoncodes import ReasonCode
    from paho.mqtt.packettypes import PacketTypes
    from console.commands import Commander

    class Client:
        mids = iter(range(2, 100))

        def subscribe(self, topic, qos=1):
            return 0, next(self.mids)
    c = Commander("mqtt://127.0.0.1:1")
    waiting = [1, threading.Event()]
    c._subscribed["printer-1"] = waiting
    c._acks[1] = waiting[1]                 # the first connection's SUBSCRIBE
    ok = ReasonCode(PacketTypes.CONNACK, identifier=0)
    c._on_connect(Client(), None, None, ok, None)
    assert c._acks == {2: waiting[1]}       # the old mid forgotten, the new one waited for
    c._on_subscribe(None, None, 2, [ReasonCode(PacketTypes.SUBACK, identifier=1)], None)
    assert waiting[1].is_set() and c._acks == {}


def test_the_console_takes_its_broker_password_from_the_environment(monkeypatch):
    # In --broker's URL a password is in `ps` for every user of the machine.
    from firmware.console_cmd import with_login
    from console.commands import Commander
    url = with_login("mqtts://broker.example:8883", "ops", "p@ss:w/rd")
    b = Commander(url).broker
    assert (b.host, b.port, b.tls, b.username, b.password) == (
        "broker.example", 8883, True, "ops", "p@ss:w/rd")
    assert Commander(with_login("mqtt://ops@[::1]", None, "x")).broker[:5] == (
        "::1", 1883, False, "ops", "x")
    with pytest.raises(ValueError, match="needs a user name"):
        with_login("mqtt://h", None, "x")


def test_a_token_on_the_command_line_is_warned_about_and_the_variable_is_taken(
        tmp_path, monkeypatch):
    # --token is in `ps` for every user of the machine, who could then command the fleet.
    import argparse
    import io
    from firmware import console_cmd
    p = argparse.ArgumentParser()
    console_cmd.add_arguments(p)
    missing = str(tmp_path / "none.sqlite")
    for argv, warned in ((["--token", "s3cret-token"], True), ([], False)):
        err = io.StringIO()
        assert console_cmd.main(p.parse_args(["--db", missing] + argv), io.StringIO(), err) == 2
        assert ("--token is in `ps` for every user" in err.getvalue()) == warned, err.getvalue()
    monkeypatch.setenv("TETHER_CONSOLE_TOKEN", "from-the-env-1")
    make_db(tmp_path / "f.sqlite").close()
    server = console_cmd.open_console(str(tmp_path / "f.sqlite"), "127.0.0.1", 0)
    try:
        assert server.token == "from-the-env-1"
    finally:
        server.close()


def test_a_database_that_cannot_be_reached_exits_1_as_tether_ingest_does():
    # It exited 2, a usage error's status, where the ingest exits 1 for the same server
    import argparse
    import io
    from firmware import console_cmd
    p = argparse.ArgumentParser()
    console_cmd.add_arguments(p)
    err = io.StringIO()
    args = p.parse_args(["--db", "postgresql://tether@127.0.0.1:1/fleet"])
    assert console_cmd.main(args, io.StringIO(), err) == 1
    assert err.getvalue().startswith("tether console: ") and "Traceback" not in err.getvalue()


def test_a_device_page_lists_its_alarm_among_a_months_routine_insights(tmp_path):
    # A washer's month of cycles and daily reports pushed its maintenance_due off its own page.
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "washer-1", 1, NOW - 29 * DAY, "maintenance_due", "power", 18.0, drift_pct=18.0)
    for i in range(90):
        insight(db, "washer-1", 2 + i, NOW - 28 * DAY + i * 7 * 3600000, "cycle", "power", 1.0)
    insight(db, "washer-1", 99, NOW - DAY, "energy_report", "power", 0.9)
    d = reads.device_detail(reads.Database(str(tmp_path / "f.sqlite")), "washer-1", "30d",
                            charts=False)
    listed = [(i["t_ms"], i["event"]) for i in d["insights"]]
    assert len(listed) == reads.LIST_ROWS and d["insights_in_span"] == 92
    assert listed[-1] == (NOW - 29 * DAY, "maintenance_due")
    assert listed[0] == (NOW - DAY, "energy_report")
    assert listed == sorted(listed, reverse=True)
    assert listed[-2] == (NOW - 28 * DAY + 42 * 7 * 3600000, "cycle")  # the 48 newest cycles


def test_a_days_cycle_chart_draws_the_baseline_of_an_alarm_sent_before_that_day(tmp_path):
    # span=1d drew the cycles without the baseline they drift from: the alarm that told it was
    # three days back, outside the span.
    db = make_db(tmp_path / "f.sqlite")
    insight(db, "washer-1", 1, NOW - 3 * DAY, "maintenance_due", "power", 18.0, watch="energy",
            baseline=0.9, spread=0.05, slack=1, drift_pct=18.0, recent=1.06)
    for i in range(4):
        insight(db, "washer-1", 2 + i, NOW - 20 * 3600000 + i * 3 * 3600000, "cycle", "power",
                1.1, watch="energy", feature=1.1)
    database = reads.Database(str(tmp_path / "f.sqlite"))
    for span in ("1d", "7d"):
        d = reads.device_detail(database, "washer-1", span)
        chart = next(c for c in d["charts"] if c["channel"] == "cycles")
        lines = {line["label"]: line["points"] for line in chart["lines"]}
        assert [v for _, v in lines["learnt baseline"]] == [0.9, 0.9], span
        assert len(chart["marks"]) == (span == "7d"), span   # the alarm's mark in its span only


def test_a_fridges_cycle_chart_groups_its_cycles_as_the_device_does_before_any_alarm():
    # It drew single cycles, labelled `capacity`, until the first maintenance_due told `batch`.
    from console.reads import _cycles
    insights = [(1000 * i, "cycle", "power", 1.0, {"start": 1000 * i, "watch": "capacity",
                                                   "feature": 5.0 + i % 3, "batch": 3})
                for i in range(9)]
    chart = _cycles(insights)
    assert chart["unit"] == "compressor's cycling, median of each 3 cycles"
    assert chart["points"] == [[2000, 6.0], [5000, 6.0], [8000, 6.0]]


def test_a_devices_reply_is_read_with_the_bounded_decoder_and_shown_as_json():
    # cbor2 honours value sharing: a 300-byte reply of one list shared 40 levels deep became
    # 2**40 items when the console made its answer (a security review). The decoder the ingest
    # reads devices with gives tags as they are; a reply's tags and simple values reach JSON.
    import threading
    import types

    import cbor2

    from console.app import _plain
    from console.commands import Commander
    c = Commander("mqtt://127.0.0.1:1")
    shared = []
    for _ in range(40):
        shared = [shared, shared]
    for payload, taken in (
            (cbor2.dumps({"reply": "console-1", "ok": True, "result": shared},
                         value_sharing=True), False),
            (cbor2.dumps(cbor2.CBORTag(28, {"reply": "console-1", "ok": True})), False),
            (cbor2.dumps({"reply": "console-1", "ok": True,
                          "result": {"t": cbor2.CBORTag(1, 5), "b": b"\x01", "s": cbor2.CBORSimpleValue(99),
                                     "u": cbor2.undefined}}), True)):
        waiter = [threading.Event(), None]
        c._waiting["console-1"] = waiter
        c._on_message(None, None, types.SimpleNamespace(payload=payload))
        assert waiter[0].is_set() == taken
    assert json.loads(json.dumps(_plain(waiter[1]))) == {
        "reply": "console-1", "ok": True,
        "result": {"t": {"tag": 1, "value": 5}, "b": "01", "s": {"simple": 99}, "u": None}}


def test_an_insights_settings_are_read_and_changed_from_the_console_on_a_running_device(
        tmp_path, mosquitto):
    # The console sent only acks and snoozes: a lead time or a dose schedule could be changed
    # only with a CBOR map written by hand onto the device's command topic.
    from tests.run_process import Run
    run = Run("examples/printer.yaml", "--platform", "sim", "--device", "printer-1", "--store",
              str(tmp_path / "buffer"), "--broker", "mqtt://127.0.0.1:%d" % mosquitto.port)
    make_db(tmp_path / "f.sqlite").close()
    server = Server(str(tmp_path / "f.sqlite"), host="127.0.0.1", port=0,
                    broker="mqtt://127.0.0.1:%d" % mosquitto.port).start()
    try:
        run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
        deadline = time.monotonic() + 30
        while not server.commander.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = command(server, {"command": "settings", "device": "printer-1",
                                        "sensor": "ink_c"}, server.token)
        assert status == 200 and body["ok"], body
        assert body["reply"]["result"]["settings"]["lead_time_ms"] == 10 * DAY
        status, body = command(server, {"command": "settings", "device": "printer-1",
                                        "sensor": "ink_c", "settings": {"lead_time_ms": 5 * DAY}},
                               server.token)
        assert status == 200 and body["ok"], body
        assert body["reply"]["result"]["settings"]["lead_time_ms"] == 5 * DAY
        status, body = command(server, {"command": "settings", "device": "printer-1",
                                        "sensor": "ink_c"}, server.token)
        assert body["reply"]["result"]["settings"]["lead_time_ms"] == 5 * DAY
        # the device's own check, said back
        status, body = command(server, {"command": "settings", "device": "printer-1",
                                        "sensor": "ink_c", "settings": {"lead_time_ms": 1}},
                               server.token)
        assert status == 200 and not body["ok"]
        assert body["error"].startswith("printer-1 answered: ") and "lead_time_ms" in \
            body["error"], body
        status, body = command(server, {"command": "settings", "device": "printer-1",
                                        "sensor": "ink_c", "settings": [1]}, server.token)
        assert status == 400 and "settings: a map of an insight's settings" in body["error"]
    finally:
        server.stop()
        run.stop()


def test_the_ink_charts_forecast_line_ends_at_the_devices_own_days_to_empty():
    # a forecast carries its days as its value: level over rate (1.33 / 0.6 = 2.2 days) gave
    # another date than the device's 3.24 days, spread over its week
    chart = {"lines": [], "marks": []}
    t = NOW - DAY
    reads._overlay(chart, [[t, 1.33]], [(t, "forecast", "ink_c", 3.24,
                                          {"level": 1.33, "rate_per_day": 0.6})])
    line = chart["lines"][0]
    assert line["points"] == [[t, 1.33], [t + int(3.24 * DAY), 0]]


def test_a_missed_dose_is_listed_by_its_own_time_not_when_the_device_judged_it(tmp_path):
    db = make_db(tmp_path / "f.sqlite")
    # judged 6.9 days ago, its dose due 7.2 days ago: outside "the last 7 days" the row names
    insight(db, "bottle-1", 1, NOW - int(6.9 * DAY), "dose_missed", "pills", None,
            scheduled=NOW - int(7.2 * DAY))
    insight(db, "bottle-1", 2, NOW - DAY, "dose_missed", "pills", None, scheduled=NOW - DAY)
    database = reads.Database(str(tmp_path / "f.sqlite"))
    rows, _, _ = reads.FleetCache(database).refresh()
    shown = [a for a in actions.needed(database, rows, NOW) if a["kind"] == "dose_missed"]
    assert len(shown) == 1 and shown[0]["figures"]["missed"] == 1
    assert shown[0]["evidence"].startswith("1 dose missed in the last 7 days")


def test_a_dose_taken_mark_sits_on_the_count_it_left_not_on_the_bottle_off_the_scale():
    chart = {"lines": [], "marks": []}
    t = NOW - DAY
    points = [[t - 3600000, 20.0], [t - 30000, 0.0], [t + 60000, 19.0]]   # lifted, then back
    reads._overlay(chart, points, [(t + 120000, "dose_taken", "pills", 1,
                                    {"taken": t, "scheduled": t})])
    assert chart["marks"] == [{"label": "dose taken", "t": t, "y": 19.0, "kind": "taken"}]
    # the last dose, then a refill within the half hour: the mark stays on the dose's count
    chart = {"lines": [], "marks": []}
    points = [[t - 3600000, 3.0], [t - 30000, 0.0], [t + 60000, 2.0], [t + 600000, 0.0],
              [t + 900000, 62.0]]
    reads._overlay(chart, points, [(t + 120000, "dose_taken", "pills", 1, {"taken": t})])
    assert chart["marks"][0]["y"] == 2.0


def test_a_dose_mark_sits_on_the_count_after_the_take_not_the_reading_at_it():
    # the reading at the take is still the count before it: every mark sat a pill high
    chart = {"lines": [], "marks": []}
    t = NOW - DAY
    points = [[t - 3600000, 73.0], [t, 73.0], [t + 60000, 72.0]]
    reads._overlay(chart, points, [(t + 120000, "dose_taken", "pills", 1, {"taken": t})])
    assert chart["marks"][0]["y"] == 72.0
    # the last pill: on the empty bottle, not a pill high
    chart = {"lines": [], "marks": []}
    reads._overlay(chart, [[t - 3600000, 1.0], [t + 60000, 0.0]],
                   [(t + 120000, "dose_taken", "pills", 1, {"taken": t})])
    assert chart["marks"][0]["y"] == 0.0


def test_a_thinned_month_leaves_out_lifts_that_its_stretches_hold_for_hours():
    # 30 days in 300 stretches of 2.4 h: a lift's low (0) holds until the stretch's next
    # point, past the 2 hours a bottle at 0 counts as empty: the line fell to 0 and doses were
    # marked there. Two stretches' length is the limit for such a series.
    from ingest.queries import OFF_MS, steady
    h = 3600000
    points = [[0, 73.0], [1 * h, 0.0], [3 * h + 1800000, 73.0], [5 * h, 72.0],
              [30 * h, 0.0], [40 * h, 0.0], [50 * h, 60.0]]   # then empty, 20 h: it shows
    assert [v for _, v in steady(points)] == [73.0, 0.0, 73.0, 72.0, 0.0, 60.0]
    held = steady(points, max(OFF_MS, 2 * (30 * 24 * h // (reads.MAX_POINTS // 4))))
    assert [v for _, v in held] == [73.0, 72.0, 0.0, 60.0]


def test_a_snooze_ends_on_the_fleets_clock_when_the_devices_is_far_from_it(tmp_path):
    # a device whose clock is a year ahead answered with its own end: the row vanished for a
    # year. The device's reply is the edge here (a real one answers on the host's clock).
    from console.app import Console, _run_command

    class Device:
        def __init__(self, ahead_ms):
            self.ahead_ms = ahead_ms

        def send(self, device, command):
            return {"ok": True, "result": {"sensor": command["sensor"], "event": command["event"],
                                           "until": NOW + command["for_ms"] + self.ahead_ms}}

    for ahead, until in ((365 * DAY, NOW + DAY), (60000, NOW + DAY + 60000)):
        path = tmp_path / ("f%d.sqlite" % ahead)        # a snooze hides the row it answers
        db = make_db(path)
        insight(db, "bottle-1", 1, NOW - 3600000, "dose_missed", "pills", None,
                scheduled=NOW - 7200000)
        console = Console(str(path), "t", True, commander=Device(ahead))
        out = _run_command(console, {"command": "snooze", "device": "bottle-1",
                                     "kind": "dose_missed", "sensor": "pills", "for_ms": DAY})
        assert out["ok"] and out["recorded"]["until"] == until, out


def test_a_chart_names_a_senml_unit_as_a_person_reads_it(tmp_path):
    # "cabinet (Cel)": SenML's symbol for degrees Celsius, on a fridge's cabinet temperature
    db = make_db(tmp_path / "f.sqlite", ("fridge-1",))
    db.begin()
    for channel, unit, v in (("cabinet", "Cel", 4.2), ("damp", "%RH", 55.0), ("power", "W", 80.0)):
        db.execute("INSERT INTO channels (device, channel, unit) VALUES (?, ?, ?)",
                   ("fridge-1", channel, unit))
        db.execute("INSERT INTO readings (device, t_ms, channel, value, seq) VALUES "
                   "(?, ?, ?, ?, ?)", ("fridge-1", NOW - 60000, channel, v, 1))
    db.commit()
    d = reads.device_detail(reads.Database(str(tmp_path / "f.sqlite")), "fridge-1", "1d")
    units = {c["channel"]: c["unit"] for c in d["charts"]}
    assert units == {"cabinet": "\u00b0C", "damp": "% RH", "power": "W"}


def test_insight_settings_are_offered_for_the_sensors_with_an_insight_only(tmp_path):
    # every sensor was listed, a fridge's cabinet and a greenhouse's every one with nothing to set
    db = make_db(tmp_path / "f.sqlite", ("fridge-1", "gh-1"))
    db.begin()
    for device, channel in (("fridge-1", "power"), ("fridge-1", "cabinet"), ("gh-1", "air")):
        db.execute("INSERT INTO channels (device, channel, unit) VALUES (?, ?, ?)",
                   (device, channel, "W"))
    db.commit()
    insight(db, "fridge-1", 1, NOW - DAY, "cycle", "power", 1.0)
    fridge, greenhouse = pages(tmp_path / "f.sqlite", "/device/fridge-1", "/device/gh-1")
    # each with a change of its own kind's to show (a fridge was shown an ink's lead time)
    assert ('<select id="settings-sensor"><option data-example="{&#34;tariff&#34;: 0.3}">power'
            '</option></select>') in fridge
    assert 'placeholder="{&#34;tariff&#34;: 0.3}"' in fridge
    assert "settings-sensor" not in greenhouse and 'id="interval-sensor"' in greenhouse


def test_a_devices_charts_follow_its_profiles_order_not_the_alphabet(tmp_path):
    # air_rh came before air_temp, and a printer's inks as c, k, m, y
    from agent.schema import Schema
    s = Schema([("ink_c", "%", 1, -1), ("ink_m", "%", 1, -1), ("ink_y", "%", 1, -1),
                ("ink_k", "%", 1, -1), ("power", "W", 1, -1)])
    db = make_db(tmp_path / "f.sqlite", ("printer-1",))
    db.begin()
    db.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) VALUES "
               "(?, ?, ?, ?)", (s.id, s.to_cbor(), "[]", 1.0))
    db.execute("UPDATE devices SET schema_id = ? WHERE device = ?", (s.id, "printer-1"))
    for channel in ("ink_c", "ink_k", "ink_m", "ink_y", "power", "old_one"):
        db.execute("INSERT INTO channels (device, channel, unit) VALUES (?, ?, ?)",
                   ("printer-1", channel, "%"))
        db.execute("INSERT INTO readings (device, t_ms, channel, value, seq) VALUES "
                   "(?, ?, ?, ?, ?)", ("printer-1", NOW - 60000, channel, 50.0, 1))
    db.commit()
    d = reads.device_detail(reads.Database(str(tmp_path / "f.sqlite")), "printer-1", "1d")
    assert [c["channel"] for c in d["charts"]] == ["ink_c", "ink_m", "ink_y", "ink_k", "power",
                                                   "old_one"]


def test_standing_alarms_read_the_same_from_postgresql(postgres_url):
    db = make_db(postgres_url, ("fridge-1", "fridge-2"))
    threshold_event(db, "fridge-1", 0, 1, NOW - 3600000, "cabinet_warm", "cabinet", "raised", 9.3)
    threshold_event(db, "fridge-2", 0, 1, NOW - 7200000, "cabinet_warm", "cabinet", "raised", 8.4)
    threshold_event(db, "fridge-2", 1, 1, NOW - 3600000, "cabinet_warm", "cabinet", "cleared", 6.9)
    db.close()
    database = reads.Database(postgres_url)
    rows, _, _ = reads.FleetCache(database).refresh()
    got = actions.needed(database, rows, NOW)
    assert [(a["kind"], a["device"], a["figures"]["seq"]) for a in got] == [
        ("alarm", "fridge-1", 0)]


def test_a_command_unanswered_by_a_device_whose_last_will_said_offline_says_it_is_lost(
        tmp_path):
    # "it may be offline (the broker keeps the command for it only if its session persists)":
    # a device keeps no session, so a command it misses is lost. Still sent: the database may
    # be behind the broker (no ingest running).
    from console.app import Console, _run_command
    from console.commands import CommandError

    class Away:
        sent = []

        def send(self, device, command):
            self.sent.append(device)
            raise CommandError("sent, but no reply", unanswered=True)

    path = tmp_path / "f.sqlite"
    db = make_db(path)
    db.begin()
    db.execute("UPDATE devices SET last_status = 'offline' WHERE device = 'printer-1'")
    db.commit()
    console = Console(str(path), "t", True, commander=Away())
    out = _run_command(console, {"command": "ping", "device": "printer-1"})
    assert out == {"ok": False, "error": "no reply from printer-1: it is offline (its last will "
                   "said so), and a command it misses is lost; send it once the device is back "
                   "online"}
    assert Away.sent == ["printer-1"]
    assert _run_command(console, {"command": "ping", "device": "bottle-1"}) == {
        "ok": False, "error": "sent, but no reply"}


def test_a_huge_last_error_in_health_reports_is_shown_cut_short(tmp_path):
    # A device's health reports with 1 MB of last_error: a 5 MB device page (24 of them whole).
    db = make_db(tmp_path / "f.sqlite")
    db.begin()
    for k in range(24):
        db.execute("INSERT INTO health (device, received_at, t_ms, health) VALUES (?, ?, ?, ?)",
                   ("printer-1", 10.0 + k, NOW - k, json.dumps({"last_error": "E" * 100000})))
    db.commit()
    (page,) = pages(tmp_path / "f.sqlite", "/device/printer-1")
    assert len(page) < 100000 and "E" * 290 + "..." in page and "E" * 400 not in page


def test_number_columns_head_right_over_their_right_aligned_numbers(tmp_path):
    make_db(tmp_path / "f.sqlite").close()
    fleet, = pages(tmp_path / "f.sqlite", "/fleet?sort=dropped&order=asc")
    heads = re.findall(r'<th( class="[^"]*")?[^>]*><a href="[^"]*" data-sort="(\w+)"', fleet)
    classes = {key: cls for cls, key in heads}
    assert classes["dropped"] == ' class="n sorted asc"' and classes["heap_free"] == ' class="n"'
    assert classes["device"] == "" and classes["model"] == ""
