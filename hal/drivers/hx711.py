# HX711 24-bit load-cell ADC (Avia Semiconductor), bit-banged on two GPIO pins.
#
# The chip holds DOUT high while a conversion runs and pulls it low when data is ready. Then each
# PD_SCK pulse shifts out one bit, MSB first: the bit is valid 0.1 us after the rising edge (T2)
# and stays until the next one, so the driver reads DOUT after the falling edge, which keeps the
# high phase as short as two pin writes. 24 pulses give a 24-bit two's-complement value
# (0x800000..0x7FFFFF, where it saturates); the 25th pulls DOUT high again, and 25, 26 or 27
# pulses in all select the NEXT conversion: channel A gain 128, channel B gain 32, channel A gain 64.
# PD_SCK high for more than 60 us powers the chip down; its return to low resets it to channel A,
# gain 128 (a high phase may last at most 50 us, T3).
#
# The 60 us limit: on an ESP32 a MicroPython pin write is a few microseconds, so a pulse is far
# inside it, but an interrupt (Wi-Fi, a timer, the UART) arriving between the two writes can
# stretch one. Where the port has machine.disable_irq (the ESP32 has), the 24-27 pulses run with
# interrupts masked (a few hundred microseconds). Everywhere, each pulse is timed from before
# its rising edge to after its falling edge (so the timing never lengthens the high phase); a
# pulse over 50 us means the chip may have powered down and reset: the reading is discarded,
# the gain is selected again by a read whose value is thrown away, and the read is retried (up
# to 3 reads). The pulses are always completed (25-27), so a false alarm (a slow pulse that did
# not power the chip down) leaves the chip in step.
#
# weight = (raw - tare) / scale (grams when scale is counts per gram); with pill_weight,
# count = the nearest whole number of pills (0 for a negative weight), and count_confident =
# the weight is within count_tolerance (0.25) of a pill weight from that whole number, and not
# below -0.25 pill (a half pill is not confident; nor is a bottle lifted off the scale).
# Errors are SensorError: "timeout" (DOUT never went low: not powered, not wired; or clock pulses
# stretched on 3 reads), "stuck" (DOUT still low after the 25th pulse: shorted to ground or no chip),
# "range" (a saturated reading: overload), "disconnected" (saturated on 3 reads in a row, as
# with the load cell's wires off). Portable.
from math import floor

from hal.bus import SensorError
from hal.ticks import sleep_ms as _sleep_ms, ticks_diff
from hal.ticks import ticks_ms as _ticks_ms, ticks_us as _ticks_us

try:
    from micropython import const
except ImportError:
    def const(x):
        return x


try:
    from machine import disable_irq, enable_irq
except ImportError:  # CPython, or a port without it (the unix port)
    disable_irq = None
    enable_irq = None

CHIP = "HX711"
FULL_SCALE = const(0x7FFFFF)
NEGATIVE_FULL_SCALE = const(-0x800000)
MAX_HIGH_US = const(50)          # datasheet T3: PD_SCK high time at most 50 us
STUCK_READS = const(3)           # saturated this many times in a row: "disconnected"
_ATTEMPTS = const(3)             # reads tried when clock pulses come out stretched
COUNT_TOLERANCE = 0.25           # pills: farther than this from a whole count is not confident
_EXTRA_PULSES = {128: 1, 32: 2, 64: 3}


class HX711:
    """An HX711 on DOUT / PD_SCK pins (`value()` / `value(v)`), with tare and scale calibration."""

    def __init__(self, dout, sck, where, gain=128, tare=0, scale=1, pill_weight=None,
                 timeout_ms=500, sleep_ms=None, ticks_us=None, ticks_ms=None):
        if gain not in _EXTRA_PULSES:
            raise ValueError("HX711 gain must be 128, 64 or 32, got %r" % (gain,))
        if not scale:
            raise ValueError("HX711 scale must not be 0")
        if pill_weight is not None and not pill_weight > 0:
            raise ValueError("HX711 pill_weight must be > 0, got %r" % (pill_weight,))
        self._dout = dout.value  # bound once: a bound method made per read would be garbage
        self._sck = sck.value
        self.where = where
        self.gain = gain
        self.tare = tare
        self.scale = scale
        self.pill_weight = pill_weight
        self.count_tolerance = COUNT_TOLERANCE
        self.timeout_ms = timeout_ms
        self._sleep_ms = sleep_ms or _sleep_ms
        self._ticks_us = ticks_us or _ticks_us  # a virtual chip's own clock times its pulses
        self._ticks_ms = ticks_ms or _ticks_ms  # ... and its timeouts
        self._extra = _EXTRA_PULSES[gain]
        self._primed = False     # True once the conversion in progress uses self.gain
        self._saturated = 0      # saturated readings in a row
        self.stretched = 0       # reads with a clock pulse longer than MAX_HIGH_US, for health

    def _error(self, problem, kind):
        return SensorError(CHIP, self.where, problem, kind)

    def setup(self):
        """Powers the chip up (PD_SCK low) and selects the gain with one read; raises SensorError."""
        self._sck(0)
        self._primed = False
        if self._read() is not None:
            self._primed = True

    def measure(self):
        """{"weight": g, "raw": counts} and, with pill_weight, "count" and "count_confident"."""
        raw = self.read_raw()
        if raw == FULL_SCALE or raw == NEGATIVE_FULL_SCALE:
            self._saturated += 1
            which = "+" if raw > 0 else "-"
            if self._saturated >= STUCK_READS:
                raise self._error("reading stuck at %sfull scale for %d reads: load cell "
                                  "disconnected?" % (which, self._saturated), "disconnected")
            raise self._error("reading saturated at %sfull scale: overload, or load cell "
                              "disconnected" % which, "range")
        self._saturated = 0
        weight = (raw - self.tare) / self.scale
        out = {"weight": weight, "raw": raw}
        pill = self.pill_weight
        if pill is not None:
            pills = weight / pill
            count = floor(pills + 0.5)
            out["count"] = count if count > 0 else 0
            out["count_confident"] = count >= 0 and abs(pills - count) <= self.count_tolerance
        return out

    def read_raw(self):
        """One signed 24-bit reading at the configured gain; raises SensorError."""
        for _ in range(_ATTEMPTS):
            if not self._primed:
                # The conversion in progress may use another gain: read it to select ours.
                if self._read() is None:
                    continue
                self._primed = True
            raw = self._read()
            if raw is not None:
                return raw
            self._primed = False
        raise self._error("clock pulse held high past %d us on %d reads in a row (the chip powers "
                          "down after 60 us): is an interrupt stretching it?"
                          % (MAX_HIGH_US, _ATTEMPTS), "timeout")

    def _wait_ready(self):
        # Polls every millisecond. The timeout ends after timeout_ms of wall time or timeout_ms
        # polls, whichever comes first: a sleep_ms that does not really wait (the simulator's)
        # still gives up, and so does a board whose sleep_ms(1) lasts a whole 10 ms tick.
        dout = self._dout
        ticks_ms = self._ticks_ms
        start = ticks_ms()
        polls = 0
        while dout():
            if polls >= self.timeout_ms or ticks_diff(ticks_ms(), start) >= self.timeout_ms:
                raise self._error("was not ready within %d ms (DOUT stays high: not powered "
                                  "or not connected?)" % self.timeout_ms, "timeout")
            self._sleep_ms(1)
            polls += 1

    def _read(self):
        """Waits for data, shifts it out with the gain pulses; the signed value, or None when a
        clock pulse was stretched past MAX_HIGH_US (the value cannot be trusted)."""
        self._wait_ready()
        dout = self._dout
        sck = self._sck
        us = self._ticks_us
        diff = ticks_diff
        raw = 0
        longest = 0
        state = disable_irq() if disable_irq is not None else None
        try:
            for _ in range(24):
                t = us()
                sck(1)
                sck(0)
                t = diff(us(), t)
                if t > longest:
                    longest = t
                raw = (raw << 1) | dout()
            for _ in range(self._extra):
                t = us()
                sck(1)
                sck(0)
                t = diff(us(), t)
                if t > longest:
                    longest = t
            released = dout()
        finally:
            if state is not None:
                enable_irq(state)
        if longest > MAX_HIGH_US:
            self.stretched += 1
            return None
        if not released:
            raise self._error("DOUT stayed low after the 25th clock pulse: data line shorted "
                              "to ground, or no chip?", "stuck")
        if raw & 0x800000:
            raw -= 0x1000000
        return raw


# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    """A weight and a pill count on one load cell read it through one driver."""
    return ("hx711", s["pins"]["dout"], s["pins"]["sck"])


def where(s):
    return "pins %d/%d" % (s["pins"]["dout"], s["pins"]["sck"])


def build(s, ctx):
    cal = s["calibration"]
    return HX711(ctx.pin_in(s["pins"]["dout"]), ctx.pin_out(s["pins"]["sck"]), where(s),
                 gain=s["gain"], tare=cal["tare"], scale=cal["scale"],
                 pill_weight=cal.get("pill_weight"),  # optional: only a pill count has one
                 sleep_ms=ctx.sleep_ms, ticks_us=ctx.ticks_us, ticks_ms=ctx.ticks_ms)
