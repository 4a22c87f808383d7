# An office inkjet: print jobs with a workday rhythm, ink used per colour, cartridges changed
# some time after they run low, and the power draw of each state. HOST-ONLY (CPython).
#
# Sensors it drives: every level sensor named ink_<colour> (%; "k" is black), every power meter
# quantity (INA219 power on the 12 V rail, a PZEM-004T energy counter, ...), and, when the profile
# also has an HX711 pill count (examples/reference-printer.yaml), a pill bottle model on it.
#
# Per printer (drawn once): weekday jobs/day lognormal, median 14 (sigma 0.6: a quiet office to a
# busy one, about 4-45); weekend days 0-12 % of that; 60 % of jobs black only; pages per job
# 1 + geometric (mean 4, at most 60); ink per page: black-only pages 0.10-0.14 % of the black
# cartridge x U(0.5, 1.5), colour pages 0.05 % black and 0.08 % x U(0.3, 1.7) of each of c, m, y
# (so black lasts ~2-3 weeks and colours ~5 in a median office).
# Arrivals: jobs come in bursts (1 + geometric, mean 1.3 more; 10-90 s apart) whose start hour
# follows a weekday office curve (07-08 rising, 08-12 busy with a 10:00 peak, 12-13 lunch dip,
# 13-17 busy, 17-20 tailing, 0.5 % of the peak at night); at weekends a flatter curve.
# Power: asleep 1.0 W (+-0.05), idle 3.5 W (+-0.15), waking 30 s at 18 W, printing 28 W
# (+-1.5 W) for 8 s + 4 s a page (6 s for colour). The printer wakes on a job, and on weekdays
# at its scheduled wake time (07:00-08:00), and sleeps after 60 min without a job. The first wake
# of a day runs a head cleaning (60 s at 20 W, 0.15-0.35 % of each colour). Nights and weekends
# are therefore flat, days fall in steps.
# Cartridges: 70 % of printers (drawn once) are used until a colour runs dry: the user changes it
# after a lognormal delay from the moment it ran dry (median 18 h, sigma 1.0: the new cartridge
# was already there, or a few days' delivery), moved into office hours. At the others the user
# sees the colour fall below the profile's ink_low threshold (15 % unless the profile says
# otherwise) and changes it after a lognormal delay (median 20 h, sigma 0.9: a few hours to a few
# days), moved into office hours; should it run dry before, it waits at 0 % all the same. The new
# cartridge reads 96-100 % after 90 s of priming at 20 W. An empty colour stays at 0 % until it is
# changed (the printer keeps printing the others). A cartridge already low at the start is
# changed the same way. Level readings carry +-0.1 % probe noise, clamped to 0-100.
#
# Truth: print_jobs [(start_ms, end_ms, pages, colour)], ink_low [(t_ms, sensor)],
# ink_empty [(t_ms, sensor)] (a cartridge reached 0 %), cartridge_changes [(t_ms, sensor)],
# ink_start [(start_ms, sensor, level)] (the cartridges in place when the run began),
# cleanings [t_ms], degrading False; plus the pill bottle's.
import heapq
import math
import random

from simulator.models.base import (DAY_MS, HOUR_MS, MINUTE_MS, Meter, Model, PowerTrace,
                                   slot_ms_for, weekday)

SLEEP_W, IDLE_W, WAKE_W, PRINT_W, SERVICE_W = 1.0, 3.5, 18.0, 28.0, 20.0
SLEEP_AFTER_MS = 60 * MINUTE_MS
WAKE_MS = 30000
CLEAN_MS = 60000
PRIME_MS = 90000
DEFAULT_INK_LOW = 15.0
RUN_DRY_SHARE = 0.7
PROBE_NOISE = 0.1
# Relative job arrival rate per hour of a weekday (local time).
WEEKDAY_HOURS = (0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.03, 0.3, 0.8, 1.0, 1.2, 1.0,
                 0.5, 0.9, 1.0, 0.9, 0.8, 0.5, 0.2, 0.1, 0.04, 0.015, 0.01, 0.005)
WEEKEND_HOURS = (0.005, 0.005, 0.005, 0.005, 0.005, 0.005, 0.01, 0.05, 0.2, 0.5, 0.7, 0.7,
                 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.04, 0.01, 0.005)


def _cumulative(weights):
    total = float(sum(weights))
    out, acc = [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    return out


_WEEKDAY_CDF = _cumulative(WEEKDAY_HOURS)
_WEEKEND_CDF = _cumulative(WEEKEND_HOURS)


def _pick_hour(rng, cdf):
    x = rng.random()
    for h, c in enumerate(cdf):
        if x < c:
            return h
    return 23


def office_time(rng, t_ms):
    """t_ms if it is in office hours (weekdays 08:00-18:00), else the next weekday morning."""
    tod = t_ms % DAY_MS
    if weekday(t_ms) < 5 and 8 * HOUR_MS <= tod < 18 * HOUR_MS:
        return t_ms
    day = t_ms // DAY_MS + (1 if tod >= 8 * HOUR_MS else 0)
    while weekday(day * DAY_MS) >= 5:
        day += 1
    return day * DAY_MS + 8 * HOUR_MS + int(rng.uniform(0, 150) * MINUTE_MS)


class Printer(Model):
    def __init__(self, profile, rng, start_ms, unit_index=0):
        Model.__init__(self, profile, rng, start_ms, unit_index)
        self.inks = []             # sensor names, in profile order
        for s in profile["sensors"]:
            if s["name"].startswith("ink_") and s["quantity"] == "level":
                self.inks.append(s["name"])
        if not self.inks:
            raise ValueError("a printer profile needs ink_* level sensors")
        self.black = [n[4:] in ("k", "bk", "black") for n in self.inks]
        self.ink_low = []
        for s in profile["sensors"]:
            if s["name"] in self.inks:
                low = DEFAULT_INK_LOW
                for th in s.get("thresholds", []):
                    if "below" in th:
                        low = float(th["below"])
                self.ink_low.append(low)
        pills = None
        for s in profile["sensors"]:
            if s["driver"] == "hx711" and s["quantity"] == "count":
                pills = s
        # Per printer.
        self.jobs_per_day = math.exp(rng.gauss(math.log(14), 0.6))
        self.weekend = rng.uniform(0.0, 0.12)
        self.wake_tod = int(rng.uniform(7 * 60, 8 * 60)) * MINUTE_MS
        self.mono_page = rng.uniform(0.10, 0.14)
        self.idle_w = IDLE_W * rng.uniform(0.95, 1.05)
        self.print_w = PRINT_W * rng.uniform(0.95, 1.05)
        self.truth = {"print_jobs": [], "ink_low": [], "ink_empty": [], "cartridge_changes": [],
                      "ink_start": [], "cleanings": [], "degrading": False}
        # Ink state: levels as planned so far, and the replacements waiting for the user.
        self.plan_levels = [rng.uniform(5.0, 100.0) for _ in self.inks]
        self.replace_at = [None] * len(self.inks)
        self.ink_events = []       # (start, end, levels before, levels after), in time order
        self.ink_i = 0
        self.levels = tuple(self.plan_levels)   # levels after the last finished ink event
        waiting = []               # cartridges low at the start: when a watching user changes them
        for c, level in enumerate(self.plan_levels):
            self.record(start_ms, "ink_start", (start_ms, self.inks[c], level))
            if level < self.ink_low[c]:
                self.record(start_ms, "ink_low", (start_ms, self.inks[c]))
                waiting.append((c, office_time(rng, start_ms + self._delay())))
        # Power state at the end of the plan.
        self.awake = weekday(start_ms) < 5 and self.wake_tod <= start_ms % DAY_MS < 19 * HOUR_MS
        self.last_active = start_ms
        self.cleaned_day = start_ms // DAY_MS if self.awake else None
        self.meter = Meter(profile)
        energy0 = rng.uniform(2000, 60000)
        self.trace = PowerTrace(slot_ms_for(profile), self.plan_next_day, self.noise, start_ms,
                                energy0)
        self.pills = None
        if pills is not None:
            from simulator.models.pill_bottle import PillBottle
            # Its own stream: the two plan their days independently of each other's pace.
            self.pills = PillBottle(profile, random.Random(rng.getrandbits(64)), start_ms,
                                    unit_index)
            self.pills.filled = True    # the printer's sensors are the printer's
            for k, v in self.pills.truth.items():
                if k not in self.truth:
                    self.truth[k] = v
        # Drawn after the pill bottle's seed: how the office treats its ink does not change
        # the patient on the same device.
        self.run_dry = rng.random() < RUN_DRY_SHARE
        if not self.run_dry:
            for c, at in waiting:
                self.replace_at[c] = at
        self._platform = None

    def _delay(self):
        return int(math.exp(self.rng.gauss(math.log(20), 0.9)) * HOUR_MS)

    def _dry_delay(self):
        return int(math.exp(self.rng.gauss(math.log(18), 1.0)) * HOUR_MS)

    # -- planning a day -------------------------------------------------------------------------
    def plan_day(self, day, day0, day1):
        rng = self.rng
        lo = max(day0, self.start_ms)
        weekend = weekday(day0) >= 5
        mean = self.jobs_per_day * (self.weekend if weekend else 1.0)
        mean *= math.exp(rng.gauss(0.0, 0.3))          # busy days and quiet days
        cdf = _WEEKEND_CDF if weekend else _WEEKDAY_CDF
        acts = []   # heap of (t, order, kind, pages, colour)
        n = 0
        count = int(rng.gauss(mean, mean ** 0.5 * 0.8) + 0.5) if mean > 0.5 else (
            1 if rng.random() < mean else 0)
        while n < count:
            t = day0 + _pick_hour(rng, cdf) * HOUR_MS + int(rng.random() * HOUR_MS)
            burst = 1
            while rng.random() < 0.57 and burst < 8:
                burst += 1
            for _ in range(burst):
                pages = 1
                while rng.random() < 0.75 and pages < 60:
                    pages += 1
                colour = rng.random() >= 0.6
                if t >= lo:
                    acts.append((t, n, "job", pages, colour))
                n += 1
                t += int(rng.uniform(10, 90) * 1000)
        if not weekend and day0 + self.wake_tod >= lo:
            acts.append((day0 + self.wake_tod, -1, "wake", 0, False))
        for c, at in enumerate(self.replace_at):
            if at is not None and at < day1:
                acts.append((max(at, lo), -2 - c, "change", c, False))
                self.replace_at[c] = -1      # in this day's heap
        heapq.heapify(acts)
        tr = self.trace
        while acts:
            t, order, kind, a, colour = heapq.heappop(acts)
            if t >= day1:
                if kind == "change":
                    self.replace_at[a] = t
                continue
            t = max(t, tr.end_ms)
            self._rest_until(t)
            if not self.awake:
                tr.emit(t + WAKE_MS, WAKE_W, 0.5, "wake")
                self.awake = True
            t = tr.end_ms
            if self.cleaned_day != day:
                self.cleaned_day = day
                use = [rng.uniform(0.15, 0.35) for _ in self.inks]
                tr.emit(t + CLEAN_MS, SERVICE_W, 0.8, "clean")
                self._use_ink(t, tr.end_ms, use, acts, day1)
                self.record(t, "cleanings", t)
                t = tr.end_ms
            if kind == "job":
                per_page = 6000 if colour else 4000
                tr.emit(t + 8000 + a * per_page, self.print_w, 1.5, "print")
                if colour:
                    use = [a * (0.05 if k else 0.08 * rng.uniform(0.3, 1.7)) for k in self.black]
                else:
                    use = [a * self.mono_page * rng.uniform(0.5, 1.5) if k else 0.0
                           for k in self.black]
                self._use_ink(t, tr.end_ms, use, acts, day1)
                self.record(tr.end_ms, "print_jobs", (t, tr.end_ms, a, colour))
            elif kind == "change":
                tr.emit(t + PRIME_MS, SERVICE_W, 0.8, "prime")
                before = tuple(self.plan_levels)
                self.plan_levels[a] = rng.uniform(96.0, 100.0)
                self.replace_at[a] = None
                self.ink_events.append((tr.end_ms, tr.end_ms, before, tuple(self.plan_levels)))
                self.record(tr.end_ms, "cartridge_changes", (tr.end_ms, self.inks[a]))
            self.last_active = tr.end_ms
        self._rest_until(day1)

    def _rest_until(self, t):
        """Idle, then asleep once SLEEP_AFTER has passed without a job, up to t."""
        tr = self.trace
        if self.awake:
            sleep_at = self.last_active + SLEEP_AFTER_MS
            if sleep_at < t:
                tr.emit(sleep_at, self.idle_w, 0.15, "idle")
                self.awake = False
            else:
                tr.emit(t, self.idle_w, 0.15, "idle")
                return
        tr.emit(t, SLEEP_W, 0.05, "sleep")

    def _use_ink(self, a, b, use, acts, day1):
        before = tuple(self.plan_levels)
        levels = self.plan_levels
        for c, u in enumerate(use):
            old = levels[c]
            new = old - u if old > u else 0.0
            levels[c] = new
            low = self.ink_low[c]
            if old >= low > new:
                cross = a + int((b - a) * (old - low) / (old - new))
                self.record(cross, "ink_low", (cross, self.inks[c]))
                if self.replace_at[c] is None and not self.run_dry:
                    self._schedule(c, cross + self._delay(), b, acts, day1)
            if old > 0.0 and new == 0.0:
                # The level falls linearly over the job: it reaches 0 at its end.
                self.record(b, "ink_empty", (b, self.inks[c]))
                if self.replace_at[c] is None and self.run_dry:
                    self._schedule(c, b + self._dry_delay(), b, acts, day1)
        self.ink_events.append((a, b, before, tuple(levels)))

    def _schedule(self, c, when, b, acts, day1):
        at = office_time(self.rng, max(when, b))
        if at < day1:
            heapq.heappush(acts, (at, -2 - c, "change", c, False))
            self.replace_at[c] = -1
        else:
            self.replace_at[c] = at

    # -- running --------------------------------------------------------------------------------
    def driven(self):
        return set(self.inks) | self.meter.names | (
            self.pills.driven() if self.pills is not None else set())

    def drive(self, t_ms, platform):
        wh = self.trace.update(t_ms)
        if self.meter.any_power or self.meter.energy:
            self.meter.put(platform, self.trace.value, wh)
        # Ink: the events finished by now, then the one in progress (linear within a job).
        ev = self.ink_events
        i = self.ink_i
        while i < len(ev) and ev[i][1] <= t_ms:
            self.levels = ev[i][3]
            i += 1
        if i > 256:
            del ev[:i]
            i = 0
        self.ink_i = i
        levels = self.levels
        inside = i < len(ev) and ev[i][0] < t_ms
        noise = self.noise
        set_ = platform.set
        for c, name in enumerate(self.inks):
            if inside:
                a, b, before, after = ev[i]
                v = before[c] + (after[c] - before[c]) * (t_ms - a) / (b - a)
            else:
                v = levels[c]
            v += PROBE_NOISE * noise.next()
            set_(name, 0.0 if v < 0.0 else (100.0 if v > 100.0 else v))
        if self.pills is not None:
            self.pills.advance(t_ms, platform)
