# The agent's one clock. Everything that needs the time asks it, so the simulator can run days
# of device time in seconds with a FakeClock, and a board can be told the time by NTP later.
#
#   monotonic()  ms since an arbitrary start, never going back (schedules, windows, backoff)
#   now()        (t_ms, synced): Unix time in ms once the clock is synced, else ms since start
import time

from hal.ticks import PLAUSIBLE_MS


# The ticks last read and the ms counted, one for every SystemClock of the program: the
# uplink's own, read only around connects and PUBACKs, went more than half a wrap unread on a
# connection quiet for a week, and counted back by 2**30 ms (its reconnect then backed off at the
# most); the sampler reads the one count every second.
_COUNT = [None, 0]


class SystemClock:
    """The real clock. On MicroPython ticks_ms() wraps (every 2**30 ms on an ESP32), so the
    monotonic count is carried forward by ticks_diff at each call; call monotonic() (of any
    SystemClock: they share the count) at least
    once per half wrap period, 2**29 ms or 6.2 days, the most ticks_diff tells apart (the
    sampler and the supervisor do, every second). A board is told the time by
    NTP (sync). On CPython the operating system keeps the clock (NTP, an RTC, fake-hwclock on a
    Pi without one) and steps it when it learns better, after the agent started: it is read at
    every now(), synced while it is past 2024."""

    def __init__(self):
        self._ticks = getattr(time, "ticks_ms", None)
        if self._ticks is not None and _COUNT[0] is None:
            _COUNT[0] = self._ticks()
        self._unix_at = None  # Unix ms at monotonic 0, once known (a board's NTP)

    def monotonic(self):
        if self._ticks is None:
            return int(time.monotonic() * 1000)
        t = self._ticks()
        _COUNT[1] += time.ticks_diff(t, _COUNT[0])
        _COUNT[0] = t
        return _COUNT[1]

    def sync(self, unix_ms):
        """The time is known (NTP, RTC): from now on readings carry Unix time."""
        self._unix_at = unix_ms - self.monotonic()

    @property
    def synced(self):
        return self.now()[1]

    def now(self):
        if self._ticks is None:
            t = int(time.time() * 1000)
            if t > PLAUSIBLE_MS:
                return t, True
        m = self.monotonic()
        if self._unix_at is None:
            return m, False
        return self._unix_at + m, True


class FakeClock:
    """A clock that moves only when told to: for tests and the simulator."""

    def __init__(self, start_ms=0, unix_ms=None):
        self.t = start_ms
        self._unix_at = None if unix_ms is None else unix_ms - start_ms

    def monotonic(self):
        return self.t

    def advance(self, ms):
        self.t += ms

    def sync(self, unix_ms):
        self._unix_at = unix_ms - self.t

    @property
    def synced(self):
        return self._unix_at is not None

    def now(self):
        if self._unix_at is None:
            return self.t, False
        return self._unix_at + self.t, True
