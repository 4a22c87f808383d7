"""`tether simulate --plots DIR`: the pictures a product manager looks at, drawn from what the
reference ingest stored (the SQLite file: readings and the devices' insights) against what really
happened (the models' truth).

- ink.png      ink levels of a few printers, with the device's forecast to empty, its reorders,
               the cartridge swaps it saw, and when cartridges really ran dry
- pills.png    pill counts of a few bottles, with the doses the device judged taken (on time,
               late), missed and extra, and the doses really missed
- energy.png   per washer and fridge: the energy of each cycle, and the figure its maintenance
               chart watches against the unit's own learned baseline, with the device's
               maintenance alarms and the truth's wear and failure
- backlog.png  the fleet's backlog (batches waiting on devices) and the devices offline
"""
import os
import statistics

from firmware.profile.insights.energy import WATCH_NAMES
from ingest import insights, series
from ingest.queries import steady

DAY_MS = 86400000.0
INK_COLOURS = {"ink_c": "c", "ink_m": "m", "ink_y": "y", "ink_k": "k"}


NEEDS = "--plots needs matplotlib: pip install matplotlib (tether's [plots] extra)"


def available():
    """Whether matplotlib can be imported: said before a run, not after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise SystemExit(NEEDS)


def _days(t, start):
    return (t - start) / DAY_MS


def _outside_legend(ax, sources=None, x=1.01):
    """The legend right of the axes (of what ax and the other axes in sources drew): never over
    the lines the chart is about."""
    handles, labels = [], []
    for source in sources or [ax]:
        h, lab = source.get_legend_handles_labels()
        handles += h
        labels += lab
    seen = {}
    for h, lab in zip(handles, labels):
        seen.setdefault(lab, h)
    if seen:
        ax.legend(seen.values(), seen.keys(), loc="upper left", bbox_to_anchor=(x, 1.0),
                  fontsize="small", borderaxespad=0.0)


class _Device:
    """One device of a run's parts (simulator/parts.py) as the plots read it."""

    def __init__(self, x, db):
        self.device_id = x["device"]
        self.profile = {"sensors": x["sensors"]}
        self.truth = x["truth"]
        self.db = db


class _Run:
    def __init__(self, db, parts):
        from simulator.parts import merged_history
        self.devices = [_Device(x, db) for p in parts for x in p["devices"]]
        self.kinds = [x["kind"] for p in parts for x in p["devices"]]
        self.history = merged_history(parts)
        self.duration_ms = parts[0]["duration_ms"]


def _busiest(devices, found, n, events, truth=()):
    """The n devices with the most of these insight events and of these truth entries (what
    really happened: a printer whose cartridge ran dry was left out, its reorders few), the
    first ones where they tie, in the fleet's order: a plot of a few shows where things
    happened."""
    ranked = sorted(range(len(devices)), key=lambda i: (
        -sum(1 for x in found.get(devices[i].device_id, ()) if x[1] in events)
        - sum(len(devices[i].truth.get(key) or ()) for key in truth), i))
    return [devices[i] for i in sorted(ranked[:n])]


def _some_of(fig, shown, total, what):
    if total > len(shown):
        fig.suptitle("%d of %d %s: those with the most %s (every device: tether console)"
                     % (len(shown), total, *what), y=1.0, fontsize=10, color="0.3")


def write_plots(db, parts, outdir, per_kind=3):
    """Writes the plots of a finished run (its database and parts) into outdir; returns their
    paths."""
    plt = _pyplot()
    os.makedirs(outdir, exist_ok=True)
    fleet = _Run(db, parts)
    start = parts[0]["start_unix_ms"]
    end_days = fleet.duration_ms / DAY_MS
    by_kind = {}
    for d, kind in zip(fleet.devices, fleet.kinds):
        by_kind.setdefault(kind, []).append(d)
    found = {}
    for device, t, event, sensor, value, fields in insights(db):
        found.setdefault(device, []).append((t, event, sensor, value, fields))
    out = []
    printers = by_kind.get("Printer", [])
    if printers:
        shown = _busiest(printers, found, per_kind, ("reorder", "empty", "cartridge_replaced"),
                         ("ink_empty",))
        out.append(_ink(plt, outdir, shown, found, start, end_days, len(printers)))
    bottles = by_kind.get("PillBottle", [])
    if bottles:
        shown = _busiest(bottles, found, per_kind, ("dose_missed", "extra_dose",
                                                    "refill_needed"), ("missed_doses",))
        out.append(_pills(plt, outdir, shown, found, start, end_days, len(bottles)))
    meters = [("washers", by_kind.get("Washer", [])), ("fridges", by_kind.get("Fridge", []))]
    meters = [(name, ds) for name, ds in meters if ds]
    if meters:
        out.append(_energy(plt, outdir, meters, found, start, end_days))
    signals = by_kind.get("Signals", [])
    if signals:
        # one product's sensors: another's devices drawn under its names showed nothing
        kinds = [tuple(s["name"] for s in d.profile["sensors"]) for d in signals]
        same = [d for d, k in zip(signals, kinds) if k == kinds[0]]
        out.append(_readings(plt, outdir, same[:per_kind], start, end_days, len(same),
                             len(set(kinds))))
    if fleet.history:
        out.append(_backlog(plt, outdir, fleet, start))
    return out


def days_left(t, dry, swaps):
    """The days the cartridge in place at t (ms) really had left: to the first time its colour
    ran dry after t (dry: sorted ms), or None when it was changed before that (swaps: ms) or
    never ran dry in the run."""
    gone = next((x for x in dry if x >= t), None)
    if gone is None or any(t < x <= gone for x in swaps):
        return None
    return (gone - t) / DAY_MS


def split_drained(history):
    """(history, the point after the end-of-run drain or None): merged_history ends with that
    point at the run's last instant, after the backlog at that instant."""
    history = list(history)
    if len(history) > 1 and history[-1][0] == history[-2][0]:
        return history, history.pop()
    return history, None


def _ink(plt, outdir, printers, found, start, end_days, total):
    """Per printer: its ink levels (left), and the days to empty the device forecast for each
    colour against the days each cartridge really had left and the lead time (right)."""
    fig, axes = plt.subplots(len(printers), 2, figsize=(15, 2.9 * len(printers)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for (ax, fc), d in zip(axes, printers):
        inks = [s for s in d.profile["sensors"] if s["name"].startswith("ink_")]
        mine = found.get(d.device_id, [])
        lead_days = learn_days = None
        forecasts = False
        highest = 0.0   # the longest forecast: one above the chart's top is said, not hidden
        above = []      # (ink, its lowest forecast)
        for s in inks:
            name = s["name"]
            colour = INK_COLOURS.get(name)
            cfg = s.get("insight") or {}
            if cfg.get("lead_time_ms"):
                lead_days = cfg["lead_time_ms"] / DAY_MS
                learn_days = cfg.get("learn_ms", 2 * DAY_MS) / DAY_MS
            pts = series(d.db, d.device_id, name)
            ax.plot([_days(t, start) for t, _ in pts], [v for _, v in pts], color=colour,
                    linewidth=1.2, label=name)
            dry = sorted(t for t, sensor in d.truth.get("ink_empty", []) if sensor == name)
            swaps = sorted(t for t, e, sensor, v, f in mine
                           if sensor == name and e == "cartridge_replaced")
            xs, days, lows, highs, truth_x, truth = [], [], [], [], [], []
            held = None  # the swaps seen by the last forecast: another count, another cartridge
            for t, event, sensor, value, f in mine:
                if sensor != name or value is None:
                    continue
                if event == "reorder":
                    ax.plot([_days(t, start)], [f.get("level")], "v", color=colour,
                            markeredgecolor="r", markersize=9, label="reorder (device)")
                    fc.plot([_days(t, start)], [value], "v", color=colour, markeredgecolor="r",
                            markersize=9, label="reorder (device)")
                elif event == "cartridge_replaced":
                    ax.axvline(_days(t, start), color="g", alpha=0.35, linewidth=1,
                               label="new cartridge (device)")
                elif event == "empty":
                    ax.plot([_days(t, start)], [f.get("level", value)], "o", color=colour,
                            markeredgecolor="k", markersize=8, label="empty (device)")
                elif event == "forecast":
                    swapped = sum(1 for x in swaps if x <= t)
                    if held is not None and swapped != held:
                        for series_ in (xs, days, lows, highs):
                            series_.append(float("nan"))  # a new cartridge: a new line
                    held = swapped
                    xs.append(_days(t, start))
                    days.append(value)
                    highest = max(highest, value)
                    # the band of a weekly rate only: a few days' drops have none to speak of
                    weekly = f.get("weekly")
                    lows.append(f.get("low_days", value) if weekly else float("nan"))
                    highs.append((value if f.get("high_days") is None else f["high_days"])
                                 if weekly else float("nan"))
                    left = days_left(t, dry, swaps)
                    if left is not None:
                        truth_x.append(_days(t, start))
                        truth.append(left)
            if xs:
                above.append((name, min(days)))
                fc.plot(xs, days, color=colour, linewidth=1.2, marker=".", markersize=3,
                        label="forecast (device)")
                if any(x == x for x in lows):    # a weekly rate's: drawn, so said
                    fc.fill_between(xs, lows, highs, color=colour, alpha=0.12, linewidth=0,
                                    label="its band (busy and quiet weeks)")
                forecasts = True
            if truth:
                fc.plot(truth_x, truth, color=colour, linestyle=":", linewidth=1.5,
                        label="days it really had left (truth)")
        for t, sensor in d.truth.get("ink_empty", []):
            # red and on top: in the ink's colour it hid under the device's own "empty" dot,
            # and a false empty looked like a right one
            ax.plot([_days(t, start)], [0.0], "x", color="r", markersize=10, markeredgewidth=2.5,
                    zorder=5, clip_on=False, label="ran dry (truth)")
        ax.set_xlim(0, end_days)
        ax.set_ylim(-3, 103)
        ax.set_ylabel("ink %")
        ax.set_title("%s: ink levels, reorders, swaps" % d.device_id)
        fc.set_xlim(0, end_days)
        # up to 4 lead times: a forecast above 3 of them is far from a reorder either way
        top = 4 * (lead_days or 10)
        fc.set_ylim(0, top)
        if highest > top:
            # in the title, not over the lines: a note inside the chart covered a colour's.
            # A colour wholly above is named: it was simply missing from the chart.
            gone = [n for n, low in above if low > top]
            fc.set_title("%s: the device's forecast vs the truth\n(forecasts up to %.0f days "
                         "are above the top%s: far from a reorder)" % (
                             d.device_id, highest,
                             "; %s all of them" % ", ".join(gone) if gone else ""),
                         fontsize="medium")
        else:
            fc.set_title("%s: the device's forecast vs the truth" % d.device_id)
        if lead_days is not None:
            from agent.insights.consumable import RESERVE, YOUNG
            fc.axhline(lead_days, color="r", linewidth=1, alpha=0.6,
                       label="lead time %g d: a reorder above it is in time" % lead_days)
            fc.axhline(lead_days * RESERVE, color="r", linewidth=1, alpha=0.6, linestyle="--",
                       label="the device reorders here (%g d; %g d in weeks 2-3; in week "
                             "1 later, by its band)" % (lead_days * RESERVE, lead_days * YOUNG))
        if not forecasts:
            # small, and left of the legend, which it ran under
            fc.text(0.03, 0.75, "no forecast in this run: a printer's\nfirst comes once it "
                    "has watched\nits ink for %g days (`learn`)" % (learn_days or 2),
                    transform=fc.transAxes, ha="left", va="center", color="0.4",
                    fontsize="small")
        fc.set_ylabel("days to empty")
        _outside_legend(fc, [ax, fc])
    axes[-1, 0].set_xlabel("days")
    axes[-1, 1].set_xlabel("days")
    _some_of(fig, printers, total, ("printers", "cartridges run dry, reorders, empties and "
                                                "swaps"))
    return _save(fig, outdir, "ink.png")


def _pills(plt, outdir, bottles, found, start, end_days, total):
    from matplotlib.transforms import blended_transform_factory
    fig, axes = plt.subplots(len(bottles), 1, figsize=(11, 2.9 * len(bottles)), squeeze=False)
    _some_of(fig, bottles, total, ("pill bottles", "doses missed (by the device and really), "
                                                   "extra doses and refills"))
    marks = (("dose_taken", "on_time", "|", "g", "dose taken on time (device)"),
             ("dose_taken", "late", "|", "orange", "dose taken late (device)"),
             ("dose_taken", "early", "|", "c", "dose taken early (device)"),
             ("dose_taken", "away", "|", "b", "dose taken away from the scale (device)"),
             ("dose_incomplete", None, "|", "saddlebrown", "dose taken in part (device)"),
             ("extra_dose", None, "d", "purple", "extra dose (device)"))
    for ax, d in zip(axes[:, 0], bottles):
        name = next((s["name"] for s in d.profile["sensors"] if s.get("quantity") == "count"),
                    "pills")
        pts = steady(series(d.db, d.device_id, name))
        if pts:
            pts.append((start + end_days * DAY_MS, pts[-1][1]))   # the last count to the end
        ax.step([_days(t, start) for t, _ in pts], [v for _, v in pts], where="post",
                color="0.35", linewidth=1,
                label="pills in the bottle (while it stood: lifts and carries left out)")
        # The axis spans the counts the run saw, not 0 up: a 1-pill dose is a step one sees.
        hi = max([v for _, v in pts] + [1])
        lo = min([v for _, v in pts] + [hi])
        span = max(hi - lo, 10)
        # The doses' marks go in a strip under the counts, placed in the axes' height: placed
        # on the count axis they read as counts (doses at -6 pills, or at 50 in a bottle of 60)
        strip = blended_transform_factory(ax.transData, ax.transAxes)
        base, below = 0.1, 0.035
        top = hi
        mine = found.get(d.device_id, [])
        for event, status, marker, colour, label in marks:
            xs = [_days(f.get("taken", f.get("scheduled", t)), start) for t, e, s, v, f in mine
                  if e == event and (status is None or f.get("status") == status)]
            if xs:
                ax.plot(xs, [base] * len(xs), marker, color=colour,
                        markersize=8 if event == "extra_dose" else 12,
                        markeredgewidth=2, linestyle="none", label=label,
                        zorder=3 if event == "extra_dose" else 2, transform=strip)
        refills = [(_days(f.get("at", t), start), f.get("count", v)) for t, e, s, v, f in mine
                   if e == "refilled"]
        if refills:
            ax.plot([x for x, _ in refills], [c for _, c in refills], "^", color="g",
                    markersize=9, linestyle="none", label="refilled (device)")
        needed = [_days(t, start) for t, e, s, v, f in mine if e == "refill_needed"]
        if needed:
            ax.plot(needed, [0.95] * len(needed), "v", color="orange", markersize=9,
                    linestyle="none", label="refill needed (device)", transform=strip)
        # by the dose's time; one without it (no such event today) by when it was judged
        missed = [_days(f.get("scheduled", t), start) for t, e, s, v, f in mine
                  if e == "dose_missed"]
        if missed:
            ax.plot(missed, [base] * len(missed), "x", color="r", markersize=9,
                    markeredgewidth=2, linestyle="none", label="dose missed (device)",
                    transform=strip)
        truth = [_days(r[0], start) for r in d.truth.get("missed_doses", [])]
        if truth:
            ax.plot(truth, [below] * len(truth), "o", markerfacecolor="none",
                    markeredgecolor="r", linestyle="none", label="dose missed (truth)",
                    transform=strip)
        ax.set_xlim(0, end_days)
        # counts from 18 % of the height up, the strip under them; ticks on counts only
        ax.set_ylim(lo - 0.3 * span, top + 0.12 * span)
        ticks = [y for y in ax.get_yticks() if lo <= y <= top + 0.12 * span]
        if len(ticks) >= 2:
            ax.set_yticks(ticks)
        ax.axhline(lo - 0.1 * span, color="0.85", linewidth=0.8)
        ax.set_ylabel("pills")
        ax.set_title("%s: pill count and the doses the device judged" % d.device_id)
        _outside_legend(ax)
    axes[-1, 0].set_xlabel("days")
    return _save(fig, outdir, "pills.png")


def _charted(cycles, batch):
    """[(end ms, figure)] as the maintenance chart takes them (agent/insights/energy.py): each
    cycle's figure, or the median of each `batch` of them (a fridge's single cycles are bent by
    door openings and the defrost)."""
    out = []
    for i in range(0, len(cycles) - batch + 1, batch):
        group = cycles[i:i + batch]
        xs = sorted(f["feature"] for f in group)
        out.append((group[-1]["end"], xs[len(xs) // 2]))
    return out


def _baseline(figures, cfg):
    """(baseline, spread) as the device learns them (agent/insights/energy.py) from the first
    `learn` figures, or None while there are fewer."""
    from agent.insights.energy import FLOOR
    learn = cfg.get("learn", 20)
    if len(figures) < learn:
        return None
    first = figures[:learn]
    m = statistics.median(first)
    mad = statistics.median(abs(x - m) for x in first)
    return m, max(1.4826 * mad, FLOOR * abs(m), 1e-9)


def _energy(plt, outdir, meters, found, start, end_days):
    fig, axes = plt.subplots(len(meters), 2, figsize=(15, 3.6 * len(meters)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for (left, right), (kind, devices) in zip(axes, meters):
        watch = None
        charted = 0
        batch = 1
        learn = 20
        span = 5.0  # the chart's least y range, +-%: noise within the 3 % spread floor looks it
        lines = {}  # level -> [(unit, colour)] past which each unit's CUSUM grows
        for i, d in enumerate(devices):
            colour = cmap(i % 10)
            cfg = next((x["insight"] for x in d.profile["sensors"]
                        if x.get("insight", {}).get("type") == "energy"), {})
            watch = cfg.get("watch", watch)
            batch = cfg.get("batch", batch)
            mine = found.get(d.device_id, [])
            cycles = [f for t, e, s, v, f in mine if e == "cycle"]
            degrading = d.truth.get("degrading")
            onset = d.truth.get("degrade_onset_ms")
            wear = ""
            if degrading:
                wear = (", degrading" if onset is None else
                        ", wears from day %.0f" % _days(onset, start)
                        if _days(onset, start) < end_days else ", wears after this run")
            label = "%s%s (%d cycles)" % (d.device_id, wear, len(cycles))
            # hollow for the worn unit: filled and larger, it hid the healthy one under it
            # (a fridge's 700 cycles in one band)
            style = dict(color=colour, markersize=4, alpha=0.8, linestyle="none",
                         markerfacecolor="none" if degrading else colour)
            left.plot([_days(f["end"], start) for f in cycles],
                      [f["energy_wh"] for f in cycles], "o" if degrading else ".", **style)
            points = _charted([f for f in cycles if f.get("feature") is not None],
                              cfg.get("batch", 1))
            learnt = _baseline([x for _, x in points], cfg)
            learn = cfg.get("learn", learn)
            left.plot([], [], "o" if degrading else ".", label=label, **style)  # every unit
            if learnt and learnt[0]:
                base, spread = learnt
                charted += 1
                right.plot([_days(t, start) for t, _ in points],
                           [100.0 * (x / base - 1.0) for _, x in points],
                           "o" if degrading else ".", **style)
                # where the device's CUSUM grows: a level held past it alarms, one point not
                slack = 100.0 * cfg.get("drift_k", 1) * spread / abs(base)
                wears = -1 if watch == "capacity" else 1
                # one line for units at one level (both at the 3 % floor): two hid each other
                lines.setdefault(round(wears * slack, 1), []).append((d.device_id, colour))
                span = max(span, 2.5 * slack)
            for t, e, s, v, f in mine:
                if e == "maintenance_due":
                    for ax in (left, right):
                        # drift_pct is the device's average of its recent points, not the
                        # point drawn there
                        ax.axvline(_days(t, start), color=colour, linewidth=2, linestyle="--",
                                   label="maintenance due (device): %s, recent average %+.0f %%"
                                   % (d.device_id, f.get("drift_pct", 0)))
            failure = d.truth.get("failure_ms")
            for ax in (left, right):
                if degrading and onset is not None and _days(onset, start) < end_days:
                    ax.axvline(_days(onset, start), color=colour, alpha=0.4, linestyle=":",
                               label="wear starts (truth)")
                if failure is not None and _days(failure, start) < end_days:
                    ax.axvline(_days(failure, start), color="k", linewidth=1.5,
                               label="failure (truth)")
        for level, units in lines.items():
            right.axhline(level, color=units[0][1] if len(units) == 1 else "0.4", alpha=0.5,
                          linewidth=0.8, label="%s: past this the chart's sum grows"
                          % ", ".join(u for u, _ in units))
        left.set_ylim(bottom=0)
        left.set_ylabel("Wh per cycle")
        left.set_title("%s: energy of each cycle found" % kind)
        right.set_title("%s: %s, %% from each unit's own baseline\n(maintenance_due when it "
                        "drifts and stays)" % (kind, "the " + WATCH_NAMES.get(watch, watch)))
        for ax in (left, right):
            ax.set_xlim(0, end_days)
        if not charted:
            # Nothing to chart yet: the panel says why and holds the units' legend (beside
            # an empty panel, it named nothing the eye could find).
            right.text(0.5, 0.2, "no unit learnt its baseline in %g days: it takes `learn`, "
                       "%d points\n(a point is %s)"
                       % (end_days, learn, "a cycle" if batch == 1
                          else "the median of %d cycles" % batch),
                       transform=right.transAxes, ha="center", va="center", color="0.4")
            right.set_yticks([])
            _outside_legend(right, [left, right], x=0.02)
            legend = right.get_legend()
            if legend is not None:
                legend.set_bbox_to_anchor((0.02, 0.98))
        else:
            low, high = right.get_ylim()
            right.set_ylim(min(low, -span), max(high, span))
            right.axhline(0.0, color="0.5", linewidth=0.8)
            right.set_ylabel("% from its own baseline")
            _outside_legend(right, [left, right])
    for ax in axes[-1]:
        ax.set_xlabel("days")
    return _save(fig, outdir, "energy.png")


MAX_CHANNELS_SHOWN = 6


def _readings(plt, outdir, devices, start, end_days, total, products=1):
    """A product no appliance model fits (made-up signals): each of its sensors as stored, a
    line per device. It had no plot but the backlog."""
    sensors = devices[0].profile["sensors"][:MAX_CHANNELS_SHOWN]
    fig, axes = plt.subplots(len(sensors), 1, figsize=(11, 2.2 * len(sensors) + 0.6),
                             sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], sensors):
        for d in devices:
            pts = series(d.db, d.device_id, s["name"])
            ax.plot([_days(t, start) for t, _ in pts], [v for _, v in pts], linewidth=0.8,
                    label=d.device_id)
        ax.set_ylabel("%s (%s)" % (s["name"], s.get("unit", "")), fontsize="small")
        ax.set_xlim(0, end_days)
    axes[0, 0].set_title("Readings as stored (made-up signals: no appliance model fits this "
                         "product)")
    axes[-1, 0].set_xlabel("days")
    _outside_legend(axes[0, 0], [axes[0, 0]])
    more = len(devices[0].profile["sensors"]) - len(sensors)
    notes = []
    if total > len(devices):
        notes.append("%d of %d devices" % (len(devices), total))
    if more > 0:
        notes.append("%d of %d sensors" % (len(sensors), len(sensors) + more))
    if products > 1:
        notes.append("the first of %d products on made-up signals" % products)
    if notes:
        fig.suptitle(", ".join(notes), y=1.0, fontsize=10, color="0.3")
    return _save(fig, outdir, "readings.png")


def _backlog(plt, outdir, fleet, start):
    from matplotlib.ticker import MaxNLocator
    # The devices offline in a strip of their own under the backlog: on a second axis up to
    # the fleet's size (12) the band of one or two was flat, under the backlog's spikes.
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    history, drained = split_drained(fleet.history)
    end = fleet.duration_ms / DAY_MS
    days = [_days(start + t, start) for t, _, _ in history]
    ax.step(days, [b for _, b, _ in history], where="post",
            label="batches waiting on devices (the fleet's sum)")
    offline = [o for _, _, o in history]
    ax2.fill_between(days, offline, step="post", alpha=0.35, color="r", linewidth=0,
                     label="devices offline")
    ax2.set_ylim(0, max(offline + [0]) + 1)
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
    if drained is not None:
        ax.plot([end * 1.015], [drained[1]], "o", color="C0", markersize=6, clip_on=False,
                label="after the drain at the end: %d" % drained[1])
    ax.set_xlim(0, end * 1.03)
    for a in (ax, ax2):
        a.axvline(end, color="0.5", linewidth=0.8, linestyle=":")
    ax2.set_xlabel("days")
    ax.set_ylabel("batches")
    ax2.set_ylabel("devices\noffline")
    ax.set_title("Fleet backlog during outages" if any(offline) else
                 "Fleet backlog (no device was offline in this run)")
    ax.set_ylim(0, max([b for _, b, _ in history] + [1]) * 1.05)   # a flat 0 has a scale
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _outside_legend(ax, [ax, ax2])
    return _save(fig, outdir, "backlog.png")


def _save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
