"""Fixtures for the console's tests in a real browser (loaded from tests/conftest.py as a plugin).

- `browser`: Debian's chromium, headless, driven by Playwright's sync API; one per test module.
  Not one per session: between its calls Playwright's sync API marks its own event loop as the
  running one in the main thread (playwright/_impl/_greenlets.py, wait_for_future), so as long
  as it is open every asyncio.run() in that process fails ("cannot be called from a running
  event loop"), and under xdist a worker runs other modules' tests, the simulator's among them,
  after the console's. So a module that uses it must not call asyncio.run() itself.
- `page`: a page in a fresh browser context (no cookies from other tests) for one test.
- `screenshot(page, name)`: a full-page PNG in test-artifacts/console/NAME.png, for a human to
  look at after a run.
- `console_server(db, ...)`: `tether console` in a subprocess for the length of a `with` block.
- `simulated_fleet`: the path of a SQLite database filled by a real `tether simulate` run;
  `simulated_fleet_postgres`: the URL of a PostgreSQL database holding the same fleet. Each is
  made once per test run, also under pytest-xdist. Tests must not write to them.

A missing chromium or Playwright fails the test (never a skip: a green suite must mean a real
browser loaded the pages). When a test that used a page fails, what the page wrote to its
console and the errors it raised are added to its report.
"""
import contextlib
import fcntl
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"
LIVENESS_S = 60  # generous: only a broken program takes this long
SYSTEM_DEPS = "run tests/system-deps (as root it installs what is missing)"

# What a browser needs on a build machine: no sandbox as root (chromium refuses to start
# otherwise), no GPU, no network of its own (updates, sync, QUIC probes), and /tmp rather than
# a container's small /dev/shm for its shared memory.
CHROMIUM_ARGS = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

# The fleet the console's tests look at: every kind of device, with the insights the console
# shows. Seed 58 (among 200 tried with simulator.insight_run, which runs the same detectors on
# the same models in a second) gives, in 3 days, 5 reorders, 2 empty cartridges and one replaced,
# a dose missed, 26 taken, an extra dose, a refill, 152 cycles and 11 energy reports. A run takes
# 26 to 68 s on 2 cores shared with other work (load 4-8), into SQLite or PostgreSQL. No
# maintenance_due: a washer learns its baseline over 8 washes and a motor starts to degrade a
# week in at the soonest, so the earliest found among 6,000 seeds comes on day 13, and 14 days of
# even a 5-device fleet took 213 s on the same machine.
FLEET = ROOT / "tests" / "data" / "console-fleet.yaml"
SIMULATE = ["--fleet", str(FLEET), "--seed", "58", "--duration", "3d", "--speed", "max"]
SIMULATE_TIMEOUT_S = 900


def chromium_path():
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: pip install -e '.[test]'; and for its browser, "
                    + SYSTEM_DEPS)
    path = chromium_path()
    if path is None:
        pytest.fail("Debian's chromium is not installed (no /usr/bin/chromium, none on PATH): "
                    + SYSTEM_DEPS)
    args = (["--no-sandbox"] if os.geteuid() == 0 else []) + CHROMIUM_ARGS
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(request, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log = request.node._browser_log = []
    page.on("console", lambda msg: log.append("console.%s: %s" % (msg.type, msg.text)))
    page.on("pageerror", lambda exc: log.append("page error: %s" % exc))
    yield page
    context.close()


def screenshot(page, name):
    """Saves the whole page as test-artifacts/console/NAME.png; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (name + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


class Console:
    """A running `tether console`: `url` (no token, no trailing slash), `token`, `proc`."""

    def __init__(self, proc, stderr):
        self.url = self.token = None  # from its first line
        self.proc = proc
        self._stderr = stderr

    @property
    def login_url(self):
        """The URL the console printed: opening it sets the token's cookie."""
        return "%s/?token=%s" % (self.url, urllib.parse.quote(self.token))

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")


@contextlib.contextmanager
def console_server(db, broker=None, host="127.0.0.1", token=None, extra_args=()):
    """`tether console --db DB --port 0` until the block ends (SIGTERM, then kill). Waits for
    its first line and for GET /healthz; raises with its standard error if it exits first."""
    args = [sys.executable, "-m", "firmware.cli", "console", "--db", str(db),
            "--host", host, "--port", "0"]
    if broker is not None:
        args += ["--broker", broker]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TETHER_CONSOLE_TOKEN", None)
    if token is not None:
        env["TETHER_CONSOLE_TOKEN"] = token  # not --token: that one is in `ps`
    args += list(extra_args)
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, cwd=ROOT, env=env)
        console = Console(proc, stderr)
        try:
            console.url, console.token = _listening(console)
            _wait_healthy(console)
            yield console
        finally:
            _stop(proc)


def _listening(console):
    """(base URL, token) from the console's first line; its stdout is read on to the end, so
    that what it prints later never fills the pipe."""
    lines = queue.Queue()

    def read():
        for line in console.proc.stdout:
            lines.put(line.decode("utf-8", "replace"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + LIVENESS_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            _check_running(console, "before printing its URL")
            continue
        if not line.startswith("console: http"):
            raise AssertionError("tether console's first line is not 'console: URL': %r\n"
                                 "stderr:\n%s" % (line, console.stderr()))
        parts = urllib.parse.urlsplit(line.split(None, 1)[1].strip())
        token = urllib.parse.parse_qs(parts.query).get("token", [None])[0]
        return "%s://%s" % (parts.scheme, parts.netloc), token
    raise AssertionError("tether console printed no URL in %d s; stderr:\n%s"
                         % (LIVENESS_S, console.stderr()))


def _wait_healthy(console):
    deadline = time.monotonic() + LIVENESS_S
    while time.monotonic() < deadline:
        _check_running(console, "before answering /healthz")
        try:
            with urllib.request.urlopen(console.url + "/healthz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("tether console did not answer GET /healthz in %d s; stderr:\n%s"
                         % (LIVENESS_S, console.stderr()))


def _check_running(console, when):
    if console.proc.poll() is not None:
        raise AssertionError("tether console exited (code %d) %s; stderr:\n%s"
                             % (console.proc.returncode, when, console.stderr()))


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _once(tmp_path_factory, name, make):
    """A folder of the run's shared temp dir, filled by make(folder) by the first test of any
    xdist worker that asks for it; the others wait on its lock and find it done. A failure is
    kept there too, so that the other workers fail at once with the same message. Each one made
    is a line of the shared made.log: which worker, how long."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' temp dirs are all in the run's own one
    folder = base / name
    with open(base / (name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done, failed = folder / "done", folder / "failed"
        if failed.exists():
            pytest.fail(failed.read_text())
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            started = time.monotonic()
            try:
                make(folder)
            except BaseException as exc:
                failed.write_text(str(exc) or repr(exc))
                raise
            done.touch()
            with open(base / "made.log", "a") as log:
                log.write("%s made by %s in %.1f s\n" % (
                    name, os.environ.get("PYTEST_XDIST_WORKER", "pytest"),
                    time.monotonic() - started))
    return folder


def _simulate(folder, db):
    """A `tether simulate` of FLEET into db; its output goes to folder/simulate.log."""
    log = folder / "simulate.log"
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", *SIMULATE,
                               "--workdir", str(folder / "work"), "--db", str(db)],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              timeout=SIMULATE_TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError("tether simulate %s exited %d:\n%s" % (
            " ".join(SIMULATE), proc.returncode, log.read_text(errors="replace")[-20000:]))


@pytest.fixture(scope="session")
def simulated_fleet(tmp_path_factory):
    """The path of the SQLite file of a real `tether simulate` run of FLEET (read-only)."""
    folder = _once(tmp_path_factory, "simulated_fleet",
                   lambda folder: _simulate(folder, folder / "fleet.sqlite"))
    return str(folder / "fleet.sqlite")


@pytest.fixture(scope="session")
def simulated_fleet_postgres(tmp_path_factory, postgres):
    """The URL of a database on the session's PostgreSQL server holding a real `tether
    simulate` run of FLEET (read-only). The run is made once, into the first worker's server,
    and dumped; every other worker restores the dump into its own server."""
    import psycopg
    from simulator.lab.postgres import find_bin
    name = "simulated_fleet"
    url = "postgresql://%s@%s:%d/%s" % (postgres.user, postgres.host, postgres.port, name)

    def create():
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % name)

    def make(folder):
        create()
        _simulate(folder, url)
        _run_tool(find_bin("pg_dump"), "--format=custom", "--no-owner",
                  "--file", str(folder / "fleet.dump"), url)

    folder = _once(tmp_path_factory, "simulated_fleet_postgres", make)
    with psycopg.connect(postgres.url) as conn:
        there = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not there:
        create()
        _run_tool(find_bin("pg_restore"), "--no-owner", "--dbname", url, str(folder / "fleet.dump"))
    return url


def _run_tool(*args):
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=LIVENESS_S * 5)
    if proc.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(args), proc.returncode,
                                                      proc.stdout, proc.stderr))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    log = getattr(item, "_browser_log", None)
    if report.when == "call" and report.failed and log:
        report.sections.append(("browser console", "\n".join(log[-200:])))
