# A virtual INA219 (TI SBOS448): its register file, driven by the current through the shunt and
# the bus voltage, computing what the chip computes.
#
#   chip = SimINA219(shunt_ohms=0.1); bus.attach(0x40, chip)
#   chip.amps = 1.5; chip.bus_volts = 12.0   (bus_volts: IN- to GND, what the chip measures)
#
# Registers (16-bit, MSB first): 00 configuration (power-on 0x399F; writing bit 15 resets every
# register), 01 shunt voltage (10 uV/LSB, two's complement, clipped at the PGA range: +-4000,
# 8000, 16000, 32000), 02 bus voltage (bits 15-3, 4 mV/LSB; bit 1 CNVR, bit 0 OVF), 03 power,
# 04 current, 05 calibration (bit 0 always reads 0).
# After each conversion, as in the datasheet's equations:
#   current = shunt x calibration / 4096,  power = |current| x bus / 5000
# (the power register is positive only); both truncated toward zero, so with calibration 0 they
# are 0. OVF is set when the current does not fit 16 signed bits or the power 16 unsigned bits;
# the registers then hold the low 16 bits, meaningless, as the datasheet warns.
# CNVR is set when a conversion completes and cleared by reading the power register or by writing
# a mode into the configuration register. Triggered modes (1-3) convert once per configuration
# write; continuous modes (5-7) convert before every read of a data register; the conversion
# time is not modelled, except that `settle_reads` bus-register reads see the conversion still
# running (CNVR 0, old data). The ADC resolution/averaging bits are not modelled: the result is
# the exact value rounded to the register's LSB.
#
# Faults: chip.stall = True (a triggered conversion never completes: CNVR stays 0);
# chip.power_cycle() (a brown-out: every register back to its power-on value).
_POR_CONFIG = 0x399F
_PGA_LIMIT = (4000, 8000, 16000, 32000)


def _round(x):
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def _tdiv(a, b):
    """a / b truncated toward zero, b > 0."""
    return a // b if a >= 0 else -((-a) // b)


class SimINA219:
    def __init__(self, shunt_ohms=0.1, amps=0.0, bus_volts=0.0):
        self.shunt_ohms = shunt_ohms
        self.amps = amps
        self.bus_volts = bus_volts
        self.stall = False
        self.settle_reads = 0
        self.power_cycle()

    def clear(self):
        """Ends its fault (SimPlatform.clear): a triggered conversion completes again."""
        self.stall = False

    def power_cycle(self):
        self.config = _POR_CONFIG
        self.calibration = 0
        self.shunt = 0
        self.bus = 0  # bits 15-3 only; CNVR and OVF are kept apart
        self.current = 0
        self.power = 0
        self.cnvr = 0
        self.ovf = 0
        self._pending = None  # bus reads left before a triggered conversion shows

    # -- the chip interface (hal/sim/i2c.py) -----------------------------------------------------
    def write(self, reg, data):
        if len(data) < 2:
            return
        value = (data[0] << 8) | data[1]
        if reg == 0:
            if value & 0x8000:
                self.power_cycle()
                return
            self.config = value
            mode = value & 7
            if mode not in (0, 4):  # writing a conversion mode clears CNVR
                self.cnvr = 0
            if 1 <= mode <= 3:
                self._pending = None if self.stall else self.settle_reads
                if self._pending == 0:
                    self._convert()
        elif reg == 5:
            self.calibration = value & 0xFFFE

    def read(self, reg, n):
        if 1 <= reg <= 4:
            if 5 <= (self.config & 7) <= 7:
                self._convert()
            elif reg == 2 and self._pending:
                self._pending -= 1
                if self._pending == 0:
                    self._convert()
        value = self._register(reg)
        if reg == 3:
            self.cnvr = 0
        out = bytes(((value >> 8) & 0xFF, value & 0xFF))
        return out[:n] if n <= 2 else out + b"\xff" * (n - 2)

    # -- inside -----------------------------------------------------------------------------------
    def _register(self, reg):
        if reg == 0:
            return self.config
        if reg == 1:
            return self.shunt & 0xFFFF
        if reg == 2:
            return self.bus | (self.cnvr << 1) | self.ovf
        if reg == 3:
            return self.power
        if reg == 4:
            return self.current & 0xFFFF
        if reg == 5:
            return self.calibration
        return 0

    def _convert(self):
        self._pending = None
        mode = self.config & 7
        if mode & 1:  # shunt voltage is converted in modes 1, 3, 5, 7
            limit = _PGA_LIMIT[(self.config >> 11) & 3]
            code = _round(self.amps * self.shunt_ohms / 0.00001)
            self.shunt = max(-limit, min(limit, code))
        if mode & 2:  # bus voltage in modes 2, 3, 6, 7
            top = 8191 if self.config & 0x2000 else 4095
            self.bus = max(0, min(top, _round(self.bus_volts / 0.004))) << 3
        current = _tdiv(self.shunt * self.calibration, 4096)
        power = _tdiv(abs(current) * (self.bus >> 3), 5000)
        self.ovf = 1 if (current > 32767 or current < -32768 or power > 65535) else 0
        self.current = current & 0xFFFF
        self.power = power & 0xFFFF
        self.cnvr = 1


# -- on the sim platform (hal/sim/platform.py, hal/chips.py) -------------------------------------

BUS_VOLTS = 12.0
DEFAULTS = {"power": 3.5, "bus_voltage": BUS_VOLTS, "current": 0.29, "shunt_voltage": 0}
FAULT = "nack"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)


def key(s):
    return ("ina219", s["bus"], s["address"])


def build(s, world):
    chip = SimINA219(shunt_ohms=s["calibration"]["shunt_ohms"], bus_volts=BUS_VOLTS)
    world.attach_i2c(s["bus"], s["address"], chip)
    return chip


def state(s):
    return s["quantity"]


def set_quantity(s, chip, value):
    q = s["quantity"]
    if q == "power":
        chip.amps = value / chip.bus_volts if chip.bus_volts else 0.0
    elif q == "current":
        chip.amps = value
    elif q == "bus_voltage":
        chip.bus_volts = value
    else:  # shunt_voltage, mV
        chip.amps = value / 1000.0 / chip.shunt_ohms


def faults(s):
    return ()  # only the bus's faults (hal/sim/i2c.py)


def fault(s, chip, kind):
    return False
