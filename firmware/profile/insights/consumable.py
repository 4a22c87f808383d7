"""The consumable insight in a profile (agent/insights/consumable.py): a supply's level in %,
its rate of use, days to empty, reorder, swaps, empty."""
from firmware.profile.rules import duration, number
from firmware.profile.units import DAY, HOUR

QUANTITIES = ("level",)
FIELDS = [
    ("lead_time", "lead_time_ms", duration(HOUR, 90 * DAY), 10 * DAY),
    ("window", "window_ms", duration(2 * DAY, 180 * DAY), 28 * DAY),
    ("empty", "empty", number(at_least=0), 1),
    ("swap_jump", "swap_jump", number(above=0), 20),
    ("forecast_every", "forecast_ms", duration(HOUR, 7 * DAY), DAY),
]
