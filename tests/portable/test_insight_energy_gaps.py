# agent/insights/energy.py where the readings or the clock break off: a wash that ended before a
# gap is not merged with the next one, a clock set back across the report time reports nothing
# twice, an ack with no alarm raised keeps what was learnt. Both interpreters.
from energykit import DAY, HOUR, MIN, T0, Run, cycles as _cycles

# The detector compiled from source in RAM, as in test_insight_energy.py.
MICROPYTHON_HEAP = "80k"


def test_a_wash_that_ended_before_a_gap_is_not_merged_with_the_next_one():
    # It went on as one cycle of 3 h 40 min and 833 Wh: the readings after the gap were on.
    r = Run()
    r.feed(1.0, 10 * MIN)
    start = r.t
    r.feed(500.0, HOUR)
    ended = r.t
    r.feed(1.0, 20000)                  # under standby_below, not yet for end_ms (3 min)
    r.t += 2 * HOUR                     # then no readings: a power cut
    second = r.t
    r.feed(500.0, 40 * MIN)
    r.feed(1.0, 10 * MIN)
    (_, _, wh1, f1), (_, _, wh2, f2) = r.of("cycle")
    assert (f1["start"], f1["end"], f1["gap"]) == (start, ended, True)
    assert abs(wh1 - 500.0) < 0.1 and f1["feature"] is None
    assert f2["start"] == second and f2["gap"] is True      # it may have begun in the gap
    assert abs(wh2 - 500.0 * (40 * 60 - 5) / 3600) < 0.1


def test_a_cycle_below_standby_when_its_readings_stop_ends_where_it_fell_not_later():
    r = Run()
    r.feed(1.0, 10 * MIN)
    r.feed(500.0, HOUR)
    ended = r.t
    r.feed(1.0, 20000)
    r.t += 2 * HOUR
    r.feed(1.0, 10 * MIN)
    (_, _, _, f), = r.of("cycle")
    assert f["end"] == ended and f["duration_s"] == 3600


def test_a_clock_set_back_across_the_report_time_reports_nothing_twice():
    # A Pi's saved clock after a power cut, then NTP: a report whose `until` came a day before
    # its `since`, then one of 0 kWh.
    r = Run()
    r.feed(100.0, DAY + MIN, step=10000)           # past midnight: the first report
    assert len(r.of("energy_report")) == 1
    r.t -= 2 * MIN                                  # back to 23:59
    r.feed(100.0, 10 * MIN, step=10000)             # across midnight again
    r.feed(100.0, DAY, step=10000)                  # and the next one
    reports = [f for _, _, _, f in r.of("energy_report")]
    assert [f["until"] for f in reports] == [T0 + DAY, T0 + 2 * DAY]
    assert reports[1]["since"] < reports[1]["until"]
    # the day after, at 100 W, less the two minutes read twice (a clock set back counts nothing)
    assert abs(reports[1]["kwh"] - 2.4) < 0.01


def test_a_clock_set_back_by_days_starts_the_reports_again_from_its_time():
    # The time before was wrong (a clock set years ahead): waiting for it would send no report
    # for years.
    r = Run()
    r.feed(100.0, DAY + MIN, step=10000)
    r.t -= 5 * DAY
    r.feed(100.0, 2 * DAY, step=10000)
    reports = [f for _, _, _, f in r.of("energy_report")]
    assert len(reports) == 3
    assert reports[1]["since"] < reports[1]["until"]     # from the new time, not the old


def test_an_ack_with_no_alarm_raised_keeps_the_learnt_baseline():
    # Any client's stray ack threw away weeks of learning.
    r = Run(learn=5)
    _cycles(r, [100.0] * 6)
    assert r.d.ack("maintenance_due") == {"relearn": False}
    assert r.d.ack(None) == {"relearn": False}
    st = r.d.state()
    assert st["learned"] and st["baseline"] == 100.0
