# A virtual PZEM-004T v3.0 that answers real Modbus-RTU frames, driven by physical values.
#
#   meter = SimPZEM004T(address=1, volts=230.0, amps=2.0, pf=0.9)
#   uart = SimUART("uart1", meter)      # or simulator.lab.ptydevice.PtyDevice(meter) for pyserial
#   meter.advance(3600)                 # one hour at the present power: +watts Wh
#
# Physical attributes: volts, amps, pf, hz, watts (volts * amps * pf unless set), wh (energy,
# accumulated by advance() or set), alarm (watts above alarm_threshold unless set).
# It implements what the manual lists: 0x04 read input registers 0x0000-0x0009, 0x03 read holding
# registers 0x0001 (alarm threshold, W) and 0x0002 (address), 0x06 write one of them (the reply
# echoes the request), 0x42 reset energy (echoed). Requests with a bad CRC, too short, or for
# another address get no reply (as on a Modbus line); the broadcast address 0 is obeyed without a
# reply; the general address 0xF8 is answered, with 0xF8 in the reply. Other functions (including
# 0x41, factory calibration) get exception 1 (illegal function), registers out of range exception 2
# (illegal address), bad counts or values exception 3 (illegal data); `failing = True` makes every
# request get exception 4 (slave error). Portable.
from hal.drivers import modbus

GENERAL_ADDRESS = 0xF8
BROADCAST = 0
_INPUT_REGISTERS = 10


def _clamp(value, top):
    value = int(value)
    return 0 if value < 0 else top if value > top else value


class SimPZEM004T:
    def __init__(self, address=1, volts=230.0, amps=0.0, pf=1.0, hz=50.0, wh=0.0,
                 alarm_threshold=2300):
        self.address = address
        self.volts = volts
        self.amps = amps
        self.pf = pf
        self.hz = hz
        self.wh = wh
        self.alarm_threshold = alarm_threshold
        self.failing = False
        self._watts = None
        self._alarm = None
        self.requests = 0          # frames addressed to this meter that it acted on
        self.ignored = 0           # frames dropped: bad CRC, too short, another address
        self.resets = 0

    @property
    def watts(self):
        if self._watts is not None:
            return self._watts
        return self.volts * self.amps * self.pf

    @watts.setter
    def watts(self, value):
        self._watts = value        # None: back to volts * amps * pf

    @property
    def alarm(self):
        if self._alarm is not None:
            return self._alarm
        return self.watts > self.alarm_threshold

    @alarm.setter
    def alarm(self, value):
        self._alarm = value        # None: back to watts > alarm_threshold

    def advance(self, seconds):
        """Lets `seconds` pass at the present power: the energy counter grows."""
        self.wh += self.watts * seconds / 3600

    def input_registers(self):
        """The ten input registers as the meter would send them now."""
        current = _clamp(round(self.amps * 1000), 0xFFFFFFFF)
        power = _clamp(round(self.watts * 10), 0xFFFFFFFF)
        energy = _clamp(self.wh, 0xFFFFFFFF)      # whole watt-hours
        return [
            _clamp(round(self.volts * 10), 0xFFFF),
            current & 0xFFFF, current >> 16,
            power & 0xFFFF, power >> 16,
            energy & 0xFFFF, energy >> 16,
            _clamp(round(self.hz * 10), 0xFFFF),
            _clamp(round(self.pf * 100), 0xFFFF),
            0xFFFF if self.alarm else 0x0000,
        ]

    def holding_registers(self):
        """{register: value} for the two holding registers."""
        return {1: self.alarm_threshold, 2: self.address}

    # -- the Modbus side ----------------------------------------------------------------------
    def handle(self, frame):
        """Reply bytes for one request frame, or None when the meter stays silent."""
        n = len(frame)
        if n < 4 or not modbus.crc_ok(frame, n):
            self.ignored += 1
            return None
        to = frame[0]
        if to != self.address and to != GENERAL_ADDRESS and to != BROADCAST:
            self.ignored += 1
            return None
        self.requests += 1
        reply = self._answer(frame, n)
        if to == BROADCAST or reply is None:
            return None
        out = bytearray(len(reply) + 2)
        out[0:len(reply)] = reply
        out[0] = to
        modbus.put_crc(out, len(reply))
        return bytes(out)

    def _exception(self, function, code):
        return bytes((0, function | 0x80, code))

    def _answer(self, frame, n):
        function = frame[1]
        if self.failing:
            return self._exception(function, 4)
        if function == 0x42:
            if n != 4:
                return None
            self.wh = 0.0
            self.resets += 1
            return frame[:2]
        if function not in (modbus.READ_INPUT, modbus.READ_HOLDING, modbus.WRITE_SINGLE):
            return self._exception(function, 1)
        if n != 8:
            return None
        first = modbus.word(frame, 2)
        value = modbus.word(frame, 4)
        if function == modbus.READ_INPUT:
            if not 1 <= value <= 125:
                return self._exception(function, 3)
            if first + value > _INPUT_REGISTERS:
                return self._exception(function, 2)
            return self._registers(function, self.input_registers()[first:first + value])
        holding = self.holding_registers()
        if function == modbus.READ_HOLDING:
            if not 1 <= value <= 125:
                return self._exception(function, 3)
            if first < 1 or first + value > 3:
                return self._exception(function, 2)
            return self._registers(function, [holding[r] for r in range(first, first + value)])
        if first not in holding:
            return self._exception(function, 2)
        if first == 2:
            if not 1 <= value <= 247:
                return self._exception(function, 3)
            self.address = value
        else:
            self.alarm_threshold = value
        return frame[:6]

    def _registers(self, function, values):
        out = bytearray(3 + 2 * len(values))
        out[1] = function
        out[2] = 2 * len(values)
        for i, v in enumerate(values):
            out[3 + 2 * i] = v >> 8
            out[4 + 2 * i] = v & 0xFF
        return out


# -- on the sim platform (hal/sim/platform.py, hal/chips.py) -------------------------------------

DEFAULTS = {"power": 3.5, "voltage": 230.0, "current": 0.29, "energy": 15230, "frequency": 50.0,
            "power_factor": 0.95}
FAULT = "timeout"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)
_STATE = {"power": "watts", "voltage": "volts", "current": "amps", "energy": "wh",
          "frequency": "hz", "power_factor": "pf"}


def key(s):
    return ("pzem004t", s["bus"], s["address"])


def build(s, world):
    chip = SimPZEM004T(address=s["address"])
    world.attach_uart(s["bus"], chip)
    return chip


def state(s):
    return s["quantity"]


def set_quantity(s, chip, value):
    setattr(chip, _STATE[s["quantity"]], value)


def faults(s):
    return ()  # only the line's faults (hal/sim/uart.py)


def fault(s, chip, kind):
    return False
