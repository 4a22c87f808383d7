# A level probe (ink, liquid) on an ADC input, with a two-point calibration: level in %.
#
#   LevelProbe(machine.ADC(...), "pin 32", raw_empty=410, raw_full=3720)          the board's ADC
#   LevelProbe(ads1115_driver, "i2c0:0x48 channel 1", raw_empty=800, raw_full=21000, channel=1)
#   probe.measure()   # {"level": %}
#
# Raw scale, which the profile's raw_empty/raw_full are written in:
#   - a board ADC (any object with read_u16()): raw = read_u16() >> 4, the ESP32's 12-bit reading
#     0..4095 (MicroPython's esp32 port scales it as raw << 4 | raw >> 8, so this is exact);
#   - an ADS1115 channel (channel given): raw = the signed conversion code at +-4.096 V full
#     scale, 125 uV per count, so 0..3.3 V is 0..26400.
# level = (raw - raw_empty) / (raw_full - raw_empty) x 100, clamped to 0..100; either end may be
# the larger (a probe whose reading falls as the tank fills). A raw reading more than 10 % of the
# span (|raw_full - raw_empty|) outside the calibrated range is not a level but a broken probe
# (open: pulled to one rail; shorted: the other): SensorError kind "disconnected".
from hal.bus import SensorError

CHIP = "level probe"
MARGIN_PERCENT = 10
ADS1115_GAIN = 4.096


class LevelProbe:
    def __init__(self, source, where=None, raw_empty=None, raw_full=None, channel=None):
        if raw_empty is None or raw_full is None or raw_empty == raw_full:
            raise ValueError("level probe: raw_empty and raw_full are both needed and must differ")
        if channel is not None and not hasattr(source, "read_raw"):
            raise ValueError("level probe: a channel needs an ADS1115 driver as its source")
        self.source = source
        self.channel = channel
        self.where = where if where is not None else ("channel %d" % channel if channel is not None
                                                      else "adc")
        self.raw_empty = raw_empty
        self.raw_full = raw_full
        lo = min(raw_empty, raw_full)
        hi = max(raw_empty, raw_full)
        margin = (hi - lo) * MARGIN_PERCENT / 100
        self.valid_low = lo - margin
        self.valid_high = hi + margin

    def setup(self):
        """Checks that the ADS1115 answers (a board ADC needs nothing)."""
        if self.channel is not None and hasattr(self.source, "setup"):
            self.source.setup()

    def read_raw(self):
        if self.channel is None:
            return self.source.read_u16() >> 4
        return self.source.read_raw(self.channel, ADS1115_GAIN)

    def measure(self):
        raw = self.read_raw()
        if raw < self.valid_low or raw > self.valid_high:
            raise SensorError(CHIP, self.where,
                              "reads %d, outside %g..%g (raw_empty %s, raw_full %s, +-%d %% of the "
                              "span): the probe is disconnected or shorted"
                              % (raw, self.valid_low, self.valid_high, self.raw_empty,
                                 self.raw_full, MARGIN_PERCENT), "disconnected")
        level = (raw - self.raw_empty) * 100 / (self.raw_full - self.raw_empty)
        if level < 0:
            level = 0.0
        elif level > 100:
            level = 100.0
        return {"level": level}


# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    if "pin" in s:
        return ("level_probe", s["pin"])
    adc = s["adc"]
    return ("level_probe", adc["bus"], adc["address"], adc["channel"])


def where(s):
    if "pin" in s:
        return "pin %d" % s["pin"]
    adc = s["adc"]
    return "%s:0x%02x AIN%d" % (adc["bus"], adc["address"], adc["channel"])


def build(s, ctx):
    cal = s["calibration"]
    if "pin" in s:
        return LevelProbe(ctx.adc(s["pin"]), where(s), cal["raw_empty"], cal["raw_full"])
    # Through the registry, so that only a probe on an ADS1115 loads that chip's driver (and a
    # bundle builder that follows imports does not ship it for probes on pins).
    from hal.chips import driver
    adc = s["adc"]
    ads = driver("ads1115").converter(ctx, adc["bus"], adc["address"])
    return LevelProbe(ads, where(s), cal["raw_empty"], cal["raw_full"], channel=adc["channel"])
