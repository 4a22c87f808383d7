# A virtual ADS1115 (TI SBAS444): four inputs, the multiplexer, the PGA, single-shot and
# continuous conversions.
#
#   chip = SimADS1115(); bus.attach(0x48, chip)
#   chip.volts = [0.5, 1.0, 1.5, 3.0]      (AIN0..AIN3 against GND)
#
# Registers (16-bit, MSB first; the pointer's two low bits select): 00 conversion (two's
# complement, LSB = FSR / 32768, clipped at 0x7FFF / 0x8000), 01 config (power-on 0x8583),
# 02 Lo_thresh (0x8000), 03 Hi_thresh (0x7FFF).
# Config: OS (bit 15; write 1 in single-shot mode to start a conversion; reads 0 while one runs),
# MUX (14-12: 000 AIN0-AIN1, 001 AIN0-AIN3, 010 AIN1-AIN3, 011 AIN2-AIN3, 1xx AINx-GND),
# PGA (11-9: +-6.144, 4.096, 2.048, 1.024, 0.512, 0.256 V; 110 and 111 are 0.256 too), MODE (8:
# 1 = single-shot), DR (7-5) and the comparator bits (4-0), which are stored, not acted on.
# A conversion takes `busy_reads` config reads (OS reads 0 meanwhile), not time. In continuous
# mode the conversion register follows the inputs on every read.
#
# Faults: chip.stall = True: a started conversion never completes (OS stays 0, the conversion
# register keeps its old value); an input in chip.floating has lost its wire and reads full scale
# (taken as pulled up to VDD: a level probe's "disconnected").
_POR_CONFIG = 0x8583
_FSR = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
_MUX = ((0, 1), (0, 3), (1, 3), (2, 3), (0, None), (1, None), (2, None), (3, None))


def _round(x):
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


class SimADS1115:
    def __init__(self, volts=None):
        self.volts = list(volts) if volts is not None else [0.0, 0.0, 0.0, 0.0]
        self.stall = False
        self.floating = set()
        self.busy_reads = 0
        self.conversions = 0
        self.config = _POR_CONFIG & 0x7FFF  # OS kept apart: self._busy
        self.conversion = 0
        self.lo_thresh = 0x8000
        self.hi_thresh = 0x7FFF
        self._busy = None  # None: idle; n: config reads before it completes; -1: never

    def clear(self):
        """Ends its faults (SimPlatform.clear): the conversion it was stuck on completes, and
        the next ones do; every input has its wire again."""
        self.stall = False
        self.floating = set()
        if self._busy == -1:
            self._finish()

    def code(self):
        """The conversion code for the current inputs and the config's MUX and PGA."""
        p, n = _MUX[(self.config >> 12) & 7]
        fsr = _FSR[(self.config >> 9) & 7]
        if p in self.floating or n in self.floating:
            return 32767
        v = self.volts[p] - (self.volts[n] if n is not None else 0.0)
        return max(-32768, min(32767, _round(v / fsr * 32768)))

    # -- the chip interface (hal/sim/i2c.py) -----------------------------------------------------
    def write(self, reg, data):
        if len(data) < 2:
            return
        value = (data[0] << 8) | data[1]
        reg &= 3
        if reg == 1:
            idle = self._busy is None
            self.config = value & 0x7FFF
            if value & 0x8000 and self.config & 0x100 and idle:
                if self.stall:
                    self._busy = -1
                elif self.busy_reads:
                    self._busy = self.busy_reads
                else:
                    self._finish()
        elif reg == 2:
            self.lo_thresh = value
        elif reg == 3:
            self.hi_thresh = value

    def read(self, reg, n):
        reg &= 3
        if reg == 0:
            if not self.config & 0x100:  # continuous: always the latest inputs
                self.conversion = self.code() & 0xFFFF
            value = self.conversion
        elif reg == 1:
            busy = self._busy is not None
            if busy and self._busy > 0:
                self._busy -= 1
                if self._busy == 0:
                    self._finish()
            value = self.config | (0 if busy else 0x8000)
        elif reg == 2:
            value = self.lo_thresh
        else:
            value = self.hi_thresh
        out = bytes(((value >> 8) & 0xFF, value & 0xFF))
        return out[:n] if n <= 2 else out + b"\xff" * (n - 2)

    def _finish(self):
        self.conversion = self.code() & 0xFFFF
        self.conversions += 1
        self._busy = None


# -- on the sim platform (hal/sim/platform.py, hal/chips.py) -------------------------------------

DEFAULTS = {"voltage": 1.0}
FAULT = "nack"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)


def key(s):
    return chip_key(s["bus"], s["address"])


def chip_key(bus, address):
    """One virtual chip per bus address, whichever sensors read its channels."""
    return ("ads1115", bus, address)


def build(s, world):
    return make(world, s["bus"], s["address"])


def make(world, bus, address):
    chip = SimADS1115()
    world.attach_i2c(bus, address, chip)
    return chip


def state(s):
    return (s["quantity"], s["channel"])  # each channel its own voltage


def set_quantity(s, chip, value):
    chip.volts[s["channel"]] = value


def faults(s):
    """The chip's own faults for sensor s (its bus's are hal/sim/i2c.py's)."""
    return ("stall",)


def fault(s, chip, kind):
    if kind == "stall":
        chip.stall = True
        return True
    return False
