# agent/sampler.py's path of a value: plausibility, the insight's look, the median, the
# resolution, thresholds with hysteresis, the deadband, uncertain counts. Both interpreters.
# At 64k the deadband test sat at the edge of the heap's layout (it failed once the buffer's and
# the sampler's code grew by a few hundred bytes in December); it passes at 68k: 80k.
MICROPYTHON_HEAP = "88k"

from agent.clock import FakeClock
from agent.sampler import Sampler, Threshold
from samplerkit import EventList, Fake, Rows, channel, run


def test_median_removes_a_spike_and_plausibility_rejects_out_of_range_values():
    clock = FakeClock()
    rows = Rows()
    seq = [5.0, 5.0, 90.0, 5.0, 5.0, 150.0, 5.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), filters={"median": 3, "min": 0, "max": 100})
    s = Sampler(clock, rows, None, [c])
    run(s, clock, 70000)
    assert [r[2] for r in rows.rows] == [50, 50, 50, 50, 50, 50]  # the 90 spike is out-voted
    assert c.errors == {"implausible": 1}  # 150 is not a reading


def test_nan_and_infinite_values_are_counted_implausible_and_the_sampler_goes_on():
    # A driver's NaN or infinity (a calibration dividing by zero) passed the limits, and its
    # rounding to the resolution raised out of the sampler: the board reset, into safe mode.
    clock = FakeClock()
    rows = Rows()
    seq = [5.0, float("nan"), float("inf"), -float("inf"), 6.0]
    bare = channel(0, Fake(lambda n: {"x": seq[n]}))
    limited = channel(1, Fake(lambda n: {"x": seq[n]}), filters={"min": 0, "max": 100})
    s = Sampler(clock, rows, None, [bare, limited])
    run(s, clock, 50000)
    assert sorted(r[1:] for r in rows.rows) == [(0, 50), (0, 60), (1, 50), (1, 60)]
    assert bare.errors == limited.errors == {"implausible": 3}


def test_a_failing_sensor_that_gives_nan_has_not_recovered():
    # Its NaN cleared the sensor_error (carrying the NaN) before it was refused
    from hal.bus import SensorError
    clock = FakeClock()
    rows = Rows()
    events = EventList()
    c = channel(0, Fake(lambda n: {"x": float("nan") if n == 1 else 7.0},
                        fail=lambda n: SensorError("X", "i2c0", "did not acknowledge", "nack")
                        if n == 0 else None))
    s = Sampler(clock, rows, events, [c])
    run(s, clock, 60000)
    said = [(e[1], e[3], e[4]) for e in events.got]
    assert said == [("sensor_error", "raised", None), ("sensor_error", "cleared", 7.0)], said
    assert c.errors == {"nack": 1, "implausible": 1} and rows.rows[0][2] == 70


def test_a_sensor_that_recovers_says_its_reading_at_the_channels_resolution():
    # as a threshold's event does: it carried the driver's 7.501335164415963
    from hal.bus import SensorError
    clock = FakeClock()
    events = EventList()
    c = channel(0, Fake(lambda n: {"x": 7.501335164415963},
                        fail=lambda n: SensorError("X", "i2c0", "did not acknowledge", "nack")
                        if n == 0 else None))
    run(Sampler(clock, Rows(), events, [c]), clock, 20000)
    assert [(e[1], e[3], e[4]) for e in events.got] == [
        ("sensor_error", "raised", None), ("sensor_error", "cleared", 7.5)]


def test_the_insight_sees_every_plausible_value_unsmoothed_and_its_fault_costs_no_reading():
    clock = FakeClock(unix_ms=1763856000000)
    rows = Rows()
    seq = [5.0, 5.0, 90.0, 150.0, 5.0, 5.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), filters={"median": 3, "min": 0, "max": 100,
                                                             "deadband": 1})
    seen = []

    def insight(t, v, synced):
        seen.append((t - 1763856000000, v, synced))
        if v > 50:
            raise ValueError("a detector's bug")
    c.insight = insight
    run(Sampler(clock, rows, None, [c]), clock, 60000)
    # The spike reaches the insight (the median hides it from the buffer); 150 is implausible.
    assert seen == [(0, 5.0, True), (10000, 5.0, True), (20000, 90.0, True), (40000, 5.0, True),
                    (50000, 5.0, True)]
    assert c.errors == {"implausible": 1, "insight": 1}
    assert [r[2] for r in rows.rows] == [50]  # the readings went on: the deadband held the rest
    assert c.readings == 1 and c.suppressed == 4


def test_deadband_buffers_only_changes_at_least_as_big_as_it():
    clock = FakeClock()
    rows = Rows()
    # As stored at 0.1: 20.0, 20.1 (held: 0.1), 20.2 (kept: exactly 0.2, which rounded floats
    # called 0.19999999999999929 and held back), 20.3 and 20.2 (held), 19.0
    seq = [20.0, 20.1, 20.15, 20.3, 20.25, 19.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), filters={"deadband": 0.2})
    run(Sampler(clock, rows, None, [c]), clock, 60000)
    assert [r[2] for r in rows.rows] == [200, 202, 190]
    assert c.suppressed == 3 and c.readings == 3
    for dead, steps in ((0.2, 2), (0.15, 2), (0.25, 3), (0.3, 3), (0, 0)):
        assert channel(0, None, filters={"deadband": dead}).deadband == steps, dead


def test_threshold_raises_once_and_clears_only_past_the_hysteresis():
    clock = FakeClock(unix_ms=1763856000000)
    rows = Rows()
    ev = EventList()
    # Ink falls through 15 %, wobbles around it, then a new cartridge.
    seq = [20, 16, 14.9, 15.2, 14.8, 16.9, 15.5, 17.0, 13, 80]
    th = Threshold("ink_low", 15, False, 2)
    c = channel(0, Fake(lambda n: {"x": seq[n]}), thresholds=[th])
    run(Sampler(clock, rows, ev, [c]), clock, 100000)
    assert [(e[1], e[3], e[4]) for e in ev.got] == [
        ("ink_low", "raised", 14.9), ("ink_low", "cleared", 17.0), ("ink_low", "raised", 13),
        ("ink_low", "cleared", 80)]
    assert ev.got[0][0] == 1763856000000 + 20000


def test_a_threshold_judges_the_reading_as_stored_at_its_resolution():
    # Resolution 0.1: 21.04 is stored as 21.0 and must not raise "above 21"; 21.06 is 21.1,
    # and the event carries 21.1, the stored reading, not 21.06.
    clock = FakeClock(unix_ms=1763856000000)
    rows = Rows()
    ev = EventList()
    seq = [20.0, 21.04, 20.999847, 21.06, 20.04]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), thresholds=[Threshold("warm", 21, True, 1)])
    run(Sampler(clock, rows, ev, [c]), clock, 50000)
    assert [r[2] for r in rows.rows] == [200, 210, 210, 211, 200]
    assert [(e[1], e[3], e[4]) for e in ev.got] == [("warm", "raised", 21.1),
                                                    ("warm", "cleared", 20.0)]


def test_an_alarm_threshold_says_alarm_and_tells_its_state_at_the_first_reading_after_boot():
    # The console lists a standing alarm (docs/console.md): the device says which ones are, and
    # a restart with the cabinet cool again sends `cleared` (the state starts afresh at boot,
    # and a fridge restarted during an alarm stayed listed for good). Other thresholds say
    # nothing until crossed.
    clock = FakeClock(unix_ms=1763856000000)
    ev = EventList()
    seq = [5.0, 5.5, 9.0, 6.0, 5.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}),
                thresholds=[Threshold("warm", 8, True, 1, alarm=True),
                            Threshold("cold", 2, False, 0),
                            Threshold("above_4", 4, True, 0)])
    run(Sampler(clock, Rows(), ev, [c]), clock, 50000)
    assert [(e[1], e[3], e[5]) for e in ev.got] == [
        ("warm", "cleared", "alarm"), ("above_4", "raised", None),
        ("warm", "raised", "alarm"), ("warm", "cleared", "alarm")]
    th = Threshold("warm", 8, True, 1, alarm=True)   # beyond at the first reading: raised once
    assert [th.check(v) for v in (9, 9.5, 6)] == ["raised", None, "cleared"]


def test_a_bands_two_ends_tell_one_state_of_their_one_event():
    # at boot the crossed end raised it and the other then cleared it, the newest event saying
    # "not standing" at 10 C; a jump across the band likewise
    clock = FakeClock(unix_ms=1763856000000)
    ev = EventList()
    seq = [10.0, 5.0, -1.0, 10.0, 5.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}),
                thresholds=[Threshold("out_of_range", 8, True, 1, alarm=True),
                            Threshold("out_of_range", 0, False, 1, alarm=True)])
    run(Sampler(clock, Rows(), ev, [c]), clock, 50000)
    assert [(e[3], e[4]) for e in ev.got] == [
        ("raised", 10.0), ("cleared", 5.0), ("raised", -1.0), ("raised", 10.0),
        ("cleared", 5.0)]


def test_threshold_above_works_the_other_way():
    th = Threshold("hot", 30, True, 1)
    assert [th.check(v) for v in (29, 30.5, 31, 29.5, 29.0, 31)] == [
        None, "raised", None, None, "cleared", "raised"]


def test_uncertain_pill_counts_raise_and_clear_an_event():
    clock = FakeClock()
    ev = EventList()
    seq = [(30, True), (29, False), (29, False), (29, True)]
    c = channel(2, Fake(lambda n: {"count": seq[n][0], "count_confident": seq[n][1]}), "count")
    run(Sampler(clock, Rows(), ev, [c]), clock, 40000)
    assert [(e[1], e[3]) for e in ev.got] == [("uncertain_count", "raised"),
                                              ("uncertain_count", "cleared")]


def test_a_count_the_driver_is_not_sure_of_reaches_the_insight_as_nan():
    # A bottle of one pill lifted off the scale reads 0 pills, unconfident: fed as 0, the
    # adherence detector took it for the dose.
    clock = FakeClock(unix_ms=1763856000000)
    seq = [(1, True), (0, False), (1, True)]
    c = channel(0, Fake(lambda n: {"x": seq[n][0], "x_confident": seq[n][1]}))
    seen = []
    c.insight = lambda t, v, synced: seen.append(v)
    run(Sampler(clock, Rows(), None, [c]), clock, 30000)
    assert seen[0] == 1 and seen[1] != seen[1] and seen[2] == 1  # NaN is not itself


def test_a_count_the_driver_is_not_sure_of_raises_no_threshold_and_stays_out_of_the_median():
    # A bottle of 60 lifted off the scale for a minute reads 0, unconfident: its refill_soon
    # (below 10) was raised at every lift, and the 0s stayed in the median window after the
    # bottle was back. Stored as read all the same: nothing the sensor said is hidden.
    clock = FakeClock(unix_ms=1763856000000)
    rows = Rows()
    ev = EventList()
    seq = [(60, True), (60, True), (0, False), (0, False), (0, False), (59, True), (59, True)]
    c = channel(0, Fake(lambda n: {"x": seq[n][0], "x_confident": seq[n][1]}),
                filters={"median": 3}, thresholds=[Threshold("refill_soon", 10, False, 2)])
    run(Sampler(clock, rows, ev, [c]), clock, 70000)
    assert [e[1] for e in ev.got if e[1] == "refill_soon"] == []
    assert [r[2] for r in rows.rows] == [600, 600, 0, 0, 0, 600, 590]
