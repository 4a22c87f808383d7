# A pill bottle on a scale for the adherence insight's portable tests: the profile's settings
# and a detector fed every 30 s.
from agent.insights.adherence import Detector

MIN = 60000
HOUR = 60 * MIN
DAY0 = 1767225600000          # 2026-01-01 00:00 UTC
STEP = 30000                  # the example profile reads the count every 30 s


def config(**kw):
    cfg = {"type": "adherence", "times_min": [8 * 60, 20 * 60], "window_ms": 30 * MIN,
           "late_ms": 5 * HOUR, "pills": 1, "refill_days": 5, "settle_ms": 5 * MIN,
           "utc_offset_min": 0}
    cfg.update(kw)
    return cfg


class Bottle:
    """A detector fed every 30 s from `t`; events kept as (t, event, value, fields)."""

    def __init__(self, count, start=DAY0 + 7 * HOUR, synced=True, **kw):
        self.events = []
        self.det = Detector(config(**kw), self._emit)
        self.t = start
        self.hold(count, 30 * MIN, synced)

    def _emit(self, t, event, value, fields):
        self.events.append((t, event, value, fields))

    def hold(self, value, ms, synced=True):
        """The scale reads value for ms."""
        end = self.t + ms
        while self.t < end:
            self.det.feed(self.t, value, synced)
            self.t += STEP

    def until(self, value, hour, day=0, synced=True):
        # in whole seconds: 8.1 h in a single-precision float (an ESP32's) is 8.1000004 h
        self.hold(value, DAY0 + day * 24 * HOUR + int(hour * 3600 + 0.5) * 1000 - self.t, synced)

    def names(self):
        return [e[1] for e in self.events]

    def one(self, name):
        found = [e for e in self.events if e[1] == name]
        assert len(found) == 1, self.events
        return found[0]
