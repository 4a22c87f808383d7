# A stand-in for MicroPython's `ntptime`: time() fails with a timeout `failures` times, then
# gives the host's Unix time in whole seconds (what ntptime gives on a port whose epoch is
# 1970). install() puts it in sys.modules["ntptime"]. Runs under CPython and MicroPython.
import sys
import time as _time

host = "pool.ntp.org"
failures = 0
calls = 0
now_s = None  # a fixed answer for tests, else the host's clock
asked = []    # the host of each call
answers = []  # answers for the next calls, before the others: an exception raised, or a time


def install(failing=0):
    global failures, calls, host
    failures = failing
    calls = 0
    host = "pool.ntp.org"
    del asked[:]
    del answers[:]
    sys.modules["ntptime"] = sys.modules[__name__]


def uninstall():
    global now_s
    now_s = None
    sys.modules.pop("ntptime", None)


def time():
    global calls
    calls += 1
    asked.append(host)
    if answers:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a
    if calls <= failures:
        raise OSError(110)  # ETIMEDOUT, what ntptime raises when no answer comes in 1 s
    return now_s if now_s is not None else int(_time.time())


def settime():
    time()
