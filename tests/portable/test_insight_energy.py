# agent/insights/energy.py on hand-made power sequences with known answers: a cycle and its
# programme, standby and the daily report at local midnight, a spike that must not alarm, a slow
# drift that must, ack learning again, the motor features, bad settings. Both interpreters.
# Across a reboot: test_insight_energy_reboot.py.
from energykit import DAY, HOUR, MIN, T0, Run, cycles as _cycles
from support import FLOAT32

# The detector compiled from source in RAM beside this module and a day of readings: at 64k its
# settings' upper bounds (some hundred bytes of bytecode) tipped the set() test into a
# MemoryError by the heap's layout; 72k passed. A board loads it as .mpy (bench/heap.py).
MICROPYTHON_HEAP = "88k"

def test_a_cycle_has_its_start_end_energy_peak_and_programme():
    r = Run(programmes=[{"name": "cotton 60", "duration_ms": HOUR, "energy_wh": 500},
                        {"name": "quick 30", "duration_ms": 20 * MIN, "energy_wh": 150}])
    r.feed(1.0, 10 * MIN)
    start = r.t
    r.feed(500.0, 30 * MIN)
    r.feed(2000.0, 5000)                 # one heater reading
    r.feed(2.0, 2 * MIN)                 # a pause under the standby level, shorter than 3 min
    r.feed(500.0, 30 * MIN - 5000 - 2 * MIN)
    end = r.t
    r.feed(1.0, 2 * MIN)
    assert r.of("cycle") == []           # not over until 3 min under the standby level
    r.feed(1.0, 10 * MIN)
    (t, _, value, f), = r.of("cycle")
    assert f["start"] == start and f["end"] == end and t == end + 3 * MIN
    assert f["duration_s"] == 3600 and f["peak_w"] == 2000.0
    # 500 W for 58 min, the heater's reading (its 5 s), the pause's 2 W left out (standby)
    wh = (500.0 * (58 * 60 - 5) + 2000.0 * 5) / 3600.0
    assert abs(f["energy_wh"] - wh) < 0.01 and value == f["energy_wh"]
    assert f["programme"] == "cotton 60"
    assert f["watch"] == "energy" and abs(f["feature"] - wh) < 0.01


def test_a_cycle_far_from_every_signature_has_no_programme():
    r = Run(programmes=[{"name": "cotton 60", "duration_ms": HOUR, "energy_wh": 500}])
    r.cycle(500.0, 20)                   # a third of the time: no signature is that short
    (_, _, _, f), = r.of("cycle")
    assert f["programme"] is None


def test_standby_and_the_daily_report_come_at_local_midnight():
    r = Run(utc_offset_min=60, tariff=0.25, co2_g_per_kwh=300, currency="CHF")
    r.feed(2.0, 2 * HOUR, step=10000, synced=False)      # no clock yet: no report
    assert r.of("energy_report") == []
    r.feed(2.0, 21 * HOUR, step=10000)                    # up to 23:00 UTC, local midnight
    assert r.of("energy_report") == []
    r.feed(2.0, 10000, step=10000)                        # the reading at 23:00
    (t, _, value, f), = r.of("energy_report")
    assert t == T0 + 23 * HOUR and f["until"] == T0 + 23 * HOUR and f["since"] == T0
    # 2 W over 23 h, less the first reading's unknown period: readings every 10 s from T0
    kwh = 2.0 * (23 * 3600 - 10) / 3.6e6
    assert abs(f["kwh"] - kwh) < 1e-4 and value == f["kwh"]
    assert f["standby_kwh"] == f["kwh"] and f["cycles"] == 0
    assert abs(f["co2_g"] - kwh * 300) < 0.1 and abs(f["cost"] - kwh * 0.25) < 1e-4
    assert f["currency"] == "CHF"
    r.feed(lambda i: 500.0 if 4000 <= i < 4060 else 2.0, DAY, step=10000)   # a 10-min cycle
    second = r.of("energy_report")[1]
    assert second[0] == T0 + 47 * HOUR and second[3]["cycles"] == 1
    assert abs(second[3]["kwh"] - (500.0 * 600 + 2.0 * (DAY / 1000 - 600)) / 3.6e6) < 1e-4
    assert abs(second[3]["standby_kwh"] - 2.0 * (DAY / 1000 - 600) / 3.6e6) < 1e-4


def test_a_spike_does_not_alarm_and_a_slow_drift_does():
    r = Run(learn=5)
    normal = [100.0, 101.0, 99.0, 100.5, 99.5]
    _cycles(r, normal)
    assert r.d.state()["learned"]
    _cycles(r, [300.0])                                   # one odd cycle: the chart barely moves
    _cycles(r, normal * 4)
    assert r.of("maintenance_due") == []
    _cycles(r, [100.0 * (1 + 0.01 * i) for i in range(1, 40)])   # +1 % a cycle
    (t, _, drift, f), = r.of("maintenance_due")
    assert f["watch"] == "energy" and f["baseline"] == 100.0
    assert f["drift_pct"] == drift and drift > 3 and f["cusum"] >= 6
    # The drift is found a few cycles past 3 % (the spread's floor), not at the end (+39 %).
    assert 103 < f["recent"] < 112 and 5 <= f["cycles"] <= 40
    # floats, as docs/insights/energy.md says: a whole slack was sent as an int
    assert isinstance(f["slack"], float) and isinstance(f["limit"], float), f
    assert r.d.state()["alarmed"]


def test_two_alarm_free_months_of_noise_around_the_baseline():
    r = Run(learn=5)
    noise = [100.0, 102.0, 98.0, 101.5, 98.5, 100.5, 103.0, 97.0]
    _cycles(r, noise * 10)
    assert r.of("maintenance_due") == [] and r.d.state()["cusum"] < 1


def test_ack_learns_the_baseline_again():
    r = Run(learn=5)
    _cycles(r, [100.0] * 5 + [130.0] * 10)
    assert len(r.of("maintenance_due")) == 1
    _cycles(r, [150.0] * 10)
    assert len(r.of("maintenance_due")) == 1                # raised once
    assert r.d.ack("cycle") is None
    assert r.d.ack("maintenance_due") == {"relearn": True}
    st = r.d.state()
    assert not st["learned"] and not st["alarmed"] and st["cusum"] == 0
    _cycles(r, [150.0] * 15)                                 # serviced: its new normal
    assert r.d.state()["baseline"] == 150.0 and len(r.of("maintenance_due")) == 1
    _cycles(r, [200.0] * 5)
    assert len(r.of("maintenance_due")) == 2


def _wash(r, spike, turn, reversals, heater=True):
    """A drum reversing every 5 readings (5 s): pause, spike, turning x3."""
    if heater:
        r.feed(2000.0, 10 * MIN)
    r.feed([10.0, spike, turn, turn, turn], reversals * 25000)


def test_the_reversal_feature_is_the_main_washs_spike_over_turning_whatever_the_load():
    for load in (0.8, 1.0, 1.3):
        r = Run(watch="reversal")
        r.feed(1.0, 10 * MIN)
        _wash(r, 90.0 * load * 2.5, 90.0 * load, 8, heater=False)     # fill: another ratio
        _wash(r, 400.0 * load, 200.0 * load, 40)                     # the main wash
        r.feed(45.0, MIN)                                            # drain
        _wash(r, 400.0 * load, 180.0 * load, 12, heater=False)       # a rinse: shorter
        r.feed(500.0 * load, 6 * MIN)                                # spin
        r.feed(1.0, 10 * MIN)
        (_, _, _, f), = r.of("cycle")
        assert f["watch"] == "reversal" and f["reversals"] == 40
        assert abs(f["feature"] - 2.0) < 1e-3


def test_the_capacity_feature_is_one_over_on_plus_one_over_off():
    r = Run(watch="capacity", on_w=20, off_w=10, end_ms=MIN, batch=3, learn=3)
    for _ in range(5):
        r.feed(2.0, 40 * MIN, step=10000)
        r.feed(90.0, 20 * MIN, step=10000)
    r.feed(2.0, 10 * MIN, step=10000)
    cycles = r.of("cycle")
    assert len(cycles) == 5 and cycles[0][3]["feature"] is None      # no off time before it
    assert cycles[0][3]["batch"] == 3       # what a chart of the cycles alone groups them by
    for c in cycles[1:]:
        assert abs(c[3]["feature"] - 4.5) < 0.01                     # 3 / h + 1.5 / h
    # batches of 3: the first four features make one point, learning goes on
    assert r.d.state()["learning"] == 1 and not r.d.state()["learned"]
    assert r.d.state()["featureless"] == 1                          # the first, with no off time


def test_a_watch_that_does_not_fit_the_appliance_shows_in_its_state():
    # A fridge watched for a drum's reversals gives no figure: it never learnt, and nothing said.
    r = Run(watch="reversal", on_w=20, off_w=10, end_ms=MIN, learn=3)
    for _ in range(4):
        r.feed(2.0, 40 * MIN, step=10000)
        r.feed(90.0, 20 * MIN, step=10000)
    r.feed(2.0, 10 * MIN, step=10000)
    st = r.d.state()
    assert st["cycles"] == 4 and st["featureless"] == 4 and st["learning"] == 0


def _refused(d, args, words):
    before = d.settings()
    try:
        d.set(args)
    except ValueError as e:
        assert words in str(e), (str(e), words)
        assert d.settings() == before
        return
    assert False, "accepted %r" % (args,)


def test_settings_change_the_report_and_bad_ones_are_refused_with_a_reason():
    r = Run()
    d = r.d
    got = d.set({"tariff": 0.4, "currency": "GBP", "grid_intensity": 180, "drift_limit": 8})
    assert got["tariff"] == 0.4 and got["currency"] == "GBP" and got["grid_intensity"] == 180
    assert got["drift_limit"] == 8 and got["cycle_above"] == 10
    _refused(d, {}, "expected a map")
    _refused(d, "tariff", "expected a map")
    _refused(d, {"tarif": 1}, "unknown setting 'tarif'")
    _refused(d, {"tariff": -1}, "tariff: expected a number >= 0")
    _refused(d, {"tariff": "cheap"}, "tariff: expected a number")
    _refused(d, {"tariff": True}, "tariff: expected a number")
    _refused(d, {"drift_slack": 0}, "drift_slack: expected a number > 0")
    _refused(d, {"grid_intensity": float("nan")}, "grid_intensity: expected a number")
    _refused(d, {"currency": ""}, "currency: expected a short text")
    _refused(d, {"currency": 3}, "currency: expected a short text")
    _refused(d, {"currency": "\x00\x00"}, "currency: expected a short text")  # into every report
    _refused(d, {"standby_below": 20}, "standby_below (20 W) must be under cycle_above")
    _refused(d, {"tariff": 0.1, "cycle_above": 4}, "must be under cycle_above (4 W)")
    # one odd cycle adds at most 3 - drift_slack: a limit there would alarm on a spike
    _refused(d, {"drift_slack": 0.5, "drift_limit": 2.5}, "drift_limit (2.5) must be above 2.5")
    _refused(d, {"drift_slack": 2, "drift_limit": 1}, "drift_limit (1) must be above 1")
    # 3 - 2.9 is 0.10000000000000009 in doubles: said as the 0.1 it is
    _refused(d, {"drift_slack": 2.9, "drift_limit": 0.1}, "must be above 0.1, 3 - drift_slack")
    # a tariff of 1e308 priced a day at infinity (already inf in an ESP32's floats, and refused
    # as one); a slack of 3 or more never alarms
    if not FLOAT32:
        _refused(d, {"tariff": 1e308}, "tariff: expected a number up to 1000000, got 1e+308")
    _refused(d, {"tariff": 1e30}, "tariff: expected a number up to 1000000, got 1e+30")
    # MicroPython compares a bignum with inf as a float: it said "expected a number"
    _refused(d, {"tariff": 2 ** 1100}, "tariff: expected a number up to 1000000, got <int")
    _refused(d, {"tariff": -2 ** 1100}, "tariff: expected a number >= 0, got <int")
    _refused(d, {"grid_intensity": 20000}, "grid_intensity: expected a number up to 10000")
    _refused(d, {"cycle_above": 2e6}, "cycle_above: expected a number up to 1000000")
    _refused(d, {"drift_slack": 3}, "drift_slack: expected a number under 3")
    _refused(d, {"drift_limit": 1001}, "drift_limit: expected a number up to 1000")
    # kg for g: the profile refused it, set() took it and every co2_g was 1000 times too small
    _refused(d, {"grid_intensity": 0.4}, "grid_intensity: expected grams of CO2 per kWh")
    # into every report: C1 controls and the marks that reorder a dashboard's text
    _refused(d, {"currency": "A\x85B"}, "currency: expected a short text")
    _refused(d, {"currency": "\u202eRUE"}, "currency: expected a short text")
    assert d.set({"grid_intensity": 0})["grid_intensity"] == 0  # none given: no CO2
    assert d.set({"grid_intensity": 180})["grid_intensity"] == 180
    assert str(d.set({"tariff": -0.0})["tariff"]) == "0.0"  # not "-0.0" in every report
    d.set({"tariff": 0.4})
    assert d.settings()["drift_limit"] == 8 and d.settings()["drift_slack"] == 1
    r.feed(1000.0, HOUR + 5000, step=5000)
    r.feed(1000.0, DAY - HOUR, step=5000)
    (_, _, _, f), = r.of("energy_report")
    assert abs(f["cost"] - f["kwh"] * 0.4) < 1e-4 and f["currency"] == "GBP"
    assert abs(f["co2_g"] - f["kwh"] * 180) < 0.1


def test_a_new_tariff_prices_the_energy_from_then_and_a_new_currency_the_whole_day():
    # A set at noon once repriced the morning too.
    r = Run()                                   # tariff 0.3 EUR, report at midnight UTC
    r.feed(1000.0, 12 * HOUR, step=5000)        # 12 kWh at 0.3
    r.d.set({"tariff": 0.5})
    r.feed(1000.0, 12 * HOUR + 5000, step=5000)  # 12 kWh at 0.5, then the report
    (_, _, _, f), = r.of("energy_report")
    assert abs(f["kwh"] - 24.0) < 0.01 and abs(f["cost"] - (12 * 0.3 + 12 * 0.5)) < 0.01
    assert f["currency"] == "EUR"
    r.feed(1000.0, 6 * HOUR, step=5000)
    r.d.set({"tariff": 0.2, "currency": "CHF"})  # one currency a day: the morning at 0.2 too
    r.feed(1000.0, 6 * HOUR, step=5000)
    r.d.set({"tariff": 0.4, "currency": "CHF"})  # the same currency sent again: no repricing
    r.feed(1000.0, 12 * HOUR, step=5000)
    f = r.of("energy_report")[-1][3]
    assert abs(f["cost"] - (12 * 0.2 + 12 * 0.4)) < 0.01 and f["currency"] == "CHF"


def test_a_new_grid_intensity_weighs_the_energy_from_then_not_the_whole_day():
    # The cloud sets the grid's intensity as it changes: the whole day was weighed at the last
    r = Run(co2_g_per_kwh=100)                  # report at midnight UTC
    r.feed(1000.0, 23 * HOUR, step=5000)        # 23 kWh at 100 g
    r.d.set({"grid_intensity": 800})
    r.feed(1000.0, HOUR + 5000, step=5000)      # 1 kWh at 800 g, then the report
    (_, _, _, f), = r.of("energy_report")
    assert abs(f["kwh"] - 24.0) < 0.01 and abs(f["co2_g"] - (23 * 100 + 800)) < 2, f
    r.feed(1000.0, DAY, step=5000)              # the next day all at 800
    assert abs(r.of("energy_report")[-1][3]["co2_g"] - 24 * 800) < 2


def test_a_utc_offset_set_for_summer_time_closes_the_day_at_the_new_local_midnight():
    # Zones here have no daylight saving time: where clocks change the cloud sets the offset,
    # as it does a pill bottle's (it was refused: the report kept winter's midnight all summer)
    r = Run(utc_offset_min=60)                  # local midnight at 23:00 UTC
    r.feed(100.0, 12 * HOUR)
    assert r.d.set({"utc_offset_min": 120})["utc_offset_min"] == 120
    r.feed(100.0, 10 * HOUR + 5000)             # past 22:00 UTC: midnight at +02:00
    (t, _, _, f), = r.of("energy_report")
    assert f["until"] == T0 + 22 * HOUR and t == T0 + 22 * HOUR, f
    r.feed(100.0, DAY)
    assert r.of("energy_report")[-1][3]["until"] == T0 + DAY + 22 * HOUR
    assert r.d.set({"utc_offset_min": 60})["utc_offset_min"] == 60     # back to winter
    r.feed(100.0, DAY + HOUR)                   # the day under way closes an hour later
    (t, _, _, f) = r.of("energy_report")[-1]
    assert f["until"] == T0 + 2 * DAY + 23 * HOUR and f["since"] == T0 + DAY + 22 * HOUR
    r = Run(utc_offset_min=60)                  # the offset sent late: at 22:30 UTC, for 22:00
    r.feed(100.0, 22 * HOUR + 30 * MIN)
    r.d.set({"utc_offset_min": 120})
    r.feed(100.0, MIN)
    (_, _, kwh, f), = r.of("energy_report")
    assert f["until"] == T0 + 22 * HOUR + 30 * MIN - 5000 and abs(kwh - 2.25) < 0.001, f
    for bad in (60.5, True, -841, 841, "+02:00", None):
        _refused(r.d, {"utc_offset_min": bad}, "utc_offset_min: expected whole minutes")


def test_a_device_off_for_days_closes_the_day_it_was_off_in_not_the_day_it_came_back():
    # A dashboard keyed on `until` put a wash before three days off on the day it came back
    r = Run()
    r.feed(1.0, 20 * HOUR)                      # on until 20:00
    last = r.t - 5000
    r.t += 3 * DAY + 13 * HOUR                  # back on the 5th at 09:00
    r.feed(1.0, HOUR)
    (t, _, _, f), = r.of("energy_report")
    assert f["since"] == T0 and f["until"] == T0 + DAY and t == T0 + 4 * DAY + 9 * HOUR
    assert f["missing_s"] == (T0 + DAY - last) // 1000
    r.feed(1.0, DAY)                            # the next period begins where it came back
    (_, _, _, f) = r.of("energy_report")[-1]
    assert f["since"] == T0 + 4 * DAY + 9 * HOUR and f["until"] == T0 + 5 * DAY
    assert f["missing_s"] == 0


def test_relearn_learns_the_baseline_again_without_an_alarm_first():
    # A thermostat's differential changed on purpose moves the figure for good: the fleet had
    # to take a false maintenance_due before an ack could relearn it
    r = Run(learn=3)
    _cycles(r, [100.0] * 4)
    assert r.d.state()["learned"]
    assert r.d.set({"relearn": True, "tariff": 0.5})["tariff"] == 0.5
    st = r.d.state()
    assert not st["learned"] and st["learning"] == 0 and st["cusum"] == 0
    _cycles(r, [150.0] * 6)                     # the new normal, learnt: no alarm
    assert r.d.state()["learned"] and r.of("maintenance_due") == []
    _refused(r.d, {"relearn": 1}, "relearn: expected true")
    _refused(r.d, {"relearn": False}, "relearn: expected true")


def test_odd_readings_and_clock_jumps_do_not_break_it():
    r = Run()
    for v in (0.0, -5.0, 1e12, 3.0, 50.0):
        r.feed(v, MIN)
    r.t -= 2 * HOUR                               # the clock set back
    r.feed(50.0, MIN)
    r.t += 30 * DAY                               # and forward
    r.feed(1.0, 10 * MIN)
    st = r.d.state()
    assert st["cycles"] == 1 and not st["in_cycle"]
    (_, _, _, f), = r.of("cycle")
    assert f["feature"] is None                    # a cycle with a gap is not charted
