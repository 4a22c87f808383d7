# Readings taken before the clock is synced, held for a kind in HOLD (agent/insights): as runs
# of one value (what its detector's held() makes of a reading: a pill bottle's whole count),
# each its first and last time in ms since start and the value, in a ring made once at the
# first such reading (a list grown and cut run by run asked a board's heap for a new block at
# every few runs), fed once the clock is synced, dated by it. The feeder of such a
# sensor is made here: a board whose profile has none never loads this. Portable.
RUNS = 24           # runs held per sensor: the oldest goes first
RUN_MS = 7200000    # a run is cut at 2 h: no gap between two readings fed is longer


def feeder(ins, name):
    """The sampler's fn(t, value, synced) for sensor `name` of Insights ins: its unsynced
    readings held in ins.early, fed at the first synced one."""
    if not hasattr(ins, "early"):
        ins.early = {}     # sensor -> its ring, while it holds readings
    held = ins.early

    def feed(t, v, synced):
        if synced:
            ring = held.pop(name, None) if held else None
            if ring:
                replay(ins.detectors[name], ring, t - ins.clock.monotonic())
            ins.feed(name, t, v)
        else:
            ins.unsynced += 1
            hold(held, name, t, ins.detectors[name].held(v))
    return feed


def hold(early, name, t, v):
    """Keeps an unsynced reading as the end of its run, or as a new run."""
    ring = early.get(name)
    if ring is None:
        ring = early[name] = [0, 0] + [None] * (3 * RUNS)   # oldest run's index, runs held
    first, n = ring[0], ring[1]
    if n:
        i = 2 + 3 * ((first + n - 1) % RUNS)
        w = ring[i + 2]
        if t - ring[i] < RUN_MS and (w == v or (w != w and v != v)):
            ring[i + 1] = t          # the same value (NaN too): the run goes on
            return
    if n == RUNS:
        ring[0] = first = (first + 1) % RUNS
        n -= 1
    i = 2 + 3 * ((first + n) % RUNS)
    ring[i] = ring[i + 1] = t
    ring[i + 2] = v
    ring[1] = n + 1


def replay(d, ring, off):
    """Feeds detector d the runs, each at its first and last time plus off (Unix ms at 0)."""
    for k in range(ring[1]):
        i = 2 + 3 * ((ring[0] + k) % RUNS)
        d.feed(ring[i] + off, ring[i + 2], True)
        if ring[i + 1] != ring[i]:
            d.feed(ring[i + 1] + off, ring[i + 2], True)
