"""`tether ingest`: the reference ingest (the ingest package) on its own, until Ctrl-C.

    tether ingest --broker mqtt://localhost:1883 --db fleet.sqlite
    tether ingest --broker mqtts://broker.example:8883 --ca ca.pem --username ingest \\
        --password-env INGEST_PASSWORD --db fleet.sqlite

Several processes with the same --group split the fleet between them and may share one --db.
See docs/ingest.md.
"""
import argparse
import logging
import os
import signal
import sys
import threading
import time

from firmware.args import seconds
from ingest.url import BadURL, db_url, hide_password, parse_broker


def add_arguments(p):
    p.add_argument("--broker", required=True, metavar="URL",
                   help="mqtt://host[:port] or mqtts://host[:port] (TLS, verified)")
    p.add_argument("--db", required=True, metavar="FILE.sqlite|URL",
                   help="the SQLite file (created when missing; processes may share it), or a "
                        "postgresql:// URL")
    p.add_argument("--group", metavar="NAME",
                   help="split the fleet between the processes of this group (a shared "
                        "subscription): NOT safe across a broker restart, see below (default: "
                        "plain subscriptions, one process)")
    # Plain subscriptions became the default: scripts written for the old default still run.
    p.add_argument("--no-share", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="tether/v1", help="topic prefix (default: %(default)s)")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password", help="broker password (visible to `ps`: prefer --password-env)")
    p.add_argument("--password-env", metavar="VAR",
                   help="read the broker password from this environment variable")
    p.add_argument("--ca", metavar="FILE", help="CA certificate(s) for mqtts:// (default: the "
                                                "system's)")
    p.add_argument("--cert", metavar="FILE", help="client certificate, for mutual TLS")
    p.add_argument("--key", metavar="FILE", help="client certificate's key")
    p.add_argument("--client-id", metavar="ID",
                   help="MQTT client id (default: fixed per process slot, so that a restarted "
                        "ingest resumes its session)")
    p.add_argument("--clean-session", action="store_true",
                   help="no persistent session: nothing is queued for this process while it is "
                        "down or the broker restarts (loses data; see below)")
    p.add_argument("--hold", type=seconds(0), default=60.0, metavar="SECONDS",
                   help="how long a compact batch waits for its schema before it is counted as "
                        "undecodable (default: %(default)s)")
    p.add_argument("--ack-on-receipt", action="store_true",
                   help="acknowledge each message as it arrives, not once it is stored: no "
                        "backlog on the broker (whose queue per client is bounded), but what is "
                        "not yet stored is lost if this process dies")
    p.add_argument("--no-repair", action="store_true",
                   help="do not ask devices to re-send missing batches and events (repair needs "
                        "every batch of a device in this one --db)")
    p.add_argument("--repair-grace", type=float, default=10.0, metavar="SECONDS",
                   help="how long a gap waits before it is asked for: a batch may still be on "
                        "its way (default: %(default)s)")
    p.add_argument("--repair-interval", type=float, default=5.0, metavar="SECONDS",
                   help="at least this long between two requests to one device, which has one "
                        "outstanding at a time (default: %(default)s)")
    p.add_argument("--repair-reask", type=float, default=60.0, metavar="SECONDS",
                   help="a range asked for and still missing is asked again after this "
                        "(default: %(default)s)")
    p.add_argument("--repair-rate", type=float, default=10.0, metavar="PER_SECOND",
                   help="requests per second for the whole fleet, shared by the processes of "
                        "one --db (default: %(default)s)")
    p.add_argument("--repair-burst", type=int, default=50, metavar="N",
                   help="requests the fleet-wide rate lets through at once (default: "
                        "%(default)s)")
    p.add_argument("--every", type=seconds(0.1), default=5.0, metavar="SECONDS",
                   help="progress line interval (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


SAFE_MODES = """\
which mode is safe where (measured: bench/broker_restart.py, docs/ingest.md):
  The default, plain subscriptions with a persistent session (one process), loses nothing
  across a restart (SIGTERM) of mosquitto with persistence on. A SIGKILL, or a broker without
  persistence, loses what it held in memory (every mode does), and so does any restart of
  rumqttd (`tether simulate`'s embedded broker): repair (on unless --no-repair) asks the
  devices for it again.
  --group (a shared subscription) loses on mosquitto 2.0.11 what is published after a restart
  and before the ingest is back, and on rumqttd stops the devices' publishes from being
  acknowledged while the group has no member online. Use it only on a broker that never
  restarts, or one documented to keep shared subscriptions across restarts.
  --clean-session loses everything published while the ingest is not connected.
"""


def add_command(sub):
    p = sub.add_parser("ingest", help="the reference ingest: batches, events and health from the "
                                      "broker into SQLite or PostgreSQL, until Ctrl-C",
                       description="The reference ingest: batches, events and health from the "
                                   "broker into SQLite or PostgreSQL, until Ctrl-C.",
                       epilog=SAFE_MODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=main)
    return p


def _line(stats, devices, rate=None):
    return ("%d messages%s, %d batches, %d readings, %d duplicates, %d malformed, %d held, "
            "%d repair requests, %d batches repaired, %s" % (
                stats["messages"], " (%.0f/s)" % rate if rate is not None else "",
                stats["batches"], stats["readings"], stats["duplicates"], stats["malformed"],
                stats["held"], stats["requests"], stats["repaired"],
                "%d devices in the database" % devices if devices >= 0
                else "the database cannot be read just now"))


MAX_DEVICE_LINES = 20


def per_device(db_path, out):
    """The file's devices: received, repaired, lost at the broker, dropped by the device (all of
    them when few, else those with anything repaired, lost or dropped)."""
    from ingest.queries import summary

    rows = summary(db_path)
    shown = rows if len(rows) <= MAX_DEVICE_LINES else {
        k: v for k, v in rows.items()
        if v["repaired"] or v["lost_at_broker"] or v["dropped_by_device"] or v["open"]}
    if not shown:
        return
    out.write("%-24s %10s %10s %10s %10s %8s %8s %8s\n" % (
        "device", "batches", "readings", "repaired", "(readings)", "lost at", "dropped", "open"))
    # the database's counts, not this process's (a group's members share them; retention
    # lowers them)
    out.write("%-24s %10s %10s %10s %10s %8s %8s %8s\n" % (
        "", "stored", "stored", "batches", "", "broker", "by dev.", "gaps"))
    for k, (device, v) in enumerate(sorted(shown.items())):
        if k == MAX_DEVICE_LINES:
            out.write("... and %d more devices (ingest.summary, docs/ingest.md)\n"
                      % (len(shown) - k))
            break
        out.write("%-24s %10d %10d %10d %10d %8d %8d %8d\n" % (
            device[:24], v["batches"], v["readings"], v["repaired"], v["repaired_readings"],
            v["lost_at_broker"], v["dropped_by_device"], v["open"]))


def _sqlite_file(path):
    """Whether the file at path is empty or starts as a SQLite database does (its header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return True     # the store says why it cannot open it
    return not head or head == b"SQLite format 3\0"


def main(args, out=sys.stdout, err=sys.stderr):
    from ingest import Ingest, totals
    from ingest.handlers import one_line
    from ingest.subscriber import TLSFileError
    from ingest.queries import device_count
    from ingest.repair import Policy

    try:
        host, port, tls, user, password = parse_broker(args.broker)
    except BadURL as exc:
        err.write("tether ingest: %s\n" % exc)
        return 2
    try:
        backend, target = db_url(args.db)
    except BadURL as exc:
        err.write("tether ingest: --db: %s\n" % exc)
        return 2
    folder = os.path.dirname(os.path.abspath(target))
    if backend == "sqlite" and os.path.isfile(target) and not _sqlite_file(target):
        err.write("tether ingest: --db: %s is not a SQLite database\n" % target)
        return 2
    if backend == "sqlite" and target != ":memory:" and not os.path.isdir(folder):
        # an option that cannot work, as a folder given for the file is (tether simulate makes
        # the folder of its own database; an ingest's is the user's to choose)
        err.write("tether ingest: --db: there is no folder %s to make %s in\n"
                  % (folder, os.path.basename(target)))
        return 2
    user = args.username if args.username is not None else user
    if args.password_env:
        if args.password_env not in os.environ:
            err.write("tether ingest: the environment variable %s is not set\n" % args.password_env)
            return 2
        password = os.environ[args.password_env]
    elif args.password is not None:
        password = args.password
    if (args.ca or args.cert or args.key) and not tls:
        err.write("tether ingest: --ca, --cert and --key need an mqtts:// broker\n")
        return 2
    if bool(args.cert) != bool(args.key):
        err.write("tether ingest: --cert and --key go together\n")
        return 2
    try:
        policy = None if args.no_repair else Policy(
            grace=args.repair_grace, interval=args.repair_interval, reask=args.repair_reask,
            rate=args.repair_rate, burst=args.repair_burst)
    except ValueError as exc:
        err.write("tether ingest: %s\n" % exc)
        return 2
    tls_option = None
    if tls:
        tls_option = {"ca": args.ca, "cert": args.cert, "key": args.key} if (
            args.ca or args.cert) else True
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=err,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ingest = Ingest(host, port, args.db, group=args.group, prefix=args.prefix,
                        client_id=args.client_id, username=user, password=password,
                        tls=tls_option, persistent=not args.clean_session, hold_timeout=args.hold,
                        ack_after_store=not args.ack_on_receipt,
                        repair=policy or False)
    except ValueError as exc:  # a group or prefix with wildcards, an id MQTT cannot carry
        err.write("tether ingest: %s\n" % exc)
        return 2
    stopping = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (embedded): Ctrl-C is the caller's business
            pass
    try:
        try:
            ingest.start()
        except TLSFileError as exc:     # an option that cannot work, as a bad --db is
            err.write("tether ingest: %s\n" % exc)
            return 2
        except (RuntimeError, OSError) as exc:  # the broker, the database
            err.write("tether ingest: %s\n" % exc)
            return 1
        out.write("ingest %s: %s:%d%s, %s, prefix %s, into %s (Ctrl-C stops)\n" % (
            ingest.client_id, host, port, " (TLS)" if tls else "",
            "group " + args.group if args.group else "plain subscriptions", args.prefix,
            hide_password(args.db)))
        out.flush()
        last, last_t = 0, time.monotonic()
        while not stopping.wait(args.every):
            if args.quiet:
                continue
            s = ingest.stats()
            now = time.monotonic()
            rate = (s["messages"] - last) / max(now - last_t, 1e-6)
            last, last_t = s["messages"], now
            out.write("ingest: %s\n" % _line(s, device_count(args.db), rate))
            out.flush()
        ingest.stop()
        s = ingest.stats()
        try:
            t = totals(args.db)
            per_device(args.db, out)
        except Exception as exc:  # noqa: BLE001 - the totals are a courtesy; the stop is not
            # (StoreError at the open, a backend's OperationalError at a query)
            # A stop while the database is away (a routine one, under systemd) ended in a
            # traceback and exit 1.
            out.write("stopped: %s: %s\n" % (_line(s, -1), one_line(exc)))
            out.flush()
            return 0
        out.write("stopped: %s; in the database: %d batches, %d readings, %d missing in gaps, "
                  "%d malformed, %d batches repaired, %d lost at the broker, %d dropped by "
                  "devices\n" % (_line(s, t["devices"]), t["batches"], t["readings"],
                                 t["missing"], t["malformed"], t["repaired"],
                                 t["lost_at_broker"], t["dropped_by_device"]))
        out.flush()
        return 0
    finally:
        ingest.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

