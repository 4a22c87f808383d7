"""The console served by uvicorn on a socket of its own (so that port 0 can pick a free port and
the printed URL says which), in this thread until a signal, or in a thread beside a simulation."""
import ipaddress
import secrets
import socket
import threading
from urllib.parse import quote

import uvicorn

from console.app import Console, make_app
from console.commands import Commander
from ingest.store import open_store

LOOPBACK = ("localhost",)


def is_loopback(host):
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare(db_url):
    """Checks that db_url holds an ingest's database (the console never makes one: a typo in a
    URL must not fill an empty PostgreSQL database with tables) and brings an older one's layout
    up to date (the console keeps its acknowledgements in it); RuntimeError saying why not."""
    db = open_store(db_url, timeout=10.0, create=False)
    try:
        try:
            db.execute("SELECT count(*) FROM devices").fetchone()
        except Exception as exc:  # noqa: BLE001 - any backend's error, told apart below
            # SQLite's "no such table", PostgreSQL's UndefinedTable: not an ingest's. Anything
            # else (a lock another session holds past the timeout) is said as it is.
            if "no such table" in str(exc) or type(exc).__name__ == "UndefinedTable":
                raise RuntimeError("%s holds no Tether ingest database: run `tether ingest` "
                                   "or `tether simulate` on it first" % db.name(db_url)) from None
            raise RuntimeError("%s cannot be read: %s" % (db.name(db_url),
                                                          " ".join(str(exc).split()))) from None
    finally:
        db.close()
    open_store(db_url, timeout=10.0).close()  # migrates an older layout, refuses a newer one


class Server:
    """The console on host:port (0: a free one); url holds the address with the token."""

    def __init__(self, db_url, host="127.0.0.1", port=8080, token=None, broker=None,
                 prefix="tether/v1", ca=None, silent_ms=None, behind_proxy=False):
        self.token = token or secrets.token_urlsafe(18)
        self.commander = Commander(broker, prefix, ca).start() if broker else None
        options = {} if silent_ms is None else {"silent_ms": silent_ms}
        # Behind a reverse proxy on this machine every request comes from loopback, whoever
        # sent it to the proxy: pages need the token there too.
        self.console = Console(db_url, self.token,
                               open_access=is_loopback(host) and not behind_proxy,
                               commander=self.commander, **options)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            self.stop_commander()
            raise
        self.sock.listen(128)
        bound = self.sock.getsockname()[1]
        if host in ("0.0.0.0", "::", ""):
            # every address: a link to 0.0.0.0 opens nowhere else; this machine's name does
            host = socket.gethostname()
        shown = "[%s]" % host if ":" in host else host
        # quoted: a token with + or # opened as another one, and the link gave a 401
        self.url = "http://%s:%d/?token=%s" % (shown, bound, quote(self.token, safe=""))
        self.console.cookie = "tether_console_%d" % bound
        # X-Forwarded-Proto and -For are taken from a proxy on this machine only (uvicorn's
        # rule): a command's Origin is then checked against https:// as the browser sent it.
        config = uvicorn.Config(make_app(self.console), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1,
                                proxy_headers=True, forwarded_allow_ips="127.0.0.1,::1")
        self.uvicorn = uvicorn.Server(config)
        self.console.stopping = lambda: self.uvicorn.should_exit
        self._thread = None

    def run(self):
        """Serves until SIGINT or SIGTERM."""
        try:
            self.uvicorn.run(sockets=[self.sock])
        finally:
            self.close()

    def start(self):
        """Serves in a thread (beside a simulation) until stop()."""
        self._thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="tether-console", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
        self.close()

    def close(self):
        self.sock.close()
        self.stop_commander()

    def stop_commander(self):
        if self.commander is not None:
            self.commander.stop()
