# The energy insight (agent/insights/__init__.py, docs/insights/energy.md): an appliance's power
# in W becomes its cycles (a wash, a compressor run), its standby, a daily energy report, and
# maintenance_due when a per-cycle feature drifts from the unit's own learned baseline.
#
# A cycle starts at a reading above on_w and ends once readings stay below off_w for end_ms (its
# end is the first of those). Energy is each reading x the time since the previous one (gaps
# over MAX_GAP_MS count nothing: the report says how long they were); readings below off_w are
# standby. A cycle with such a gap (a reboot, a power cut) is sent marked, with no feature; one
# that was seen falling, or is below off_w after the gap, ended at the last reading before it.
#
# Maintenance: the watched feature of each cycle, or the median of every `batch` cycles' (a
# chart point); the first `learn` points give the baseline of the watched feature (median, and a
# spread from the median absolute deviation, never under FLOOR of the median: a healthy motor
# varies that much from cycle to cycle whatever a few cycles showed). Then each cycle's z score
# in the failing direction, clipped to +-Z_CLIP so that one odd cycle weighs little, feeds a
# one-sided CUSUM: S = max(0, S + z - k), maintenance_due when S reaches h. A spike adds at most
# Z_CLIP - k; a drift of more than k spreads a cycle adds up. Raised once; ack() (serviced)
# learns a new baseline.
#
# snapshot() / restore() carry all of it across a reboot (agent/insights/__init__.py writes it
# to flash): a short CBOR-able list, checked field by field on the way back in.
#
# Portable: runs on a board as on CPython.
from agent.insights import in_order, short

KIND = "energy"
EVENTS = ("cycle", "energy_report", "maintenance_due")
# Sent once until acknowledged: held by a snooze, sent when it ends.
ONCE = {"maintenance_due": None}

SNAP = 1                # the snapshot's layout: a change makes old ones fail restore()
DAY_MS = 86400000
MAX_GAP_MS = 600000
# Its sensor's longest interval: a gap over MAX_GAP_MS counts no energy, so readings further
# apart than that made every report 0 kWh and every cycle a gap (a missed reading is allowed).
MAX_INTERVAL_MS = MAX_GAP_MS // 2
FLOOR = 0.03
Z_CLIP = 3.0
STEADY = 8          # in-band readings with no pause: the drum has stopped reversing (drain, spin)
MIN_REVERSALS = 5
EWMA = 0.2
# Which way a feature moves when the motor wears: energy, peak power and reversal spikes grow,
# a compressor's cooling capacity falls.
UP = {"energy": 1, "peak": 1, "reversal": 1, "capacity": -1}
SETTINGS = (("tariff", "tariff"), ("currency", "currency"), ("grid_intensity", "co2_g_per_kwh"),
            ("cycle_above", "on_w"), ("standby_below", "off_w"), ("drift_slack", "drift_k"),
            ("drift_limit", "drift_h"), ("utc_offset_min", "utc_offset_min"))
# The largest value each number takes, in the profile and by set(): a tariff of 1e308 priced a
# day at infinity. A slack of Z_CLIP or more is refused too: no cycle could add to the sum, and
# maintenance_due would never come.
MOST = {"tariff": 1000000, "grid_intensity": 10000, "cycle_above": 1000000,
        "standby_below": 1000000, "drift_limit": 1000}


def _median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _number(key, v, positive):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and (
            v != v or v in (float("inf"), float("-inf"))):  # MicroPython: 2**1100 == inf
        raise ValueError("%s: expected a number, got %s" % (key, short(v)))
    if v < 0 or (positive and v == 0):
        raise ValueError("%s: expected a number %s 0, got %s"
                         % (key, ">" if positive else ">=", short(v)))
    if key == "drift_slack" and v >= Z_CLIP:
        raise ValueError("drift_slack: expected a number under %s (no cycle adds more), got %s"
                         % (Z_CLIP, short(v)))
    if v > MOST.get(key, v):
        raise ValueError("%s: expected a number up to %d, got %s" % (key, MOST[key], short(v)))
    if key == "grid_intensity" and 0 < v < 1:   # no grid runs under 1 g a kWh: kg for g
        raise ValueError("grid_intensity: expected grams of CO2 per kWh (a grid's are 10-1200), "
                         "got %s" % short(v))
    return v + 0    # -0.0 is 0


def _fields(x, spec, what):
    """A copy of list x, checked against spec, a code per item: z a whole number, i one >= 0,
    I one >= 0 or None, n a number, p one >= 0, N one >= 0 or None, b true or false."""
    if not isinstance(x, list) or len(x) != len(spec):
        raise ValueError("snapshot: %s: expected a list of %d, got %s"
                         % (what, len(spec), short(x)))
    for i in range(len(spec)):
        v, c = x[i], spec[i]
        if v is None and c in "IN" or isinstance(v, bool) and c == "b":
            continue
        if isinstance(v, bool) or not (isinstance(v, int) and c in "ziI" or isinstance(
                v, (int, float)) and c in "npN" and v == v and abs(v) != float("inf")) or (
                c not in "zn" and v < 0):
            raise ValueError("snapshot: %s: item %d is %s" % (what, i, short(v)))
    return list(x)


def _points(x, most, what):
    if not isinstance(x, list) or len(x) > most:
        raise ValueError("snapshot: %s: expected a list of at most %d, got %s"
                         % (what, most, short(x)))
    return _fields(x, "n" * len(x), what)


def currency_ok(v):
    """1-8 printable characters: it goes in every report a dashboard shows (the profile's rule
    too, firmware/profile/insights/energy.py)."""
    return shown_ok(v, 8)


def shown_ok(v, most):
    """Text of 1 to `most` printable characters, for a name every event carries to a dashboard:
    control characters (C0, DEL, C1) and the direction marks and overrides that reorder what a
    dashboard shows around them are not."""
    return isinstance(v, str) and 1 <= len(v) <= most and not [
        c for c in v if c < " " or "\x7f" <= c <= "\x9f" or "\u200b" <= c <= "\u200f"
        or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"]


def _setting(key, v):
    if key == "currency":
        if not currency_ok(v):
            raise ValueError("currency: expected a short text like 'EUR', got %s" % short(v))
        return v
    if key == "utc_offset_min":
        # up to 14 h either way, as the profile's device.utc_offset and a pill bottle's
        # set(): a device with a fixed offset has it set by the cloud where clocks change
        if isinstance(v, bool) or not isinstance(v, int) or not -840 <= v <= 840:
            raise ValueError("utc_offset_min: expected whole minutes from -840 to 840 "
                             "(-14:00 to +14:00), got %s" % short(v))
        return v
    return _number(key, v, key in ("cycle_above", "standby_below", "drift_slack",
                                   "drift_limit"))


def single_spike_limit(k):
    """The drift_limit a single odd cycle can reach with slack k: it adds at most Z_CLIP - k."""
    return Z_CLIP - k


class Detector:
    KIND = KIND
    EVENTS = EVENTS
    ONCE = ONCE
    MAX_INTERVAL_MS = MAX_INTERVAL_MS
    SPACED = "counts readings further apart as an outage"

    def __init__(self, cfg, emit):
        self.emit = emit
        self.cfg = cfg            # the profile's settings: set() overrides are what differ
        self.on_w = cfg["on_w"]
        self.off_w = cfg["off_w"]
        self.end_ms = cfg["end_ms"]
        self.tariff = cfg["tariff"]
        self.currency = cfg["currency"]
        self.co2_g_per_kwh = cfg["co2_g_per_kwh"]
        self.drift_k = cfg["drift_k"]
        self.drift_h = cfg["drift_h"]
        self.utc_offset_min = cfg.get("utc_offset_min", 0)
        self.report_ms = self._report_at(self.utc_offset_min)
        # The device's zone (device.timezone): the report follows its summer time by itself,
        # as a set() of utc_offset_min at each change would
        self.zone = None
        if cfg.get("tz"):
            self.zone = __import__("agent.tz", None, None, ("tz",)).Zone(cfg["tz"])
        self.programmes = [(p["name"], p["duration_ms"], p["energy_wh"])
                           for p in cfg["programmes"]]
        self.learn = cfg["learn"]
        self.batch = cfg["batch"]
        self.watch = cfg["watch"]
        self.up = UP[self.watch]
        self.motor_lo = cfg["motor_lo_w"]
        self.motor_hi = cfg["motor_hi_w"]
        self.last_t = None
        # the day's report
        self.day = None
        self.day_since = None
        self.day_ws = 0.0
        self.day_standby_ws = 0.0
        self.day_cycles = 0
        self.day_gap_ms = 0
        # The cost: the day's first priced_ws at the tariffs in force then (cost_ws, in Ws x
        # tariff), the rest at the tariff now. Priced when the tariff changes, not at every
        # reading (a float a reading is a heap object on a board).
        self.day_cost_ws = 0.0
        self.day_priced_ws = 0.0
        # The CO2 as the cost, at the grid intensity in force when the energy was used: an
        # intensity the cloud sets each hour weighed the whole day at the last hour's
        self.day_co2_ws = 0.0
        self.day_weighed_ws = 0.0
        # the cycle under way
        self.start = None
        self.below_since = None
        self.c_ws = 0.0
        self.c_peak = 0.0
        self.c_gap = False
        self.last_end = None
        self.cycles = 0
        self.featureless = 0      # since boot: cycles without a gap that gave no figure
        self._reset_reversals()
        # the maintenance chart
        self._relearn()

    def _report_at(self, utc_offset_min):
        """The report's time of day in UTC ms (may be negative or over a day: taken mod days)."""
        return (self.cfg["report_min"] - utc_offset_min) * 60000

    # -- readings ---------------------------------------------------------------------------
    def feed(self, t, v, synced):
        if v < 0:
            v = 0.0
        prev = self.last_t
        dt = 0 if prev is None else t - prev
        gap_from = None
        if dt < 0 or dt > MAX_GAP_MS:
            if self.start is not None:
                self.c_gap = True
                if dt < 0:
                    self.below_since = None     # the clock set back: time the end afresh
                elif self.below_since is not None:
                    # it had fallen below before the gap: it ended there (what comes after
                    # the gap is another cycle, not this one going on)
                    self._finish(self.below_since, t)
                else:
                    self.below_since = self.last_t    # it may have ended since: last seen on
            self.last_end = None          # the off time before the next cycle is unknown
            if dt > 0:
                gap_from = self.last_t
                self.day_gap_ms += dt
            dt = 0
        self.last_t = t
        if self.day_since is None:
            self.day_since = t
        ws = v * dt / 1000.0          # the energy since the previous reading: its period's
        self.day_ws += ws
        if v < self.off_w:
            self.day_standby_ws += ws
        if synced:
            if self.zone is not None:
                off = self.zone.offset_min(t)
                if off != self.utc_offset_min:
                    self.utc_offset_min = off
                    self.report_ms = self._report_at(off)
            self._report(t, gap_from, prev)
        if self.start is None:
            if v > self.on_w:
                self._begin(t, v, ws)
                self.c_gap = gap_from is not None     # it may have begun during the gap
            return
        if v < self.off_w:
            if self.below_since is None:
                self.below_since = t
            elif t - self.below_since >= self.end_ms:
                self._finish(self.below_since, t)
            return
        self.below_since = None
        self.c_ws += ws
        if v > self.c_peak:
            self.c_peak = v
        if self.watch == "reversal":
            self._reversal(v)

    def _begin(self, t, v, ws):
        self.start = t
        self.below_since = None
        self.c_ws = ws
        self.c_peak = v
        self.c_gap = False
        self._reset_reversals()
        if self.watch == "reversal":
            self._reversal(v)

    # A drum reverses: a pause (below the motor band), a spike (the first reading in the band),
    # turning (the next). Its stretches are broken by the heater (above the band) and by STEADY
    # readings in the band with no pause; the longest stretch of a cycle is its main wash, and
    # its spikes over its turning is a motor's figure that load, programme and water temperature
    # leave alone (both scale with the load; the heater is outside the band).
    def _reset_reversals(self):
        self.r_state = 0        # 0: nothing, 1: after a pause, 2: after a spike
        self.r_spike = 0.0
        self.r_steady = 0
        self.r_s = self.r_t = 0.0
        self.r_n = 0
        self.best_s = self.best_t = 0.0
        self.best_n = 0

    def _end_stretch(self):
        if self.r_n > self.best_n:
            self.best_s, self.best_t, self.best_n = self.r_s, self.r_t, self.r_n
        self.r_s = self.r_t = 0.0
        self.r_n = 0

    def _reversal(self, v):
        if v > self.motor_hi:
            self._end_stretch()
            self.r_state = 0
            self.r_steady = 0
        elif v < self.motor_lo:
            self.r_state = 1
            self.r_steady = 0
        else:
            if self.r_state == 1:
                self.r_spike = v
                self.r_state = 2
            elif self.r_state == 2:
                self.r_s += self.r_spike
                self.r_t += v
                self.r_n += 1
                self.r_state = 0
            self.r_steady += 1
            if self.r_steady == STEADY:
                self._end_stretch()

    def _finish(self, end, t):
        start = self.start
        self.start = None
        self.below_since = None
        self.cycles += 1
        self.day_cycles += 1
        duration = end - start
        wh = self.c_ws / 3600.0
        feature = None
        if not self.c_gap and duration > 0:
            if self.watch == "energy":
                feature = wh
            elif self.watch == "peak":
                feature = self.c_peak
            elif self.watch == "reversal":
                self._end_stretch()
                if self.best_n >= MIN_REVERSALS and self.best_t > 0:
                    feature = self.best_s / self.best_t
            elif self.last_end is not None and start > self.last_end:
                feature = 3600000.0 / duration + 3600000.0 / (start - self.last_end)
        self.last_end = end
        if feature is None and not self.c_gap:
            self.featureless += 1     # a watch that does not fit the appliance shows here
        fields = {"start": start, "end": end, "duration_s": duration // 1000,
                  "energy_wh": round(wh, 2), "peak_w": round(self.c_peak, 1),
                  "programme": self._programme(duration, wh), "watch": self.watch,
                  "feature": None if feature is None else round(feature, 4),
                  "gap": self.c_gap}
        if self.watch == "reversal":
            fields["reversals"] = self.best_n
        if self.batch > 1:      # a chart drawn from the cycles alone groups them as here
            fields["batch"] = self.batch
        self.emit(t, "cycle", round(wh, 2), fields)
        if feature is not None:
            self._batch(t, feature)

    def _programme(self, duration, wh):
        """The nearest signature within 30 % of both duration and energy, or None."""
        best = None
        score = 0.6
        for name, d, e in self.programmes:
            dd = abs(duration / d - 1.0)
            de = abs(wh / e - 1.0)
            if dd <= 0.3 and de <= 0.3 and dd + de < score:
                best, score = name, dd + de
        return best

    # -- maintenance ------------------------------------------------------------------------
    def _relearn(self):
        self.learning = []
        self.batched = []
        self.base = None
        self.spread = None
        self.cusum = 0.0
        self.recent = None
        self.charted = 0
        self.alarmed = False

    def _batch(self, t, x):
        """The chart takes the median of every `batch` cycles' features: a fridge's cycles are
        bent by door openings and the defrost, a day of them is not."""
        if self.batch == 1 and not self.batched:    # (a batch left by a profile of more)
            self._chart(t, x)
            return
        self.batched.append(x)
        if len(self.batched) >= self.batch:
            x = _median(self.batched)
            self.batched = []
            self._chart(t, x)

    def _chart(self, t, x):
        if self.base is None:
            self.learning.append(x)
            if len(self.learning) >= self.learn:
                m = _median(self.learning)
                mad = _median([abs(y - m) for y in self.learning])
                floor = FLOOR * abs(m)
                self.base = m
                self.spread = max(1.4826 * mad, floor, 1e-9)
                self.learning = []
                self.recent = m
            return
        self.charted += 1
        self.recent += EWMA * (x - self.recent)
        z = self.up * (x - self.base) / self.spread
        if z > Z_CLIP:
            z = Z_CLIP
        elif z < -Z_CLIP:
            z = -Z_CLIP
        s = self.cusum + z - self.drift_k
        self.cusum = s if s > 0.0 else 0.0
        if self.cusum >= self.drift_h and not self.alarmed:
            self.alarmed = True
            drift = 100.0 * (self.recent - self.base) / self.base if self.base else 0.0
            self.emit(t, "maintenance_due", round(drift, 1), {
                "watch": self.watch, "baseline": round(self.base, 4),
                "spread": round(self.spread, 4), "recent": round(self.recent, 4),
                "drift_pct": round(drift, 1), "cusum": round(self.cusum, 2),
                "cycles": self.charted, "slack": float(self.drift_k),
                "limit": float(self.drift_h),
                "batch": self.batch})

    # -- the daily report -------------------------------------------------------------------
    def _report(self, t, gap_from, prev):
        day = (t - self.report_ms) // DAY_MS
        if self.day is None:
            self.day = day
            return
        if day <= self.day:
            # a clock set back across the report time (a Pi's saved clock after a power cut,
            # then NTP) reports nothing twice; by more than a day, the time before was wrong
            if day < self.day - 1:
                self.day = day
                self.day_since = t
            return
        # The day it began closes, even when the device was off for days since (the days off
        # have no report: no readings); a gap's part past that is in no period, and the next
        # one begins at t
        until = (self.day + 1) * DAY_MS + self.report_ms
        if gap_from is None and prev is not None and prev > until:
            # an offset the cloud set once the new report time had passed: the day closes
            # now, at the readings it holds, not before them
            until = prev
        over = 0 if gap_from is None else t - max(gap_from, until)
        kwh = self.day_ws / 3.6e6
        self.emit(t, "energy_report", round(kwh, 4), {
            "since": self.day_since, "until": until, "kwh": round(kwh, 4),
            "standby_kwh": round(self.day_standby_ws / 3.6e6, 4), "cycles": self.day_cycles,
            "co2_g": round((self.day_co2_ws + (self.day_ws - self.day_weighed_ws)
                            * self.co2_g_per_kwh) / 3.6e6, 1),
            "cost": round((self.day_cost_ws + (self.day_ws - self.day_priced_ws) * self.tariff)
                          / 3.6e6, 4), "currency": self.currency,
            "missing_s": (self.day_gap_ms - over) // 1000})
        self.day = day
        self.day_since = t
        self.day_ws = self.day_standby_ws = self.day_cost_ws = self.day_priced_ws = 0.0
        self.day_co2_ws = self.day_weighed_ws = 0.0
        self.day_cycles = 0
        self.day_gap_ms = 0

    # -- the cloud --------------------------------------------------------------------------
    def ack(self, event):
        """maintenance_due acknowledged (the unit was serviced): learn its baseline again."""
        if event in (None, "maintenance_due"):
            # with no alarm raised there is nothing to acknowledge: a client's stray ack
            # threw away weeks of learning
            if not self.alarmed:
                return {"relearn": False}
            self._relearn()
            return {"relearn": True}
        return None

    def set(self, args):
        if not isinstance(args, dict) or not args:
            raise ValueError("expected a map of settings (%s)"
                             % ", ".join(k for k, _ in SETTINGS))
        names = dict(SETTINGS)
        new = {}
        relearn = False
        for key in in_order(args):
            if key == "relearn":
                # the unit changed on purpose (a thermostat's differential, a new compressor):
                # its baseline learnt again now, not after a maintenance_due it would raise
                if args[key] is not True:
                    raise ValueError("relearn: expected true, got %s" % short(args[key]))
                relearn = True
                continue
            if key == "utc_offset_min" and self.zone is not None and (
                    args[key] != self.utc_offset_min):    # a settings reply repeats it
                raise ValueError("utc_offset_min: this device keeps its zone's time (%s): the "
                                 "offset follows it" % self.zone.text)
            if key not in names:
                raise ValueError("unknown setting %s (settings: %s; and relearn: true)"
                                 % (short(key), ", ".join(k for k, _ in SETTINGS)))
            new[names[key]] = _setting(key, args[key])
        on_w = new.get("on_w", self.on_w)
        off_w = new.get("off_w", self.off_w)
        if off_w >= on_w:
            raise ValueError("standby_below (%s W) must be under cycle_above (%s W)"
                             % (off_w, on_w))
        k = new.get("drift_k", self.drift_k)
        h = new.get("drift_h", self.drift_h)
        # (a pair only when it is set: a profile compiled before the rule keeps taking tariffs)
        if ("drift_k" in new or "drift_h" in new) and h <= single_spike_limit(k):
            raise ValueError("drift_limit (%s) must be above %.4g, 3 - drift_slack: one odd "
                             "cycle alone would raise maintenance_due"
                             % (h, single_spike_limit(k)))
        if new.get("currency", self.currency) != self.currency:
            # a day's cost is in one currency: the whole day at the new tariff
            self.day_cost_ws = self.day_priced_ws = 0.0
        elif new.get("tariff", self.tariff) != self.tariff:
            # the energy so far at the tariff it was used at; the rest at the new one
            self.day_cost_ws += (self.day_ws - self.day_priced_ws) * self.tariff
            self.day_priced_ws = self.day_ws
        if new.get("co2_g_per_kwh", self.co2_g_per_kwh) != self.co2_g_per_kwh:
            self.day_co2_ws += (self.day_ws - self.day_weighed_ws) * self.co2_g_per_kwh
            self.day_weighed_ws = self.day_ws
        for name in new:
            setattr(self, name, new[name])
        if relearn:
            self._relearn()
        # a new offset moves the report to local time's report_at: the day under way closes
        # at the new one, an hour sooner or later
        self.report_ms = self._report_at(self.utc_offset_min)
        return self.settings()

    def settings(self):
        out = {}
        for key, name in SETTINGS:
            out[key] = getattr(self, name)
        return out

    # -- across a reboot ---------------------------------------------------------------------
    def snapshot(self):
        """Everything needed to go on, as a short list of numbers (docs/insights/energy.md):
        [SNAP, watch, report_ms, settings set() changed {key: [profile's, now]}, last_t,
        cycles, last_end, day, cycle under way or None, chart]."""
        changed = {}
        for key, name in SETTINGS:
            if getattr(self, name) != self.cfg.get(name, 0):
                changed[key] = [self.cfg.get(name, 0), getattr(self, name)]
        cycle = None
        if self.start is not None:
            cycle = [self.start, self.below_since, self.c_ws, self.c_peak, self.c_gap,
                     self.r_state, self.r_spike, self.r_steady, self.r_s, self.r_t, self.r_n,
                     self.best_s, self.best_t, self.best_n]
        return [SNAP, self.watch, self.report_ms, changed, self.last_t, self.cycles,
                self.last_end, [self.day, self.day_since, self.day_ws, self.day_standby_ws,
                                self.day_cycles, self.day_gap_ms, self.day_cost_ws,
                                self.day_priced_ws, self.day_co2_ws, self.day_weighed_ws],
                cycle, [list(self.learning), list(self.batched), self.base, self.spread,
                        self.cusum, self.recent, self.charted, self.alarmed]]

    def restore(self, snap):
        """Go on from a snapshot, on a detector just made from the profile as it is now.
        ValueError, changing nothing, for anything but a snapshot's exact shape and types.
        A setting set() changed stays unless the profile changed it since; a different
        `watch` drops the chart (another figure) and the figure of the cycle under way; a
        different report time starts the report's day again."""
        if not isinstance(snap, list) or len(snap) != 10 or snap[0] != SNAP or not isinstance(
                snap[0], int) or isinstance(snap[0], bool):
            raise ValueError("snapshot: expected a version %d snapshot, got %s"
                             % (SNAP, short(snap)))
        watch = snap[1]
        if not isinstance(watch, str) or watch not in UP:
            raise ValueError("snapshot: unknown watch %s" % short(watch))
        report_ms, last_t, cycles, last_end = _fields([snap[2]] + snap[4:7], "zIiI", "snapshot")
        if not isinstance(snap[3], dict):
            raise ValueError("snapshot: settings: expected a map")
        names = dict(SETTINGS)
        settings = {}
        for key in snap[3]:
            if not isinstance(key, str) or key not in names:
                raise ValueError("snapshot: unknown setting %s" % short(key))
            pair = snap[3][key]
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("snapshot: %s: expected [profile's, set], got %s"
                                 % (key, short(pair)))
            try:
                v = _setting(key, pair[1])
            except ValueError:
                # one an older version took that today's rules refuse (a grid intensity in kg):
                # the profile's stands, and what the insight learnt stays
                continue
            if pair[0] == self.cfg.get(names[key], 0):     # else the profile changed it since
                settings[names[key]] = v
        if settings.get("off_w", self.off_w) >= settings.get("on_w", self.on_w):
            settings.pop("on_w", None)                # the new profile's pair wins
            settings.pop("off_w", None)
        if settings.get("drift_h", self.drift_h) <= single_spike_limit(
                settings.get("drift_k", self.drift_k)):
            settings.pop("drift_k", None)
            settings.pop("drift_h", None)
        # a snapshot from before the day's cost was kept (6 items) prices its day at the tariff,
        # one from before its CO2 was (8) weighs it at the grid intensity
        day = snap[7]
        n = len(day) if isinstance(day, list) and len(day) in (6, 8) else 10
        day = _fields(day, "IIppiipppp"[:n], "day") + [0.0] * (10 - n)
        if day[7] > day[2] or day[9] > day[2]:
            raise ValueError("snapshot: day: more energy priced than used")
        if report_ms != self._report_at(settings.get("utc_offset_min", self.utc_offset_min)):
            day[0] = None
        cycle = snap[8]
        if cycle is not None:
            cycle = _fields(cycle, "iIppbipippippi", "cycle")
            if cycle[5] > 2:
                raise ValueError("snapshot: cycle: no reversal state %s" % short(cycle[5]))
            if watch != self.watch:
                cycle[4] = True             # its figure was gathered for another chart
        chart = snap[9]
        if not isinstance(chart, list) or len(chart) != 8:
            raise ValueError("snapshot: chart: expected a list of 8, got %s" % short(chart))
        learning = _points(chart[0], 200, "learning")
        batched = _points(chart[1], 64, "batch")
        chart = [learning, batched] + _fields(chart[2:], "NNpNib", "chart")
        base, spread, recent = chart[2], chart[3], chart[5]
        if (spread is None) != (base is None) or (recent is None) != (base is None) or (
                base is not None and (learning or spread <= 0)):
            raise ValueError("snapshot: chart: a baseline needs its spread, nothing to learn")
        # all checked: now go on from it
        for name in settings:
            setattr(self, name, settings[name])
        self.report_ms = self._report_at(self.utc_offset_min)
        self.last_t, self.cycles, self.last_end = last_t, cycles, last_end
        (self.day, self.day_since, self.day_ws, self.day_standby_ws, self.day_cycles,
         self.day_gap_ms, self.day_cost_ws, self.day_priced_ws, self.day_co2_ws,
         self.day_weighed_ws) = day
        if cycle is not None:
            (self.start, self.below_since, self.c_ws, self.c_peak, self.c_gap, self.r_state,
             self.r_spike, self.r_steady, self.r_s, self.r_t, self.r_n, self.best_s,
             self.best_t, self.best_n) = cycle
        if watch == self.watch:
            (self.learning, self.batched, self.base, self.spread, self.cusum, self.recent,
             self.charted, self.alarmed) = chart

    def state(self):
        return {"watch": self.watch, "cycles": self.cycles, "featureless": self.featureless,
                "in_cycle": self.start is not None,
                "learned": self.base is not None, "learning": len(self.learning),
                "baseline": self.base, "spread": self.spread, "cusum": round(self.cusum, 2),
                "alarmed": self.alarmed}
