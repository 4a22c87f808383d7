# The board's entry point (firmware/main.py calls main()): what a board does at every boot.
# docs/esp32.md tells the whole story; in short:
#
#   1. reads profile.json and deep-merges secrets.json (the bundle `tether build` writes);
#   2. counts this boot as a crash until it has run GOOD_BOOT_MS with every task alive; after
#      SAFE_MODE_BOOTS crash boots in a row it starts in safe mode: network and uplink only;
#   3. starts the watchdog (WDT_TIMEOUT_MS), fed by the supervisor only while every task lives;
#   4. runs the network (WiFi join with timeout and backoff, NTP), the uplink (agent.mqtt) and the
#      sampler as supervised asyncio tasks: one that raises is logged, counted and restarted.
#
# Runs on MicroPython; `machine` and the platform are imported inside functions, so that host
# tools and tests can import this module (tests put doubles of machine, network and ntptime in
# sys.modules, tests/portable/board_boot.py).
import asyncio
import gc
import json
import sys

from agent.clock import SystemClock
from agent.crashboots import CrashBoots
from agent.supervisor import Supervisor

PROFILE = "profile.json"
SECRETS = "secrets.json"
BOOTS = "tether_boots"    # the crash-boot count, beside the profile
SAFE_MODE_BOOTS = 10      # crash boots in a row before a boot starts in safe mode (ESPHome: 10)
GOOD_BOOT_MS = 60000      # a boot that ran this long with every task alive is good
SAFE_MODE_MS = 300000     # safe mode then resets, to try a normal boot again
# The watchdog resets the board when it is not fed for this long. Long enough for what blocks
# the whole event loop on purpose: a DNS lookup in asyncio.open_connection (lwIP retries for
# about 14 s before it gives up), a TLS handshake (1-3 s of CPU on an ESP32), ntptime's lookup
# and 1 s socket timeout, a restart pause (at most RESTART_MAX_MS in agent/supervisor.py).
# Short enough that a hang costs half a minute, not the day.
WDT_TIMEOUT_MS = 30000
CHECK_MS = 1000           # the supervisor looks at the tasks and feeds the watchdog this often
SAMPLER_STALL_MS = 20000  # a sampling round that has not come round for this long is stuck
REBOOT_DRAIN_MS = 2000    # a reboot first gives the uplink this long to deliver what waits
FAILED_BOOT_MS = 5000     # when the agent cannot even be built, reset after this pause

# Modules that only build the agent: let go once it is built (their bytecode is in RAM when
# loaded from .mpy). The parts they made live on; their classes are in other modules. The CBOR
# decoder read the insights' snapshot at boot; a command loads it again.
BUILD_ONLY = ("agent.profile", "hal.board", "hal.chips", "hal.esp32", "agent.cbor_decode")

_RESET_CAUSES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "wdt"),
                 ("DEEPSLEEP_RESET", "deepsleep"), ("SOFT_RESET", "soft"))


HEAP_HINT = ": the heap is too small for this profile (docs/esp32.md, Heap)"


def log(text):
    print(text)


def main(root=""):
    """Runs the board until it resets; returns only when there is no usable profile."""
    # The agent's code before the profile: json then gives the profile's keys the names that
    # code already interned, not strings of their own. While the agent is built, the profile
    # takes 11 KB instead of 16.5 KB (64-bit unix port).
    try:
        from agent import mqtt, runtime  # noqa: F401
    except Exception:  # MemoryError: Board.run imports them again, where a failure is counted
        pass
    try:
        board = Board(load(root), root)  # no local of the profile: the board lets it go
    except (OSError, ValueError, KeyError, TypeError, MemoryError) as exc:
        # Stopped here, not reset: a board that cannot read its profile would only read it
        # again, and a reset loop hides the line that says why.
        log("tether: cannot start: %s%s" % (exc, HEAP_HINT if isinstance(exc, MemoryError)
                                             else ""))
        return
    asyncio.run(board.run())


def load(root=""):
    """The compiled profile with the secret values merged in."""
    path = root + PROFILE
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as exc:
        raise OSError("%s: cannot read it (%s): flash the board with `tether flash`"
                      % (path, exc))
    except ValueError as exc:
        raise ValueError("%s: not JSON (%s)" % (path, exc))
    try:
        with open(root + SECRETS) as f:
            secrets = json.load(f)
    except OSError as exc:
        # tether build always writes one ({} when the profile has no secret): without it the
        # WiFi and broker logins are missing, and the agent failed at every boot, a reset loop.
        raise OSError("%s: cannot read it (%s): flash the board with `tether flash`"
                      % (root + SECRETS, exc))
    except ValueError as exc:
        raise ValueError("%s: not JSON (%s)" % (root + SECRETS, exc))
    if not isinstance(profile, dict) or not isinstance(secrets, dict):
        raise ValueError("%s and %s must each hold a JSON object" % (path, root + SECRETS))
    from agent.profile import FORMAT
    if profile.get("v") != FORMAT:
        raise ValueError("%s: a profile of format %r, and this bundle reads format %d: flash "
                         "the board with `tether flash` (profile and code go together)"
                         % (path, profile.get("v"), FORMAT))
    merge(profile, secrets)
    if profile.get("platform") not in ("esp32", "sim"):
        raise ValueError("%s: platform %r cannot run on a board (esp32 or sim)"
                         % (path, profile.get("platform")))
    wifi = profile.get("wifi")
    if "wifi" in profile and not (isinstance(wifi, dict) and isinstance(wifi.get("ssid"), str)):
        # a secrets.json edited by hand: KeyError 'ssid' at every boot, safe mode's too, a
        # reset loop
        raise ValueError("%s with %s: wifi has no ssid: flash the board with `tether flash`"
                         % (path, root + SECRETS))
    return profile


def merge(into, extra):
    """secrets.json's object extra merged into the profile into, in place, as `tether build`
    split them (docs/build.md): mapping into mapping key by key, list into list item by item
    (a null item of extra holds no secret: that item stays), anything else replaces."""
    for key in extra:
        into[key] = _merged(into.get(key), extra[key])


def _merged(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        merge(base, over)
        return base
    if isinstance(base, list) and isinstance(over, list):
        for i in range(len(over)):
            if over[i] is not None:
                while len(base) <= i:
                    base.append(None)
                base[i] = _merged(base[i], over[i])
        return base
    return over


def forget(name):
    """Lets a module that was needed only at boot go: a module loaded from .mpy holds its
    bytecode in RAM. Out of sys.modules and its package; an import later loads it again."""
    sys.modules.pop(name, None)
    package, _, child = name.rpartition(".")
    parent = sys.modules.get(package)
    if parent is not None and child in parent.__dict__:
        delattr(parent, child)


def reset_cause(machine):
    """machine.reset_cause() as a name: power_on, hard, wdt, deepsleep, soft (else unknown)."""
    cause = machine.reset_cause()
    for attr, name in _RESET_CAUSES:
        if getattr(machine, attr, None) == cause:
            return name
    return "unknown"


def fill_uid(profile, machine):
    """Fills {uid} with the chip's unique id (hex) in the device id and in the MQTT client id
    (the device id's template unless the profile names another), in place; returns the device
    id. The agent would fill the client id's {uid} with the whole device id."""
    for section, key in ((profile["device"], "id"), (profile["uplink"], "client_id")):
        if "{uid}" in (section.get(key) or ""):
            uid = "".join("%02x" % b for b in machine.unique_id())
            section[key] = section[key].replace("{uid}", uid)
    return profile["device"]["id"]


def platform_for(profile):
    if profile["platform"] == "sim":
        from hal.sim.platform import SimPlatform
        return SimPlatform(profile)
    from hal.esp32 import Esp32Platform
    return Esp32Platform(profile.get("chip", "esp32"))


def gated(client_class, net):
    """client_class whose connect() fails at once while WiFi is down: no blocking DNS lookup
    then, and the uplink's backoff runs as for any other failed connect."""
    if net is None:
        return client_class

    class Client(client_class):
        async def connect(self):
            if not net.connected():
                raise OSError("WiFi is not connected")
            return await super().connect()
    return Client


class Board:
    def __init__(self, profile, root=""):
        self.profile = profile
        self.agent = None
        self.net = None
        self.supervisor = None
        self.boots = CrashBoots(root + BOOTS)
        self.crash_boots = 0
        self.safe_mode = False
        self.reset_cause = None
        self.going_down = False
        self.connects = 0
        self.uplink_errors = 0
        self.failing = {}         # sensor name -> its failure kind as last logged

    async def run(self):
        import machine
        self.crash_boots, self.safe_mode = self.boots.boot(SAFE_MODE_BOOTS)
        self.reset_cause = reset_cause(machine)
        log("tether: boot (reset cause %s, %d crash boots before)%s" % (
            self.reset_cause, self.crash_boots, ", SAFE MODE: network and uplink only"
            if self.safe_mode else ""))
        if self.boots.failed:
            log("tether: cannot write %s (filesystem full?): crash boots are not counted"
                % BOOTS)
        wdt = machine.WDT(timeout=WDT_TIMEOUT_MS)
        ctx = None
        try:
            # The large long-lived blocks first, while the heap is in one piece: the TLS context
            # (about 3 KB in one block on the 64-bit unix port) and the first MQTT connection's
            # buffers. Made after the agent's modules were loaded, they found the bytes free but
            # not in one piece (bench/heap.py: the context failed below a 248k heap).
            ctx = self._tls_context()
            from agent import mqtt
            mqtt.reserve()
            self._build(machine, ctx)
        except Exception as exc:
            # A profile the hardware does not match, a broken filesystem: nothing runs, the
            # boot counts as a crash, and safe mode comes after enough of them.
            log("tether: cannot start the agent: %s: %s%s" % (
                type(exc).__name__, exc, HEAP_HINT if isinstance(exc, MemoryError) else ""))
            if hasattr(sys, "print_exception"):
                sys.print_exception(exc)
            if not (self.boots.failed and not self.safe_mode and self._build_safe(machine, ctx)):
                await self._failed_boot(machine, wdt)
                return
        gc.collect()  # what building left behind, before the long-lived tasks allocate
        if hasattr(gc, "mem_alloc"):
            log("tether: heap %d bytes used, %d free" % (gc.mem_alloc(), gc.mem_free()))
        wdt.feed()
        self.supervisor.feed = wdt.feed
        self.supervisor.start()
        if self.safe_mode:
            asyncio.create_task(self._leave_safe_mode())
        sup = self.supervisor
        while not sup.stopping:
            sup.check()
            self._report()
            await asyncio.sleep(CHECK_MS / 1000)
        await asyncio.Event().wait()  # stopped on purpose: machine.reset() is on its way

    def _report(self):
        """The uplink's connections and failures, and each sensor that starts or stops failing,
        on the console (`tether logs`), as `tether run` says them on a Pi."""
        u = self.agent.uplink
        if u.errors != self.uplink_errors:  # every one: the same words twice are two outages
            self.uplink_errors = u.errors
            log("uplink: %s" % u.last_error)
        if u.connects != self.connects:
            self.connects = u.connects
            log("uplink: connected (%d connects)" % u.connects)
        failing = self.failing
        for c in self.agent.sampler.channels:
            if c.failing != failing.get(c.name):
                failing[c.name] = c.failing
                log("sensor %s: %s" % (c.name, "reads again" if c.failing is None else
                                       "fails (%s); tried again with backoff" % c.failing))

    def _tls_context(self):
        u = self.profile["uplink"]
        if not u["tls"]:
            return None
        from agent import tls
        # Out of the profile: the PEM texts (a KB or more) are not kept while the agent is built.
        ctx = tls.context(u.pop("ca", None), u.pop("cert", None), u.pop("key", None))
        forget("agent.tls")
        return ctx

    async def _failed_boot(self, machine, wdt):
        """Resets after a boot that built nothing: soon, to count a crash boot; after
        SAFE_MODE_MS when safe mode failed too. That boot cleared the count, so a reset at once
        began the same ten boots again: a board rebooting every 5 s for good, never on the
        network, writing its count to flash 17,000 times a day."""
        pause = FAILED_BOOT_MS
        if self.safe_mode:
            pause = SAFE_MODE_MS
            log("tether: resetting in %d s: safe mode cannot start either" % (pause // 1000))
        while pause > 0:  # the watchdog, started, cannot be stopped: fed while it waits
            wdt.feed()
            await asyncio.sleep(min(pause, CHECK_MS) / 1000)
            pause -= CHECK_MS
        machine.reset()

    def _build_safe(self, machine, ctx):
        """True once the agent is built in safe mode, in this boot: the flash takes no writes
        (the crash count could not be written either), so each boot failed the same way, a
        reset every few seconds never counted, and the board was never on the network."""
        log("tether: the flash takes no writes (full?): starting in safe mode, to be reached")
        self.safe_mode = True
        try:
            if ctx is None:
                ctx = self._tls_context()
            self._build(machine, ctx)
            return True
        except Exception as exc:
            log("tether: cannot start in safe mode either: %s: %s" % (type(exc).__name__, exc))
            return False

    def _build(self, machine, ssl_context=None):
        from agent.mqtt import Client
        from agent.runtime import Agent
        from hal.esp32_net import Network
        profile = self.profile
        clock = SystemClock()
        if "wifi" in profile:
            self.net = Network(profile["wifi"], clock, log)
        self.supervisor = Supervisor(clock, log=log, on_give_up=self._give_up,
                                     good_ms=None if self.safe_mode else GOOD_BOOT_MS,
                                     on_good=None if self.safe_mode else self._good)
        agent = Agent(profile, None if self.safe_mode else platform_for(profile), clock,
                      gated(Client, self.net), device_id=fill_uid(profile, machine),
                      reboot=self._reboot, rssi=self.net.rssi if self.net else None,
                      safe_mode=self.safe_mode, ssl_context=ssl_context)
        agent.more_health = self.health
        agent.uplink.on_command = self._command
        discarded = agent.open()
        agent.running = True
        self.agent = agent
        log("tether: %s, %d sensors, broker %s:%d%s" % (
            agent.device, len(agent.sampler.channels), profile["uplink"]["host"],
            profile["uplink"]["port"],
            ", %d torn or corrupt bytes discarded" % discarded if discarded else ""))
        # What runs holds what it needs of the profile; the whole mapping (some KB of dicts and
        # strings, the CA's text) is garbage from here on, and so are the modules that only
        # build the agent.
        self.profile = None
        for name in BUILD_ONLY:
            forget(name)
        if self.net is not None:
            self.supervisor.add("network", self.net.run)
        self.supervisor.add("uplink", agent.uplink.run)
        if not self.safe_mode:
            self.supervisor.add("sampler", agent.sampling, beat=self._sampled_at,
                                stall_ms=SAMPLER_STALL_MS)

    async def _command(self, payload, retained, size, limit):
        try:
            return await self.agent.commands.handle(payload, retained, size, limit)
        finally:
            # The decoder read the command: it goes until the next one loads it again.
            forget("agent.cbor_decode")

    def _sampled_at(self):
        return self.agent.sampled_at

    def health(self):
        """The board's health keys (docs/wire-format.md, docs/esp32.md)."""
        return {"reset_cause": self.reset_cause, "safe_mode": self.safe_mode,
                "crash_boots": self.crash_boots, "restarts": self.supervisor.restarts(),
                "task_error": self.supervisor.last_error}

    def _good(self):
        self.boots.clear()
        log("tether: boot is good")

    def _give_up(self, name):
        import machine
        log("tether: resetting: task %s cannot be kept running" % name)
        try:
            # its own reset, unlike a watchdog's: the readings in RAM go to flash first (up to
            # ram_readings of them were lost without a count)
            self.agent.buffer.flush()
        except Exception as exc:
            log("tether: the readings in RAM could not be kept: %s" % exc)
        # a crash even after a good minute, after the crash boots before this one: a task that
        # fails every few minutes reaches safe mode too (each good boot cleared the count). Not
        # in safe mode, whose boot cleared it: the next boot tries a normal start.
        if not self.safe_mode:
            self.boots.crashed(self.crash_boots)
        machine.reset()

    def _reboot(self):
        # A `reboot` command: on purpose, so it does not count as a crash.
        asyncio.create_task(self._go_down("reboot command", True))

    async def _leave_safe_mode(self):
        await asyncio.sleep(SAFE_MODE_MS / 1000)
        await self._go_down("safe mode is over: trying a normal boot", False)

    async def _go_down(self, why, clear):
        import machine
        if self.going_down:
            return
        self.going_down = True
        log("tether: resetting: %s" % why)
        self.supervisor.stop()
        try:
            await self.agent.stop(drain_ms=REBOOT_DRAIN_MS)
        except Exception as exc:
            log("tether: stopping the agent failed: %s" % exc)
        if clear:
            self.boots.clear()
        machine.reset()
