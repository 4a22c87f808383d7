# The energy detector's test kit (test_insight_energy*.py): a profile's insight mapping and a
# detector fed on a clock of its own.
from agent.insights.energy import Detector

T0 = 1767225600000          # 2026-01-01 00:00 UTC
MIN = 60000
HOUR = 3600000
DAY = 86400000


def config(**changes):
    cfg = {"type": "energy", "utc_offset_min": 0, "on_w": 10, "off_w": 5, "end_ms": 3 * MIN,
           "tariff": 0.3, "currency": "EUR", "co2_g_per_kwh": 250, "report_min": 0,
           "programmes": [], "learn": 5, "watch": "energy", "batch": 1, "drift_k": 1,
           "drift_h": 6, "motor_lo_w": 30, "motor_hi_w": 1000}
    cfg.update(changes)
    return cfg


class Run:
    """A detector and the events it sent (the last KEEP cycles: a 64k heap), fed on a clock of
    its own."""
    KEEP = 8

    def __init__(self, **changes):
        self.events = []
        self.d = Detector(config(**changes), self._emit)
        self.t = T0

    def _emit(self, t, event, value, fields):
        self.events.append((t, event, value, fields))
        if event == "cycle" and len(self.of("cycle")) > self.KEEP:
            self.events.remove(self.of("cycle")[0])

    def feed(self, watts, ms, step=5000, synced=True):
        """watts (a number, a list repeated, or a function of the reading's number) every step
        ms for ms."""
        if isinstance(watts, list):
            pattern = watts
            watts = lambda i: pattern[i % len(pattern)]    # noqa: E731
        elif not callable(watts):
            level = watts
            watts = lambda i: level                         # noqa: E731
        end = self.t + ms
        i = 0
        while self.t < end:
            self.d.feed(self.t, watts(i), synced)
            i += 1
            self.t += step

    def cycle(self, watts, minutes, step=MIN):
        """A cycle of `watts` for `minutes` between standby, read every step."""
        self.feed(1.0, 10 * MIN, step)
        self.feed(watts, minutes * MIN, step)
        self.feed(1.0, 10 * MIN, step)

    def of(self, event):
        return [e for e in self.events if e[1] == event]


def cycles(r, energies):
    for e in energies:
        r.cycle(e, 60)


def through_flash(d):
    """d's snapshot as the manager writes it and reads it back after a reboot."""
    from agent import cbor, cbor_decode      # only the reboot tests pay for their code
    return cbor_decode.loads(cbor.dumps(d.snapshot()))
