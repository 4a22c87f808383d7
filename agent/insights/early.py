# Readings taken before the clock is synced, held for a kind in HOLD (agent/insights):
# as runs of one value, [first t, last t, value, ...] per sensor in ms since start, fed once the
# clock is synced, dated by it. Loaded at such a sensor's first unsynced reading. Portable.
RUNS = 48           # runs held per sensor: the oldest goes first
RUN_MS = 3600000    # a run is cut at an hour: no gap between two readings fed is longer


def hold(early, name, t, v):
    """Keeps an unsynced reading as the end of its run, or as a new run."""
    runs = early.get(name)
    if runs is None:
        runs = early[name] = []
    n = len(runs)
    w = runs[n - 1] if n else None
    if n and t - runs[n - 3] < RUN_MS and (w == v or (w != w and v != v)):
        runs[n - 2] = t            # the same value (NaN too): the run goes on
        return
    if n >= 3 * RUNS:
        del runs[:3]
    runs.extend((t, t, v))


def replay(d, runs, off):
    """Feeds detector d the runs, each at its first and last time plus off (Unix ms at 0)."""
    for i in range(0, len(runs), 3):
        d.feed(runs[i] + off, runs[i + 2], True)
        if runs[i + 1] != runs[i]:
            d.feed(runs[i + 1] + off, runs[i + 2], True)
