"""Fleet scale: how fast the simulator runs a fleet in one process and in workers (`tether
simulate --workers`), and how large a fleet keeps up in real time, against Debian's mosquitto on
loopback.

    python3 bench/fleet.py            (~20 min: 100 devices and 1,000 devices at full speed,
                                       1,000 again in 2 workers, paho once, a cProfile, then
                                       1,000 / 5,000 / 10,000 in real time)
    python3 bench/fleet.py --quick    (~3 min, what bench/run_all.py runs: 100 devices at full
                                       speed in 1 and 2 processes, 1,000 in real time for 60 s)

Every device is the reference printer (examples/reference-printer.yaml: 7 channels every 10 s,
one compact batch every 10 min) run by simulator/fleet.py as `tether simulate --broker` runs it:
the real agent (agent/runtime.py) on virtual chips with its real drivers (hal/sim), an appliance
model, its own MQTT connection to mosquitto (agent/mqtt.py unless said; paho once), and the
reference ingest (SQLite) in the same process. No faults. Each measurement runs in a child
process of its own (its CPU, memory and file descriptors apart) against a fresh mosquitto
(`max_queued_messages 0`, `set_tcp_nodelay true`).

1. Full speed (speed max): device-seconds simulated per wall-second while the fleet clock runs
   (setup and the final drain apart), CPU time of the process (resource.getrusage: the devices
   in the event loop thread plus the ingest's threads) and of mosquitto, every reading checked
   delivered. Target: 1,000 devices at >= 100x real time. Baseline: the same fleet's 100-device
   run (per-device cost), and paho in place of agent/mqtt.py. The 1,000 devices run twice: in
   one process (`--workers 1`, the baseline) and in 2 workers (simulator/workers.py: the ingest
   in the parent, 500 devices in each worker, one fleet clock), with the wall time device time
   stood still for the ingest and each worker's wait for the other. Then where the time goes:
   cProfile of a 100-device run, by area and the top functions.
2. Real time (speed 1.0): fleets of 1,000 / 5,000 / 10,000 for a few minutes of wall time. A real
   fleet's devices do not boot in the same millisecond: each device here samples at its own
   phase of the 10 s interval, and its first batch is cut (as a `flush` command would cut it) at
   a random point of its first 10 minutes, so that batches leave at the steady rate of one per
   device per 10 min from the start instead of all at once at 10:00. Figures: devices connected,
   the fleet clock's lag (how far device time fell behind the wall clock: "keeps up" means it
   has caught up with the lag the connects left within 10 s of the last one, and stays within
   1 s from then on), the event loop's latency, CPU (this process, its event loop thread, mosquitto),
   memory per device (RSS / devices), batches delivered during the run against those cut, and
   after the drain every reading delivered. Target: 10,000 devices from one process.
   File descriptors: each device holds its socket and its FileStore keeps files open (journal,
   segment, a reader): `ulimit -n` caps a fleet with its buffer in files; beyond that cap the
   buffer is in RAM (agent.store.RamStore, the same bytes), which the table says.

Exit status 1 if a fleet could not run, lost a reading, or mosquitto could not start; a missed
target is printed as MISSES TARGET.
"""
import argparse
import asyncio
import gc
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

HOUR_MS = 3600000
BATCH_MS = 600000          # the reference profile's batch: 60 rounds of 7 readings
INTERVAL_MS = 10000
TARGET_SPEED = 100.0       # 1,000 devices at >= 100x real time
TARGET_SPEED_DEVICES = 1000
TARGET_REALTIME = 10000    # devices keeping up in real time from one process
KEEPS_UP_LAG_MS = 1000     # the fleet clock's worst lag that still counts as keeping up
CATCH_UP_S = 10            # ... once it has caught up with the connects, this soon after them
MOSQUITTO_CONF = "max_queued_messages 0\nset_tcp_nodelay true"


def fd_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def files_fit(devices):
    """Whether a fleet with its buffers in files stays under `ulimit -n` (measured: up to 4
    descriptors a device in files, its socket included, plus the process's own)."""
    return devices * 4 + 200 <= fd_limit()


# -- the child: one fleet in a process of its own ----------------------------------------------

def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Monitor:
    """What a child measures around fleet.run(): snapshots when the fleet clock starts and
    ends, the event loop's latency, devices online, and the ingest's counts."""

    def __init__(self, fleet, realtime):
        self.fleet = fleet
        self.realtime = realtime
        self.snaps = {}
        self.latency = []          # event loop lateness (s) while the clock runs
        self.behind = []           # ms the fleet clock is behind, once all devices are online
        self.behind_at = []        # when each was sampled (time.monotonic())
        self.online_max = 0
        self.all_online_s = None   # wall seconds from the first device made to all online
        self.online_min_after = None
        self.running = False
        self.t_made = None
        self.gc_s = 0.0            # in CPython's cyclic garbage collector, while the clock runs
        self.gc_max = 0.0
        self.gc_full = 0
        self._gc_t = None
        gc.callbacks.append(self._gc)

    def _gc(self, what, info):
        if what == "start":
            self._gc_t = time.perf_counter()
        elif self._gc_t is not None and self.running:
            dt = time.perf_counter() - self._gc_t
            self.gc_s += dt
            self.gc_max = max(self.gc_max, dt)
            self.gc_full += info["generation"] == 2

    def snap(self, name):
        f = self.fleet
        ingest = f.ingest.stats() if f.ingest is not None else {}
        self.snaps[name] = {
            "wall": time.monotonic(), "cpu": cpu_self(), "main_cpu": time.thread_time(),
            "device_ms": f.clock.t, "lag_ms": f.clock.lag_ms, "rss_kib": c.rss_kib(),
            "fds": len(os.listdir("/proc/self/fd")),
            "online": sum(1 for d in f.devices if d.online),
            "batches": ingest.get("batches", 0), "readings": ingest.get("readings", 0),
            "messages": ingest.get("messages", 0),
            "broker_cpu": c.proc_cpu_s(self.broker_pid) if self.broker_pid else 0.0,
            "threads": threading.active_count(),
        }

    def install(self, broker_pid):
        self.broker_pid = broker_pid
        f = self.fleet
        make = f._make_devices
        run = f.clock.run

        def _make_devices(host, port):
            self.snap("before_devices")
            make(host, port)
            self.t_made = time.monotonic()

        async def clock_run(until_ms, tick=None):
            self.snap("clock_start")
            self.running = True
            try:
                return await run(until_ms, tick)
            finally:
                self.running = False
                self.snap("clock_end")
        f._make_devices = _make_devices
        f.clock.run = clock_run

    async def watch(self):
        """Every 50 ms: how late the loop wakes us (a loop busy for 200 ms shows 200 ms);
        every second, devices online."""
        loop = asyncio.get_running_loop()
        step = 0.05
        last_online = 0.0
        while True:
            t = loop.time()
            was = self.running
            await asyncio.sleep(step)
            late = loop.time() - t - step
            now = time.monotonic()
            if was and self.running:
                self.latency.append(late)
                clk = self.fleet.clock
                if clk.speed and clk._heap and self.all_online_s is not None:
                    # How overdue the earliest wake-up is: device time should be at
                    # t0 + wall elapsed x speed, and every sleeper before that awake.
                    due = clk._t0 + (loop.time() - clk._wall0) * 1000.0 * clk.speed
                    self.behind.append(max(0.0, due - clk._heap[0][0]))
                    self.behind_at.append(now)
            if self.t_made is not None and now - last_online >= 1.0:
                last_online = now
                n = sum(1 for d in self.fleet.devices if d.online)
                self.online_max = max(self.online_max, n)
                if self.all_online_s is None and n == len(self.fleet.devices):
                    self.all_online_s = now - self.snaps["before_devices"]["wall"]
                if self.all_online_s is not None and self.running:
                    if self.online_min_after is None or n < self.online_min_after:
                        self.online_min_after = n


def phase_devices(fleet, seed):
    """Real-time runs: each device samples at its own phase of the interval and cuts its first
    batch at a random round of its first 10 minutes (see the docstring). Returns the list of
    device times (ms) at which a batch is cut, per device, while the run lasts."""
    from simulator import device as simdev
    rnd = random.Random(seed)
    plan = {}
    boot = simdev.SimDevice._boot

    def _boot(self):
        boot(self)
        phase, first_round = plan[self.device_id]
        agent = self.agent
        for ch in agent.sampler.channels:
            ch.due = phase
        tick = agent.on_tick
        cut_at = fleet.clock.start_unix_ms + phase + first_round * INTERVAL_MS
        done = [False]

        def on_tick(t):
            if not done[0] and t >= cut_at:
                done[0] = True
                agent.buffer.cut()
            tick(t)
        agent.on_tick = on_tick

    simdev.SimDevice._boot = _boot
    make = fleet._make_devices

    def _make_devices(host, port):
        make(host, port)
        for d in fleet.devices:
            plan[d.device_id] = (rnd.randrange(INTERVAL_MS), rnd.randrange(1, BATCH_MS // INTERVAL_MS))
    fleet._make_devices = _make_devices

    def cuts(until_ms):
        """Device times of the batches cut before until_ms: the first at its round, then one
        every 60 rounds (420 readings)."""
        out = 0
        for phase, first_round in plan.values():
            t = phase + first_round * INTERVAL_MS
            step = BATCH_MS - INTERVAL_MS  # the 60th round fills the next one
            while t <= until_ms:
                out += 1
                t += step
                step = BATCH_MS
        return out
    return cuts


def ram_buffers():
    """The buffer and the event log in RAM (agent.store.RamStore, the same bytes as the files),
    one pair per device for its whole life: no file descriptors."""
    from agent.store import RamStore
    from simulator import device as simdev
    simdev.SimStore = lambda path: RamStore()


async def timed_run(fleet, watch):
    """(report, start, end) of fleet.run() with the coroutine `watch` beside it: start and end
    are this process's wall and CPU clocks."""
    watcher = asyncio.create_task(watch)
    start = {"wall": time.monotonic(), "cpu": cpu_self()}
    try:
        report = await fleet.run()
    finally:
        watcher.cancel()
    return report, start, {"wall": time.monotonic(), "cpu": cpu_self()}


async def child_run_workers(args):
    """A fleet spread over worker processes (simulator/workers.py): the clock's phase is from
    the parent's start of the shared clock to every worker's end of device time; CPU is this
    process (the ingest) plus the workers (/proc)."""
    from simulator import workers as w
    p = c.profile()
    fleet = w.WorkerFleet([(p, args["devices"], "printer-{n:05d}")], args["workdir"],
                          args["duration_ms"], args["speed"],
                          "mqtt://127.0.0.1:%d" % args["port"], seed=1, faults=(),
                          client=args["client"], workers=args["workers"])
    snaps = {}

    def snap(name):
        ingest = fleet.ingest.stats() if fleet.ingest is not None else {}
        kids = sum(c.proc_cpu_s(proc.pid) for proc in fleet.procs)
        snaps[name] = {
            "wall": time.monotonic(), "cpu": cpu_self() + kids, "main_cpu": cpu_self(),
            "device_ms": min(fleet._low(), fleet.duration_ms) if name != "clock_start" else 0,
            "batches": ingest.get("batches", 0), "readings": ingest.get("readings", 0),
            "broker_cpu": c.proc_cpu_s(args["broker_pid"]),
        }

    async def watch():
        while fleet.shared is None or not fleet.shared[w.WALL0]:
            await asyncio.sleep(0.01)
        snap("clock_start")
        while fleet._low() < fleet.duration_ms:
            await asyncio.sleep(0.01)
        snap("clock_end")
    report, start, end = await timed_run(fleet, watch())
    return {"devices": args["devices"], "client": args["client"], "storage": "files",
            "speed": args["speed"], "duration_ms": args["duration_ms"],
            "workers": fleet.workers, "snaps": snaps, "held_s": fleet.pace.held_s,
            "waited_s": [fleet.shared[w.HEAD + k * w.SLOTS + w.WAITED]
                         for k in range(fleet.workers)],
            "end": end, "start": start, "fleet": report["fleet"], "gc_s": 0.0}


async def child_run(args):
    from simulator.fleet import Fleet
    if args.get("workers", 1) > 1:
        return await child_run_workers(args)
    p = c.profile()
    lines = [(p, args["devices"], "printer-{n:05d}")]
    fleet = Fleet(lines, args["workdir"], args["duration_ms"], args["speed"],
                  "mqtt://127.0.0.1:%d" % args["port"], seed=1, faults=(),
                  client=args["client"])
    if args["storage"] == "ram":
        ram_buffers()
    cuts = phase_devices(fleet, 7) if args["phases"] else None
    mon = Monitor(fleet, args["speed"] is not None)
    mon.install(args["broker_pid"])
    report, start, end = await timed_run(fleet, mon.watch())
    s = mon.snaps
    errors = {}
    reconnects = 0
    for d in fleet.devices:
        u = d.agent.uplink
        reconnects += u.reconnects
        if u.last_error:
            key = u.last_error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    lat = sorted(mon.latency) or [0.0]
    # The steady state: from the first sample within the limit once all devices are online.
    # Until then the clock is still catching up with the lag the connects left (10,000
    # connects: ~1.3 s behind when the last one is in, 0 some 0.7 s later).
    first = next((k for k, b in enumerate(mon.behind) if b <= KEEPS_UP_LAG_MS), None)
    caught_up_s = None if first is None else mon.behind_at[first] - mon.behind_at[0]
    behind = sorted(mon.behind[first:] if first is not None else mon.behind) or [0.0]
    out = {
        "devices": args["devices"], "client": args["client"], "storage": args["storage"],
        "speed": args["speed"], "duration_ms": args["duration_ms"],
        "snaps": s, "end": end, "start": start,
        "fleet": report["fleet"],
        "latency_p50": lat[len(lat) // 2], "latency_p99": lat[int(len(lat) * 0.99)],
        "latency_max": lat[-1],
        "behind_p99": behind[int(len(behind) * 0.99)], "behind_max": behind[-1],
        "behind_n": len(mon.behind), "caught_up_s": caught_up_s,
        "behind_at_online": mon.behind[0] if mon.behind else None,
        "online_max": mon.online_max, "all_online_s": mon.all_online_s,
        "online_min_after": mon.online_min_after,
        "reconnects": reconnects, "errors": errors,
        "gc_s": mon.gc_s, "gc_max_s": mon.gc_max, "gc_full": mon.gc_full,
        "cut_expected": cuts(args["duration_ms"]) if cuts else None,
        "held_s": fleet.pace.held_s if fleet.pace else 0.0, "waited_s": [],
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    return out


def child_main(spec):
    args = json.loads(spec)
    if args.get("profile"):
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        out = asyncio.run(child_run(args))
        prof.disable()
        out["profile"] = profile_summary(pstats.Stats(prof))
    else:
        out = asyncio.run(child_run(args))
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


def profile_summary(stats, top=15):
    """Own time by area of the code, and the top functions by own time."""
    root = str(c.ROOT) + "/"
    areas = {}
    funcs = []
    total = 0.0
    for (fn, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        total += tt
        if fn.startswith(root):
            rel = fn[len(root):]
            if rel.startswith("hal/drivers/"):
                area = "hal/drivers (the real drivers)"
            elif rel.startswith("hal/sim/"):
                area = "hal/sim (virtual chips and pins)"
            elif rel in ("agent/sampler.py", "agent/runtime.py", "agent/schema.py"):
                area = "agent: sampler, runtime"
            elif rel in ("agent/buffer.py", "agent/log.py", "agent/store.py", "agent/batch.py",
                         "agent/compact.py", "agent/cbor.py", "agent/events.py"):
                area = "agent: buffer, log, store, encoder"
            elif rel in ("agent/uplink.py", "agent/mqtt.py") or rel.startswith("agent/host/"):
                area = "agent: uplink, MQTT client"
            elif rel.startswith("simulator/models/"):
                area = "simulator/models (appliance physics)"
            elif rel.startswith("simulator/"):
                area = "simulator (clock, fleet, devices)"
            else:
                area = "other repo code"
            where = "%s:%d(%s)" % (rel, line, name)
        else:
            if name.startswith("<built-in method posix.fsync") or name == "<built-in method posix.fsync>":
                area = "fsync"
            elif "select" in name and "poll" in name:
                area = "epoll wait (idle)"
            elif "asyncio" in fn or "selectors" in fn:
                area = "asyncio"
            else:
                area = "builtins and stdlib"
            where = name if fn == "~" else "%s:%d(%s)" % (os.path.basename(fn), line, name)
        areas[area] = areas.get(area, 0.0) + tt
        funcs.append((tt, nc, where))
    funcs.sort(reverse=True)
    return {"total": total, "areas": sorted(areas.items(), key=lambda kv: -kv[1]),
            "top": funcs[:top]}


# -- the parent --------------------------------------------------------------------------------

class Failed(Exception):
    pass


def run_fleet(tmp, devices, duration_ms, speed, client="mqtt", storage="files", phases=False,
              profile=False, label="", workers=1):
    """One fleet in a child process against a fresh mosquitto; the child's figures plus the
    broker's."""
    from simulator.lab.mosquitto import Mosquitto
    folder = tempfile.mkdtemp(prefix="run-", dir=tmp)
    mosq = Mosquitto(os.path.join(folder, "mosquitto"), log_type="error warning",
                     extra_conf=MOSQUITTO_CONF)
    mosq.start()
    try:
        spec = {"devices": devices, "duration_ms": duration_ms, "speed": speed,
                "client": client, "storage": storage, "phases": phases, "profile": profile,
                "port": mosq.port, "broker_pid": mosq.pid, "workers": workers,
                "workdir": os.path.join(folder, "fleet")}
        print("  running: %s" % label, flush=True)
        t = time.monotonic()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                               json.dumps(spec)], capture_output=True, text=True,
                              cwd=str(c.ROOT))
        result = None
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        if proc.returncode or result is None:
            raise Failed("%s: the fleet's process exited with %d:\n%s%s" % (
                label, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        result["broker_rss_kib"] = c.rss_kib(mosq.pid)
        result["child_wall_s"] = time.monotonic() - t
        log = mosq.log()
        result["broker_log_tail"] = [l for l in log.splitlines() if l.strip()][-5:]
    finally:
        mosq.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if result["fleet"]["lost"]:
        raise Failed("%s: %d readings LOST (generated %d, delivered %d)" % (
            label, result["fleet"]["lost"], result["fleet"]["generated"],
            result["fleet"]["delivered"]))
    return result


def phase(r, a="clock_start", b="clock_end"):
    s0, s1 = r["snaps"][a], r["snaps"][b]
    return {k: s1[k] - s0[k] for k in ("wall", "cpu", "main_cpu", "device_ms", "batches",
                                       "readings", "broker_cpu")}


def hours(ms):
    return "%g h" % (ms / HOUR_MS) if ms >= HOUR_MS else "%g min" % (ms / 60000)


def part_speed(tmp, quick):
    """Part 1: device-seconds per wall-second at full speed."""
    print("== 1. Full speed (speed max): device-seconds simulated per wall-second ==")
    runs = [(100, 2 * HOUR_MS, "mqtt", 1), (100, 2 * HOUR_MS, "paho", 1),
            (1000, HOUR_MS, "mqtt", 1), (1000, HOUR_MS, "mqtt", 2)]
    if quick:
        runs = [(100, HOUR_MS, "mqtt", 1), (100, HOUR_MS, "mqtt", 2)]
    results = []
    for n, dur, client, workers in runs:
        results.append(run_fleet(tmp, n, dur, None, client, workers=workers,
                                 label="%d devices, %s of device time, %s, --workers %d" % (
                                     n, hours(dur), client, workers)))
    rows = []
    base = None
    for r in results:
        ph = phase(r)
        n = r["devices"]
        dev_s = n * ph["device_ms"] / 1000.0
        rate = dev_s / ph["wall"]
        speed = ph["device_ms"] / 1000.0 / ph["wall"]
        whole = r["end"]["wall"] - r["start"]["wall"]
        cpu_dh = ph["cpu"] / (dev_s / 3600.0) * 1000.0
        if base is None:
            base = cpu_dh
        f = r["fleet"]
        rows.append([
            "%d" % n, "%d" % r.get("workers", 1),
            "paho_client" if r["client"] == "paho" else "agent/mqtt.py",
            hours(r["duration_ms"]), "%.1f" % ph["wall"], "%.0f" % rate, "%.0fx" % speed,
            "%.0fx" % (r["duration_ms"] / 1000.0 / whole),
            "%.1f" % ph["cpu"], "%.0f %%" % (100 * ph["cpu"] / ph["wall"]),
            "%.0f %%" % (100 * ph["main_cpu"] / ph["wall"]),
            "%.1f" % cpu_dh, "%.2f" % (cpu_dh / base),
            "%.1f" % r["gc_s"] if r.get("workers", 1) == 1 else "-",
            "%.1f" % (r["snaps"]["clock_end"]["fds"] / n) if "fds" in r["snaps"]["clock_end"]
            else "-",
            "%.1f" % ph["broker_cpu"], "%.1f" % r["held_s"],
            "/".join("%.1f" % x for x in r["waited_s"]) or "-",
            "%d/%d" % (f["delivered"], f["generated"])])
    c.table(["devices", "workers", "client", "device time", "wall s", "device-s/wall-s", "x real time",
             "x incl. setup+drain", "CPU s", "CPU", "loop thread", "CPU ms/device-hour",
             "x first row", "GC s", "fds/device", "mosquitto CPU s", "held for ingest s", "waited for workers s",
             "delivered/generated"], rows, left=(2,))
    print("  wall s, CPU = while the fleet clock runs (setup and the final drain apart; the"
          " column 'incl.' counts them); CPU = the fleet's processes (devices + ingest threads;"
          " with workers, the parent's ingest plus the workers) per wall second; loop thread ="
          " the event loop thread alone (with workers: the parent process, the ingest); held for"
          " ingest = device time stood still until the ingest caught up (IngestPace); waited"
          " for workers = each worker's wall time waiting for the others at a window's end")
    base_speed = None
    for r in results:
        ph = phase(r)
        if r["devices"] == TARGET_SPEED_DEVICES and r["client"] == "mqtt":
            speed = ph["device_ms"] / 1000.0 / ph["wall"]
            workers = r.get("workers", 1)
            if workers == 1:
                base_speed = speed
            print("  %d devices with --workers %d at %.0fx real time%s, target >= %.0fx: %s" % (
                r["devices"], workers, speed,
                " (%.2fx the --workers 1 run above)" % (speed / base_speed)
                if base_speed and workers > 1 else "",
                TARGET_SPEED, c.verdict(speed, TARGET_SPEED, True)))
            # On a machine others share, the fleet gets a fraction of the cores: what its CPU
            # time says it would do with min(processes, cores) cores of its own.
            cores = min(workers, os.cpu_count() or 1)
            ceiling = ph["device_ms"] / 1000.0 / (ph["cpu"] / cores)
            print("    it had %.2f of this machine's %d cores (CPU s / wall s); at its CPU cost"
                  " (%.1f ms per device-hour) with %d core%s of its own: %.0fx" % (
                      ph["cpu"] / ph["wall"], os.cpu_count() or 1,
                      ph["cpu"] / (r["devices"] * ph["device_ms"] / HOUR_MS) * 1000.0, cores,
                      "s" if cores > 1 else "", ceiling))
        elif quick:
            ph = phase(r)
            speed = ph["device_ms"] / 1000.0 / ph["wall"]
            proj = speed * r["devices"] / TARGET_SPEED_DEVICES
            # a straight line from 100 devices is no measurement of 1,000 (a fleet's fixed
            # costs and its workers' gains do not scale so): shown, not judged
            print("  %d devices at %.0fx: at the same cost per device, %d devices would run at"
                  " about %.0fx (target >= %.0fx: not judged in --quick; the full run measures"
                  " %d)" % (r["devices"], speed, TARGET_SPEED_DEVICES, proj, TARGET_SPEED,
                            TARGET_SPEED_DEVICES))
    print()
    return results


def part_profile(tmp):
    print("== where the time goes: cProfile of 100 devices, 1 h of device time, speed max ==")
    r = run_fleet(tmp, 100, HOUR_MS, None, "mqtt", profile=True,
                  label="100 devices, 1 h, agent/mqtt.py, under cProfile")
    prof = r["profile"]
    total = prof["total"]
    c.table(["area (own time)", "s", "share"],
            [[a, "%.2f" % t, "%.1f %%" % (100 * t / total)] for a, t in prof["areas"]],
            left=(0,))
    print("  total %.1f s under the profiler (which slows Python calls ~2x): %d device rounds"
          " of 7 readings" % (total, 100 * HOUR_MS // INTERVAL_MS))
    print()
    c.table(["function", "calls", "own s"],
            [[w, "%d" % nc, "%.2f" % tt] for tt, nc, w in prof["top"]], left=(0,))
    print()
    return r


def part_realtime(tmp, quick, steps, window_s, paho=None):
    print("== 2. Real time (speed 1.0): the largest fleet that keeps up ==")
    print("  each device samples 7 channels every 10 s at its own phase and sends a batch every"
          " 10 min (the first one cut at a random point of its first 10 min); %d s of device"
          " time per fleet; `ulimit -n` %d" % (window_s, fd_limit()))
    results = []
    runs = [(n, "mqtt") for n in steps] + ([(paho, "paho")] if paho else [])
    for n, client in runs:
        storage = "files" if files_fit(n) else "ram"
        r = run_fleet(tmp, n, window_s * 1000, 1.0, client, storage=storage, phases=True,
                      label="%d devices, %d s in real time, buffers in %s, %s" % (
                          n, window_s, storage, client))
        results.append(r)
    rows = []
    rows2 = []
    for r in results:
        n = r["devices"]
        ph = phase(r)
        s = r["snaps"]
        f = r["fleet"]
        per_dev = (s["clock_end"]["rss_kib"] - s["before_devices"]["rss_kib"]) / n
        lag = s["clock_end"]["lag_ms"]
        rows.append([
            "%d" % n, "paho" if r["client"] == "paho" else "mqtt", r["storage"],
            "%d/%d" % (s["clock_end"]["online"], n),
            "%.0f" % r["all_online_s"] if r["all_online_s"] is not None else "never",
            "%s" % (r["online_min_after"] if r["online_min_after"] is not None else "-"),
            "%d" % lag,
            "%s/%s" % ("%.0f" % r["behind_at_online"] if r["behind_at_online"] is not None
                       else "-", "%.1f" % r["caught_up_s"] if r["caught_up_s"] is not None
                       else "never"),
            "%.0f/%.0f" % (r["behind_p99"], r["behind_max"]),
            "%.0f/%.0f/%.0f" % (1000 * r["latency_p50"], 1000 * r["latency_p99"],
                                1000 * r["latency_max"]),
            "%.0f %%" % (100 * ph["cpu"] / ph["wall"]),
            "%.0f %%" % (100 * ph["main_cpu"] / ph["wall"]),
            "%.0f %%" % (100 * ph["broker_cpu"] / ph["wall"]),
            "%.1f" % per_dev,
            "%d" % s["clock_end"]["fds"],
            "%.1f/%.0f" % (r["gc_s"], 1000 * r["gc_max_s"]),
        ])
        rows2.append([
            "%d" % n, "paho" if r["client"] == "paho" else "mqtt",
            "%d/%d" % (ph["batches"], r["cut_expected"]),
            "%d/%d" % (f["delivered"], f["generated"]),
            "%d" % f["lost"],
            "%d" % r["reconnects"],
            ", ".join("%s %d" % kv for kv in sorted(r["errors"].items())) or "none",
            "%.0f" % (r["end"]["wall"] - s["clock_end"]["wall"]),
            "%.0f" % (s["clock_start"]["wall"] - s["before_devices"]["wall"]),
            "%.0f" % (r["broker_rss_kib"] / 1024.0),
            "%.1f" % r["held_s"],
        ])
    c.table(["devices", "client", "buffers", "online at end", "all online after s", "min online after",
             "FleetClock lag max ms", "behind when all online ms/caught up after s", "behind p99/max ms", "loop late p50/p99/max ms", "CPU", "loop thread", "mosquitto",
             "KiB/device", "fds", "GC s/max ms"], rows, left=(1, 2))
    print("  CPU = this process (devices + ingest threads) per wall second while the clock runs;"
          " KiB/device = RSS growth from before the devices were made to the end / devices;"
          " FleetClock lag = its lag_ms, the worst over the run, connects included; behind = how"
          " overdue the fleet clock's earliest wake-up was, sampled every 50 ms once all devices"
          " were online; caught up = from then to the first sample within %d ms (the lag the"
          " connects left); p99/max from then on (the steady state)" % KEEPS_UP_LAG_MS)
    c.table(["devices", "client", "batches delivered/cut", "readings delivered/generated (after drain)",
             "lost", "reconnects", "last errors", "drain s", "setup s", "mosquitto MiB",
             "held for ingest s"], rows2,
            left=(1, 5))
    print("  batches delivered = stored by the ingest while the clock ran, of those the devices"
          " cut in that time; after the run each device cuts what is left and drains it; held"
          " for ingest = wall time device time stood still while the ingest caught up (IngestPace)")
    best = 0
    for r in results:
        n = r["devices"]
        s = r["snaps"]
        ph = phase(r)
        online = s["clock_end"]["online"] == n and r["online_min_after"] == n
        caught = r["caught_up_s"] is not None and r["caught_up_s"] <= CATCH_UP_S
        ok = (online and r["behind_n"] and caught and r["behind_max"] <= KEEPS_UP_LAG_MS
              and ph["batches"] >= r["cut_expected"] * 0.99 and not r["fleet"]["lost"])
        print("  %d devices, %s: %s (all online throughout: %s; clock caught up with the"
              " connects %s after the last one, limit %d s; behind at most %.0f ms from then,"
              " limit %d; batches %d/%d; lost %d)" % (
                  n, r["client"], "keeps up" if ok else "DOES NOT KEEP UP", online,
                  "%.1f s" % r["caught_up_s"] if r["caught_up_s"] is not None else "never",
                  CATCH_UP_S, r["behind_max"], KEEPS_UP_LAG_MS, ph["batches"],
                  r["cut_expected"], r["fleet"]["lost"]))
        if ok and r["client"] == "mqtt":
            best = max(best, n)
    target = TARGET_REALTIME
    if quick:
        print("  --quick: %d devices keep up: %s (the full run measures up to %d)" % (
            steps[-1], "yes" if best >= steps[-1] else "NO", target))
    else:
        print("  largest fleet that keeps up: %d devices, target >= %d: %s" % (
            best, target, c.verdict(best, target, True)))
    print()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 devices at full speed and 1,000 "
                    "in real time for 60 s (~2 min)")
    ap.add_argument("--steps", help="real-time fleet sizes, e.g. 1000,5000,10000")
    ap.add_argument("--window", type=int, help="seconds of real time per fleet (default 150)")
    ap.add_argument("--paho", type=int, help="also one real-time fleet of this size with paho "
                    "(default: the largest step; 0: none)")
    ap.add_argument("--only", choices=("speed", "profile", "realtime"), help="one part only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child)
        return 0
    print(__doc__.split("\n\n")[0].replace("\n", " "))
    print("machine: %d CPUs, load average %s, `ulimit -n` %d, %s" % (
        os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg()), fd_limit(),
        sys.version.split()[0]))
    print()
    steps = ([int(x) for x in args.steps.split(",")] if args.steps
             else [1000] if args.quick else [1000, 5000, 10000])
    window = args.window or (60 if args.quick else 150)
    tmp = tempfile.mkdtemp(prefix="tether-bench-fleet-")
    t = time.monotonic()
    try:
        if args.only in (None, "speed"):
            part_speed(tmp, args.quick)
        if args.only in (None, "profile") and not args.quick:
            part_profile(tmp)
        if args.only in (None, "realtime"):
            paho = args.paho if args.paho is not None else (0 if args.quick else steps[-1])
            part_realtime(tmp, args.quick, steps, window, paho)
    except Failed as exc:
        print("FAILED: %s" % exc)
        return 1
    except RuntimeError as exc:  # mosquitto could not start
        print("FAILED: %s" % exc)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("(%.0f s)" % (time.monotonic() - t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
