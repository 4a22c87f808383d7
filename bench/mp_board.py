# The device side of bench/heap.py: one boot of the printer's ESP32 bundle on the host's
# MicroPython, as a board boots it. Minimal doubles of machine, network and ntptime go into
# sys.modules, then the bundle's /main.py runs unchanged: WiFi joins at once, NTP gives the host's
# clock, the watchdog is never hungry, an ADC reads mid-scale, and an I2C bus holds an INA219 at
# 0x40 (registers written are read back; bus 12 V with its conversion-ready bit, a small shunt
# voltage, current and power). Run in the bundle's folder, compiled to .mpy:
#   micropython -X heapsize=K -m mp_board [SAMPLE_MS]
# With SAMPLE_MS > 0 the heap is measured from inside once per supervisor check (every CHECK_MS):
# gc.collect(), then gc.mem_alloc(): the live heap, and each new peak is printed as
# `heapmark live N` (and first `heapmark doubles N`, what this script holds). Without it nothing is added to the board's own behaviour, which is what the
# smallest-heap search runs.
import gc
import sys
import time


class _WDT:
    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        pass


class _Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, *args, **kwargs):
        self.id = id
        self._value = kwargs.get("value", 0)

    def value(self, *v):
        if v:
            self._value = 1 if v[0] else 0
            return None
        return self._value


class _ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        pass

    def read_u16(self):
        return 32768

    def deinit(self):
        pass


# An INA219 at 0x40: configuration and calibration read back as written; 12 V on the bus
# (4 mV per bit from bit 3, with CNVR, bit 1, set); 2.5 mV across the shunt (10 uV per bit); the
# current and power registers as the chip computes them from those and the calibration.
_SHUNT = 250
_BUS = 3000


class _I2C:
    def __init__(self, *args, **kwargs):
        self.regs = {}

    def readfrom_mem(self, addr, reg, n):
        if addr != 0x40:
            raise OSError(19)  # ENODEV: no chip acknowledges that address
        current = _SHUNT * int.from_bytes(self.regs.get(5, b"\x00\x00"), "big") // 4096
        value = {1: _SHUNT, 2: _BUS << 3 | 2, 3: current * _BUS // 5000, 4: current}.get(reg)
        if value is None:
            return self.regs.get(reg, b"\x00\x00")
        return bytes(((value >> 8) & 0xFF, value & 0xFF))

    def writeto_mem(self, addr, reg, buf):
        if addr != 0x40:
            raise OSError(19)
        self.regs[reg] = bytes(buf)

    def deinit(self):
        pass


class _Machine:
    Pin = _Pin
    ADC = _ADC
    I2C = _I2C
    SoftI2C = _I2C

    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    WDT = _WDT

    def reset_cause(self):
        return 1

    def unique_id(self):
        # Not the tests' uid (tests/portable/machine_fake.py): a board of another run on this
        # machine that finds this bench's broker on its old port must not pass for this one.
        return b"heap\xbe\x9c"

    def reset(self):
        print("machine.reset()")
        raise SystemExit(75)


class _WLAN:
    def __init__(self):
        self.up = False

    def active(self, *on):
        return None if on else True

    def connect(self, ssid, key=None):
        self.up = True

    def disconnect(self):
        self.up = False

    def isconnected(self):
        return self.up

    def status(self, *param):
        return -58 if param else 1010

    def ifconfig(self):
        return ("192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1")


class _Network:
    STA_IF = 0
    AP_IF = 1

    def __init__(self):
        self.wlan = _WLAN()

    def WLAN(self, interface=0):
        return self.wlan


class _Ntptime:
    host = "pool.ntp.org"

    def time(self):
        return int(time.time())


# bench/heap.py --romfs: the bundle's .mpy files in a ROMFS image (bench/romfs.py), mounted at
# /rom as a board mounts its ROMFS partition. A board maps the partition from flash; here the
# image sits in one block of the heap, taken first and kept (`heapmark rom N`: the bench gives
# the heap that much more than the size it reports).
try:
    _size = __import__("os").stat("rom.img")[6]
except OSError:
    _size = 0
if _size:
    import vfs

    gc.collect()
    _before = gc.mem_alloc()
    _rom = bytearray(_size)
    with open("rom.img", "rb") as _f:
        _f.readinto(_rom)
    vfs.mount(vfs.VfsRom(_rom), "/rom")
    sys.path.insert(0, "/rom")
    gc.collect()
    print("heapmark rom %d" % (gc.mem_alloc() - _before))

sys.modules["machine"] = _Machine()
sys.modules["network"] = _Network()
sys.modules["ntptime"] = _Ntptime()

sample_ms = int(sys.argv[-1]) if len(sys.argv) > 1 and sys.argv[-1].isdigit() else 0
if sample_ms:
    # What this script and its doubles hold (a board has machine, network and ntptime in
    # firmware): bench/heap.py takes it off the figures.
    gc.collect()
    print("heapmark doubles %d" % gc.mem_alloc())
    from firmware import board
    # Where the board's code came from: firmware/board.mpy from the folder, or firmware/board.py
    # frozen into the binary (bench/heap.py --frozen checks which).
    print("heapmark board %s" % board.__file__)
    peak = [0]
    report = board.Board._report

    def measured(self):
        gc.collect()
        live = gc.mem_alloc()
        if live > peak[0]:
            peak[0] = live
            print("heapmark live %d" % live)
        report(self)
    board.Board._report = measured
    board.CHECK_MS = sample_ms

import main  # noqa: E402,F401  (the bundle's entry point: runs until machine.reset())
