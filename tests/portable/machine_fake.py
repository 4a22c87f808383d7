# A stand-in for MicroPython's `machine` on an ESP32, for tests of hal/esp32.py: the classes
# the platform uses, with the ESP32 port's constant values (micropython-esp32-stubs 1.29), and
# a log of every constructor call. Runs under CPython and MicroPython.
#
# Install it with install() and always uninstall() it (a try/finally): it goes into
# sys.modules["machine"], which must not leak into other tests.
import sys

calls = []  # (class name, args tuple, sorted kwargs list) per constructor call
_saved = []


def clear_calls():
    del calls[:]


def install():
    _saved.append(sys.modules.get("machine"))
    sys.modules["machine"] = sys.modules[__name__]
    clear_calls()


def uninstall():
    previous = _saved.pop()
    if previous is None:
        del sys.modules["machine"]
    else:
        sys.modules["machine"] = previous


def _log(name, args, kwargs):
    items = sorted(kwargs.items())
    calls.append((name, args, items))


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, *args, **kwargs):
        _log("Pin", (id,) + args, kwargs)
        self.id = id
        self.mode = args[0] if args else None
        self.pull = args[1] if len(args) > 1 else None
        self._value = kwargs.get("value", 0)

    def value(self, *v):
        if v:
            self._value = 1 if v[0] else 0
            return None
        return self._value


class _Bus:
    def __init__(self, *args, **kwargs):
        _log(type(self).__name__, args, kwargs)
        self.args = args
        self.kwargs = kwargs
        self.deinits = 0

    def deinit(self):
        self.deinits += 1


class I2C(_Bus):
    pass


class SoftI2C(I2C):
    pass


class UART(_Bus):
    pass


class ADC(_Bus):
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def read_u16(self):
        return 32768


# -- what the board's entry point uses (firmware/board.py) --------------------------------------
# Reset causes, with the ESP32 port's values.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
RESET_EXIT = 75  # reset() ends the process with this code, as a reset ends a board's program

cause = PWRON_RESET
uid = b"\xa4\xcf\x12\x34\x56\x78"
clock = None      # the WDT's time: an agent.clock (monotonic()) for tests, else the real ticks
wdts = []         # every WDT made


def reset_cause():
    return cause


def unique_id():
    return uid


def reset():
    fed = wdts[-1].feeds if wdts else []
    print("machine.reset() after %d watchdog feeds" % len(fed))
    raise SystemExit(RESET_EXIT)


def _diff(a, b):
    """a - b of two _now() readings: by ticks_diff when they are a board's ticks, which wrap."""
    import time
    if clock is None and hasattr(time, "ticks_diff"):
        return time.ticks_diff(a, b)
    return a - b


def _now():
    if clock is not None:
        return clock.monotonic()
    import time
    ticks = getattr(time, "ticks_ms", None)
    return ticks() if ticks is not None else int(time.monotonic() * 1000)


class WDT:
    """Records when it is fed; would_have_fired() says whether a real one would have reset the
    board (a gap longer than its timeout, up to now)."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1000:
            raise ValueError("timeout below the ESP32's minimum of 1 s")
        self.timeout = timeout
        self.started = _now()
        self.feeds = []
        wdts.append(self)
        print("wdt: started, timeout %d ms" % timeout)

    def feed(self):
        self.feeds.append(_now())

    def would_have_fired(self):
        last = self.started
        for t in self.feeds + [_now()]:
            if _diff(t, last) > self.timeout:
                return True
            last = t
        return False
