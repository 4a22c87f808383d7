"""A throwaway PostgreSQL server on a free loopback port, for tests and benchmarks (host only).

    pg = Postgres().start()     # initdb into a temp folder, pg_ctl start
    pg.url                      # postgresql://tether@127.0.0.1:PORT/tether
    pg.restart()                # same port, same data (a database restarted under its clients)
    pg.stop()                   # and the temp folder is removed

Debian's binaries (package `postgresql`) live in /usr/lib/postgresql/VERSION/bin, not on PATH;
the newest version there is taken, else PATH. The server refuses to run as root, so as root
every server command runs as the unprivileged user `postgres` (`runuser -u postgres --`), which
owns the temp folder; the folder is made under the system temp folder, not inside one only root
may enter. Clients connect over TCP with `trust` authentication: it listens on 127.0.0.1 only.
fsync is off unless `durable=True`: tests need no crash safety, and a benchmark that compares
two writers on one server sees the same cost in both.
"""
import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SERVER_USER = "postgres"  # the unprivileged account Debian's package creates


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries (or the account to run them as root) are not there."""


def find_bin(name):
    """Path of a PostgreSQL server binary (initdb, pg_ctl): Debian's newest version, else PATH."""
    def version(path):
        try:
            return int(path.split("/")[-3])
        except ValueError:
            return -1

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name), key=version)
    if found:
        return found[-1]
    return shutil.which(name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One PostgreSQL server: `user` is its superuser (no password), `db` a database made for the
    caller. start/stop/restart/kill; `url` for clients; log() is the server's log."""

    def __init__(self, user="tether", db="tether", durable=False, settings=None):
        self.user = user
        self.db = db
        self.durable = durable
        self.settings = dict(settings or {})
        self.initdb = find_bin("initdb")
        self.pg_ctl = find_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise PostgresMissing("the PostgreSQL server is not installed (no initdb and pg_ctl "
                                  "in /usr/lib/postgresql/*/bin or PATH): apt-get install -y "
                                  "postgresql")
        self.as_user = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresMissing("as root the server must run as user %r, which does not "
                                      "exist: apt-get install -y postgresql creates it"
                                      % SERVER_USER)
            self.as_user = ["runuser", "-u", SERVER_USER, "--"]
        self.host = "127.0.0.1"
        self.port = None
        self.folder = None
        self.data = None
        self.log_path = None

    @property
    def url(self):
        return "postgresql://%s@%s:%d/%s" % (self.user, self.host, self.port, self.db)

    def _run(self, *args, timeout=120):
        proc = subprocess.run(self.as_user + list(args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError("%s failed (exit %d):\n%s%s\n%s"
                               % (" ".join(args[:2]), proc.returncode, proc.stdout, proc.stderr,
                                  self.log()))
        return proc.stdout

    def start(self, timeout=60.0):
        """initdb (first time only), start the server, create the database; returns self."""
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="tether-pg-")
            self.data = os.path.join(self.folder, "data")
            self.log_path = os.path.join(self.folder, "server.log")
            if self.as_user:
                account = pwd.getpwnam(SERVER_USER)
                os.chown(self.folder, account.pw_uid, account.pw_gid)
            atexit.register(self.stop)  # a caller that forgets, or fails before its own stop
            try:
                self._run(self.initdb, "-D", self.data, "-U", self.user, "--auth=trust",
                          "-E", "UTF8", "--no-locale", "--no-sync")
                self._configure()
                self._start(timeout)
                self._create_db()
            except BaseException:
                self.stop()
                raise
            return self
        self._start(timeout)
        return self

    def _configure(self):
        self.port = free_port()
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.folder,
            "max_connections": 50,
            "shared_buffers": "'64MB'",
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
        }
        settings.update(self.settings)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# tether lab\n")
            for key, value in settings.items():
                f.write("%s = %s\n" % (key, value))

    def _start(self, timeout):
        self._run(self.pg_ctl, "start", "-w", "-t", str(int(timeout)), "-D", self.data,
                  "-l", self.log_path, timeout=timeout + 10)

    def _create_db(self):
        import psycopg
        with psycopg.connect("postgresql://%s@%s:%d/postgres" % (self.user, self.host, self.port),
                             autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % self.db)

    @property
    def running(self):
        if self.data is None:
            return False
        return subprocess.run(self.as_user + [self.pg_ctl, "status", "-D", self.data],
                              capture_output=True, stdin=subprocess.DEVNULL).returncode == 0

    def restart(self, pause=0.0):
        """Stops the server (fast: clients are disconnected), waits `pause` seconds, starts it
        again on the same port with the same data."""
        self.halt()
        time.sleep(pause)
        return self.start()

    def halt(self, mode="fast"):
        """Stops the server and keeps its data (start() brings it back)."""
        if self.running:
            self._run(self.pg_ctl, "stop", "-w", "-m", mode, "-D", self.data)

    def stop(self):
        """Stops the server (immediately: nothing here needs a clean shutdown) and removes the
        temp folder."""
        if self.folder is None:
            return
        try:
            self.halt("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
