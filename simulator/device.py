"""One simulated appliance: the real agent (agent/runtime.py) on virtual chips (hal/sim) driven by
an appliance model (simulator/models), on the fleet's device time, with its buffer in files.

Faults reach it where a real device meets them: its network link (`link.up`, latency and
bandwidth in front of its MQTT client), its power (power_cut(): the process dies, the files
stay; the next boot reopens them) and its sensors (through the platform's virtual chips).
"""
import asyncio
import copy
from array import array
import errno
import os
import shutil

from agent.runtime import Agent
from agent.store import FileStore
from hal.sim.platform import SimPlatform


BACKOFF_MAX_MS = 2000  # wall time: an outage's end is noticed quickly even when time runs fast


class Gate:
    """The fleet's broker as its devices see it: closed while it restarts, and until the ingest
    has subscribed again. A production broker keeps the ingest's session across a restart and
    holds the batches for it; the embedded one keeps nothing, so the devices wait instead."""

    def __init__(self):
        self.closed = 0     # restarts under way
        self.published = 0  # PUBLISH packets the fleet's devices sent (simulator/fleet.py, IngestPace)


class SimStore(FileStore):
    """The agent's FileStore (agent/store.py) without fsync. A simulated power cut is the death
    of the agent, not of the host (power_cut(): the files stay): what reached the operating
    system survives it with or without fsync, and the fsyncs (each journal flush, batch and
    cursor save) took a third of a fleet's wall time at full speed (bench/fleet.py). What only
    Python buffers is still lost to a power cut (_abandon), as it is with fsync."""

    flush_each = False  # no simulated disk fills up: one write per sync, as the fleet's speed

    def sync(self):
        for f in self._out.values():
            f.flush()

    def replace(self, name, data):
        self._forget(name)
        tmp = self._p(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self._p(name))  # atomic for anyone who opens it afterwards
        self.written += len(data)


class Link:
    """The device's network: up or down, with a latency and a bandwidth (None: unlimited)."""

    def __init__(self, gate):
        self.gate = gate
        self.up = True
        self.latency_ms = 0
        self.bits_per_s = None
        self.bytes_up = 0         # what the device sent in PUBLISH packets, MQTT framing included


def link_client(base, link):
    """The agent's client class behind `link`: connects fail while it is down, and each
    publish waits for the link's latency and bandwidth (wall time) before it goes."""

    class LinkClient(base):
        async def connect(self):
            if not link.up:
                raise OSError(errno.ENETUNREACH, "network down")
            if link.gate.closed:
                raise OSError(errno.ECONNREFUSED, "broker restarting")
            await super().connect()

        async def publish(self, topic, payload, qos=1, retain=False, dup=False):
            if not link.up or link.gate.closed:
                self.close()
                raise OSError(errno.ENETUNREACH, "network down")
            size = len(payload) + 5 + len(topic) + (2 if qos else 0)
            if link.latency_ms or link.bits_per_s:
                delay = link.latency_ms / 1000.0
                if link.bits_per_s:
                    delay += size * 8.0 / link.bits_per_s
                await asyncio.sleep(delay)
            link.bytes_up += size
            link.gate.published += 1
            return await super().publish(topic, payload, qos, retain, dup)

    return LinkClient


class SimDevice:
    def __init__(self, fleet, profile, device_id, model, folder, client_class, host, port,
                 seed):
        p = copy.deepcopy(profile)
        p["device"]["id"] = device_id
        u = p["uplink"]
        u.update({"host": host, "port": port, "tls": False, "client_id": device_id})
        for key in ("ca", "cert", "key", "username", "password"):
            u.pop(key, None)
        u["health_ms"] = max(u["health_ms"], fleet.health_ms)
        u["backoff_max_ms"] = min(u["backoff_max_ms"], BACKOFF_MAX_MS)
        u["backoff_min_ms"] = min(u["backoff_min_ms"], BACKOFF_MAX_MS // 4)
        p["buffer"]["storage"] = "flash"
        p["buffer"]["path"] = str(folder)
        provision = getattr(model, "provision", None)
        if provision is not None:  # what its installer sets: a patient's own dose times, ...
            provision(p)
        self.profile = p
        self.device_id = device_id
        self.fleet = fleet
        self.model = model
        self.folder = folder
        self.platform = SimPlatform(p, seed)
        self.link = Link(fleet.gate)
        self.client_class = link_client(client_class, self.link)
        self.clock = fleet.clock.device()
        self.agent = None
        self.task = None
        self.crashed = None     # "Type: message" of the first exception an agent stopped on
        self.boots = 0
        # Ground truth across boots.
        self.buffered_before = 0   # readings buffered by earlier boots
        self.cut_losses = 0        # readings that were only in RAM when the power went
        self.power_cuts = 0
        self.sensor_faults = 0   # sensor fault windows that began
        self.outage_ms = 0
        self.outage_started = 0
        self.downs = 0           # outages of this device under way (they may overlap)
        self.faulted = {}        # sensor -> its faults under way
        self.backlog_max = 0
        self.first_event_seq = None
        self.events_before = 0   # events raised into logs erased since
        self.erases = 0
        self.first_store = None  # the store id of its first batch log
        self.erased_rows = 0     # readings in RAM or the journal when the flash was erased
        # [(kind, store id, {seq: readings})]: what each erased log held unacknowledged; what
        # of it the ingest never stored is counted at the end (parts.erased)
        self.erased_held = []
        # Readings in each batch the device formed, by its log's store id and sequence number
        # (4 bytes a batch): what a batch the ingest records as lost at the broker held.
        self.batch_readings = {}

    def _boot(self):
        self.agent = Agent(self.profile, self.platform, self.clock, self.client_class,
                           store=SimStore(str(self.folder)),
                           events_store=SimStore(str(self.folder) + "/events"),
                           device_id=self.device_id)
        platform = self.platform
        advance = self.model.advance
        self.agent.on_tick = lambda t: advance(t, platform)
        self._count_batches(self.agent.buffer.log)
        self.agent.open()
        if self.first_store is None:
            self.first_store = self.agent.buffer.log.store_id
        if self.first_event_seq is None:
            self.first_event_seq = self.agent.events.seq
        self.boots += 1
        self.boot_sleeps = self.clock.sleeps  # this boot's sampler has not slept yet
        self.task = asyncio.get_running_loop().create_task(self.agent.run())

    def _count_batches(self, log):
        append = log.append_batch

        def counted(seq, count, data):
            counts = self.batch_readings.get(log.store_id)
            if counts is None:
                counts = self.batch_readings[log.store_id] = array("I")
            if seq >= len(counts):
                counts.extend([0] * (seq + 1 - len(counts)))
            counts[seq] = count
            return append(seq, count, data)
        log.append_batch = counted

    def readings_in(self, store, seqs):
        """Readings in these batches of this device's log `store` (0 for one never formed)."""
        counts = self.batch_readings.get(store, ())
        return sum(counts[s] for s in seqs if 0 <= s < len(counts))

    def start(self):
        self._boot()

    @property
    def buffered(self):
        """Readings that reached this device's buffer, over all its boots: the ground truth."""
        now = sum(c.readings for c in self.agent.sampler.channels) if self.agent else 0
        return self.buffered_before + now

    @property
    def events_raised(self):
        """Events the agent stored, over all its boots (each is synced as it is raised)."""
        return self.events_before + (self.agent.events.seq - self.first_event_seq
                                     if self.agent else 0)

    @property
    def backlog(self):
        return self.agent.buffer.log.unacked if self.agent else 0

    @property
    def online(self):
        return self.agent is not None and self.agent.uplink.connected

    def note_backlog(self):
        b = self.backlog
        if b > self.backlog_max:
            self.backlog_max = b

    def power_cut(self):
        """The power goes: the agent dies where it stands (the broker sees its connection drop
        and publishes its will), what was only in RAM is gone, and it boots again on its files."""
        self._die()
        self.power_cuts += 1
        self._boot()

    def erase(self):
        """The board's flash is erased and flashed again (`tether flash --firmware`): the agent
        dies as at a power cut, its buffer and events' log go with the files, and it boots on
        new ones, which number from 0 under new store ids (docs/ingest.md, "A device's new
        log"). What the old ones held unacknowledged is kept here, to count what of it the
        ingest never got (parts.erased)."""
        agent = self.agent
        self.erased_rows += agent.buffer.n  # in RAM or in the journal: gone either way
        for kind, log in (("batch", agent.buffer.log), ("event", agent.events.log)):
            held = {}
            if log.last_seq > log.acked:
                for a, b in log.classify(log.acked + 1, log.last_seq)[0]:
                    for seq in range(a, b + 1):
                        held[seq] = (self.readings_in(log.store_id, (seq,))
                                     if kind == "batch" else 1)
            self.erased_held.append((kind, log.store_id, held))
        self.events_before = self.events_raised
        self.first_event_seq = None
        self._die(ram_lost=False)
        shutil.rmtree(str(self.folder))
        self.erases += 1
        self._boot()

    def failed(self):
        """Keeps why the agent's task ended on its own, if it did (a bug, a store that failed):
        the run reports it, not a device that fell silent with its readings "waiting"."""
        task = self.task
        if task is not None and task.done() and not task.cancelled() \
                and task.exception() is not None and self.crashed is None:
            exc = task.exception()
            self.crashed = "%s: %s" % (type(exc).__name__, exc)

    def _die(self, ram_lost=True):
        self.failed()
        agent = self.agent
        buf = agent.buffer
        if ram_lost:  # a power cut's: the journal's rows stay
            self.cut_losses += buf.n - buf.flushed
        self.buffered_before += sum(c.readings for c in agent.sampler.channels)
        agent.running = False
        agent.uplink.stopping = True
        self.task.cancel()
        client = agent.uplink.client
        if client is not None:
            client.close()
        for store in (buf.store, agent.events.log.store):
            _abandon(store)
        # The old sampling task ends at its next wake-up without sampling (running is False);
        # the new boot owns the files from now on.

    async def stop(self):
        """The end of the run, once the fleet has let the devices deliver what they hold
        (Fleet._drain) and answer the ingest's repairs: offline, disconnected, buffer closed."""
        self.failed()
        await self.agent.stop(0)
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass


def _abandon(store):
    """Drops a store's open files without writing what Python still buffers for them: after a
    power cut nothing more reaches the disk."""
    for f in list(getattr(store, "_out", {}).values()):
        try:
            f.detach().close()
        except (OSError, ValueError):
            pass
    store._out = {}
    if getattr(store, "_in", None) is not None:
        store._in.close()
        store._in = None
        store._in_name = None
