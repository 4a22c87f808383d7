# The consumable insight (agent/insights/consumable.py) on hand-made ink levels with known
# answers: ink used only in office hours (weekdays 08:00-18:00, in hourly steps), flat at
# nights and weekends, +-0.1 % probe noise; swaps, a cold start, reorder and empty once, the
# settings a downlink may change. Runs under CPython and under MicroPython.
# 64k until a portable escape of error text (agent/shown.py): under single-precision floats the
# settings test's refusals then ran out (it had under 8k of room); 80k until the faults of real
# probes were held back (a reseat, a loose contact): the module's code grew, and the settings
# test (15 days of forecasts kept, then refusals) failed by its layout anywhere from 76k to 96k
MICROPYTHON_HEAP = "112k"

from agent.insights.consumable import Detector
from support import raises

DAY = 86400000
HOUR = 3600000
MONDAY = 1767571200000      # 2026-01-05 00:00 UTC
STEP = 5 * 60000            # a reading every 5 minutes (the detector takes any interval)
CFG = {"type": "consumable", "lead_time_ms": 10 * DAY, "window_ms": 28 * DAY,
       "learn_ms": 2 * DAY, "empty": 0, "swap_jump": 20, "forecast_ms": DAY,
       "utc_offset_min": 0}


class Ink:
    """A cartridge's true level: `per_day` % used each weekday, spread over 10 office hours."""

    def __init__(self, level, per_day, t=MONDAY, lumpy=None):
        self.level = level
        self.per_hour = per_day / 10.0
        self.t = t
        self.seed = 12345
        self.lumpy = lumpy      # or each day's % in turn: a busy day, a quiet one...

    def noise(self):
        self.seed = (self.seed * 1103515245 + 12345) & 0x7fffffff
        return ((self.seed >> 8) % 201 - 100) / 1000.0      # -0.1 .. +0.1

    def run(self, det, days):
        end = self.t + int(days * DAY)
        while self.t < end:
            t = self.t
            if t % HOUR == 0 and (t // DAY + 3) % 7 < 5 and 8 <= t % DAY // HOUR < 18:
                if self.lumpy:
                    self.per_hour = self.lumpy[(t // DAY) % len(self.lumpy)] / 10.0
                self.level = max(0.0, self.level - self.per_hour)
            v = self.level + self.noise()
            det.feed(t, round(max(0.0, v), 1), True)
            self.t = t + STEP


def detector(cfg=None):
    events = []
    c = dict(CFG)
    c.update(cfg or {})
    det = Detector(c, lambda t, e, v, f: events.append((t, e, v, f)))
    return det, events


def named(events, name):
    return [e for e in events if e[1] == name]


def test_the_rate_counts_whole_weeks_so_weekends_and_noise_do_not_move_it():
    det, events = detector()
    ink = Ink(100.0, 3.0)              # 15 % a week: 2.14 % a day on average
    ink.run(det, 24)
    rate = det.state()["rate_per_day"]
    assert abs(rate - 15 / 7.0) < 0.05, rate
    # The weekend that just went by did not change it.
    ink.run(det, 5 - 24 % 7)           # to Saturday 00:00
    before = det.state()["rate_per_day"]
    ink.run(det, 2)
    assert abs(det.state()["rate_per_day"] - before) < 0.03
    last = named(events, "forecast")[-1]
    assert abs(last[2] - last[3]["level"] / (15 / 7.0)) < 1.0
    assert last[3]["low_days"] <= last[2] <= last[3]["high_days"]


def test_the_forecast_lies_within_its_band_when_a_busy_week_is_followed_by_a_quiet_one():
    det, events = detector()
    ink = Ink(100.0, 6.0)
    for per_day in (6.0, 1.0, 3.0, 3.0):
        ink.per_hour = per_day / 10.0
        ink.run(det, 7)
    sent = named(events, "forecast") + named(events, "reorder")
    assert len(sent) > 20
    for t, e, days, f in sent:
        assert f["low_days"] <= days, (e, days, f)
        assert f["high_days"] is None or days <= f["high_days"], (e, days, f)


def test_an_office_closed_for_a_week_does_not_move_the_rate():
    det, events = detector()
    det.emit = lambda *e: None
    ink = Ink(100.0, 3.0)              # 15 % a week
    ink.run(det, 24)
    ink.per_hour = 0.0                 # closed from Thursday to Thursday
    lowest = 15 / 7.0
    while ink.t < MONDAY + 31 * DAY:
        ink.run(det, 0.25)
        lowest = min(lowest, det.state()["rate_per_day"])
    ink.per_hour = 0.3
    worst = 0.0
    for _ in range(4 * 21):            # three weeks open again: the closed week in the window
        ink.run(det, 0.25)
        worst = max(worst, abs(det.state()["rate_per_day"] - 15 / 7.0))
    # A few idle days look like quiet ones (nobody can tell yet): the rate gives a little.
    assert lowest > 0.8 * 15 / 7.0, lowest
    # Once the week is seen whole, it is left out: the rate of the open weeks, every 6 h.
    assert worst < 0.12, worst


def test_forecasts_come_once_a_day_with_their_band():
    det, events = detector()
    Ink(100.0, 3.0).run(det, 21)
    times = [e[0] for e in named(events, "forecast")]
    assert len(times) >= 15
    assert all(b - a == DAY for a, b in zip(times, times[1:]))


def test_a_swap_in_the_middle_of_the_window_is_seen_on_its_reading_and_restarts_the_level():
    det, events = detector()
    ink = Ink(60.0, 3.0)
    ink.run(det, 17)
    rate = det.state()["rate_per_day"]
    assert abs(rate - 15 / 7.0) < 0.05
    ink.level = 98.0
    swap_t = ink.t
    ink.run(det, STEP / float(DAY))      # one reading
    swaps = named(events, "cartridge_replaced")
    assert len(swaps) == 1 and swaps[0][0] == swap_t
    assert abs(swaps[0][3]["from"] - (60.0 - 13 * 3.0)) < 0.5 and swaps[0][3]["to"] > 97.5
    # The level starts again at once (the days count from 98 %), the office's rate carries on.
    state = det.state()
    assert state["since"] == swap_t and state["reordered"] is False
    assert state["rate_per_day"] == rate and abs(state["days"] - 98 / rate) < 3.0
    # The jump itself is never counted as ink: the rate a week and a half on is the same.
    ink.run(det, 10)
    assert abs(det.state()["rate_per_day"] - 15 / 7.0) < 0.05
    # The old cartridge's reorder came (at 1.9 x the lead time); the new one, 45 days from
    # empty, has none yet.
    assert [e[0] < swap_t for e in named(events, "reorder")] == [True]


def test_a_cold_start_waits_for_learn_and_a_low_cartridge_still_gets_its_reorder():
    det, events = detector()
    ink = Ink(30.0, 3.0)                 # dry in 10 weekdays: two weeks from Monday
    ink.run(det, 1.9)
    assert named(events, "forecast") == [] and named(events, "reorder") == []
    ink.run(det, 0.6)
    reorders = named(events, "reorder")
    assert len(reorders) == 1 and MONDAY + 2 * DAY <= reorders[0][0] <= MONDAY + 2 * DAY + 7 * HOUR
    assert reorders[0][3]["lead_days"] == 10.0 and reorders[0][3]["days"] <= 10.0


def test_a_low_first_cartridge_of_lumpy_days_is_reordered_in_time_from_its_first_days():
    # Busy and quiet weekdays: the cold fit's slow end (its band's high days, 13.9) is far
    # from its forecast (5.8). Waiting for the slow end alone to fall under the lead time
    # reordered on day 8, from the first weekly fit: 6.7 days before the cartridge ran dry.
    det, events = detector()
    ink = Ink(25.0, 0.0, lumpy=[4.0, 1.0, 3.0, 0.5, 2.5])
    ink.run(det, 20)
    reorders = named(events, "reorder")
    empties = named(events, "empty")
    assert len(reorders) == 1 and len(empties) == 1
    t, _, _, f = reorders[0]
    assert f["weekly"] is False and f["high_days"] > 10 and f["days"] < 10
    assert (f["days"] * f["high_days"]) ** 0.5 <= 10
    assert empties[0][0] - t >= 10 * DAY


def test_reorder_and_empty_come_once_a_cartridge_and_a_swap_rearms_them():
    det, events = detector()
    # 70 days of forecasts kept beside the module's code no longer fit a 64k heap: not kept.
    det.emit = lambda t, e, v, f: e == "forecast" or events.append((t, e, v, f))
    ink = Ink(100.0, 6.0)
    ink.run(det, 40)                     # dry after ~23 days, then 17 days at 0 % with noise
    assert len(named(events, "reorder")) == 1
    empties = named(events, "empty")
    assert len(empties) == 1 and empties[0][3]["reordered"] is True
    dry = MONDAY + 22 * DAY + 15 * HOUR  # the 100th % went on the 17th weekday, 14:00-15:00
    assert dry - HOUR <= empties[0][0] <= dry + HOUR
    reorder = named(events, "reorder")[0]
    assert 10 * DAY <= dry - reorder[0] <= 23 * DAY
    ink.level = 97.0
    ink.run(det, 30)
    # The 17 days it stood empty are not read as a printer at rest.
    assert abs(det.state()["rate_per_day"] - 30 / 7.0) < 0.1
    assert len(named(events, "cartridge_replaced")) == 1
    assert len(named(events, "reorder")) == 2 and len(named(events, "empty")) == 2


def test_odd_values_never_raise_and_a_flat_level_forecasts_nothing():
    det, events = detector()
    t = MONDAY
    for v in (-5.0, 1e9, 0.0, 50.0, 50.0, 50.0):
        det.feed(t, v, False)
        t += STEP
    for i in range(3 * 288):
        det.feed(t, 50.0, True)
        t += STEP
    assert named(events, "forecast") == [] and named(events, "reorder") == []


def test_a_clock_set_forward_at_the_first_sync_starts_the_points_again():
    det, events = detector()
    ink = Ink(100.0, 3.0, t=3 * DAY)     # device time before the first sync: days after 1970
    ink.run(det, 3)
    assert det.state()["points"] > 0
    ink.t = MONDAY                       # synced
    ink.run(det, 1)
    assert det.state()["points"] == 3    # only the points since the sync (one every 6 h)
    ink.run(det, 9)
    assert abs(det.state()["rate_per_day"] - 15 / 7.0) < 0.05
    assert [e[1] for e in events if e[1] != "forecast"] == []
    ink.t -= 2 * DAY                     # set back: the points start again at once
    ink.run(det, STEP / float(DAY))
    assert det.state()["points"] == 0


def test_set_changes_the_lead_time_and_refuses_bad_settings_with_a_reason():
    det, events = detector()
    Ink(100.0, 3.0).run(det, 15)
    assert named(events, "reorder") == []
    got = det.set({"lead_time_ms": 40 * DAY, "forecast_ms": 6 * HOUR})
    assert got["lead_time_ms"] == 40 * DAY and got["forecast_ms"] == 6 * HOUR
    det.feed(MONDAY + 15 * DAY + 6 * HOUR, det.state()["level"], True)
    assert len(named(events, "reorder")) == 1
    for bad, words in (("lead", "a map"), ({}, "a map"), ({"lead": 1}, "unknown key 'lead'"),
                       ({"lead_time_ms": True}, "lead_time_ms must be an integer"),
                       ({"lead_time_ms": 5.5 * DAY}, "lead_time_ms must be an integer"),
                       ({"lead_time_ms": 100 * DAY}, "from 3600000 to 7776000000"),
                       ({"swap_jump": "20"}, "swap_jump must be a number"),
                       ({"empty": -1}, "empty must be a number from 0 to 50"),
                       ({"empty": 2, "bogus": 1}, "unknown key 'bogus'")):
        err = raises(ValueError, det.set, bad)
        assert words in str(err), str(err)
    assert det.set({"empty": 2})["empty"] == 2.0 and det.settings()["lead_time_ms"] == 40 * DAY
    # rounded to 0.01 %, not cut: 1.13 is 1.12999... as a double (and 1.13 in single precision)
    got = det.set({"empty": 1.13, "swap_jump": 4.35})
    assert (got["empty"], got["swap_jump"], det.empty, det.swap) == (1.13, 4.35, 113, 435), got


def test_ack_reports_the_cartridge_it_is_about():
    det, events = detector()
    Ink(40.0, 6.0).run(det, 3)
    got = det.ack("reorder")
    assert got == {"since": MONDAY, "reordered": True, "empty": False}
    # the reorder names the same cartridge: an order system's key (device, sensor, since)
    assert named(events, "reorder")[0][3]["since"] == MONDAY
    # and so does each forecast: the latest of a cartridge is the newest with its since
    forecasts = named(events, "forecast")
    assert forecasts and all(f[3]["since"] == MONDAY for f in forecasts)


def test_a_busy_office_that_runs_every_cartridge_dry_within_a_week_is_reordered_in_time():
    # Each cartridge dry in 6 days and empty a day before its swap: every one-week pair spans
    # an empty stretch, so no weekly fit ever came, and on the cold rule the ink was reordered
    # a few hours before dry or never.
    det, events = detector({"lead_time_ms": 5 * DAY})
    ink = Ink(100.0, 25.0)             # 25 % a weekday: 4 weekdays a cartridge
    cartridges = []
    for _ in range(8):
        put_in = ink.t
        ink.run(det, 8)                # dry, then empty a few days
        dry = [e[0] for e in named(events, "empty")]
        sent = [e[0] for e in named(events, "reorder")]
        cartridges.append((put_in, sent[0] if sent else None, dry[0]))
        del events[:]                  # a small heap: the forecasts' fields add up
        ink.level = 100.0              # the new cartridge
    # Once the office's rate is known (two weeks): a cartridge shorter than the lead time is
    # reordered as it goes in, the earliest there is.
    late = [(p, r, d) for p, r, d in cartridges[3:] if r is None or r - p > 6 * HOUR]
    assert not late, [(None if r is None else (r - p) / HOUR, (d - p) / DAY)
                      for p, r, d in cartridges]
