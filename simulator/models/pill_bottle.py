# A smart pill bottle on a load cell: a patient takes doses at dose times with realistic adherence,
# the bottle is lifted while a dose is taken, and refills come when it runs low or on a schedule.
# HOST-ONLY (CPython).
#
# Sensors it drives: every HX711 sensor of the profile (a pill `count` and/or a `weight` in g,
# the same grams on one load cell); a pill weighs calibration.pill_weight (0.5 g if no sensor
# says).
#
# Per patient (drawn once): a regimen of 3 doses a day (08:00 13:00 20:00, 40 %), 2 (08:00 20:00,
# 35 %) or 1 (08:00 or 21:00, 25 %), each time moved by the patient's habit (normal, sigma 25 min,
# within +-60 min); 1 pill a dose (75 %) or 2; a pack of 30 days' supply (rounded up to tens).
# Adherence, fleet means in ADHERENCE: of the scheduled doses 10 % late, 7 % missed, the rest on
# time; 2 % are taken twice. Each patient scales late and missed together by U(0.3, 1.7) (some
# patients are careful, some are not) and double by U(0.5, 1.5): the fleet means stay as
# configured.
# Each dose: on time = the dose time + normal(0, 10 min) within +-30 min; late = 30 min + an
# exponential of mean 70 min after it, at most 5 h and at least 30 min before the next dose;
# double = on time, then the same dose again 15-120 min later (forgot it was taken). A take
# lifts the bottle for 10-40 s (the load cell reads 0 g +- 0.08 g, at most an eighth of a pill:
# the count reads 0) and sets it back with the pills fewer; a dose that finds fewer pills takes
# what is left, and an empty bottle makes it a missed dose (reason "empty").
# Refills: 60 % of patients refill when the count falls below the profile's refill threshold
# (a `below:` threshold on the count, 7 if none): the pharmacy delivers after a lognormal delay
# (median 18 h, sigma 0.7), in the daytime (09:00-19:00); the others every 28 or 30 days at
# 10:00-12:00, whatever is left, the first one before the starting supply runs out. A refill
# lifts the bottle 60-180 s and pours a pack in (up to 1.6 packs in the bottle, the rest stays
# in the box). Load cell noise on a standing bottle: +-0.02 g (a pill is 0.45 g: counts stay
# whole).
#
# Truth: doses [(t_ms, taken, scheduled_ms, "on_time" | "late" | "double")] (one entry per take,
# the second take of a double is "double"), missed_doses [(scheduled_ms, "forgot" | "empty")],
# refills [(t_ms, added, count_after)], patient {...}, degrading False.
import heapq
import math

from simulator.models.base import DAY_MS, HOUR_MS, MINUTE_MS, Model

ADHERENCE = {"late": 0.10, "missed": 0.07, "double": 0.02}
REGIMENS = (((8, 13, 20), 0.40), ((8, 20), 0.35), ((8,), 0.15), ((21,), 0.10))
DEFAULT_REFILL_BELOW = 7
STAND_NOISE_G = 0.02
LIFT_NOISE_G = 0.08


def daytime(rng, t_ms):
    """t_ms if between 09:00 and 19:00, else the next 09:00-11:00."""
    tod = t_ms % DAY_MS
    if 9 * HOUR_MS <= tod < 19 * HOUR_MS:
        return t_ms
    day = t_ms // DAY_MS + (1 if tod >= 9 * HOUR_MS else 0)
    return day * DAY_MS + 9 * HOUR_MS + int(rng.uniform(0, 120) * MINUTE_MS)


class PillBottle(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0):
        Model.__init__(self, profile, rng, start_ms, unit_index)
        self.hx = []                # (sensor name, is a count)
        pill = None
        below = None
        for s in profile["sensors"]:
            if s["driver"] != "hx711":
                continue
            self.hx.append((s["name"], s["quantity"] == "count"))
            if s["quantity"] == "count":
                pill = s.get("calibration", {}).get("pill_weight", pill)
                for th in s.get("thresholds", []):
                    if "below" in th:
                        below = th["below"]
        if not self.hx:
            raise ValueError("a pill bottle profile needs an hx711 sensor")
        self.pill_g = float(pill) if pill else 0.5
        self.lift_noise = min(LIFT_NOISE_G, self.pill_g / 8.0)   # a lifted bottle counts 0
        self.refill_below = below if below is not None else DEFAULT_REFILL_BELOW
        # The patient.
        x = rng.random()
        for hours, p in REGIMENS:
            if x < p:
                break
            x -= p
        self.dose_tod = sorted(h * HOUR_MS + int(round(max(-60.0, min(60.0, rng.gauss(0, 25)))))
                               * MINUTE_MS for h in hours)
        self.per_dose = 1 if rng.random() < 0.75 else 2
        f = rng.uniform(0.3, 1.7)
        self.p_late = ADHERENCE["late"] * f
        self.p_missed = ADHERENCE["missed"] * f
        self.p_double = ADHERENCE["double"] * rng.uniform(0.5, 1.5)
        per_day = len(self.dose_tod) * self.per_dose
        self.pack = int(math.ceil(per_day * 30 / 10.0)) * 10
        self.capacity = int(self.pack * 1.6)
        self.refill_every = None if rng.random() < 0.6 else rng.choice((28, 30))
        self.truth = {"doses": [], "missed_doses": [], "refills": [], "degrading": False,
                      "patient": {"dose_times_min": [t // MINUTE_MS for t in self.dose_tod],
                                  "pills_per_dose": self.per_dose,
                                  "refill": ("when low" if self.refill_every is None
                                             else "every %d days" % self.refill_every),
                                  "late": self.p_late, "missed": self.p_missed,
                                  "double": self.p_double}}
        # State as planned so far.
        self.plan_count = int(rng.uniform(0.3, 1.0) * self.pack)
        self.truth["patient"]["start_count"] = self.plan_count
        self.refill_pending = False
        self.acts = []              # heap (t, seq, kind, a, b)
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
        self.changes = [(start_ms, self.plan_count, False)]   # (t, count, lifted)
        self.ch_i = 0
        self.count = self.plan_count
        self.lifted = False

    def _push(self, t, kind, a, b):
        self.act_seq += 1
        heapq.heappush(self.acts, (t, self.act_seq, kind, a, b))

    def _order_refill(self, t):
        self.refill_pending = True
        delay = int(math.exp(self.rng.gauss(math.log(18), 0.7)) * HOUR_MS)
        self._push(daytime(self.rng, t + delay), "refill", 0, 0)

    # -- planning a day -------------------------------------------------------------------------
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
            elif x < self.p_missed + self.p_late:
                cap = min(5 * HOUR_MS, nxt - sched - 30 * MINUTE_MS)
                late = 30 * MINUTE_MS + int(rng.expovariate(1.0 / 70) * MINUTE_MS)
                self._push(sched + max(30 * MINUTE_MS + 1000, min(late, cap)), "take", sched,
                           "late")
            else:
                t = sched + int(max(-30.0, min(30.0, rng.gauss(0, 10))) * MINUTE_MS)
                self._push(t, "take", sched, "on_time")
                if rng.random() < self.p_double / (1.0 - self.p_missed - self.p_late):
                    self._push(t + int(rng.uniform(15, 120) * MINUTE_MS), "take", sched, "double")
        acts = self.acts
        while acts and acts[0][0] < day1:
            t, _, kind, a, b = heapq.heappop(acts)
            if kind == "miss":
                self.record(a, "missed_doses", (a, "forgot"))
                continue
            t = max(t, self.busy_until + 10000)
            if kind == "take":
                lift = int(rng.uniform(10, 40) * 1000)
                self.changes.append((t, self.plan_count, True))
                taken = self.per_dose if self.plan_count >= self.per_dose else self.plan_count
                self.plan_count -= taken
                self.changes.append((t + lift, self.plan_count, False))
                self.busy_until = t + lift
                if taken == 0:
                    if b != "double":
                        self.record(a, "missed_doses", (a, "empty"))
                else:
                    self.record(t + lift, "doses", (t + lift, taken, a, b))
                if (self.plan_count < self.refill_below and self.refill_every is None
                        and not self.refill_pending):
                    self._order_refill(t + lift)
            else:  # refill
                lift = int(rng.uniform(60, 180) * 1000)
                self.changes.append((t, self.plan_count, True))
                added = min(self.pack, self.capacity - self.plan_count)
                self.plan_count += added
                self.changes.append((t + lift, self.plan_count, False))
                self.busy_until = t + lift
                self.record(t + lift, "refills", (t + lift, added, self.plan_count))
                self.refill_pending = False
                if self.refill_every is not None:
                    nxt = (t // DAY_MS + self.refill_every) * DAY_MS
                    self._push(nxt + int(rng.uniform(10, 12) * HOUR_MS), "refill", 0, 0)

    # -- running --------------------------------------------------------------------------------
    def drive(self, t_ms, platform):
        ch = self.changes
        i = self.ch_i
        n = len(ch)
        while i < n and ch[i][0] <= t_ms:
            self.count = ch[i][1]
            self.lifted = ch[i][2]
            i += 1
        if i > 256:
            del ch[:i]
            i = 0
        self.ch_i = i
        if self.lifted:
            grams = self.lift_noise * self.noise.next()
        else:
            grams = self.count * self.pill_g + STAND_NOISE_G * self.noise.next()
        pill = self.pill_g
        for name, is_count in self.hx:
            platform.set(name, grams / pill if is_count else grams)
