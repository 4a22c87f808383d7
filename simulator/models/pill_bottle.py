# A smart pill bottle on a load cell: a patient takes doses at dose times with realistic adherence,
# handles the bottle in ways that are not doses, and refills come when it runs low or on a
# schedule. HOST-ONLY (CPython).
#
# Sensors it drives: every HX711 sensor of the profile (a pill `count` and/or a `weight` in g,
# the same grams on one load cell); a pill weighs calibration.pill_weight (0.5 g if no sensor
# says). The tare is the empty bottle with its cap on: the bottle (20-40 g) lifted off the scale
# reads minus its own weight (a negative count; a driver that clamps reads 0), and its cap
# (a whole number of pills from 4 to 10, plus 0.3-0.7 of one) set down beside it reads minus the
# cap's weight.
#
# Per patient (drawn once): a regimen of 3 doses a day (08:00 13:00 20:00, 40 %), 2 (08:00 20:00,
# 35 %) or 1 (08:00 or 21:00, 25 %), each time moved by the patient's habit (normal, sigma 25 min,
# within +-60 min); of these only the regimens that keep the insight's windows apart whatever
# the habit (with a window of 3 h: not the 3 doses); 1 pill a dose (75 %) or 2; a pack of 30
# days' supply (rounded up to tens). The profile's own schedule and pills are the bottle's
# defaults, which each patient's replace.
# provision() writes these dose times and pills per dose into the profile's adherence insight,
# as the pharmacy configures the bottle at dispensing.
# Adherence, fleet means in ADHERENCE: of the scheduled doses 10 % late, 7 % missed, the rest on
# time; 2 % are taken twice. Each patient scales late and missed together by U(0.3, 1.7) (some
# patients are careful, some are not) and double by U(0.5, 1.5): the fleet means stay as
# configured.
# Each dose, timed by when the bottle is set back with the pills fewer (W = the insight's window,
# 30 min if none; close = min(dose time + its `late`, next dose time - W), as the detector
# judges): on time = the dose time + normal(0, 10 min) within +-(W - 2 min); late = W + an
# exponential of mean 70 min after it, from W + 2 min to 2 min before close; double = on time,
# then the same dose again 15-120 min later (forgot it was taken). A take lifts the bottle for
# 10-40 s and sets it back with the pills fewer; a patient leaves the cap off after a dose with
# probability U(0, 0.3) (for 1-15 min: the count reads the cap's weight lower until it goes back
# on, and that is still before the window or close ends). A dose that finds fewer pills takes
# what is left, and an empty bottle makes it a missed dose (reason "empty").
# Handling that is no dose, per patient a rate per day drawn once (fleet mean in HANDLING), at
# 07:00-23:00, never within 10 minutes of a take or refill (nor is a refill that close to a
# take): "lift" (off the scale 5-60 s), "shake" (held half on the scale and shaken: readings
# jump by +-40 % of the bottle's weight for 10-60 s), "carry" (off the scale 3-60 min, back with
# the same count), "open" (lifted 5-20 s, then the cap set down beside it for 1-4 min, then back
# on, no pill taken).
# Refills: 60 % of patients refill when the count falls below the profile's refill threshold
# (a `below:` threshold on the count, 7 if none): the pharmacy delivers after a lognormal delay
# (median 18 h, sigma 0.7), in the daytime (09:00-19:00); the others every 28 or 30 days at
# 10:00-12:00, whatever is left, the first one before the starting supply runs out. A refill
# lifts the bottle 60-180 s and pours a pack in (up to 1.6 packs in the bottle, the rest stays
# in the box). Load cell noise on a standing bottle: +-0.02 g (a pill is 0.45 g: counts stay
# whole).
#
# Truth: doses [(t_ms, taken, scheduled_ms, "on_time" | "late" | "double")] (one entry per take,
# t when the bottle is set back; the second take of a double is "double"), missed_doses
# [(scheduled_ms, "forgot" | "empty")], refills [(t_ms, added, count_after)], handling
# [(t_ms, "lift" | "shake" | "carry" | "open" | "cap_off", duration_ms)] ("cap_off" after a
# dose), patient {...}, degrading False.
import heapq
import math

from agent.insights.adherence import early_of, spacing
from simulator.models.base import DAY_MS, HOUR_MS, MINUTE_MS, Model, poisson

ADHERENCE = {"late": 0.10, "missed": 0.07, "double": 0.02}
# Handling events a day, fleet means (each patient draws U(0, 2 x mean)).
HANDLING = {"lift": 0.5, "shake": 0.3, "carry": 0.12, "open": 0.25}
CAP_OFF = 0.15           # fleet mean of the chance the cap stays off after a dose (U(0, 0.3))
REGIMENS = (((8, 13, 20), 0.40), ((8, 20), 0.35), ((8,), 0.15), ((21,), 0.10))
DEFAULT_REFILL_BELOW = 7
DEFAULT_WINDOW_MS = 30 * MINUTE_MS
DEFAULT_LATE_MS = 5 * HOUR_MS
HABIT_MS = 60 * MINUTE_MS    # a patient's dose time is at most this far from the regimen's
MARGIN_MS = 2 * MINUTE_MS    # takes stay this far inside the detector's window and close
QUIET_MS = 10 * MINUTE_MS    # no handling this close to a take or refill
STAND_NOISE_G = 0.02
LIFT_NOISE_G = 0.3

STAND, LIFTED, SHAKEN, CAP_BESIDE = "stand", "lifted", "shaken", "cap_beside"


def daytime(rng, t_ms):
    """t_ms if between 09:00 and 19:00, else the next 09:00-11:00."""
    tod = t_ms % DAY_MS
    if 9 * HOUR_MS <= tod < 19 * HOUR_MS:
        return t_ms
    day = t_ms // DAY_MS + (1 if tod >= 9 * HOUR_MS else 0)
    return day * DAY_MS + 9 * HOUR_MS + int(rng.uniform(0, 120) * MINUTE_MS)


def adherence_of(sensor):
    i = sensor.get("insight")
    return i if i is not None and i.get("type") == "adherence" else None


class PillBottle(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0):
        Model.__init__(self, profile, rng, start_ms, unit_index)
        self.hx = []                # (sensor name, is a count)
        pill = None
        below = None
        window, late, early = DEFAULT_WINDOW_MS, DEFAULT_LATE_MS, 0
        for s in profile["sensors"]:
            if s["driver"] != "hx711":
                continue
            self.hx.append((s["name"], s["quantity"] == "count"))
            if s["quantity"] == "count":
                pill = s.get("calibration", {}).get("pill_weight", pill)
                for th in s.get("thresholds", []):
                    if "below" in th:
                        below = th["below"]
                cfg = adherence_of(s)
                if cfg is not None:
                    window, late = cfg["window_ms"], cfg["late_ms"]
                    early = early_of(cfg["times_min"], window, cfg.get("early_ms", 0))
        if not self.hx:
            raise ValueError("a pill bottle profile needs an hx711 sensor")
        self.pill_g = float(pill) if pill else 0.5
        self.window_ms = window
        self.late_ms = late
        self.early_ms = max(early, window)
        self.refill_below = below if below is not None else DEFAULT_REFILL_BELOW
        # The bottle.
        self.bottle_g = rng.uniform(20, 40)
        self.cap_g = (rng.randint(4, 10) + rng.uniform(0.3, 0.7)) * self.pill_g
        # The patient.
        # Of the regimens, those whose dose times, each moved by up to an hour of habit, keep
        # the profile's windows apart: a pharmacy does not dispense a schedule the bottle
        # refuses (a 3 h window leaves 08:00 and 20:00, or one dose a day).
        fits = [(hours, p) for hours, p in REGIMENS
                if spacing([h * 60 for h in hours], window + HABIT_MS) is None]
        x = rng.random() * sum(p for _, p in fits)
        for hours, p in fits:
            if x < p:
                break
            x -= p
        habit = HABIT_MS // MINUTE_MS
        self.dose_tod = sorted(
            h * HOUR_MS + int(round(max(-habit, min(habit, rng.gauss(0, 25))))) * MINUTE_MS
            for h in hours)
        self.per_dose = 1 if rng.random() < 0.75 else 2
        f = rng.uniform(0.3, 1.7)
        self.p_late = ADHERENCE["late"] * f
        self.p_missed = ADHERENCE["missed"] * f
        self.p_double = ADHERENCE["double"] * rng.uniform(0.5, 1.5)
        self.p_cap_off = rng.uniform(0, 2 * CAP_OFF)
        self.handling = [(kind, rng.uniform(0, 2 * HANDLING[kind])) for kind in sorted(HANDLING)]
        per_day = len(self.dose_tod) * self.per_dose
        self.pack = int(math.ceil(per_day * 30 / 10.0)) * 10
        self.capacity = int(self.pack * 1.6)
        self.refill_every = None if rng.random() < 0.6 else rng.choice((28, 30))
        self.truth = {"doses": [], "missed_doses": [], "refills": [], "handling": [],
                      "degrading": False,
                      "patient": {"dose_times_min": [t // MINUTE_MS for t in self.dose_tod],
                                  "pills_per_dose": self.per_dose,
                                  "refill": ("when low" if self.refill_every is None
                                             else "every %d days" % self.refill_every),
                                  "late": self.p_late, "missed": self.p_missed,
                                  "double": self.p_double, "cap_off": self.p_cap_off,
                                  "handling_per_day": dict(self.handling),
                                  "start_ms": start_ms}}
        # State as planned so far.
        self.plan_count = int(rng.uniform(0.3, 1.0) * self.pack)
        self.truth["patient"]["start_count"] = self.plan_count
        self.refill_pending = False
        self.acts = []              # heap (t, seq, kind, a, b, c)
        self.act_seq = 0
        self.busy_until = start_ms  # the end of the last lift planned
        if self.refill_every is not None:
            # The pharmacy's cycle is in step with the supply: the first refill comes before the
            # bottle runs out.
            left = max(1, min(self.refill_every, self.plan_count // per_day))
            first = (start_ms // DAY_MS + rng.randrange(left)) * DAY_MS
            self._push(first + int(rng.uniform(10, 12) * HOUR_MS), "refill", 0, 0)
        elif self.plan_count < self.refill_below:
            self._order_refill(start_ms)
        self.changes = [(start_ms, self.plan_count, STAND)]   # (t, count, mode)
        self.ch_i = 0
        self.count = self.plan_count
        self.mode = STAND

    @property
    def lifted(self):
        """The scale does not read the bottle's count as it stands (lifted, shaken, cap off)."""
        return self.mode != STAND

    def provision(self, profile):
        """The pharmacy at dispensing: this patient's dose times (local minutes) and pills per
        dose into the adherence insight of the profile's pill count."""
        for s in profile["sensors"]:
            cfg = adherence_of(s) if s["quantity"] == "count" else None
            if cfg is not None:
                off = cfg.get("utc_offset_min", 0)
                cfg["times_min"] = sorted((t // MINUTE_MS + off) % 1440 for t in self.dose_tod)
                cfg["pills"] = self.per_dose

    def _push(self, t, kind, a, b, c=0):
        self.act_seq += 1
        heapq.heappush(self.acts, (t, self.act_seq, kind, a, b, c))

    def _order_refill(self, t):
        self.refill_pending = True
        delay = int(math.exp(self.rng.gauss(math.log(18), 0.7)) * HOUR_MS)
        self._push(daytime(self.rng, t + delay), "refill", 0, 0)

    # -- planning a day -------------------------------------------------------------------------
    def _when(self, sched, nxt, late):
        """(set back, cap off ms, status) of a dose taken on time or late."""
        rng = self.rng
        w = self.window_ms
        cap = int(rng.uniform(1, 15) * MINUTE_MS) if rng.random() < self.p_cap_off else 0
        # where the detector closes it: a late take planned past that was its dose missed
        close = min(sched + self.late_ms, nxt - self.early_ms)
        if late:
            lo, hi = sched + w + MARGIN_MS, close - MARGIN_MS
            if hi - cap < lo:
                cap = 0
            if hi >= lo:
                t = sched + w + int(rng.expovariate(1.0 / 70) * MINUTE_MS)
                return max(lo, min(hi - cap, t)), cap, "late"
        lo, hi = sched - w + MARGIN_MS, sched + w - MARGIN_MS
        if hi - cap < lo:
            cap = 0
        t = sched + int(rng.gauss(0, 10) * MINUTE_MS)
        return max(lo, min(hi - cap, t)), cap, "on_time"

    def plan_day(self, day, day0, day1):
        rng = self.rng
        lo = max(day0, self.start_ms)
        tods = self.dose_tod
        for k, tod in enumerate(tods):
            sched = day0 + tod
            if sched < lo:
                continue
            nxt = (day0 + tods[k + 1]) if k + 1 < len(tods) else (day1 + tods[0])
            x = rng.random()
            if x < self.p_missed:
                self._push(sched, "miss", sched, 0)
                continue
            t, cap, status = self._when(sched, nxt, x < self.p_missed + self.p_late)
            self._push(t, "take", sched, status, cap)
            if status == "on_time" and rng.random() < self.p_double / (1.0 - self.p_missed
                                                                        - self.p_late):
                self._push(t + cap + int(rng.uniform(15, 120) * MINUTE_MS), "take", sched,
                           "double")
        for kind, rate in self.handling:
            for _ in range(poisson(rng, rate)):
                t = max(lo, day0 + int(rng.uniform(7, 23) * HOUR_MS))
                if kind == "lift":
                    d = rng.uniform(5, 60) * 1000
                elif kind == "shake":
                    d = rng.uniform(10, 60) * 1000
                elif kind == "carry":
                    d = rng.uniform(3, 60) * MINUTE_MS
                else:
                    d = rng.uniform(1, 4) * MINUTE_MS
                self._push(t, kind, int(d), int(rng.uniform(5, 20) * 1000))
        acts = self.acts
        while acts and acts[0][0] < day1:
            t, _, kind, a, b, c = heapq.heappop(acts)
            if kind == "miss":
                self.record(a, "missed_doses", (a, "forgot"))
            elif kind == "take":
                self._take(t, a, b, c)
            elif kind == "refill":
                self._refill(t)
            else:
                self._handle(t, kind, a, b)

    def _take(self, t, sched, status, cap):
        lift = int(self.rng.uniform(10, 40) * 1000)
        start = max(t - lift, self.busy_until + 10000)
        back = start + lift
        self.changes.append((start, self.plan_count, LIFTED))
        taken = self.per_dose if self.plan_count >= self.per_dose else self.plan_count
        self.plan_count -= taken
        if taken and cap:
            self.changes.append((back, self.plan_count, CAP_BESIDE))
            self.record(back, "handling", (back, "cap_off", cap))
        self.changes.append((back + (cap if taken else 0), self.plan_count, STAND))
        self.busy_until = back + (cap if taken else 0)
        if taken == 0:
            if status != "double":
                self.record(sched, "missed_doses", (sched, "empty"))
        else:
            self.record(back, "doses", (back, taken, sched, status))
        if (self.plan_count < self.refill_below and self.refill_every is None
                and not self.refill_pending):
            self._order_refill(back)

    def _refill(self, t):
        t = max(t, self.busy_until + QUIET_MS)   # not in the middle of a dose
        lift = int(self.rng.uniform(60, 180) * 1000)
        self.changes.append((t, self.plan_count, LIFTED))
        added = min(self.pack, self.capacity - self.plan_count)
        self.plan_count += added
        self.changes.append((t + lift, self.plan_count, STAND))
        self.busy_until = t + lift
        self.record(t + lift, "refills", (t + lift, added, self.plan_count))
        self.refill_pending = False
        if self.refill_every is not None:
            nxt = (t // DAY_MS + self.refill_every) * DAY_MS
            self._push(nxt + int(self.rng.uniform(10, 12) * HOUR_MS), "refill", 0, 0)

    def _handle(self, t, kind, d, lift):
        """Handling that is no dose, dropped when a take or refill comes too close."""
        end = t + d + (lift if kind == "open" else 0)
        if t < self.busy_until + QUIET_MS or (self.acts and self.acts[0][0] < end + QUIET_MS):
            return
        n = self.plan_count
        ch = self.changes
        if kind == "open":
            ch.append((t, n, LIFTED))
            ch.append((t + lift, n, CAP_BESIDE))
        else:
            ch.append((t, n, SHAKEN if kind == "shake" else LIFTED))
        ch.append((end, n, STAND))
        self.busy_until = end
        self.record(t, "handling", (t, kind, end - t))

    # -- running --------------------------------------------------------------------------------
    def driven(self):
        return {name for name, _ in self.hx}

    def drive(self, t_ms, platform):
        ch = self.changes
        i = self.ch_i
        n = len(ch)
        while i < n and ch[i][0] <= t_ms:
            self.count = ch[i][1]
            self.mode = ch[i][2]
            i += 1
        if i > 256:
            del ch[:i]
            i = 0
        self.ch_i = i
        mode = self.mode
        noise = self.noise.next()
        if mode == STAND:
            grams = self.count * self.pill_g + STAND_NOISE_G * noise
        elif mode == LIFTED:
            grams = -self.bottle_g + LIFT_NOISE_G * noise
        elif mode == SHAKEN:
            grams = self.count * self.pill_g - 0.5 * self.bottle_g + 0.4 * self.bottle_g * noise
        else:
            grams = self.count * self.pill_g - self.cap_g + STAND_NOISE_G * noise
        pill = self.pill_g
        for name, is_count in self.hx:
            platform.set(name, grams / pill if is_count else grams)

