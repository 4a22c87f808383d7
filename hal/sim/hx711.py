# A virtual HX711 load-cell ADC wired to two simulated pins, clocking out real bits.
#
#   dout, sck = SimPin(4), SimPin(5)
#   chip = SimHX711(dout, sck, grams=12.5, tare_raw=8000, counts_per_gram=420)
#
# It behaves as the Avia Semiconductor datasheet describes, with DOUT polls standing in for time:
#   - DOUT is high while a conversion is in progress: the first `conversion_polls` reads of DOUT
#     after a read (or a reset) see 1, the next sees 0 (data ready); a driver must see DOUT low
#     before it clocks (a pulse before that is counted in clock_errors and restarts the count);
#   - each rising edge of PD_SCK puts the next bit on DOUT, MSB first, 24 bits of two's
#     complement; the 25th rising edge pulls DOUT high again; 25, 26 or 27 pulses select the
#     NEXT conversion: channel A gain 128, channel B gain 32, channel A gain 64;
#   - PD_SCK high for longer than 60 us powers the chip down, and its return to low resets it
#     (channel A, gain 128). Time is not simulated, so a test says when: stretch_next_pulse()
#     makes the next data pulse's high phase "too long" (and really waits STRETCH_US, as an
#     interrupt between the driver's two pin writes would), so the chip powers down;
#   - the output saturates at 0x7FFFFF / 0x800000.
# The value: channel A counts = tare_raw + grams * counts_per_gram at gain 128 (half at gain 64),
# plus uniform noise of +-noise counts (seeded: the same on CPython and MicroPython); channel B
# reads channel_b_raw. Faults (attribute `fault`): "disconnected" (load cell wires off: readings
# stuck at +full scale), "no_chip" (HX711 unpowered or DOUT not wired: DOUT stays high),
# "dout_low" (DOUT shorted to ground). Counters: reads, resets, power_downs, clock_errors.
# Portable.
from hal.sim.micros import Micros

STRETCH_US = 80                  # a high phase this long is past the 60 us power-down limit
FULL_SCALE = 0x7FFFFF
NEGATIVE_FULL_SCALE = -0x800000
FAULTS = ("disconnected", "no_chip", "dout_low")  # what chip.fault may be, besides None
_GAIN_BY_PULSES = {25: 128, 26: 32, 27: 64}


class SimHX711:
    def __init__(self, dout, sck, grams=0.0, tare_raw=0, counts_per_gram=1.0, noise=0, seed=1,
                 conversion_polls=1, micros=None):
        if conversion_polls < 1:
            raise ValueError("conversion_polls must be >= 1: DOUT is high after a read")
        self.dout = dout
        self.sck = sck
        self.grams = grams
        self.tare_raw = tare_raw
        self.counts_per_gram = counts_per_gram
        self.noise = noise
        self.channel_b_raw = 0
        self.conversion_polls = conversion_polls
        self.fault = None
        self.micros = micros or Micros()
        self.ticks_us = self.micros.ticks_us  # the driver's pulse timer
        self._rng = (seed & 0xFFFFFFFF) or 1
        self._stretch = 0
        self.resets = 0          # power-on resets after a power down
        self.power_downs = 0
        self.clock_errors = 0    # pulses while not ready, or more than 27 in one read
        self.last_gain = None    # gain (128, 64 or 32) of the conversion last shifted out
        self.last_raw = None     # the signed value last shifted out
        self.last_pulses = None  # PD_SCK pulses of the last finished read (25, 26 or 27)
        self._reset()
        dout.connect_source(self._dout_level)
        sck.connect_listener(self._sck_edge)

    def clear(self):
        """Ends its fault (SimPlatform.clear): the chip and its load cell are whole again."""
        self.fault = None

    def _reset(self):
        self.powered = True
        self.gain = 128          # gain of the conversion in progress (or ready)
        self._pulses = 0
        self._data = None
        self._out = 1
        self._busy = self.conversion_polls

    def stretch_next_pulse(self, times=1):
        """The next PD_SCK high phase of a read (of the next `times` reads) lasts longer than
        60 us: the chip powers down in it, and resets when PD_SCK goes low."""
        self._stretch = times

    def raw_at(self, gain):
        """The signed 24-bit value a conversion at `gain` gives now (noise and saturation included)."""
        if self.fault == "disconnected":
            return FULL_SCALE
        if gain == 32:
            value = self.channel_b_raw
        else:
            value = self.tare_raw + self.grams * self.counts_per_gram
            if gain == 64:
                value = value / 2
        value = int(round(value))
        if self.noise:
            value += self._random(2 * self.noise + 1) - self.noise
        if value > FULL_SCALE:
            return FULL_SCALE
        if value < NEGATIVE_FULL_SCALE:
            return NEGATIVE_FULL_SCALE
        return value

    def _random(self, bound):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x % bound

    def _latch(self):
        raw = self.raw_at(self.gain)
        self.last_raw = raw
        self.last_gain = self.gain
        self._data = raw & 0xFFFFFF

    # -- the pins -----------------------------------------------------------------------------
    def _dout_level(self):
        fault = self.fault
        if fault == "no_chip" or not self.powered:
            return 1
        if fault == "dout_low":
            return 0
        pulses = self._pulses
        if 0 < pulses < 25:
            return self._out
        if self._busy > 0:
            self._busy -= 1
            return 1
        if pulses:                       # 25-27 pulses given and the next conversion is done
            self.gain = _GAIN_BY_PULSES[pulses]
            self.last_pulses = pulses
            self._pulses = 0
        if self._data is None:
            self._latch()
        return 0

    def _sck_edge(self, level):
        self.micros.now += 1
        if not level:
            if not self.powered:         # PD_SCK back low after a power down: reset
                self.resets += 1
                self._reset()
            return
        if not self.powered or self.fault == "no_chip":
            return
        pulses = self._pulses
        if pulses == 0 and self._data is None:
            # Clocked before DOUT was seen low: not ready. A pulse train lasts microseconds and a
            # conversion 12.5-100 ms, so no conversion ends during it: the poll count restarts.
            self.clock_errors += 1
            self._busy = self.conversion_polls
            return
        if self._stretch:
            self._stretch -= 1
            self.micros.now += STRETCH_US
            self.powered = False
            self.power_downs += 1
            self._pulses = 0
            self._data = None
            return
        pulses += 1
        if pulses <= 24:
            self._out = (self._data >> (24 - pulses)) & 1
        elif pulses == 25:
            self._out = 1
            self._data = None
            self._busy = self.conversion_polls
        elif pulses > 27:
            self.clock_errors += 1
            pulses = 27
        self._pulses = pulses


# -- on the sim platform (hal/sim/platform.py, hal/chips.py) -------------------------------------

DEFAULTS = {"weight": 100.0, "count": 30}  # what the chip holds until set: grams, pills
FAULT = "no_chip"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)


def key(s):
    return ("hx711", s["pins"]["dout"], s["pins"]["sck"])


def build(s, world):
    cal = s["calibration"]
    k = 2 if s["gain"] == 64 else 1  # the profile calibrates at its gain; 64 gives half the counts
    return SimHX711(world.pin(s["pins"]["dout"]), world.pin(s["pins"]["sck"]),
                    tare_raw=k * cal["tare"], counts_per_gram=k * cal["scale"], seed=world.seed,
                    micros=world.micros)


def state(s):
    """A pill count and a weight are the same grams on one load cell."""
    return "grams"


def set_quantity(s, chip, value):
    chip.grams = value * s["calibration"]["pill_weight"] if s["quantity"] == "count" else value


def faults(s):
    """The chip's own faults for sensor s (it has no bus)."""
    return FAULTS


def fault(s, chip, kind):
    if kind in FAULTS:
        chip.fault = kind
        return True
    return False
