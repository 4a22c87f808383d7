"""`--faults SPEC`: what goes wrong during a simulation, and when.

SPEC is a list of `kind:key=value,...` separated by `;`, for example

    outage:every=1d,for=2h,share=0.3;power:every=3d;restart:count=2;sensor:every=1d,for=1h

| kind | keys (defaults) | what happens |
| --- | --- | --- |
| outage | every (1d), for (1h), share (1), scope (device) | a device's network goes down for `for`, at random times `every` apart on average; `scope=fleet`: the whole fleet at once |
| restart | count (1) | the broker restarts, `count` times spread over the run (only a broker the simulator started) |
| slow | latency (200ms), bandwidth (none, e.g. 20kbps), share (1) | every publish of the affected devices waits for the latency and its bytes at the bandwidth |
| power | every (2d), share (1) | the device loses power: the agent dies, its files stay, it boots again on them |
| erase | every (7d), share (1) | the device's flash is erased and flashed again (`tether flash --firmware`): the agent dies, its buffer goes, it boots on a new one that numbers from 0 under a new store id |
| sensor | every (1d), for (1h), share (1), kind (by driver) | one sensor's chip fails (a NACK, a bad CRC, a disconnected probe...) for `for` |

`share` is the fraction of devices affected (chosen by the run's seed). Times are device time;
`every` is at least 1min. A kind given twice adds its faults to the other's.
"""
import heapq
import random

from firmware.profile.units import parse_duration
from hal import chips
from hal.sim.platform import fault_kinds

KINDS = {
    "outage": {"every": "1d", "for": "1h", "share": "1", "scope": "device"},
    "restart": {"count": "1"},
    "slow": {"latency": "200ms", "bandwidth": None, "share": "1"},
    "power": {"every": "2d", "share": "1"},
    "erase": {"every": "7d", "share": "1"},
    "sensor": {"every": "1d", "for": "1h", "share": "1", "kind": None},
}


class FaultError(ValueError):
    pass


def parse(spec):
    """[(kind, {key: value})] from a SPEC string; FaultError says what is wrong."""
    out = []
    for item in (spec or "").split(";"):
        item = item.strip()
        if not item:
            continue
        kind, _, rest = item.partition(":")
        kind = kind.strip()
        if kind not in KINDS:
            raise FaultError("unknown fault %r (one of %s)" % (kind, ", ".join(sorted(KINDS))))
        opts = dict(KINDS[kind])
        given = set()
        for pair in rest.split(",") if rest.strip() else []:
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq or key not in opts:
                raise FaultError("%s: expected key=value with a key among %s, got %r"
                                 % (kind, ", ".join(sorted(KINDS[kind])), pair.strip()))
            if key in given:    # the last one won, in silence
                raise FaultError("%s: %s given twice" % (kind, key))
            given.add(key)
            opts[key] = value.strip()
        out.append((kind, _typed(kind, opts)))
    return out


def check(faults, profiles):
    """FaultError when a `sensor` fault names a kind no sensor of these compiled profiles has:
    said before the run starts, not when the fault comes."""
    kinds = set()
    for p in profiles:
        for s in p["sensors"]:
            kinds.update(fault_kinds(p, s))
    for kind, o in faults:
        if kind == "sensor" and o["kind"] is not None and o["kind"] not in kinds:
            raise FaultError("sensor: kind=%s: no sensor of the fleet has that fault (theirs: %s)"
                             % (o["kind"], ", ".join(sorted(kinds))))


MIN_EVERY_MS = 60000  # faults closer than that on average drew so many that a run hung


def _duration(kind, key, text):
    ms = parse_duration(text)
    if ms is None or ms <= 0:
        raise FaultError("%s: %s expected a duration like '2h', got %r" % (kind, key, text))
    if key == "every" and ms < MIN_EVERY_MS:
        raise FaultError("%s: every must be at least 1min (faults that often make a run of "
                         "nothing but faults), got %r" % (kind, text))
    return ms


def _typed(kind, opts):
    out = {}
    for key, value in opts.items():
        if value is None:
            out[key] = None
        elif key in ("every", "for", "latency"):
            out[key] = _duration(kind, key, value) if key != "latency" or value != "0" else 0
        elif key == "share":
            try:
                share = float(value)
            except ValueError:
                share = -1
            if not 0 < share <= 1:
                raise FaultError("%s: share expected a fraction from 0 (excluded) to 1, got %r"
                                 % (kind, value))
            out[key] = share
        elif key == "count":
            if not (value.isascii() and value.isdigit()):
                raise FaultError("%s: count expected a whole number, got %r" % (kind, value))
            out[key] = int(value)
        elif key == "bandwidth":
            out[key] = _bandwidth(value)
        elif key == "scope":
            if value not in ("device", "fleet"):
                raise FaultError("%s: scope expected device or fleet, got %r" % (kind, value))
            out[key] = value
        else:
            out[key] = value
    return out


def _bandwidth(text):
    """Bits a second, from '20kbps', '1Mbps' or '9600bps': a positive, finite number (0 meant
    no limit, a NaN a run that never ended) and bits, not bytes ('20KBps' read as kilobits)."""
    units = (("mbps", 1000000), ("kbps", 1000), ("bps", 1))
    for unit, scale in units:
        if text.lower().endswith(unit) and "B" not in text[-len(unit):]:
            try:
                rate = float(text[:-len(unit)]) * scale
            except ValueError:
                break
            if 0 < rate < float("inf"):
                return rate
            break
    raise FaultError("slow: bandwidth expected a rate in bits a second above 0, like '20kbps' "
                     "or '1Mbps', got %r" % text)


class Schedule:
    """The timed fault actions of one run: (t_ms, action, device index or None, details)."""

    def __init__(self, faults, devices, duration_ms, seed):
        rnd = random.Random(seed * 7919 + 17)
        self.actions = []
        self.static = []  # (action, device index, details): applied at the start
        n = len(devices)
        faultable = {}  # (id of a profile, fault kind) -> the sensors that can have it
        for kind, o in faults:
            if kind == "sensor":
                # the share of the devices that have a part that fails so: picked from the
                # whole fleet, a device without one was passed over, and fewer were hit
                capable = [i for i in range(n) if _faultable(faultable, devices[i], o["kind"])]
                chosen = [capable[j] for j in _share(rnd, len(capable), o.get("share", 1))]
            else:
                chosen = _share(rnd, n, o.get("share", 1))
            if kind == "restart":
                for k in range(o["count"]):
                    self._at(duration_ms * (k + 1) // (o["count"] + 1), "restart", None, None)
            elif kind == "slow":
                for i in chosen:
                    self.static.append(("slow", i, (o["latency"], o["bandwidth"])))
            elif kind == "outage" and o["scope"] == "fleet":
                for t in _times(rnd, o["every"], duration_ms):
                    for i in range(n):
                        self._window(t, o["for"], "down", "up", i, None)
            else:
                for i in chosen:
                    for t in _times(rnd, o["every"], duration_ms):
                        if kind == "outage":
                            self._window(t, o["for"], "down", "up", i, None)
                        elif kind == "power":
                            self._at(t, "cut", i, None)
                        elif kind == "erase":
                            self._at(t, "erase", i, None)
                        else:
                            sensors = _faultable(faultable, devices[i], o["kind"])
                            if not sensors:  # this device has no part that fails so
                                break
                            s = sensors[rnd.randrange(len(sensors))]
                            what = o["kind"] or chips.virtual(s["driver"]).FAULT
                            self._window(t, o["for"], "sensor", "sensor_ok", i, (s["name"], what))
        heapq.heapify(self.actions)

    def _at(self, t, action, device, details):
        self.actions.append((t, len(self.actions), action, device, details))

    def _window(self, t, length, start, end, device, details):
        self._at(t, start, device, details)
        self._at(t + length, end, device, details)

    def due(self, t):
        """The actions due by device time t, in order."""
        out = []
        while self.actions and self.actions[0][0] <= t:
            at, _, action, device, details = heapq.heappop(self.actions)
            out.append((at, action, device, details))
        return out


def _faultable(cache, profile, kind):
    """The sensors of a profile that can have the fault `kind` (None: each its chip's own)."""
    key = (id(profile), kind)
    if key not in cache:
        cache[key] = [s for s in profile["sensors"]
                      if kind is None or kind in fault_kinds(profile, s)]
    return cache[key]


def _share(rnd, n, share):
    k = max(1, round(n * share)) if n else 0
    return sorted(rnd.sample(range(n), min(k, n)))


def _times(rnd, every, duration_ms):
    """Random times (a Poisson process with mean gap `every`) within the run."""
    out = []
    t = rnd.expovariate(1.0 / every)
    while t < duration_ms:
        out.append(int(t))
        t += rnd.expovariate(1.0 / every)
    return out
