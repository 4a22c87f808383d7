# The consumable insight under MicroPython: the heap one Detector takes (gc.mem_alloc() before and
# after creating it, and after nine weeks of readings, when its window is full) and the CPU per
# reading over a realistic sequence (a reading a minute, ink used in office hours, +-0.1 % noise).
#   micropython -X heapsize=64k bench/mp_insight_consumable.py   (from the repository root)
import gc
import sys
import time

sys.path.insert(0, ".")
from agent.insights.consumable import Detector   # noqa: E402

DAY = 86400000
HOUR = 3600000
CFG = {"type": "consumable", "lead_time_ms": 10 * DAY, "window_ms": 56 * DAY,
       "learn_ms": 2 * DAY, "empty": 0, "swap_jump": 20, "forecast_ms": DAY,
       "utc_offset_min": 0}


def main():
    events = [0]
    gc.collect()
    before = gc.mem_alloc()
    def emit(t, e, v, f):
        events[0] += 1
    det = Detector(CFG, emit)
    gc.collect()
    created = gc.mem_alloc() - before
    t = 1767571200000
    level = 100.0
    seed = 1
    n = 0
    start = time.ticks_ms()
    for minute in range(63 * 1440):
        if t % HOUR == 0 and (t // DAY + 3) % 7 < 5 and 8 <= t % DAY // HOUR < 18:
            level -= 0.25
        seed = (seed * 1103515245 + 12345) & 0x7fffffff
        det.feed(t, round(level + ((seed >> 8) % 201 - 100) / 1000.0, 1), True)
        t += 60000
        n += 1
    spent = time.ticks_diff(time.ticks_ms(), start)
    gc.collect()
    full = gc.mem_alloc() - before
    print("consumable: heap %d bytes per sensor after creation, %d with a full window; "
          "%.1f us per reading (%d readings, %d events, fits included)"
          % (created, full, spent * 1000.0 / n, n, events[0]))


main()
