# Helpers for the I2C driver tests (test_ina219, test_ads1115, test_level_probe), portable.
from support import FLOAT32


class Sleeps:
    """A sleep_ms that only counts: the drivers' waits cost no time in tests."""

    def __init__(self):
        self.calls = []

    def __call__(self, ms):
        self.calls.append(ms)

    def total(self):
        return sum(self.calls)


class Regs:
    """A scripted chip: fixed 16-bit register values (reg -> value); writes are recorded and
    stored, so a written register reads back."""

    def __init__(self, values):
        self.values = dict(values)
        self.writes = []

    def write(self, reg, data):
        self.writes.append((reg, bytes(data)))
        if len(data) == 2:
            self.values[reg] = (data[0] << 8) | data[1]

    def read(self, reg, n):
        v = self.values.get(reg, 0)
        return bytes(((v >> 8) & 0xFF, v & 0xFF))[:n]


class FlipBus:
    """Wraps a bus and flips one bit (0 = LSB of the 16-bit word) of the nth read (0-based)."""

    def __init__(self, bus, nth, bit):
        self.bus = bus
        self.nth = nth
        self.bit = bit
        self.reads = 0

    def readfrom_mem(self, addr, reg, n):
        data = bytearray(self.bus.readfrom_mem(addr, reg, n))
        if self.reads == self.nth:
            data[1 - (self.bit >> 3)] ^= 1 << (self.bit & 7)
        self.reads += 1
        return bytes(data)

    def writeto_mem(self, addr, reg, buf):
        self.bus.writeto_mem(addr, reg, buf)


def close(a, b, tol):
    """a is b within tol, or within the few units in the last place a single-precision float
    (an ESP32's) gets to: 3000 x 4 mV is 12.000001 V there."""
    return abs(a - b) <= tol + (4 * 2.0 ** -23 * abs(b) if FLOAT32 else 0)
