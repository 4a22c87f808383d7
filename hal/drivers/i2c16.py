# What the INA219 and the ADS1115 share: an I2C chip of 16-bit big-endian registers, and errors
# that name the chip, bus and address. Portable.
from hal import ticks
from hal.bus import SensorError


def signed16(v):
    return v - 0x10000 if v & 0x8000 else v


class Chip16:
    CHIP = None  # the chip's name in errors

    def __init__(self, bus, where, address, sleep_ms):
        self.bus = bus
        self.address = address
        self.where = where if where is not None else "0x%02x" % address
        self._sleep = sleep_ms or ticks.sleep_ms
        self._buf = bytearray(2)

    def _read16(self, reg):
        data = self.bus.readfrom_mem(self.address, reg, 2)
        if len(data) != 2:
            raise self._error("answered %d bytes for a 2-byte register" % len(data), "reply")
        return (data[0] << 8) | data[1]

    def _write16(self, reg, value):
        buf = self._buf
        buf[0] = (value >> 8) & 0xFF
        buf[1] = value & 0xFF
        self.bus.writeto_mem(self.address, reg, buf)

    def _error(self, problem, kind):
        return SensorError(self.CHIP, self.where, problem, kind)
