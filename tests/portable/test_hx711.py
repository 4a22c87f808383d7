# hal/drivers/hx711.py against the virtual HX711 (hal/sim/hx711.py) on simulated pins
# (hal/sim/pins.py), at the level of bits and clock pulses.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
#
# From the Avia Semiconductor datasheet: DOUT high = not ready; 24 PD_SCK pulses shift out a
# 24-bit two's-complement value MSB first; 25 / 26 / 27 pulses select the next conversion
# (A gain 128 / B gain 32 / A gain 64); PD_SCK high > 60 us powers down and the return to low
# resets to A/128; the output saturates at 0x7FFFFF / 0x800000.
from hal.bus import SensorError
from hal.drivers.hx711 import HX711
from hal.sim.hx711 import SimHX711
from hal.sim.pins import SimPin
from support import raises

WHERE = "pins 4/5"


def rig(gain=128, tare=0, scale=1, pill_weight=None, timeout_ms=20, setup=True, **chip):
    dout, sck = SimPin(4), SimPin(5)
    sim = SimHX711(dout, sck, **chip)
    # The chip's own clock times its pulses and the driver's timeout (counted in polls, which
    # do not really sleep): on the wall clock, five polls of a loaded machine passed 20 ms and
    # the read timed out (CI)
    hx = HX711(dout, sck, WHERE, gain=gain, tare=tare, scale=scale, pill_weight=pill_weight,
               timeout_ms=timeout_ms, ticks_us=sim.ticks_us,
               ticks_ms=lambda: sim.micros.now // 1000, sleep_ms=lambda ms: None)
    if setup:
        hx.setup()
    return sim, hx, dout, sck


def close(a, b, eps=1e-9):
    return abs(a - b) <= eps


class EdgeRecorder:
    """Counts the rising edges of PD_SCK."""

    def __init__(self, sck):
        self.rising = 0
        sck.connect_listener(self._edge)

    def _edge(self, level):
        if level:
            self.rising += 1


# -- bits -------------------------------------------------------------------------------------

def test_a_known_24_bit_pattern_is_read_msb_first():
    for pattern in (0x123456, 0x5A5A5A, 0x000001, 0x400000, 0x7FFFFE):
        sim, hx, _, _ = rig(tare_raw=pattern)
        assert hx.read_raw() == pattern, hex(pattern)
        assert sim.last_raw == pattern


def test_negative_values_are_twos_complement():
    for value in (-1, -2, -123456, -0x7FFFFF):
        sim, hx, _, _ = rig(tare_raw=value)
        assert hx.read_raw() == value
        assert sim.last_raw == value


def test_the_bits_on_dout_are_the_pattern_msb_first_then_high_on_the_25th_pulse():
    sim, hx, dout, sck = rig(tare_raw=0xA50F81 - 0x1000000, setup=False)   # bits A5 0F 81
    assert dout.value() == 1            # conversion in progress
    assert dout.value() == 0            # ready
    bits = []
    for _ in range(25):
        sck.value(1)
        sck.value(0)
        bits.append(dout.value())
    expected = [(0xA50F81 >> (23 - i)) & 1 for i in range(24)]
    assert bits[:24] == expected
    assert bits[24] == 1
    assert sim.clock_errors == 0


def test_gain_128_sends_25_pulses_and_keeps_channel_a_gain_128():
    sim, hx, dout, sck = rig(gain=128)
    edges = EdgeRecorder(sck)
    hx.stretched = 0
    hx.read_raw()
    assert edges.rising == 25 * (1 + 2 * hx.stretched)   # a retry reads twice more
    dout.value()                        # the next conversion ends: the chip takes the selection
    assert sim.last_pulses == 25 and sim.gain == 128


def test_gain_32_sends_26_pulses_and_selects_channel_b():
    sim, hx, dout, sck = rig(gain=32)
    edges = EdgeRecorder(sck)
    hx.stretched = 0
    hx.read_raw()
    assert edges.rising == 26 * (1 + 2 * hx.stretched)   # a retry reads twice more
    dout.value()
    assert sim.last_pulses == 26 and sim.gain == 32


def test_gain_64_sends_27_pulses_and_selects_channel_a_gain_64():
    sim, hx, dout, sck = rig(gain=64)
    edges = EdgeRecorder(sck)
    hx.stretched = 0
    hx.read_raw()
    assert edges.rising == 27 * (1 + 2 * hx.stretched)   # a retry reads twice more
    dout.value()
    assert sim.last_pulses == 27 and sim.gain == 64


def test_setup_selects_the_gain_so_the_first_measure_is_already_at_that_gain():
    sim, hx, _, _ = rig(gain=64, tare_raw=1000, grams=10, counts_per_gram=100)
    assert sim.last_gain == 128         # setup's own read: the chip's reset default
    assert hx.read_raw() == 1000        # (1000 + 10 * 100) / 2 at gain 64
    assert sim.last_gain == 64
    sim, hx, _, _ = rig(gain=32)
    sim.channel_b_raw = -4242
    assert hx.read_raw() == -4242 and sim.last_gain == 32


def test_the_driver_waits_while_dout_is_high_and_never_clocks_too_early():
    sim, hx, _, _ = rig(conversion_polls=5, tare_raw=77)
    for _ in range(3):
        assert hx.read_raw() == 77
    assert sim.clock_errors == 0


# -- calibration and pills -------------------------------------------------------------------

def test_tare_and_scale_turn_counts_into_grams():
    sim, hx, _, _ = rig(tare=8000, scale=420, tare_raw=8000, counts_per_gram=420, grams=12.5)
    values = hx.measure()
    assert values["raw"] == 8000 + 5250
    assert close(values["weight"], 12.5)
    assert "count" not in values
    sim.grams = 0
    assert close(hx.measure()["weight"], 0.0)


def test_pill_count_is_the_nearest_whole_number_of_pills():
    sim, hx, _, _ = rig(tare=500, scale=100, pill_weight=0.4, tare_raw=500, counts_per_gram=100)
    for pills in (0, 1, 7, 30):
        sim.grams = pills * 0.4
        values = hx.measure()
        assert values["count"] == pills and values["count_confident"] is True, values


def test_a_half_pill_is_counted_but_not_confident():
    sim, hx, _, _ = rig(tare=0, scale=100, pill_weight=0.4, counts_per_gram=100)
    sim.grams = 7.5 * 0.4                 # 3.0 g: seven and a half pills
    values = hx.measure()
    assert values["count"] in (7, 8)
    assert values["count_confident"] is False


def test_confidence_holds_within_a_quarter_pill_and_not_beyond():
    sim, hx, _, _ = rig(tare=0, scale=1000, pill_weight=1.0, counts_per_gram=1000)
    sim.grams = 5.2
    assert hx.measure()["count"] == 5 and hx.measure()["count_confident"] is True
    sim.grams = 4.8
    assert hx.measure()["count"] == 5 and hx.measure()["count_confident"] is True
    sim.grams = 5.3
    assert hx.measure()["count"] == 5 and hx.measure()["count_confident"] is False
    sim.grams = 5.7
    assert hx.measure()["count"] == 6 and hx.measure()["count_confident"] is False


def test_a_weight_below_zero_counts_no_pills_and_is_not_confident():
    sim, hx, _, _ = rig(tare=0, scale=100, pill_weight=0.5, counts_per_gram=100)
    sim.grams = -20                       # the bottle was lifted off the scale
    values = hx.measure()
    assert values["count"] == 0 and values["count_confident"] is False


def test_noise_stays_within_its_bounds_and_averages_near_the_true_value():
    sim, hx, _, _ = rig(tare_raw=10000, noise=50, seed=3)
    readings = [hx.read_raw() for _ in range(40)]
    assert all(9950 <= r <= 10050 for r in readings)
    assert len(set(readings)) > 10
    assert abs(sum(readings) / len(readings) - 10000) < 25


def test_constructor_refuses_bad_options():
    pin = SimPin(1)
    raises(ValueError, HX711, pin, pin, WHERE, 100)
    raises(ValueError, HX711, pin, pin, WHERE, 128, 0, 0)
    raises(ValueError, HX711, pin, pin, WHERE, 128, 0, 1, 0)


# -- faults ------------------------------------------------------------------------------------

def test_a_chip_that_never_gets_ready_times_out_naming_chip_and_place():
    sim, hx, _, _ = rig(setup=False)
    sim.fault = "no_chip"
    err = raises(SensorError, hx.setup)
    assert err.kind == "timeout"
    assert err.chip == "HX711" and err.where == WHERE
    assert str(err).startswith("HX711 at pins 4/5 was not ready within 20 ms")


class NoSleep:
    """A sleep_ms that returns at once and counts its calls (a list would not fit a 64k heap)."""

    def __init__(self):
        self.calls = 0
        self.total_ms = 0

    def __call__(self, ms):
        self.calls += 1
        self.total_ms += ms


def test_with_a_sleep_that_does_not_wait_the_timeout_counts_polls_instead():
    dout, sck = SimPin(4), SimPin(5)
    sim = SimHX711(dout, sck)
    sim.fault = "no_chip"
    slept = NoSleep()
    hx = HX711(dout, sck, WHERE, timeout_ms=3000, sleep_ms=slept, ticks_ms=lambda: 0)
    err = raises(SensorError, hx.setup)
    assert err.kind == "timeout" and "within 3000 ms" in str(err)
    assert slept.calls == 3000 and slept.total_ms == 3000


def test_positive_saturation_is_a_range_error():
    sim, hx, _, _ = rig(tare_raw=0, counts_per_gram=1000, grams=9000)
    err = raises(SensorError, hx.measure)
    assert sim.last_raw == 0x7FFFFF
    assert err.kind == "range"
    assert str(err).startswith("HX711 at pins 4/5 reading saturated at +full scale")


def test_negative_saturation_is_a_range_error():
    sim, hx, _, _ = rig(tare_raw=0, counts_per_gram=1000, grams=-9000)
    err = raises(SensorError, hx.measure)
    assert sim.last_raw == -0x800000
    assert err.kind == "range"
    assert str(err).startswith("HX711 at pins 4/5 reading saturated at -full scale")


def test_a_disconnected_load_cell_is_reported_after_three_saturated_reads():
    sim, hx, _, _ = rig(tare_raw=100)
    sim.fault = "disconnected"
    assert raises(SensorError, hx.measure).kind == "range"
    assert raises(SensorError, hx.measure).kind == "range"
    err = raises(SensorError, hx.measure)
    assert err.kind == "disconnected"
    assert str(err) == ("HX711 at pins 4/5 reading stuck at +full scale for 3 reads: "
                        "load cell disconnected?")
    sim.fault = None                      # wires back on
    assert hx.measure()["raw"] == 100


def test_one_good_read_resets_the_saturation_count():
    sim, hx, _, _ = rig(tare_raw=100)
    for _ in range(3):
        sim.fault = "disconnected"
        assert raises(SensorError, hx.measure).kind == "range"
        assert raises(SensorError, hx.measure).kind == "range"
        sim.fault = None
        assert hx.measure()["raw"] == 100


def test_dout_stuck_low_is_reported_as_stuck():
    sim, hx, _, _ = rig()
    sim.fault = "dout_low"
    err = raises(SensorError, hx.measure)
    assert err.kind == "stuck"
    assert str(err).startswith("HX711 at pins 4/5 DOUT stayed low after the 25th clock pulse")


def test_a_stretched_clock_pulse_powers_the_chip_down_and_the_driver_recovers_its_gain():
    sim, hx, _, _ = rig(gain=64, tare_raw=2000, grams=5, counts_per_gram=200)
    sim.stretch_next_pulse()
    assert hx.read_raw() == 1500          # (2000 + 5 * 200) / 2: at gain 64 again
    assert sim.power_downs == 1 and sim.resets == 1
    assert sim.last_gain == 64
    assert hx.stretched >= 1


def test_clock_pulses_stretched_on_three_reads_in_a_row_raise_timeout():
    sim, hx, _, _ = rig(tare_raw=5)
    sim.stretch_next_pulse(times=3)
    err = raises(SensorError, hx.measure)
    assert err.kind == "timeout"
    assert str(err).startswith("HX711 at pins 4/5 clock pulse held high past 50 us on 3 reads")
    assert sim.power_downs == 3
    assert hx.measure()["raw"] == 5       # and it reads again once the pulses are short


def test_clock_pulses_stretched_on_two_reads_are_retried():
    sim, hx, _, _ = rig(tare_raw=-5)
    sim.stretch_next_pulse(times=2)
    assert hx.measure()["raw"] == -5
    assert sim.power_downs == 2


def test_every_error_message_names_the_chip_and_the_place():
    messages = []
    for fault in ("no_chip", "disconnected", "dout_low"):
        sim, hx, _, _ = rig()
        sim.fault = fault
        for _ in range(3):
            try:
                hx.measure()
            except SensorError as exc:
                messages.append(str(exc))
    assert len(messages) == 9
    for message in messages:
        assert message.startswith("HX711 at pins 4/5 "), message


class ScriptedChip:
    """Two pin stand-ins (no simulator): DOUT gives `word` MSB first after each clock pulse."""

    def __init__(self, word):
        self.word = word
        self.pulses = 0
        self.dout = self
        self.sck = _Sck(self)

    def ticks_us(self):                  # virtual time: a pulse takes 1 us, never stretched
        return self.pulses

    def value(self, v=None):             # DOUT
        p = self.pulses
        if p == 0:
            return 0                     # ready
        if p <= 24:
            return (self.word >> (24 - p)) & 1
        self.pulses = 0                  # read over: the next poll sees the next conversion
        return 1


class _Sck:
    def __init__(self, chip):
        self.chip = chip

    def value(self, v=None):
        if v:
            self.chip.pulses += 1


def test_read_raw_allocates_nothing_per_reading():
    chip = ScriptedChip(0xFEDCBA)        # -0x012346
    hx = HX711(chip.dout, chip.sck, WHERE, ticks_us=chip.ticks_us)
    hx.setup()
    assert hx.read_raw() == -0x012346
    try:
        import gc
        mem_alloc = gc.mem_alloc          # MicroPython only: CPython has no allocation counter
    except AttributeError:
        return
    gc.collect()
    before = mem_alloc()
    for _ in range(50):
        hx.read_raw()
    assert mem_alloc() - before <= 64, mem_alloc() - before
