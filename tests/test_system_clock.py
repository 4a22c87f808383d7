"""agent.clock.SystemClock on CPython (a Raspberry Pi): the operating system's clock is read at
every reading. A Pi has no RTC: fake-hwclock sets the time of the last shutdown at boot and NTP
steps it later, after the service started; a clock read once at start kept readings a day (or
the time the Pi lay unplugged) off for the whole run, marked synced."""
import time

from agent.clock import SystemClock

DAY_MS = 86400000
NOW_MS = 1796025600000  # 2026-12-01


def test_readings_follow_the_system_clock_when_ntp_steps_it(monkeypatch):
    wall = [NOW_MS - DAY_MS]  # fake-hwclock: yesterday's shutdown
    monkeypatch.setattr(time, "time", lambda: wall[0] / 1000)
    clock = SystemClock()
    assert clock.now() == (NOW_MS - DAY_MS, True)
    wall[0] = NOW_MS + 5  # NTP steps the clock
    assert clock.now() == (NOW_MS + 5, True) and clock.synced


def test_a_clock_never_set_is_unsynced_until_it_is_then_unix_time(monkeypatch):
    wall = [5000.0]  # 1970: no RTC, no fake-hwclock, no NTP yet
    monkeypatch.setattr(time, "time", lambda: wall[0] / 1000)
    clock = SystemClock()
    t, synced = clock.now()
    assert not synced and not clock.synced and t == clock.monotonic()
    wall[0] = NOW_MS
    assert clock.now() == (NOW_MS, True) and clock.synced
