# Sensirion SHT3x (SHT30, SHT31, SHT35) temperature and humidity sensor, on I2C.
#
#   sht = SHT3x(i2c, "i2c0:0x44", address=0x44, repeatability="high")
#   sht.setup()              # soft reset, then the status register (its CRC proves the chip)
#   sht.measure()            # {"temperature": C, "humidity": %RH}
#
# From the datasheet (Sensirion, SHT3x-DIS): commands are 16 bits, MSB first. A single-shot
# measurement without clock stretching: 0x2400 (high repeatability, at most 15 ms), 0x240B
# (medium, 6 ms), 0x2416 (low, 4 ms); until it is done the chip does not acknowledge a read.
# Then 6 bytes: temperature MSB, LSB, CRC; humidity MSB, LSB, CRC. T = -45 + 175 x S / 65535 C,
# RH = 100 x S / 65535 %. CRC-8: polynomial 0x31, initial 0xFF, no reflection, no final XOR
# (the datasheet's example: 0xBEEF -> 0x92). Soft reset 0x30A2 (1.5 ms); status register 0xF32D
# (2 bytes and a CRC).
#
# Errors: no acknowledge -> "nack"; the bus held low -> "stuck"; no result after the
# measurement's time and POLLS more ms -> "timeout"; a word whose CRC does not match (noise on
# the bus, or a reply of another chip) -> "crc"; a short reply -> "reply".

from hal import ticks
from hal.bus import SensorError, i2c_error

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

CHIP = "SHT3x"

_RESET = const(0x30A2)
_STATUS = const(0xF32D)
_RESET_MS = const(2)
_POLLS = const(10)      # 1 ms apart, after the measurement's own time
# repeatability -> (command, its longest measurement in ms)
MEASURE = {"high": (0x2400, 15), "medium": (0x240B, 6), "low": (0x2416, 4)}


def crc8(data, start=0, end=2):
    """Sensirion's CRC-8 of data[start:end]."""
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def celsius(raw):
    return -45.0 + 175.0 * raw / 65535


def humidity(raw):
    return 100.0 * raw / 65535


class SHT3x:
    def __init__(self, bus, where=None, address=0x44, repeatability="high", sleep_ms=None):
        if repeatability not in MEASURE:
            raise ValueError("SHT3x repeatability %r: high, medium or low" % (repeatability,))
        self.bus = bus
        self.address = address
        self.where = where if where is not None else "0x%02x" % address
        self.command, self.wait_ms = MEASURE[repeatability]
        self._sleep = sleep_ms or ticks.sleep_ms
        self._cmd = bytearray(2)

    def setup(self):
        """A soft reset, then the status register: a reply with a good CRC is an SHT3x."""
        try:
            self._send(_RESET)
            self._sleep(_RESET_MS)
            self._send(_STATUS)
            data = self.bus.readfrom(self.address, 3)
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)
        self._words(data, 1)

    def measure(self):
        try:
            self._send(self.command)
        except OSError as exc:
            raise i2c_error(CHIP, self.where, exc)
        self._sleep(self.wait_ms)
        polls = 0
        while True:
            try:
                data = self.bus.readfrom(self.address, 6)
                break
            except OSError as exc:
                err = i2c_error(CHIP, self.where, exc)
                if err.kind != "nack":
                    raise err
            polls += 1
            if polls > _POLLS:
                # It acknowledged the command: a chip that then never answers is still busy
                raise SensorError(CHIP, self.where, "did not finish a measurement within %d ms"
                                  % (self.wait_ms + _POLLS), "timeout")
            self._sleep(1)
        t, rh = self._words(data, 2)
        return {"temperature": celsius(t), "humidity": humidity(rh)}

    # -- inside -----------------------------------------------------------------------------------
    def _send(self, command):
        cmd = self._cmd
        cmd[0] = command >> 8
        cmd[1] = command & 0xFF
        self.bus.writeto(self.address, cmd)

    def _words(self, data, n):
        """The n 16-bit words of a reply, each checked against its CRC byte."""
        if len(data) != 3 * n:
            raise SensorError(CHIP, self.where, "answered %d bytes, not %d" % (len(data), 3 * n),
                              "reply")
        out = []
        for i in range(0, 3 * n, 3):
            crc = crc8(data, i, i + 2)
            if crc != data[i + 2]:
                raise SensorError(CHIP, self.where, "sent a word whose CRC does not match "
                                  "(0x%02x%02x with 0x%02x, expected 0x%02x): noise on the bus"
                                  % (data[i], data[i + 1], data[i + 2], crc), "crc")
            out.append((data[i] << 8) | data[i + 1])
        return out


# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    """Temperature and humidity are one measurement of one chip: one driver for both."""
    return ("sht3x", s["bus"], s["address"])


def where(s):
    return "%s:0x%02x" % (s["bus"], s["address"])


def build(s, ctx):
    return SHT3x(ctx.bus(s["bus"]), where(s), address=s["address"],
                 repeatability=s["repeatability"], sleep_ms=ctx.sleep_ms)
