# The consumable insight (agent/insights/__init__.py, docs/insights/consumable.md): a supply's
# level in % (an ink cartridge's probe) -> its rate of use, the days to empty with an
# uncertainty, one `reorder` per cartridge, `empty` when it runs out, and `cartridge_replaced` on
# the reading that shows a new one.
#
# Points: one every 6 h, the ink used by then (the level's falls summed over cartridges: at a
# swap the level starts again at once, but the office's rate of use carries on), from the median
# of the last three readings (probe noise gone), for the window (56 days: 224 points, 4 bytes
# each). Nothing is kept while a cartridge stands empty, and no pair spans that time (what the
# office used then was never seen).
# Rate: for each 6 h of the week (Monday 06-12, ...), the mean ink used in it over the window;
# the rate is their sum. Every point counts, each 6 h of the week weighs the same however often
# it was seen (a window of 10 days has two Mondays and one Saturday), so the office rhythm
# cancels; a mean of all the weeks is the efficient guess for weeks that vary by chance, which a
# median of overlapping one-week slopes is not (it threw half the information away). A
# one-week stretch that used under a third or over three times the median one (an office closed
# for a week, a one-off print run) is left out, once the points span three weeks. Until there
# is a week and a bit of points, a first cartridge uses pairs a whole number of days apart once
# it has `learn` of points, and their 75th percentile (idle days pull the median down; the
# weekday rate is the safe guess).
# Forecast: the ink left spread over the week as the office used it (the same means: on a
# Friday evening the idle weekend counts first); the band (low, high days) from the 90th and
# 10th percentiles of the one-week slopes. Reorder when the forecast falls to 1.9 x the lead
# time, or 1.6 x while the points span under three weeks: a reorder too late costs a dry
# printer, one too early a cartridge on the shelf or one ordered for nothing, and a rate from a
# week or two is off by up to half either way (docs/insights/consumable.md, Reorder): waiting
# for more weeks costs a few late cartridges but no cartridge ordered a month ahead.
#
# Levels are ints in 0.01 %, rates ints in 0.01 % a week; floats only in the forecast.
# snapshot() / restore() carry all of it across a reboot (agent/insights/__init__.py writes it
# to flash): a short list, the points as differences, checked item by item on the way back in.
# Portable: runs on a board as on CPython.
from array import array

from agent.insights import in_order, short

KIND = "consumable"
EVENTS = ("forecast", "reorder", "empty", "cartridge_replaced")
# Sent once per cartridge: held by a snooze, sent when it ends, unless a new cartridge came first.
ONCE = {"reorder": "cartridge_replaced", "empty": "cartridge_replaced"}
# `empty` sends a reorder a snooze holds first: the ink is needed now.
RELEASE = {"empty": "reorder"}
# A new cartridge: the snoozes of the old one's reorder and empty end with it, and it is never
# held itself (agent/insights/__init__.py).
RENEW = "cartridge_replaced"

SLOT_MS = 6 * 3600000
DAY_MS = 86400000
DAY = 4                 # slots
WEEK = 28               # slots
WEEK_FIT = WEEK + 3     # slots of points before the weekly fit (>= 4 one-week pairs)
MISSING = -1
BACK_MS = 3600000       # a clock set back by more than this past a point starts the points again
START = 1000000         # the ink used at the first reading: noise never takes it below 0
TOP = 30000             # levels are clamped to 0..300 %
LOW_Q = 10              # percentiles of the one-week slopes: the forecast's band
HIGH_Q = 90
RESERVE = 1.9           # reorder at a forecast of 1.9 x the lead time (a weekly fit)
YOUNG = 1.6             # ... 1.6 x while the points span under YOUNG_SLOTS
YOUNG_SLOTS = 3 * WEEK
ODD = 3                 # a one-week stretch under a third or over 3 x the median is left out
COLD_Q = 75             # the rate from less than a week of points
MAX_STEPS = 4           # a cold fit's pairs are at most 4 days apart
STRIDE = 2              # pairs start every 12 h, the newest first (a fit's list stays small)
FILL = 0x3fffffff       # an unused place in the slopes (a MicroPython small int)
# A fall of `swap_jump` or more at one reading is no ink used (no office prints a fifth of a
# cartridge between two readings): a cartridge taken out and put back, a probe's contact. Its
# readings are held back this long; a level back near where it fell from is that cartridge,
# and one that stays is the level (a false `empty`, a false swap and a second reorder came of
# a cartridge reseated).
FALL_HOLD_MS = 3600000
# A level at `empty` is told `empty` once it has been there this many readings (the median
# of three already needs two raw ones), and one that comes back above it by a point (a loose
# contact, a printer that re-measures) goes on being forecast, and is told `empty` again when
# it gets there: two readings of 0 sent `empty` and left the cartridge with no forecast and
# no reorder, for good.
EMPTY_READINGS = 3
BACK = 100              # the 0.01 % above `empty` that a level comes back by
SNAP = 1                # the snapshot's layout: another is refused
MAX_PTS = 224           # points a snapshot may hold: the schema's longest window (56 d)
BIG = 0x7fffffff        # a point's largest value (the ring is of 32-bit ints)
TMAX = 1 << 48          # device ms: a snapshot's times beyond this are nonsense
SETTINGS = {             # key: (smallest, largest, integer)
    "lead_time_ms": (3600000, 90 * DAY_MS, True),
    "forecast_ms": (3600000, 7 * DAY_MS, True),
    "learn_ms": (DAY_MS, 7 * DAY_MS, True),
    "swap_jump": (1, 100, False),
    "empty": (0, 50, False),
}


# set()'s settings as the detector holds them: (attribute, profile key, smallest, largest)
HELD = (("lead_ms", "lead_time_ms", 3600000, 90 * DAY_MS),
        ("forecast_ms", "forecast_ms", 3600000, 7 * DAY_MS),
        ("learn_ms", "learn_ms", DAY_MS, 7 * DAY_MS),
        ("swap", "swap_jump", 100, 10000),
        ("empty", "empty", 0, 5000))


def _held(cfg, key):
    """A profile setting as the detector holds it (swap and empty in 0.01 %, rounded: 1.13 is
    1.12999... as a double, cut to 1.12, and 1.13 in a board's single precision)."""
    return int(round(cfg[key] * 100)) if key in ("swap_jump", "empty") else cfg[key]


def _int(v, lo, hi, what, none=False):
    if v is None and none:
        return v
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError("snapshot: %s: expected a whole number from %d to %d%s, got %s"
                         % (what, lo, hi, " or null" if none else "", short(v)))
    return v


def _bool(v, what):
    if not isinstance(v, bool):
        raise ValueError("snapshot: %s: expected true or false, got %s" % (what, short(v)))
    return v


def _list(v, n, most, what):
    """v if it is a list of n items (of at most `most` when n is None)."""
    if not isinstance(v, list) or (len(v) != n if n is not None else len(v) > most):
        raise ValueError("snapshot: %s: expected a list of %s, got %s"
                         % (what, n if n is not None else "at most %d" % most, short(v)))
    return v


def _pct(v):
    return v / 100.0


def _median3(a, b, c):
    if a > b:
        a, b = b, a
    return a if c < a else (b if c > b else c)


class Detector:
    KIND = KIND
    EVENTS = EVENTS
    ONCE = ONCE
    RELEASE = RELEASE
    RENEW = RENEW

    def __init__(self, cfg, emit):
        self.emit = emit
        self.cfg = cfg            # the profile's settings: set() overrides are what differ
        self.lead_ms = cfg["lead_time_ms"]
        self.forecast_ms = cfg["forecast_ms"]
        self.learn_ms = cfg["learn_ms"]
        self.swap = _held(cfg, "swap_jump")
        self.empty = _held(cfg, "empty")
        self.n = max(WEEK_FIT + 1, cfg["window_ms"] // SLOT_MS)
        self.pts = array("i", [MISSING] * self.n)   # ink used by then, 0.01 %
        # Slopes a fit may see (a weekly one's one-week pairs; a cold one has at most 44).
        self.cap = max(56, (self.n - WEEK + STRIDE) // STRIDE)
        self.slopes = [FILL] * self.cap
        self.r1 = self.r2 = self.level = None   # the last two readings, and the level now
        self.ref = 0               # ink used + level: constant while one cartridge is in
        self.breaks = []           # slots after a cartridge stood empty: no pair spans one
        self.next_slot_t = None    # device time of the next point
        self.slot = None           # the slot of the last point
        self.first = None          # the first slot of the points
        self.fit = None            # (rate, low rate, high rate, points, weekly)
        self.shape = None          # mean ink used in each 6 h of the week (slot % WEEK), or None
        # A weekly fit's sums and counts per 6 h of the week: made once, as `slopes`, so a fit
        # every 6 h leaves no holes in the heap.
        self.acc = array("i", [0] * (2 * WEEK))
        self.forecast = None       # (days, rate) at the last point: for state()
        self.next_forecast = 0
        self.since = None          # device time this cartridge was first seen
        self.reordered = False
        self.ran_out = False
        self.fell_at = None        # when a sudden fall's readings began to be held back
        self.low = 0               # readings at `empty` since the level was last above it
        self.quantum = BIG         # the probe's smallest step seen (0.01 %): 10 % on many

    # -- readings -------------------------------------------------------------------------------
    def feed(self, t, v, synced):
        if v != v:      # no level (a probe not sure of it): read as 0 %, empty then a swap
            return
        lv = int(v * 100 + 0.5) if v > 0 else 0
        if lv > TOP:
            lv = TOP
        if self.level is None:
            self.level = self.r1 = self.r2 = lv
            self.ref = START + lv
            self.since = t
            self._clear(t)
            return
        d = lv - self.r2 if lv > self.r2 else self.r2 - lv
        if 0 < d < self.quantum:
            self.quantum = d
        if lv - self.level >= self.swap:
            self._swap(t, lv)
            return
        if self.level - lv >= self.swap:
            if self.fell_at is None or not 0 <= t - self.fell_at < 2 * FALL_HOLD_MS:
                self.fell_at = t
            if t - self.fell_at < FALL_HOLD_MS:
                return
            self.r1 = self.r2 = lv      # it stayed: the level is what it reads
        self.fell_at = None
        level = self.level = _median3(self.r1, self.r2, lv)
        self.r1, self.r2 = self.r2, lv
        if t >= self.next_slot_t or t < self.next_slot_t - SLOT_MS - BACK_MS:
            self._point(t, level)
        if level >= self.empty + BACK:
            self.low = 0
            self.ran_out = False        # not empty after all (if it was): forecast again
            return
        if level > self.empty:          # a probe's noise about empty: neither way
            return
        self.low += 1
        if not self.ran_out and self.low >= EMPTY_READINGS:
            self.ran_out = True
            self.emit(t, "empty", _pct(level), {"level": _pct(level),
                                                "reordered": self.reordered,
                                                "since": self.since})

    def _swap(self, t, lv):
        """A new cartridge: the level starts again at once, the office's rate of use carries on
        (the ink used goes on from where the old cartridge left it)."""
        old = self.level
        if self.ran_out:
            # What the office used while the cartridge stood empty was never seen.
            floor = self.slot - self.n
            self.breaks = [b for b in self.breaks if b > floor][-3:] + [self.slot + 1]
        self.ref = self.ref - old + lv
        self.level = self.r1 = self.r2 = lv
        self.since = t
        self.reordered = self.ran_out = False
        self.fell_at = None
        self.low = 0
        self.emit(t, "cartridge_replaced", _pct(lv), {"from": _pct(old), "to": _pct(lv)})
        self._judge(t)

    def _clear(self, t):
        pts = self.pts
        for i in range(self.n):
            pts[i] = MISSING
        self.breaks = []
        self.slot = t // SLOT_MS
        self.first = self.slot + 1
        self.next_slot_t = (self.slot + 1) * SLOT_MS

    def _point(self, t, level):
        slot = t // SLOT_MS
        if not 0 <= slot - self.slot < self.n:
            # The clock was set (a first sync, say) or the device was off for the whole window:
            # the points no longer compare with the ones to come.
            self._clear(t)
            return
        self.next_slot_t = (slot + 1) * SLOT_MS
        if self.ran_out:                # an empty cartridge's flat 0 % says nothing of the rate
            return
        pts = self.pts
        n = self.n
        for s in range(self.slot + 1, slot):
            pts[s % n] = MISSING
        pts[slot % n] = self.ref - level
        self.slot = slot
        fit = self._weekly() if slot - self.first >= WEEK_FIT else None
        if fit is not None:
            self.fit = fit
        elif (self.fit is None or not self.fit[4]) and (
                (slot - self.first) * SLOT_MS >= self.learn_ms):
            # No week yet (or none since a cartridge stood empty, with no weekly fit before).
            fit = self._fit(DAY, COLD_Q)
            if fit is not None:
                self.fit = fit
        self._judge(t)

    def _fit(self, step, mid=50, most=MAX_STEPS):
        """(`mid` percentile rate, LOW_Q and HIGH_Q percentiles of the one-step rates, points,
        weekly) over the pairs of points 1 to `most` whole `step`s apart, or None."""
        pts = self.pts
        n = self.n
        last = self.slot
        lo = self._oldest()
        if step == DAY and lo < last - WEEK_FIT + 1:
            lo = last - WEEK_FIT + 1        # a cold fit looks at its last week at most
        breaks = self.breaks
        # One block made with the detector, filled in place: a fit every 6 h allocates
        # nothing big, so the heap does not fragment around the objects made meanwhile.
        slopes = self.slopes
        for i in range(self.cap):
            slopes[i] = FILL
        k = one = 0
        g = step
        while g <= last - lo and g <= most * step:
            for i in range(last - g, lo - 1, -STRIDE):
                a = pts[i % n]
                b = pts[(i + g) % n]
                if a != MISSING and b != MISSING:
                    for br in breaks:
                        if i < br <= i + g:
                            break
                    else:
                        slopes[k] = (b - a) * WEEK // g
                        k += 1
            if g == step:
                one = k
            g += step
        if not one:
            return None
        band = slopes           # how much one week (or day) varies: the one-step slopes
        if one < k:
            band = slopes[:one]
            band.sort()
        slopes.sort()           # the FILLs go last
        k -= 1
        one -= 1
        return (slopes[k * mid // 100], band[one * LOW_Q // 100],
                band[(one * HIGH_Q + 99) // 100], self._points(), step == WEEK)

    def _weekly(self):
        """The weekly fit (rate: the sum of the mean ink used in each 6 h of the week; band:
        the one-week slopes' percentiles), the shape set to those means; or None."""
        fit = self._fit(WEEK, 50, 1)
        if fit is None:
            # Every week broken by a cartridge standing empty (a busy office that runs each one
            # dry in under a week): the means of each 6 h still hold the rate, and the band
            # comes from the daily pairs. It stayed on the cold rule for good, and reordered a
            # few hours before dry or never.
            fit = self._fit(DAY, 50)
            if fit is None:
                return None
        pts = self.pts
        n = self.n
        last = self.slot
        lo = self._oldest()
        breaks = self.breaks
        # One-week stretches (every 12 h) under a third or over 3 x the median one (an office
        # closed for a week, a one-off print run) are left out, with the days around them that
        # share their odd week: (first, end) slots; judged once the points span three weeks.
        # Not with a probe of coarse steps (10 %, 25 %): a week used none of them or one, the
        # weeks of none were all "odd", and the rate from the rest was 1.5 to 3 times the
        # office's, reorders a month and more early.
        odd = ()
        mid = fit[0]
        if last - lo >= 3 * WEEK and mid > 0 and mid >= 2 * self.quantum:
            start = end = -1
            for i in range(lo, last - WEEK + 1, STRIDE):
                a = pts[i % n]
                b = pts[(i + WEEK) % n]
                if a == MISSING or b == MISSING:
                    continue
                for br in breaks:
                    if i < br <= i + WEEK:
                        break
                else:
                    if (b - a) * ODD < mid or b - a > mid * ODD:
                        if i > end:
                            if end >= 0:
                                odd += ((start, end),)
                            start = i
                        end = i + WEEK
            if end >= 0:
                odd += ((start, end),)
        sums = self.acc
        for p in range(2 * WEEK):
            sums[p] = 0
        b = pts[lo % n]
        p = lo % WEEK
        for i in range(lo, last):
            a = b
            b = pts[(i + 1) % n]
            if a != MISSING and b != MISSING and (i + 1) not in breaks:
                for s, e in odd:
                    if s <= i < e:
                        break
                else:
                    sums[p] += b - a
                    sums[WEEK + p] += 1
            p += 1
            if p == WEEK:
                p = 0
        for p in range(WEEK, 2 * WEEK):
            if not sums[p]:     # some 6 h of the week not seen yet (a gap): the median slope
                self.shape = None
                return fit
        rate = used = 0
        for p in range(WEEK):
            m = sums[p] * 100 // sums[WEEK + p]     # the mean, in 0.0001 %
            rate += m
            sums[p] = m if m > 0 else 0             # the shape
            used += sums[p]
        rate = (rate + 50) // 100
        if rate < 1 or not used:
            return None
        shape = self.shape
        if shape is None:
            shape = self.shape = [0] * WEEK
        for p in range(WEEK):
            shape[p] = sums[p]
        return (rate, fit[1], fit[2], fit[3], True)

    def _oldest(self):
        return self.first if self.first > self.slot - self.n + 1 else self.slot - self.n + 1

    def _points(self):
        pts = self.pts
        n = self.n
        return sum(1 for i in range(self._oldest(), self.slot + 1) if pts[i % n] != MISSING)

    def _days(self, left, rate, t):
        """Days until `left` (0.01 %) is used at `rate` (0.01 % a week), spread over the week
        as the office prints."""
        shape = self.shape
        if shape is None or not self.fit[4]:
            return left * 7.0 / rate
        weeks = left // rate
        rest = left - weeks * rate
        total = float(sum(shape))
        slot = t // SLOT_MS
        i = 0
        while i < WEEK:
            c = rate * shape[(slot + i) % WEEK] / total
            if c >= rest:
                return (weeks * WEEK + i + (rest / c if c > 0 else 0.0)) / DAY
            rest -= c
            i += 1
        return (weeks + 1) * 7.0

    # -- forecast, reorder ----------------------------------------------------------------------
    def _judge(self, t):
        fit = self.fit
        self.forecast = None
        if fit is None or fit[0] <= 0 or self.ran_out:
            return
        rate, lo, hi, used, weekly = fit
        left = self.level - self.empty
        if left < 0:
            left = 0
        days = self._days(left, rate, t)
        low = self._days(left, hi, t) if hi > 0 else days   # a band of idle days only
        high = self._days(left, lo, t) if lo > 0 else None
        self.forecast = (days, rate)
        # The band as sent holds the forecast: the rate (means per 6 h of the week) can fall
        # outside the one-week slopes' percentiles when the weeks seen differ much (a busy week
        # then a quiet one). The cold reorder below judges the band's own slow end.
        band_low = low if low <= days else days
        band_high = None if high is None else (high if high >= days else days)
        if t >= self.next_forecast:
            self.next_forecast = t + self.forecast_ms
            self.emit(t, "forecast", round(days, 2), {
                "level": _pct(self.level), "rate_per_day": round(rate / 700.0, 3),
                "low_days": round(band_low, 2),
                "high_days": None if band_high is None else round(band_high, 2),
                "points": used, "weekly": weekly, "since": self.since})
        # A weekly fit: a reserve for the weeks ahead being busier than the ones behind (a
        # smaller one for a young rate, which has as much chance to be too fast). A cold
        # one (a few days' lumpy drops, its rate the busy days'): when the geometric mean of
        # its days and its slow end's falls within the lead time. The slow end alone waited
        # for the first weekly fit with a low cartridge of busy and quiet days, a week late.
        if weekly:
            young = self.slot - self._oldest() + 1 < YOUNG_SLOTS
            soon = days * DAY_MS <= self.lead_ms * (YOUNG if young else RESERVE)
        else:
            soon = band_high is not None and (days * band_high) ** 0.5 * DAY_MS <= self.lead_ms
        if not self.reordered and soon:
            self.reordered = True
            self.emit(t, "reorder", round(days, 2), {
                "days": round(days, 2), "low_days": round(band_low, 2),
                "high_days": None if band_high is None else round(band_high, 2),
                "level": _pct(self.level), "rate_per_day": round(rate / 700.0, 3),
                "lead_days": round(self.lead_ms / DAY_MS, 2), "weekly": weekly,
                "since": self.since})   # the cartridge's: an order system's key for it

    # -- across a reboot ----------------------------------------------------------------------
    def snapshot(self):
        """Everything needed to go on (docs/insights/consumable.md, "Across a reboot"):
        [SNAP, settings set() changed {attribute: [profile's, set]}, level, r1, r2, ref, since,
        reordered, ran out, next forecast, slot, first, next slot's t, breaks, points (each the
        difference from the previous one, null for none), fit, shape, forecast [days, rate]]."""
        changed = {}
        for name, key, lo, hi in HELD:
            if getattr(self, name) != _held(self.cfg, key):
                changed[name] = [_held(self.cfg, key), getattr(self, name)]
        pts = []
        if self.slot is not None:
            ring = self.pts
            prev = 0
            for i in range(self._oldest(), self.slot + 1):
                v = ring[i % self.n]
                if v == MISSING:
                    pts.append(None)
                else:
                    pts.append(v - prev)
                    prev = v
        f = self.forecast
        return [SNAP, changed, self.level, self.r1, self.r2, self.ref, self.since,
                self.reordered, self.ran_out, self.next_forecast, self.slot, self.first,
                self.next_slot_t, list(self.breaks), pts,
                None if self.fit is None else list(self.fit), self.shape,
                None if f is None else [round(f[0], 2), f[1]]]

    def restore(self, snap):
        """Go on from a snapshot, on a detector just made from the profile as it is now.
        ValueError, changing nothing, for anything but a snapshot's exact shape and types. A
        setting set() changed stays unless the profile changed it since; another window keeps
        the newest points that fit in it; the rest applies from the next reading."""
        if not isinstance(snap, list) or len(snap) != 18 or isinstance(snap[0], bool) or (
                snap[0] != SNAP):
            raise ValueError("snapshot: expected a version %d snapshot, got %s"
                             % (SNAP, short(snap)))
        if not isinstance(snap[1], dict):
            raise ValueError("snapshot: settings: expected a map, got %s" % short(snap[1]))
        settings = {}
        for name, key, lo, hi in HELD:
            if name in snap[1]:
                pair = _list(snap[1][name], 2, 0, name)
                v = _int(pair[1], lo, hi, name)
                if pair[0] == _held(self.cfg, key):     # else the profile changed it since
                    settings[name] = v
        if len(snap[1]) != sum(1 for h in HELD if h[0] in snap[1]):
            raise ValueError("snapshot: settings: an unknown one in %s" % short(snap[1]))
        level = _int(snap[2], 0, TOP, "level", True)
        fresh = level is None      # no reading yet: nothing else may be there
        r1 = _int(snap[3], 0, TOP, "r1", fresh)
        r2 = _int(snap[4], 0, TOP, "r2", fresh)
        ref = _int(snap[5], 0, BIG, "ref")
        since = _int(snap[6], 0, TMAX, "since", fresh)
        reordered = _bool(snap[7], "reordered")
        ran_out = _bool(snap[8], "ran out")
        next_forecast = _int(snap[9], 0, TMAX, "next forecast")
        slot = _int(snap[10], 0, TMAX // SLOT_MS, "slot", fresh)
        first = _int(snap[11], 0, TMAX // SLOT_MS, "first", fresh)
        next_slot_t = _int(snap[12], 0, TMAX, "next slot", fresh)
        if fresh and (r1, r2, since, slot, first, next_slot_t) != (None,) * 6:
            raise ValueError("snapshot: readings without a level")
        if not fresh and (first > slot + 1 or next_slot_t < (slot + 1) * SLOT_MS):
            raise ValueError("snapshot: slot %d, first %d, next at %d do not go together"
                             % (slot, first, next_slot_t))
        breaks = [_int(b, 0, (slot or 0) + 1, "break")
                  for b in _list(snap[13], None, 4, "breaks")]
        deltas = _list(snap[14], None, MAX_PTS, "points")
        if deltas and (fresh or len(deltas) > slot - first + 1):
            raise ValueError("snapshot: points: %d before the first slot" % len(deltas))
        pts = array("i", self.pts)      # a copy of the fresh ring: no list of n on the heap
        v = 0
        skip = len(deltas) - self.n     # a shorter window now: its newest points
        oldest = (slot or 0) - len(deltas) + 1
        for i in range(len(deltas)):
            d = deltas[i]
            if d is not None:
                v = _int(v + _int(d, -BIG, BIG, "point"), 0, BIG, "point")
                if i >= skip:
                    pts[(oldest + i) % self.n] = v
        fit = snap[15]
        if fit is not None:
            fit = list(_list(fit, 5, 0, "fit"))
            for i in range(3):
                _int(fit[i], -BIG, BIG, "fit's rate")
            _int(fit[3], 0, BIG, "fit's points")
            _bool(fit[4], "fit's weekly")
            if fit[1] > fit[2]:
                raise ValueError("snapshot: fit: a band from %d down to %d" % (fit[1], fit[2]))
            fit = tuple(fit)
        shape = snap[16]
        if shape is not None:
            shape = [_int(x, 0, BIG, "shape") for x in _list(shape, WEEK, 0, "shape")]
            if not sum(shape):
                raise ValueError("snapshot: shape: no ink used in any 6 h")
        f = snap[17]
        if f is not None:
            _list(f, 2, 0, "forecast")
            if isinstance(f[0], bool) or not isinstance(f[0], (int, float)) or not (
                    0 <= f[0] < 1e9):
                raise ValueError("snapshot: forecast: days %s" % short(f[0]))
            f = (f[0], _int(f[1], 1, BIG, "forecast's rate"))
        # all checked: now go on from it
        for name in settings:
            setattr(self, name, settings[name])
        self.level, self.r1, self.r2, self.ref, self.since = level, r1, r2, ref, since
        self.reordered, self.ran_out, self.next_forecast = reordered, ran_out, next_forecast
        self.slot, self.first, self.next_slot_t = slot, first, next_slot_t
        self.breaks, self.pts, self.fit, self.shape, self.forecast = breaks, pts, fit, shape, f

    # -- downlink, diag -------------------------------------------------------------------------
    def ack(self, event):
        return {"since": self.since, "reordered": self.reordered, "empty": self.ran_out}

    def settings(self):
        return {"lead_time_ms": self.lead_ms, "forecast_ms": self.forecast_ms,
                "learn_ms": self.learn_ms, "swap_jump": _pct(self.swap),
                "empty": _pct(self.empty)}

    def set(self, args):
        if not isinstance(args, dict) or not args:
            raise ValueError("consumable settings: expected a map of one or more of %s"
                             % ", ".join(sorted(SETTINGS)))
        new = {}
        for key in in_order(args):
            rule = SETTINGS.get(key) if isinstance(key, str) else None
            if rule is None:
                raise ValueError("consumable settings: unknown key %s (known: %s)"
                                 % (short(key), ", ".join(sorted(SETTINGS))))
            v = args[key]
            lo, hi, whole = rule
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                    whole and not isinstance(v, int)) or not lo <= v <= hi:
                raise ValueError("consumable settings: %s must be %s from %s to %s, not %s"
                                 % (key, "an integer" if whole else "a number", lo, hi, short(v)))
            new[key] = v
        if "lead_time_ms" in new:
            self.lead_ms = new["lead_time_ms"]
        if "forecast_ms" in new:
            self.forecast_ms = new["forecast_ms"]
        if "learn_ms" in new:
            self.learn_ms = new["learn_ms"]
        if "swap_jump" in new:
            self.swap = _held(new, "swap_jump")
        if "empty" in new:
            self.empty = _held(new, "empty")
        return self.settings()

    def state(self):
        f = self.forecast
        return {"level": None if self.level is None else _pct(self.level),
                "since": self.since, "points": 0 if self.slot is None else self._points(),
                "rate_per_day": None if f is None else round(f[1] / 700.0, 3),
                "days": None if f is None else round(f[0], 2),
                "reordered": self.reordered, "empty": self.ran_out}
