"""A fleet of simulated appliances on one laptop: the devices (simulator/device.py), their broker,
the reference ingest, the faults, and the report at the end.

A fleet file says which profiles, how many of each, and their ids:

    devices:
      - {profile: examples/printer.yaml, count: 4, id: "printer-{n:04d}"}
      - {profile: examples/pill-bottle.yaml, count: 4}

`{n}` is the device's number within its line (from 1); the default id is the profile's device id
with `{uid}` replaced by the number. Paths are relative to the fleet file.
"""
import asyncio
import gc
import logging
import os
import random
import shutil
import time

import yaml

from agent import ids
from firmware import bounded, examples
from firmware.profile.compile import compile as compile_profile
from firmware.profile.errors import did_you_mean
from simulator import faults as faults_mod
from simulator import sessions
from simulator.clock import FleetClock
from simulator.device import Gate, SimDevice
from simulator.models import model_for
from ingest import known_newest, parse_broker, repairing

DEFAULT_FLEET = os.path.join(examples.folder(), "fleets", "mixed.yaml")
log = logging.getLogger("tether.simulate")
MAX_FLEET_FILE = 256 * 1024  # a few lines each naming a profile
MAX_DEVICES = 100000  # in all, as --devices allows
HISTORY_MS = 600000    # the backlog plot's step: 10 minutes of device time
WAIT_S = 1.0  # the drain waits for a quiet ingest this long at a time, checking the workers between
ASK_HEALTH_S = 1.0  # how often the drain asks one device for a health report at most
DRAIN_ALL_S = 600  # the longest the end of a run waits for the ingest and its repairs
# A booted device samples and sleeps on its clock within a few hundred turns of the event loop
# (opening its buffer and sampling are not awaited); a million is a device stuck elsewhere.
ASLEEP_TURNS = 1000000


class FleetError(ValueError):
    pass


FLEET_FORM = ("a fleet file lists profiles and how many devices of each, like 'devices: "
              "[{profile: printer.yaml, count: 10}]' (docs/simulator.md)")


def load_fleet(path, devices=None):
    """[(compiled profile, count, id template)] from a fleet file; `devices` rescales the counts
    to that total (each line keeps at least one device). FleetError lists every problem, each
    at its line and column, as a profile's errors are."""
    try:
        loader = yaml.SafeLoader(bounded.read(path, MAX_FLEET_FILE, "a fleet file"))
        try:  # parsed once: the nodes say where each value is, and make the document
            root = loader.get_single_node()
            doc = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except bounded.TooLarge as exc:
        raise FleetError("%s: %s" % (path, exc))
    except OSError as exc:  # said as a profile's is: no "[Errno 2]"
        raise FleetError("%s: cannot read: %s" % (path, exc.strerror or exc))
    except RecursionError:  # [[[[... nested deeper than the parser's stack
        raise FleetError("%s: not a YAML fleet file: nested too deeply" % path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "!secret" in problem:    # a profile's tag: not a fleet file's
            raise FleetError("%s: a profile, not a fleet file: %s" % (path, FLEET_FORM))
        raise FleetError("%s%s: not a YAML fleet file: %s" % (
            path, ":%d:%d" % (mark.line + 1, mark.column + 1) if mark else "", problem))
    if isinstance(doc, dict) and "devices" not in doc and ("sensors" in doc or "device" in doc):
        raise FleetError("%s: a profile, not a fleet file: %s" % (path, FLEET_FORM))
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list) or not doc["devices"]:
        raise FleetError("%s: expected a mapping with a non-empty 'devices' list" % path)
    items = _node(root, "devices").value
    problems = []

    def problem(node, where, text):
        mark = node.start_mark
        problems.append("%s:%d:%d: %s: %s" % (path, mark.line + 1, mark.column + 1, where, text))

    base = os.path.dirname(os.path.abspath(path))
    lines = []
    total = 0
    for i, (entry, item) in enumerate(zip(doc["devices"], items)):
        where = "devices[%d]" % i
        if not isinstance(entry, dict) or "profile" not in entry:
            problem(item, where, "expected {profile, count, id}")
            continue
        for key in sorted(set(entry) - {"profile", "count", "id"}, key=str):
            problem(_node(item, key, of_key=True), where, "unknown key %s%s" % (
                key, did_you_mean(str(key), ["profile", "count", "id"])))
        count = entry.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problem(_node(item, "count"), where + ".count",
                    "expected a whole number >= 1")
            count = 1
        total += count
        if total > MAX_DEVICES:
            raise FleetError("%s: %s.count: the fleet would have more than %d devices, the limit"
                             % (path, where, MAX_DEVICES))
        template = entry.get("id", "")
        if not isinstance(template, str):
            problem(_node(item, "id"), where + ".id",
                    "expected text like 'printer-{n:04d}'")
            template = ""
        if not isinstance(entry["profile"], str):
            problem(_node(item, "profile"), where + ".profile", "expected a file path")
            continue
        profile, errors = compile_profile(os.path.join(base, entry["profile"]))
        if errors:
            problems.extend(errors)
            continue
        try:  # said before any device starts, not as a traceback once they do
            model_for(profile)
        except ValueError as exc:
            problem(_node(item, "profile"), where, str(exc))
            continue
        written = template      # as the file says it, for its errors
        template = template or profile["device"]["id"].replace("{uid}", "{n:04d}")
        if "{n" not in template:
            template += "-{n:04d}"
        for n in (1, count):  # ids are topic levels and folder names: the profiles' rule
            try:
                device_id = template.format(n=n)
            except (ValueError, KeyError, IndexError, AttributeError, TypeError):
                problem(_node(item, "id"), where + ".id",
                        "expected text like 'printer-{n:04d}', got %r" % (written or template))
                break
            if not ids.valid(device_id):
                problem(_node(item, "id"), where + ".id",
                        "%r gives %r, not %s" % (written or template, device_id, ids.WHAT))
                break
        lines.append([profile, count, template, item, where])
    if problems:
        raise FleetError("\n".join(problems))
    if devices is not None:
        lines = _scaled(lines, devices)
    # One id, one device: two lines naming the same ids (two of one profile without `id`) ran
    # two devices as one, their batches refused as copies and readings counted lost.
    owner = {}
    for _, count, template, item, where in lines:
        for n in range(1, count + 1):
            first = owner.setdefault(template.format(n=n), where)
            if first != where:
                problem(_node(item, "id") if _node(item, "id") is not item else item, where,
                        "its device %s is also one of %s's: give each line ids of its own "
                        "(id: \"name-{n:04d}\")" % (template.format(n=n), first))
                break
    if problems:
        raise FleetError("\n".join(problems))
    return [tuple(line[:3]) for line in lines]


def _node(mapping, key, of_key=False):
    """The node of a key's value (of_key: of the key) in a YAML mapping node; the mapping's own
    where there is none."""
    for k, v in mapping.value if isinstance(mapping, yaml.MappingNode) else ():
        if k.value == key:
            return k if of_key else v
    return mapping


def _scaled(lines, devices):
    """Exactly `devices` devices: each line in proportion (largest remainders), at least one;
    fewer devices than lines: one of each of the first lines."""
    if devices < len(lines):
        return [[line[0], 1] + line[2:] for line in lines[:devices]]
    total = sum(line[1] for line in lines)
    quotas = [line[1] * devices / total for line in lines]
    for line, quota in zip(lines, quotas):
        line[1] = max(1, int(quota))
    while sum(line[1] for line in lines) < devices:
        i = max(range(len(lines)), key=lambda i: quotas[i] - lines[i][1])
        lines[i][1] += 1
    while sum(line[1] for line in lines) > devices:
        i = min((i for i in range(len(lines)) if lines[i][1] > 1),
                key=lambda i: quotas[i] - lines[i][1])
        lines[i][1] -= 1
    return lines


class Fleet:
    def __init__(self, lines, workdir, duration_ms, speed=3600.0, broker_url=None, seed=1,
                 faults=(), client="mqtt", start_unix_ms=1763856000000, health_ms=3600000,
                 drain_ms=20000, progress=None, ingest_group=None, linger=None, db=None,
                 devices_range=None, sync=None, fleet_faults=True, on_ready=None):
        self.lines = lines
        self.devices_total = sum(n for _, n, _ in lines)
        # The devices this process runs, by index in the fleet (simulator/workers.py spreads a
        # fleet over processes and machines by these ranges): [first, end).
        self.first, self.end = devices_range or (0, self.devices_total)
        self.sync = sync  # the other processes of this fleet (simulator/workers.py), or None
        self.fleet_faults = fleet_faults  # broker restarts: done by one process of a fleet
        self.workdir = workdir
        self.duration_ms = duration_ms
        self.seed = seed
        self.faults = faults
        self.broker_url = broker_url
        if broker_url:
            broker_address(broker_url)  # a bad URL is said before anything starts
        self.client = client
        self.clock = FleetClock(start_unix_ms, speed, sync)
        self.health_ms = health_ms
        self.drain_ms = drain_ms
        self.progress = progress
        self.ingest_group = ingest_group
        self.linger = linger  # async fn(report): the devices stay online until it returns
        self.on_ready = on_ready  # fn(host, port, db) once the broker and the ingest are up
        self.devices = []
        self.pace = None
        self.broker = None
        self.ingest = None
        self.restarts = 0
        self.health_asked = {}  # device id -> when the drain last asked it for a health report
        self.gate = Gate() if sync is None else sync.gate
        # The ingest's database: a SQLite file in workdir, or `db` (a path or postgresql://...)
        self.db_path = db or os.path.join(workdir, "fleet.sqlite")
        self.started_wall = None
        self.ended_wall = None
        self.history = []  # (device ms, batches waiting, devices offline), at the first step and
        # every 10 device min, and once more at the end of device time, after the drain

    # -- setting up -------------------------------------------------------------------------------

    async def _start_broker(self):
        if self.broker_url:
            return broker_address(self.broker_url)
        from simulator.broker import EmbeddedBroker
        self.broker = EmbeddedBroker()
        await self.broker.start()
        return "127.0.0.1", self.broker.port

    def _client_class(self):
        if self.client == "paho":
            from agent.host.paho_client import Client
        else:
            from agent.mqtt import Client
        return Client

    def _make_devices(self, host, port):
        rnd = random.Random(self.seed)
        base = self._client_class()
        for profile, n, device_id, mine in self._each_device():
            seed = rnd.randrange(1 << 30)  # drawn for every device: the same in every range
            if not mine:
                continue
            model = model_for(profile)(profile, random.Random(seed), self.clock.start_unix_ms,
                                       n - 1)
            folder = os.path.join(self.workdir, "devices", device_id)
            shutil.rmtree(folder, ignore_errors=True)  # a new run starts from empty buffers
            os.makedirs(folder, exist_ok=True)
            self.devices.append(SimDevice(self, profile, device_id, model, folder, base,
                                          host, port, seed))

    def _each_device(self):
        """(profile, number in its line, id, whether this process runs it) for each device of
        the fleet, in order."""
        i = 0
        for profile, count, template in self.lines:
            for n in range(1, count + 1):
                i += 1
                yield profile, n, template.format(n=n), self.first < i <= self.end

    # -- running ------------------------------------------------------------------------------------

    async def run(self):
        """The whole simulation; returns the report (simulator/report.py)."""
        from ingest import Ingest
        os.makedirs(self.workdir, exist_ok=True)
        try:
            host, port = await self._start_broker()
        except RuntimeError as exc:  # simulator.broker.BrokerError: iotcore missing, no answer
            raise FleetError(str(exc))
        # A session that survives a broker restart (persistent), under a client id of this run's
        # own, on plain subscriptions: a shared subscription loses what is published after a
        # restart of mosquitto and before the ingest is back, and stalls rumqttd's publishers
        # while its member is away (bench/broker_restart.py, docs/ingest.md). The session ends
        # with the run (_end_ingest). `ingest_group` puts the ingest in a share group instead,
        # for more ingest processes to join this one (they share its database file).
        # Only this fleet's devices: on a broker of --broker, others' retained statuses and
        # schemas went into the run's database and its report ("of 4 devices" for 2).
        self.ingest = Ingest(host, port, self.db_path, group=self.ingest_group, persistent=True,
                             client_id="tether-sim-%d-%s" % (os.getpid(), os.urandom(4).hex()),
                             clock=self.device_now,
                             devices={d[2] for d in self._each_device()})
        try:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.ingest.start)
            except RuntimeError as exc:  # the broker refused it, or did not answer
                raise FleetError(str(exc))
            if self.on_ready is not None:
                self.on_ready(host, port, self.db_path)
            return await self._run_devices(host, port)
        finally:
            self._end_ingest(host, port)
            if self.broker is not None:
                await self.broker.stop()

    def device_now(self):
        """What the ingest takes for now (Unix seconds): device time, so that the days it keeps
        in partitions are the run's (a PostgreSQL database), as a real fleet's are the days it
        runs."""
        return (self.clock.start_unix_ms + self.clock.t) / 1000.0

    async def _run_devices(self, host, port):
        """The devices from start to stop, with the wait for the ingest and its repairs; the
        report."""
        pending = await self._devices_run(host, port)
        await asyncio.gather(*pending)
        await self._wind_down()
        if self.progress is not None:
            self.progress.update(self.snapshot(phase="repairing"))
        await self._drain_all()
        self.ended_wall = time.time()
        report = self._report(self.restarts)
        if self.progress is not None:
            self.progress.update(self.snapshot(phase="done"))
            self.progress.close()
        if self.linger is not None:
            await self.linger(report)
        await self._stop_devices()
        if self.linger is not None or self.ingest_group is not None:
            # Devices left online (or a shard's slow link still draining) sent more after the
            # part above: `tether report` read those as delivered and still waiting both, and
            # counted readings lost below zero. The part again, as they stopped.
            self._report(self.restarts, history=False)
        return report

    async def _drain_all(self):
        """Until the ingest has stored what the broker still holds for it (it keeps arriving, so
        this ends with the flow, not at a fixed time), knows each device's newest batch and
        event, and has every batch and event up to them: the devices answer its resend
        commands. An ingest in a share group (a shard's) sees only its share of the messages,
        and other shards' devices may still be running: it waits for its own devices."""
        loop = asyncio.get_running_loop()
        deadline = time.time() + DRAIN_ALL_S
        mine = None if self.ingest_group is None else {
            device_id for _, _, device_id, ours in self._each_device() if ours}
        while True:
            self._check_workers()
            await self._drain_ingest(max(deadline - time.time(), 0.0))
            # The newest first: a health report stored after the gaps were counted would open
            # one that nobody waits for.
            unknown = await self._tails_unknown()
            if not unknown and not self.ingest.repair_pending() and \
                    not await loop.run_in_executor(None, repairing, self.db_path, mine):
                break
            if self.progress is not None:
                self.progress.update(self.snapshot(phase="repairing"))
            if time.time() > deadline:
                log.warning("gave up waiting after %d s: %s", DRAIN_ALL_S, (
                    "the database does not know the newest batch or event of %d devices"
                    % unknown) if unknown else "batches or events are still being repaired")
                break
            await asyncio.sleep(0.5)

    async def _tails_unknown(self):
        """How many of this process's devices published a batch or event newer than the newest
        the database knows of theirs; each of them is asked for a health report, which tells
        it. Device time has ended, so no periodic report is coming: a broker that lost a
        device's last messages (a restart, a full queue) would leave their loss unseen."""
        known = await asyncio.get_running_loop().run_in_executor(None, known_newest,
                                                                  self.db_path)
        now = time.monotonic()
        behind = 0
        for d in self.devices:
            a = d.agent
            if a is None:
                continue
            # The newest published, as its health reports it (agent/log.py, Log.span).
            sent = a.uplink.sent
            batch, event = known.get(d.device_id, (-1, -1))
            if batch < max(sent[0], a.buffer.log.acked) or \
                    event < max(sent[1], a.events.log.acked):
                behind += 1
                asked = self.health_asked.get(d.device_id)
                if asked is None or now - asked >= ASK_HEALTH_S:
                    self.health_asked[d.device_id] = now
                    a.uplink.report_health()
        return behind

    def _report(self, restarts, started_wall=None, ended_wall=None, history=True):
        """Stores this process's part of the report (simulator/parts.py) in the database; the
        report of the whole fleet when this process ran all of it."""
        from simulator import parts, report
        from ingest import lost_seqs
        # Where the drain left the backlog: the history's last sample is from before it.
        if history:
            self.history.append((self.duration_ms, sum(d.backlog for d in self.devices),
                                 sum(1 for d in self.devices if not d.link.up)))
        body = parts.part(self, lost_seqs(self.db_path), restarts,
                          started_wall or self.started_wall, ended_wall or self.ended_wall,
                          parts.erased(self.db_path, self.devices))
        parts.store(self.db_path, self.run_key(), body)
        if self.first == 0 and self.end == self.devices_total:
            return report.from_parts(self.db_path, [body])
        return None

    def run_key(self):
        from simulator.parts import run_key
        return run_key(self.seed, self.devices_total, self.duration_ms, self.lines, self.faults)

    async def _stop_devices(self):
        await asyncio.gather(*[d.stop() for d in self.devices])
        gc.unfreeze()

    async def _devices_run(self, host, port):
        """The devices from their start to the end of device time; the restarts still under
        way."""
        self._make_devices(host, port)
        # The whole fleet's schedule, from the seed: each process applies its devices' share.
        schedule = faults_mod.Schedule(self.faults, [p for p, n, _ in self.lines
                                                     for _ in range(n)],
                                       self.duration_ms, self.seed)
        mine = self.first, self.end
        for action, i, (latency, bandwidth) in schedule.static:
            if mine[0] <= i < mine[1]:
                self.devices[i - mine[0]].link.latency_ms = latency
                self.devices[i - mine[0]].link.bits_per_s = bandwidth
        # Device time steps onto each fault of this process's devices: a fault happens at its
        # instant, not at whichever wake-up of the devices around it comes next.
        for at, _, action, i, _ in schedule.actions:
            if i is None or mine[0] <= i < mine[1]:
                self.clock.sleep_until(at)
        if self.sync is not None:
            await self.sync.started()  # every process of the fleet has its devices running
        self.started_wall = time.time()
        for k, d in enumerate(self.devices):
            d.start()
            if k % 50 == 49:
                await asyncio.sleep(0.05)  # no thundering herd of connects
        # The devices live as long as the run: their objects leave the cyclic collector's full
        # passes, which walked all of them while device time stood still (1.5 s at 10,000
        # devices: bench/fleet.py). Objects made from now on are collected as usual.
        gc.collect()
        gc.freeze()
        pending = []
        last_shown = [0.0]
        pace = self.pace = IngestPace(self) if self.sync is None else self.sync

        def tick(t):
            booted = []
            for at, action, i, details in schedule.due(t):
                if i is None:
                    if not self.fleet_faults:
                        continue
                elif not mine[0] <= i < mine[1]:
                    continue
                else:
                    i -= mine[0]
                slow = self._apply(action, i, details, at)
                if slow is not None:
                    pending.append(asyncio.ensure_future(slow))
                if action in ("cut", "erase"):
                    booted.append(self.devices[i])
            # On the clock's window steps (simulator/clock.py): the processes of a fleet sample
            # at the same instants.
            if not self.history or t // HISTORY_MS > self.history[-1][0] // HISTORY_MS:
                backlog = 0
                for d in self.devices:
                    d.note_backlog()
                    backlog += d.backlog
                self.history.append((t, backlog, sum(1 for d in self.devices if not d.link.up)))
            if self.sync is not None:
                self.sync.note(self)
            elif self.progress is not None and time.time() - last_shown[0] >= 0.5:
                last_shown[0] = time.time()
                for d in self.devices:
                    d.note_backlog()
                self.progress.update(self.snapshot())
            hold = pace.check()
            return _asleep(booted, hold) if booted else hold

        await self.clock.run(self.duration_ms, tick)
        for i in range(len(self.devices)):  # outages still on end with device time
            self.devices[i].downs = 1
            self._apply("up", i, None, self.duration_ms)
        if self.progress is not None:
            self.progress.update(self.snapshot(phase="delivering the backlog"))
        return pending

    async def _wind_down(self):
        """No more sampling: device time has ended; the devices deliver what they hold."""
        for d in self.devices:
            d.agent.running = False
        self.clock.finish()
        await self._drain()

    async def _drain_ingest(self, timeout):
        """Until the ingest has stored what the broker still holds for it (it keeps arriving, so
        this ends with the flow, not at a fixed time). An ingest that is reconnecting (after a
        broker restart) is quiet but not done: the broker queues its messages in its session
        until it is back, so the wait goes on until it is subscribed again and quiet."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_workers()
            if not self.ingest.stats()["connected"]:
                await asyncio.sleep(0.05)
                continue
            # a while at a time, so that a worker gone meanwhile is noticed
            left = min(max(deadline - time.monotonic(), 0.0), WAIT_S)
            if await loop.run_in_executor(None, self.ingest.wait_idle, left) and \
                    self.ingest.stats()["connected"]:
                return

    def _check_workers(self):
        """Nothing: the devices run in this process. WorkerFleet raises FleetError there when a
        worker process has gone, so that no wait for their messages outlives them."""

    def _end_ingest(self, host, port):
        """Stops the ingest and removes its session from the broker, also when the run failed or
        was interrupted; a session left behind (the broker could not be reached) is said."""
        if self.ingest is None:
            return
        self.ingest.stop(leave=True)  # the run is over: its share goes to the members left
        if self.broker is not None and not self.broker.running:
            return  # the embedded broker keeps sessions in memory only: nothing is left
        if not self.ingest.ever_connected:
            return  # the broker never heard of it: there is no session to remove
        if not sessions.forget(host, port, self.ingest.client_id):
            log.warning("could not remove the ingest's session %s from the broker %s:%d: it "
                        "queues this run's messages until it expires", self.ingest.client_id,
                        host, port)

    async def _drain(self):
        """What is in RAM becomes batches, and the devices get up to the fleet's drain time to
        deliver what they hold (reconnecting first if an outage just ended)."""
        for d in self.devices:
            d.agent.buffer.cut()
        waited = 0
        while waited < self.drain_ms and any(d.backlog or d.agent.events.log.unacked
                                             for d in self.devices):
            await asyncio.sleep(0.05)
            waited += 50

    def _apply(self, action, i, details, at):
        """Carries out one fault action; returns an awaitable for the slow ones, or None."""
        if action == "restart":
            if self.broker is None:
                return None
            self.restarts += 1
            return self._restart_broker()
        d = self.devices[i]
        # Outages of one device may overlap (`for` not much under `every`): the link comes back
        # when the last of them ends, not the first (the reported outage time fell short of
        # the schedule's by a sixth). A sensor's faults likewise, per sensor.
        if action == "down":
            d.downs += 1
            if d.link.up:
                d.link.up = False
                d.outage_started = at
                client = d.agent.uplink.client
                if client is not None:
                    client.close()
        elif action == "up":
            d.downs = max(0, d.downs - 1)
            if not d.link.up and not d.downs:
                d.link.up = True
                d.outage_ms += at - d.outage_started
        elif action == "cut":
            d.power_cut()
        elif action == "erase":
            d.erase()
        elif action == "sensor":
            d.sensor_faults += 1
            d.faulted[details[0]] = d.faulted.get(details[0], 0) + 1
            d.platform.fault(*details)
        elif action == "sensor_ok":
            d.faulted[details[0]] = max(0, d.faulted.get(details[0], 0) - 1)
            if not d.faulted[details[0]]:
                d.platform.clear(details[0])
        return None

    async def _restart_broker(self):
        """Stops and starts the embedded broker; its devices get through again once the ingest
        has subscribed on the new broker (simulator/device.py, Gate). Before the stop, the
        ingest takes what the broker has acknowledged but not yet passed on: a slow ingest
        leaves hundreds of batches queued there, and the embedded broker keeps nothing across
        a restart (a broker with persistence would hand them over afterwards)."""
        self.gate.closed += 1
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.ingest.wait_idle, 120, 0.5)
            before = self.ingest.stats()["connections"]
            await self.broker.stop()
            await self.broker.start()
            deadline = time.time() + 60  # paho retries every 1-30 s; past this, the report tells
            while time.time() < deadline:
                s = self.ingest.stats()
                if s["connected"] and s["connections"] > before:
                    break
                await asyncio.sleep(0.05)
        finally:
            self.gate.closed -= 1

    def snapshot(self, phase="running"):
        """What the progress display shows."""
        stats = self.ingest.stats() if self.ingest else {}
        return {
            "phase": phase,
            "device_time_ms": self.clock.t,
            "duration_ms": self.duration_ms,
            "wall_s": time.time() - (self.started_wall or time.time()),
            "devices": len(self.devices),
            "online": sum(1 for d in self.devices if d.online),
            "generated": sum(d.buffered for d in self.devices),
            "delivered": stats.get("readings", 0),
            "backlog": sum(d.backlog for d in self.devices),
            "outages": sum(1 for d in self.devices if not d.link.up),
            "power_cuts": sum(d.power_cuts for d in self.devices),
            "erases": sum(d.erases for d in self.devices),
            "events": stats.get("events", 0),
            "restarts": self.restarts,
        }


async def _asleep(devices, hold=None):
    """Device time stands still until each device booted after a power cut has sampled at the
    instant of the cut and gone to sleep on the clock. Otherwise whether its first wake-up is in
    the clock's heap when the next instant is picked (or whether it samples at all, at the last
    instant of a run) would depend on how many turns the event loop took meanwhile: on a pace
    hold, that is on the wall clock, and two runs of one seed would differ."""
    if hold is not None:
        await hold
    for d in devices:
        turns = 0
        while d.clock.sleeps == d.boot_sleeps and not d.task.done():
            turns += 1
            if turns > ASLEEP_TURNS:
                raise FleetError("device %s did not go to sleep on its clock after a power cut "
                                 "(waiting on something that is not device time)" % d.device_id)
            await asyncio.sleep(0)


class IngestPace:
    """Keeps device time from running away from the ingest. At full speed the devices publish
    faster than the ingest (threads of the same process) stores, and what it has not taken
    queues in the broker: a week of 100 devices left 1.3 million readings there, which the
    embedded broker drops past 256 MiB and which makes `delivered` on the progress line
    meaningless. So when the devices have published more than `limit` messages the ingest has not
    stored (LIMIT, or near real time PER_DEVICE for each device of the fleet where that is
    more), device time waits until it has caught up to half of that.

    The count is loose (a publish lost with its connection is counted as sent; a will is
    received without being sent): when the ingest falls quiet while still "behind", that much is
    taken as such slack and not waited for again. With ingest processes of other programs in the
    share group (ingest_group) this process sees only its share, so there is no pacing."""

    LIMIT = 2000
    # A fleet's start publishes a few messages a device at once (its status, schema and first
    # health report): a fixed limit held 10,000 devices' real-time clock for their own boot
    # (1.4 s, bench/fleet.py), which a real fleet does not wait for. Only near real time: there
    # the devices cannot run far ahead; at full speed 4 a device of 100,000 devices' batches
    # would be more than the embedded broker holds.
    PER_DEVICE = 4
    NEAR_REAL_TIME = 10     # x real time
    EVERY_S = 0.2

    def __init__(self, fleet):
        self.fleet = fleet
        speed = getattr(getattr(fleet, "clock", None), "speed", None)
        self.limit = self.LIMIT
        if speed and speed <= self.NEAR_REAL_TIME:
            self.limit = max(self.LIMIT, self.PER_DEVICE * fleet.devices_total)
        self.slack = 0
        self.checked = 0.0
        self.held_s = 0.0  # wall time device time stood still for the ingest (bench/fleet.py)

    def behind(self):
        return self.fleet.gate.published - self.fleet.ingest.stored() - self.slack

    def check(self):
        """None, or an awaitable to hold device time with."""
        if self.fleet.ingest_group is not None:
            return None
        now = time.monotonic()
        if now - self.checked < self.EVERY_S:
            return None
        self.checked = now
        if self.behind() <= self.limit:
            return None
        return self._hold()

    async def _hold(self):
        ingest = self.fleet.ingest
        t0 = time.monotonic()
        try:
            await self._caught_up(ingest)
        finally:
            self.held_s += time.monotonic() - t0

    async def _caught_up(self, ingest):
        while True:
            behind = self.behind()
            if behind <= self.limit // 2:
                break
            if ingest.quiet_s() >= 0.5:
                self.slack += behind
                break
            self.fleet._check_workers()  # a worker gone publishes nothing more
            await asyncio.sleep(0.02)


def broker_address(url):
    """(host, port) of --broker; FleetError for a URL the simulated devices cannot use."""
    try:
        host, port, tls, user, _ = parse_broker(url)
    except ValueError as exc:
        raise FleetError("--broker: %s" % exc)
    if tls or user is not None:
        raise FleetError("--broker: the simulated devices connect without TLS or a password: "
                         "give mqtt://host:port, not %r" % url)
    return host, port
