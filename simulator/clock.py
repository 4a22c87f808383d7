"""Device time for a whole simulated fleet, running faster than the wall clock.

Every device's agent reads this clock (agent.clock's interface: monotonic(), now(), synced) and
sleeps on it (`await clock.sleep(ms)`, device milliseconds). The fleet clock keeps one heap of
wake-up times and moves device time from one to the next, at `speed` times the wall clock, or as
fast as the fleet keeps up when speed is None ("max"). Networking stays on wall time: an MQTT
round trip takes what it takes, which is what makes a fast simulation honest about backlogs.

Device time moves in windows of WINDOW_MS: a step never crosses a window's end, so every run of a
fleet takes a step at each multiple of WINDOW_MS whatever its devices' wake-ups are. That is what
lets a fleet spread over processes (simulator/workers.py) keep one clock: a process enters the
next window only once every process has reached the end of the last one (`sync`), and each
process takes exactly the steps it would take alone.
"""
import asyncio
import heapq
import itertools

MAX_STEP_MS = 1000
WINDOW_MS = 10000  # the processes of one fleet are at most this much device time apart


class FleetClock:
    def __init__(self, start_unix_ms, speed=3600.0, sync=None):
        self.start_unix_ms = start_unix_ms
        self.speed = speed
        self.sync = sync           # the fleet's other processes (simulator/workers.py), or None
        self.t = 0                 # device ms since the start
        self._heap = []            # (t, n, future)
        self._n = itertools.count()
        self._wall0 = None
        self._t0 = 0
        self.lag_ms = 0            # how far device time fell behind its schedule (max)
        self.finished = False

    def device(self):
        """A clock for one device (agent.clock's interface)."""
        return DeviceClock(self)

    def sleep_until(self, t):
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (t, next(self._n), future))
        return future

    async def run(self, until_ms, tick=None):
        """Moves device time to until_ms, waking sleepers on the way; tick(t) after each step
        (it may return an awaitable, which device time waits for).

        The wall-clock pace: device time t is due at wall0 + t / speed. When the fleet is late
        (its work takes longer than the pace allows) device time waits for it rather than
        skipping, and the lag is recorded."""
        loop = asyncio.get_running_loop()
        sync = self.sync
        # The processes of one fleet share the start (loop.time() is the system's monotonic
        # clock, the same in every process).
        self._wall0 = loop.time() if sync is None else sync.wall0
        self._t0 = self.t
        await asyncio.sleep(0)  # devices just started put their first sleep in the heap
        while self.t < until_ms:
            # With nobody asleep on the clock (a device booting again after a power cut has not
            # gone to sleep yet), time moves in small steps, never past a wake-up to come.
            target = self._heap[0][0] if self._heap else self.t + MAX_STEP_MS
            target = max(min(target, until_ms, (self.t // WINDOW_MS + 1) * WINDOW_MS), self.t)
            if sync is not None and target > sync.limit():
                await sync.wait(target)  # the network goes on meanwhile
            if self.speed:
                due = self._wall0 + (target - self._t0) / 1000.0 / self.speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.lag_ms = max(self.lag_ms, int(-delay * 1000 * self.speed))
                    await asyncio.sleep(0)
            else:
                await asyncio.sleep(0)  # let the network have its turn
            self.t = target
            if sync is not None:
                sync.reached(target)
            while self._heap and self._heap[0][0] <= self.t:
                _, _, future = heapq.heappop(self._heap)
                if not future.done():
                    future.set_result(None)
            if tick is not None:
                hold = tick(self.t)
                if hold is not None:
                    await hold  # device time stands still; the network goes on
            await asyncio.sleep(0)  # the woken devices sample before time moves on

    def finish(self):
        """The run is over: every sleeper wakes, and sleeps return at once from now on."""
        self.finished = True
        while self._heap:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)


class DeviceClock:
    """One device's view: synced Unix time, and sleeps in device time."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.synced = True
        self.sleeps = 0  # how many times a sampler went to sleep on it (simulator/fleet.py)

    def monotonic(self):
        return self.fleet.t

    def now(self):
        return self.fleet.start_unix_ms + self.fleet.t, True

    async def sleep(self, ms):
        self.sleeps += 1
        if self.fleet.finished:
            await asyncio.sleep(0)
            return
        await self.fleet.sleep_until(self.fleet.t + max(ms, 1))
