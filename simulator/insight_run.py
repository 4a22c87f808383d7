"""Insights against the truth, fast: each unit's appliance model drives its virtual chips, and the
agent's own drivers, sampler and insight detectors read them on a fake clock, as on a device.
Only what an insight never sees is left out: the buffer, the uplink and the sensors without an
insight. bench/insights.py scores fleets of months this way; `tether simulate` scores the same
detectors end to end through the broker and the ingest (simulator/scores). HOST-ONLY (CPython).

    units = run(profile, devices=100, days=30, seed=1)
    units[0].truth, units[0].insights    # [(t, event, sensor, value, fields)], in time order

With direct=True the model's values go straight to the detectors at each sensor's interval,
rounded to its resolution, the profile's min/max applied: no virtual chips, drivers or sampler (a PZEM-004T's Modbus frames
cost 20 us a reading), for fleets of months. The models add their own noise; what is lost is
the chips' faults, which no scenario here injects.
"""
import copy
import random
import time

from agent.clock import FakeClock
from agent.insights import Insights, STATE
from agent.sampler import Sampler, channels
from agent.schema import Schema
from hal.board import drivers
from hal.sim.platform import SimPlatform
from simulator.models import model_for

DAY_MS = 86400000
START_MS = 1767225600000  # 2026-01-01 00:00 UTC, a Thursday


class Unit:
    def __init__(self, device, model, profile):
        self.device = device
        self.model = model
        self.profile = profile       # as provisioned (a patient's own schedule, ...)
        self.insights = []           # (t, event, sensor, value, fields)
        self.readings = 0
        self.state = None            # the detectors' state() at the end

    @property
    def truth(self):
        return self.model.truth


class _Events:
    """Where the detectors' events go: kept, in order."""

    def __init__(self, unit):
        self.unit = unit

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        if state == STATE:
            self.unit.insights.append((t, event, sensor, value, detail))


class _Buffer:
    def __init__(self, unit):
        self.unit = unit

    def set_synced(self, synced):
        pass

    def append(self, t, channel, value):
        self.unit.readings += 1


def provisioned(profile, model):
    """The profile a unit runs: the model's provision() may set what its installer would (a
    patient's own dose times, say)."""
    p = copy.deepcopy(profile)
    provision = getattr(model, "provision", None)
    if provision is not None:
        provision(p)
    return p


class _Values:
    """A platform for direct runs: keeps what the model sets."""

    def __init__(self):
        self.values = {}

    def set(self, sensor, value):
        self.values[sensor] = value


def _run_direct(unit, kept, insights, model, start_ms, end, tap=None):
    plat = _Values()
    sensors = []
    for s in kept["sensors"]:
        m, e = s["resolution"]
        step = m * 10.0 ** e
        f = s.get("filters", {})
        sensors.append([start_ms, s["interval_ms"], s["name"], step, insights.feeder(s["name"]),
                        f.get("min"), f.get("max")])
    advance = model.advance
    values = plat.values
    while True:
        t = min(x[0] for x in sensors)
        if t >= end:
            break
        advance(t, plat)
        for x in sensors:
            if x[0] == t:
                x[0] = t + x[1]
                v = round(values[x[2]] / x[3]) * x[3]
                if (x[5] is not None and v < x[5]) or (x[6] is not None and v > x[6]):
                    continue  # implausible: the sampler would not feed it either
                if tap is not None:
                    tap(x[2], t, v)
                x[4](t, v, True)
                unit.readings += 1


def run_unit(profile, model, device, seed, start_ms, days, direct=False, tap=None):
    """One unit; with direct=True, tap(sensor, t, value) sees every value fed to a detector."""
    p = provisioned(profile, model)
    unit = Unit(device, model, p)
    kept = dict(p, sensors=[s for s in p["sensors"] if "insight" in s])
    if not kept["sensors"]:
        raise ValueError("profile %r has no sensor with an insight" % p["device"].get("id"))
    insights = Insights(_Events(unit), kept["sensors"])
    end = start_ms + days * DAY_MS
    if direct:
        _run_direct(unit, kept, insights, model, start_ms, end, tap)
        unit.state = insights.state()
        return unit
    platform = SimPlatform(p, seed)
    clock = FakeClock(0, start_ms)
    chans = channels(kept, Schema.from_profile(kept), drivers(kept, platform))
    for c in chans:
        c.insight = insights.feeder(c.name)
    sampler = Sampler(clock, _Buffer(unit), None, chans)
    advance = model.advance
    while True:
        t = clock.now()[0]
        if t >= end:
            break
        advance(t, platform)
        clock.advance(max(1, sampler.step()))
    unit.state = insights.state()
    return unit


def run(profile, devices, days, seed=1, start_ms=START_MS, progress=None, direct=False):
    """Units of one compiled profile, each its own model and seed (the fleet's order of seeds),
    run for `days` of device time. progress(i, units, elapsed_s) after each unit."""
    cls = model_for(profile)
    rnd = random.Random(seed)
    units = []
    t0 = time.monotonic()
    for n in range(devices):
        s = rnd.randrange(1 << 30)
        model = cls(profile, random.Random(s), start_ms, n)
        units.append(run_unit(profile, model, "unit-%d" % (n + 1), s, start_ms, days, direct))
        if progress is not None:
            progress(n + 1, devices, time.monotonic() - t0)
    return units
