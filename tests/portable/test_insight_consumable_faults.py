# agent/insights/consumable.py on the faults of real printers' ink probes: a cartridge taken out
# and put back (the probe reads 0 meanwhile), a loose contact reading 0 twice near the end, a
# printer that re-measures, a probe not sure of its level (NaN). Both interpreters. The
# detector's rate and forecast: test_insight_consumable.py.
from test_insight_consumable import DAY, MONDAY, STEP, Ink, detector, named

# The detector and the rate tests' module compiled from source beside this one
MICROPYTHON_HEAP = "128k"


def _read(det, t, v, minutes):
    """The probe reads v every 5 minutes for `minutes`; the time after."""
    for _ in range(minutes // 5):
        det.feed(t, v, True)
        t += STEP
    return t


def test_a_cartridge_taken_out_and_put_back_is_no_empty_no_swap_and_no_second_reorder():
    # At 34 % with a reorder sent, 15 minutes of 0 %: `empty`, `cartridge_replaced` 0 -> 34
    # with a new `since`, and a second reorder for the same cartridge
    det, events = detector()
    det.emit = lambda t, e, v, f: e == "forecast" or events.append((t, e, v, f))
    ink = Ink(100.0, 6.0)
    ink.run(det, 14)
    assert len(named(events, "reorder")) == 1
    level, since = det.level, det.since
    t = _read(det, ink.t, 0.0, 15)
    t = _read(det, t, level / 100.0, 30)
    assert [e[1] for e in events] == ["reorder"], events
    assert det.since == since and abs(det.level - level) < 20 and not det.ran_out
    ink.t = t
    ink.run(det, 3)
    assert [e[1] for e in events] == ["reorder"], events


def test_a_fall_that_stays_an_hour_is_the_level():
    # a cartridge taken out for good (or a coarse probe's step of 25 %): held back an hour
    det, events = detector()
    t = _read(det, MONDAY, 60.0, 60)
    t = _read(det, t, 30.0, 55)
    assert det.level == 6000
    _read(det, t, 30.0, 15)
    assert det.level == 3000 and named(events, "cartridge_replaced") == []


def test_two_readings_of_0_near_the_end_are_no_empty_and_the_forecast_goes_on():
    # A loose contact at 10.5 %: `empty` with no reorder, then no forecast, no reorder for the
    # rest of the cartridge (a rise of 10 is no swap, so nothing cleared it)
    det, events = detector()
    ink = Ink(40.0, 1.5)
    ink.run(det, 28)                     # 20 weekdays: 10 % left
    level = det.level / 100.0
    assert 9.0 < level < 11.0
    t = _read(det, ink.t, 0.0, 10)
    t = _read(det, t, level, 30)
    assert named(events, "empty") == [] and not det.ran_out
    ink.t = t
    before = len(named(events, "forecast"))
    ink.run(det, 3)
    assert len(named(events, "forecast")) > before


def test_a_printer_that_re_measures_above_empty_is_forecast_again_and_told_empty_when_dry():
    # A dot-counting printer read 0 for an hour, then re-measured 12 %: it stayed "empty"
    det, events = detector()
    ink = Ink(40.0, 1.5)
    ink.run(det, 23)
    t = _read(det, ink.t, 0.0, 60)
    assert len(named(events, "empty")) == 1 and det.ran_out
    t = _read(det, t, 12.0, 30)
    assert not det.ran_out
    ink.t, ink.level = t, 12.0
    ink.run(det, 30)                     # dry after 8 weekdays, then at 0 % with noise
    empties = named(events, "empty")
    assert len(empties) == 2 and empties[1][0] > t + 5 * DAY, empties
    assert named(events, "cartridge_replaced") == []


def test_a_probe_not_sure_of_its_level_is_no_reading():
    # NaN read as 0 %: `empty`, then a swap when the level came back
    det, events = detector()
    t = _read(det, MONDAY, 50.0, 30)
    t = _read(det, t, float("nan"), 60)
    _read(det, t, 50.0, 30)
    assert events == [] and det.level == 5000



def test_a_probe_of_10_percent_steps_is_reordered_in_time_not_a_month_early():
    # A week used no step or one: the weeks of none were left out as odd, the rate from the
    # rest was 2 to 3 times the office's, and every cartridge was reordered 45-67 days early
    det, events = detector({"window_ms": 56 * DAY})
    det.emit = lambda t, e, v, f: e == "forecast" or events.append((t, e, v, f))
    level, t, dry = 100.0, MONDAY, None
    while dry is None or t < dry + 2 * DAY:
        if (t // DAY + 3) % 7 < 5 and 8 <= t % DAY // 3600000 < 18 and t % 3600000 == 0:
            level = max(0.0, level - 0.15)          # 1.5 % a weekday
            if level == 0.0 and dry is None:
                dry = t
        shown = -(-level // 10) * 10                # the probe's 10 % steps, rounded up
        det.feed(t, shown, True)
        t += STEP
    (at, _, _, f), = named(events, "reorder")
    assert 10 * DAY <= dry - at <= 30 * DAY, ((dry - at) / DAY, f)
