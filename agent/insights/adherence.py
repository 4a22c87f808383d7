# The adherence insight: a pill bottle on a load cell (docs/insights/adherence.md). Doses come
# from stable drops of the pill count, judged against the patient's schedule; refills from rises.
#
# Only a resting bottle counts: a level held for settle_ms, within 0.25 of a whole pill count.
# A lifted bottle reads below the empty bottle (its own weight is in the tare: negative, or 0
# from a driver that clamps; so 0 is "off the scale" unless the bottle held at most one dose),
# a shaken one jumps around, a cap set down beside the bottle takes a few pills' weight off for
# a minute or few: none of these hold a level for settle_ms, so none is a dose. A settled drop of
# more than a dose may be the cap left beside the bottle for longer (after a dose, say): it waits
# up to an hour for the count to come back up; what is then missing was taken, when the lower
# count first showed.
#
# The schedule: slot k is the dose at times_min[k] (local time). A take belongs to the slot whose
# [scheduled - window, close] holds the time its level first showed, where
# close = min(scheduled + late, next scheduled - window) (so slots never overlap); on time within
# the window, late after it. A slot with no take when close + settle has passed is missed (any
# take that started before close has been settled by then). No slot is judged while the clock
# is not synced, nor one that opened before judging started.
#
# snapshot()/restore() carry the state across a reboot: the manager writes the snapshot to flash
# every 15 min and at a clean stop, and restores it into a detector made from the current profile.
#
# Portable: runs on a board as on CPython. State is a few numbers.
from agent.insights import in_order, short

KIND = "adherence"
EVENTS = ("dose_taken", "dose_missed", "extra_dose", "refill_needed", "refilled",
          "dose_incomplete")
# Sent once per supply: held by a snooze, sent when it ends, unless a refill came first.
ONCE = {"refill_needed": "refilled"}

_MIN = 60000
_DAY = 86400000
_WHOLE = 0.25            # pills: a reading farther than this from a whole count is not at rest
_HUGE = 1000000          # pills: beyond this a reading is nonsense, not a count
_GAP_MS = 6 * 3600000    # readings missing longer than this: the slots in between are not judged
_CAP_MS = 3600000        # how long a drop of more than a dose waits for the cap to go back on
_KEYS = ("times_min", "window_ms", "late_ms", "pills", "refill_days", "settle_ms")
_OFFSET = "utc_offset_min"   # set() takes it too: bit len(_KEYS) of `downlinked`
MAX_TIMES = 24           # dose times a day: the profile's, set()'s and a snapshot's limit
_FORMAT = 2              # the snapshot's layout (snapshot() below); 1 (before `away`) restores
_HOLD_MS = 2 * _DAY      # a bottle off the scale longer: the doses it held are judged missed
_TMAX = 1 << 48          # device ms: a snapshot's times beyond this are nonsense


_KNOWN = ("schedule or times_min, window_ms, late_ms, pills, refill_days, settle_ms, "
          "utc_offset_min")


def _settings(cfg, args):
    """The settings cfg would have with args applied; ValueError naming the first bad one."""
    out = {}
    for key in _KEYS:
        out[key] = cfg[key]
    out[_OFFSET] = cfg.get(_OFFSET, 0)
    if not isinstance(args, dict):
        raise ValueError("settings must be a map, got %s" % short(args))
    if "schedule" in args and "times_min" in args:
        raise ValueError("schedule and times_min are one setting: give one of them")
    order = None
    for key in in_order(args):
        if key == "schedule":
            out["times_min"], order = _schedule(args[key])
        elif key == "times_min":
            # settings() names the schedule so: its reply sent back as it is sets the same
            v = args[key]
            if not isinstance(v, list) or not 1 <= len(v) <= MAX_TIMES or not all(
                    isinstance(m, int) and not isinstance(m, bool) and 0 <= m < 1440
                    for m in v):
                raise ValueError("times_min must be a list of minutes of the day (0 to 1439), "
                                 "got %s" % short(v))
            out[key], order = _ascending(v)
        elif key == "early_ms":
            if args[key] != cfg.get(key):
                raise ValueError("early_ms is the profile's `early` (at least the window): a "
                                 "command cannot change it")
        elif key == _OFFSET:
            # -12:00 to +14:00, as the profile's device.utc_offset: daylight saving time
            out[key] = _int(key, args[key], -14 * 60, 14 * 60)
        elif key in _KEYS:
            out[key] = _value(key, args[key])
        else:
            raise ValueError("unknown setting %s (settings: %s)" % (short(key), _KNOWN))
    pills = out["pills"]
    if isinstance(pills, list):
        if order is not None and "pills" not in args:
            raise ValueError("pills is a list, one count per dose time: set the schedule and "
                             "its pills together")
        if len(pills) != len(out["times_min"]):
            raise ValueError("pills as a list gives one count per dose time (%d, got %d)"
                             % (len(out["times_min"]), len(pills)))
        if order is not None:   # in the order the schedule was written
            out["pills"] = [pills[i] for i in order]
    problem = spacing(out["times_min"], out["window_ms"], cfg.get("early_ms", 0))
    if not problem and ("late_ms" in args or "window_ms" in args):
        # (only when set: a profile compiled before the rule still builds its detector)
        problem = lateness(out["late_ms"], out["window_ms"])
    if problem:
        raise ValueError(problem)
    return out


def _whole(v):
    """The whole count a reading is, or None: not at rest, or nonsense (NaN too)."""
    if not -_HUGE < v < _HUGE:   # also True for NaN
        return None
    n = int(v + 0.5) if v >= 0 else -int(0.5 - v)
    if n < 0 or v - n > _WHOLE or n - v > _WHOLE:
        return None
    return n


def lateness(late_ms, window_ms):
    """None, or why late ends a dose before its on-time window does (the profile check shares
    it): a dose taken within its window would be missed."""
    if late_ms < window_ms:
        return ("late (%d min) must be at least the window (%d min): a dose taken within its "
                "window is on time" % (late_ms // _MIN, window_ms // _MIN))
    return None


def _value(key, v, saved=False):
    """A setting other than the schedule, checked against its range (saved: a snapshot's, which
    set() may have taken before its range was the profile's)."""
    if key == "window_ms":
        return _int(key, v, 5 * _MIN, 4 * 60 * _MIN)
    if key == "late_ms":
        return _int(key, v, 10 * _MIN, 12 * 60 * _MIN)
    if key == "pills":     # one count for every dose, or one per dose time (2 at 08:00, 1 at 20:00)
        if isinstance(v, list) and 1 <= len(v) <= MAX_TIMES:
            return [_int("pills item", x, 1, 20) for x in v]
        if isinstance(v, list):
            raise ValueError("pills must be an integer from 1 to 20, or a list of 1 to %d of "
                             "them, got %s" % (MAX_TIMES, short(v)))
        return _int(key, v, 1, 20)
    if key == "settle_ms":
        return _int(key, v, 0, 60 * _MIN)
    # the profile's refill_below: 1h to 60d (a snapshot's: above 0, at most 365, as set() took)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
            0 < v <= 365 if saved else 1 / 24.0 <= v <= 60):
        raise ValueError("refill_days must be a number of days from 0.0417 (1 h) to 60, "
                         "got %s" % short(v))
    return v


def _int(key, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError("%s must be an integer from %d to %d, got %s" % (key, lo, hi, short(v)))
    return v


def _schedule(v):
    """(minutes of the day ascending, the order that sorts the times as written)."""
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_TIMES:
        raise ValueError("schedule must be a list of 1 to %d times like \"08:00\", got %s"
                         % (MAX_TIMES, short(v)))
    out = []
    for s in v:
        # "H:MM" or "HH:MM", digits only, as the profile takes them (int() took " 8" and "+9")
        ok = isinstance(s, str) and len(s) in (4, 5) and s[-3] == ":"
        h = m = -1
        if ok:
            for c in s[:-3] + s[-2:]:
                if not "0" <= c <= "9":
                    ok = False
        if ok:
            h = int(s[:-3])
            m = int(s[-2:])
        if not ok or not (0 <= h <= 23 and 0 <= m <= 59):
            raise ValueError("schedule times must be like \"08:00\" (00:00 to 23:59), got %s"
                             % short(s))
        out.append(h * 60 + m)
    return _ascending(out)


def _ascending(minutes):
    """(the minutes ascending, the order that sorts them as written); ValueError for a time
    given twice, as the profile says it (it was told as two times closer than the window)."""
    order = sorted(range(len(minutes)), key=lambda i: minutes[i])
    out = [minutes[i] for i in order]
    for i in range(1, len(out)):
        if out[i] == out[i - 1]:
            raise ValueError("expected each dose time once, got %02d:%02d twice"
                             % (out[i] // 60, out[i] % 60))
    return out, order


def _times(v):
    """A snapshot's schedule: 1 to 24 minutes of the day, ascending."""
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_TIMES:
        raise ValueError("snapshot: times_min must be a list of 1 to %d minutes of the day"
                         % MAX_TIMES)
    prev = -1
    for m in v:
        _int("snapshot: times_min item", m, prev + 1, 1439)
        prev = m
    return list(v)


def _copy(pills):
    return pills[:] if isinstance(pills, list) else pills


def _count(key, v):
    return None if v is None else _int("snapshot: " + key, v, 0, _HUGE)


def _bool(key, v):
    if v is not True and v is not False:
        raise ValueError("snapshot: %s must be true or false, got %s" % (key, short(v)))
    return v


def _time(key, v):
    return _int("snapshot: " + key, v, 0, _TMAX)


def _next(after, times, off):
    """The first time of `times` (minutes of the local day) after `after` (device ms)."""
    local = after + off
    day0 = local - local % _DAY
    for m in times:
        s = day0 + m * _MIN
        if s > local:
            return s - off
    return day0 + _DAY + times[0] * _MIN - off


def _prev(before, times, off):
    """The last time of `times` before `before` (device ms): each is once in any day before it."""
    s = _next(before - _DAY - 1, times, off)
    n = _next(s, times, off)
    while n < before:
        s, n = n, _next(n, times, off)
    return s


def spacing(times_min, window_ms, early_ms=0):
    """None, or why the schedule's on-time windows would overlap (the profile check shares it):
    a dose's on-time window must end before the next one's opens, early_ms before it."""
    n = len(times_min)
    need = window_ms + (early_ms if early_ms > window_ms else window_ms)
    for i in range(n):
        gap = ((times_min[(i + 1) % n] - times_min[i]) % 1440 if n > 1 else 1440) * _MIN
        if gap < need:
            return ("dose times %02d:%02d and %02d:%02d are closer than %s (%d min): their "
                    "windows would overlap"
                    % (times_min[i] // 60, times_min[i] % 60, times_min[(i + 1) % n] // 60,
                       times_min[(i + 1) % n] % 60, "twice the window" if need == 2 *
                       window_ms else "the window and early", need // _MIN))
    return None


def early_of(times_min, window_ms, early_ms):
    """How early a dose still counts (status early), and so where the dose before it closes:
    the profile's `early`, at least the window, and the window where a downlinked schedule
    leaves no room for it (the simulator's patients and scores use it too)."""
    if early_ms <= window_ms or spacing(times_min, window_ms, early_ms):
        return window_ms
    return early_ms


class Detector:
    KIND = KIND
    EVENTS = EVENTS
    ONCE = ONCE
    SPACED = "dates a dose by the first reading that shows it: a quarter of its window"
    interval_ms = 0     # the sensor's, set by the agent before set(): the window is 4 x it

    def __init__(self, cfg, emit):
        self.emit = emit
        self.cfg = cfg           # the profile's settings, which restore() starts from
        self._apply(_settings(cfg, {}))
        self.downlinked = 0      # bit i: _KEYS[i] was changed by set(), not the profile
        self.ref = None          # the count at rest, as last settled
        self.lvl = None          # the whole count of the current run of resting readings
        self.lvl_t0 = 0          # when that run began
        self.pend_from = None    # the count before a drop of more than a dose, still waiting
        self.pend_t0 = 0
        self.armed = True        # refill_needed not yet sent for this supply
        self.last_t = None
        self.sched = None        # the slot being judged (None: not judging)
        self.done = 0            # the newest dose time given its verdict (taken or missed)
        self.close = 0
        self.taken = False
        self.took = 0            # pills taken for that slot: a dose may come in parts
        self.dose = self.most    # the pills that slot's dose is
        self.taken_t = 0         # when its take first showed
        self.away = None         # the first dose that closed with the bottle off the scale
        self.lost = False        # doses judged missed while it still was: its pills unknown
        self.judge_from = 0
        self.counts = [0, 0, 0, 0]   # taken, missed, extra, refills
        # The device's zone (device.timezone): its offset follows the zone's summer time by
        # itself, as a set() of utc_offset_min at each change would (docs/insights.md)
        self.zone = None
        if cfg.get("tz"):
            self.zone = __import__("agent.tz", None, None, ("tz",)).Zone(cfg["tz"])

    @property
    def MAX_INTERVAL_MS(self):
        return self.window // 4     # the sensor's longest interval, as the profile's

    def _apply(self, s):
        self.times = s["times_min"]
        self.window = s["window_ms"]
        self.early = early_of(self.times, self.window, self.cfg.get("early_ms", 0))
        self.late = s["late_ms"]
        self.pills = s["pills"]  # one count for every dose, or a list: one per dose time
        self.most = max(self.pills) if isinstance(self.pills, list) else self.pills
        self.refill_days = s["refill_days"]
        self.settle = s["settle_ms"]
        self.off = s[_OFFSET] * _MIN

    def set(self, args):
        if isinstance(args, dict) and not args:    # as the other insights: nothing to set
            raise ValueError("expected a map of settings to change (settings: %s)" % _KNOWN)
        if isinstance(args, dict) and self.zone is not None and _OFFSET in args and (
                args[_OFFSET] != self.off // _MIN):    # a settings reply sent back repeats it
            raise ValueError("utc_offset_min: this device keeps its zone's time (%s): the "
                             "offset follows it" % self.zone.text)
        before = self.settings()
        s = _settings(before, args)
        if s["window_ms"] != self.window and s["window_ms"] < 4 * self.interval_ms:
            raise ValueError("window_ms must be at least 4 x the sensor's interval (%d ms): a "
                             "dose is dated by the first reading that shows it"
                             % self.interval_ms)
        slots = (self.times, self.window, self.late, self.off)
        if (s["times_min"], s["window_ms"], s["late_ms"], s[_OFFSET] * _MIN) != slots:
            self._back(None, self.last_t)   # doses held, judged under the old schedule
        self._apply(s)
        changed = [k for k in _KEYS + (_OFFSET,) if s[k] != before[k]]
        if isinstance(s["pills"], list) and ("times_min" in changed or "pills" in changed):
            # pills per dose time go with their times: kept together, or a reboot on another
            # profile gave the pharmacy's times the profile's pills
            changed += ["times_min", "pills"]
        for key in changed:
            # what a command changed outlives a reboot; a settings reply sent back whole
            # changes nothing it repeats (early_ms is only ever repeated)
            self.downlinked |= 1 << (len(_KEYS) if key == _OFFSET else _KEYS.index(key))
        if (self.times, self.window, self.late, self.off) != slots:
            self._reslot()       # the pills, the refill threshold or settle_ms leave the slot
        elif self.sched is not None:
            self.dose = self._dose_of(self.sched)   # its pills may be others now
        return self.settings()

    def _reslot(self):
        """The schedule changed. While a dose's window is open, the new schedule's dose open now
        is judged, taken if the take of the old one falls in its window (the pharmacy moving
        the 08:00 dose to 08:15 at 08:05 does not make the patient take it again; a dose added
        at 11:00 is not taken by the 08:05 take), or if the old dose's time is gone from the
        schedule and the new one's window is open now too (moved: the same dose, also when its
        new window no longer holds the take, as a dose moved an hour for daylight saving time;
        not a dose hours away, which the take did not answer);
        the old dose, if the new schedule closes it before now untaken, is missed; when none is
        open, the next dose time. A dose time already past is not judged again: it was (or was
        judged missed) under the old schedule. Set from the last reading's time: no dose open
        now goes unjudged until the next one."""
        now = self.last_t
        if self.sched is None or now is None:
            return
        old = self.sched
        moved = (old + self.off) % _DAY // _MIN not in self.times
        was_open = old - self.early <= now
        taken, took, taken_t = self.taken and was_open, self.took, self.taken_t
        if was_open:
            start = old if old < now - self.late else now - self.late
            self._slot(_next(start - 1, self.times, self.off))
            while self.close < now:
                if self.sched == old and not taken:
                    self.counts[1] += 1
                    self.done = old
                    self._dose_event(now, "dose_missed", None,
                                     {"scheduled": old, "close": self.close})
                self._slot(_next(self.sched, self.times, self.off))
        else:
            self._slot(_next(now, self.times, self.off))
        if taken and self.sched == old:
            pass      # its time stays: taken, whatever the new window says of its take
        else:
            # A dose time the old schedule judged (the clocks put forward an hour over it, or
            # the dose after it removed, which puts its close later) has its verdict already.
            while self.sched <= self.done:
                self._slot(_next(self.sched, self.times, self.off))
            if not (taken and (moved and self.sched - self.early <= now
                               or self.sched - self.early <= taken_t <= self.close)):
                return
            self.done = self.sched   # the take moved with the dose: judged
        self.taken, self.took, self.taken_t = True, took, taken_t

    def settings(self):
        return {"times_min": self.times, "window_ms": self.window, "late_ms": self.late,
                "pills": _copy(self.pills), "refill_days": self.refill_days,
                "settle_ms": self.settle,
                _OFFSET: self.off // _MIN, "early_ms": self.early}

    def state(self):
        return {"count": self.ref, "scheduled": self.sched, "taken": self.counts[0],
                "missed": self.counts[1], "extra": self.counts[2], "refills": self.counts[3],
                "refill_armed": self.armed}

    # -- across a reboot --------------------------------------------------------------------
    def snapshot(self):
        """What restore() needs to go on: a list of 22 numbers, bools, Nones and short lists
        (the slot's close is not kept: restore works it out from the schedule)."""
        return [_FORMAT, self.times[:], self.window, self.late, _copy(self.pills),
                self.refill_days,
                self.settle, self.downlinked, self.off // _MIN, self.ref, self.lvl, self.lvl_t0,
                self.pend_from, self.pend_t0, self.armed, self.last_t, self.sched, self.taken,
                self.judge_from, self.counts[:], self.away, self.lost]

    def restore(self, snap):
        """Goes on from a snapshot() made before a reboot, on this detector made from the
        current profile. A setting changed by set() keeps its snapshot value, any other takes
        the profile's; the slot being judged is kept only if the schedule (times, window, late,
        utc offset) is the snapshot's. ValueError, changing nothing, for anything unexpected."""
        if not isinstance(snap, list) or len(snap) not in (20, 22):
            raise ValueError("snapshot must be a list of 22 items, got %s"
                             % (type(snap).__name__ if not isinstance(snap, list)
                                else "%d items" % len(snap)))
        if isinstance(snap[0], bool) or not isinstance(snap[0], int) or snap[0] != (
                1 if len(snap) == 20 else _FORMAT):
            raise ValueError("snapshot format %s of %d items, expected %d of 22 (or 1 of 20)"
                             % (short(snap[0]), len(snap), _FORMAT))
        away = None if len(snap) == 20 or snap[20] is None else _time("away", snap[20])
        lost = False if len(snap) == 20 else _bool("lost", snap[21])
        old = {"times_min": _times(snap[1])}
        for i in range(1, 6):
            try:
                old[_KEYS[i]] = _value(_KEYS[i], snap[1 + i], True)
            except ValueError as e:
                raise ValueError("snapshot: %s" % (e,))
        downlinked = _int("snapshot: downlinked", snap[7], 0, (2 << len(_KEYS)) - 1)
        off = _int("snapshot: utc_offset_min", snap[8], -1440, 1440) * _MIN
        ref = _count("ref", snap[9])
        lvl = _count("lvl", snap[10])
        lvl_t0 = _time("lvl_t0", snap[11])
        pend_from = _count("pend_from", snap[12])
        pend_t0 = _time("pend_t0", snap[13])
        armed = _bool("armed", snap[14])
        last_t = None if snap[15] is None else _time("last_t", snap[15])
        sched = None if snap[16] is None else _time("sched", snap[16])
        taken = _bool("taken", snap[17])
        judge_from = _time("judge_from", snap[18])
        counts = snap[19]
        if not isinstance(counts, list) or len(counts) != 4:
            raise ValueError("snapshot: counts must be a list of 4 counters")
        counts = [_int("snapshot: counter", c, 0, 1 << 31) for c in counts]
        if pend_from is not None and (ref is None or ref >= pend_from):
            raise ValueError("snapshot: a drop pending from %s with the count at %s"
                             % (short(pend_from), short(ref)))
        new = {}
        for i in range(len(_KEYS)):
            new[_KEYS[i]] = old[_KEYS[i]] if downlinked >> i & 1 else self.cfg[_KEYS[i]]
        new[_OFFSET] = off // _MIN if downlinked >> len(_KEYS) & 1 else self.off // _MIN
        if self.zone is not None:   # the zone's offset when it stopped, not one set before
            new[_OFFSET] = self.zone.offset_min(last_t) if last_t is not None else off // _MIN
            downlinked &= ~(1 << len(_KEYS))
        problem = spacing(new["times_min"], new["window_ms"], self.cfg.get("early_ms", 0))
        if problem and downlinked & 1 and not downlinked & 2:
            # The pharmacy's schedule against a new profile's window too wide for it: the
            # patient's times stay, with the window they were set under (the snapshot was
            # refused, and the patient judged against the profile's default times).
            new["window_ms"] = old["window_ms"]
            downlinked |= 2
            problem = spacing(new["times_min"], new["window_ms"], self.cfg.get("early_ms", 0))
        if isinstance(new["pills"], list) and len(new["pills"]) != len(new["times_min"]):
            problem = "%d dose times and %d counts of pills" % (len(new["times_min"]),
                                                                 len(new["pills"]))
        if problem:
            raise ValueError("snapshot: its downlinked settings and the profile's clash: "
                             + problem)
        if (new["times_min"] != old["times_min"] or new["window_ms"] != old["window_ms"]
                or new["late_ms"] != old["late_ms"] or off != new[_OFFSET] * _MIN):
            sched = None         # another schedule: judge it from its next slot
        if sched is not None and _next(sched - 1, new["times_min"], off) != sched:
            raise ValueError("snapshot: %s is no dose time of its schedule" % short(sched))
        if away is not None and (sched is None or away >= sched
                                 or _next(away - 1, new["times_min"], off) != away):
            away = None          # held doses of another schedule: not judged
        self._apply(new)
        self.downlinked = downlinked
        self.ref, self.lvl, self.lvl_t0 = ref, lvl, lvl_t0
        self.pend_from, self.pend_t0 = pend_from, pend_t0
        self.armed, self.last_t, self.judge_from, self.counts = armed, last_t, judge_from, counts
        self.sched = None
        self.away, self.lost = away, lost
        if sched is not None:
            self._slot(sched)
            self.taken = taken
            self.took = self.dose if taken else 0   # not kept: a part after a reboot is extra
            self.taken_t = sched                    # nor the take's time: within its window
            # not kept either: the dose before it was judged, and this one if taken
            self.done = sched if taken else _prev(sched, self.times, self.off)

    # -- readings ---------------------------------------------------------------------------
    def feed(self, t, v, synced):
        if synced and self.zone is not None:
            off = self.zone.offset_min(t) * _MIN
            if off != self.off:     # the clocks changed: as a set() of the offset, but doses
                self.off = off      # held while the bottle is off the scale stay held (judged
                self._reslot()      # missed, the pills it came back without answered none)
        if self.last_t is not None and not -_GAP_MS <= t - self.last_t <= _GAP_MS:
            self._back(None, self.last_t)   # doses held are missed, not forgotten
            self.sched = None    # unwatched hours, or a clock set back: judge from the next slot
            self.away = None
            self.lvl = None
        self.last_t = t
        if not synced:
            self._back(None, t)
            self.sched = self.away = None
        elif self.sched is None:
            self.judge_from = t
            self._slot(_next(t + self.early - 1, self.times, self.off))
        n = _whole(v)
        if n == 0 and self.ref is not None and self.ref > self.most:
            n = None
        if n is None:
            self.lvl = None
        elif n != self.lvl:
            self.lvl = n
            self.lvl_t0 = t
        if self.pend_from is not None and t - self.pend_t0 >= _CAP_MS:
            self._resolve(t)
            self._supply(t)
        if n is not None and t - self.lvl_t0 >= self.settle:
            if self.away is not None:
                self._back(n, t)
            elif n != self.ref:
                self._settled(n, t)
        if self.sched is not None:
            limit = t - self.settle
            if self.pend_from is not None and self.pend_t0 < limit:
                limit = self.pend_t0     # its slot waits for it
            self._close_slots(limit, t)

    def held(self, v):
        """What a reading before the clock's sync is held as (agent/insights/early.py): its
        whole count, or NaN off the scale. Held as read, a load cell's noise (a count of a
        thousandth) made every reading a run of its own, and the few runs kept held minutes,
        not the hours before a sync: the dose taken in them was judged missed."""
        n = _whole(v)
        return float("nan") if n is None else float(n)

    def _settled(self, n, t):
        t0 = self.lvl_t0
        ref = self.ref
        if ref is None:
            self.ref = n
        elif n < ref:
            self.ref = n
            if self.pend_from is None:
                if ref - n <= (self.most if self.sched is None else self.dose):
                    self._take(ref - n, t0, t)
                else:
                    self.pend_from = ref
                    self.pend_t0 = t0
        elif self.pend_from is not None and n <= self.pend_from:
            self.ref = n         # the cap back on: what is still missing was taken
            self._resolve(t)
        else:
            if self.pend_from is not None:
                self._resolve(t)
            added = n - self.ref
            self.ref = n
            if added > self.most:
                self.armed = True
                self.counts[3] += 1
                self.emit(t, "refilled", added, {"added": added, "count": n, "at": t0})
            # else at most a dose put back (a pill dropped in again): no refill, and the
            # supply's refill_needed stays sent (it came again for the same supply)
        self._supply(t)

    def _supply(self, t):
        if self.pend_from is None and self.armed:
            p = self.pills
            per_day = sum(p) if isinstance(p, list) else p * len(self.times)
            days = self.ref / per_day
            if days < self.refill_days:
                self.armed = False
                self.emit(t, "refill_needed", round(days, 1),
                          {"count": self.ref, "days_left": round(days, 1), "per_day": per_day})

    def _resolve(self, t):
        """The drop of more than a dose has come back up, or waited long enough."""
        d = self.pend_from - self.ref
        self.pend_from = None
        if d > 0:
            self._take(d, self.pend_t0, t)

    def _take(self, pills, t0, t):
        if self.sched is None or t0 < self.judge_from:
            return
        self._close_slots(t0, t)
        sched = self.sched
        within = sched - self.early <= t0 <= self.close
        if within and self.taken:
            part = self.dose - self.took    # the rest of a dose taken a pill at a time
            if part > pills:
                part = pills
            self.took += part
            pills -= part
            if not pills:
                return
        elif within:
            dose = pills if pills < self.dose else self.dose
            self.taken = True
            self.took = dose
            self.taken_t = t0
            self.done = sched
            self.counts[0] += 1
            late = t0 > sched + self.window
            early = t0 < sched - self.window
            fields = {"scheduled": sched, "taken": t0, "pills": dose,
                      "status": "late" if late else ("early" if early else "on_time"),
                      "late_min": (t0 - sched) // _MIN if late else 0}
            if early:
                fields["early_min"] = (sched - t0) // _MIN
            self._dose_event(t, "dose_taken", dose, fields)
            pills -= dose
            if not pills:
                return
        # Beyond the dose (6 pills at once on a 1-pill regimen was one dose_taken of 6), or
        # outside any dose's time.
        inside = sched - self.early <= t0
        self.counts[2] += 1
        self._dose_event(t, "extra_dose", pills,
                  {"scheduled": sched if inside else None, "taken": t0, "pills": pills,
                   "reason": "again" if inside else "outside"})

    def _dose_event(self, t, event, value, fields):
        """A dose's event, with the offset its times were judged in: the console says "the
        08:00 dose" in the patient's time (it said 07:00, UTC, for a bottle in Berlin)."""
        fields["utc_offset_min"] = self.off // _MIN
        self.emit(t, event, value, fields)

    def _close_slots(self, limit, t):
        """Every slot that closed before limit: missed if nothing was taken in it, incomplete
        if less than the dose was (one pill of two: dose_taken said only that one came). One
        that closes untaken with the bottle off the scale is held until it is back (taken with
        it on a trip, the doses were missed five times over, then one dose_taken of six)."""
        while self.close < limit:
            if self.away is not None and limit - self.away > _HOLD_MS:
                self._back(None, t)          # away too long: the doses it held are missed
            if not self.taken and (self.lvl is None or self.away is not None):
                if self.away is None:
                    self.away = self.sched
            elif not self.taken:
                self.counts[1] += 1
                self.done = self.sched
                self._dose_event(t, "dose_missed", None,
                                 {"scheduled": self.sched, "close": self.close})
            elif self.took < self.dose:
                self._dose_event(t, "dose_incomplete", self.took,
                          {"scheduled": self.sched, "close": self.close, "pills": self.took,
                           "dose": self.dose})
            self._slot(_next(self.sched, self.times, self.off))

    def _back(self, n, t):
        """The bottle at rest again after doses closed while it was off the scale (n: its
        count; None: away too long, every held dose missed). The pills gone meanwhile answer
        the held doses oldest first (dose_taken, status away: when is not known), the rest
        of them missed; what is left over goes on as a take now. Nothing when none is held."""
        if self.away is None:    # (a held dose implies a slot being judged)
            return
        drop = 0
        if n is not None and self.ref is not None and n < self.ref:
            drop = self.ref - n
        s = self.away
        self.away = None
        while s < self.sched:
            dose = self._dose_of(s)
            got = drop if drop < dose else dose
            nxt = _next(s, self.times, self.off)
            close = self._close_of(s, nxt)
            self.done = s
            if got:
                self.counts[0] += 1
                self._dose_event(t, "dose_taken", got, {"scheduled": s, "taken": self.lvl_t0,
                                                 "pills": got, "status": "away", "late_min": 0})
                if got < dose:
                    self._dose_event(t, "dose_incomplete", got, {"scheduled": s, "close": close,
                                                          "pills": got, "dose": dose})
            else:
                self.counts[1] += 1
                self._dose_event(t, "dose_missed", None, {"scheduled": s, "close": close})
            drop -= got
            s = nxt
        if n is None:
            self.lost = True     # still away: what it took meanwhile answers no dose now
            return
        lost = self.lost
        self.lost = False
        if self.ref is None:     # no count before it went: this one is the first
            self.ref = n
        elif n < self.ref:
            self.ref = n
            if drop and not lost:
                self._take(drop, self.lvl_t0, t)
            self._supply(t)
        elif n > self.ref:
            self._settled(n, t)

    # -- the schedule -----------------------------------------------------------------------
    def _slot(self, sched):
        self.sched = sched
        self.close = self._close_of(sched, _next(sched, self.times, self.off))
        self.taken = False
        self.took = 0
        self.dose = self._dose_of(sched)

    def _close_of(self, sched, nxt):
        """When the dose at sched closes: `late` after it, or where the next one's opens."""
        close = sched + self.late
        return close if close < nxt - self.early else nxt - self.early

    def _dose_of(self, sched):
        """The pills of the dose at sched: the one count, or its time's."""
        p = self.pills
        if isinstance(p, list):
            m = (sched + self.off) % _DAY // _MIN
            p = p[self.times.index(m)] if m in self.times else self.most
        return p
