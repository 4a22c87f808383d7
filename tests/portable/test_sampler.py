# agent/sampler.py over days of device time on a FakeClock: schedules, shared chips, failing
# sensors with backoff, clock sync, the channels' rounding (filters and thresholds:
# test_sampler_filters.py). Both interpreters. The sampler with the buffer and events behind it
# is in test_sampler_storage.py. It ran at 64k until December's buffer code (write errors, a
# full disk): four of its tests then failed at 64k in a fresh clone's path, and passed at 72k.
MICROPYTHON_HEAP = "96k"

from agent.clock import FakeClock
from agent.sampler import Sampler
from agent.schema import Schema
from hal.bus import SensorError
from samplerkit import DAY, EventList, Fake, Rows, channel, run


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


def test_an_exception_no_driver_meant_is_told_with_its_type():
    # "index out of range" from a driver's bug read as a broken sensor's own words
    clock = FakeClock()
    ev = EventList()
    bug = Fake(lambda n: {"x": [][1]})
    nack = Fake(lambda n: {"x": 1.0},
                lambda n: SensorError("INA219", "i2c0:0x40", "did not acknowledge", "nack"))
    s = Sampler(clock, Rows(), ev, [channel(0, bug), channel(1, nack)])
    run(s, clock, 1000)
    assert [e[5] for e in ev.got] == ["IndexError: " + _index_error(),  # its words differ
                                      "INA219 at i2c0:0x40 did not acknowledge"]


def _index_error():
    try:
        [][1]
    except IndexError as exc:
        return str(exc)


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
