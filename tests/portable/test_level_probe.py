# Level probe (hal/drivers/level_probe.py) on a board ADC (hal/sim/adc.py) and on an ADS1115
# channel (hal/drivers/ads1115.py + hal/sim/ads1115.py): two-point calibration, clamping, and a
# disconnected or shorted probe. Runs under CPython and under MicroPython.
from hal.bus import SensorError
from hal.drivers.ads1115 import ADS1115
from hal.drivers.level_probe import LevelProbe
from hal.sim.adc import SimADC
from hal.sim.ads1115 import SimADS1115
from hal.sim.i2c import SimI2C
from i2ckit import Sleeps, close
from support import raises

EMPTY = 410   # the reference profile's ink probe (docs/profiles.md)
FULL = 3720


def board(raw12=EMPTY, raw_empty=EMPTY, raw_full=FULL):
    adc = SimADC(raw12=raw12)
    return adc, LevelProbe(adc, "pin 32", raw_empty=raw_empty, raw_full=raw_full)


def level(probe):
    return probe.measure()["level"]


# -- board ADC ------------------------------------------------------------------------------------
def test_read_u16_shifted_right_by_4_is_the_esp32_12_bit_reading_exactly():
    adc = SimADC()
    for raw in range(4096):
        adc.raw12 = raw
        assert adc.read_u16() >> 4 == raw
    adc.raw12 = 4095
    assert adc.read_u16() == 65535


def test_two_point_calibration_maps_empty_to_0_and_full_to_100():
    adc, probe = board()
    probe.setup()
    assert level(probe) == 0.0
    adc.raw12 = FULL
    assert level(probe) == 100.0
    adc.raw12 = (EMPTY + FULL) // 2  # 2065
    assert close(level(probe), 50.0, 0.001)
    adc.raw12 = 1072  # 20 % of the span above empty
    assert close(level(probe), 20.0, 0.001)


def test_calibration_may_run_downwards():
    adc, probe = board(raw_empty=3500, raw_full=600)
    adc.raw12 = 3500
    assert level(probe) == 0.0
    adc.raw12 = 600
    assert level(probe) == 100.0
    adc.raw12 = 2920  # 20 % of the way from 3500 down to 600
    assert close(level(probe), 20.0, 0.001)


def test_readings_just_outside_the_calibration_clamp_to_0_and_100():
    adc, probe = board()
    adc.raw12 = EMPTY - 200
    assert level(probe) == 0.0
    adc.raw12 = FULL + 200
    assert level(probe) == 100.0


def test_level_from_volts_on_the_virtual_adc():
    adc, probe = board()
    adc.volts = 1.65  # raw 2048 on 0..3.3 V
    assert adc.raw12 == 2048
    assert close(level(probe), (2048 - EMPTY) * 100 / (FULL - EMPTY), 1e-9)


# -- a broken probe ------------------------------------------------------------------------------
def test_margin_is_10_percent_of_the_span_on_both_sides():
    # span 3310: readings from 410 - 331 = 79 to 3720 + 331 = 4051 are levels, outside are not.
    adc, probe = board()
    for raw, ok in ((79, True), (78, False), (4051, True), (4052, False)):
        adc.raw12 = raw
        if ok:
            assert level(probe) in (0.0, 100.0)
        else:
            assert raises(SensorError, probe.measure).kind == "disconnected"


def test_disconnected_probe_reading_0_is_an_error_naming_the_probe_and_pin():
    adc, probe = board(raw12=2000)
    adc.disconnected = "low"
    err = raises(SensorError, probe.measure)
    assert err.kind == "disconnected"
    assert (err.chip, err.where) == ("level probe", "pin 32")
    assert str(err) == ("level probe at pin 32 reads 0, outside 79..4051 (raw_empty 410, "
                        "raw_full 3720, +-10 % of the span): the probe is disconnected or shorted")


def test_shorted_probe_reading_full_scale_is_an_error():
    adc, probe = board(raw12=2000)
    adc.disconnected = "high"
    err = raises(SensorError, probe.measure)
    assert err.kind == "disconnected"
    assert "reads 4095" in str(err)
    adc.disconnected = None
    assert close(level(probe), (2000 - EMPTY) * 100 / (FULL - EMPTY), 1e-9)


def test_calibration_must_have_two_different_points():
    raises(ValueError, LevelProbe, SimADC(), "pin 32", 500, 500)
    raises(ValueError, LevelProbe, SimADC(), "pin 32", None, 500)
    raises(ValueError, LevelProbe, SimADC(), "pin 32", 100, 500, 1)  # a channel needs an ADS1115


# -- ADS1115 channel -----------------------------------------------------------------------------
def ads_rig(v=(0.0, 0.0, 0.0, 0.0), raw_empty=800, raw_full=21000, channel=1):
    bus = SimI2C("i2c0")
    chip = bus.attach(0x48, SimADS1115(v))
    ads = ADS1115(bus, "i2c0:0x48", sleep_ms=Sleeps())
    probe = LevelProbe(ads, "i2c0:0x48 channel %d" % channel, raw_empty=raw_empty,
                       raw_full=raw_full, channel=channel)
    return bus, chip, probe


def test_ads1115_channel_raw_is_the_code_at_4_096_V_whatever_the_driver_gain():
    # 125 uV per count: 0.1 V -> 800, 2.625 V -> 21000, 1.3125 V -> 10500 (half way: 47.5 %)
    bus, chip, probe = ads_rig(v=(3.0, 0.1, 0, 0))
    probe.setup()
    assert probe.read_raw() == 800
    assert level(probe) == 0.0
    chip.volts[1] = 2.625
    assert level(probe) == 100.0
    chip.volts[1] = 1.3125
    assert close(level(probe), (10500 - 800) * 100 / (21000 - 800), 1e-9)


def test_ads1115_probe_shorted_to_supply_is_disconnected():
    bus, chip, probe = ads_rig(v=(0, 3.3, 0, 0))  # 26400 > 21000 + 2020
    err = raises(SensorError, probe.measure)
    assert err.kind == "disconnected"
    assert str(err).startswith("level probe at i2c0:0x48 channel 1 reads 26400")


def test_ads1115_that_does_not_answer_is_named_as_the_chip_that_failed():
    bus, chip, probe = ads_rig(v=(0, 1.0, 0, 0))
    bus.fault("nack", address=0x48)
    err = raises(SensorError, probe.setup)
    assert (str(err), err.kind) == ("ADS1115 at i2c0:0x48 did not acknowledge", "nack")
    err = raises(SensorError, probe.measure)
    assert err.kind == "nack"


def test_ads1115_conversion_timeout_reaches_the_probe_reading():
    bus, chip, probe = ads_rig(v=(0, 1.0, 0, 0))
    chip.stall = True
    err = raises(SensorError, probe.measure)
    assert err.kind == "timeout"
    assert str(err).startswith("ADS1115 at i2c0:0x48 did not finish a conversion")
