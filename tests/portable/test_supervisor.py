# agent/supervisor.py and agent/crashboots.py: a task that raises is restarted and counted,
# the watchdog (machine_fake.WDT on a FakeClock) is fed only while every task is alive, a task
# that keeps failing is given up, a good minute clears the crash-boot count. Both interpreters.
import asyncio

import machine_fake
import support

from agent import supervisor as sup_module
from agent.clock import FakeClock
from agent.crashboots import CrashBoots
from agent.supervisor import Supervisor


def setup(clock):
    machine_fake.install()
    machine_fake.clock = clock
    sup_module.RESTART_MIN_MS = 1
    sup_module.RESTART_MAX_MS = 4
    return machine_fake.WDT(timeout=1000)


def teardown():
    machine_fake.clock = None
    del machine_fake.wdts[:]
    sup_module.RESTART_MIN_MS = 1000
    sup_module.RESTART_MAX_MS = 8000
    machine_fake.uninstall()


async def until(predicate, limit=20000):
    # Liveness only: the loop gets as many turns as it needs, a bounded number of them.
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")


class Flaky:
    """A task body that raises the first `failures` times it runs, then runs until told."""

    def __init__(self, failures):
        self.failures = failures
        self.runs = 0
        self.done = False

    async def body(self):
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError("run %d failed" % self.runs)
        while not self.done:
            await asyncio.sleep(0.001)


def test_a_task_that_raises_is_restarted_counted_and_the_watchdog_waits_while_it_is_dead():
    clock = FakeClock()
    wdt = setup(clock)
    lines = []
    try:
        async def main():
            flaky = Flaky(2)
            steady = Flaky(0)
            sup = Supervisor(clock, feed=wdt.feed, log=lines.append)
            sup.restart_min_ms = 1000000  # stays dead until the test lets it restart
            sup.add("flaky", flaky.body)
            sup.add("steady", steady.body)
            sup.start()
            await until(lambda: flaky.runs == 1 and sup.jobs[0].state != 0)
            clock.advance(600)
            assert sup.check() is False and wdt.feeds == []
            clock.advance(600)
            assert sup.check() is False and wdt.feeds == []
            assert wdt.would_have_fired()  # dead for longer than the timeout: a reset
            sup.restart_min_ms = 1
            await until(lambda: flaky.runs == 3)
            assert sup.check() is True and len(wdt.feeds) == 1
            assert sup.restarts() == {"flaky": 2, "steady": 0}
            assert sup.last_error == "flaky: RuntimeError: run 2 failed"
            flaky.done = steady.done = True
        asyncio.run(main())
    finally:
        teardown()
    assert "tether: task flaky failed: RuntimeError: run 1 failed" in lines
    assert "tether: task flaky restarted (2 restarts)" in lines


def test_a_stuck_task_stops_the_feeding_until_it_beats_again():
    clock = FakeClock()
    wdt = setup(clock)
    try:
        async def main():
            steady = Flaky(0)
            beat = [0]
            sup = Supervisor(clock, feed=wdt.feed, log=print)
            sup.add("sampler", steady.body, beat=lambda: beat[0], stall_ms=5000)
            sup.start()
            for _ in range(5):
                clock.advance(900)
                assert sup.check() is True
            clock.advance(900)  # 5400 ms since the last beat
            fed = len(wdt.feeds)
            assert sup.check() is False and len(wdt.feeds) == fed
            assert wdt.would_have_fired() is False  # 900 ms since the last feed: not yet
            clock.advance(900)
            assert sup.check() is False and len(wdt.feeds) == fed
            assert wdt.would_have_fired() is True
            beat[0] = clock.monotonic()
            assert sup.check() is True and len(wdt.feeds) == fed + 1
            steady.done = True
        asyncio.run(main())
    finally:
        teardown()


def test_a_task_that_keeps_failing_soon_after_each_start_is_given_up():
    clock = FakeClock()
    wdt = setup(clock)
    gave_up = []
    try:
        async def main():
            flaky = Flaky(1000)
            sup = Supervisor(clock, feed=wdt.feed, log=print, on_give_up=gave_up.append)
            sup.add("sampler", flaky.body)
            sup.start()
            await until(lambda: gave_up)
            assert flaky.runs == sup_module.GIVE_UP and sup.restarts() == {"sampler": 4}
            await asyncio.sleep(0.01)
            assert flaky.runs == sup_module.GIVE_UP  # not restarted again
            assert sup.check() is False and wdt.feeds == []
        asyncio.run(main())
    finally:
        teardown()
    assert gave_up == ["sampler"]


def test_failures_far_apart_are_not_in_a_row_and_never_give_up():
    clock = FakeClock()
    wdt = setup(clock)
    gave_up = []

    class Late:
        """Fails when told to, each run having lasted as long as the test says."""
        runs = 0
        go = False

        async def body(self):
            self.runs += 1
            while not self.go:
                await asyncio.sleep(0.001)
            self.go = False
            raise RuntimeError("late failure")

    try:
        async def main():
            late = Late()
            sup = Supervisor(clock, feed=wdt.feed, log=print, on_give_up=gave_up.append)
            sup.add("uplink", late.body)
            sup.start()
            for n in range(1, sup_module.GIVE_UP + 3):
                await until(lambda: late.runs == n)
                clock.advance(sup_module.FAST_MS)  # this run lasted a minute
                late.go = True
            await until(lambda: late.runs == sup_module.GIVE_UP + 3)
            assert not gave_up and sup.jobs[0].in_row == 1
            assert sup.restarts() == {"uplink": sup_module.GIVE_UP + 2}
        asyncio.run(main())
    finally:
        teardown()


def test_a_good_minute_clears_the_crash_boot_count_and_enough_crash_boots_mean_safe_mode():
    path = support.tmpdir() + "/boots"
    boots = CrashBoots(path)
    assert [boots.boot(3) for _ in range(4)] == [(0, False), (1, False), (2, False), (3, True)]
    assert boots.read() == 0  # the boot after the safe one tries a normal start
    boots.boot(3)
    boots.boot(3)
    assert boots.read() == 2
    clock = FakeClock()
    wdt = setup(clock)
    try:
        async def main():
            steady = Flaky(0)
            sup = Supervisor(clock, feed=wdt.feed, log=print, good_ms=60000, on_good=boots.clear)
            sup.add("sampler", steady.body)
            sup.start()
            clock.advance(59999)
            sup.check()
            assert boots.read() == 2
            clock.advance(1)
            sup.check()
            assert boots.read() == 0
            steady.done = True
        asyncio.run(main())
    finally:
        teardown()
    with open(path, "w") as f:
        f.write("garbage")
    assert boots.boot(3) == (0, False)  # an unreadable count is no count


def test_a_crash_boot_count_that_cannot_be_written_lets_the_board_boot():
    # A folder that does not exist stands for a full or broken filesystem: every write fails.
    boots = CrashBoots(support.tmpdir() + "/no-such-folder/boots")
    assert boots.boot(3) == (0, False)
    assert boots.failed
    boots.clear()
    assert boots.read() == 0


class FullFlash(CrashBoots):
    def _put(self, n):
        raise OSError(28)   # ENOSPC, as LittleFS says of a full flash


def test_a_crash_count_the_flash_cannot_rewrite_is_removed_not_left_at_the_limit():
    # Left at 3 (the limit), every boot went into safe mode, which frees nothing: for good
    path = support.tmpdir() + "/boots_full"
    with open(path, "w") as f:
        f.write("3")
    boots = FullFlash(path)
    assert boots.boot(3) == (3, True) and boots.failed
    assert boots.read() == 0                 # the next boot tries a normal start


def test_a_boot_given_up_after_its_good_minute_counts_after_the_crash_boots_before_it():
    # A task failing every few minutes reset the board after each good minute had cleared the
    # count: safe mode never came
    path = support.tmpdir() + "/boots_late"
    boots = CrashBoots(path)
    for before in range(3):
        n, safe = boots.boot(3)
        assert (n, safe) == (before, False)
        boots.clear()                        # a good minute
        boots.crashed(n)                     # then a task given up
    assert boots.boot(3) == (3, True)
