"""The fleet console in a real browser (Debian's Chromium, driven by Playwright): each page
loaded against a database filled by a real `tether simulate` run and checked against that
database; an acknowledgement clicked that reaches a device through mosquitto; a live run whose
new events show up without a reload; bad tokens and parameters refused. Each page's screenshot
is saved in test-artifacts/console/ to be looked at."""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

from tests.conftest_browser import console_server, screenshot

DAY = 86400000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rows_of(db, sql, args=()):
    conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# console.js sets it once a page is drawn; a page between two documents has no body yet
READY = "document.body !== null && document.body.dataset.ready === '1'"


def ready(page, path):
    page.goto(path)
    page.wait_for_function(READY)


def test_actions_page_lists_the_reorders_and_missed_doses_the_database_holds(
        simulated_fleet, page):
    db = simulated_fleet
    newest = rows_of(db, "SELECT max(last_t_ms) FROM devices")[0][0]
    # Straight from the tables: each (device, ink) whose last word was a reorder, and each
    # bottle with a dose missed in the last 7 days of the fleet's clock.
    reorders = set()
    for device, sensor in rows_of(db, "SELECT DISTINCT device, sensor FROM insights "
                                      "WHERE event = 'reorder'"):
        last = rows_of(db, "SELECT event FROM insights WHERE device = ? AND sensor = ? AND event "
                           "IN ('reorder', 'empty', 'cartridge_replaced') ORDER BY t_ms DESC, "
                           "seq DESC LIMIT 1", (device, sensor))[0][0]
        if last == "reorder":
            reorders.add((device, sensor))
    missed = {d for (d,) in rows_of(db, "SELECT DISTINCT device FROM insights WHERE event = "
                                        "'dose_missed' AND t_ms >= ?", (newest - 7 * DAY,))}
    assert reorders and missed, "the simulated fleet must hold reorders and missed doses"
    with console_server(db) as console:
        ready(page, console.url + "/")
        shown = page.eval_on_selector_all(
            "#actions-table tbody tr",
            "rows => rows.map(r => [r.dataset.kind, r.dataset.device, r.dataset.sensor, "
            "r.querySelector('.evidence').textContent])")
        screenshot(page, "actions")
    assert {(d, s) for k, d, s, _ in shown if k == "reorder"} == reorders
    assert {d for k, d, _, _ in shown if k == "dose_missed"} == missed
    for kind, device, sensor, evidence in shown:
        if kind == "reorder":
            fields = json.loads(rows_of(db, "SELECT fields FROM insights WHERE device = ? AND "
                                            "sensor = ? AND event = 'reorder' ORDER BY t_ms DESC "
                                            "LIMIT 1", (device, sensor))[0][0])
            assert "lead time %s days" % fields["lead_days"] in evidence


def test_fleet_page_shows_every_device_and_sorts_and_filters(simulated_fleet, page):
    db = simulated_fleet
    devices = dict(rows_of(db, "SELECT device, last_status FROM devices"))
    with console_server(db) as console:
        ready(page, console.url + "/fleet")
        table = page.eval_on_selector_all(
            "#fleet-table tbody tr",
            "rows => rows.map(r => [r.dataset.device, r.cells[1].textContent.trim(), "
            "r.cells[3].textContent.trim()])")
        screenshot(page, "fleet")
        assert dict((d, s) for d, s, _ in table) == devices
        assert [d for d, _, _ in table] == sorted(devices)
        assert all(model for _, _, model in table), "every device reports its model"
        # A navigation: waited for, or the old page's flag answers (or, mid-way, no body)
        with page.expect_navigation():
            page.click("th a[data-sort=device]")  # sorted already: the other way
        page.wait_for_function(READY)
        order = page.eval_on_selector_all("#fleet-table tbody tr", "rows => rows.map(r => "
                                                                   "r.dataset.device)")
        assert order == sorted(devices, reverse=True)
        page.fill("input[name=q]", "printer")
        with page.expect_navigation():
            page.click("#filter button")
        page.wait_for_function(READY)
        shown = page.eval_on_selector_all("#fleet-table tbody tr", "rows => rows.map(r => "
                                                                   "r.dataset.device)")
    assert sorted(shown) == sorted(d for d in devices if "printer" in d)


def test_device_pages_chart_each_channel_with_the_insights_the_database_holds(
        simulated_fleet, page):
    db = simulated_fleet
    printer = rows_of(db, "SELECT device FROM insights WHERE event = 'reorder' "
                          "ORDER BY device LIMIT 1")[0][0]
    bottle = rows_of(db, "SELECT device FROM insights WHERE event = 'dose_missed' "
                         "ORDER BY device LIMIT 1")[0][0]
    washer = rows_of(db, "SELECT device FROM insights WHERE event = 'cycle' AND device LIKE "
                         "'washer%' ORDER BY device LIMIT 1")[0][0]
    with console_server(db) as console:
        for device, name in ((printer, "device-printer"), (bottle, "device-pillbottle"),
                             (washer, "device-washer")):
            ready(page, "%s/device/%s?span=all" % (console.url, device))
            screenshot(page, name)
            channels = [c for (c,) in rows_of(db, "SELECT channel FROM channels WHERE device = ? "
                                                  "ORDER BY channel", (device,))]
            data = json.loads(page.text_content("#chart-data"))
            shown = [c["channel"] for c in data["charts"] if c.get("kind") != "cycles"]
            assert sorted(shown) == channels
            if device == printer:       # in the profile's order
                assert shown == ["ink_c", "ink_m", "ink_y", "ink_k", "power"], shown
            assert page.locator("canvas[data-chart]").count() == len(data["charts"])
            assert page.evaluate("Chart.instances ? Object.keys(Chart.instances).length : 0") \
                == len(data["charts"])
            insights = rows_of(db, "SELECT count(*) FROM insights WHERE device = ?", (device,))[0][0]
            assert page.locator("#insights-table tbody tr").count() == min(insights, 50)
            if device == printer:
                ink = [c for c in data["charts"] if c["channel"].startswith("ink_")]
                assert any(line["label"].startswith("forecast (empty about ")
                           for c in ink for line in c["lines"])
                assert any(m["kind"] == "reorder" for c in ink for m in c["marks"])
                # One time axis: each ink chart ran to its own forecast's end (weeks apart).
            # One time axis (span=all: from the first point): each ink chart ran to its own
            # forecast's end, weeks apart, and a fridge's cycles from its first to last.
            ends = page.evaluate("Object.values(Chart.instances).map(c => "
                                 "[c.scales.x.min, c.scales.x.max])")
            first = min(c["points"][0][0] for c in data["charts"] if c["points"])
            half = (data["end"] - first) / 2
            assert ends and {e[0] for e in ends} == {first}, ends
            assert len({e[1] for e in ends}) == 1, ends
            assert data["end"] <= ends[0][1] <= data["end"] + half, ends
            if device != printer:
                assert ends[0][1] == data["end"], ends
            if device == bottle:
                missed = rows_of(db, "SELECT count(*) FROM insights WHERE device = ? AND "
                                     "event = 'dose_missed'", (device,))[0][0]
                marks = [m for c in data["charts"] for m in c["marks"] if m["kind"] == "missed"]
                assert len(marks) == missed
                # the count where the bottle stood: its lifts, read as 0 or less, are not drawn
                lifted = rows_of(db, "SELECT count(*) FROM readings WHERE device = ? AND "
                                     "channel = 'pills' AND value <= 0", (device,))[0][0]
                (pills,) = [c for c in data["charts"] if c["channel"] == "pills"]
                assert lifted and min(v for _, v in pills["points"]) > 0
            if device == washer:
                cycles = rows_of(db, "SELECT count(*) FROM insights WHERE device = ? AND "
                                     "event = 'cycle' AND json_extract(fields, '$.feature') "
                                     "IS NOT NULL", (device,))[0][0]
                (chart,) = [c for c in data["charts"] if c.get("kind") == "cycles"]
                assert len(chart["points"]) == cycles


def test_bad_tokens_and_bad_parameters_are_refused_in_the_browser(simulated_fleet, page):
    with console_server(simulated_fleet, host="0.0.0.0", token="a-good-long-token") as console:
        base = console.url.replace("0.0.0.0", "127.0.0.1")
        response = page.goto(base + "/fleet")
        assert response.status == 401
        assert "needs its token" in page.text_content("body")
        response = page.goto(base + "/fleet?token=not-the-token")
        assert response.status == 401 and "wrong token" in page.text_content("body")
        response = page.goto(base + "/fleet?token=a-good-long-token")
        assert response.status == 200 and page.url == base + "/fleet"
        response = page.goto(base + "/fleet?sort=colour")
        assert response.status == 400
        assert "sort: one of device, status" in page.text_content("#error")
        screenshot(page, "bad-parameter")
        response = page.goto(base + "/device/printer-0001?span=forever")
        assert response.status == 400 and "span: one of 1d, 7d, 30d, all" in page.text_content(
            "#error")


def test_a_live_run_shows_new_events_and_an_acknowledgement_reaches_the_device(
        tmp_path, mosquitto, page):
    """A fleet of pill bottles through mosquitto with the console open on it: the device page
    gains insight rows as they arrive, without a reload; once the run has reported (the devices
    stay online), a missed dose is acknowledged on the actions page, and the bottle's reply comes
    back through mosquitto into the ingest's database."""
    fleet = tmp_path / "bottles.yaml"
    fleet.write_text("devices:\n  - {profile: %s, count: 4}\n"
                     % os.path.join(ROOT, "examples", "pill-bottle.yaml"))
    db = tmp_path / "w" / "fleet.sqlite"
    # seed 4: a dose missed in the first day (and doses taken all along it); at 1500x the day
    # takes about a minute, long after the device page is open even on a loaded machine
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "simulate", "--fleet", str(fleet), "--workdir",
         str(tmp_path / "w"), "--duration", "1d", "--speed", "1500x", "--seed", "4", "--faults",
         "", "--broker", "mqtt://127.0.0.1:%d" % mosquitto.port, "--console", "--console-port",
         "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "simulate ended before the console opened:\n" + "".join(lines)
            lines.append(line)
            m = re.search(r"console: (http://\S+)", line)
            url = m and m.group(1)
        page.goto(url)  # the token: commands need it
        base = url.split("/?")[0]
        ready(page, base + "/fleet")  # opened before the devices' first message: they appear
        page.wait_for_selector("#fleet-table tbody tr[data-device=pillbottle-0001]",
                               timeout=120000)
        ready(page, base + "/device/pillbottle-0001?span=all")
        page.evaluate("window.loadedOnce = true")
        before = page.locator("#insights-table tbody tr").count()
        page.wait_for_function("document.querySelectorAll('#insights-table tbody tr').length > %d"
                               % before, timeout=120000)
        assert page.evaluate("window.loadedOnce") is True  # no reload: the same document
        assert int(page.evaluate("document.body.dataset.updates")) >= 1
        screenshot(page, "device-live")
        while "stay online" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "simulate ended:\n" + "".join(lines)
            lines.append(line)
        ready(page, base + "/")
        row = page.locator("#actions-table tbody tr[data-kind=dose_missed]").first
        device = row.get_attribute("data-device")
        row.locator("button[data-answer=ack]").click()
        page.wait_for_selector("#actions-table tbody tr.done[data-kind=dose_missed]",
                               timeout=30000)
        assert "Acknowledged: %s" % device in page.text_content("#toast")
        screenshot(page, "actions-acknowledged")
        deadline = time.monotonic() + 30
        while True:
            acked = [json.loads(b) for (b,) in rows_of(str(db), "SELECT body FROM replies "
                                                                "WHERE device = ?", (device,))]
            acked = [r for r in acked if r.get("ok") and r["result"].get("acked")]
            if acked or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert acked and acked[0]["result"]["event"] == "dose_missed"
        assert rows_of(str(db), "SELECT device, action, done FROM acks") == [
            (device, "dose_missed", "ack")]
        # The pointer leaves the list: it takes the update at once, without a reload (the
        # clicked row kept the focus, and the list stayed "paused" until a click elsewhere).
        page.mouse.move(0, 0)
        page.wait_for_function(
            "document.querySelectorAll(\"#actions-table tbody tr[data-kind=dose_missed]"
            "[data-device='%s']\").length === 0" % device, timeout=30000)
        page.wait_for_function("document.getElementById('live').textContent === 'live'",
                               timeout=30000)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_pages_on_postgresql_show_what_they_show_on_sqlite(simulated_fleet,
                                                                simulated_fleet_postgres, page):
    """The same simulated fleet (one seed, two runs) in both backends: the same actions, the
    same fleet table, the same device charts."""
    def pages(db):
        with console_server(db) as console:
            ready(page, console.url + "/")
            needed = page.eval_on_selector_all("#actions-table tbody tr", "rows => rows.map(r => "
                                               "[r.dataset.kind, r.dataset.device, "
                                               "r.dataset.sensor])")
            ready(page, console.url + "/fleet")
            # the columns one seed decides (the buffer depth of the last health report
            # depends on when the wall clock sent it: two runs differ there)
            fleet = page.eval_on_selector_all("#fleet-table tbody tr", "rows => rows.map(r => "
                                              "[0, 1, 3, 4].map(i => r.cells[i].innerText))")
            ready(page, console.url + "/device/printer-0001?span=all")
            charts = json.loads(page.text_content("#chart-data"))
            return needed, fleet, charts
    sqlite_pages = pages(simulated_fleet)
    postgres_pages = pages(simulated_fleet_postgres)
    screenshot(page, "device-printer-postgresql")
    assert postgres_pages == sqlite_pages


def test_a_list_in_use_is_not_swapped_under_the_keyboard_and_a_lost_database_says_stale(
        simulated_fleet, page, tmp_path):
    # Every live update replaced the rows: focus fell back to the page's top (a keyboard user
    # could not get to a button) and a row could move under the pointer before the click.
    # With the database gone the page kept showing old rows, marked live.
    import shutil
    db = tmp_path / "fleet.sqlite"
    shutil.copy(simulated_fleet, db)

    def touch():
        conn = sqlite3.connect(str(db))
        conn.execute("UPDATE devices SET last_seen = last_seen + 1")
        conn.commit()
        conn.close()

    def updated_after(n):
        page.wait_for_function("Number(document.body.dataset.updates || 0) > %d" % n,
                               timeout=30000)

    with console_server(db) as console:
        ready(page, console.url + "/")
        page.mouse.move(0, 0)
        updated_after(0)
        button = page.locator("#actions-table tbody tr button[data-answer=snooze]").nth(1)
        row = button.evaluate("b => b.closest('tr').dataset.device")
        button.focus()
        n = int(page.evaluate("document.body.dataset.updates"))
        touch()
        updated_after(n)
        assert page.text_content("#live") == "paused"
        focused = page.evaluate("[document.activeElement.dataset.answer, "
                                "document.activeElement.closest('tr').dataset.device]")
        assert focused == ["snooze", row], focused
        # an answered row says how it was answered: a snoozed one said "done"
        said = page.evaluate("""() => {
            const tr = document.querySelector('#actions-table tbody tr');
            const after = () => getComputedStyle(tr.querySelector('.buttons'), '::after').content;
            tr.classList.add('done');
            tr.dataset.answered = 'snooze';
            const snoozed = after();
            tr.dataset.answered = 'ack';
            const acked = after();
            tr.classList.remove('done');
            delete tr.dataset.answered;
            return [snoozed, acked];
        }""")
        assert said == ['"snoozed"', '"done"'], said
        n = int(page.evaluate("document.body.dataset.updates"))
        page.evaluate("document.activeElement.blur()")   # away: the list catches up
        updated_after(n)
        page.wait_for_function("document.getElementById('live').textContent === 'live'")
        os.rename(db, str(db) + ".moved")
        page.wait_for_function("document.getElementById('live').textContent === 'stale'",
                               timeout=30000)
        assert "cannot read its database" in page.get_attribute("#live", "title")


def test_an_insights_settings_are_read_and_changed_from_a_device_page(simulated_fleet, mosquitto,
                                                                       page, tmp_path):
    """The device page's settings row against a live `tether run` of one of the fleet's
    printers through mosquitto: read, changed, and a change that is not JSON said so."""
    from tests.run_process import Run
    db = simulated_fleet
    printer = rows_of(db, "SELECT device FROM insights WHERE event = 'reorder' "
                          "ORDER BY device LIMIT 1")[0][0]
    broker = "mqtt://127.0.0.1:%d" % mosquitto.port
    run = Run("examples/printer.yaml", "--platform", "sim", "--device", printer, "--store",
              str(tmp_path / "buffer"), "--broker", broker)
    try:
        run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
        with console_server(db, broker=broker) as console:
            ready(page, "%s/?token=%s" % (console.url, console.token))   # commands need it
            ready(page, "%s/device/%s" % (console.url, printer))
            page.evaluate("document.getElementById('settings-change').placeholder = ''")
            page.select_option("#settings-sensor", "ink_c")
            # the box shows a change an ink's insight takes, set as the sensor is chosen
            assert page.get_attribute("#settings-change", "placeholder") == \
                '{"lead_time_ms": 604800000}'
            page.click("button[data-command=settings]:not([data-change])")
            page.wait_for_function("document.getElementById('reply').className.includes('ok')",
                                   timeout=30000)
            said = json.loads(page.text_content("#reply"))
            assert said["result"]["settings"]["lead_time_ms"] == 10 * DAY
            page.fill("#settings-change", '{"lead_time_ms": %d}' % (5 * DAY))
            page.click("button[data-command=settings][data-change]")
            page.wait_for_function("document.getElementById('reply').textContent.includes("
                                   "'%d')" % (5 * DAY), timeout=30000)
            assert json.loads(page.text_content("#reply"))["result"]["settings"][
                "lead_time_ms"] == 5 * DAY
            screenshot(page, "device-settings")
            for bad in ("lead_time_ms: 5d", "null", "[1]"):   # null read the settings
                page.fill("#settings-change", bad)
                page.click("button[data-command=settings][data-change]")
                assert "not a JSON map" in page.text_content("#reply"), bad
                assert "reply bad" == page.get_attribute("#reply", "class")
    finally:
        run.stop()


def test_charts_read_utc_as_the_page_does_in_a_browser_far_from_it(simulated_fleet, browser):
    # Chart.js formats in the browser's zone: in Los Angeles a dose at 08:37 UTC sat at
    # 12:30 AM beside a table saying 08:37 UTC, and a week's ticks named no day. Times moved by
    # the zone's offset read UTC, but in Berlin drew 02:00 and 03:00 UTC of the day clocks go
    # forward at one place: the chart's adapter works in UTC, the times drawn as they are.
    db = simulated_fleet
    bottle = rows_of(db, "SELECT device FROM insights WHERE event = 'dose_taken' "
                         "ORDER BY device LIMIT 1")[0][0]
    for zone in ("America/Los_Angeles", "Europe/Berlin"):
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      timezone_id=zone)
        try:
            page = context.new_page()
            with console_server(db) as console:
                ready(page, "%s/device/%s?span=7d" % (console.url, bottle))
                first = json.loads(page.text_content("#chart-data"))["charts"][0]["points"][0]
                shown = page.evaluate(
                    "(() => { const c = Object.values(Chart.instances)[0];"
                    " const p = c.data.datasets[0].data[0];"
                    " return [p.x, c.options.scales.x.title.text,"
                    " c.scales.x.ticks.map(t => t.label).join(' | ')]; })()")
                # 2026-03-29 00:30 to 03:30 UTC, Berlin's clocks forward at 01:00 UTC; and the
                # hours before Los Angeles's change (2026-03-08 10:00 UTC)
                hours = [1774744200000 + k * 1800000 for k in range(7)] + [
                    1772962200000, 1772960400000, 1773100000000, first[0]]
                seen = page.evaluate(
                    "(ts => { const c = Object.values(Chart.instances)[0];"
                    " const a = new Chart._adapters._date({});"
                    " return ts.map(t => [a.format(t, \"yyyy-MM-dd HH:mm\"),"
                    " c.scales.x.getPixelForValue(t)]); })", hours)
            assert page.evaluate("new Date(%d).getTimezoneOffset()" % first[0]) != 0, zone
            assert shown[0] == first[0] and shown[1] == "UTC"
            for t, (label, _) in zip(hours, seen):
                assert label == time.strftime("%Y-%m-%d %H:%M", time.gmtime(t / 1000)), (zone, t)
            steps = [round(seen[k + 1][1] - seen[k][1], 3) for k in range(6)]
            assert len(set(steps)) == 1 and steps[0] > 0, (zone, steps)   # evenly, in order
            assert re.search(r"[A-Z][a-z]{2} \d{1,2}", shown[2]), shown[2]   # a day on the ticks
        finally:
            context.close()


def test_a_set_interval_the_box_cannot_give_is_said_in_seconds_before_anything_is_sent(
        simulated_fleet, page):
    # An empty box went out as 0 ms, and the answer spoke of interval_ms from 100 to 86400000
    # under a box in seconds.
    device = rows_of(simulated_fleet, "SELECT device FROM devices ORDER BY device LIMIT 1")[0][0]
    with console_server(simulated_fleet) as console:
        ready(page, "%s/device/%s" % (console.url, device))
        sent = []
        page.on("request", lambda r: sent.append(r.url) if "/api/command" in r.url else None)
        for bad in ("", "0.01", "100000"):
            page.fill("#interval-s", bad)
            page.click("button[data-command=set_interval]")
            assert page.text_content("#reply") == ("the interval is a number of seconds from "
                                                   "0.1 to 86400 (1 day)"), bad
        assert sent == []
        page.fill("#interval-s", "30")
        page.click("button[data-command=set_interval]")   # sent (and refused: no token here)
        page.wait_for_function("!document.getElementById('reply').textContent.startsWith("
                               "'the interval is')", timeout=10000)
        assert len(sent) == 1
