# The agent: a compiled profile's sensors, sampler, buffer, events and uplink, running together.
#
#   agent = Agent(profile, platform, clock, client_class, store, events_store)
#   agent.open()
#   await agent.run()        # samples on the clock and uplinks, until stop()
#
# The sampler and the uplink are separate tasks: the uplink may wait on the network as long as
# it likes, the sampler keeps its schedule and the buffer keeps the readings.
import asyncio
import gc

from agent import cbor
from agent.events import Events, log_bytes
from agent.log import Log, add_range, first_of
from agent.sampler import Sampler, channels
from agent.uplink import Topics, Uplink

VERSION = "0.1.0"
RESEND_RANGES = 16   # a resend command asks for at most this many ranges
RESEND_SEQS = 1024   # and this many sequence numbers in all
MAX_SNOOZE_MS = 90 * 86400000
FLUSH_LATE_MS = 20  # the least a sampler sleeps for a flush: a flush that fails is no busy loop


class Agent:
    def __init__(self, profile, platform, clock, client_class, store=None, events_store=None,
                 device_id=None, reboot=None, rssi=None, tls_tmpdir=None, safe_mode=False,
                 ssl_context=None):
        """client_class: agent.mqtt.Client (a board) or agent.host.paho_client.Client (CPython);
        store / events_store: where the buffer and the events live (default: the profile's);
        reboot(): restarts the device (a `reboot` command calls it once its reply is out);
        rssi(): the radio's signal strength in dBm, for health reports, or None;
        safe_mode: a board that crashed at boot too often (docs/esp32.md): no sensors are set
        up, nothing is read from flash (buffer and events in RAM), and only the commands that
        help to diagnose it are taken (ping, diag, reboot);
        ssl_context: the uplink's TLS context when the caller made it already (a board makes it
        first, while its heap is in one piece), else made here from the profile."""
        # Here, not at the top: needed only to build the agent, so that a board can let these
        # modules go once it is built (firmware/board.py).
        from agent import profile as compiled
        from hal.board import drivers
        self.model = profile["device"].get("model")  # not the profile: a board frees it
        self.clock = clock
        self.device = device_id or profile["device"]["id"]
        self.reboot = reboot
        self.rssi = rssi
        self.started = clock.monotonic()
        self.schema = compiled.schema(profile)
        if safe_mode:
            from agent.store import RamStore
            store = RamStore()
            events_store = RamStore()
        self.buffer = compiled.buffer(profile, store, self.device, self.schema)
        b = profile["buffer"]
        if events_store is None:
            from agent.store import FileStore, RamStore
            events_store = RamStore() if b["storage"] == "ram" else FileStore(b["path"] + "/events")
        limit = log_bytes(b["max_bytes"])
        self.events = Events(Log(events_store, limit, limit // 4, compiled.batch.seq_of),
                             self.device)
        self.sampler = Sampler(clock, self.buffer, self.events, [] if safe_mode else
                               channels(profile, self.schema, drivers(profile, platform)))
        self.insights = None
        self.saved_at = self.started
        if not safe_mode and any("insight" in s for s in profile["sensors"]):
            from agent.insights import Insights  # only where a profile has insights
            self.insights = Insights(self.events, profile["sensors"], clock)
            for c in self.sampler.channels:
                c.insight = self.insights.feeder(c.name)
        self.sampled_at = self.started  # monotonic ms of the last sampling round
        u = profile["uplink"]
        handlers = {"ping": self._ping, "diag": self._diag, "reboot": self._reboot}
        if not safe_mode:
            handlers.update({"set_interval": self._set_interval, "flush": self._flush,
                             "resend": self._resend})
            if self.insights is not None:
                handlers["insight"] = self._insight
        self.handlers = handlers
        self._commands = None
        self.uplink = Uplink(self._client_maker(client_class, u, tls_tmpdir, ssl_context,
                                                profile["device"]["id"]), self.buffer,
                             self.events, Topics(u["prefix"], self.device), clock,
                             window=u["window"], backoff_min_ms=u["backoff_min_ms"],
                             backoff_max_ms=u["backoff_max_ms"],
                             schema=self.schema.to_cbor() if u["encoding"] == "compact" else None,
                             on_command=self._command, health=self.health,
                             health_ms=u["health_ms"], ack_timeout_ms=u["ack_timeout_ms"])
        self.buffer.notify = self.uplink.notify
        if u["encoding"] != "compact":
            self.uplink.compact_doc = self.schema.to_cbor
        self.events.notify = self.uplink.notify
        self.running = False
        self.on_tick = None  # fn(t_ms) before each sampling round: the simulator moves its world
        self.more_health = None  # fn() -> a dict of further health keys (a board's)
        # The health message's buffer, made now and kept, not grown from 64 bytes by doubling
        # at every report: on a board's fragmented heap the last doubling, 1 KB in one piece,
        # was the first allocation to fail (bench/heap.py). The printer's message is 0.5-1 KB.
        # Command replies share it: the uplink publishes each message before it makes the next.
        self.health_w = cbor.Writer(size=1024)

    def _client_maker(self, client_class, u, tls_tmpdir, ctx, template):
        if not u["tls"]:
            ctx = None
        elif ctx is None:
            from agent import tls
            ctx = tls.context(u.get("ca"), u.get("cert"), u.get("key"), tls_tmpdir)
        client_id = u.get("client_id")
        if not client_id or client_id == template:
            # the device id's template (the default): the device id, also when --device gave
            # it whole ("printer-{uid}" with printer-1 once made printer-printer-1)
            client_id = self.device
        else:
            client_id = client_id.replace("{uid}", self.device)
        # The values, not the profile's uplink mapping: the closure would keep it (and its CA
        # text) alive for good.
        host, port, keepalive_s = u["host"], u["port"], u["keepalive_ms"] // 1000
        username, password = u.get("username"), u.get("password")

        def make(will):
            return client_class(client_id, host, port, keepalive_s=keepalive_s,
                                username=username, password=password, ssl=ctx,
                                server_hostname=host, will=will)
        return make

    def open(self):
        """Reads the buffer and the event log back (after a reboot or a power cut)."""
        discarded = self.buffer.open(self.uplink.schema) + self.events.open()
        self.buffer.set_synced(self.clock.synced)
        if self.insights is not None:
            self.insights.load(self.events.log.store)
            self.saved_at = self.clock.monotonic()
        return discarded

    async def sampling(self):
        """Reads what is due, then sleeps until the next sensor is (on the clock's own sleep
        when it has one: the simulator's device time runs fast), while running. Raises what a
        round raises: a board's supervisor restarts it (agent/supervisor.py)."""
        sleep = getattr(self.clock, "sleep", None)
        while self.running:
            self.sampled_at = self.clock.monotonic()
            if self.on_tick is not None:
                self.on_tick(self.clock.now()[0])
            wait = self.sampler.step()
            now = self.clock.now()[0]
            self.buffer.poll(now)
            # Awake when the flush window closes, not at the next reading: a power cut took
            # readings flush_every plus a sensor's interval old (a second on a board).
            due = self.buffer.due_in(now)
            if due is not None and due < wait:
                wait = max(due, FLUSH_LATE_MS)
            ins = self.insights
            if ins is not None and (
                    ins.dirty or self.clock.monotonic() - self.saved_at >= ins.SAVE_MS):
                self.save_insights()
            if sleep is not None:
                await sleep(wait)
            else:
                await asyncio.sleep(min(wait, 1000) / 1000)

    async def sample(self):
        """The sampler's task under run(): a failing round ends the run."""
        try:
            await self.sampling()
        except Exception:
            # An agent that no longer samples (its store failing, say) must not look alive:
            # stopping the uplink ends run(), which raises this.
            self.running = False
            await self.uplink.stop()
            raise

    async def run(self):
        self.running = True
        sampling = asyncio.create_task(self.sample())
        try:
            await self.uplink.run()
        finally:
            self.running = False
            await sampling

    async def stop(self, drain_ms=5000, while_offline=False):
        """Stops sampling, stores what is in RAM, gives the uplink up to drain_ms to deliver
        what waits (while it is connected; while_offline: also while it reconnects), then says
        offline, disconnects and closes the buffer. What is not delivered stays in the buffer
        for the next start."""
        self.running = False
        self.buffer.cut()
        waited = 0
        while ((while_offline or self.uplink.connected) and waited < drain_ms
               and self.buffer.log.unacked + self.events.log.unacked):
            await asyncio.sleep(0.05)
            waited += 50
        await self.uplink.stop()
        if self.insights is not None:
            self.save_insights()
        # Saves the acknowledged cursor: after a clean stop nothing goes out twice.
        self.buffer.close()
        self.events.close()

    def save_insights(self):
        """What the insights have learned, to flash (agent/insights: it survives a reboot)."""
        self.saved_at = self.clock.monotonic()
        self.insights.save(self.events.log.store)

    # -- health and commands ---------------------------------------------------------------------

    def health(self, uplink):
        """The health message (docs/wire-format.md): a memoryview, valid until the next call."""
        log = self.buffer.log
        t, synced = self.clock.now()
        sensors = {}
        for name, readings, suppressed, errors in self.sampler.health():
            sensors[name] = {"readings": readings, "suppressed": suppressed, "errors": errors}
        free = gc.mem_free() if hasattr(gc, "mem_free") else None
        used = gc.mem_alloc() if hasattr(gc, "mem_alloc") else None
        report = {
            "v": 1, "device": self.device, "model": self.model, "version": VERSION,
            "boot": log.boot, "t": t, "synced": synced,
            "uptime_s": (self.clock.monotonic() - self.started) // 1000,
            "heap_free": free, "heap_used": used,
            "batches_queued": log.unacked, "buffer_bytes": log.size, "dropped": log.dropped,
            "readings_waiting": self.buffer.n, "events_queued": self.events.log.unacked,
            "events_dropped": self.events.log.dropped,
            "discarded": self.discarded(),
            "connects": uplink.connects, "reconnects": uplink.reconnects,
            "too_large": uplink.too_large, "commands_dropped": uplink.commands_dropped,
            "last_error": uplink.last_error, "rssi": self.rssi() if self.rssi else None,
            "sensors": sensors,
            "seq": {"batch": log.span(uplink.sent[0]),
                    "event": self.events.log.span(uplink.sent[1])}}
        # Encoded as one map without adding to `report`: its 25 keys fill the table the literal
        # made, and growing it by the insights and a board's keys (368 bytes on the 64-bit
        # port) was the allocation that failed first on a small heap (bench/heap.py, frozen).
        parts = [report]
        if self.insights is not None:
            parts.append({"insights": self.insights.health(t)})
        if self.more_health is not None:
            parts.append(self.more_health())
        w = self.health_w
        w.reset()
        w.maps(parts)
        return w.getvalue()

    @property
    def commands(self):
        """The command handling (agent.commands.Commands), loaded at the first command: most
        boards never get one, and on a board its module is bytecode in RAM."""
        if self._commands is None:
            from agent.commands import Commands
            self._commands = Commands(self.handlers, self.health_w)
        return self._commands

    def _command(self, payload, retained=False, size=None, limit=None):
        return self.commands.handle(payload, retained, size, limit)

    def _ping(self, cmd):
        cmd.done()
        t, synced = self.clock.now()
        return {"t": t, "synced": synced, "uptime_s": (self.clock.monotonic() - self.started) // 1000}

    def _set_interval(self, cmd):
        name = cmd.arg("sensor", str)
        ms = cmd.arg("interval_ms", int, 100, 86400000)
        cmd.done()
        for c in self.sampler.channels:
            if c.name == name:
                d = self.insights.detectors.get(name) if self.insights is not None else None
                most = getattr(d, "MAX_INTERVAL_MS", None)
                if most is not None and ms > most:
                    raise _error("%s: at most %d ms: its %s insight %s"
                                 % (name, most, d.KIND, d.SPACED))
                c.interval_ms = ms
                c.due = self.clock.monotonic()
                return {"sensor": name, "interval_ms": ms}
        raise _error("no sensor %s" % _shown(name))

    def _flush(self, cmd):
        cmd.done()
        before = self.buffer.batches
        self.buffer.cut()
        return {"batches": self.buffer.batches - before}

    def discarded(self):
        """Bytes of the buffer and the events log found torn or corrupt at this boot's open."""
        return self.buffer.log.discarded + self.events.log.discarded

    def _diag(self, cmd):
        cmd.done()
        log = self.buffer.log
        u = self.uplink
        return {"version": VERSION, "model": self.model,
                "boot": log.boot, "seq": self.buffer.seq, "acked": log.acked,
                "segments": len(log.segments),
                "discarded": self.discarded(),
                "published": u.published, "puback": u.acked, "connected": u.connected,
                "commands": self.commands.received, "rejected": self.commands.rejected,
                "skipped": self.commands.skipped,
                "sensors": [[c.name, c.interval_ms, c.readings, c.failing] for c in self.sampler.channels],
                "insights": self.insights.state() if self.insights is not None else None}

    def _insight(self, cmd):
        """ack, snooze or change the settings of a sensor's insight (docs/insights.md)."""
        sensor = cmd.arg("sensor", str)
        action = cmd.arg("action", str)
        event = until = args = None
        if action in ("ack", "snooze"):
            event = cmd.arg("event", str)
        if action == "snooze":
            ms = cmd.arg("for_ms", int, 0, MAX_SNOOZE_MS)
            now, synced = self.clock.now()
            # False: refused once the sensor and the event are known good (a wrong one said
            # only "not synced")
            until = (now + ms if synced else False) if ms else None
        elif action == "set":
            args = cmd.arg("settings", dict)
            d = self.insights.detectors.get(sensor) if self.insights is not None else None
            for c in self.sampler.channels:
                if c.name == sensor and d is not None:
                    d.interval_ms = c.interval_ms   # what a setting may ask of its readings
        elif action not in ("ack", "settings"):
            raise _error("argument 'action' must be \"ack\", \"snooze\", \"set\" or "
                         "\"settings\", got %s" % _shown(action))
        cmd.done()
        try:
            return self.insights.command(sensor, action, event, until, args)
        except ValueError as exc:
            raise _error(str(exc))

    def _resend(self, cmd):
        """Re-publishes batches or events the ingest is missing (docs/uplink.md, "Repair")."""
        kind = cmd.arg("kind", str)
        ranges = cmd.arg("ranges", list)
        store = cmd.arg("store", int, 1, 0xFFFFFFFF) if "store" in cmd.fields else None
        cmd.done()
        if kind not in ("batch", "event"):
            raise _error("argument 'kind' must be \"batch\" or \"event\", got %s"
                         % _shown(kind))
        log = self.buffer.log if kind == "batch" else self.events.log
        if store is not None and store != log.store_id:
            # Asked for another log's numbers (made afresh since): these are not those.
            raise _error("store: this %s log is store %d, not %d" % (kind, log.store_id, store))
        if not ranges or len(ranges) > RESEND_RANGES:
            raise _error("bounded: 'ranges' must hold 1 to %d ranges, got %d"
                         % (RESEND_RANGES, len(ranges)))
        for i, r in enumerate(ranges):
            if (not isinstance(r, list) or len(r) != 2 or not _seq(r[0]) or not _seq(r[1])
                    or r[0] > r[1]):
                raise _error("range %d must be [from, to] with 0 <= from <= to < 2**32"
                             % i)
        ranges.sort(key=first_of)
        joined = []
        for r in ranges:  # overlapping and adjacent ranges join: nothing is queued twice
            add_range(joined, r[0], r[1])
        total = 0
        for a, b in joined:     # counted once joined: [[0, 1000], [0, 1000]] asks for 1001
            total += b - a + 1
        if total > RESEND_SEQS:
            raise _error("bounded: at most %d sequence numbers a command, got %d"
                         % (RESEND_SEQS, total))
        into = ([], [], [], [])
        for a, b in joined:
            log.classify(a, b, into)
        held, gone, dropped, unknown = into
        queued = 0
        for a, b in held:
            queued += b - a + 1
        if held and not self.uplink.repair(kind, held):
            raise _error("busy: too many repairs are waiting; ask again later")
        return {"kind": kind, "queued": queued, "gone": gone, "dropped": dropped,
                "unknown": unknown, "store": log.store_id}

    def _reboot(self, cmd):
        cmd.done()
        if self.reboot is None:
            raise _error("this device cannot reboot on command")
        return {"rebooting": True}, self.reboot


def _seq(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 0x100000000


def _error(text):
    # A handler runs only once agent.commands is loaded (it calls the handler).
    from agent.commands import CommandError
    return CommandError(text)


def _shown(v):
    from agent.shown import shown  # loaded at the first error: a board's heap
    return shown(v)
