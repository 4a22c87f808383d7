# MicroPython's time.ticks_ms / ticks_us / ticks_diff / sleep_ms, with CPython stand-ins, for
# the drivers and the MQTT client; and the earliest time a clock that was set can show. Portable.
PLAUSIBLE_MS = 1704067200000  # 2024-01-01 in Unix ms: a clock before this was never set

try:
    from time import sleep_ms, ticks_diff, ticks_ms, ticks_us
except ImportError:  # CPython
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_us():
        return int(_time.perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b  # CPython's monotonic clock does not wrap

    def sleep_ms(ms):
        _time.sleep(ms / 1000)
