"""One fleet in several processes: `tether simulate --workers N` (and each `--shard I/N`).

The parent process keeps what there is one of: the broker (the embedded one, or --broker), the
ingest (one process storing everything, as with a single process: its plain subscription
loses nothing across a broker restart, its repairs see every device, and its pace holds the
whole fleet), the fault that hits the whole fleet (broker restarts), the progress line and the
report. Each worker runs one range of the fleet's device ids (simulator/fleet.py,
devices_range), with the fault schedule drawn for the whole fleet from the seed, applying its
devices' share.

One fleet clock. The workers share a block of memory (multiprocessing.RawArray, one writer
per slot): each its device time, its PUBLISH count and its state; the parent the wall-clock
start, the ceiling of device time (the next broker restart), the ingest's pace hold and the
broker gate. Device time moves in windows (simulator/clock.py): a worker enters the next window
only when every worker has finished the last one, so at --speed max no worker runs ahead by more
than WINDOW_MS, and at a finite speed they all keep one start and one rate. Every worker takes
the steps it would take alone, so the devices' readings and truth are those of a run in one
process with the same seed.
"""
import asyncio
import math
import multiprocessing
import os
import signal
import sys
import time

from ingest.handlers import one_line
from simulator import faults as faults_mod
from simulator.clock import WINDOW_MS
from simulator.fleet import Fleet, FleetError, IngestPace, broker_address

# The shared block: the parent's slots, then SLOTS per worker.
CEILING, HOLD, GATE, WALL0, COMMAND, RESTARTS, STARTED, ENDED = range(8)
HEAD = 8
T, PUBLISHED, STATE, ONLINE, GENERATED, BACKLOG, OUTAGES, CUTS, WAITED, UNKNOWN = range(10)
SLOTS = 10
# A worker's states, and the parent's commands.
STARTING, READY, RUNNING, DRAINED, STORED, FAILED = range(6)
STOP_AFTER_FAILURE_S = 10  # how long a failed worker's devices get to close their files
GO, STORE, STOP = range(3)
POLL_S = 0.01
SYNC_POLL_S = 0.0005  # how often a worker waiting for the others looks again
NOTE_EVERY_S = 0.5


def split(first, end, n):
    """n ranges [a, b) of nearly equal size covering [first, end)."""
    size = end - first
    return [(first + size * k // n, first + size * (k + 1) // n) for k in range(n)]


class WorkerGate:
    """simulator/device.py's Gate, as one worker's devices see it: closed while the parent
    restarts the broker; the worker's PUBLISH count in its slot."""

    def __init__(self, shared, slot):
        self.shared = shared
        self.slot = slot

    @property
    def closed(self):
        return self.shared[GATE]

    @property
    def published(self):
        return int(self.shared[self.slot + PUBLISHED])

    @published.setter
    def published(self, n):
        self.shared[self.slot + PUBLISHED] = n


class ParentGate:
    """The gate as the parent sees it: it opens and closes it; the workers' PUBLISHes summed."""

    def __init__(self, shared, workers):
        self.shared = shared
        self.workers = workers

    @property
    def closed(self):
        return int(self.shared[GATE])

    @closed.setter
    def closed(self, n):
        self.shared[GATE] = n

    @property
    def published(self):
        return int(sum(self.shared[HEAD + w * SLOTS + PUBLISHED] for w in range(self.workers)))


class Sync:
    """A worker's side of the shared block: the fleet clock's `sync` (simulator/clock.py) and the
    fleet's pace and progress."""

    def __init__(self, shared, index, workers):
        self.shared = shared
        self.index = index + 1
        self.slot = HEAD + index * SLOTS
        self.times = [HEAD + w * SLOTS + T for w in range(workers)]
        self.gate = WorkerGate(shared, self.slot)
        self.noted = 0.0
        self.parent = os.getppid()

    @property
    def wall0(self):
        return self.shared[WALL0]

    def limit(self):
        """How far device time may go now: to the end of the window after the one every worker
        has reached, and not past the parent's ceiling."""
        low = min(self.shared[i] for i in self.times)
        return min((low // WINDOW_MS + 1) * WINDOW_MS, self.shared[CEILING])

    async def wait(self, target):
        """Until every worker has reached the window before target's; the time it took is
        counted (bench/fleet.py shows it)."""
        t0 = time.monotonic()
        while target > self.limit():
            self.check_parent()
            await asyncio.sleep(SYNC_POLL_S)
        self.shared[self.slot + WAITED] += time.monotonic() - t0

    def reached(self, t):
        self.shared[self.slot + T] = t

    def state(self, state):
        self.shared[self.slot + STATE] = state

    async def started(self):
        """Ready; returns when every worker is (the parent then sets the clock's start)."""
        self.state(READY)
        while not self.shared[WALL0]:
            self.check_parent()
            await asyncio.sleep(POLL_S)
        self.state(RUNNING)

    async def command(self, command):
        while self.shared[COMMAND] < command:
            self.check_parent(aborted=command != STOP)
            await asyncio.sleep(POLL_S)
        if command != STOP:
            self.check_parent()

    def check_parent(self, aborted=True):
        """A worker ends at once when its parent is gone (killed) or stops the run early
        (Ctrl-C, an error): its devices' connections go with it (the broker publishes their
        wills), and an orderly stop could wait forever on a broker that went with the parent."""
        if os.getppid() != self.parent:
            sys.stderr.write("tether simulate: the parent process is gone; worker %d ends\n"
                             % self.index)
            os._exit(1)
        if aborted and self.shared[COMMAND] == STOP:
            os._exit(0)

    def check(self):
        """The ingest's pace (simulator/fleet.py, IngestPace), held by the parent: None, or an
        awaitable that returns when the parent lets device time go on."""
        return self._held() if self.shared[HOLD] else None

    async def _held(self):
        while self.shared[HOLD]:
            self.check_parent()
            await asyncio.sleep(POLL_S)

    def note(self, fleet, force=False):
        """What the parent's progress line shows, every NOTE_EVERY_S (and when forced: the
        state a worker ends a phase in, which the parent's last line shows)."""
        now = time.monotonic()
        if now - self.noted < NOTE_EVERY_S and not force:
            return
        self.noted = now
        self.check_parent()
        s, at = self.shared, self.slot
        backlog = 0
        for d in fleet.devices:
            d.note_backlog()
            backlog += d.backlog
        s[at + BACKLOG] = backlog
        s[at + ONLINE] = sum(1 for d in fleet.devices if d.online)
        s[at + GENERATED] = sum(d.buffered for d in fleet.devices)
        s[at + OUTAGES] = sum(1 for d in fleet.devices if not d.link.up)
        s[at + CUTS] = sum(d.power_cuts for d in fleet.devices)


def worker_main(spec, shared, index, workers):
    """A worker process: its range of the fleet, from the start to the parent's STOP."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    sync = Sync(shared, index, workers)
    try:
        fleet = Fleet(spec["lines"], spec["workdir"], spec["duration_ms"], spec["speed"],
                      spec["broker"], spec["seed"], spec["faults"], spec["client"],
                      start_unix_ms=spec["start_unix_ms"], health_ms=spec["health_ms"],
                      drain_ms=spec["drain_ms"], db=spec["db_path"],
                      devices_range=spec["range"], sync=sync, fleet_faults=False)
        asyncio.run(_work(fleet, sync, spec["first_part"]))
    except BaseException:
        sync.state(FAILED)
        raise


async def _work(fleet, sync, first_part):
    host, port = broker_address(fleet.broker_url)
    failed = False
    try:
        await fleet._devices_run(host, port)
        sync.reached(math.inf)  # holds nobody back while it delivers
        sync.note(fleet, force=True)  # what was generated, for the lines while it delivers
        await fleet._wind_down()
        sync.note(fleet, force=True)
        sync.state(DRAINED)
        watch = asyncio.ensure_future(_watch_tails(fleet, sync))
        try:
            await sync.command(STORE)
        finally:
            watch.cancel()
        s = sync.shared
        await asyncio.get_running_loop().run_in_executor(
            None, fleet._report, int(s[RESTARTS]) if first_part else 0, s[STARTED], s[ENDED])
        sync.note(fleet, force=True)  # after the repairs: the backlog the devices end with
        sync.state(STORED)
        await sync.command(STOP)
    except BaseException:
        # Said at once (the parent stops the run), and device time ended: devices asleep on
        # a clock nobody moves any more never stopped, and the whole run hung in silence.
        failed = True
        sync.state(FAILED)
        fleet.clock.finish()
        raise
    finally:
        if failed:
            try:
                await asyncio.wait_for(fleet._stop_devices(), STOP_AFTER_FAILURE_S)
            except Exception:  # noqa: BLE001 - the failure itself is what is reported
                pass
        else:
            await fleet._stop_devices()


async def _watch_tails(fleet, sync):
    """While the parent drains the ingest: how many of this worker's devices published something
    newer than the database knows of theirs, for the parent's wait (Fleet._tails_unknown asks
    them for health reports); -1 while the database cannot be read (said once)."""
    said = False
    while True:
        try:
            sync.shared[sync.slot + UNKNOWN] = await fleet._tails_unknown()
        except Exception as exc:  # noqa: BLE001 - any backend's error: the parent waits on
            sync.shared[sync.slot + UNKNOWN] = -1
            if not said:
                said = True
                sys.stderr.write("tether simulate: worker %d cannot read the database (%s); "
                                 "trying again\n" % (sync.index, one_line(exc)))
        await asyncio.sleep(0.5)


class WorkerFleet(Fleet):
    """The parent of a fleet in `workers` processes; run() as Fleet's (the report, or None when
    this is one shard of a fleet: its part is stored, `tether report` merges them)."""

    def __init__(self, *args, workers=2, **kwargs):
        super().__init__(*args, **kwargs)
        self.workers = max(1, min(workers, self.end - self.first))
        self.procs = []
        self.shared = None

    def device_now(self):
        # This process's clock stands still: the devices' time is the workers'. The one furthest
        # on, so that no worker's readings are dated after the ingest's tomorrow (at the run's
        # start for good, every day after the second went to readings_outside). A worker whose
        # devices are done says inf: the run's end.
        ahead = max(min(self.shared[HEAD + w * SLOTS + T], self.duration_ms)
                    for w in range(self.workers)) if self.shared is not None else 0
        return (self.clock.start_unix_ms + ahead) / 1000.0

    def _worker_state(self, w):
        return int(self.shared[HEAD + w * SLOTS + STATE])

    def _sum(self, field):
        return int(sum(self.shared[HEAD + w * SLOTS + field] for w in range(self.workers)))

    def _low(self):
        return min(self.shared[HEAD + w * SLOTS + T] for w in range(self.workers))

    async def _tails_unknown(self):
        """The workers' counts (_watch_tails); at least 1 while one of them has not looked."""
        counts = [self.shared[HEAD + w * SLOTS + UNKNOWN] for w in range(self.workers)]
        return max(1, int(sum(c for c in counts if c > 0))) if min(counts) < 0 \
            else int(sum(counts))

    def _check_workers(self):
        for w, p in enumerate(self.procs):
            if self._worker_state(w) == FAILED or (p.exitcode is not None and
                                                   self._worker_state(w) < STORED):
                raise FleetError("worker %d of %d (devices %d-%d) failed (exit status %s): "
                                 "see the lines above" % (
                                     w + 1, self.workers, self.ranges[w][0] + 1,
                                     self.ranges[w][1], p.exitcode))

    async def _until(self, state):
        while any(self._worker_state(w) < state for w in range(self.workers)):
            self._check_workers()
            await asyncio.sleep(POLL_S)

    def _start_workers(self, host, port):
        ctx = multiprocessing.get_context("spawn")  # not fork: the parent has threads running
        self.shared = ctx.RawArray("d", HEAD + SLOTS * self.workers)
        self.gate = ParentGate(self.shared, self.workers)
        self.ranges = split(self.first, self.end, self.workers)
        for w in range(self.workers):
            self.shared[HEAD + w * SLOTS + UNKNOWN] = -1  # not looked yet (_watch_tails)
        for w, r in enumerate(self.ranges):
            spec = {"lines": self.lines, "workdir": self.workdir,
                    "duration_ms": self.duration_ms, "speed": self.clock.speed,
                    "broker": "mqtt://%s:%d" % (host, port), "seed": self.seed,
                    "faults": self.faults, "client": self.client,
                    "start_unix_ms": self.clock.start_unix_ms, "health_ms": self.health_ms,
                    "drain_ms": self.drain_ms, "db_path": self.db_path, "range": r,
                    "first_part": w == 0}
            p = ctx.Process(target=worker_main, args=(spec, self.shared, w, self.workers),
                            name="tether-sim-worker-%d" % (w + 1), daemon=True)
            p.start()
            self.procs.append(p)

    async def _run_devices(self, host, port):
        os.makedirs(os.path.join(self.workdir, "devices"), exist_ok=True)
        restarts = []
        if self.fleet_faults and self.broker is not None:
            schedule = faults_mod.Schedule(self.faults, [p for p, n, _ in self.lines
                                                         for _ in range(n)],
                                           self.duration_ms, self.seed)
            restarts = sorted(a[0] for a in schedule.actions if a[2] == "restart")
        try:
            self._start_workers(host, port)
            s = self.shared
            s[CEILING] = self._ceiling(restarts)
            await self._until(READY)
            self.started_wall = time.time()
            s[WALL0] = asyncio.get_running_loop().time()
            pending = []
            pace = self.pace = IngestPace(self)
            shown = 0.0
            while any(self._worker_state(w) < DRAINED for w in range(self.workers)):
                self._check_workers()
                if restarts and self._low() >= s[CEILING]:
                    restarts.pop(0)
                    self.restarts += 1
                    pending.append(asyncio.ensure_future(self._restart_broker()))
                    await asyncio.sleep(0)  # the gate is closed before device time goes on
                    s[CEILING] = self._ceiling(restarts)
                hold = pace.check()
                if hold is not None:
                    s[HOLD] = 1
                    try:
                        await hold
                    finally:
                        s[HOLD] = 0
                if self.progress is not None and time.monotonic() - shown >= NOTE_EVERY_S:
                    shown = time.monotonic()
                    phase = "running" if self._low() < self.duration_ms else \
                        "delivering the backlog"
                    self.progress.update(self.snapshot(phase))
                await asyncio.sleep(POLL_S)
            await asyncio.gather(*pending)
            if self.progress is not None:
                self.progress.update(self.snapshot(phase="repairing"))
            await self._drain_all()
            self.ended_wall = time.time()
            s[RESTARTS], s[STARTED], s[ENDED] = self.restarts, self.started_wall, self.ended_wall
            s[COMMAND] = STORE
            await self._until(STORED)
            report = None
            if self.first == 0 and self.end == self.devices_total:
                from simulator import parts
                from simulator.report import from_parts
                _, bodies = parts.load(self.db_path, self.run_key())
                report = from_parts(self.db_path, bodies)
            if self.progress is not None:
                self.progress.update(self.snapshot(phase="done"))
                self.progress.close()
            if self.linger is not None:
                await self.linger(report)
            return report
        finally:
            await self._stop_workers()

    def _ceiling(self, restarts):
        """Device time stops at the window's end at or after the next restart, until the
        parent has begun it."""
        if not restarts:
            return math.inf
        return -(-restarts[0] // WINDOW_MS) * WINDOW_MS

    async def _stop_workers(self):
        if self.shared is not None:
            self.shared[COMMAND] = STOP
        deadline = time.monotonic() + 60
        for p in self.procs:
            while p.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
            if p.is_alive():
                p.terminate()
            p.join()

    def snapshot(self, phase="running"):
        stats = self.ingest.stats() if self.ingest else {}
        delivered = stats.get("readings", 0)
        return {
            "phase": phase,
            "device_time_ms": min(self._low(), self.duration_ms),
            "duration_ms": self.duration_ms,
            "wall_s": time.time() - (self.started_wall or time.time()),
            "devices": self.end - self.first,
            "online": self._sum(ONLINE),
            # The workers' counts are up to NOTE_EVERY_S old, the ingest's is live: what was
            # delivered was generated (a shard's ingest stores for other shards too).
            "generated": self._sum(GENERATED) if self.ingest_group is not None
            else max(self._sum(GENERATED), delivered),
            "delivered": delivered,
            "backlog": self._sum(BACKLOG),
            "outages": self._sum(OUTAGES),
            "power_cuts": self._sum(CUTS),
            "events": stats.get("events", 0),
            "restarts": self.restarts,
        }
