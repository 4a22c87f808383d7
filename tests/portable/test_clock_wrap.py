# agent/clock.py's SystemClock on an ESP32's ticks, which wrap every 2**30 ms (12.4 days): the
# monotonic count carried across wraps, and one count for every SystemClock of the program.
# Both interpreters, on a stand-in for `time` whose ticks wrap as an ESP32's do.
MICROPYTHON_HEAP = "64k"

from agent import clock

PERIOD = 1 << 30


class Ticks:
    """time's ticks functions, an ESP32's period, moved by hand."""

    def __init__(self, at):
        self.at = at

    def ticks_ms(self):
        return self.at % PERIOD

    def ticks_diff(self, a, b):
        d = (a - b) & (PERIOD - 1)
        return d - PERIOD if d >= PERIOD // 2 else d


def with_ticks(test):
    real_time, real_count = clock.time, clock._COUNT[:]
    ticks = Ticks(PERIOD - 60000)  # a minute before a wrap
    clock.time = ticks
    clock._COUNT[:] = [None, 0]
    try:
        test(ticks)
    finally:
        clock.time = real_time
        clock._COUNT[:] = real_count


def test_the_count_goes_on_across_wraps_when_read_often():
    def test(ticks):
        c = clock.SystemClock()
        for _ in range(10):  # ten days of readings a day apart: three wraps
            ticks.at += 86400000
            c.monotonic()
        assert c.monotonic() == 10 * 86400000
    with_ticks(test)


def test_a_clock_read_seldom_keeps_the_count_another_reads_often():
    # The uplink's own clock, unread for a week on a quiet connection, counted back by 2**30 ms
    # and backed off its reconnect at the most: the sampler's reads now keep it
    def test(ticks):
        sampler, uplink = clock.SystemClock(), clock.SystemClock()
        start = uplink.monotonic()
        for _ in range(7 * 24):  # a week, read every hour by the sampler only
            ticks.at += 3600000
            sampler.monotonic()
        assert uplink.monotonic() - start == 7 * 86400000
    with_ticks(test)
