# agent/insights/adherence.py on hand-made pill counts with known answers: a bottle lifted off the
# scale and put back, opened with no pill taken, carried around; doses on time, late, missed and
# extra; a refill; refill_needed once per supply; an unsynced clock; bad settings. Across a
# reboot: test_insight_adherence_reboot.py.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
# At 64k the heap's layout tipped once this module and the detector grew in December (per-dose
# pills, early, dose_incomplete: about 1.5 KB of bytecode): it failed at 72k, passes at 76k, and
# runs at 88k.
MICROPYTHON_HEAP = "96k"

from pillkit import DAY0, HOUR, MIN, STEP, Bottle
from support import raises


def test_a_bottle_lifted_off_the_scale_and_put_back_is_no_dose():
    b = Bottle(20)
    b.until(20, 8.1)
    b.hold(19, 2 * HOUR)                  # the 08:00 dose, on time
    b.hold(-66, 40000)                    # lifted: the bottle's own weight is gone
    b.hold(19, 10 * MIN)
    b.hold(-66.3, 3 * MIN)
    b.hold(0, 40 * MIN)                   # carried around, read by a driver that clamps to 0
    b.until(19, 19.5)                     # back with the same count
    assert b.names() == ["dose_taken"]
    assert b.det.state()["count"] == 19


def test_a_bottle_opened_with_no_pill_taken_is_no_dose():
    b = Bottle(20)
    b.until(20, 8.1)
    b.hold(19, HOUR)                      # the 08:00 dose
    b.hold(-60, 10000)
    b.hold(19 - 9.4, 4 * MIN)             # the cap (9.4 pills) set down beside the bottle
    b.hold(19, HOUR)
    b.hold(19 - 9, 4 * MIN)               # the same, read as whole counts
    b.hold(19, HOUR)
    b.hold(19 - 9.4, 12 * MIN)            # the cap off longer than settle: still not whole
    b.until(19, 19.5)
    assert b.names() == ["dose_taken"]


def test_a_shaken_bottle_is_no_dose():
    b = Bottle(20)
    b.until(20, 8.1)
    b.hold(19, HOUR)
    for v in (3.2, 31.0, 12.0, 12.0, -40.5, 19.0, 7.0):   # jumping for a few readings
        b.hold(v, STEP)
    b.until(19, 19.5)
    assert b.names() == ["dose_taken"]


def test_a_dose_on_time_late_missed_and_extra():
    b = Bottle(30)
    b.until(30, 8 + 10 / 60.0)
    b.until(29, 21.25)                    # 08:00 taken at 08:10: on time
    b.until(28, 8 + 25 / 60.0, day=1)     # 20:00 taken at 21:15: 75 min late
    b.until(27, 15, day=1)                # 08:00 of day 1 taken at 08:25: on time
    b.until(26, 20.1, day=1)              # taken at 15:00: outside any window
    b.until(25, 20.75, day=1)             # 20:00 of day 1 taken at 20:06
    b.until(24, 14, day=2)                # taken again at 20:45; 08:00 of day 2 forgotten
    taken = [e for e in b.events if e[1] == "dose_taken"]
    assert [(f["scheduled"], f["status"], f["late_min"], f["pills"]) for _, _, _, f in taken] == [
        (DAY0 + 8 * HOUR, "on_time", 0, 1),
        (DAY0 + 20 * HOUR, "late", 75, 1),
        (DAY0 + 32 * HOUR, "on_time", 0, 1),
        (DAY0 + 44 * HOUR, "on_time", 0, 1)]
    assert taken[1][3]["taken"] == DAY0 + 21 * HOUR + 15 * MIN
    assert taken[1][0] >= taken[1][3]["taken"] + 5 * MIN          # reported once settled
    extra = [f for _, e, _, f in b.events if e == "extra_dose"]
    assert [(f["scheduled"], f["reason"]) for f in extra] == [(None, "outside"),
                                                             (DAY0 + 44 * HOUR, "again")]
    t, _, _, missed = b.one("dose_missed")
    # 08:00 on day 2 closes at 13:00 (min(08:00 + late 5 h, 20:00 - window)), missed at settle.
    assert missed == {"scheduled": DAY0 + 56 * HOUR, "close": DAY0 + 61 * HOUR,
                      "utc_offset_min": 0}
    assert DAY0 + 61 * HOUR + 5 * MIN <= t < DAY0 + 61 * HOUR + 6 * MIN


def test_a_late_dose_just_before_close_is_late_not_missed():
    b = Bottle(30)
    b.until(30, 12 + 57 / 60.0)           # close of 08:00 is 13:00: taken at 12:57
    b.until(29, 19)
    f = b.one("dose_taken")[3]
    assert (f["status"], f["late_min"]) == ("late", 297)
    assert "dose_missed" not in b.names()


def test_a_dose_late_past_close_is_missed_and_extra():
    b = Bottle(30)
    b.until(30, 13.5)
    b.until(29, 19)
    assert b.names() == ["dose_missed", "extra_dose"]


def test_a_cap_left_off_after_a_dose_counts_the_dose_alone():
    b = Bottle(30)
    b.until(30, 8.1)
    b.hold(-66, 30000)                    # lifted, one pill out
    b.hold(29 - 9, 12 * MIN)              # back on the scale, the cap beside it for 12 min
    b.until(29, 19)                       # the cap back on
    assert b.names() == ["dose_taken"]
    f = b.one("dose_taken")[3]
    assert (f["pills"], f["taken"], f["status"]) == (1, DAY0 + 8 * HOUR + 6 * MIN + 30000,
                                                     "on_time")
    assert b.det.state()["count"] == 29


def test_a_cap_beside_the_bottle_for_long_with_no_pill_taken_is_no_dose():
    b = Bottle(12)                        # 6 days left at 2 pills a day
    b.until(12, 9)
    b.hold(12 - 5, 20 * MIN)              # the cap (5 pills) beside it, read as whole counts:
    b.until(12, 12)                       # 3.5 days, were it pills
    assert b.names() == []
    assert b.det.state()["count"] == 12


def test_a_drop_of_more_than_a_dose_that_stays_is_taken_after_an_hour():
    # Three pills at once on a one-pill dose: the dose, and two more than it (one dose_taken
    # of 3 read as the dose, and nobody saw the overdose).
    b = Bottle(30)
    b.until(30, 12.5)
    b.hold(27, 40 * MIN)                  # three pills at 12:30: the 08:00 slot closes at 13:00
    assert b.names() == []                # waiting: maybe a cap beside the bottle
    b.until(27, 19)
    assert b.names() == ["dose_taken", "extra_dose"]
    f = b.one("dose_taken")[3]
    assert (f["pills"], f["status"], f["taken"]) == (1, "late", DAY0 + 12 * HOUR + 30 * MIN)
    e = b.one("extra_dose")
    assert (e[2], e[3]["pills"], e[3]["reason"], e[3]["scheduled"]) == (2, 2, "again",
                                                                         DAY0 + 8 * HOUR)
    assert b.events[0][0] == DAY0 + 13 * HOUR + 30 * MIN      # an hour after it showed


def test_a_pill_put_back_is_no_refill_and_refill_needed_comes_once():
    # A pill taken out and dropped in again was `refilled 1`, re-armed refill_needed, and it
    # came a second time for the same supply.
    b = Bottle(10)
    b.until(10, 8.1)
    b.until(9, 20.1)                      # 4.5 days left: refill_needed
    b.until(8, 20 + 20 / 60.0)            # the 20:00 dose...
    b.until(9, 20 + 40 / 60.0)            # ...dropped back in
    b.until(8, 23)                        # and taken for good
    assert "refilled" not in b.names(), b.events
    assert b.names().count("refill_needed") == 1, b.events


def test_a_dose_taken_before_its_window_but_within_early_is_taken_early():
    # At 07:20 for 08:00 (window 30 min) it was an extra_dose "outside", then 08:00 missed.
    b = Bottle(20, start=DAY0 + 6 * HOUR, early_ms=HOUR)
    b.until(20, 7 + 20 / 60.0)
    b.until(19, 14)
    assert b.names() == ["dose_taken"], b.events
    f = b.one("dose_taken")[3]
    assert (f["status"], f["early_min"], f["late_min"]) == ("early", 40, 0)
    b = Bottle(20, start=DAY0 + 6 * HOUR)          # without it: the window, as before
    b.until(20, 7 + 20 / 60.0)
    b.until(19, 14)
    assert b.names() == ["extra_dose", "dose_missed"], b.events
    assert Bottle(20).det.set({"schedule": ["08:00", "09:00"]})["times_min"] == [480, 540]
    exc = raises(ValueError, Bottle(20, early_ms=HOUR).det.set, {"schedule": ["08:00", "09:00"]})
    assert "closer than the window and early (90 min)" in str(exc), str(exc)


def test_half_a_dose_is_told_when_its_time_is_over_and_a_dose_in_parts_is_not():
    # Two pills a dose: one at 08:05 gave dose_taken of 1, and nothing said the other never
    # came; one then the other is the whole dose.
    b = Bottle(40, pills=2)
    b.until(40, 8 + 5 / 60.0)
    b.until(39, 14)
    assert b.names() == ["dose_taken", "dose_incomplete"], b.events
    t, _, value, fields = b.one("dose_incomplete")
    assert (value, fields) == (1, {"scheduled": DAY0 + 8 * HOUR, "close": DAY0 + 13 * HOUR,
                                   "pills": 1, "dose": 2, "utc_offset_min": 0})
    assert DAY0 + 13 * HOUR < t <= DAY0 + 13 * HOUR + 6 * MIN
    b = Bottle(40, pills=2)
    b.until(40, 8 + 5 / 60.0)
    b.until(39, 8 + 20 / 60.0)
    b.until(38, 14)
    assert b.names() == ["dose_taken"], b.events


def test_two_pills_in_the_morning_and_one_in_the_evening_are_each_their_own_dose():
    # The regimen could not be said: with pills 2 every evening dose was 1 of 2, with pills 1
    # every morning one an extra pill; and the refill estimate counted 4 (or 2) pills a day.
    b = Bottle(30, times_min=[8 * 60, 20 * 60], pills=[2, 1], refill_days=9)
    b.until(30, 8 + 5 / 60.0)
    b.until(28, 20 + 5 / 60.0)                       # 2 at 08:05: 9.3 days at 3 a day
    b.until(26, 26)                                  # 2 at 20:05: the dose and one more
    doses = [e for e in b.events if e[1] != "refill_needed"]
    assert [(e[1], e[3]["pills"]) for e in doses] == [("dose_taken", 2), ("dose_taken", 1),
                                                       ("extra_dose", 1)], b.events
    assert b.one("refill_needed")[3] == {"count": 26, "days_left": 8.7, "per_day": 3}
    new = b.det.set({"schedule": ["21:00", "09:00"], "pills": [1, 3]})   # as written
    assert (new["times_min"], new["pills"]) == ([540, 1260], [3, 1])
    for bad, words in (({"schedule": ["08:00"]}, "set the schedule and its pills together"),
                       ({"pills": [1, 2, 3]}, "one count per dose time (2, got 3)"),
                       ({"pills": [0, 1]}, "pills item must be an integer from 1 to 20"),
                       ({"pills": []}, "or a list of 1 to 24 of them")):
        assert words in str(raises(ValueError, b.det.set, bad)), bad
    assert b.det.settings()["pills"] == [3, 1]


def test_doses_while_the_bottle_is_away_are_judged_when_it_is_back():
    # Taken on a trip: dose_missed for every dose while away (the device read "off the scale"
    # throughout), then one dose_taken of all the pills gone.
    def packed():
        b = Bottle(20)
        b.until(20, 8 + 5 / 60.0)
        b.until(19, 20 + 5 / 60.0)
        b.until(18, 21)                               # day 0's doses taken, then packed
        return b
    b = packed()
    b.until(-66, 10, day=2)                           # away: 08:00 and 20:00 of day 1 close
    assert b.names() == ["dose_taken", "dose_taken"], b.events
    b.until(15, 14, day=2)                            # back with 3 pills fewer at 10:00
    taken = [(f["scheduled"], f["status"]) for _, e, _, f in b.events if e == "dose_taken"]
    assert taken[2:] == [(DAY0 + 32 * HOUR, "away"), (DAY0 + 44 * HOUR, "away"),
                         (DAY0 + 56 * HOUR, "late")], b.events
    assert "dose_missed" not in b.names() and "extra_dose" not in b.names()

    b = packed()                                      # back with one pill fewer: the later
    b.until(-66, 10, day=2)                           # dose held is missed, and the one due
    b.until(17, 14, day=2)                            # then too
    assert [(e[1], e[3]["scheduled"]) for e in b.events[2:]] == [
        ("dose_taken", DAY0 + 32 * HOUR), ("dose_missed", DAY0 + 44 * HOUR),
        ("dose_missed", DAY0 + 56 * HOUR)], b.events

    b = packed()                                      # away for days: missed after two
    b.until(float("nan"), 20, day=3)
    missed = [(t, f["scheduled"]) for t, e, _, f in b.events if e == "dose_missed"]
    assert [m[1] for m in missed][:2] == [DAY0 + 32 * HOUR, DAY0 + 44 * HOUR], b.events
    assert DAY0 + 3 * 24 * HOUR < missed[1][0] < DAY0 + 4 * 24 * HOUR


def test_the_away_rules_at_their_edges():
    # From a review of the first version: a bottle away before any count settled threw a
    # TypeError; a trip past the 2-day limit made a patient who took every dose an extra_dose
    # of 4; a gap in the readings while away forgot the doses held; a held dose half taken
    # said nothing.
    b = Bottle(float("nan"), start=DAY0 + 7 * HOUR)   # off the scale from the first reading
    b.until(float("nan"), 14)
    b.until(20, 16)
    assert b.det.state()["count"] == 20 and "dose_missed" in b.names(), b.events

    def packed(**kw):
        b = Bottle(20, **kw)
        b.until(20, 8 + 5 / 60.0)
        b.until(19, 20 + 5 / 60.0)
        b.until(18, 21)
        return b
    b = packed()
    b.until(-66, 14, day=3)                           # 3 days: missed after two
    b.until(12, 18, day=3)                            # back with every dose taken
    assert "extra_dose" not in b.names(), b.events

    b = packed()
    b.until(-66, 14, day=1)                           # 08:00 of day 1 held at 13:00
    b.t += 7 * HOUR                                   # the device off for 7 h
    b.until(18, 23, day=1)
    assert [e[3]["scheduled"] for e in b.events if e[1] == "dose_missed"][0] == \
        DAY0 + 32 * HOUR, b.events

    b = packed(pills=2)
    b.until(-66, 14, day=1)                           # 08:00 of day 1 held
    b.until(17, 16, day=1)                            # back with one pill of two
    held = [(e[1], e[2]) for e in b.events if e[3].get("scheduled") == DAY0 + 32 * HOUR]
    assert held == [("dose_taken", 1), ("dose_incomplete", 1)], b.events


def test_a_refill_rearms_refill_needed_which_comes_once_per_supply():
    b = Bottle(10)                        # 5 days at 2 pills a day: not below 5 days
    b.until(10, 8.1)
    b.until(9, 20.1)                      # 4.5 days left
    t, _, value, fields = b.one("refill_needed")
    assert value == 4.5 and fields == {"count": 9, "days_left": 4.5, "per_day": 2}
    b.until(8, 11, day=1)                 # lower still: not again
    b.until(68, 19, day=1)                # the pharmacy pours 60 in
    assert b.one("refill_needed")[2] == 4.5
    _, _, added, fields = b.one("refilled")
    assert added == 60 and fields["count"] == 68
    b.det.set({"refill_days": 40})        # 34 days left, below 40: armed again by the refill
    b.until(67, 21, day=1)
    assert [e[2] for e in b.events if e[1] == "refill_needed"] == [4.5, 33.5]


def test_nothing_is_judged_while_the_clock_is_not_synced():
    b = Bottle(30, start=1000, synced=False)
    b.hold(29, 2 * HOUR, synced=False)    # device time from boot: no time of day
    b.t = DAY0 + 6 * HOUR
    b.until(29, 8)
    assert b.names() == []
    assert b.det.state()["count"] == 29
    b.until(28, 13.5)                     # synced from 06:00: the 08:00 dose is judged
    assert b.names() == ["dose_taken"]
    b.until(28, 22, synced=False)         # unsynced again: 20:00 is not judged
    b.until(28, 13.5, day=1)
    assert b.names() == ["dose_taken", "dose_missed"]
    assert b.events[1][3]["scheduled"] == DAY0 + 32 * HOUR


def test_odd_values_never_raise_nor_count():
    b = Bottle(20)
    for v in (float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 2.5, -0.3):
        b.hold(v, 10 * MIN)
        b.hold(20, 10 * MIN)
    assert b.names() == []


def test_setting_the_pills_or_refill_threshold_mid_slot_still_judges_that_dose():
    for change in ({"refill_days": 3}, {"pills": 2}, {"settle_ms": 2 * MIN},
                   {"schedule": ["20:00", "08:00"]}):     # the same schedule, reordered
        b = Bottle(20)
        b.until(20, 8 + 10 / 60.0)                        # the 08:00 dose not taken yet
        b.det.set(change)
        b.until(20, 14)
        assert b.names() == ["dose_missed"], (change, b.events)
        assert b.one("dose_missed")[3]["scheduled"] == DAY0 + 8 * HOUR


def test_the_settings_reply_sent_back_whole_with_one_change_sets_that_change():
    # a cloud reads the settings, changes one, sends the map back: it was refused, for the
    # times_min and early_ms that settings() names and set() did not take
    d = Bottle(20).det
    got = d.settings()
    got["refill_days"] = 9
    new = d.set(got)
    assert new["refill_days"] == 9 and new["times_min"] == [480, 1200]
    assert d.downlinked == 1 << 4          # only the setting that changed outlives a reboot
    assert d.set({"times_min": [1260, 570]})["times_min"] == [570, 1260]
    for bad, words in (({"early_ms": got["early_ms"] + MIN}, "early_ms is the profile's"),
                       ({"times_min": [1440]}, "times_min must be a list of minutes"),
                       ({"times_min": "08:00"}, "times_min must be a list of minutes")):
        exc = raises(ValueError, d.set, bad)
        assert words in str(exc), (bad, str(exc))
    assert d.settings()["times_min"] == [570, 1260]


def test_pills_per_dose_time_sent_with_a_schedule_are_kept_with_it_even_when_unchanged():
    # 08:00 2 pills, 20:00 1; moved to 09:30 2 pills, 21:00 1: the list reads [2, 1] as before,
    # but a reboot on a profile with other pills must not pair the new times with those
    b = Bottle(20, pills=[2, 1])
    b.det.set({"schedule": ["21:00", "09:30"], "pills": [1, 2]})
    assert b.det.settings()["pills"] == [2, 1]
    assert b.det.downlinked & (1 << 3) and b.det.downlinked & 1


def test_set_changes_the_schedule_and_refuses_bad_settings():
    b = Bottle(20)
    d = b.det
    for bad, words in (
            ({"schedule": "08:00"}, "schedule must be a list"),
            ({"schedule": [" 8:00"]}, "like \"08:00\""),
            ({"schedule": ["+9:30"]}, "like \"08:00\""),
            ({"schedule": ["24:00"]}, "like \"08:00\""),
            ({"schedule": ["08:00", "08:30"]}, "closer than twice the window"),
            # as the profile says it: it was two times closer than the window
            ({"schedule": ["20:00", "08:00", "8:00"]}, "expected each dose time once, got "
                                                       "08:00 twice"),
            ({"times_min": [480, 1200, 480]}, "expected each dose time once, got 08:00 twice"),
            ({"window_ms": 60000}, "window_ms must be an integer from 300000"),
            ({"window_ms": True}, "window_ms must be"),
            ({"late_ms": 13 * HOUR}, "late_ms must be"),
            ({"pills": 0}, "pills must be an integer from 1 to 20"),
            ({"pills": 2.0}, "pills must be"),
            ({"settle_ms": -1}, "settle_ms must be"),
            ({"refill_days": 0}, "refill_days must be a number of days from 0.0417 (1 h) to 60"),
            ({"refill_days": 61}, "refill_days must be a number of days from"),  # the profile's
            ({"refill_days": "5"}, "refill_days must be"),
            ({"window_ms": 4 * HOUR, "schedule": ["08:00", "14:00"]}, "closer than twice"),
            # a dose taken within its window would be missed
            ({"late_ms": 20 * MIN}, "late (20 min) must be at least the window (30 min)"),
            ({"colour": 1}, "unknown setting 'colour'"),
            ([1], "settings must be a map")):
        exc = raises(ValueError, d.set, bad)
        assert words in str(exc), (bad, str(exc))
    assert d.settings()["times_min"] == [480, 1200]      # nothing half-applied
    new = d.set({"schedule": ["21:00", "9:30"], "pills": 2, "window_ms": 20 * MIN})  # as a
    assert new["times_min"] == [570, 1260] and new["pills"] == 2          # profile writes it
    b.until(20, 9.5)
    b.until(18, 12)
    f = b.one("dose_taken")[3]
    assert f["scheduled"] == DAY0 + 9 * HOUR + 30 * MIN and f["pills"] == 2


def test_a_schedule_set_while_a_dose_is_due_judges_the_dose_due_now():
    # A new schedule was judged from the first dose whose window opened after the set: the
    # dose due now went unjudged (skipped, or a take on time for it an extra_dose "outside").
    b = Bottle(20)
    b.until(20, 7 + 50 / 60.0)
    b.det.set({"schedule": ["08:00", "20:30"]})      # only the evening dose moved
    assert b.det.state()["scheduled"] == DAY0 + 8 * HOUR  # at once, not at the next reading
    b.until(20, 8 + 2 / 60.0)
    b.until(19, 14)
    assert b.names() == ["dose_taken"], b.events
    assert b.one("dose_taken")[3]["scheduled"] == DAY0 + 8 * HOUR

    b = Bottle(20)                                   # the same, the dose skipped
    b.until(20, 7 + 50 / 60.0)
    b.det.set({"schedule": ["08:00", "20:30"]})
    b.until(20, 14)
    assert b.names() == ["dose_missed"], b.events

    b = Bottle(20)                                   # the pharmacy moves the dose due now
    b.until(20, 8 + 5 / 60.0)
    b.det.set({"schedule": ["08:15", "20:00"]})
    b.until(20, 8 + 12 / 60.0)
    b.until(19, 14)
    f = b.one("dose_taken")[3]
    assert (f["scheduled"], f["status"]) == (DAY0 + 8 * HOUR + 15 * MIN, "on_time")
    assert b.names() == ["dose_taken"], b.events


def test_a_dose_taken_before_its_time_moved_is_not_asked_for_again():
    b = Bottle(20)
    b.until(20, 8 + 2 / 60.0)
    b.until(19, 8 + 9 / 60.0)                        # 08:00 taken, settled
    assert b.names() == ["dose_taken"]
    b.det.set({"schedule": ["08:15", "20:00"]})
    b.until(19, 14)
    assert b.names() == ["dose_taken"], b.events     # no dose_missed for 08:15


def test_a_take_beyond_the_rest_of_a_dose_in_parts_is_the_dose_then_an_extra_dose():
    b = Bottle(40, pills=2)
    b.until(40, 8 + 5 / 60.0)
    b.until(39, 8 + 20 / 60.0)                       # one pill of two at 08:05
    b.until(36, 14)                                  # three more at 08:20: one ends the dose
    assert b.names() == ["dose_taken", "extra_dose"], b.events
    assert b.one("dose_taken")[3]["pills"] == 1      # the dose as first taken
    e = b.one("extra_dose")
    assert (e[2], e[3]["reason"], e[3]["taken"]) == (2, "again", DAY0 + 8 * HOUR + 20 * MIN)


def test_a_dose_moved_an_hour_after_it_was_taken_is_not_asked_for_again():
    # Daylight saving time ends: the cloud moves the 22:30 (UTC+1) dose to 23:30 after the
    # patient took it at 22:40. The new dose's window (23:00-04:30) does not hold the take,
    # and it was missed at 04:35; a dose time gone from the schedule is the same dose, moved.
    b = Bottle(20, times_min=[22 * 60 + 30], late_ms=5 * HOUR)
    b.until(20, 22 + 40 / 60.0)
    b.until(19, 23 + 59 / 60.0)
    b.until(19, 26)
    b.det.set({"schedule": ["23:30"]})
    b.until(19, 23, day=1)
    assert b.names() == ["dose_taken"], b.events
    b.until(18, 23 + 50 / 60.0, day=1)               # the next day's, at its new time
    assert [f["scheduled"] for _, e, _, f in b.events if e == "dose_taken"][-1] == (
        DAY0 + 24 * HOUR + 23 * HOUR + 30 * MIN)


def test_the_utc_offset_is_set_by_downlink_for_daylight_saving_time():
    b = Bottle(20, start=DAY0 + 5 * HOUR, times_min=[8 * 60], utc_offset_min=120)  # summer:
    # 08:00 local is 06:00 UTC
    b.until(20, 6 + 5 / 60.0)
    b.until(19, 6 + 45 / 60.0)                               # taken at 08:05 local
    assert b.det.set({"utc_offset_min": 60})["utc_offset_min"] == 60   # winter time
    b.until(19, 7 + 10 / 60.0, day=1)                        # not asked for again at 07:00
    b.until(18, 8, day=1)                                    # taken at 08:10 local, winter
    assert b.names() == ["dose_taken", "dose_taken"], b.events
    f = b.events[-1][3]
    assert (f["scheduled"], f["status"]) == (DAY0 + 31 * HOUR, "on_time")
    for bad in (15 * 60, -15 * 60, 1.5, True, "+01:00"):
        assert "utc_offset_min must be an integer from -840 to 840" in str(
            raises(ValueError, b.det.set, {"utc_offset_min": bad}))


def test_a_take_is_never_carried_to_a_dose_hours_away():
    # A review found the first version of the moved-dose rule handing the take to the next
    # dose, whatever its time: a clock change after a late-evening dose marked the next day's
    # taken, and removing the open dose marked the evening one taken; neither was missed.
    b = Bottle(20, times_min=[22 * 60 + 30], utc_offset_min=60)
    b.until(20, 21 + 40 / 60.0)
    b.until(19, 26)                                  # 22:30 local taken at 22:40
    b.det.set({"utc_offset_min": 120})               # spring forward, at 03:00 local
    b.until(19, 27, day=1)                           # the next evening's dose not taken
    assert b.names() == ["dose_taken", "dose_missed"], b.events

    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    b.until(19, 8 + 20 / 60.0)                       # 08:00 taken
    b.det.set({"schedule": ["20:00"]})               # the morning dose stopped
    b.until(19, 26)
    assert b.names() == ["dose_taken", "dose_missed"], b.events
    assert b.events[1][3]["scheduled"] == DAY0 + 20 * HOUR


def verdicts_by_dose(b):
    """{scheduled: [dose_taken / dose_missed, ...]} of the events so far."""
    seen = {}
    for _, e, _, f in b.events:
        if e in ("dose_taken", "dose_missed"):
            seen.setdefault(f["scheduled"], []).append(e)
    return seen


def test_clocks_put_forward_over_a_dose_already_missed_do_not_judge_it_again():
    # 07:00 missed; the cloud puts the clocks forward at 08:10 UTC, which makes the open
    # 08:00 dose 07:00 UTC: the time whose dose_missed went out. It was judged again (taken by
    # the 08:20 pill, 80 min late; or a second dose_missed).
    for pill in (True, False):
        b = Bottle(30, start=DAY0 + 6 * HOUR, times_min=[7 * 60, 8 * 60])
        b.until(30, 8 + 10 / 60.0)
        b.det.set({"utc_offset_min": 60})
        if pill:
            b.until(30, 8 + 20 / 60.0)
            b.until(29, 14)
        else:
            b.until(30, 14)
        assert verdicts_by_dose(b) == {DAY0 + 7 * HOUR: ["dose_missed"]}, b.events


def test_removing_the_dose_after_a_missed_one_does_not_miss_it_again():
    # The 16:00 dose removed at 16:30 put 13:00's close at 18:00: a second dose_missed.
    b = Bottle(30, start=DAY0 + 10 * HOUR, times_min=[4 * 60 + 15, 13 * 60, 16 * 60])
    b.until(30, 16.5)
    assert b.names() == ["dose_missed"]
    b.det.set({"schedule": ["04:15", "13:00"]})
    b.until(30, 26)
    assert b.names() == ["dose_missed"], b.events
    assert b.det.state()["scheduled"] == DAY0 + 28 * HOUR + 15 * MIN   # the next one


def test_a_dose_a_schedule_change_missed_is_not_reopened_by_the_next_change():
    # late set to 30 min at 09:00 closes the open 08:00 dose, missed; the 12:00 dose removed
    # and late set to 5 h at 11:45 put its close at 13:00 again
    b = Bottle(30, times_min=[8 * 60, 12 * 60], late_ms=2 * HOUR)
    b.until(30, 9)
    b.det.set({"late_ms": 30 * MIN})
    assert b.names() == ["dose_missed"]
    b.until(30, 11.75)
    b.det.set({"schedule": ["08:00"], "late_ms": 5 * HOUR})
    b.until(30, 14)
    assert b.names() == ["dose_missed"], b.events
    assert b.det.state()["scheduled"] == DAY0 + 32 * HOUR


def test_a_dose_missed_while_the_bottle_was_away_is_not_reopened_by_a_schedule_change():
    # Away over the 08:00 dose's close (11:30, where the 12:00 dose opens): judged missed when
    # the bottle is back; removing the 12:00 dose then put 08:00's close at 13:00 again.
    b = Bottle(30, times_min=[8 * 60, 12 * 60])
    b.until(30, 7.5)
    b.until(float("nan"), 11 + 40 / 60.0)
    b.until(30, 11 + 50 / 60.0)
    assert b.names() == ["dose_missed"]
    b.det.set({"schedule": ["08:00"]})
    b.until(30, 14)
    assert b.names() == ["dose_missed"], b.events


def test_a_setting_beside_a_window_already_too_narrow_is_taken_and_the_window_kept_wide():
    # A window set by command when the sensor's interval was shorter outlives a reboot: every
    # later set (a utc offset at a clock change) was refused for the window it did not touch.
    b = Bottle(30)
    b.det.interval_ms = 10 * MIN
    assert b.det.set({"utc_offset_min": 60})["utc_offset_min"] == 60
    assert "at least 4 x the sensor's interval (600000 ms)" in str(
        raises(ValueError, b.det.set, {"window_ms": 35 * MIN}))
    assert b.det.set({"window_ms": 40 * MIN})["window_ms"] == 40 * MIN


def test_a_narrower_window_set_after_an_early_take_keeps_the_dose_taken():
    # Taken at 07:20 on a 60-min window; the pharmacy narrows it to 15 min at 08:05: the
    # take fell outside the new window and the dose came back as dose_missed at 13:05.
    b = Bottle(30, start=DAY0 + 6 * HOUR, window_ms=60 * MIN)
    b.until(30, 7 + 20 / 60.0)
    b.until(29, 8 + 5 / 60.0)
    b.det.set({"window_ms": 15 * MIN})
    b.until(29, 14)
    assert b.names() == ["dose_taken"], b.events
    assert b.det.state()["scheduled"] == DAY0 + 20 * HOUR


def test_a_longer_late_set_mid_dose_judges_that_dose_and_never_one_already_judged():
    b = Bottle(20)
    b.until(20, 10)                                  # 08:00 not taken, open until 13:00
    b.det.set({"late_ms": 3 * HOUR})
    b.until(20, 14)
    (_, _, _, f), = [e for e in b.events if e[1] == "dose_missed"]
    assert (f["scheduled"], f["close"]) == (DAY0 + 8 * HOUR, DAY0 + 11 * HOUR)

    b = Bottle(20, late_ms=60 * MIN)
    b.until(20, 10)                                  # 08:00 missed at 09:00
    assert b.names() == ["dose_missed"]
    b.det.set({"late_ms": 3 * HOUR})                 # would reopen it until 11:00
    b.until(20, 14)
    assert b.names() == ["dose_missed"], b.events


def test_a_two_pill_dose_taken_a_pill_at_a_time_is_one_dose_and_a_third_pill_is_extra():
    # The second pill of the dose was an extra_dose "again": a double-dose alert for a patient
    # who took exactly the prescription.
    b = Bottle(60, pills=2)                          # 15 days of supply: no refill_needed
    b.until(60, 8 + 5 / 60.0)
    b.until(59, 8 + 20 / 60.0)                       # one pill at 08:05
    b.until(58, 9)                                   # the second at 08:20
    assert b.names() == ["dose_taken"], b.events
    b.until(57, 12)                                  # a third: more than the dose
    assert b.names() == ["dose_taken", "extra_dose"], b.events
    assert b.events[1][3]["reason"] == "again"


def test_a_dose_added_while_one_is_open_is_not_taken_by_the_earlier_take():
    # 08:00 taken at 08:05; at 10:50 an 11:00 dose is added. The 08:05 take counted for it, and
    # the patient's 11:02 pill was an extra_dose "again".
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    b.until(19, 10 + 50 / 60.0)
    b.det.set({"schedule": ["08:00", "11:00", "20:00"]})
    b.until(19, 11 + 2 / 60.0)
    b.until(18, 14)
    taken = [e[3]["scheduled"] for e in b.events if e[1] == "dose_taken"]
    assert taken == [DAY0 + 8 * HOUR, DAY0 + 11 * HOUR], b.events
    assert "extra_dose" not in b.names()


def test_a_shorter_late_that_closes_the_open_dose_judges_it_missed_at_once():
    # late 60 -> 30 min at 08:45 with 08:00 not taken: it got neither dose_taken nor missed.
    b = Bottle(20, late_ms=60 * MIN)
    b.until(20, 8 + 45 / 60.0)
    b.det.set({"late_ms": 30 * MIN})
    (_, _, _, f), = [e for e in b.events if e[1] == "dose_missed"]
    assert (f["scheduled"], f["close"]) == (DAY0 + 8 * HOUR, DAY0 + 8 * HOUR + 30 * MIN)
    b.until(20, 14)
    assert b.names() == ["dose_missed"], b.events


def test_a_profile_with_late_under_the_window_from_before_the_rule_still_runs_and_sets():
    b = Bottle(20, window_ms=30 * MIN, late_ms=20 * MIN)  # compiled before late >= window
    assert b.det.set({"pills": 2})["pills"] == 2          # an unrelated setting is taken
    exc = raises(ValueError, b.det.set, {"late_ms": 25 * MIN})
    assert "must be at least the window" in str(exc)
