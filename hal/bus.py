# What a driver may ask of a bus, and the one error a driver raises.
#
# Drivers take bus objects with the method names of MicroPython's `machine` classes, so that on
# an ESP32 the bus is machine.I2C itself, with nothing in between; the Linux (hal/linux) and
# simulated (hal/sim) backends give objects with the same methods:
#
#   I2C   readfrom_mem(addr, reg, n) -> bytes, writeto_mem(addr, reg, buf),
#         readfrom(addr, n) -> bytes, writeto(addr, buf). A chip that does not acknowledge
#         raises OSError(ENODEV) (MicroPython on ESP32 also uses EIO), a bus held low raises
#         OSError(ETIMEDOUT).
#   UART  write(buf) -> n, read(n) -> bytes or None (fewer than n, or None, after the timeout
#         the backend was opened with), any() -> bytes waiting.
#   Pin   value() -> 0/1 (an input), value(v) (an output).
#   ADC   read_u16() -> 0..65535.
#
# Where a driver names its chip in an error, `where` is the profile's name for the place:
# "i2c0:0x40", "uart1:1", "pins 4/5", "pin 34".
import errno


class SensorError(Exception):
    """A chip that is missing or misbehaves: `INA219 at i2c0:0x40 did not acknowledge`.

    kind is one of "nack", "timeout", "crc", "range", "stuck", "disconnected", "reply" (a reply
    that is well formed but wrong), "bus" (a transfer that failed otherwise), so that the sampler
    can count each kind.
    """

    def __init__(self, chip, where, problem, kind):
        super().__init__("%s at %s %s" % (chip, where, problem))
        self.chip = chip
        self.where = where
        self.kind = kind


def i2c_error(chip, where, exc):
    """The SensorError for an OSError from an I2C transfer."""
    code = exc.args[0] if exc.args else None
    if code == errno.ETIMEDOUT:
        return SensorError(chip, where, "did not answer: the bus is held low (stuck)", "stuck")
    if code in (errno.ENODEV, errno.EIO):  # EIO: a data byte's NACK (MicroPython's soft I2C)
        return SensorError(chip, where, "did not acknowledge", "nack")
    # Not a NACK (Linux: EAGAIN, lost arbitration; ENOTTY, a port that is no I2C adapter):
    # said as it is, not blamed on the chip.
    name = getattr(errno, "errorcode", {}).get(code, code)
    return SensorError(chip, where, "could not be reached: the I2C transfer failed (%s)" % name,
                       "bus")
