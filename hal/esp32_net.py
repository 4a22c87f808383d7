# A board's network: joins the profile's access point and keeps it joined, and sets the agent's
# clock from NTP once the link is up (firmware/board.py, docs/esp32.md). MicroPython's
# `network` and `ntptime` are imported when first used, so that the module imports anywhere.
#
#   net = Network({"ssid": ..., "password": ...}, clock)
#   asyncio.create_task(net.run())      # forever: a supervised task
#   net.connected()                     # the uplink connects only when this is True
#
# Never waits forever: each join has CONNECT_MS, and a failed one is retried after a pause that
# doubles from BACKOFF_MIN_MS to BACKOFF_MAX_MS (an ESP32 does not rejoin its last access point
# on boot, and the stock do_connect() loops until it has joined). NTP is tried as soon as the
# link is up, then again after a pause that doubles up to NTP_RETRY_MAX_MS while it fails,
# and every RESYNC_MS once it has worked: the clock's crystal drifts. Readings taken before the
# first sync are marked unsynced (agent/clock.py). Portable.
import asyncio
import time

from hal.ticks import PLAUSIBLE_MS

CONNECT_MS = 20000        # one join attempt: DHCP included, most joins take 2-5 s
BACKOFF_MIN_MS = 2000
BACKOFF_MAX_MS = 300000
POLL_MS = 250             # how often a join in progress is looked at
CHECK_MS = 5000           # how often a joined link is looked at
NTP_RETRY_MIN_MS = 2000
NTP_RETRY_MAX_MS = 600000
RESYNC_MS = 6 * 3600000
UNIX_2000 = 946684800     # seconds from 1970 to 2000, the epoch of some ports' time()
# ntptime reads an NTP timestamp before 2024 as one of the next era, from 2036-02-07 on (2**32
# s after 1900; a kiss-of-death reply's 0 is that very second). A server that counts from 0
# (its clock never set) answers in the week after it: refused. Later times are the time: every
# one from 2036 on was refused, and a board booted then never had the time again.
NTP_ERA = 2085978496
ERA_GUARD_S = 7 * 86400
# ...and a server whose clock reads 1970 to 2023 (reset, never set) lands from 2106 on: refused
ERA_END = NTP_ERA + 2208988800

# network.WLAN.status() on an ESP32 (MicroPython 1.2x): what a failed join says.
_STATUS = {201: "no access point of that name", 202: "wrong password", 203: "join failed",
           204: "handshake timeout", 1000: "idle", 1001: "connecting", 1010: "connected"}


class Network:
    def __init__(self, wifi, clock, log=print, sleep=None):
        """wifi: the compiled profile's wifi section {ssid, password (absent: open)};
        sleep(ms): an awaitable pause (asyncio's by default; tests pass their own)."""
        self.ssid = wifi["ssid"]
        self.password = wifi.get("password")
        self.ntp = wifi.get("ntp") or ()    # none: ntptime's own (pool.ntp.org)
        self.ntp_at = 0                     # the server asked next: a failed one hands on
        self.clock = clock
        self.log = log
        self.wlan = None
        self.joins = 0            # join attempts
        self.joined = 0           # successful joins
        self.sleep = sleep or _sleep

    def connected(self):
        return self.wlan is not None and self.wlan.isconnected()

    def rssi(self):
        """The signal strength in dBm while joined, else None."""
        if not self.connected():
            return None
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError, TypeError):
            return None

    def _open(self):
        import network
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        self.wlan = wlan
        return wlan

    async def join(self):
        """One join attempt of at most CONNECT_MS; True once joined."""
        wlan = self.wlan or self._open()
        self.joins += 1
        try:
            if self.password is None:
                wlan.connect(self.ssid)
            else:
                wlan.connect(self.ssid, self.password)
        except OSError as exc:
            self.log("wifi: cannot start joining %r: %s" % (self.ssid, exc))
            return False
        for _ in range(max(1, CONNECT_MS // POLL_MS)):
            if wlan.isconnected():
                self.joined += 1
                self.log("wifi: joined %r as %s" % (self.ssid, wlan.ifconfig()[0]))
                return True
            await self.sleep(POLL_MS)
        status = wlan.status()
        self.log("wifi: could not join %r in %d ms: %s" % (
            self.ssid, CONNECT_MS, _STATUS.get(status, "status %s" % status)))
        try:
            wlan.disconnect()  # ends the attempt: the next connect() starts afresh
        except OSError:
            pass
        return False

    def sync_time(self):
        """Sets the clock from NTP; True when it worked. Blocks up to about a second (ntptime's
        socket timeout) plus its DNS lookup. A failure moves on to the profile's next server."""
        import ntptime
        if self.ntp:
            ntptime.host = self.ntp[self.ntp_at % len(self.ntp)]
        host = getattr(ntptime, "host", "NTP")
        try:
            t = ntptime.time()
        except Exception as exc:  # a short reply is ntptime's ValueError: any fault hands on
            self.log("ntp: no time from %s: %s" % (host, exc))
            self.ntp_at += 1
            return False
        if time.gmtime(0)[0] == 2000:
            t += UNIX_2000
        if t * 1000 < PLAUSIBLE_MS or NTP_ERA <= t < NTP_ERA + ERA_GUARD_S or t >= ERA_END:
            # a broken server's 1970, a kiss-of-death's 2036: readings stamped so would count
            # as synced
            self.log("ntp: %s answered %d, no time this board can have been set to" % (host, t))
            self.ntp_at += 1
            return False
        before, synced = self.clock.now()
        self.clock.sync(t * 1000)
        step = (t * 1000 - before) // 1000 if synced else 0
        # A step at a resync is a server that was wrong then or is now (a believable 2035 is
        # taken as the time): the console says so; NTP's whole seconds step by one at most.
        self.log("ntp: clock set to %d from %s%s" % (
            t, host, ", a step of %+d s" % step if step > 1 or step < -2 else ""))
        return True

    async def run(self):
        """Keeps the link up and the clock set, forever."""
        failures = 0
        ntp_failures = 0
        # joined already (the task restarted after a fault): NTP at once, not after a rejoin
        # that may never come (a restarted task never set the clock while the link held)
        ntp_due = self.clock.monotonic() if self.connected() else None
        while True:
            if not self.connected():
                if await self.join():
                    failures = 0
                    if ntp_due is None:
                        ntp_due = self.clock.monotonic()
                else:
                    failures += 1
                    wait = min(BACKOFF_MIN_MS << min(failures - 1, 20), BACKOFF_MAX_MS)
                    self.log("wifi: next try in %d ms" % wait)
                    await self.sleep(wait)
                    continue
            now = self.clock.monotonic()
            if ntp_due is not None and now >= ntp_due:
                if self.sync_time():
                    ntp_failures = 0
                    ntp_due = now + RESYNC_MS
                else:
                    ntp_failures += 1
                    ntp_due = now + min(NTP_RETRY_MIN_MS << min(ntp_failures - 1, 20),
                                        NTP_RETRY_MAX_MS)
            wait = CHECK_MS
            if ntp_due is not None:
                wait = max(min(wait, ntp_due - self.clock.monotonic()), 0)
            await self.sleep(wait)


async def _sleep(ms):
    await asyncio.sleep(ms / 1000)
