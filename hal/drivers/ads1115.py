# ADS1115 16-bit ADC with a 4-input multiplexer and a PGA (TI SBAS444), on I2C.
#
#   adc = ADS1115(i2c, "i2c0:0x48", address=0x48, channel=0, gain=2.048)
#   adc.setup()              # writes the config (no conversion) and reads it back
#   adc.measure()            # {"voltage": V} of `channel` against GND
#   adc.read_raw(2, 4.096)   # signed conversion code of AIN2, at +-4.096 V (a level probe's raw)
#
# Registers (16-bit, MSB first): 00 conversion (two's complement), 01 config, 02/03 comparator
# thresholds (unused). Config word, bit by bit:
#   15 OS: write 1 to start a single-shot conversion; reads 0 while converting, 1 when idle
#   14-12 MUX: 100 + channel = AINx against GND (single-ended)
#   11-9 PGA: full scale 000 6.144, 001 4.096, 010 2.048, 011 1.024, 100 0.512, 101 0.256 V
#   8 MODE: 1 single-shot (the device powers down after each conversion)
#   7-5 DR: 100 = 128 samples/s, 7.8 ms per conversion (the power-on default)
#   4-0 comparator: 00011 = disabled (COMP_QUE 11), as at power-on
# Channel 2 at +-4.096 V, single-shot: 0xE383 with OS set (0x6383 without).
# Code to volts: LSB = FSR / 32768; 0x7FFF is >= +FS x (2^15 - 1)/2^15, 0x8000 is <= -FS
# (the output clips there), so measure() reports a clipped code as kind "range".
#
# A conversion: write the config with OS = 1, wait the nominal conversion time, then poll the
# config until OS reads 1 (idle) twice in a row with the rest of the word as written (a single
# noisy read cannot end the wait early), then read the conversion register twice: two different
# codes are noise ("reply"). OS still 0 after about 30 ms is kind "timeout". A config that does
# not read back as written (noise, a reset chip, another chip at the address) is kind "reply".
# A bit flipped in both reads of the conversion register at once goes undetected.

from hal.bus import i2c_error
from hal.drivers.i2c16 import Chip16, signed16

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

CHIP = "ADS1115"

_CONVERSION = const(0x00)
_CONFIG = const(0x01)

_OS = const(0x8000)
_MUX_SINGLE = const(0x4)  # MUX = 100 + channel: AINx against GND
_MODE_SINGLE = const(0x0100)
_DR_128 = const(0x0080)
_COMP_OFF = const(0x0003)
_CONVERSION_MS = const(9)  # 1/128 s = 7.8 ms, plus the oscillator's tolerance
_POLLS = const(20)  # then 1 ms apart

GAINS = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256)  # full-scale volts, PGA codes 0-5


def config_word(channel, gain, start=True):
    """The config register value for a single-shot conversion of AIN`channel` against GND."""
    return ((_OS if start else 0) | ((_MUX_SINGLE + channel) << 12) | (_pga(gain) << 9)
            | _MODE_SINGLE | _DR_128 | _COMP_OFF)


def volts(code, gain):
    """Volts for a signed conversion code at a full scale of +-gain volts."""
    return code * gain / 32768


def _pga(gain):
    for i in range(len(GAINS)):
        if abs(GAINS[i] - gain) < 0.0005:
            return i
    raise ValueError("ADS1115 gain %r: one of %s (full scale in volts)"
                     % (gain, ", ".join(str(g) for g in GAINS)))


class ADS1115(Chip16):
    CHIP = CHIP

    def __init__(self, bus, where=None, address=0x48, channel=0, gain=2.048, sleep_ms=None):
        if channel not in (0, 1, 2, 3):
            raise ValueError("ADS1115 channel %r: 0-3" % (channel,))
        _pga(gain)
        Chip16.__init__(self, bus, where, address, sleep_ms)
        self.channel = channel
        self.gain = gain

    def setup(self):
        """Writes the config for this channel without starting a conversion; reads it back."""
        word = config_word(self.channel, self.gain, start=False)
        try:
            self._write16(_CONFIG, word)
            got = self._read16(_CONFIG)
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)
        if got & 0x7FFF != word:
            raise self._error("did not keep its config (wrote 0x%04x, read 0x%04x): not an "
                              "ADS1115, or noise on the bus" % (word, got), "reply")

    def measure(self):
        code = self.read_raw(self.channel)
        if code >= 32767 or code <= -32768:
            raise self._error("input %d is beyond the +-%s V full scale (code 0x%04x): choose a "
                              "larger gain" % (self.channel, self.gain, code & 0xFFFF), "range")
        return {"voltage": volts(code, self.gain)}

    def read_raw(self, channel, gain=None):
        """One single-shot conversion of AIN`channel` against GND: the signed code."""
        if gain is None:
            gain = self.gain
        word = config_word(channel, gain)
        try:
            return self._convert(word)
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)

    # -- inside -----------------------------------------------------------------------------------
    def _convert(self, word):
        self._write16(_CONFIG, word)
        self._sleep(_CONVERSION_MS)
        idle = 0
        polls = 0
        while True:
            got = self._read16(_CONFIG)
            if got & _OS:
                if got & 0x7FFF != word & 0x7FFF:
                    raise self._error("did not keep its config (wrote 0x%04x, read 0x%04x): "
                                      "reset, or noise on the bus" % (word, got), "reply")
                idle += 1
                if idle == 2:
                    break
                continue
            idle = 0
            polls += 1
            if polls > _POLLS:
                raise self._error("did not finish a conversion within %d ms (OS stayed 0)"
                                  % (_CONVERSION_MS + _POLLS), "timeout")
            self._sleep(1)
        first = self._read16(_CONVERSION)
        second = self._read16(_CONVERSION)
        if first != second:
            raise self._error("gave two different readings of one conversion (0x%04x, 0x%04x): "
                              "noise on the bus" % (first, second), "reply")
        return signed16(first)



# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    """One driver per channel and gain: each conversion writes both, so two sensors of one
    channel at two gains (a coarse and a fine range) each read at their own."""
    return ("ads1115", s["bus"], s["address"], s["channel"], s["calibration"]["gain"])


def where(s):
    return "%s:0x%02x" % (s["bus"], s["address"])


def build(s, ctx):
    return ADS1115(ctx.bus(s["bus"]), where(s), address=s["address"], channel=s["channel"],
                   gain=s["calibration"]["gain"], sleep_ms=ctx.sleep_ms)


def converter(ctx, bus, address):
    """The one driver of the ADS1115 at bus/address that other chips' drivers (level probes)
    read by channel, each at its own gain (read_raw)."""
    k = ("ads1115", bus, address)
    if k not in ctx.chips:
        ctx.chips[k] = ADS1115(ctx.bus(bus), "%s:0x%02x" % (bus, address), address=address,
                               sleep_ms=ctx.sleep_ms)
    return ctx.chips[k]
