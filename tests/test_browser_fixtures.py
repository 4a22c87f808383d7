"""The browser and simulated-fleet fixtures of tests/conftest_browser.py, without the console."""
import sqlite3
import urllib.parse

import psycopg
import pytest

from tests.conftest_browser import screenshot

# What the console's tests look for in the simulated fleet: each kind of appliance, and the
# insights the "actions needed" page and the device charts show.
KINDS = ("printer-", "pillbottle-", "washer-", "fridge-")
INSIGHTS = ("reorder", "dose_missed", "dose_taken", "cycle", "energy_report")


def test_the_browser_renders_a_page_and_its_script_runs(page):
    html = ("<title>t</title><p id=p>before</p>"
            "<script>document.getElementById('p').textContent = 'drawn by ' + navigator.vendor;"
            "document.body.dataset.ready = '1'</script>")
    page.goto("data:text/html," + urllib.parse.quote(html))
    page.wait_for_selector("body[data-ready='1']")
    assert page.text_content("#p") == "drawn by Google Inc."
    path = screenshot(page, "fixture-check")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _counts(rows):
    return {event: count for event, count in rows}


def _assert_fleet(devices, insights):
    for kind in KINDS:
        assert any(d.startswith(kind) for d in devices), (kind, devices)
    for event in INSIGHTS:
        assert insights.get(event, 0) > 0, (event, insights)


@pytest.mark.parametrize("reader", ["first", "second"])
def test_the_simulated_fleet_holds_every_kind_of_device_and_insight(simulated_fleet, reader):
    # Two tests on the one database: under xdist they run in two workers, which share one run.
    with sqlite3.connect("file:%s?mode=ro" % simulated_fleet, uri=True) as db:
        devices = [d for (d,) in db.execute("SELECT DISTINCT device FROM readings")]
        insights = _counts(db.execute("SELECT event, count(*) FROM insights GROUP BY event"))
    _assert_fleet(devices, insights)


@pytest.mark.parametrize("reader", ["first", "second"])
def test_the_simulated_fleet_in_postgres_holds_every_kind_of_device_and_insight(
        simulated_fleet_postgres, reader):
    # Under xdist the second worker reads a copy of the first one's run, restored from its dump.
    with psycopg.connect(simulated_fleet_postgres) as db:
        devices = [d for (d,) in db.execute("SELECT DISTINCT device FROM readings")]
        insights = _counts(db.execute("SELECT event, count(*) FROM insights GROUP BY event"))
    _assert_fleet(devices, insights)
