# Made-up signals for the sensors no appliance model drives: every sensor of a product the
# simulator has no model for (a coffee machine, a freezer with sensors of its own), and those a
# model leaves alone (a weight scale beside a printer's inks). They exercise what does not need a
# model of the appliance: sampling, filters, thresholds, the buffer, the uplink, the ingest, the
# console. There is no truth to score an insight against, so their insights are not scored.
# HOST-ONLY (CPython).
#
# Planned a whole day at a time in steps of one minute, from the model's own rng, as every model
# is (simulator/models/base.py): the same seed gives the same signals at any speed.
# - Power meters (INA219, PZEM-004T): one appliance behind all of them (base.Meter), switched on
#   for 2-30 min at a time, off for 5-90 min, more often in the day (07-22 h) than at night; on
#   at a power drawn once per unit (a PZEM-004T 40-1,500 W; an INA219 on its 12 V rail 30-70 %
#   of what its max_current allows), off at 1-5 % of that. The energy counter is the exact
#   integral of that power.
# - Levels (a level probe, in %): a supply used up at 2-15 % a day (drawn once per unit), mostly
#   in the day, refilled to 95-100 % some 2-48 h after it falls below 5-15 %.
# - Anything else (a weight, a count, a voltage, a temperature): a random walk pulled back to
#   the middle of a range (the quantity's usual one below, stretched past the sensor's
#   thresholds' levels so that each is crossed now and then, within its filters' min and max)
#   over about 6 h, its standard deviation a fifth of the range, clamped inside it; a count in
#   whole steps.
import math
import random

from simulator.models.base import DAY_MS, HOUR_MS, MINUTE_MS, Meter, Model

STEP_MS = MINUTE_MS
STEPS = DAY_MS // STEP_MS
TAU_MS = 6 * HOUR_MS
USUAL = {"weight": (0.0, 1000.0), "count": (0.0, 60.0), "voltage": (0.2, 3.0),
         "level": (0.0, 100.0), "temperature": (15.0, 30.0), "humidity": (30.0, 70.0)}
# what a quantity can be at all
PHYSICAL = {"weight": (0.0, 1e300), "count": (0.0, 1e300), "humidity": (0.0, 100.0)}
INA219_MAX_A = 3.2      # the driver's default calibration
INA219_RAIL_V = 12.0    # base.Meter's rail


def _walk_range(s):
    """(lo, hi) of a sensor's walk: its filters' min and max, else its quantity's usual range,
    inside their outer twentieths (a filter's bounds are often a margin: a scale's -50 g for
    tare drift); then past each threshold's level near it, by a tenth
    of the range, so that it is crossed now and then (a greenhouse's frost below 2 C never was
    in 15-30 C), yet no far one (more than two widths away) drags the walk away from the usual
    values; never past the filters nor what the quantity can be (a humidity of -1 %)."""
    q = s["quantity"]
    f = s.get("filters") or {}
    usual_lo, usual_hi = USUAL.get(q, (0.0, 100.0))
    lo = float(f.get("min", usual_lo))
    hi = float(f.get("max", usual_hi))
    if lo >= hi:    # one bound given, past the usual range's other end: the usual width below it
        if "max" in f:
            lo = hi - (usual_hi - usual_lo)
        else:
            hi = lo + (usual_hi - usual_lo)
    lo, hi = lo + (hi - lo) / 20.0, hi - (hi - lo) / 20.0
    width = hi - lo
    floor, ceiling = PHYSICAL.get(q, (-1e300, 1e300))
    floor = max(floor, float(f.get("min", -1e300)))
    ceiling = min(ceiling, float(f.get("max", 1e300)))
    for th in s.get("thresholds", ()):
        x = th.get("below", th.get("above"))
        if lo - 2 * width <= x <= lo + width / 10.0:
            lo = min(lo, x - width / 10.0)
        if hi - width / 10.0 <= x <= hi + 2 * width:
            hi = max(hi, x + width / 10.0)
    return max(lo, floor), min(hi, ceiling)


def _busy(step):
    """How much of the day's use falls in this minute's hour (07-22 h busy, nights quiet)."""
    return 1.0 if 7 * 60 <= step < 22 * 60 else 0.15


class Signals(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0, only=None):
        """only: the names of the sensors to drive (all the profile's when None)."""
        Model.__init__(self, profile, rng, start_ms, unit_index)
        sensors = [s for s in profile["sensors"] if only is None or s["name"] in only]
        names = {s["name"] for s in sensors}
        self.truth = {"degrading": False}
        self.filled = True      # it is the filler: nothing is left to another
        self.meter = Meter(profile, skip=[s["name"] for s in profile["sensors"]
                                          if s["name"] not in names])
        self.names = set(names)
        on_w = 0.0
        for s in sensors:
            if s["name"] in self.meter.names:
                if s["driver"] == "pzem004t":
                    on_w = max(on_w, rng.uniform(40.0, 1500.0))
                else:
                    amps = (s.get("calibration") or {}).get("max_current", INA219_MAX_A)
                    on_w = max(on_w, INA219_RAIL_V * amps * rng.uniform(0.3, 0.7))
        self.on_w = on_w
        self.off_w = on_w * rng.uniform(0.01, 0.05)
        self.on = False
        self.left = 0           # steps until the power switches
        self.wh = 0.0
        self.levels = []        # [name, level, use a step, refill below, steps to the refill]
        self.walks = []         # [name, value, lo, hi, whole]
        for s in sensors:
            if s["name"] in self.meter.names:
                continue
            q = s["quantity"]
            if q == "level":
                self.levels.append([s["name"], rng.uniform(40.0, 100.0),
                                    rng.uniform(2.0, 15.0) / (STEPS * 0.75),
                                    rng.uniform(5.0, 15.0), None])
                continue
            lo, hi = _walk_range(s)
            self.walks.append([s["name"], rng.uniform(lo, hi), lo, hi, q == "count"])
        self.plans = {}         # day -> {name: [value each step]}, "power": [w], "wh": [wh at start]

    def driven(self):
        return self.names

    def plan_day(self, day, day0, day1):
        rng = self.rng
        for old in [d for d in self.plans if d < day]:     # device time is in this day now
            del self.plans[old]
        plan = {}
        if self.meter.any_power or self.meter.energy:
            watts, whs = [0.0] * STEPS, [0.0] * STEPS
            for i in range(STEPS):
                if self.left <= 0:
                    self.on = not self.on
                    busy = _busy(i)
                    self.left = int(rng.uniform(2, 30)) if self.on else int(
                        rng.uniform(5, 90) / busy)
                self.left -= 1
                w = self.on_w if self.on else self.off_w
                w *= 1.0 + 0.02 * rng.gauss(0.0, 1.0)
                watts[i] = w
                whs[i] = self.wh
                self.wh += w * STEP_MS / 3600000.0
            plan["power"] = watts
            plan["wh"] = whs
        for lv in self.levels:
            name, level, use, below, wait = lv
            out = [0.0] * STEPS
            for i in range(STEPS):
                if wait is not None:
                    wait -= 1
                    if wait <= 0:
                        level, wait = rng.uniform(95.0, 100.0), None
                        below = rng.uniform(5.0, 15.0)
                else:
                    level -= use * _busy(i) * (1.0 + 0.5 * rng.gauss(0.0, 1.0))
                    if level < below:
                        wait = int(rng.uniform(2, 48) * 60)
                level = 0.0 if level < 0.0 else (100.0 if level > 100.0 else level)
                out[i] = level
            lv[1:] = [level, use, below, wait]
            plan[name] = out
        pull = float(STEP_MS) / TAU_MS
        for wk in self.walks:
            name, v, lo, hi, whole = wk
            mid, spread = (lo + hi) / 2.0, (hi - lo) / 5.0 * math.sqrt(2.0 * pull)
            out = [0.0] * STEPS
            for i in range(STEPS):
                v += (mid - v) * pull + spread * rng.gauss(0.0, 1.0)
                v = lo if v < lo else (hi if v > hi else v)
                out[i] = float(round(v)) if whole else v
            wk[1] = v
            plan[name] = out
        self.plans[day] = plan

    def drive(self, t_ms, platform):
        day = t_ms // DAY_MS
        plan = self.plans[day]
        i = (t_ms - day * DAY_MS) // STEP_MS
        if "power" in plan:
            w = plan["power"][i]
            step0 = day * DAY_MS + i * STEP_MS
            self.meter.put(platform, w, plan["wh"][i] + w * (t_ms - step0) / 3600000.0)
        set_ = platform.set
        for lv in self.levels:
            set_(lv[0], plan[lv[0]][i])
        for wk in self.walks:
            set_(wk[0], plan[wk[0]][i])


def filler(model):
    """Signals for the sensors `model` leaves alone (none when it drives them all), on an rng of
    their own: the model's draws, and so its truth at a seed, stay as they were."""
    rest = {s["name"] for s in model.profile["sensors"]} - model.driven()
    if not rest:
        return None
    seed = "%d:%d:%d:%d:%s" % (model.start_ms, model.unit_index, model.seed_key[0],
                               model.seed_key[1], ",".join(sorted(rest)))
    return Signals(model.profile, random.Random(seed), model.start_ms, model.unit_index, rest)
