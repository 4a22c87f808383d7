# What the sampler's tests share (test_sampler*.py): a driver whose readings come from a
# function, a buffer and an event sink that keep what they get, channels on a small schema,
# and a loop that steps the sampler over device time. Both interpreters.
from agent.sampler import Channel
from agent.schema import Schema

DAY = 86400000
SCHEMA = Schema([("a", "", 1, -1), ("b", "", 1, -1), ("c", "", 1, 0)])


class Fake:
    """A driver whose readings come from a function of the call number."""

    def __init__(self, values, fail=None):
        self.values = values    # n -> {quantity: value}
        self.fail = fail        # n -> SensorError or None
        self.calls = 0
        self.setups = 0

    def setup(self):
        self.setups += 1

    def measure(self):
        n = self.calls
        self.calls += 1
        if self.fail is not None:
            exc = self.fail(n)
            if exc is not None:
                raise exc
        return self.values(n)


class Rows:
    """A buffer stand-in that keeps what it is given (with keep=False only counts and checks
    the cadence, for runs of days)."""

    def __init__(self, keep=True):
        self.rows = []
        self.synced = []
        self.keep = keep
        self.count = {}
        self.last = {}
        self.irregular = 0

    def append(self, t, channel, value):
        if self.keep:
            self.rows.append((t, channel, value))
        self.count[channel] = self.count.get(channel, 0) + 1
        if channel in self.last and t - self.last[channel] != (10000 if channel == 0 else 60000):
            self.irregular += 1
        self.last[channel] = t

    def set_synced(self, synced):
        if not self.synced or self.synced[-1] != synced:
            self.synced.append(synced)


class EventList:
    def __init__(self):
        self.got = []

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        self.got.append((t, event, sensor, state, value, detail))


def scaler(i):
    return lambda v: SCHEMA.scale(i, v)


def channel(i, source, quantity="x", interval=10000, filters=None, thresholds=()):
    return Channel(i, SCHEMA.names[i], source, quantity, interval, scaler(i), SCHEMA,
                   filters or {}, list(thresholds))


def run(sampler, clock, until):
    while clock.monotonic() < until:
        wait = sampler.step()
        clock.advance(max(wait, 1))
