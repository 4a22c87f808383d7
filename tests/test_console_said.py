"""The device page's insight rows as sentences (console/said.py), not key dumps: "high_days 190.0
level 86.3 low_days 66.8 points 114 rate_per_day 0.79 weekly yes" told a support agent
nothing at a glance, and the Value column meant days, Wh, kWh or pills by the row."""
from console.said import duration, said

T = 1767600000000   # 2026-01-05 08:00 UTC


def test_each_insight_event_reads_as_a_sentence():
    cases = [
        ("forecast", 107.2, {"level": 86.3, "rate_per_day": 0.794, "low_days": 66.8,
                             "high_days": 190.0, "points": 114, "weekly": True},
         "empty in about 107.2 days (66.8 to 190); 86.3 % left, using 0.79 % a day"),
        ("forecast", 12.0, {"level": 30.0, "rate_per_day": 2.5, "weekly": False},
         "empty in about 12 days; 30 % left, using 2.5 % a day (from a few days' drops: no "
         "weekly rate yet)"),
        ("reorder", 13.6, {"days": 13.6, "level": 27.1, "rate_per_day": 2.11, "lead_days": 10.0},
         "reorder now: empty in about 13.6 days, against a lead time of 10 days; 27.1 % left"),
        ("empty", 0.0, {"level": 0.0, "reordered": False},
         "ran out at 0 %, with no reorder sent"),
        ("cartridge_replaced", 97.0, {"from": 3.2, "to": 97.0}, "new cartridge: 3.2 % to 97 %"),
        ("dose_taken", 1, {"scheduled": T, "taken": T + 151 * 60000, "pills": 1,
                           "status": "late", "late_min": 151, "utc_offset_min": 0},
         "1 pill taken 2 h 31 min late, for the 08:00 dose"),
        # in the patient's time: a Berlin bottle's 08:00 dose was said as 07:00 (UTC)
        ("dose_taken", 2, {"scheduled": T - 3600000, "taken": T, "pills": 2,
                           "status": "on_time", "utc_offset_min": 60},
         "2 pills taken on time, for the 08:00 dose"),
        ("dose_missed", None, {"scheduled": T + 17 * 3600000, "close": T,
                               "utc_offset_min": -300},
         "the 20:00 dose was missed"),
        # from a device before the events carried their offset: UTC, said so
        ("dose_incomplete", 1, {"scheduled": T, "pills": 1, "dose": 2},
         "the 08:00 UTC dose was taken in part: 1 of 2 pills"),
        ("extra_dose", 1, {"scheduled": None, "taken": T, "pills": 1, "reason": "outside"},
         "1 extra pill, outside any dose's time"),
        ("refill_needed", 4.5, {"count": 9, "days_left": 4.5, "per_day": 2},
         "refill needed: 9 pills left, about 4.5 days of supply at 2 a day"),
        ("refilled", 60, {"added": 60, "count": 62, "at": T}, "refilled: 60 pills added, 62 in "
                                                               "the bottle"),
        ("cycle", 1466.0, {"duration_s": 8680, "energy_wh": 1466.0, "peak_w": 2110.5,
                           "programme": "cotton_40", "gap": False},
         "a cotton_40 cycle of 2 h 24 min: 1.47 kWh, peak 2110.5 W"),
        ("energy_report", 0.77, {"kwh": 0.77, "standby_kwh": 0.05, "cycles": 23,
                                 "cost": 0.0036, "currency": "EUR", "co2_g": 192.5,
                                 "missing_s": 0},
         "0.77 kWh in the day, 0.05 kWh of it standby; 23 cycles; 0.0036 EUR; 192.5 g CO2"),
        ("maintenance_due", -5.3, {"watch": "capacity", "drift_pct": -5.3},
         "maintenance due: the compressor's cycling has drifted -5 % from this unit's own normal, "
         "and stayed"),
    ]
    for event, value, fields, sentence in cases:
        assert said(event, value, fields) == sentence, event


def test_a_sentence_is_made_from_what_the_fields_hold_whatever_they_hold():
    # an event from another firmware, or fields missing: words, never a traceback
    for fields in ({}, {"level": "x", "rate_per_day": None}, {"pills": float("inf")},
                   {"scheduled": "08:00"}, {"duration_s": -1, "energy_wh": float("nan")}):
        for event in ("forecast", "reorder", "empty", "cartridge_replaced", "dose_taken",
                      "dose_missed", "dose_incomplete", "extra_dose", "refill_needed",
                      "refilled", "cycle", "energy_report", "maintenance_due"):
            assert isinstance(said(event, None, fields), str)
    assert said("wear_level", 3, {}) == "wear level"
    # a field of another type, a time past the platform's years: the page stayed a 500
    for fields in ({"status": "late", "late_min": {"x": 1}}, {"status": "early", "early_min": "9" * 40},
                   {"status": "late", "late_min": float("nan")}, {"scheduled": 10 ** 20},
                   {"status": ["late"]}):
        assert said("dose_taken", 1, fields).startswith("1 pill taken")
    assert said("forecast", 5.0, {"weekly": True, "low_days": 4.0, "high_days": None}) == (
        "empty in about 5 days (4 to never, on a quiet week); ? left, using ? a day")


def test_durations_are_written_one_way():
    assert [duration(ms) for ms in (40000, 12 * 60000, 3 * 3600000 + 20 * 60000,
                                    2 * 86400000 + 5 * 3600000 + 59 * 60000)] == [
        "40 s", "12 min", "3 h 20 min", "2 d 5 h"]


def test_a_time_past_the_platforms_years_is_shown_not_a_500():
    # a device's `scheduled` of 10**20 ms: gmtime() raised, and the device page with it
    from console.app import _field, _when
    assert _when(10 ** 20) == "100000000000000000000 ms"
    assert _field(("scheduled", 10 ** 20)) == "scheduled 100000000000000000000 ms"
    assert _when(1764028800000) == "2025-11-25 00:00 UTC"


def test_a_raise_and_the_clear_after_it_are_one_row_of_the_events_list():
    # a pill bottle's month: 161 events, mostly uncertain_count raised and cleared a minute
    # apart, two rows each
    from console.reads import _paired
    m = 60000
    rows = [(T + 9 * m, "uncertain_count", "pills", "cleared", 80, None, 1),   # newest first
            (T + 8 * m, "uncertain_count", "pills", "raised", 0, None, 1),
            (T + 5 * m, "refill_soon", "pills", "raised", 6, None, 1),
            (T + 4 * m, "cabinet_warm", "cabinet", "cleared", 5.0, "alarm", 1),  # raised before
            (T + 3 * m, "uncertain_count", "pills", "cleared", 81, None, 1),
            (T, "uncertain_count", "pills", "raised", 0, None, 1)]
    assert [(r["t_ms"] - T, r["event"], r["state"], r["value"], r.get("cleared_value"))
            for r in _paired(rows)] == [
        (8 * m, "uncertain_count", "raised, cleared after 1 min", 0, 80),
        (5 * m, "refill_soon", "raised", 6, None),
        (4 * m, "cabinet_warm", "cleared", 5.0, None),
        (0, "uncertain_count", "raised, cleared after 3 min", 0, 81)]
