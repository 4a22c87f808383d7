"""The consumable insight in a profile (agent/insights/consumable.py): a supply's level in %,
its rate of use, days to empty, reorder, swaps, empty."""
from firmware.profile.errors import Invalid, expected
from firmware.profile.rules import decimal, duration, json_number
from firmware.profile.units import DAY, HOUR


def percent(lo, hi):
    """A level in % from lo to hi (the same bounds as the detector's set())."""
    def read(ctx, node):
        what = "a percentage from %s to %s" % (lo, hi)
        value = decimal(node, what)
        if not lo <= value <= hi:
            raise Invalid(expected(what, node))
        return json_number(value)
    return read


QUANTITIES = ("level",)
FIELDS = [
    ("lead_time", "lead_time_ms", duration(HOUR, 90 * DAY), 10 * DAY),
    # The points the rate is fitted on: one every 6 h, a whole week and a bit at least, at most
    # 8 weeks (224 points, 896 bytes).
    ("window", "window_ms", duration(8 * DAY, 56 * DAY), 56 * DAY),
    # How long a cartridge with no predecessor is watched before its first forecast.
    ("learn", "learn_ms", duration(DAY, 7 * DAY), 2 * DAY),
    ("empty", "empty", percent(0, 50), 0),
    ("swap_jump", "swap_jump", percent(1, 100), 20),
    ("forecast_every", "forecast_ms", duration(HOUR, 7 * DAY), DAY),
]
