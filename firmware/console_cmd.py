"""`tether console`: the fleet console (console/) in a browser, until Ctrl-C or SIGTERM.

    tether console --db tether-sim/fleet.sqlite
    tether console --db postgresql://tether@db/fleet --broker mqtt://broker:1883 --host 0.0.0.0

See docs/console.md.
"""
import os
import sys

from firmware.args import seconds
from ingest.url import BadURL, db_url, hide_password, parse_broker


def add_arguments(p):
    p.add_argument("--db", default=os.path.join("tether-sim", "fleet.sqlite"),
                   metavar="FILE.sqlite|URL",
                   help="the ingest's database: a SQLite file or a postgresql:// URL "
                        "(default: %(default)s, the simulator's)")
    p.add_argument("--broker", metavar="URL",
                   help="mqtt://host[:port] or mqtts://host[:port]: where commands to devices "
                        "go (without it the console only shows)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate(s) for mqtts:// (default: the "
                                                "system's)")
    p.add_argument("--username", help="broker user name (or in --broker's URL)")
    p.add_argument("--password-env", metavar="VAR",
                   help="the environment variable that holds the broker password (a password "
                        "in --broker's URL is in `ps` for every user)")
    p.add_argument("--prefix", default="tether/v1", help="topic prefix (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default: %(default)s; any other address "
                        "needs the token for every page)")
    p.add_argument("--port", type=_port, default=8080,
                   help="the port (default: %(default)s; 0: a free one)")
    p.add_argument("--token", help="the access token (default: TETHER_CONSOLE_TOKEN, else a "
                                   "new random one, printed in the URL); on the command line "
                                   "it is in `ps` for every user: prefer the variable")
    p.add_argument("--behind-proxy", action="store_true",
                   help="a reverse proxy on this machine serves the console (over TLS): every "
                        "page needs the token, also on 127.0.0.1 (docs/console.md)")
    p.add_argument("--silent", type=seconds(60), default=7200.0, metavar="SECONDS",
                   help="a device heard from longer ago than this needs someone (default: "
                        "%(default)s, 2 h)")


def _port(text):
    import argparse
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError("expected a port from 0 to 65535, got %r" % text)
    return int(text)


def add_command(sub):
    p = sub.add_parser("console", help="the fleet console: what needs someone, the fleet, each "
                                       "device, live, in a browser")
    add_arguments(p)
    p.set_defaults(func=main)


def open_console(db, host, port, token=None, broker=None, prefix="tether/v1", ca=None,
                 silent_s=None, behind_proxy=False):
    """A console.server.Server on db, its database's layout brought up to date; ValueError or
    OSError saying what is wrong."""
    from console.server import Server, prepare
    backend, target = db_url(db)
    if backend == "sqlite" and not os.path.exists(target):
        raise ValueError("%s: no such database (run `tether simulate` or `tether ingest` "
                         "first, or give --db)" % target)
    if broker:
        parse_broker(broker)
    token = token or os.environ.get("TETHER_CONSOLE_TOKEN") or None
    if token is not None and not (8 <= len(token) <= 128 and token.isprintable()
                                  and " " not in token):
        raise ValueError("a token is 8 to 128 printable characters without spaces")
    prepare(db)
    return Server(db, host=host, port=port, token=token, broker=broker, prefix=prefix, ca=ca,
                  silent_ms=None if silent_s is None else int(silent_s * 1000),
                  behind_proxy=behind_proxy)


def with_login(url, username=None, password=None):
    """The broker URL with a user name and password given apart from it (to the console only:
    never printed), as tether ingest takes them."""
    from urllib.parse import quote
    b = parse_broker(url)
    user = username if username is not None else b.username
    if password is not None and user is None:
        raise ValueError("--password-env needs a user name: --username, or user@ in --broker")
    password = password if password is not None else b.password
    login = "" if user is None else quote(user, safe="") + (
        "" if password is None else ":" + quote(password, safe="")) + "@"
    host = "[%s]" % b.host if ":" in b.host else b.host
    return "%s://%s%s:%d" % ("mqtts" if b.tls else "mqtt", login, host, b.port)


def main(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    broker = args.broker
    if args.token:
        # Anyone on the machine who reads it can send commands to the fleet.
        err.write("tether console: warning: --token is in `ps` for every user of this machine; "
                  "TETHER_CONSOLE_TOKEN is not\n")
    try:
        if broker and (args.username is not None or args.password_env):
            if args.password_env and args.password_env not in os.environ:
                raise ValueError("the environment variable %s is not set" % args.password_env)
            broker = with_login(broker, args.username, os.environ.get(args.password_env)
                                if args.password_env else None)
        elif args.username is not None or args.password_env:
            raise ValueError("--username and --password-env go with --broker")
        server = open_console(args.db, args.host, args.port, args.token, broker,
                              args.prefix, args.ca, args.silent, args.behind_proxy)
    except (BadURL, ValueError) as exc:
        err.write("tether console: %s\n" % exc)
        return 2
    except RuntimeError as exc:  # the database (not there, not the ingest's), as tether ingest
        err.write("tether console: %s\n" % exc)
        return 1
    except OSError as exc:
        err.write("tether console: cannot listen on %s:%d: %s\n"
                  % (args.host, args.port, exc.strerror or exc))
        return 2
    out.write("console: %s\n" % server.url)
    out.flush()
    err.write("serving %s%s until Ctrl-C\n" % (
        hide_password(args.db), "" if args.broker else " (no --broker: commands are off)"))
    err.flush()
    server.run()
    return 0
