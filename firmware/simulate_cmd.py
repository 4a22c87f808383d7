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
DEFAULT_CONSOLE = 8080  # --console without --console-port: this port, or a free one if taken


def parse_speed(text):
    if text == "max":
        return None
    value = text[:-1] if text.endswith("x") else text
    try:
        speed = float(value)
    except ValueError:
        speed = 0
    # below 0.01x an hour of device time takes four days of waiting: a typo, not a wish
    if not 0.01 <= speed < math.inf:
        raise ValueError("--speed: expected a factor of at least 0.01 like '3600x', or 'max', "
                         "got %r" % text)
    return speed


def parse_shard(text):
    """(i, n) from --shard I/N, I counted from 1."""
    i, slash, n = text.partition("/")
    if not slash or not text.isascii() or not i.strip().isdigit() or not n.strip().isdigit() \
            or not 1 <= int(i) <= int(n):
        raise ValueError("--shard: expected I/N with 1 <= I <= N (the first shard is 1/N), "
                         "got %r" % text)
    return int(i), int(n)


def shard_range(shard, devices):
    """[first, end) of the fleet's device indexes that shard (i, n) runs."""
    i, n = shard
    if n > devices:
        raise ValueError("--shard: %d shards of a fleet of %d devices: at most one shard per "
                         "device" % (n, devices))
    return devices * (i - 1) // n, devices * i // n


def main(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    from simulator import faults
    from simulator.fleet import DEFAULT_FLEET, Fleet, FleetError, load_fleet
    from simulator.progress import Progress
    from simulator.workers import WorkerFleet
    try:
        duration = args.duration
        speed = parse_speed(args.speed)
        spec = faults.parse(DEFAULT_FAULTS if args.faults is None else args.faults)
        if args.broker and any(kind == "restart" and o["count"] for kind, o in spec):
            raise ValueError("--faults: restart restarts the embedded broker, which --broker "
                             "replaces: leave restart out (or give restart:count=0)")
        shard = parse_shard(args.shard) if args.shard else None
        if shard and not (args.broker and args.db):
            raise ValueError("--shard: the shards of a fleet meet in one broker and one "
                             "database: give --broker and --db")
        lines = load_fleet(args.fleet or DEFAULT_FLEET, args.devices)
        faults.check(spec, [p for p, _, _ in lines])
        devices = sum(n for _, n, _ in lines)
        first, end = shard_range(shard, devices) if shard else (0, devices)
        workers = min(args.workers or os.cpu_count() or 1, end - first)  # a device at least
        workdir = os.path.abspath(args.workdir)
        db = _database(args.db, shared=bool(shard))
        report_path = os.path.abspath(args.report or os.path.join(workdir, "report.json"))
        linger = None
        consoles = []
        if args.stay_online or args.console:
            async def linger(report):
                _write_report(report, report_path, out)
                # Said now: after Ctrl-C the console they point at has closed.
                _closing(args, db, report_path, fleet.db_path, out)
                out.write("the devices stay online, answering commands and repair requests%s, "
                          "until Ctrl-C\n" % (" and the console stays open at %s" % consoles[0].url
                                               if consoles else ""))
                out.flush()
                await _signalled()
        options = dict(progress=Progress(out), linger=linger, db=db,
                       devices_range=(first, end),
                       # Shards each run an ingest, in one share group; the first does the
                       # faults that hit the whole fleet.
                       ingest_group="tether-sim" if shard else None,
                       fleet_faults=not shard or shard[0] == 1,
                       on_ready=_console_opener(args, consoles, out)
                       if args.console else None)
        if workers > 1:
            fleet = WorkerFleet(lines, workdir, duration, speed, args.broker, args.seed, spec,
                                args.client, workers=workers, **options)
        else:
            fleet = Fleet(lines, workdir, duration, speed, args.broker, args.seed, spec,
                          args.client, **options)
        if shard:
            from simulator.parts import check_shard
            check_shard(db, fleet.run_key(), first, end)
        if db is not None and "://" not in db:
            os.makedirs(os.path.dirname(db), exist_ok=True)  # as --report's and --plots' are
        if args.plots:
            from simulator import plots as plots_mod
            if not plots_mod.available():  # not once the run is over
                raise ValueError(plots_mod.NEEDS)
        # What would fail once the run began, said before the earlier run's files go: a run
        # that stopped there had deleted them first.
        writable_report(report_path, "--report" if args.report else "--workdir")
        if args.plots:
            writable_folder(args.plots, "--plots")
        if args.broker:
            _reachable(args.broker)
        if args.console and args.console_port:
            _bindable(args.console_port)
        # held until this process ends; shards share a workdir (their devices differ), a run
        # that empties it holds it alone
        lock = _lock(workdir, shared=bool(shard))
        if not shard:
            _check_workdir(workdir)
    except (ValueError, OSError, RuntimeError, FleetError) as exc:
        err.write("tether simulate: %s\n" % exc)
        return 2
    if not shard:
        _fresh(workdir, sqlite=db is None, report=report_path)
    out.write("simulating %s for %s of device time%s%s, faults: %s\n" % (
        "%d device%s" % (devices, "" if devices == 1 else "s") if not shard else "devices %d-%d of %d (shard %d/%d)" % (
            first + 1, end, devices, shard[0], shard[1]),
        format_duration(duration),
        " at %sx" % args.speed.rstrip("x") if speed else " as fast as it goes",
        " in %d processes" % workers if workers > 1 else "",
        (args.faults or "none") if args.faults is not None else DEFAULT_FAULTS))
    out.flush()
    run = fleet.run()
    import signal
    # SIGTERM (timeout, systemd, a CI job cancelled) stops the run as Ctrl-C does: the devices
    # and the ingest's broker session are closed, not left behind.
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = asyncio.run(run)
    except KeyboardInterrupt:
        run.close()  # Ctrl-C before the run began: it never will
        raise
    except FleetError as exc:
        err.write("tether simulate: %s\n" % exc)
        return 2
    finally:
        signal.signal(signal.SIGTERM, before)
        for server in consoles:
            server.stop()
    if shard:
        out.write("shard %d/%d: devices %d-%d ran; their part of the report is in %s. Once "
                  "every shard has run: tether report --db %s\n"
                  % (shard[0], shard[1], first + 1, end, hide_password(fleet.db_path),
                     hide_password(fleet.db_path)))
        _password_note(fleet.db_path, out)
        return 0
    if not (args.stay_online or args.console):  # written when the devices stayed online
        _write_report(report, report_path, out)
    if args.plots:
        plots(fleet.db_path, args.plots, out, fleet.run_key())
    if not (args.stay_online or args.console):
        _closing(args, db, report_path, fleet.db_path, out)
    return exit_status(report)


def _closing(args, db, report_path, db_path, out):
    """Where the run's data and report are, and how to look at them."""
    look = "select device, count(*) from readings group by device"
    if db is None or not db.startswith("postgres"):
        out.write("readings, events and health: %s (SQLite; see docs/ingest.md)\n"
                  "report: %s\n"
                  "look:   sqlite3 %s \"%s\"\n" % (db_path, report_path, db_path, look))
    else:
        shown = hide_password(db)
        out.write("readings, events and health: %s (PostgreSQL; see docs/ingest.md)\n"
                  "report: %s\n"
                  "look:   psql %s -c \"%s\"\n" % (shown, report_path, shown, look))
    if not args.console:    # its own console is open on it: a second would find the port taken
        out.write("see it: %s console --db %s%s    (in a browser; `tether simulate --console` "
                  "opens it live during a run)\n" % (
                      _tether(), _shell_word(hide_password(db_path)),
                      _broker_option(args.broker)))
    _password_note(db_path, out)


def _password_note(db, out):
    """The commands printed leave the URL's password out (***): how to give it to them."""
    if db and hide_password(db) != db:
        out.write("(the password is left out of these commands: give it in PGPASSWORD or "
                  "~/.pgpass, and leave it out of the URL)\n")


def _broker_option(url):
    """The run's --broker for the console's command line; one with a password (never printed)
    as a word to replace."""
    import shlex
    if not url:
        return ""
    return " --broker %s" % ("BROKER_URL" if hide_password(url) != url else shlex.quote(url))


def _tether():
    """How to run tether again from here: `tether` where that is this one on PATH, else the
    path this one was started by (a venv's bin/, not on PATH after the README's quickstart)."""
    import shutil
    started = sys.argv[0]
    if os.path.basename(started) != "tether":
        return "tether"
    found = shutil.which("tether")
    if found and os.path.realpath(found) == os.path.realpath(started):
        return "tether"
    return _shell_word(os.path.abspath(started))


def _shell_word(path):
    """path as a shell word, relative to here when it is below."""
    import shlex
    if not path.startswith("postgres") and not os.path.relpath(path).startswith(".."):
        path = os.path.relpath(path)
    return shlex.quote(path)


def _console_opener(args, consoles, out):
    """fn(host, port, db_path) that opens the console on the run's database and broker once
    both are up (Fleet's on_ready), on --console-port; without it on 8080, or on a free port
    when that one is taken."""
    def opener(host, port, db_path):
        from firmware.console_cmd import open_console
        from simulator.fleet import FleetError
        broker = args.broker or "mqtt://%s:%d" % (host, port)
        try:
            try:
                at = DEFAULT_CONSOLE if args.console_port is None else args.console_port
                server = open_console(db_path, "127.0.0.1", at, broker=broker)
            except OSError:
                if args.console_port is not None:  # the port asked for, or none
                    raise
                server = open_console(db_path, "127.0.0.1", 0, broker=broker)
        except (OSError, ValueError, RuntimeError) as exc:
            raise FleetError("--console: %s" % exc)
        consoles.append(server.start())
        out.write("console: %s  (live while the fleet runs)\n" % server.url)
        out.flush()
    return opener


def exit_status(report):
    """1 when a reading or an event was lost (at the broker too), or a device's agent stopped
    on an error, else 0."""
    f = report["fleet"]
    return 1 if (f["lost"] or f["events_lost"] or f["lost_at_broker_batches"]
                 or f["events_lost_at_broker"] or f.get("crashed")) else 0


def plots(db_path, outdir, out, run=None):
    from simulator import parts
    from simulator.plots import write_plots
    for path in write_plots(db_path, parts.load(db_path, run)[1], outdir):
        out.write("plot: %s\n" % path)


def _write_report(report, path, out, gap="\n"):
    """The report's text on out (set apart from the progress lines by gap), then its JSON at
    path: a path that fails then loses the file, not the report of a run of days."""
    from simulator.report import text
    out.write(gap + text(report) + "\n" + gap)
    out.flush()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)  # whole, for whoever waits for it (--stay-online)


async def _signalled():
    """Returns on Ctrl-C (SIGINT) or SIGTERM."""
    import signal
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    before = dict((sig, signal.getsignal(sig)) for sig in (signal.SIGINT, signal.SIGTERM))
    for sig in before:
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        for sig in before:
            loop.remove_signal_handler(sig)
            # what was there (SIGTERM stopping the teardown as Ctrl-C does), not the default
            signal.signal(sig, before[sig])


def _database(value, shared=False):
    """None for the SQLite file in the workdir, or --db's database: a SQLite path, or a
    postgresql:// URL of a database that holds no devices (a new run starts from an empty
    database, and this command empties none; the database of shards (`shared`) holds the
    devices of the shards before). ValueError or RuntimeError saying why not."""
    if value is None:
        return None
    from ingest.url import BadURL, db_url
    try:
        backend, target = db_url(value)
    except BadURL as exc:
        raise ValueError("--db: %s" % exc)
    if backend == "sqlite":
        if os.path.exists(target) and not shared:
            raise ValueError("--db: %s exists: a run starts from an empty database (remove "
                             "it, or name a new file)" % target)
        return os.path.abspath(target)
    from ingest.queries import device_count
    from ingest.store import open_store
    open_store(target).close()  # reachable, and of this ingest's layout (or made so)
    if device_count(target) > 0 and not shared:
        raise ValueError("--db: %s holds the devices of an earlier run: a run starts from an "
                         "empty database (drop and create it)" % hide_password(target))
    return target


def writable_report(path, option):
    """ValueError unless a file can be written at path (its folders made then): a report
    written after a run of days failed there with a traceback."""
    if os.path.isdir(path):
        raise ValueError("%s %s: a folder; name the file to write" % (option, path))
    writable_folder(os.path.dirname(path) or ".", option, path)


def writable_folder(folder, option, shown=None):
    """ValueError unless folder is, or could be made, a folder this process writes in: the
    nearest part of it that exists is a folder it may write in (nothing is made here)."""
    at = os.path.abspath(folder)
    while not os.path.lexists(at):
        at = os.path.dirname(at)
    if not os.path.isdir(at):
        raise ValueError("%s %s: %s is not a folder" % (option, shown or folder, at))
    if not os.access(at, os.W_OK | os.X_OK):
        raise ValueError("%s %s: the folder %s is not writable" % (option, shown or folder, at))


def _reachable(url):
    """ValueError unless --broker's host takes a TCP connection."""
    import socket
    from simulator.fleet import broker_address
    host, port = broker_address(url)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ValueError("cannot connect to the broker %s:%d: %s" % (
            host, port, exc.strerror or exc or "no answer in 5 s"))


def _bindable(port):
    """ValueError unless the console could bind port now (as its server binds: a port whose
    last connections wait out TIME_WAIT is free to it)."""
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ValueError("--console-port %d: %s" % (port, exc.strerror or exc))


# What a run writes in a device's folder (agent/log.py, agent/buffer.py): a workdir's
# `devices/` holding anything else is not an earlier run's, and is not removed.
_DEVICE_FILES = ("id", "state", "journal", "schema", "schemas", "events")


def _check_workdir(workdir):
    """ValueError when workdir's `devices/` holds what a run did not write there."""
    folder = os.path.join(workdir, "devices")
    if not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise ValueError("--workdir %s: devices is not a folder an earlier run made there; "
                             "give another --workdir" % workdir)
        return
    for device in os.listdir(folder):
        inside = os.path.join(folder, device)
        names = os.listdir(inside) if os.path.isdir(inside) and not os.path.islink(inside) \
            else None
        if names is None or any(n not in _DEVICE_FILES and not n.endswith((".seg", ".tmp"))
                                for n in names):
            raise ValueError("--workdir %s: %s is not what an earlier run left there (a run "
                             "starts by removing its devices/ folder): give another --workdir"
                             % (workdir, inside))


def _interrupt(signum, frame):
    """SIGTERM's handler: what Ctrl-C's does (asyncio's, which cancels the run), also where
    SIGINT is ignored (a job a script started in the background)."""
    import signal
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _lock(workdir, shared=False):
    """The open lock file of workdir; ValueError when another run holds it (two runs in one
    workdir removed each other's buffers and database, and both reported readings lost).
    shared: a shard's, which other shards may hold too."""
    import fcntl
    os.makedirs(workdir, exist_ok=True)
    f = open(os.path.join(workdir, ".lock"), "a+")
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        raise ValueError("another tether simulate%s is running in %s: wait for it to end, or "
                         "give another --workdir" % (" (pid %s)" % pid if pid.isdigit() else "",
                                                     workdir))
    f.truncate(0)       # a shard's says no pid: a plain run refused names none stale
    if not shared:
        f.write("%d\n" % os.getpid())
        f.flush()
    return f


def _fresh(workdir, sqlite=True, report=None):
    """A new run starts from empty buffers and an empty database: removes what an earlier run
    left in workdir (only what a run writes there), and the report it will write (an
    interrupted run left the one before beside its own database). A database given with --db
    is the user's: it is left as it is (a new run wants a new one)."""
    import glob
    import shutil
    shutil.rmtree(os.path.join(workdir, "devices"), ignore_errors=True)
    for path in glob.glob(os.path.join(workdir, "fleet.sqlite*")) if sqlite else ():
        os.remove(path)
    if report is not None and os.path.isfile(report):
        os.remove(report)


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
    p.add_argument("--seed", type=int, default=1, help="the run's seed: the same seed, fleet "
                   "and faults make the same appliances and faults (default 1)")
    p.add_argument("--faults", metavar="SPEC", help="what goes wrong (default: %s; '' for "
                                                    "none; the kinds and their keys: "
                                                    "docs/simulator.md, Faults)"
                                                    % DEFAULT_FAULTS)
    p.add_argument("--report", metavar="report.json", help="where to write the report")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots there")
    p.add_argument("--workdir", default="tether-sim", metavar="DIR",
                   help="the devices' buffers and the database (default tether-sim)")
    p.add_argument("--db", metavar="FILE.sqlite|URL",
                   help="the ingest's database instead of WORKDIR/fleet.sqlite: a new SQLite "
                        "file, or a postgresql:// URL of an empty database (with --shard: the "
                        "one all shards share)")
    p.add_argument("--stay-online", action="store_true",
                   help="once device time is over and the report written, the devices stay "
                        "online (answering commands and other ingests' repair requests, not "
                        "sampling) until Ctrl-C or SIGTERM")
    p.add_argument("--console", action="store_true",
                   help="open the fleet console (`tether console`) on this run, live; after the "
                        "report it stays open, the devices online, until Ctrl-C")
    p.add_argument("--console-port", type=whole(0, 65535), metavar="PORT",
                   help="the console's port on 127.0.0.1 (default: %d, or a free one when it "
                        "is taken; a port given here is that port or an error; 0: a free one)"
                        % DEFAULT_CONSOLE)
    p.add_argument("--client", choices=("mqtt", "paho"), default="mqtt",
                   help="the devices' MQTT client: the board's (default) or paho")
    p.add_argument("--workers", type=whole(1, 256), metavar="N",
                   help="processes the fleet is spread over, by ranges of device ids, on one "
                        "fleet clock (default: the number of cores, %d here; 1: this process "
                        "alone)" % (os.cpu_count() or 1))
    p.add_argument("--shard", metavar="I/N",
                   help="run the I-th of N ranges of the fleet's devices (I from 1), against "
                        "the shared --broker and --db of the other shards; then `tether report "
                        "--db` reports the whole fleet")
    p.set_defaults(func=main)
