"""Page load time and payload of the fleet console (`tether console`), in headless Chromium.

    python3 bench/console.py            (SQLite and PostgreSQL, 1,000 and 10,000 devices)
    python3 bench/console.py --quick    (1,000 devices, SQLite and PostgreSQL)

For each database, a synthetic fleet (bench/console_fleet.py: N devices 30 days in, one device
per kind with its whole month of readings) is written in the ingest's layout, `tether console
--db DB --port 0` is started on it, and Debian's chromium (Playwright, headless) loads its pages:
"actions needed" (`/`), "fleet" (`/fleet`) and a device with 30 days of data
(`/device/printer-00001?span=30d`, the washer's too). Each page is loaded once cold (a fresh
browser context: empty cache; the first time the console serves that page) and then WARM times
again (a context loaded once before: its cache filled), in rounds interleaved with the
baseline's; the figures are the cold load and the median warm one:

- FCP: first contentful paint (the paint timing entry), from navigation start.
- ready: when `document.body.dataset.ready` became "1" (the page sets it once its content and
  charts are drawn), from navigation start: seen by a MutationObserver installed before the
  page's own scripts run.
- server: the document's time to first byte (request sent to first byte back): the console's
  queries and templating for that page; cold, and the best of the warm loads (the least
  disturbed by other work on the machine).
- bytes: transferred (transferSize: headers and compressed bodies) and decoded, summed over the
  document and every resource it loaded by the time it was ready; and the requests.

First render: the later of FCP and ready (the page sets ready in the frame before a paint).

Baseline, in the same run and the same browser: each page's bytes (its HTML and every resource
it loaded, saved from the console's own answers, uncompressed) served as static files by Python's
http.server on loopback, loaded the same way: what the browser and loopback cost for the same
bytes with no database, no templating and no app server (the page's scripts run and draw as on
the console). For a page with charts, the same again without the charts' data (nothing drawn)
and without Chart.js too: what parsing Chart.js and drawing the charts cost the browser.
Target (issue 12): first render of the cold load under 1 s for 1,000 devices.

Pages are judged on this machine as it is (2 cores shared with other work): run it alone, under
`nice` if others work. Needs Debian's chromium and postgresql (tests/system-deps).
"""
import argparse
import http.server
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402
from bench import console_fleet  # noqa: E402

TARGET_S = 1.0
TARGET_DEVICES = 1000
WARM = 5
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
START_S = 60  # the console's first line and /healthz
LOAD_S = 60  # one page until ready
PAGES = (("actions needed", "/"), ("fleet", "/fleet"),
         ("printer, 30 days", "/device/%s?span=30d" % console_fleet.DETAILED[0]),
         ("washer, 30 days", "/device/%s?span=30d" % console_fleet.DETAILED[2]))

# Installed in every context before a page's scripts: the time (performance.now(), ms since
# navigation start) at which body's data-ready became "1".
READY_PROBE = """
(() => {
  const seen = () => {
    if (window.__benchReady === undefined && document.body && document.body.dataset.ready === "1")
      window.__benchReady = performance.now();
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true,
                                                attributes: true, attributeFilter: ["data-ready"]});
})();
"""
FCP_SEEN = ("() => performance.getEntriesByType('paint')"
            ".some(e => e.name === 'first-contentful-paint')")
FCP_WAIT_S = 5
# Read once the page is ready: paint, navigation and resource timing entries.
TIMINGS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByType("paint").find(e => e.name === "first-contentful-paint");
  const res = performance.getEntriesByType("resource");
  const sum = (k) => [nav].concat(res).reduce((a, e) => a + (e[k] || 0), 0);
  return {
    fcp: fcp ? fcp.startTime : null, ready: window.__benchReady,
    server: nav.responseStart - nav.requestStart, html: nav.encodedBodySize,
    transferred: sum("transferSize"), decoded: sum("decodedBodySize"),
    requests: 1 + res.length,
    slowest: res.map(e => [e.duration, e.name, e.transferSize, e.decodedBodySize])
                .sort((a, b) => b[0] - a[0]).slice(0, 3),
  };
}
"""


class Console:
    """`tether console --db DB --port 0` in a child process: url once it answers /healthz."""

    def __init__(self, db, log):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware.cli", "console", "--db", db, "--port", "0"],
            cwd=str(c.ROOT), stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True)
        line = [None]
        reader = threading.Thread(target=lambda: line.__setitem__(0, self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(START_S)
        m = re.match(r"console: (http://[^/]+)/\?token=\S+", line[0] or "")
        if not m:
            self.stop()
            raise SystemExit("tether console did not start: %r (log: %s)" % (line[0], log.name))
        self.url = m.group(1)  # on 127.0.0.1 pages need no token
        deadline = time.monotonic() + START_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("tether console did not answer /healthz within %d s (log: %s)"
                                 % (START_S, log.name))
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def load(context, url, keep_answers=False):
    """Timings (TIMINGS) of one load of url in context, and with keep_answers the page's answers
    {path: (status, content type, body)} (for the static mirror)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    page = context.new_page()
    answers = {}

    def keep(response):
        if "event-stream" in response.headers.get("content-type", ""):
            return  # live updates: a stream that never ends has no body to wait for
        try:
            body = response.body()
        except Exception:  # noqa: BLE001 - a redirect or an aborted stream has none
            return
        answers[urllib.parse.urlsplit(response.url)._replace(scheme="", netloc="").geturl()] = (
            response.status, response.headers.get("content-type", ""), body)

    if keep_answers:
        page.on("response", keep)
    try:
        response = page.goto(url, wait_until="commit", timeout=LOAD_S * 1000)
        if response is None or response.status != 200:
            raise SystemExit("%s: HTTP %s" % (url, response and response.status))
        page.wait_for_function("window.__benchReady !== undefined", timeout=LOAD_S * 1000,
                               polling=50)
        page.wait_for_load_state("load", timeout=LOAD_S * 1000)
        try:  # the paint entry is queued after the paint, which may follow "ready"
            page.wait_for_function(FCP_SEEN, timeout=FCP_WAIT_S * 1000, polling=50)
        except PlaywrightTimeout:
            pass  # a page that paints nothing has no FCP: shown as "-"
        t = page.evaluate(TIMINGS)
    finally:
        page.close()
    return t, answers


def cold_load(browser, url, keep_answers=False):
    """One load of url in a fresh context (an empty cache)."""
    context = browser.new_context()
    context.add_init_script(READY_PROBE)
    try:
        return load(context, url, keep_answers)
    finally:
        context.close()


def measure(browser, console_url, mirror, path):
    """A page's loads: ({cold, warm} on the console, {cold, warm} of its static baseline,
    [(variant, warm)] of the baseline without its charts). The warm loads go round by round
    across the console, the baseline and its variants, each in a context of its own loaded once
    before: a burst of other work on the machine slows them alike."""
    cold, answers = cold_load(browser, console_url + path, keep_answers=True)
    mirror.answers.update(answers)
    base_cold = cold_load(browser, mirror.url + path)[0]
    status, ctype, html = answers[path]
    targets = [("console", console_url + path), ("static", mirror.url + path)]
    for i, (variant, cut) in enumerate(without_charts(html.decode())):
        at = "%s%sbench-variant=%d" % (path, "&" if "?" in path else "?", i)
        mirror.answers[at] = (status, ctype, cut.encode())
        targets.append((variant, mirror.url + at))
    contexts = []
    try:
        for _ in targets:
            contexts.append(browser.new_context())
            contexts[-1].add_init_script(READY_PROBE)
        for context, (_, url) in zip(contexts, targets):
            load(context, url)  # its cache filled, as a user's on the second visit
        warm = {name: [] for name, _ in targets}
        for _ in range(WARM):
            for context, (name, url) in zip(contexts, targets):
                warm[name].append(load(context, url)[0])
    finally:
        for context in contexts:
            context.close()
    return ({"cold": cold, "warm": warm["console"]}, {"cold": base_cold, "warm": warm["static"]},
            [(name, warm[name]) for name, _ in targets[2:]])


class Mirror:
    """The saved answers of a page served as static files by Python's http.server (a thread):
    the same bytes with no app behind them."""

    def __init__(self):
        self.answers = {}  # path (and query) -> (status, content type, body)
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the console's server

            def do_GET(self):
                status, ctype, body = mirror.answers.get(self.path, (404, "text/plain", b"no"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page was closed with this request in flight

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# The device page's charts, cut out of its saved HTML for the static "without" variants: where
# the client's time goes (Chart.js parsed, the charts drawn).
CHART_DATA = re.compile(r'<script id="chart-data"[^>]*>.*?</script>', re.S)
CHART_JS = re.compile(r'<script src="/static/chart\.js"></script>')


def without_charts(html):
    """[(variant, html)]: the page without its chart data (Chart.js loaded, nothing drawn), and
    without Chart.js too; [] for a page with no charts."""
    bare, n = CHART_DATA.subn("", html)
    if not n:
        return []
    without_js, n = CHART_JS.subn("", bare)
    return [("no charts drawn", bare)] + ([("no Chart.js", without_js)] if n else [])


def new_database(server, name):
    import psycopg
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s"' % name)
        conn.execute('CREATE DATABASE "%s"' % name)
    return server.url.rsplit("/", 1)[0] + "/" + name


def fill(backend, devices, tmp, server):
    """A database of that backend filled with the synthetic fleet: (url, seconds, counts)."""
    name = "console_%s_%d" % (backend.lower(), devices)
    if backend == "SQLite":
        db = os.path.join(tmp, name + ".sqlite")
    else:
        db = new_database(server, name)
    start = time.perf_counter()
    counts = console_fleet.fill(db, devices)
    if backend == "PostgreSQL":  # as autovacuum would have by day 30
        import psycopg
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return db, time.perf_counter() - start, counts


def ms(v):
    return "-" if v is None else "%.0f" % v


def kb(v):
    return "%.0f" % (v / 1024.0)


def best(rows, key):
    return min(r[key] for r in rows)


def median(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1,000 devices only (SQLite and PostgreSQL)")
    args = ap.parse_args()
    sizes = (1000,) if args.quick else (1000, 10000)

    from playwright.sync_api import sync_playwright
    from simulator.lab.postgres import Postgres
    if not os.path.exists(CHROMIUM):
        raise SystemExit("needs Debian's chromium at %s (tests/system-deps)" % CHROMIUM)
    print("load average at start: %.1f (%d cores)" % (os.getloadavg()[0], os.cpu_count()))
    tmp = tempfile.mkdtemp(prefix="tether-bench-console-")
    server = Postgres().start()
    mirror = Mirror()  # every page's answers, kept by path
    results = []  # (backend, devices, page, figures, baseline figures)
    splits = []  # (backend, devices, page, variant, the baseline's warm loads, the variant's)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for backend in ("SQLite", "PostgreSQL"):
                for devices in sizes:
                    db, fill_s, counts = fill(backend, devices, tmp, server)
                    print("%s, %d devices: filled in %.1f s (%d readings, %d events, %d health "
                          "reports)" % (backend, devices, fill_s, counts["readings"],
                                        counts["events"], counts["health"]), flush=True)
                    with open(os.path.join(tmp, "console-%s-%d.log" % (backend, devices)),
                              "w") as log:
                        console = Console(db, log)
                        try:
                            for name, path in PAGES:
                                got, base, split = measure(browser, console.url, mirror, path)
                                results.append((backend, devices, name, got, base))
                                splits += [(backend, devices, name, variant, base["warm"], w)
                                           for variant, w in split]
                                print("  %s: cold ready %s ms, warm %s ms (static %s ms)"
                                      % (name, ms(got["cold"]["ready"]),
                                         ms(median(got["warm"], "ready")),
                                         ms(median(base["warm"], "ready"))), flush=True)
                        finally:
                            console.stop()
            browser.close()
    finally:
        mirror.close()
        server.stop()
    report(results, splits)
    shutil.rmtree(tmp)  # kept when a run fails: the console's logs are there


def report(results, splits):
    print()
    print("Page loads in headless chromium, ms from navigation start (cold: a fresh context, "
          "the page's first load; warm: median of %d)" % WARM)
    rows = []
    for backend, devices, name, got, base in results:
        cold, warm = got["cold"], got["warm"]
        rows.append([backend, "{:,}".format(devices), name, ms(cold["fcp"]), ms(cold["ready"]),
                     ms(median(warm, "fcp")), ms(median(warm, "ready")), ms(cold["server"]),
                     ms(min(w["server"] for w in warm)), ms(base["cold"]["ready"]),
                     ms(median(base["warm"], "ready")), kb(cold["html"]),
                     kb(cold["transferred"]), kb(cold["decoded"]), str(cold["requests"])])
    c.table(["store", "devices", "page", "FCP cold", "ready cold", "FCP warm", "ready warm",
             "server cold", "server best", "static cold", "static warm", "HTML KB",
             "sent KB", "decoded KB", "requests"], rows, left=(0, 2))
    print("server: the document's time to first byte (best: of the warm loads); static: ready "
          "with the same bytes from http.server (the baseline); sent: transferred (compressed) "
          "bytes of the cold load, all its requests")
    print()
    if splits:
        print("Where a page's client time goes: its static baseline against the same without the "
              "charts' data (Chart.js loaded, nothing drawn), and without Chart.js too; ready, "
              "best of %d warm loads, rounds interleaved" % WARM)
        rows = [[b, "{:,}".format(d), n, v, ms(best(base, "ready")), ms(best(w, "ready")),
                 ms(best(base, "ready") - best(w, "ready"))]
                for b, d, n, v, base, w in splits]
        c.table(["store", "devices", "page", "static without", "static", "without", "the part cut"],
                rows, left=(0, 2, 3))
        print()
    print("The slowest requests of each cold load (ms, transferred KB, decoded KB):")
    for backend, devices, name, got, _ in results:
        slow = ", ".join("%s %s ms %s/%s KB" % (urllib.parse.urlsplit(u).path, ms(d), kb(t),
                                                 kb(s)) for d, u, t, s in got["cold"]["slowest"])
        print("  %s %s %s: %s" % (backend, devices, name, slow or "(none)"))
    print()
    judged = [(b, d, n, first_render(g["cold"])) for b, d, n, g, _ in results
              if d == TARGET_DEVICES]
    worst = max(judged, key=lambda r: r[3])
    print("load average at the end: %.1f (%d cores): other work on the machine slows every "
          "figure alike" % (os.getloadavg()[0], os.cpu_count()))
    print("first render (cold: the later of FCP and ready) of every page at {:,} devices under "
          "{:.0f} s: worst {} ({}): {:.2f} s -> {}".format(
              TARGET_DEVICES, TARGET_S, worst[2], worst[0], worst[3],
              c.verdict(worst[3], TARGET_S)))


def first_render(t):
    """Seconds until the page's content was drawn and painted: ready is set in the frame
    before the paint, and FCP is a paint."""
    if t["ready"] is None:
        return float("inf")
    return max(t["ready"], t["fcp"] or 0) / 1000.0


if __name__ == "__main__":
    main()
