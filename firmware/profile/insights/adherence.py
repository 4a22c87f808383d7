"""The adherence insight in a profile (agent/insights/adherence.py): doses from a pill count on
a load cell, judged against a schedule; refills."""
from firmware.profile.rules import REQUIRED, clock_time, duration, integer, list_of, number
from firmware.profile.units import HOUR, MINUTE


def schedule(ctx, node):
    times = list_of(clock_time, 1, "a list of times of day like ['08:00', '20:00']")(ctx, node)
    return sorted(t for t in times if t is not None)


QUANTITIES = ("count",)
FIELDS = [
    ("schedule", "times_min", schedule, REQUIRED),
    ("window", "window_ms", duration(5 * MINUTE, 4 * HOUR), 30 * MINUTE),
    ("late", "late_ms", duration(10 * MINUTE, 12 * HOUR), 5 * HOUR),
    ("pills", "pills", integer(1, 20), 1),
    ("refill_below", "refill_days", number(above=0), 5),
    ("settle", "settle_ms", duration(0, HOUR), 2 * MINUTE),
]
