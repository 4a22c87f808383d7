"""`tether simulate --plots DIR`: the pictures a product manager looks at, drawn from what the
reference ingest stored (the SQLite file) against what really happened (the models' truth).

- ink.png      ink levels of a few printers, with their ink_low events and cartridge changes
- pills.png    pill counts of a few bottles, with the doses taken and the doses missed
- energy.png   appliance power day by day: the units whose motor or compressor degrades stand out
- backlog.png  the fleet's backlog (batches waiting on devices) and the devices offline
"""
import os

from simulator.ingest import series

DAY_MS = 86400000.0


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        raise SystemExit("--plots needs matplotlib: pip install 'tether-agent[plots]'")


def _days(t, start):
    return (t - start) / DAY_MS


def write_plots(fleet, outdir, per_kind=3):
    """Writes the plots for a finished Fleet into outdir; returns their paths."""
    plt = _pyplot()
    os.makedirs(outdir, exist_ok=True)
    start = fleet.clock.start_unix_ms
    db = fleet.db_path
    by_kind = {}
    for d in fleet.devices:
        by_kind.setdefault(type(d.model).__name__, []).append(d)
    out = []

    printers = [d for d in by_kind.get("Printer", [])][:per_kind]
    if printers:
        fig, axes = plt.subplots(len(printers), 1, figsize=(10, 2.6 * len(printers)), squeeze=False)
        for ax, d in zip(axes[:, 0], printers):
            for s in d.profile["sensors"]:
                if s["name"].startswith("ink_"):
                    pts = series(db, d.device_id, s["name"])
                    ax.plot([_days(t, start) for t, _ in pts], [v for _, v in pts],
                            label=s["name"], color={"ink_c": "c", "ink_m": "m", "ink_y": "y",
                                                    "ink_k": "k"}.get(s["name"]))
            for t, sensor in d.model.truth.get("ink_low", []):
                ax.axvline(_days(t, start), color="r", alpha=0.3, linestyle="--")
            for t, sensor in d.model.truth.get("cartridge_changes", []):
                ax.axvline(_days(t, start), color="g", alpha=0.3)
            ax.set_ylabel("%")
            ax.set_title("%s: ink (red dashes: ink_low; green: new cartridge)" % d.device_id)
            ax.legend(loc="lower left", fontsize="small", ncol=4)
        axes[-1, 0].set_xlabel("days")
        out.append(_save(fig, outdir, "ink.png"))

    bottles = [d for d in by_kind.get("PillBottle", [])][:per_kind]
    if bottles:
        fig, axes = plt.subplots(len(bottles), 1, figsize=(10, 2.6 * len(bottles)), squeeze=False)
        for ax, d in zip(axes[:, 0], bottles):
            pts = series(db, d.device_id, "pills")
            ax.step([_days(t, start) for t, _ in pts], [v for _, v in pts], where="post",
                    label="pills in the bottle")
            taken = d.model.truth.get("doses", [])
            missed = d.model.truth.get("missed_doses", [])
            if taken:
                ax.plot([_days(r[0], start) for r in taken], [0] * len(taken), "g|",
                        markersize=10, label="dose taken")
            if missed:
                ax.plot([_days(r[0], start) for r in missed], [0] * len(missed), "rx",
                        label="dose missed")
            ax.set_ylabel("pills")
            ax.set_title("%s: pill count and doses" % d.device_id)
            ax.legend(loc="upper right", fontsize="small")
        axes[-1, 0].set_xlabel("days")
        out.append(_save(fig, outdir, "pills.png"))

    meters = by_kind.get("Washer", []) + by_kind.get("Fridge", [])
    if meters:
        fig, ax = plt.subplots(figsize=(10, 4))
        for d in meters:
            pts = series(db, d.device_id, "power")
            daily = {}
            for t, v in pts:
                day = int(_days(t, start))
                daily.setdefault(day, []).append(v)
            days = sorted(daily)
            # the upper decile of each day's power: a working motor, not its idle hours
            top = [sorted(daily[k])[int(len(daily[k]) * 0.9)] for k in days]
            degrading = d.model.truth.get("degrading")
            ax.plot(days, top, marker="o", linewidth=2.5 if degrading else 1,
                    label="%s%s" % (d.device_id, " (degrading)" if degrading else ""))
        ax.set_xlabel("day")
        ax.set_ylabel("W (90th percentile of the day)")
        ax.set_title("Energy draw: a degrading motor or compressor draws more, week by week")
        ax.legend(fontsize="small")
        out.append(_save(fig, outdir, "energy.png"))

    if fleet.history:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        days = [_days(start + t, start) for t, _, _ in fleet.history]
        ax.plot(days, [b for _, b, _ in fleet.history], label="batches waiting on devices")
        ax2 = ax.twinx()
        ax2.fill_between(days, [o for _, _, o in fleet.history], step="post", alpha=0.2,
                         color="r", label="devices offline")
        ax.set_xlabel("days")
        ax.set_ylabel("batches")
        ax2.set_ylabel("devices offline")
        ax.set_title("Fleet backlog during outages")
        ax.legend(loc="upper left", fontsize="small")
        ax2.legend(loc="upper right", fontsize="small")
        out.append(_save(fig, outdir, "backlog.png"))
    return out


def _save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
