"""`tether simulate`: a fleet of virtual appliances through the real agent, a broker and the
reference ingest, on accelerated device time; ends with a report of where every reading went."""
import asyncio
import json
import math
import os
import sys

from firmware.args import duration as duration_arg, whole
from firmware.profile.units import DAY, format_duration
from ingest.url import hide_password

DEFAULT_FAULTS = "outage:every=1d,for=3h,share=0.25;power:every=2d,share=0.25"


def parse_speed(text):
    if text == "max":
        return None
    value = text[:-1] if text.endswith("x") else text
    try:
        speed = float(value)
    except ValueError:
        speed = 0
    if not 0 < speed < math.inf:
        raise ValueError("--speed: expected a factor like '3600x' or 'max', got %r" % text)
    return speed


def main(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    from simulator import faults
    from simulator.fleet import DEFAULT_FLEET, Fleet, FleetError, load_fleet
    from simulator.progress import Progress
    try:
        duration = args.duration
        speed = parse_speed(args.speed)
        spec = faults.parse(DEFAULT_FAULTS if args.faults is None else args.faults)
        lines = load_fleet(args.fleet or DEFAULT_FLEET, args.devices)
        workdir = os.path.abspath(args.workdir)
        db = _database(args.db)
        report_path = os.path.abspath(args.report or os.path.join(workdir, "report.json"))
        linger = None
        if args.stay_online:
            async def linger(report):
                _write_report(report, report_path, out)
                out.write("the devices stay online, answering commands and repair requests, "
                          "until Ctrl-C\n")
                out.flush()
                await _signalled()
        fleet = Fleet(lines, workdir, duration, speed, args.broker, args.seed, spec, args.client,
                      progress=Progress(out), linger=linger, db=db)
    except (ValueError, OSError, RuntimeError, FleetError) as exc:
        err.write("tether simulate: %s\n" % exc)
        return 2
    _fresh(workdir, sqlite=db is None)
    out.write("simulating %d devices for %s of device time%s, faults: %s\n" % (
        sum(n for _, n, _ in lines), format_duration(duration),
        " at %sx" % args.speed.rstrip("x") if speed else " as fast as it goes",
        args.faults if args.faults is not None else DEFAULT_FAULTS))
    out.flush()
    try:
        report = asyncio.run(fleet.run())
    except FleetError as exc:
        err.write("tether simulate: %s\n" % exc)
        return 2
    if not args.stay_online:
        _write_report(report, report_path, out)
    if args.plots:
        from simulator.plots import write_plots
        for path in write_plots(fleet, args.plots):
            out.write("plot: %s\n" % path)
    look = "select device, count(*) from readings group by device"
    if db is None:
        out.write("readings, events and health: %s (SQLite; see docs/ingest.md)\n"
                  "report: %s\n"
                  "look:   sqlite3 %s \"%s\"\n" % (fleet.db_path, report_path, fleet.db_path, look))
    else:
        shown = hide_password(db)
        out.write("readings, events and health: %s (PostgreSQL; see docs/ingest.md)\n"
                  "report: %s\n"
                  "look:   psql %s -c \"%s\"\n" % (shown, report_path, shown, look))
    f = report["fleet"]
    return 1 if (f["lost"] or f["events_lost"] or f["lost_at_broker_batches"]
                 or f["events_lost_at_broker"]) else 0


def _write_report(report, path, out):
    from simulator.report import text
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)  # whole, for whoever waits for it (--stay-online)
    out.write("\n" + text(report) + "\n\n")
    out.flush()


async def _signalled():
    """Returns on Ctrl-C (SIGINT) or SIGTERM."""
    import signal
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _database(value):
    """None for the SQLite file in the workdir, or --db's database: a SQLite path, or a
    postgresql:// URL of a database that holds no devices (a new run starts from an empty
    database, and this command empties none). ValueError or RuntimeError saying why not."""
    if value is None:
        return None
    from ingest.url import BadURL, db_url
    try:
        backend, target = db_url(value)
    except BadURL as exc:
        raise ValueError("--db: %s" % exc)
    if backend == "sqlite":
        if os.path.exists(target):
            raise ValueError("--db: %s exists: a run starts from an empty database (remove "
                             "it, or name a new file)" % target)
        return os.path.abspath(target)
    from ingest.queries import device_count
    from ingest.store import open_store
    open_store(target).close()  # reachable, and of this ingest's layout (or made so)
    if device_count(target) > 0:
        raise ValueError("--db: %s holds the devices of an earlier run: a run starts from an "
                         "empty database (drop and create it)" % hide_password(target))
    return target


def _fresh(workdir, sqlite=True):
    """A new run starts from empty buffers and an empty database: removes what an earlier run
    left in workdir (only what a run writes there)."""
    import glob
    import shutil
    shutil.rmtree(os.path.join(workdir, "devices"), ignore_errors=True)
    for path in glob.glob(os.path.join(workdir, "fleet.sqlite*")) if sqlite else ():
        os.remove(path)


def add_command(sub):
    p = sub.add_parser("simulate", help="run a fleet of virtual appliances through the real "
                                        "agent, a broker and the reference ingest")
    p.add_argument("--fleet", metavar="FLEET.yaml", help="which profiles, how many, their ids "
                                                         "(default: examples/fleets/mixed.yaml)")
    p.add_argument("--devices", type=whole(1, 100000), metavar="N",
                   help="scale the fleet to N devices")
    p.add_argument("--duration", type=duration_arg(1000, 3650 * DAY), default="2d",
                   help="device time to simulate, 1s to 3650d (default 2d)")
    p.add_argument("--speed", default="6000x", help="device time per wall time, or max "
                                                    "(default 6000x)")
    p.add_argument("--broker", metavar="mqtt://HOST:PORT",
                   help="a broker to use instead of the embedded one")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", metavar="SPEC", help="what goes wrong (default: %s; '' for "
                                                    "none; see simulator/faults.py)"
                                                    % DEFAULT_FAULTS)
    p.add_argument("--report", metavar="report.json", help="where to write the report")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots there")
    p.add_argument("--workdir", default="tether-sim", metavar="DIR",
                   help="the devices' buffers and the database (default tether-sim)")
    p.add_argument("--db", metavar="FILE.sqlite|URL",
                   help="the ingest's database instead of WORKDIR/fleet.sqlite: a new SQLite "
                        "file, or a postgresql:// URL of an empty database")
    p.add_argument("--stay-online", action="store_true",
                   help="once device time is over and the report written, the devices stay "
                        "online (answering commands and other ingests' repair requests, not "
                        "sampling) until Ctrl-C or SIGTERM")
    p.add_argument("--client", choices=("mqtt", "paho"), default="mqtt",
                   help="the devices' MQTT client: the board's (default) or paho")
    p.set_defaults(func=main)
