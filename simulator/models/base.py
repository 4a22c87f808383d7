# What the appliance models share: device time, cheap noise, a power trace whose energy counter is
# its exact integral, the meter outputs (power, energy, voltage... onto the virtual chips) and the
# ground truth released as it happens. HOST-ONLY (CPython).
#
# Time. Device time is Unix ms; the fleet lives in one time zone, UTC (local hours = UTC hours).
# Each model plans one whole day at a time (jobs, doses, programmes, compressor cycles), drawing
# from its own random.Random in day order, so what happens (the truth) depends on the seed only,
# never on how often advance() is called. Noise on the readings comes from a fixed table of
# 4096 normal deviates walked with a per-device stride: no random call per reading.
#
# Power and energy. The power of an appliance is piecewise constant on slots of `slot_ms`
# (1, 2, 5 or 10 s: the largest that is no longer than the power sensor's interval, so each
# reading sees one slot). A segment [start, end) of slots is either CONST (level + sigma x noise)
# or CYCLE (a drum or a pump: spike, turning, ..., turning, pause, repeating every `period`
# slots, each x (1 + 4 % noise)). The energy counter is the integral of that power: a slot that
# advance() saw counts with the very value the chip showed; slots that no call saw (a power cut,
# a max-speed run skipping hours) count with their segment's mean. So a meter read every slot
# gives energy == sum(power x slot) exactly, and a jump of days costs a few segments, not a loop
# over slots.
import heapq
import math
import random

DAY_MS = 86400000
HOUR_MS = 3600000
MINUTE_MS = 60000
WEEK_MS = 7 * DAY_MS
SLOT_CHOICES = (10000, 5000, 2000, 1000)
FOREVER = 1 << 62

CONST = 0
CYCLE = 1
CYCLE_NOISE = 0.04

_table_rng = random.Random(20251123)
NOISE = [max(-3.0, min(3.0, _table_rng.gauss(0.0, 1.0))) for _ in range(4096)]
NOISE_MASK = 4095
del _table_rng


def weekday(t_ms):
    """0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday)."""
    return (t_ms // DAY_MS + 3) % 7


def day_of_year(t_ms):
    """0-365, close enough for seasons (the 365.2425-day year)."""
    return int((t_ms / DAY_MS) % 365.2425)


def slot_ms_for(profile, quantities=("power", "energy")):
    """The slot length for a profile: the largest of 10, 5, 2, 1 s that is no longer than the
    interval of its fastest power or energy sensor (10 s when it has none)."""
    fastest = None
    for s in profile["sensors"]:
        if s["quantity"] in quantities:
            i = s.get("interval_ms", 60000)
            fastest = i if fastest is None or i < fastest else fastest
    if fastest is None:
        return SLOT_CHOICES[0]
    for c in SLOT_CHOICES:
        if c <= fastest:
            return c
    return SLOT_CHOICES[-1]


def poisson(rng, mean):
    """A Poisson draw (Knuth; the means here are small)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, int(round(rng.gauss(mean, mean ** 0.5))))
    limit = math.exp(-mean)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Noise:
    """Normal deviates from the shared table: n = noise.next()."""
    __slots__ = ("i", "stride")

    def __init__(self, rng):
        self.i = rng.randrange(4096)
        self.stride = rng.randrange(1, 4096, 2)   # odd: visits the whole table

    def next(self):
        self.i = i = (self.i + self.stride) & NOISE_MASK
        return NOISE[i]


class PowerTrace:
    """Piecewise power on absolute slots (t_ms // slot_ms) with its exact energy integral.

    The model appends segments with emit()/emit_cycle(); `plan` (called when a slot lies past the
    last segment) must append at least one more. update(t) moves to device time t and returns
    the energy counter in Wh; `value` is then the power in W."""

    def __init__(self, slot_ms, plan, noise, t0_ms, energy_wh):
        self.slot_ms = slot_ms
        self.slot_s = slot_ms / 1000.0
        self.plan = plan
        self.noise = noise
        self.segs = []               # (start, end, kind, a, b, c, d, mean, tag)
        self.i = 0
        self.end = t0_ms // slot_ms  # the first slot not yet planned
        self.slot = self.end
        self.value = None
        self.ws = energy_wh * 3600.0  # energy at the start of self.slot, watt-seconds
        self.t0 = t0_ms
        # Daily marks of the energy without the noise (the segments' means): (phase ms into
        # the UTC day, standby below W, callback(t_ms, wh, standby wh)) or None; the same
        # whatever the cadence of update()
        self.marking = None
        self.mean_ws = self.standby_ws = 0.0   # those energies at the start of self.slot

    # -- planning ---------------------------------------------------------------------------
    @property
    def end_ms(self):
        return self.end * self.slot_ms

    def emit(self, until_ms, level, sigma=0.0, tag=None):
        """Power `level` +- sigma from the end of the plan up to until_ms (rounded to a slot)."""
        end = (until_ms + self.slot_ms // 2) // self.slot_ms
        if end > self.end:
            self.segs.append((self.end, end, CONST, level, sigma, 0.0, 0, level, tag))
            self.end = end

    def emit_slots(self, n, level, sigma=0.0, tag=None):
        """Power `level` for n slots from the end of the plan."""
        if n > 0:
            self.segs.append((self.end, self.end + n, CONST, level, sigma, 0.0, 0, level, tag))
            self.end += n

    def emit_cycle(self, until_ms, turn, spike, pause, period, tag=None):
        """A motor that starts with a spike, turns for period - 2 slots and pauses one slot."""
        end = (until_ms + self.slot_ms // 2) // self.slot_ms
        if end > self.end:
            mean = (spike + pause + (period - 2) * turn) / period
            self.segs.append((self.end, end, CYCLE, turn, spike, pause, period, mean, tag))
            self.end = end

    # -- running ----------------------------------------------------------------------------
    def _seek(self, slot):
        segs = self.segs
        i = self.i
        while True:
            if i >= len(segs):
                self.plan()
                segs = self.segs
                continue
            if segs[i][1] > slot:
                break
            i += 1
        if i > 512:
            del segs[:i]
            i = 0
        self.i = i
        return segs[i]

    def _value(self, slot):
        seg = self._seek(slot)
        n = self.noise.next()
        if seg[2] == CONST:
            v = seg[3] + seg[4] * n
        else:
            period = seg[6]
            pos = (slot - seg[0]) % period
            base = seg[4] if pos == 0 else (seg[5] if pos == period - 1 else seg[3])
            v = base * (1.0 + CYCLE_NOISE * n)
        return v if v > 0.0 else 0.0

    def _mean_ws(self, a, b):
        total = 0.0
        while a < b:
            seg = self._seek(a)
            e = seg[1] if seg[1] < b else b
            total += seg[7] * (e - a)
            a = e
        return total * self.slot_s

    def update(self, t_ms):
        if self.value is None:                  # the first call: the counter starts at t0
            first = self.t0 // self.slot_ms
            self.slot = first
            self.value = self._value(first)
            self.ws -= self.value * (self.t0 - first * self.slot_ms) / 1000.0
        slot = t_ms // self.slot_ms
        if slot != self.slot and self.marking is not None:
            self._marks(slot)
        if slot != self.slot:
            ws = self.ws + self.value * self.slot_s
            if slot > self.slot + 1:
                ws += self._mean_ws(self.slot + 1, slot)
            self.ws = ws
            self.slot = slot
            self.value = self._value(slot)
        return (self.ws + self.value * (t_ms - slot * self.slot_ms) / 1000.0) / 3600.0

    def _marks(self, slot):
        """Calls back with the noise-free energy (the segments' means) at each daily mark from
        self.slot (excluded) to slot (included), at the start of the slot the mark time falls
        in. Reads the segments from the cursor without moving it: update() then moves it as it
        always has, so the readings stay the same."""
        phase, below, callback = self.marking
        per_day = DAY_MS // self.slot_ms
        mark = ((self.slot + 1) * self.slot_ms - phase + DAY_MS - 1) // DAY_MS * DAY_MS + phase
        mark //= self.slot_ms
        total, standby = self.mean_ws, self.standby_ws
        a = self.slot
        i = self.i
        while a < slot:
            while i >= len(self.segs):
                self.plan()             # as _seek would, in this update anyway
            seg = self.segs[i]
            if seg[1] <= a:
                i += 1
                continue
            e = min(seg[1], slot, mark)
            ws = seg[7] * (e - a) * self.slot_s
            total += ws
            if seg[7] < below:
                standby += ws
            a = e
            if a == mark:
                callback(mark * self.slot_ms, round(total / 3600.0, 3),
                         round(standby / 3600.0, 3))
                mark += per_day
        self.mean_ws, self.standby_ws = total, standby

    def tag_at(self, t_ms):
        """The tag of the segment under t_ms (for tests; t_ms not before the cursor)."""
        return self._seek(t_ms // self.slot_ms)[8]


class Meter:
    """Puts an appliance's electrical state onto every power-meter sensor of a profile: PZEM-004T
    quantities (mains) and INA219 quantities (a 12 V DC rail); the energy counter only where the
    profile has one."""

    def __init__(self, profile, skip=()):
        self.power = []
        self.energy = []
        self.voltage = []
        self.current = []      # (name, dc): dc = an INA219 on the 12 V rail
        self.pf = []
        self.hz = []
        self.other = []        # INA219 shunt voltage and bus voltage
        self.names = set()     # every sensor it drives
        for s in profile["sensors"]:
            d, q, name = s["driver"], s["quantity"], s["name"]
            if name in skip or d not in ("pzem004t", "ina219"):
                continue
            self.names.add(name)
            if q == "power":
                self.power.append(name)
            elif q == "energy":
                self.energy.append(name)
            elif q == "voltage":
                self.voltage.append(name)
            elif q == "current":
                self.current.append((name, d == "ina219"))
            elif q == "power_factor":
                self.pf.append(name)
            elif q == "frequency":
                self.hz.append(name)
            elif q in ("bus_voltage", "shunt_voltage"):
                self.other.append((name, q, s.get("calibration", {}).get("shunt_ohms", 0.1)))
        self.any_power = bool(self.power or self.current or self.other)

    def put(self, platform, watts, wh, volts=230.0, pf=1.0):
        set_ = platform.set
        for name, q, shunt in self.other:
            set_(name, 12.0 if q == "bus_voltage" else watts / 12.0 * shunt * 1000.0)
        for name in self.power:
            set_(name, watts)
        for name in self.energy:
            set_(name, wh)
        for name in self.voltage:
            set_(name, volts)
        for name, dc in self.current:
            set_(name, watts / 12.0 if dc else watts / (volts * pf))
        for name in self.pf:
            set_(name, pf)
        for name in self.hz:
            set_(name, 50.0)


class Model:
    """What every appliance model has: the profile, its own rng, device time, released truth."""

    def __init__(self, profile, rng, start_ms, unit_index=0):
        self.profile = profile
        self.rng = rng
        self.start_ms = start_ms
        self.unit_index = unit_index
        self.noise = Noise(rng)
        # the filler's seed comes from the seed without a draw: a draw would change every truth
        self.seed_key = (self.noise.i, self.noise.stride)
        self.filled = False         # the sensors it leaves alone get their signals (driven())
        self.rest = None
        self.truth = {}
        self._pending = []           # heap of (t, seq, key, record) not yet happened
        self._seq = 0
        self._next_release = FOREVER
        self._t = start_ms
        self._day = start_ms // DAY_MS   # the next day to plan
        self._planned_ms = self._day * DAY_MS
        # The energy insight's daily report time, device ms into the UTC day (mark_energy)
        self._report_ms = self._standby_w = None
        for s in profile.get("sensors", ()):
            i = s.get("insight")
            if i is not None and i.get("type") == "energy":
                self._report_ms = (i["report_min"] - i.get("utc_offset_min", 0)) * 60000
                self._standby_w = i["off_w"]
                break

    def record(self, t_ms, key, rec):
        """rec joins truth[key] once device time reaches t_ms."""
        self._seq += 1
        heapq.heappush(self._pending, (t_ms, self._seq, key, rec))
        if t_ms < self._next_release:
            self._next_release = t_ms

    def mark_energy(self, trace):
        """truth energy_wh [(t_ms, wh, standby wh)]: the model's energy without the meter's
        noise, and its part below the insight's standby_below, at each daily report time of the
        profile's energy insight (at the start of the slot it falls in), for
        simulator/scores/motors.py to check energy_report's kWh and standby_kwh against; one a
        day, so a year-long fleet keeps them all. Called before the trace first moves."""
        if self._report_ms is not None and trace.marking is None:
            marks = self.truth.setdefault("energy_wh", [])
            trace.marking = (self._report_ms % DAY_MS, self._standby_w,
                             lambda t, wh, standby: marks.append((t, wh, standby)))

    def release(self, t_ms):
        p = self._pending
        truth = self.truth
        while p and p[0][0] <= t_ms:
            _, _, key, rec = heapq.heappop(p)
            truth[key].append(rec)
        self._next_release = p[0][0] if p else FOREVER

    def advance(self, t_ms, platform):
        """Device time moves to t_ms (never back): plans the days it reaches, releases the truth
        that has happened by then, and drive()s the chips."""
        if t_ms < self._t:
            t_ms = self._t
        self._t = t_ms
        if t_ms >= self._planned_ms:
            self.plan_until(t_ms)
        if t_ms >= self._next_release:
            self.release(t_ms)
        self.drive(t_ms, platform)
        if not self.filled:
            from simulator.models.signals import filler
            self.filled = True
            self.rest = filler(self)
            if self.rest is not None:   # no truth of theirs: simulator/scores leaves them out
                self.truth["made_up"] = sorted(self.rest.names)
        if self.rest is not None:
            self.rest.advance(t_ms, platform)

    def drive(self, t_ms, platform):
        """Sets every sensor the model drives to its value at t_ms."""
        raise NotImplementedError

    def driven(self):
        """The names of the sensors drive() sets: the others get made-up signals (signals.py)."""
        raise NotImplementedError

    def plan_next_day(self):
        self.plan_day(self._day, self._day * DAY_MS, (self._day + 1) * DAY_MS)
        self._day += 1
        self._planned_ms = self._day * DAY_MS

    def plan_until(self, t_ms):
        while self._planned_ms <= t_ms:
            self.plan_next_day()

    def plan_day(self, day, day0, day1):
        raise NotImplementedError

    def weeks(self, t_ms):
        """Device weeks since the start of the simulation."""
        return (t_ms - self.start_ms) / WEEK_MS
