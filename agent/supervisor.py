# Keeps a board's tasks running (firmware/board.py, docs/esp32.md).
#
#   sup = Supervisor(clock, feed=wdt.feed, on_give_up=machine.reset)
#   sup.add("sampler", agent.sampling, beat=lambda: agent.sampled_at, stall_ms=30000)
#   sup.add("uplink", agent.uplink.run)
#   sup.start()
#   sup.check()               # every second or so: feeds the watchdog if all tasks live
#
# A task that raises is logged, counted and started again after a pause. One that keeps failing
# soon after each start is given up: on_give_up() then resets the board, and that boot counts as
# a crash (agent/crashboots.py). The watchdog is fed only while every task is alive: a task that
# is dead (waiting for its restart, or given up) or stuck (its beat older than stall_ms) stops
# the feeding, and a hang that blocks the whole event loop stops it too. Portable.
import asyncio

RESTART_MIN_MS = 1000  # the pause before a restart; it doubles while a task keeps failing fast
RESTART_MAX_MS = 8000  # under the watchdog's timeout: a task waiting for its restart is dead
FAST_MS = 60000        # a failure this soon after the task (re)started counts as "in a row"
GIVE_UP = 5            # failures in a row after which the task is not restarted

_RUNNING = 0
_DEAD = 1      # failed, waiting for its restart
_ENDED = 2     # returned, or given up


class _Job:
    def __init__(self, name, start, beat, stall_ms):
        self.name = name
        self.start = start        # () -> a coroutine: the task's body
        self.beat = beat          # () -> monotonic ms of the task's last sign of progress
        self.stall_ms = stall_ms
        self.state = _RUNNING
        self.started_at = 0
        self.restarts = 0
        self.in_row = 0
        self.stuck = False


class Supervisor:
    def __init__(self, clock, feed=None, log=print, on_give_up=None, good_ms=None, on_good=None):
        """clock: the agent's (monotonic ms); feed(): the watchdog's; on_give_up(job name): a
        task will not be restarted; on_good(): called once, when every task has been alive at
        a check good_ms after start() (the boot counts as good)."""
        self.clock = clock
        self.feed = feed
        self.log = log
        self.on_give_up = on_give_up
        self.good_ms = good_ms
        self.on_good = on_good
        self.jobs = []
        self.started_at = 0
        self.stopping = False
        self.last_error = None   # "task: Error: message" of the last failure
        # Read at construction, so that a test harness can set the module's values first.
        self.restart_min_ms = RESTART_MIN_MS
        self.restart_max_ms = RESTART_MAX_MS
        self.fast_ms = FAST_MS
        self.give_up = GIVE_UP

    def add(self, name, start, beat=None, stall_ms=0):
        self.jobs.append(_Job(name, start, beat, stall_ms))

    def start(self):
        self.started_at = self.clock.monotonic()
        for job in self.jobs:
            job.started_at = self.started_at
            asyncio.create_task(self._guard(job))

    async def _guard(self, job):
        while True:
            try:
                await job.start()
                job.state = _ENDED
                if not self.stopping:
                    self.log("tether: task %s ended" % job.name)
                return
            except Exception as exc:
                self._failed(job, exc)
            if job.state == _ENDED:  # given up
                return
            await asyncio.sleep(min(self.restart_min_ms << (job.in_row - 1),
                                    self.restart_max_ms) / 1000)
            if self.stopping:
                return
            job.restarts += 1
            job.started_at = self.clock.monotonic()
            job.state = _RUNNING
            self.log("tether: task %s restarted (%d restarts)" % (job.name, job.restarts))

    def _failed(self, job, exc):
        now = self.clock.monotonic()
        job.state = _DEAD
        job.in_row = job.in_row + 1 if now - job.started_at < self.fast_ms else 1
        self.last_error = "%s: %s" % (job.name, _describe(exc))
        self.log("tether: task %s failed: %s" % (job.name, _describe(exc)))
        if job.in_row >= self.give_up:
            job.state = _ENDED
            self.log("tether: task %s failed %d times in a row: giving up" % (job.name, job.in_row))
            if self.on_give_up is not None:
                self.on_give_up(job.name)

    def check(self):
        """Feeds the watchdog when every task is alive; says whether they are."""
        now = self.clock.monotonic()
        alive = True
        for job in self.jobs:
            if job.state != _RUNNING:
                alive = False
                continue
            stuck = job.beat is not None and now - job.beat() > job.stall_ms
            if stuck and not job.stuck:
                self.log("tether: task %s is stuck: no progress for %d ms"
                         % (job.name, now - job.beat()))
            job.stuck = stuck
            if stuck:
                alive = False
        if alive:
            if self.feed is not None:
                self.feed()
            if self.on_good is not None and now - self.started_at >= self.good_ms:
                good, self.on_good = self.on_good, None
                good()
        return alive

    def stop(self):
        """The board is going down on purpose (a reset follows): tasks that end now are not
        restarted, and the board stops checking."""
        self.stopping = True

    def restarts(self):
        out = {}
        for job in self.jobs:
            out[job.name] = job.restarts
        return out


def _describe(exc):
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
