# PZEM-004T v3.0 AC energy meter (Peacefair) on a UART: Modbus-RTU at 9600 baud, 8N1.
#
# One read of the ten input registers (function 0x04, registers 0x0000-0x0009) gives everything:
#
#   0x0000 voltage, 0.1 V            0x0005/6 energy, 1 Wh (low word first)
#   0x0001/2 current, 0.001 A        0x0007 frequency, 0.1 Hz
#            (32 bits, low word first) 0x0008 power factor, 0.01
#   0x0003/4 power, 0.1 W (low first) 0x0009 alarm: 0xFFFF above the power threshold, else 0
#
# Function 0x42 resets the energy counter (the reply echoes the request); function 0x06 writes
# holding register 0x0001 (power alarm threshold, W) or 0x0002 (slave address 1-247). Replies that
# the meter refuses carry function | 0x80 and an exception code (1 illegal function, 2 illegal
# address, 3 illegal data, 4 slave error). Every frame ends with CRC-16/MODBUS (hal.drivers.modbus).
#
# Each request first drains whatever is waiting on the UART (a late reply to an earlier request,
# line noise), so that an old reply is never taken for the new one. Errors are SensorError with
# kind "timeout" (no byte within timeout_ms), "crc" (bad CRC) or "reply" (short, from another
# address, another function, a wrong length, a Modbus exception, a wrong echo).
from hal.bus import SensorError
from hal.drivers import modbus
from hal.ticks import sleep_ms as _sleep_ms, ticks_diff, ticks_ms as _ticks_ms

try:
    from micropython import const
except ImportError:
    def const(x):
        return x


CHIP = "PZEM-004T"
GENERAL_ADDRESS = const(0xF8)    # "general address": any single meter on the line answers it
_N_INPUT = const(10)             # input registers 0x0000-0x0009
_READ_REPLY = const(25)          # address, function, byte count (20), 20 data bytes, CRC
_MAX_DRAIN = const(16)           # read calls spent draining stale input before a request


class PZEM004T:
    """A PZEM-004T v3.0 on a UART (`machine.UART`-like: write, read, any) at a Modbus address."""

    def __init__(self, uart, where, address=1, timeout_ms=200, sleep_ms=None, ticks_ms=None):
        if not (1 <= address <= 247 or address == GENERAL_ADDRESS):
            raise ValueError("PZEM-004T address must be 1-247 (or 0xF8), got %r" % (address,))
        self._uart = uart
        self.where = where
        self.address = address
        self.timeout_ms = timeout_ms
        self._sleep_ms = sleep_ms or _sleep_ms
        self._ticks_ms = ticks_ms or _ticks_ms  # the simulator's: its timeouts count polls alone
        self._req8 = bytearray(8)
        self._reply = bytearray(_READ_REPLY)

    def _error(self, problem, kind):
        return SensorError(CHIP, self.where, problem, kind)

    def setup(self):
        """Checks that the meter answers (one read of its registers); raises SensorError."""
        self.read_registers()

    def measure(self):
        """{"voltage": V, "current": A, "power": W, "energy": Wh, "frequency": Hz,
        "power_factor": 0..1, "alarm": bool}, read in one Modbus transaction."""
        self.read_registers()
        r = self._reply
        w = modbus.word
        return {
            "voltage": w(r, 3) / 10,
            "current": (w(r, 5) | (w(r, 7) << 16)) / 1000,
            "power": (w(r, 9) | (w(r, 11) << 16)) / 10,
            "energy": w(r, 13) | (w(r, 15) << 16),
            "frequency": w(r, 17) / 10,
            "power_factor": w(r, 19) / 100,
            "alarm": w(r, 21) != 0,
        }

    def read_registers(self):
        """Reads input registers 0x0000-0x0009 into the reply buffer (data from byte 3 on)."""
        modbus.request(self._req8, self.address, modbus.READ_INPUT, 0, _N_INPUT)
        self._transact(self._req8, modbus.READ_INPUT, _READ_REPLY)
        if self._reply[2] != 2 * _N_INPUT:
            raise self._error("sent %d data bytes for %d registers" % (self._reply[2], _N_INPUT),
                              "reply")
        return self._reply

    def _transact(self, request, function, want):
        """Sends request, receives a reply of `want` bytes into self._reply and checks its CRC,
        address and function; raises SensorError."""
        uart = self._uart
        for _ in range(_MAX_DRAIN):
            waiting = uart.any()
            if not waiting:
                break
            uart.read(waiting)
        uart.write(request)
        got, want = self._receive(want)
        reply = self._reply
        if got == 0:
            raise self._error("did not answer within %d ms" % self.timeout_ms, "timeout")
        if got < want:
            raise self._error("sent a short reply (%d of %d bytes within %d ms)"
                              % (got, want, self.timeout_ms), "reply")
        if not modbus.crc_ok(reply, want):
            raise self._error("sent a reply with a bad CRC", "crc")
        if reply[0] != self.address and self.address != GENERAL_ADDRESS:
            raise self._error("got a reply from address %d" % reply[0], "reply")
        if reply[1] == function | modbus.EXCEPTION_BIT:
            raise self._error("refused function 0x%02x: Modbus exception %d (%s)"
                              % (function, reply[2], modbus.exception_name(reply[2])), "reply")
        if reply[1] != function:
            raise self._error("answered function 0x%02x to a 0x%02x request"
                              % (reply[1], function), "reply")

    def _receive(self, want):
        """Reads into self._reply until `want` bytes (5 once an exception reply shows) or the
        timeout; returns (bytes received, bytes expected).

        Polls any() every millisecond; the timeout ends after timeout_ms of wall time or
        timeout_ms idle polls, whichever comes first (so a sleep_ms that does not really wait,
        the simulator's, still gives up)."""
        uart = self._uart
        reply = self._reply
        got = 0
        polls = 0
        ticks_ms = self._ticks_ms
        start = ticks_ms()
        while got < want:
            waiting = uart.any()
            if waiting:
                chunk = uart.read(min(waiting, want - got))
                if chunk:
                    n = len(chunk)
                    reply[got:got + n] = chunk
                    got += n
                    if got >= 2 and reply[1] & modbus.EXCEPTION_BIT:
                        want = modbus.EXCEPTION_LENGTH
                continue
            if polls >= self.timeout_ms or ticks_diff(ticks_ms(), start) >= self.timeout_ms:
                break
            self._sleep_ms(1)
            polls += 1
        return got, want


# -- how hal/board.py builds it from a compiled sensor (hal/chips.py) ----------------------------

def key(s):
    """Sensors with the same key read one meter, through one driver (one request for all)."""
    return ("pzem004t", s["bus"], s["address"])


def where(s):
    return "%s:%d" % (s["bus"], s["address"])  # a Modbus address, as the profile writes it


def build(s, ctx):
    return PZEM004T(ctx.bus(s["bus"]), where(s), address=s["address"], sleep_ms=ctx.sleep_ms,
                    ticks_ms=ctx.ticks_ms)
