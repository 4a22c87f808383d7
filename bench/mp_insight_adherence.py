# The adherence detector's cost on MicroPython (and CPython): micropython -X heapsize=64k -m
# mp_insight_adherence [DAYS]
#
# Heap its state takes (gc.mem_alloc() around creating one Detector, and again after DAYS of
# readings: the state must not grow), and CPU per reading over a realistic week: a pill count
# every 30 s, 2 doses a day (one 40 min late every third day, one missed every fifth), the
# bottle lifted twice a day (reads minus its own weight), opened once a day with the cap set
# down beside it for 3 min, a refill every 12 days. The loop that makes the readings is timed
# without the detector and taken off. Prints `key value` lines.
import gc
import sys
import time

try:
    ticks_us, ticks_diff = time.ticks_us, time.ticks_diff
except AttributeError:                      # CPython
    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

MIN = 60000
DAY = 1440 * MIN
DAY0 = 1767225600000
CFG = {"type": "adherence", "times_min": [480, 1200], "window_ms": 30 * MIN,
       "late_ms": 300 * MIN, "pills": 1, "refill_days": 5, "settle_ms": 5 * MIN,
       "utc_offset_min": 0}


def reading(i):
    """The scale at reading i (30 s apart): a whole count, or handling."""
    day = i // 2880
    m = (i % 2880) // 2                      # minute of the day
    taken = 2 * day - (day // 5) + (m >= 485) - (day % 5 == 4 and m >= 485)
    late = day % 3 == 2 and 1205 <= m < 1240
    taken += m >= 1205 and not late
    count = 60 - taken + 40 * (day // 12)
    if m in (600, 960):                      # lifted, looked at, put back
        return -66.3
    if 840 <= m < 843:                       # the cap beside the bottle
        return count - 9.4
    return float(count)


def run(days, with_detector):
    n = days * 2880
    events = [0]

    def emit(t, event, value, fields):
        events[0] += 1

    feed = None
    if with_detector:
        from agent.insights.adherence import Detector
        feed = Detector(CFG, emit).feed
    t0 = ticks_us()
    t = DAY0
    for i in range(n):
        v = reading(i)
        if feed is not None:
            feed(t, v, True)
        t += 30000
    return ticks_diff(ticks_us(), t0), events[0]


def main():
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    from agent.insights.adherence import Detector   # imported first: the code is not the state
    mem = getattr(gc, "mem_alloc", None)     # MicroPython only
    gc.collect()
    before = mem() if mem else 0
    det = Detector(CFG, lambda t, e, v, f: None)
    gc.collect()
    if mem:
        print("heap_state_bytes", mem() - before)
    t = DAY0
    for i in range(days * 2880):
        det.feed(t, reading(i), True)
        t += 30000
    gc.collect()
    if mem:
        print("heap_state_after_bytes", mem() - before)
    print("state", det.state())
    base, _ = run(days, False)
    full, events = run(days, True)
    print("readings", days * 2880)
    print("events", events)
    print("ns_per_reading", (full - base) * 1000 // (days * 2880))


main()
