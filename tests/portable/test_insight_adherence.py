# agent/insights/adherence.py on hand-made pill counts with known answers: a bottle lifted off the
# scale and put back, opened with no pill taken, carried around; doses on time, late, missed and
# extra; a refill; refill_needed once per supply; an unsynced clock; bad settings; the state
# carried across a reboot by snapshot() and restore(), and bad snapshots.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
from agent import cbor, cbor_decode
from agent.insights.adherence import Detector
from support import raises

MIN = 60000
HOUR = 60 * MIN
DAY0 = 1767225600000          # 2026-01-01 00:00 UTC
STEP = 30000                  # the example profile reads the count every 30 s


def config(**kw):
    cfg = {"type": "adherence", "times_min": [8 * 60, 20 * 60], "window_ms": 30 * MIN,
           "late_ms": 5 * HOUR, "pills": 1, "refill_days": 5, "settle_ms": 5 * MIN,
           "utc_offset_min": 0}
    cfg.update(kw)
    return cfg


class Bottle:
    """A detector fed every 30 s from `t`; events kept as (t, event, value, fields)."""

    def __init__(self, count, start=DAY0 + 7 * HOUR, synced=True, **kw):
        self.events = []
        self.det = Detector(config(**kw), self._emit)
        self.t = start
        self.hold(count, 30 * MIN, synced)

    def _emit(self, t, event, value, fields):
        self.events.append((t, event, value, fields))

    def hold(self, value, ms, synced=True):
        """The scale reads value for ms."""
        end = self.t + ms
        while self.t < end:
            self.det.feed(self.t, value, synced)
            self.t += STEP

    def until(self, value, hour, day=0, synced=True):
        self.hold(value, DAY0 + day * 24 * HOUR + int(hour * HOUR) - self.t, synced)

    def names(self):
        return [e[1] for e in self.events]

    def one(self, name):
        found = [e for e in self.events if e[1] == name]
        assert len(found) == 1, self.events
        return found[0]


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
    assert missed == {"scheduled": DAY0 + 56 * HOUR, "close": DAY0 + 61 * HOUR}
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
    b = Bottle(30)
    b.until(30, 12.5)
    b.hold(27, 40 * MIN)                  # three pills at 12:30: the 08:00 slot closes at 13:00
    assert b.names() == []                # waiting: maybe a cap beside the bottle
    b.until(27, 19)
    f = b.one("dose_taken")[3]
    assert (f["pills"], f["status"], f["taken"]) == (3, "late", DAY0 + 12 * HOUR + 30 * MIN)
    assert b.events[0][0] == DAY0 + 13 * HOUR + 30 * MIN      # an hour after it showed
    assert "dose_missed" not in b.names()


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


def test_set_changes_the_schedule_and_refuses_bad_settings():
    b = Bottle(20)
    d = b.det
    for bad, words in (
            ({"schedule": "08:00"}, "schedule must be a list"),
            ({"schedule": ["8:00"]}, "like \"08:00\""),
            ({"schedule": ["24:00"]}, "like \"08:00\""),
            ({"schedule": ["08:00", "08:30"]}, "closer than twice the window"),
            ({"window_ms": 60000}, "window_ms must be an integer from 300000"),
            ({"window_ms": True}, "window_ms must be"),
            ({"late_ms": 13 * HOUR}, "late_ms must be"),
            ({"pills": 0}, "pills must be an integer from 1 to 20"),
            ({"pills": 2.0}, "pills must be"),
            ({"settle_ms": -1}, "settle_ms must be"),
            ({"refill_days": 0}, "refill_days must be a number of days above 0"),
            ({"refill_days": "5"}, "refill_days must be"),
            ({"window_ms": 4 * HOUR, "schedule": ["08:00", "14:00"]}, "closer than twice"),
            ({"colour": 1}, "unknown setting 'colour'"),
            ([1], "settings must be a map")):
        exc = raises(ValueError, d.set, bad)
        assert words in str(exc), (bad, str(exc))
    assert d.settings()["times_min"] == [480, 1200]      # nothing half-applied
    new = d.set({"schedule": ["21:00", "09:30"], "pills": 2, "window_ms": 20 * MIN})
    assert new["times_min"] == [570, 1260] and new["pills"] == 2
    b.until(20, 9.5)
    b.until(18, 12)
    f = b.one("dose_taken")[3]
    assert f["scheduled"] == DAY0 + 9 * HOUR + 30 * MIN and f["pills"] == 2


# -- across a reboot: snapshot() -> CBOR -> restore() -------------------------------------------
DAY = 24 * HOUR
# Three days of a bottle, as (day, minute of the day, count read from then on[, synced]); None:
# no readings (the board off). Schedule 08:00 and 20:00, 1 pill, refill below 5 days.
DAYS = (
    (0, 360, 14, False),      # the board's first minutes, before NTP
    (0, 380, 14),
    (0, 485, 13),             # 08:00 taken at 08:05
    (0, 570, -66), (0, 571, 13),                  # lifted and put back
    (0, 720, 13 - 5.4), (0, 723, 13),             # opened, the cap beside it for 3 min
    (0, 840, 3.2), (0, 840.5, 31.0), (0, 841, -40.5), (0, 841.5, 13),   # shaken
    (0, 960, float("nan")), (0, 960.5, 13),
    (0, 1300, 12),            # 20:00 taken at 21:40: late
    (1, 470, -66), (1, 471, 11 - 5), (1, 483, 11),   # 08:00 taken at 07:51, the cap off 12 min
    (1, 900, 10),             # 15:00: in no window
    (2, 460, 9),              # 20:00 missed; 08:00 taken at 07:40 (refill_needed: 4.5 days)
    (2, 475, 8),              # 07:55: taken again
    (2, 720, 68),             # refilled at noon
    (2, 1190, 65),            # three pills at 19:50: waits an hour for a cap, then taken
    (2, 1380, None),          # the board off for 8 h, back before 08:00's window opens
    (3, 420, 65), (3, 490, 64),
    (3, 540, None))
EVERY_EVENT = ["dose_taken", "dose_taken", "dose_taken", "extra_dose", "dose_missed",
               "dose_taken", "refill_needed", "extra_dose", "refilled", "dose_taken", "dose_taken"]


def readings():
    """(t, value, synced) every 30 s through DAYS, made as needed (a list would not fit a
    board's heap)."""
    for i in range(len(DAYS) - 1):
        entry = DAYS[i]
        t = DAY0 + entry[0] * DAY + int(entry[1] * MIN)
        end = DAY0 + DAYS[i + 1][0] * DAY + int(DAYS[i + 1][1] * MIN)
        synced = len(entry) < 4
        while entry[2] is not None and t < end:
            yield t, entry[2], synced
            t += STEP


def rebooted(det, emit, cfg=None):
    """A new detector from the profile, restored from det's snapshot gone through flash."""
    new = Detector(cfg or config(), emit)
    new.restore(cbor_decode.loads(cbor.dumps(det.snapshot())))
    return new


def run_days(every):
    """DAYS through one detector, restored into a new one before every `every`-th reading (0:
    never); the events, the last detector and the largest snapshot in CBOR bytes."""
    events = []

    def emit(t, event, value, fields):
        events.append((t, event, value, fields))
    det = Detector(config(), emit)
    biggest = 0
    i = 0
    for t, v, synced in readings():
        if every and i % every == 0:
            biggest = max(biggest, len(cbor.dumps(det.snapshot())))
            det = rebooted(det, emit)
        det.feed(t, v, synced)
        i += 1
    return events, det, biggest


def test_a_detector_restored_at_any_reading_sends_what_one_never_stopped_sends():
    expected, never, _ = run_days(0)
    assert [e[1] for e in expected] == EVERY_EVENT
    for every in (20, 13):
        events, det, biggest = run_days(every)
        assert events == expected, every
        assert det.snapshot() == never.snapshot() and det.state() == never.state()
        assert biggest <= 100, biggest


def test_a_dose_then_a_reboot_is_no_missed_dose():
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    b.until(19, 8.25)                     # 08:00 taken at 08:05, reported at 08:10
    flash = cbor.dumps(b.det.snapshot())  # the manager's 08:15 snapshot
    b.until(19, 8.5)                      # power cut at 08:30, back at 08:32
    b.t += 2 * MIN
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(19, 19.5)
    assert b.names() == ["dose_taken"]
    assert b.det.state()["taken"] == 1


def test_a_reboot_before_the_snapshot_after_a_dose_sends_it_again_but_never_missed():
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    flash = cbor.dumps(b.det.snapshot())  # 08:05, just before the count changed
    b.until(19, 8.2)                      # dose_taken at 08:10; power cut at 08:12
    b.t += 2 * MIN
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(19, 19.5)
    assert b.names() == ["dose_taken", "dose_taken"]
    assert [e[3]["scheduled"] for e in b.events] == [DAY0 + 8 * HOUR] * 2


def test_a_reboot_of_two_hours_in_a_dose_window_still_judges_the_dose():
    for taken in (True, False):
        b = Bottle(20)
        b.until(20, 8.25)
        flash = cbor.dumps(b.det.snapshot())
        b.until(20, 8 + 20 / 60.0)        # off from 08:20 to 10:20: the pill taken meanwhile
        b.t += 2 * HOUR
        b.det = Detector(config(), b._emit)
        b.det.restore(cbor_decode.loads(flash))
        b.until(19 if taken else 20, 19.5)
        if taken:                         # seen when the board is back
            f = b.one("dose_taken")[3]
            assert (f["status"], f["late_min"], f["taken"]) == ("late", 140,
                                                                 DAY0 + 10 * HOUR + 20 * MIN)
            assert b.names() == ["dose_taken"]
        else:
            assert b.names() == ["dose_missed"]
            assert b.events[0][3]["scheduled"] == DAY0 + 8 * HOUR


def test_a_reboot_of_seven_hours_judges_again_from_the_next_dose():
    b = Bottle(20)
    b.until(20, 8.25)
    flash = cbor.dumps(b.det.snapshot())
    b.t += 7 * HOUR                       # back at 15:15: 08:00 is not judged
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(20, 21)
    b.until(20, 13.5, day=1)              # 20:00 is, and 08:00 of the next day
    assert [e[3]["scheduled"] for e in b.events] == [DAY0 + 20 * HOUR, DAY0 + 32 * HOUR]


def test_a_clock_set_back_after_a_reboot_still_follows_the_count():
    b = Bottle(20)
    b.until(20, 8.25)
    b.det = rebooted(b.det, b._emit)
    b.t = 1000                            # the board's time from boot, not yet synced
    b.hold(19, 20 * MIN, synced=False)
    assert b.det.state()["count"] == 19 and b.names() == []


def test_a_bad_snapshot_is_refused_and_changes_nothing():
    b = Bottle(20)
    b.until(20, 8.25)
    good = b.det.snapshot()
    assert good[16] == DAY0 + 8 * HOUR    # the 08:00 slot: index 16 of the layout

    def but(i, v):
        s = list(good)
        s[i] = v
        return s
    bad = [None, "snapshot", {}, [], good[:-1], good + [0], [good],
           but(0, 2), but(0, True), but(1, []), but(1, [480, 480]), but(1, [1200, 480]),
           but(1, [1440]), but(1, ["08:00"]), but(1, None), but(1, list(range(25))),
           but(2, 1), but(2, 1800000.0), but(3, True), but(4, 0), but(5, "5"),
           but(5, float("nan")), but(5, 1e300), but(6, -1), but(7, 64), but(7, None),
           but(8, 5000), but(9, -3), but(9, 10 ** 30), but(9, 20.0), but(10, "x"),
           but(11, None), but(11, 10 ** 20), but(12, 5), but(13, -1), but(14, 1),
           but(14, None), but(15, 1.5), but(15, -(10 ** 40)), but(16, DAY0 + 8 * HOUR + 1),
           but(16, 2 ** 60), but(17, "no"), but(18, None), but(19, [1, 2, 3]),
           but(19, [0, 0, 0, -1]), but(19, None), but(19, [0, 0, 0, 10 ** 40]),
           but(19, (0, 0, 0, 0))]
    before = b.det.snapshot()
    for snap in bad:
        exc = raises(ValueError, b.det.restore, snap)
        assert "snapshot" in str(exc), (snap, str(exc))
        assert b.det.snapshot() == before, snap
    no_count = but(9, None)
    no_count[12] = 5                      # a drop pending from 5 with no count to drop to
    assert "pending" in str(raises(ValueError, b.det.restore, no_count))
    b.until(19, 19.5)                     # still judging: the 08:00 dose
    assert b.names() == ["dose_taken"]


def test_a_schedule_set_by_downlink_survives_a_reboot_and_a_profile_one_does_not():
    b = Bottle(20)
    b.det.set({"schedule": ["09:30", "21:00"], "refill_days": 2.5})
    b.until(20, 9.6)
    b.det = rebooted(b.det, b._emit, config(times_min=[9 * 60, 21 * 60]))
    assert b.det.settings()["times_min"] == [570, 1260]          # the downlink's, not the profile's
    assert b.det.settings()["refill_days"] == 2.5
    assert b.det.state()["scheduled"] == DAY0 + 9 * HOUR + 30 * MIN
    b.until(19, 12)
    f = b.one("dose_taken")[3]
    assert (f["scheduled"], f["status"]) == (DAY0 + 9 * HOUR + 30 * MIN, "on_time")
    b.det = rebooted(b.det, b._emit)      # after another reboot too
    assert b.det.settings()["times_min"] == [570, 1260]

    b = Bottle(20)                        # no downlink: a new profile's schedule wins
    b.det.set({"refill_days": 2.5})
    b.until(20, 8.25)
    b.det = rebooted(b.det, b._emit, config(times_min=[9 * 60, 21 * 60], late_ms=2 * HOUR))
    s = b.det.settings()
    assert (s["times_min"], s["late_ms"], s["refill_days"]) == ([540, 1260], 2 * HOUR, 2.5)
    assert b.det.state()["scheduled"] is None                    # judged from its next slot
    b.until(20, 9.1)
    b.until(19, 12)
    assert b.one("dose_taken")[3]["scheduled"] == DAY0 + 9 * HOUR

    b = Bottle(20)                        # a downlinked window the new profile cannot take
    b.det.set({"window_ms": 4 * HOUR})
    b.until(20, 8.25)
    exc = raises(ValueError, rebooted, b.det, b._emit, config(times_min=[8 * 60, 14 * 60]))
    assert "clash" in str(exc) and "closer than twice the window" in str(exc)
