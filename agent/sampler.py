# The sampler: reads each sensor at its interval and hands the readings to the buffer.
#
# For each reading, in order: plausibility (a value outside the profile's min/max is a fault,
# not a reading), the sensor's insight (agent/insights: it sees every plausible value, unsmoothed),
# the median of the last N values, rounding to the channel's resolution,
# thresholds with hysteresis (an event when the level is crossed, one more when it is left by
# the hysteresis, nothing in between), the deadband (a value that moved less than it since the
# last one buffered is not buffered), then the buffer. Sensors that share a chip (the quantities
# of one PZEM-004T) are read with one transaction per round. A failing sensor is counted, raises
# one event, and is retried with a growing delay; the others keep their schedule.
from agent.buffer import LIMIT

RAISED = "raised"    # the states of an event (agent/events.py)
CLEARED = "cleared"
_MAX_BACKOFF_MS = 300000
_NAN = float("nan")  # a value no detector takes for a reading at rest


ALARM = "alarm"     # a threshold event's detail when the profile marks it so


class Threshold:
    def __init__(self, event, level, above, hysteresis, alarm=False):
        self.event = event
        self.level = level
        self.above = above
        self.hysteresis = hysteresis
        self.detail = ALARM if alarm else None
        # An alarm's state is told at the first reading after boot, `cleared` too: one that
        # stood when the device restarted is otherwise never cleared, while the state starts
        # afresh here.
        self.told = not alarm
        self.active = False

    def check(self, v):
        """RAISED, CLEARED or None for a new value."""
        if self.active:
            if (v <= self.level - self.hysteresis) if self.above else (v >= self.level + self.hysteresis):
                self.active = False
                return CLEARED
        elif (v > self.level) if self.above else (v < self.level):
            self.active = self.told = True
            return RAISED
        if not self.told:
            self.told = True
            return CLEARED
        return None


class Channel:
    """One sensor of the profile: what to read, when, and what to do with it."""

    def __init__(self, number, name, source, quantity, interval_ms, scale, schema, filters,
                 thresholds):
        self.number = number
        self.name = name
        self.source = source        # a driver: setup(), measure() -> {quantity: value}
        self.quantity = quantity
        self.confident_key = quantity + "_confident"  # not a new string every reading
        self.interval_ms = interval_ms
        self.scale = scale          # value -> integer at the channel's resolution
        self.schema = schema        # .value(number, integer): the reading an integer stands for
        # (min, max), or None without either: one attribute, not two (an instance's table of
        # attributes grows in steps: one more cost 70 bytes a channel, bench/sampler.py)
        low, high = filters.get("min"), filters.get("max")
        self.limits = None if low is None and high is None else (low, high)
        dead = filters.get("deadband")
        # In steps of the resolution, as the readings are stored: rounded floats would call a
        # move of exactly the deadband (20.2 - 20.0 = 0.19999999999999929) smaller than it.
        self.deadband = None if dead is None else _steps(dead, schema.value(number, 1))
        n = filters.get("median") or 0
        self.window = [0.0] * n
        self.sorted = [0.0] * n     # scratch for the median: no list made per reading
        self.filled = 0
        self.thresholds = thresholds
        self.insight = None         # fn(t, value, synced): the sensor's insight (agent/insights)
        self.due = 0
        self.last = None            # the last value buffered, scaled
        self.failing = None         # the kind of the ongoing fault, or None
        self.streak = 0             # consecutive failures
        self.uncertain = False
        # Counters for health reports.
        self.readings = 0
        self.suppressed = 0
        self.errors = {}

    def median(self, v):
        w = self.window
        if not w:
            return v
        w[self.filled % len(w)] = v
        self.filled += 1
        k = len(w)
        if self.filled < k:  # the first values: a median of what there is
            k = self.filled
            s = sorted(w[:k])
        else:
            s = self.sorted
            for i in range(k):
                s[i] = w[i]
            s.sort()
        return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


def described(exc):
    """A sensor's failure in words: a driver's SensorError as it says itself; an exception no
    driver meant (a bug, a bus error it did not expect) with its type ("IndexError: ...")."""
    return str(exc) if hasattr(exc, "kind") else "%s: %s" % (type(exc).__name__, exc)


class Sampler:
    def __init__(self, clock, buffer, events, channels):
        self.clock = clock
        self.buffer = buffer
        self.events = events
        self.channels = channels
        self.ready = {}  # id(source) -> True once its setup() succeeded
        # The channels of each chip, in profile order: one measure() serves every quantity of
        # a chip that is due, and a step allocates no lists.
        self.groups = []
        for c in channels:
            for source, group in self.groups:
                if source is c.source:
                    group.append(c)
                    break
            else:
                self.groups.append((c.source, [c]))

    def step(self):
        """Reads every sensor that is due; returns the ms until the next one is."""
        now = self.clock.monotonic()
        for source, group in self.groups:
            for c in group:
                if c.due <= now:
                    self._read(source, group, now)
                    break
        wait = None
        for c in self.channels:
            left = c.due - now
            if wait is None or left < wait:
                wait = left
        return max(0, wait or 0)

    def _read(self, source, group, now):
        """Measures once for the channels of `group` that are due at `now`."""
        try:
            key = id(source)
            if key not in self.ready:
                source.setup()
                self.ready[key] = True
            values = source.measure()
        except Exception as exc:  # a driver's SensorError, or a bus error it did not expect
            self.ready.pop(id(source), None)  # set the chip up again before the next try
            for c in group:
                if c.due <= now:
                    self._fail(c, exc, now)
            return
        t, synced = self.clock.now()
        self.buffer.set_synced(synced)
        for c in group:
            if c.due > now:
                continue
            if c.quantity not in values:
                self._fail(c, ValueError("%s gave no %s" % (c.name, c.quantity)), now)
                continue
            self._take(c, values[c.quantity], values.get(c.confident_key, True), t,
                       synced)
            c.due = now + c.interval_ms if c.due + c.interval_ms <= now else c.due + c.interval_ms

    def _fail(self, c, exc, now):
        kind = "memory" if isinstance(exc, MemoryError) else getattr(exc, "kind", "error")
        c.errors[kind] = c.errors.get(kind, 0) + 1
        c.streak += 1
        delay = c.interval_ms << min(c.streak - 1, 16)
        c.due = now + min(delay, max(c.interval_ms, _MAX_BACKOFF_MS))
        if c.failing is None:
            t, synced = self.clock.now()
            self._emit(t, synced, "sensor_error", c, RAISED, None, described(exc))
        c.failing = kind

    def _take(self, c, v, confident, t, synced):
        # NaN and infinity pass every comparison with the limits, and rounding one to the
        # channel's resolution raised out of the sampler: the board reset, into safe mode.
        # Before the clearing: a failing sensor's NaN is no reading again.
        if v != v or v - v != 0:
            c.errors["implausible"] = c.errors.get("implausible", 0) + 1
            return
        if c.failing is not None:
            c.failing = None
            c.streak = 0
            # at the channel's resolution, as a threshold's event has it (7.501335164415963)
            self._emit(t, synced, "sensor_error", c, CLEARED, c.schema.value(c.number, c.scale(v)),
                       None)
        lim = c.limits
        if lim is not None and ((lim[0] is not None and v < lim[0]) or
                                (lim[1] is not None and v > lim[1])):
            c.errors["implausible"] = c.errors.get("implausible", 0) + 1
            return
        if c.insight is not None:
            try:
                # A count the driver is not sure of (a bottle lifted off the scale reads 0; a
                # weight between two counts) is no level at rest: NaN, which no detector takes
                # for one. Fed as the count, a lifted bottle of one dose was a dose taken.
                c.insight(t, v if confident else _NAN, synced)
            except Exception:  # a detector's fault must not cost the reading
                c.errors["insight"] = c.errors.get("insight", 0) + 1
        # A reading the driver is not sure of (a bottle lifted off the scale reads 0) is stored
        # as read, but neither filtered nor judged: it raised refill_soon at every lift, and
        # its 0 stayed in the median window after the bottle was back.
        scaled = c.scale(c.median(v) if confident else v)
        # Thresholds, events and the deadband judge the reading as stored, at its resolution:
        # 20.99985 stored as 21.0 raised no "above 21" (nor carried 20.99985 in its event). The
        # reading as a number is made only for them: a float is a heap object on a board.
        if c.thresholds and confident:
            v = c.schema.value(c.number, scaled)
            for th in c.thresholds:
                state = th.check(v)
                if state == CLEARED and _held(c.thresholds, th):
                    continue    # a band's other end holds its one event raised
                if state is not None:
                    self._emit(t, synced, th.event, c, state, v, th.detail)
        if (not confident) != c.uncertain:  # a pill count far from a whole pill, say
            c.uncertain = not confident
            self._emit(t, synced, "uncertain_" + c.quantity, c, RAISED if c.uncertain else CLEARED,
                       c.schema.value(c.number, scaled), None)
        if c.deadband is not None and c.last is not None and abs(scaled - c.last) < c.deadband:
            c.suppressed += 1
            return
        if not -LIMIT < scaled < LIMIT:
            # Past what a batch holds at the channel's resolution (one finer than the sensor's
            # range allows): a fault counted as `range`, as an implausible value is; the buffer
            # would refuse it with ValueError, which stopped the agent.
            c.errors["range"] = c.errors.get("range", 0) + 1
            return
        c.last = scaled
        c.readings += 1
        self.buffer.append(t, c.number, scaled)

    def _emit(self, t, synced, event, c, state, value, detail):
        if self.events is not None:
            self.events.emit(t, synced, event, c.name, state, value, detail)

    def health(self):
        """Per sensor: readings buffered, readings the deadband held back, faults by kind."""
        return [(c.name, c.readings, c.suppressed, c.errors) for c in self.channels]


def _held(thresholds, th):
    """Another threshold of th's event (a band's other end) is beyond its level."""
    for other in thresholds:
        if other is not th and other.event == th.event and other.active:
            return True
    return False


def _steps(deadband, step):
    """A deadband in whole steps of the resolution: a move of fewer is held back."""
    n = deadband / step
    whole = int(n)
    return whole if n - whole < 1e-9 else whole + 1


def channels(profile, schema, sources):
    """The profile's sensors as Channels; sources[i] is the driver of sensor i."""
    out = []
    for i, s in enumerate(profile["sensors"]):
        ths = []
        for th in s.get("thresholds", ()):
            above = "above" in th
            ths.append(Threshold(th["event"], th["above"] if above else th["below"], above,
                                 th.get("hysteresis", 0), th.get("alarm", False)))
        out.append(Channel(i, s["name"], sources[i], s["quantity"], s["interval_ms"],
                           schema.scaler(i), schema, s.get("filters", {}), ths))
    return out
