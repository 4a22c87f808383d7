# INA219 current/power monitor (TI SBOS448), on I2C: bus voltage, shunt voltage, current, power.
#
#   ina = INA219(i2c, "i2c0:0x40", address=0x40, shunt_ohms=0.1, max_current=3.2)
#   ina.setup()            # writes configuration and calibration, reads them back
#   ina.measure()          # {"bus_voltage": V, "shunt_voltage": mV, "current": A, "power": W}
#
# Registers (16-bit, MSB first): 00 configuration, 01 shunt voltage (10 uV/LSB, two's complement),
# 02 bus voltage (bits 15-3 at 4 mV/LSB, bit 1 CNVR conversion ready, bit 0 OVF math overflow),
# 03 power (positive, Power_LSB = 20 x Current_LSB), 04 current (two's complement, Current_LSB),
# 05 calibration (bit 0 unused). The chip computes
#   current = shunt x Cal / 4096,   power = current x bus / 5000,
# and the datasheet sets Cal = trunc(0.04096 / (Current_LSB x R)).
#
# Calibration from the profile's shunt_ohms (R) and max_current:
#   - PGA: the smallest shunt range (40, 80, 160, 320 mV) that holds max_current x R; /8 (320 mV)
#     when even that is too small: currents above 0.32 V / R then read as a "range" error.
#   - Current_LSB: max_current / 2^15 (the datasheet's minimum), rounded up to 1, 2 or 5 x 10^n A,
#     the "round LSB value" the datasheet suggests, and at least what keeps Cal <= 0x7FFE. The
#     default 0.1 ohm / 3.2 A gives 100 uA and Cal = 4096; the datasheet's example (2 mohm, 10 A
#     expected, 40 mV range) gives 1 mA and Cal = 20480 (0x5000), as its Table 3 shows.
#   - Readings use the LSB the chip really applies, 0.04096 / (Cal x R), not the rounded one.
#
# Each measure() triggers one conversion (mode 011, shunt and bus, 12-bit, 532 us each), waits
# for CNVR, and reads shunt, current, power and the bus register twice. So all four registers
# come from the same conversion, and the driver can check them against each other:
#   - OVF set, or a shunt reading at the PGA's limit -> SensorError kind "range"
#   - the two bus-register reads differ                -> kind "reply" (noise on the bus)
#   - current != shunt x Cal / 4096 or power != |current| x bus / 5000 (beyond 2 LSB + 1/128):
#     the calibration register is read back: lost (the chip was reset or browned out) or
#     intact (noise) -> kind "reply". setup() restores a lost calibration (the sampler calls
#     setup() again after an error).
#   - CNVR not set within about 12 ms                  -> kind "timeout"
# A bit flipped by noise in the low bits of the shunt, current or power register stays within
# that tolerance and goes undetected: at most 1/128 of the value + 2 LSB.

from hal.bus import i2c_error
from hal.drivers.i2c16 import Chip16, signed16

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

CHIP = "INA219"

_CONFIG = const(0x00)
_SHUNT = const(0x01)
_BUS = const(0x02)
_POWER = const(0x03)
_CURRENT = const(0x04)
_CALIBRATION = const(0x05)

_BRNG_32V = const(0x2000)
_BADC_12BIT = const(0x0180)  # BADC = 0011: one 12-bit sample, 532 us
_SADC_12BIT = const(0x0018)  # SADC = 0011
_MODE_TRIGGERED = const(0x0003)  # shunt and bus, triggered
_CNVR = const(0x0002)
_OVF = const(0x0001)
_CAL_MAX = const(0x7FFE)
_FIRST_WAIT_MS = const(2)  # two 12-bit conversions: 2 x 532 us typical
_POLLS = const(10)  # then 1 ms apart

_PGA_VOLTS = (0.04, 0.08, 0.16, 0.32)
_PGA_LIMIT = (4000, 8000, 16000, 32000)  # shunt register at +-full scale (10 uV LSB)


def _nice_at_least(x):
    """The smallest 1, 2 or 5 x 10^n that is >= x (within float rounding)."""
    e = -9
    while e < 6:
        scale = 10.0 ** e
        for m in (1, 2, 5):
            if m * scale >= x * 0.999999:
                return m * scale
        e += 1
    return x


def calibration(shunt_ohms, max_current):
    """(Cal register value, PGA index 0-3, Current_LSB in A that the chip applies) for a shunt."""
    if not shunt_ohms > 0 or not max_current > 0:
        raise ValueError("INA219: shunt_ohms and max_current must be > 0")
    need = max_current * shunt_ohms
    pga = 3
    for i in range(4):
        if need <= _PGA_VOLTS[i] * 1.000001:
            pga = i
            break
    lsb = _nice_at_least(max(max_current / 32768, 0.04096 / (_CAL_MAX * shunt_ohms)))
    x = 0.04096 / (lsb * shunt_ohms)
    cal = int(x * 1.000001) & 0xFFFE  # trunc(); bit 0 of the register reads 0 anyway
    if cal < 2:
        raise ValueError("INA219: shunt_ohms x max_current is far beyond what the chip can measure")
    return cal, pga, 0.04096 / (cal * shunt_ohms)


def _tdiv(a, b):
    return a // b if a >= 0 else -((-a) // b)


class INA219(Chip16):
    CHIP = CHIP

    def __init__(self, bus, where=None, address=0x40, shunt_ohms=0.1, max_current=3.2,
                 sleep_ms=None):
        Chip16.__init__(self, bus, where, address, sleep_ms)
        self.shunt_ohms = shunt_ohms
        self.max_current = max_current
        self.cal, self.pga, self.current_lsb = calibration(shunt_ohms, max_current)
        self.power_lsb = 20 * self.current_lsb
        self.config = (_BRNG_32V | (self.pga << 11) | _BADC_12BIT | _SADC_12BIT
                       | _MODE_TRIGGERED)

    def setup(self):
        """Writes configuration and calibration and reads them back."""
        try:
            self._write16(_CONFIG, self.config)
            self._write16(_CALIBRATION, self.cal)
            config = self._read16(_CONFIG)
            cal = self._read16(_CALIBRATION)
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)
        if config != self.config or cal != self.cal:
            raise self._error(
                "did not keep its settings (wrote configuration 0x%04x, calibration 0x%04x; "
                "read 0x%04x, 0x%04x): not an INA219, or noise on the bus"
                % (self.config, self.cal, config, cal), "reply")

    def measure(self):
        try:
            return self._measure()
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)

    # -- inside -----------------------------------------------------------------------------------
    def _measure(self):
        self._write16(_CONFIG, self.config)  # starts one conversion, clears CNVR
        self._sleep(_FIRST_WAIT_MS)
        polls = 0
        while True:
            bus1 = self._read16(_BUS)
            if bus1 & _CNVR:
                break
            polls += 1
            if polls > _POLLS:
                raise self._error("did not finish a conversion within %d ms (CNVR stayed 0)"
                                  % (_FIRST_WAIT_MS + _POLLS), "timeout")
            self._sleep(1)
        shunt = signed16(self._read16(_SHUNT))
        current = signed16(self._read16(_CURRENT))
        power = self._read16(_POWER)  # clears CNVR
        bus2 = self._read16(_BUS)
        if (bus1 ^ bus2) & 0xFFFD:
            raise self._error("gave two different readings of one bus voltage conversion "
                              "(0x%04x, 0x%04x): noise on the bus" % (bus1, bus2), "reply")
        if bus1 & _OVF:
            raise self._error("reports a math overflow (OVF): current or power beyond the "
                              "calibrated range (max_current %s A)" % self.max_current, "range")
        limit = _PGA_LIMIT[self.pga]
        if shunt >= limit or shunt <= -limit:
            raise self._error("shunt voltage %.2f mV is at the limit of its +-%d mV range: more "
                              "than %.6g A through %.6g ohm" % (shunt * 0.01, limit // 100,
                                                           limit * 0.00001 / self.shunt_ohms,
                                                           self.shunt_ohms), "range")
        bus = bus1 >> 3
        want_current = _tdiv(shunt * self.cal, 4096)
        want_power = abs(current) * bus // 5000
        if (abs(current - want_current) > 2 + (abs(want_current) >> 7)
                or abs(power - want_power) > 2 + (want_power >> 7)):
            cal = self._read16(_CALIBRATION)
            if cal != self.cal:
                raise self._error("lost its calibration (reads 0x%04x, not 0x%04x): was it reset "
                                  "or browned out?" % (cal, self.cal), "reply")
            raise self._error("gave registers that do not agree (shunt %d, current %d, power %d, "
                              "bus %d): noise on the bus" % (shunt, current, power, bus), "reply")
        return {
            "bus_voltage": bus * 0.004,
            "shunt_voltage": shunt * 0.01,
            "current": current * self.current_lsb,
            "power": power * self.power_lsb,
        }



# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    """Sensors with the same key read one chip, through one driver."""
    return ("ina219", s["bus"], s["address"])


def where(s):
    return "%s:0x%02x" % (s["bus"], s["address"])


def build(s, ctx):
    cal = s["calibration"]
    return INA219(ctx.bus(s["bus"]), where(s), address=s["address"],
                  shunt_ohms=cal["shunt_ohms"], max_current=cal["max_current"],
                  sleep_ms=ctx.sleep_ms)
