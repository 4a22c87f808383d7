# A virtual Sensirion SHT3x (SHT3x-DIS datasheet): single-shot measurements without clock
# stretching, the status register, soft reset, the CRC on every word.
#
#   chip = SimSHT3x(); bus.attach(0x44, chip)
#   chip.temperature = 4.0; chip.humidity = 55.0      (C, %RH)
#
# A command arrives as write(msb, [lsb]) (hal/sim/i2c.py). After a measurement command the next
# `busy_reads` reads are not acknowledged (OSError ENODEV, as the chip does while it measures),
# then a read gets the 6 bytes: temperature and humidity, each 16 bits and a CRC. The status
# command (0xF32D) makes the next read the status word and its CRC; a read with nothing to send
# is not acknowledged either. Out-of-range values are clamped to what the codes can hold
# (-45 to 130 C, 0 to 100 %RH).
#
# Faults: chip.stall = True: a measurement never completes (reads are never acknowledged);
# chip.bad_crc = True: every CRC byte sent is wrong.
import errno

from hal.drivers.sht3x import MEASURE, crc8

_COMMANDS = {cmd for cmd, _ in MEASURE.values()}
_STATUS = 0xF32D
_RESET = 0x30A2
_STATUS_AFTER_RESET = 0x8010    # alert pending, reset detected (the datasheet's status bits)


def _code(value, low, span):
    raw = int((value - low) * 65535 / span + 0.5)
    return 0 if raw < 0 else (65535 if raw > 65535 else raw)


class SimSHT3x:
    def __init__(self, temperature=21.0, humidity=45.0):
        self.temperature = temperature
        self.humidity = humidity
        self.stall = False
        self.bad_crc = False
        self.busy_reads = 0
        self.measurements = 0
        self.commands = []
        self._busy = None       # reads still not acknowledged; -1: for ever
        self._reply = None

    def clear(self):
        """Ends its faults (SimPlatform.clear)."""
        self.stall = False
        self.bad_crc = False
        if self._busy == -1:
            self._busy = None

    # -- the chip interface (hal/sim/i2c.py) -----------------------------------------------------
    def write(self, reg, data):
        if len(data) != 1:
            return      # not a 16-bit command
        cmd = (reg << 8) | data[0]
        self.commands.append(cmd)
        if cmd in _COMMANDS:
            self._reply = None
            self._busy = -1 if self.stall else self.busy_reads
            self.measurements += 1
        elif cmd == _STATUS:
            self._reply = self._words(_STATUS_AFTER_RESET)
        elif cmd == _RESET:
            self._reply = None
            self._busy = None

    def read(self, reg, n):
        if self._busy is not None:
            if self._busy == -1 or self._busy > 0:
                if self._busy > 0:
                    self._busy -= 1
                raise OSError(errno.ENODEV)
            self._busy = None
            self._reply = self._words(_code(self.temperature, -45.0, 175.0),
                                      _code(self.humidity, 0.0, 100.0))
        if self._reply is None:
            raise OSError(errno.ENODEV)
        out, self._reply = self._reply, None
        return out[:n] if n <= len(out) else out + b"\xff" * (n - len(out))

    def _words(self, *words):
        out = bytearray()
        for w in words:
            pair = bytes(((w >> 8) & 0xFF, w & 0xFF))
            out += pair + bytes(((crc8(pair) ^ (0xFF if self.bad_crc else 0)),))
        return bytes(out)


# -- on the sim platform (hal/sim/platform.py, hal/chips.py) -------------------------------------

DEFAULTS = {"temperature": 21.0, "humidity": 45.0}
FAULT = "nack"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)


def key(s):
    return ("sht3x", s["bus"], s["address"])


def build(s, world):
    chip = SimSHT3x()
    world.attach_i2c(s["bus"], s["address"], chip)
    return chip


def state(s):
    return s["quantity"]


def set_quantity(s, chip, value):
    setattr(chip, s["quantity"], value)


def faults(s):
    """The chip's own faults for sensor s (its bus's are hal/sim/i2c.py's)."""
    return ("stall", "bad_crc")


def fault(s, chip, kind):
    if kind in ("stall", "bad_crc"):
        setattr(chip, kind, True)
        return True
    return False
