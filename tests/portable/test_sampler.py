# agent/sampler.py over days of device time on a FakeClock: schedules, shared chips, filters,
# thresholds with hysteresis, failing sensors with backoff, clock sync. Both interpreters.
# Runs at a 64k heap under MicroPython: the sampler with the buffer and events behind it is in
# test_sampler_storage.py.
from agent.clock import FakeClock
from agent.sampler import Channel, Sampler, Threshold
from agent.schema import Schema
from hal.bus import SensorError

DAY = 86400000
SCHEMA = Schema([("a", "", 1, -1), ("b", "", 1, -1), ("c", "", 1, 0)])


class Fake:
    """A driver whose readings come from a function of the call number."""

    def __init__(self, values, fail=None):
        self.values = values    # n -> {quantity: value}
        self.fail = fail        # n -> SensorError or None
        self.calls = 0
        self.setups = 0

    def setup(self):
        self.setups += 1

    def measure(self):
        n = self.calls
        self.calls += 1
        if self.fail is not None:
            exc = self.fail(n)
            if exc is not None:
                raise exc
        return self.values(n)


class Rows:
    """A buffer stand-in that keeps what it is given (with keep=False only counts and checks
    the cadence, for runs of days)."""

    def __init__(self, keep=True):
        self.rows = []
        self.synced = []
        self.keep = keep
        self.count = {}
        self.last = {}
        self.irregular = 0

    def append(self, t, channel, value):
        if self.keep:
            self.rows.append((t, channel, value))
        self.count[channel] = self.count.get(channel, 0) + 1
        if channel in self.last and t - self.last[channel] != (10000 if channel == 0 else 60000):
            self.irregular += 1
        self.last[channel] = t

    def set_synced(self, synced):
        if not self.synced or self.synced[-1] != synced:
            self.synced.append(synced)


class EventList:
    def __init__(self):
        self.got = []

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        self.got.append((t, event, sensor, state, value, detail))


def scaler(i):
    return lambda v: SCHEMA.scale(i, v)


def channel(i, source, quantity="x", interval=10000, filters=None, thresholds=()):
    return Channel(i, SCHEMA.names[i], source, quantity, interval, scaler(i), filters or {},
                   list(thresholds))


def run(sampler, clock, until):
    while clock.monotonic() < until:
        wait = sampler.step()
        clock.advance(max(wait, 1))


def test_each_sensor_is_read_at_its_interval_for_days():
    clock = FakeClock()
    rows = Rows(keep=False)
    fa = Fake(lambda n: {"x": 1.0})
    fb = Fake(lambda n: {"x": 2.0})
    s = Sampler(clock, rows, None, [channel(0, fa, interval=10000), channel(1, fb, interval=60000)])
    run(s, clock, 3 * DAY)
    assert rows.count == {0: 3 * 8640, 1: 3 * 1440}
    assert rows.irregular == 0 and rows.last == {0: 3 * DAY - 10000, 1: 3 * DAY - 60000}
    assert fa.setups == 1


def test_quantities_of_one_chip_are_read_with_one_transaction_per_round():
    clock = FakeClock()
    rows = Rows()
    chip = Fake(lambda n: {"power": 12.5, "energy": 100 + n})
    s = Sampler(clock, rows, None, [channel(0, chip, "power"), channel(2, chip, "energy")])
    run(s, clock, 100000)
    assert chip.calls == 10
    assert rows.rows[:2] == [(0, 0, 125), (0, 2, 100)] and rows.rows[-1] == (90000, 2, 109)


def test_median_removes_a_spike_and_plausibility_rejects_out_of_range_values():
    clock = FakeClock()
    rows = Rows()
    seq = [5.0, 5.0, 90.0, 5.0, 5.0, 150.0, 5.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), filters={"median": 3, "min": 0, "max": 100})
    s = Sampler(clock, rows, None, [c])
    run(s, clock, 70000)
    assert [r[2] for r in rows.rows] == [50, 50, 50, 50, 50, 50]  # the 90 spike is out-voted
    assert c.errors == {"implausible": 1}  # 150 is not a reading


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
    seq = [20.0, 20.1, 20.15, 20.3, 20.25, 19.0]
    c = channel(0, Fake(lambda n: {"x": seq[n]}), filters={"deadband": 0.2})
    run(Sampler(clock, rows, None, [c]), clock, 60000)
    assert [r[2] for r in rows.rows] == [200, 203, 190]
    assert c.suppressed == 3 and c.readings == 3


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


def test_threshold_above_works_the_other_way():
    th = Threshold("hot", 30, True, 1)
    assert [th.check(v) for v in (29, 30.5, 31, 29.5, 29.0, 31)] == [
        None, "raised", None, None, "cleared", "raised"]


def test_a_failing_sensor_backs_off_while_the_others_keep_their_schedule():
    clock = FakeClock()
    rows = Rows(keep=False)
    ev = EventList()
    fails = lambda n: SensorError("INA219", "i2c0:0x40", "did not acknowledge", "nack") \
        if 1 <= n <= 6 else None
    bad = Fake(lambda n: {"x": 3.0}, fails)
    good = Fake(lambda n: {"x": 1.0})
    cb = channel(0, bad, interval=10000)
    s = Sampler(clock, rows, ev, [cb, channel(1, good, interval=10000)])
    attempts = []
    while clock.monotonic() < 2000000:
        before = bad.calls
        s.step()
        if bad.calls != before and len(attempts) < 9:
            attempts.append(clock.monotonic())
        clock.advance(1000)
    # Tries at 0 (ok), then failures at 10 s and after 10, 20, 40, 80, 160 s and the 5-minute
    # cap, then success.
    assert attempts[:8] == [0, 10000, 20000, 40000, 80000, 160000, 320000, 620000]
    assert attempts[8] - attempts[7] == 10000  # back to the normal interval
    assert cb.errors == {"nack": 6}
    assert rows.count[1] == 200  # every 10 s, undisturbed
    assert [(e[1], e[3]) for e in ev.got] == [("sensor_error", "raised"),
                                              ("sensor_error", "cleared")]
    assert ev.got[0][5] == "INA219 at i2c0:0x40 did not acknowledge"
    assert bad.setups == 7  # set up again after every failure


def test_backoff_is_capped_at_five_minutes():
    clock = FakeClock()
    bad = Fake(lambda n: {}, lambda n: SensorError("HX711", "pins 4/5", "not ready", "timeout"))
    c = channel(0, bad, interval=10000)
    s = Sampler(clock, Rows(keep=False), None, [c])
    attempts = 0
    last = None
    gaps = []
    while clock.monotonic() < DAY:
        before = bad.calls
        s.step()
        if bad.calls != before:
            attempts += 1
            if last is not None and len(gaps) < 12:
                gaps.append(clock.monotonic() - last)
            last = clock.monotonic()
        clock.advance(1000)
    assert gaps == [10000, 20000, 40000, 80000, 160000] + [300000] * 7
    assert c.errors["timeout"] == attempts == 5 + (DAY - 310000) // 300000 + 1


def test_a_missing_quantity_is_a_fault_not_a_crash():
    clock = FakeClock()
    c = channel(0, Fake(lambda n: {"other": 1}), quantity="x")
    s = Sampler(clock, Rows(), None, [c])
    run(s, clock, 30000)
    assert c.errors == {"error": 2} and c.readings == 0  # at 0 s, then 10 s later


def test_uncertain_pill_counts_raise_and_clear_an_event():
    clock = FakeClock()
    ev = EventList()
    seq = [(30, True), (29, False), (29, False), (29, True)]
    c = channel(2, Fake(lambda n: {"count": seq[n][0], "count_confident": seq[n][1]}), "count")
    run(Sampler(clock, Rows(), ev, [c]), clock, 40000)
    assert [(e[1], e[3]) for e in ev.got] == [("uncertain_count", "raised"),
                                              ("uncertain_count", "cleared")]


def test_a_channels_scaler_rounds_as_its_resolution_says():
    # (mantissa, exponent): 0.1, 0.05, 1, 5, 1000 and 0.001 per step
    schema = Schema([("a", "", 1, -1), ("b", "", 5, -2), ("c", "", 1, 0), ("d", "", 5, 0),
                     ("e", "", 1, 3), ("f", "", 1, -3)])
    for i, (_, _, m, e) in enumerate(schema.channels):
        scale = schema.scaler(i)
        for k in range(-400, 400):
            v = k * 0.37 + 0.5
            want = round(v / (m * 10 ** e)) if e >= 0 else round(v * 10 ** -e / m)
            assert scale(v) == want == schema.scale(i, v), (i, v)
    assert schema.scaler(1)(0.125) == 2 and schema.scaler(0)(-0.34) == -3
    assert schema.scaler(4)(2600) == 3 and schema.scaler(5)(0.0124) == 12
