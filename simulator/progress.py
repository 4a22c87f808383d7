"""Live progress of a simulation: a table that refreshes in place on a terminal (rich), plain
lines every few seconds when the output is not a terminal (CI logs, files)."""
import sys
import time

ROWS = (("device time", "device_time"), ("devices online", "online"),
        ("readings generated", "generated"), ("readings delivered", "delivered"),
        ("backlog (batches)", "backlog"), ("devices in a network outage", "outages"),
        ("power cuts", "power_cuts"), ("broker restarts", "restarts"), ("events", "events"))


def _days(ms, whole):
    """ms of device time in days, or in hours for a run of less than two days (whole)."""
    if whole < 2 * 86400000:
        return "%.1f h" % (ms / 3600000.0)
    return "%.2f d" % (ms / 86400000.0)


class Progress:
    def __init__(self, out=None, every_s=5.0):
        self.out = out or sys.stdout
        self.every_s = every_s
        self.live = None
        self.last_line = 0.0
        self.phase = None
        if hasattr(self.out, "isatty") and self.out.isatty():
            try:
                from rich.console import Console
                from rich.live import Live
                self.live = Live(console=Console(file=self.out), auto_refresh=False)
                self.live.start()
            except ImportError:
                self.live = None

    def update(self, snap):
        if self.live is not None:
            self.live.update(self._table(snap), refresh=True)
            return
        now = time.time()
        # a line a phase at once, then one every every_s while it lasts (the repairs after the
        # run showed none for minutes: it looked hung)
        if now - self.last_line < self.every_s and snap["phase"] == self.phase:
            return
        self.last_line = now
        self.phase = snap["phase"]
        self.out.write("[%5.0fs] %s: device time %s of %s, %d/%d online, %d readings generated, "
                       "%d delivered, backlog %d batches, %d in a network outage, %d power cuts, "
                       "%d events\n"
                       % (snap["wall_s"], snap["phase"],
                          _days(snap["device_time_ms"], snap["duration_ms"]),
                          _days(snap["duration_ms"], snap["duration_ms"]), snap["online"], snap["devices"],
                          snap["generated"], snap["delivered"], snap["backlog"], snap["outages"],
                          snap["power_cuts"], snap["events"]))
        self.out.flush()

    def _table(self, snap):
        from rich.table import Table
        t = Table(title="tether simulate: %s (%.0f s)" % (snap["phase"], snap["wall_s"]))
        t.add_column("")
        t.add_column("", justify="right")
        for label, key in ROWS:
            if key == "device_time":
                value = "%s of %s" % (_days(snap["device_time_ms"], snap["duration_ms"]),
                                      _days(snap["duration_ms"], snap["duration_ms"]))
            elif key == "online":
                value = "%d of %d" % (snap["online"], snap["devices"])
            else:
                value = "{:,}".format(snap[key])
            t.add_row(label, value)
        return t

    def close(self):
        if self.live is not None:
            self.live.stop()
