"""`tether simulate` end to end: a small mixed fleet of real agents on virtual chips, through the
embedded broker and through Mosquitto, with outages, power cuts, broker restarts, slow links and
sensor faults; the report's ground truth checked against what the reference ingest stored in its
SQLite file. Also a second ingest process sharing the subscription, malformed payloads published
into a run, and the command's exit codes."""
import asyncio
import functools
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from firmware import simulate_cmd
from simulator import faults
from simulator.fleet import DEFAULT_FLEET, Fleet, IngestPace, load_fleet
from ingest import Ingest, decode, summary, totals
from ingest import repair as repair_mod
from simulator.lab.mosquitto import Subscriber

FAULTS = ("outage:every=4h,for=2h,share=0.5;power:every=5h,share=0.5;restart:count=2;"
          "sensor:every=6h,for=1h,share=0.5;slow:latency=20ms,share=0.3")
PNG = b"\x89PNG\r\n\x1a\n"


def db_counts(path):
    """{device: readings} and {device: events} straight from the ingest's file."""
    with sqlite3.connect(path) as db:
        readings = dict(db.execute("SELECT device, count(*) FROM readings GROUP BY device"))
        events = dict(db.execute("SELECT device, count(*) FROM events GROUP BY device"))
    return readings, events


def assert_every_reading_accounted(report, db_path):
    """Nothing lost, and the ingest's file says the same as the report, device by device."""
    f = report["fleet"]
    assert (f["lost"], f["events_lost"], f["reported_dropped"], f["waiting"]) == (0, 0, 0, 0), f
    readings, events = db_counts(db_path)
    stored = summary(db_path)
    for d in report["devices"]:
        # What the device's sampler buffered, less what a power cut took from RAM and an erased
        # flash took with it, is exactly what the file holds: no reading missing, none twice.
        assert d["generated"] - d["power_cut_window"] - d["erased"] == d["delivered"] \
            == readings[d["device"]], d
        assert d["events_raised"] - d["events_erased"] == d["events"] \
            == events.get(d["device"], 0), d
        assert stored[d["device"]]["gaps"] == [], d
    assert sum(readings.values()) == f["delivered"] > 0


def test_the_command_runs_a_fleet_through_the_embedded_broker_and_loses_nothing(tmp_path):
    work, plots, report_path = tmp_path / "w", tmp_path / "plots", tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "simulate", "--devices", "6", "--duration", "12h",
         "--speed", "max", "--seed", "3", "--faults", FAULTS, "--workdir", str(work),
         "--report", str(report_path), "--plots", str(plots)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(report_path.read_text())
    f = report["fleet"]
    assert f["devices"] == 6 and report["broker_restarts"] == 2
    assert f["power_cuts"] >= 1 and f["outage_ms"] > 0
    assert sorted(d["device"].split("-")[0] for d in report["devices"]) \
        == ["fridge", "pillbottle", "pillbottle", "printer", "printer", "washer"]
    assert_every_reading_accounted(report, str(work / "fleet.sqlite"))
    # Sensor faults became sensor_error events, each raised and cleared.
    with sqlite3.connect(str(work / "fleet.sqlite")) as db:
        errors = db.execute("SELECT count(*) FROM events WHERE event = 'sensor_error'").fetchone()
    assert errors[0] >= 2
    assert "0 LOST" in proc.stdout and str(work / "fleet.sqlite") in proc.stdout
    for name in ("ink.png", "pills.png", "energy.png", "backlog.png"):
        data = (plots / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name


class Publishes:
    """The fleet's progress hook, used to publish garbage into a running simulation once."""

    def __init__(self, port, items):
        self.port = port
        self.items = items
        self.sent = False
        self.snapshots = []

    def update(self, snap):
        self.snapshots.append(snap)
        if not self.sent and snap["phase"] == "running" and snap["generated"]:
            self.sent = True
            with Subscriber(self.port, topics=("nothing/here",)) as pub:
                for topic, payload in self.items:
                    pub.publish(topic, payload)

    def close(self):
        pass


MALFORMED = [
    ("tether/v1/printer-0001/up/batch", b"\xff\x00garbage"),
    ("tether/v1/printer-0001/up/batch", b""),
    ("tether/v1/pillbottle-0001/up/event", b"\x9f\x01"),
    ("tether/v1/nobody/up/health", b"not cbor at all"),
    ("tether/v1/washer-0001/up/batch", b"\x85\x01\x62ab\x20\x00\x00"),
]


def test_a_fleet_through_mosquitto_with_a_second_ingest_process_and_malformed_payloads(
        mosquitto_factory, tmp_path):
    # Mosquitto's default max_queued_messages (1000) drops messages for an ingest that falls
    # behind a fleet running at full speed (docs/ingest.md).
    broker = mosquitto_factory(log_type="error warning", extra_conf="max_queued_messages 0")
    work = tmp_path / "w"
    work.mkdir()
    db = work / "fleet.sqlite"
    other = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "ingest", "--broker", "mqtt://127.0.0.1:%d" % broker.port,
         "--db", str(db), "--group", "sim-test", "--every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = other.stdout.readline()
        assert first.startswith("ingest "), first + other.stderr.read()
        hook = Publishes(broker.port, MALFORMED)
        fleet = Fleet(load_fleet(DEFAULT_FLEET, 6), str(work), 12 * 3600000, speed=None,
                      broker_url="mqtt://127.0.0.1:%d" % broker.port, seed=5,
                      faults=faults.parse("outage:every=4h,for=2h,share=0.5;"
                                          "power:every=5h,share=0.5"),
                      client="paho", progress=hook, ingest_group="sim-test")
        report = asyncio.run(fleet.run())
        # The other process may still be storing its share: wait until the file holds it all.
        deadline = 60
        while report["fleet"]["lost"] and deadline > 0:
            threading.Event().wait(0.5)
            deadline -= 0.5
            report = fleet._report(fleet.restarts, history=False)
    finally:
        other.send_signal(signal.SIGINT)
        out, err = other.communicate(timeout=30)
    assert other.returncode == 0, err
    assert hook.sent
    assert report["fleet"]["power_cuts"] >= 1 and report["fleet"]["outage_ms"] > 0
    assert_every_reading_accounted(report, str(db))
    with sqlite3.connect(str(db)) as conn:
        per_process = dict(conn.execute("SELECT ingest, count(*) FROM batches GROUP BY ingest"))
    assert len(per_process) == 2 and all(n > 0 for n in per_process.values()), per_process
    # Every malformed payload went to one of the two processes; each was counted, none stored.
    assert totals(str(db))["malformed"] == len(MALFORMED)
    assert "stopped: " in out


def test_a_broker_restart_loses_nothing_the_broker_still_queued_for_a_slow_ingest(
        monkeypatch, tmp_path):
    # An ingest that takes 4 ms a message leaves hundreds of acknowledged batches queued in the
    # embedded broker, which keeps nothing across a restart: the restart must wait until the
    # ingest has them (without that wait this run lost ~1,000 readings).
    slow_on_message = Ingest._on_message

    def on_message(self, *args):
        threading.Event().wait(0.004)
        slow_on_message(self, *args)
    monkeypatch.setattr(Ingest, "_on_message", on_message)
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 6), str(tmp_path), 12 * 3600000, speed=None, seed=3,
                  faults=faults.parse("outage:every=4h,for=2h,share=0.5;restart:count=2"))
    report = asyncio.run(fleet.run())
    assert report["broker_restarts"] == 2
    assert_every_reading_accounted(report, str(tmp_path / "fleet.sqlite"))
    # The simulator's count of each batch's readings (what a batch lost at the broker held, for
    # the report) adds up to what the ingest stored, device by device.
    stored = summary(str(tmp_path / "fleet.sqlite"))
    assert {d.device_id: sum(sum(c) for c in d.batch_readings.values()) for d in fleet.devices} \
        == {k: v["readings"] for k, v in stored.items()}


def test_erased_boards_lose_only_what_their_buffers_held_and_their_new_logs_are_stored(
        tmp_path):
    # A board erased and flashed again (tether flash --firmware) numbers from 0 under a new
    # store id: the ingest stores the new log's batches beside the old one's (they were refused
    # as taken numbers), and what only the erased buffer held is counted, not LOST.
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 6), str(tmp_path), 2 * 24 * 3600000, speed=None,
                  seed=5, faults=faults.parse("erase:every=10h;power:every=9h;"
                                              "outage:every=7h,for=2h;restart:count=1"))
    report = asyncio.run(fleet.run())
    f = report["fleet"]
    assert f["erases"] >= 6 and f["erased"] > 0, f
    db = str(tmp_path / "fleet.sqlite")
    assert_every_reading_accounted(report, db)
    assert totals(db)["malformed"] == 0
    with sqlite3.connect(db) as conn:
        logs = dict(conn.execute("SELECT device, count(*) FROM stores WHERE kind = 'batch' "
                                 "GROUP BY device"))
        later = conn.execute("SELECT count(*) FROM batches WHERE seq >= 4294967296").fetchone()
    # (a log erased before any of its batches came is never met)
    assert all(1 < logs[d["device"]] <= d["erases"] + 1
               for d in report["devices"] if d["erases"]), logs
    assert later[0] > 0


@pytest.mark.parametrize("workers", [None, 2])
def test_events_the_broker_loses_after_the_last_health_report_are_asked_for_and_repaired(
        monkeypatch, tmp_path, workers):
    # A washer's daily energy report comes at the last instant of a 1-day run, after its last
    # periodic health report. A broker that loses it (here: the first copy of each event of the
    # last hour is not stored; replies to resend commands are) leaves no later batch or report
    # to show the loss, unless the run's end asks the devices for one: without that, this run
    # lost that event, in one process and in workers.
    from simulator.workers import WorkerFleet
    day = 24 * 3600000
    washers = [line for line in load_fleet(DEFAULT_FLEET, 12) if "washer" in line[2]]
    if workers:
        fleet = WorkerFleet(washers, str(tmp_path), day, speed=None, seed=3, workers=workers)
        device_time = fleet._low
    else:
        fleet = Fleet(washers, str(tmp_path), day, speed=None, seed=3)
        device_time = lambda: fleet.clock.t  # noqa: E731
    stored = Ingest._event
    seen, lost = set(), []

    def event(self, device, payload, received_at, d):
        if device_time() > day - 3600000 and payload not in seen and \
                not isinstance(decode.event(device, payload), decode.Reply):
            seen.add(bytes(payload))
            lost.append(device)
            return
        stored(self, device, payload, received_at, d)
    monkeypatch.setattr(Ingest, "_event", event)
    # What is missing is asked for after 1 s, not 10: the run waits for the repairs.
    monkeypatch.setattr(repair_mod, "Policy", functools.partial(repair_mod.Policy, grace=1.0,
                                                                interval=1.0))
    report = asyncio.run(fleet.run())
    db = str(tmp_path / "fleet.sqlite")
    assert_every_reading_accounted(report, db)
    assert report["fleet"]["events_repaired"] == len(lost) > 0
    assert report["fleet"]["devices"] == 2
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE event = 'energy_report' "
                            "AND t_ms >= ?", (fleet.clock.start_unix_ms + day,)).fetchone()[0] == 2


def test_device_time_waits_for_an_ingest_that_falls_behind(monkeypatch, tmp_path):
    slow_on_message = Ingest._on_message

    def on_message(self, *args):
        threading.Event().wait(0.02)
        slow_on_message(self, *args)
    monkeypatch.setattr(Ingest, "_on_message", on_message)
    monkeypatch.setattr(IngestPace, "LIMIT", 40)
    monkeypatch.setattr(IngestPace, "EVERY_S", 0.02)
    seen = []
    check = IngestPace.check

    def watched(self):
        seen.append(self.behind() + self.slack)
        return check(self)
    monkeypatch.setattr(IngestPace, "check", watched)
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 6), str(tmp_path), 12 * 3600000, speed=None, seed=3)
    report = asyncio.run(fleet.run())
    assert_every_reading_accounted(report, str(tmp_path / "fleet.sqlite"))
    # Unpaced, this fleet ran ~400 messages ahead of the ingest; paced, the ingest is never
    # more than the limit plus what a check interval lets through behind.
    assert max(seen) < 100, max(seen)


def test_a_big_fleets_own_start_does_not_hold_real_time_but_a_backlog_beyond_it_does():
    class Counts:
        published = 0
        stored_n = 0

        def stored(self):
            return self.stored_n

    def holds(devices, published, stored, speed=1.0):
        counts = Counts()
        counts.published, counts.stored_n = published, stored
        fleet = type("F", (), {"devices_total": devices, "gate": counts, "ingest": counts,
                               "ingest_group": None,
                               "clock": type("C", (), {"speed": speed})()})()
        hold = IngestPace(fleet).check()
        if hold is None:
            return False
        hold.close()    # the wait itself is not run here
        return True

    # 10,000 devices boot with 3 messages each: 9,000 not stored yet is their start, not a
    # runaway; past 4 a device it is.
    assert not holds(10000, 30000, 21000)
    assert holds(10000, 50000, 9000)
    # A small fleet keeps the fixed limit, and so does any fleet far from real time: at full
    # speed 4 a device of a big fleet's batches would be more than the embedded broker holds.
    assert holds(100, 2001, 0)
    assert not holds(100, 2000, 0)
    assert holds(10000, 30000, 21000, speed=None) and holds(10000, 30000, 21000, speed=3600.0)


def test_the_command_exits_1_when_a_reading_is_lost_even_at_the_broker(monkeypatch, tmp_path):
    repair = {"repaired": 0, "repaired_batches": 0, "lost_at_broker": 0,
              "lost_at_broker_batches": 0, "events_repaired": 0, "events_lost_at_broker": 0}
    fleet = {"devices": 1, "generated": 10, "delivered": 9, "reported_dropped": 0,
             "waiting": 0, "lost": 1, "power_cut_window": 0, "duplicates": 0,
             "events": 0, "events_raised": 0, "events_waiting": 0, "events_lost": 0,
             "power_cuts": 0, "outage_ms": 0, "bytes_on_air": 100,
             "backlog_max_batches": 0, "bytes_per_reading": 11.1}
    fleet.update(repair)
    device = {"device": "d-1", "generated": 10, "delivered": 9, "reported_dropped": 0,
              "waiting": 0, "lost": 1, "events_lost": 0}
    device.update(repair)
    report = {"device_time_ms": 3600000, "wall_s": 1.0, "speed": 3600.0, "seed": 1,
              "broker_restarts": 0, "database": "x", "fleet": fleet, "devices": [device],
              "insight_scores": {}}

    async def run(self):
        return report
    monkeypatch.setattr(Fleet, "run", run)
    args = _args(tmp_path)
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out) == 1
    assert "LOST 1 readings and 0 events on d-1" in out.getvalue()
    fleet["lost"] = device["lost"] = 0
    fleet["events_lost"] = 1
    assert simulate_cmd.main(args, out=io.StringIO()) == 1
    fleet["events_lost"] = 0
    # Recorded as lost at the broker: counted apart, and still a loss.
    fleet["lost_at_broker"] = device["lost_at_broker"] = 420
    fleet["lost_at_broker_batches"] = device["lost_at_broker_batches"] = 1
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out) == 1
    assert "420 readings (1 batches) and 0 events LOST AT THE BROKER" in out.getvalue()
    assert "LOST 0 readings and 0 events on d-1, and 420 readings (1 batches)" in out.getvalue()
    fleet["lost_at_broker"] = fleet["lost_at_broker_batches"] = 0
    fleet["repaired"], fleet["repaired_batches"] = 420, 1
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out) == 0  # repaired: nothing lost
    assert "repair: 420 readings (1 batches) and 0 events the broker lost" in out.getvalue()
    assert json.loads((tmp_path / "w" / "report.json").read_text())["fleet"]["lost"] == 0


@pytest.mark.parametrize("option, value, says", [
    ("speed", "fast", "--speed: expected a factor of at least 0.01 like '3600x', or 'max'"),
    ("speed", "-2x", "--speed: expected a factor"),
    ("faults", "flood:every=1d", "unknown fault 'flood'"),
    ("faults", "outage:for=forever", "outage: for expected a duration like '2h'"),
    ("faults", "outage:share=2", "outage: share expected a fraction"),
    ("faults", "erase:every=1ms", "erase: every must be at least 1min"),  # it hung
    ("faults", "erase:every=1d,when=now", "erase: expected key=value with a key among every, "
                                          "share"),
    ("faults", "power:when=1d", "power: expected key=value with a key among every, share"),
    ("faults", "slow:bandwidth=fast", "slow: bandwidth expected a rate in bits a second"),
    # 0 meant no limit, -5 no delay, nan a run that never ended, 20KBps kilobits
    ("faults", "slow:bandwidth=0kbps", "slow: bandwidth expected a rate in bits a second above 0"),
    ("faults", "slow:bandwidth=-5kbps", "got '-5kbps'"),
    ("faults", "slow:bandwidth=nankbps", "got 'nankbps'"),
    ("faults", "slow:bandwidth=20KBps", "got '20KBps'"),
    ("faults", "outage:every=1d,every=2d", "outage: every given twice"),
    ("fleet", "missing.yaml", "No such file"),
    ("broker", "http://example.com", "--broker: expected a broker URL like mqtt://host:1883"),
    ("broker", "mqtts://example.com", "--broker: the simulated devices connect without TLS"),
    ("broker", "mqtt://h:99999", "--broker: the port in 'mqtt://h:99999' is not a number"),
])
def test_bad_options_are_said_plainly_and_exit_2(tmp_path, option, value, says):
    args = _args(tmp_path)
    setattr(args, option, value)
    err = io.StringIO()
    assert simulate_cmd.main(args, out=io.StringIO(), err=err) == 2
    text = err.getvalue()
    assert text.startswith("tether simulate: ") and says in text, text
    assert not (tmp_path / "w").exists()


def test_a_broker_that_refuses_the_connection_is_said_plainly_and_exits_2(tmp_path):
    import socket
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = _args(tmp_path)
    args.broker = "mqtt://127.0.0.1:%d" % port
    err = io.StringIO()
    assert simulate_cmd.main(args, out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith("tether simulate: cannot connect to the broker 127.0.0.1:"), \
        err.getvalue()


def _earlier_run(workdir):
    """What a run leaves in its workdir: device buffers, the database, the report."""
    (workdir / "devices" / "printer-0001" / "events").mkdir(parents=True)
    for name in ("state", "schema", "00000000.seg"):
        (workdir / "devices" / "printer-0001" / name).write_bytes(b"x")
    (workdir / "fleet.sqlite").write_bytes(b"earlier")
    (workdir / "report.json").write_text("{}")
    return sorted(str(p) for p in workdir.rglob("*"))


def test_a_run_refused_for_its_broker_or_console_port_keeps_the_earlier_runs_files(tmp_path):
    # Both were found once the run began, after the earlier run's database and buffers were
    # deleted: a mistyped --broker cost the last run.
    import socket
    files = _earlier_run(tmp_path / "w")
    with socket.socket() as nobody, socket.socket() as taken:
        nobody.bind(("127.0.0.1", 0))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for option, value, says in (
                ("broker", "mqtt://127.0.0.1:%d" % nobody.getsockname()[1],
                 "cannot connect to the broker 127.0.0.1:%d" % nobody.getsockname()[1]),
                ("console_port", taken.getsockname()[1],
                 "--console-port %d: Address already in use" % taken.getsockname()[1])):
            args = _args(tmp_path)
            setattr(args, option, value)
            args.console = option == "console_port"
            err = io.StringIO()
            assert simulate_cmd.main(args, out=io.StringIO(), err=err) == 2
            assert err.getvalue().startswith("tether simulate: " + says), err.getvalue()
            assert sorted(str(p) for p in (tmp_path / "w").rglob("*")) == files
    assert (tmp_path / "w" / "fleet.sqlite").read_bytes() == b"earlier"


@pytest.mark.parametrize("option, value, says", [
    ("report", "/dev/null/r.json", "--report /dev/null/r.json: /dev/null is not a folder"),
    ("report", "{tmp}", "--report {tmp}: a folder; name the file to write"),
    ("plots", "/dev/null/plots", "--plots /dev/null/plots: /dev/null is not a folder"),
])
def test_a_report_or_plots_path_that_cannot_be_written_is_refused_before_the_run(
        tmp_path, option, value, says):
    # It failed after the run with a traceback and exit 1 (the report's text unprinted).
    args = _args(tmp_path)
    setattr(args, option, value.format(tmp=tmp_path))
    err = io.StringIO()
    assert simulate_cmd.main(args, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == "tether simulate: %s\n" % says.format(tmp=tmp_path)
    from firmware import report_cmd
    import argparse
    parser = argparse.ArgumentParser()
    report_cmd.add_command(parser.add_subparsers())
    err = io.StringIO()
    parsed = parser.parse_args(["report", "--db", str(tmp_path / "none.sqlite"),
                                "--" + option, value.format(tmp=tmp_path)])
    assert report_cmd.main(parsed, out=io.StringIO(), err=err) == 2
    assert err.getvalue() == "tether report: %s\n" % says.format(tmp=tmp_path)


def test_a_workdir_whose_devices_folder_a_run_did_not_make_is_refused_and_left_alone(tmp_path):
    (tmp_path / "w" / "devices").mkdir(parents=True)
    (tmp_path / "w" / "devices" / "inventory.csv").write_text("serial,owner\n")
    err = io.StringIO()
    assert simulate_cmd.main(_args(tmp_path), out=io.StringIO(), err=err) == 2
    assert "inventory.csv is not what an earlier run left there" in err.getvalue()
    assert (tmp_path / "w" / "devices" / "inventory.csv").read_text() == "serial,owner\n"


def test_a_second_run_in_the_same_workdir_takes_the_devices_folder_the_first_left(tmp_path):
    # Its buffers' id files (agent/log.py) were taken for the user's own and the run refused.
    args = _args(tmp_path)
    args.devices, args.duration, args.workers = 1, 600000, 1
    for _ in range(2):
        out = io.StringIO()
        assert simulate_cmd.main(args, out=out, err=out) == 0, out.getvalue()
    assert any((tmp_path / "w" / "devices").glob("*/id"))


def test_a_second_run_in_a_workdir_a_run_holds_is_refused_and_takes_nothing_of_it(tmp_path):
    # It deleted the running one's buffers and database; both then reported readings lost.
    import fcntl
    files = _earlier_run(tmp_path / "w")
    with open(tmp_path / "w" / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)     # as a running simulate holds it
        held.write("4242\n")
        held.flush()
        err = io.StringIO()
        assert simulate_cmd.main(_args(tmp_path), out=io.StringIO(), err=err) == 2
    assert err.getvalue() == ("tether simulate: another tether simulate (pid 4242) is running "
                              "in %s: wait for it to end, or give another --workdir\n"
                              % (tmp_path / "w"))
    assert sorted(str(p) for p in (tmp_path / "w").rglob("*")
                  if p.name != ".lock") == files
    assert (tmp_path / "w" / "fleet.sqlite").read_bytes() == b"earlier"


def test_shards_share_a_workdir_and_a_run_that_empties_it_waits_for_them(tmp_path):
    # A plain run's fresh start deleted the devices of shards running in the same workdir.
    first = simulate_cmd._lock(str(tmp_path / "w"), shared=True)
    second = simulate_cmd._lock(str(tmp_path / "w"), shared=True)
    with pytest.raises(ValueError) as err:
        simulate_cmd._lock(str(tmp_path / "w"))
    assert "another tether simulate is running in" in str(err.value)
    first.close()
    second.close()
    simulate_cmd._lock(str(tmp_path / "w")).close()


def test_an_interrupted_run_leaves_no_report_of_the_run_before_beside_its_database(
        tmp_path, monkeypatch):
    # report.json still held the complete run before while fleet.sqlite held the cut one.
    _earlier_run(tmp_path / "w")

    async def cut(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(Fleet, "run", cut)
    args = _args(tmp_path)
    args.workers = 1
    with pytest.raises(KeyboardInterrupt):
        simulate_cmd.main(args, out=io.StringIO(), err=io.StringIO())
    assert not (tmp_path / "w" / "report.json").exists()
    assert not (tmp_path / "w" / "fleet.sqlite").exists()


def test_a_device_whose_agent_stops_on_an_error_is_reported_and_the_run_exits_1(
        tmp_path, monkeypatch):
    # It showed as one device fewer online, its readings as waiting, and the run exited 0.
    from agent.runtime import Agent
    run = Agent.run

    async def failing(self):
        if self.device == "printer-0001":
            raise RuntimeError("the buffer's folder went away")
        return await run(self)
    monkeypatch.setattr(Agent, "run", failing)
    args = _args(tmp_path)
    args.devices, args.workers = 2, 1
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out, err=out) == 1
    text = out.getvalue()
    assert ("AGENTS STOPPED by an error on 1 device (their readings since are not generated): "
            "printer-0001: RuntimeError: the buffer's folder went away") in text, text
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert report["fleet"]["crashed"] == 1
    assert [d["crashed"] for d in report["devices"]] == [
        "RuntimeError: the buffer's folder went away", None]


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path, sigint):
    # It killed the run at once: the devices' workers were orphaned and the ingest's session
    # stayed on the user's broker, queueing the fleet's messages for nobody. A script's
    # background job has SIGINT ignored: there SIGTERM must stop it all the same.
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" \
        else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "simulate", "--workdir", str(tmp_path / "w"),
         "--duration", "30d", "--devices", "4", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert proc.stdout.readline().startswith("simulating 4 devices")
        assert "running: device time" in proc.stdout.readline()     # under way
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "tether simulate: interrupted" in err and "Traceback" not in err


def test_a_database_in_a_folder_not_made_yet_gets_its_folder_as_the_report_does(tmp_path):
    db = tmp_path / "runs" / "today" / "fleet.sqlite"
    args = _args(tmp_path)
    args.db, args.devices, args.duration, args.workers = str(db), 1, 600000, 1
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out, err=out) == 0, out.getvalue()
    with sqlite3.connect(str(db)) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] > 0


def _args(tmp_path):
    import argparse
    parser = argparse.ArgumentParser()
    simulate_cmd.add_command(parser.add_subparsers())
    return parser.parse_args(["simulate", "--workdir", str(tmp_path / "w"), "--speed", "max",
                              "--duration", "1h"])


def test_the_default_fleet_mixes_the_example_appliances():
    from simulator.models import model_for
    lines = load_fleet(DEFAULT_FLEET)
    models = {model_for(p).__name__: n for p, n, _ in lines}
    assert models == {"Printer": 4, "PillBottle": 4, "Washer": 2, "Fridge": 2}
    scaled = load_fleet(DEFAULT_FLEET, 100)
    assert sum(n for _, n, _ in scaled) == 100
    assert all(n >= 1 for _, n, _ in load_fleet(DEFAULT_FLEET, 3))
    assert [t.format(n=7) for _, _, t in lines][0] == "printer-0007"


@pytest.mark.parametrize("text, says", [
    ("devices: []", "expected a mapping with a non-empty 'devices' list"),
    ("devices:\n  - {profile: ../printer.yaml, count: 0}", "devices[0].count: expected a whole"),
    ("devices:\n  - {profile: ../printer.yaml, count: true}", "devices[0].count: expected a whole"),
    ("devices:\n  - {profile: ../printer.yaml, count: 100001}",
     "devices[0].count: the fleet would have more than 100000 devices, the limit"),
    ("devices: " + "[" * 20000, "f.yaml: not a YAML fleet file: nested too deeply"),
    ("devices:\n  - {profile: ../printer.yaml, colour: red}", "devices[0]: unknown key colour"),
    ("devices:\n  - {count: 2}", "devices[0]: expected {profile, count, id}"),
    ("devices: [", "f.yaml:1:11: not a YAML fleet file: expected the node content"),
    ("devices:\n  - {profile: 5}", "devices[0].profile: expected a file path"),
    ("devices:\n  - {profile: ../printer.yaml, id: 7}", "devices[0].id: expected text"),
    # A profile given as --fleet: "could not determine a constructor for the tag '!secret'".
    ("device: {id: p}\nuplink: {password: !secret pw}\n", "f.yaml: a profile, not a fleet "
     "file: a fleet file lists profiles and how many devices of each"),
    ("device: {id: p}\nsensors: []\n", "f.yaml: a profile, not a fleet file"),
])
def test_a_bad_fleet_file_says_where(tmp_path, text, says):
    from simulator.fleet import FleetError
    path = tmp_path / "fleets" / "f.yaml"
    path.parent.mkdir()
    (tmp_path / "printer.yaml").write_text(open("examples/printer.yaml").read())
    path.write_text(text)
    with pytest.raises(FleetError) as exc:
        load_fleet(str(path))
    assert says in str(exc.value) and str(path) in str(exc.value)


def test_two_lines_naming_the_same_devices_are_refused(tmp_path):
    # Two lines of one profile without ids ran two devices as one: their batches refused as
    # copies of each other's and readings counted lost.
    from simulator.fleet import FleetError
    printer = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "printer.yaml")
    path = tmp_path / "f.yaml"
    path.write_text("devices:\n  - {profile: %s, count: 2}\n  - {profile: %s}\n"
                    % (printer, printer))
    with pytest.raises(FleetError) as exc:
        load_fleet(str(path))
    assert str(exc.value) == ("%s:3:5: devices[1]: its device printer-0001 is also one of "
                              "devices[0]'s: give each line ids of its own (id: "
                              "\"name-{n:04d}\")" % path)
    path.write_text("devices:\n  - {profile: %s, count: 2}\n  - {profile: %s, id: 'b-{n}'}\n"
                    % (printer, printer))
    assert [n for _, n, _ in load_fleet(str(path))] == [2, 1]


def test_a_profile_no_appliance_model_fits_is_refused_before_any_device_starts(tmp_path):
    # A fridge without a power meter: the profile compiles, but it names an appliance whose
    # model cannot drive it. It was a traceback once devices started.
    from simulator.fleet import FleetError
    shutil.copytree("examples", tmp_path / "examples")
    bottle = tmp_path / "examples" / "pill-bottle.yaml"
    bottle.write_text(bottle.read_text().replace("model: Acme SmartCap", "model: Cold fridge"))
    path = tmp_path / "f.yaml"
    path.write_text("devices:\n  - {profile: examples/printer.yaml}\n"
                    "  - {profile: examples/pill-bottle.yaml}\n")
    with pytest.raises(FleetError) as exc:
        load_fleet(str(path))
    assert str(exc.value).startswith("%s:3:15: devices[1]: profile 'pillbottle-{uid}'" % path)
    assert "a fridge needs a power meter" in str(exc.value)
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", "--fleet", str(path),
                           "--duration", "1h", "--workdir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "a fridge needs a power meter" in proc.stderr


def test_a_product_no_appliance_model_fits_runs_on_made_up_signals_and_loses_nothing(tmp_path):
    # It was refused ("no appliance model fits its sensors"), so a maker could try a product of
    # its own only by naming its sensors as a printer's, which drove a scale as a pill bottle.
    (tmp_path / "coffee.yaml").write_text(
        'device: {id: "coffee-{uid}", model: Brewmaster BM-12}\n'
        "platform: sim\n"
        "buses: [{id: i2c0, type: i2c, sda: 21, scl: 22}]\n"
        "sensors:\n"
        "  - {name: rail_power, driver: ina219, bus: i2c0, quantity: power, interval: 30s}\n"
        "  - {name: water_level, driver: level_probe, pin: 34, interval: 1min,\n"
        "     calibration: {raw_empty: 350, raw_full: 3600},\n"
        "     insight: {type: consumable, lead_time: 5d}}\n"
        "  - {name: beans, driver: hx711, pins: {dout: 25, sck: 26}, quantity: weight,\n"
        "     interval: 2min, calibration: {tare: 84210, scale: 420.5}}\n"
        "uplink: {broker: 'mqtt://127.0.0.1:1883'}\n")
    (tmp_path / "fleet.yaml").write_text(
        "devices:\n  - {profile: coffee.yaml, count: 2, id: 'coffee-{n:02d}'}\n")
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", "--fleet",
                           str(tmp_path / "fleet.yaml"), "--duration", "6h", "--faults", "",
                           "--workdir", str(tmp_path / "run"), "--report",
                           str(tmp_path / "r.json"), "--plots", str(tmp_path / "plots")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # its readings drawn: it had only the backlog's plot
    assert (tmp_path / "plots" / "readings.png").read_bytes().startswith(PNG)
    assert ("simulated as: 2 Brewmaster BM-12 as made-up signals (no appliance model fits"
            in proc.stdout), proc.stdout
    report = json.load(open(tmp_path / "r.json"))
    assert {d["simulated_as"] for d in report["devices"]} == {"Signals"}
    assert_every_reading_accounted(report, str(tmp_path / "run" / "fleet.sqlite"))
    with sqlite3.connect(str(tmp_path / "run" / "fleet.sqlite")) as db:
        spread = dict((c, (lo, hi)) for c, lo, hi in db.execute(
            "SELECT channel, min(value), max(value) FROM readings GROUP BY channel"))
    assert set(spread) == {"rail_power", "water_level", "beans"}
    assert all(hi > lo for lo, hi in spread.values()), spread   # signals, not the chips' defaults


def test_sensor_errors_a_profile_causes_are_in_the_report_with_what_the_sensor_said(tmp_path):
    # A 12 V freezer's INA219 left at its default calibration (0.1 ohm, 3.2 A) under a fridge's
    # compressor: half its readings failed, and the report said "0 sensor faults".
    (tmp_path / "freezer.yaml").write_text(
        'device: {id: "freezer-{uid}", model: Polar 12V chest fridge}\n'
        "platform: sim\n"
        "buses: [{id: i2c0, type: i2c, sda: 21, scl: 22}]\n"
        "sensors:\n"
        "  - {name: power, driver: ina219, bus: i2c0, quantity: power, interval: 30s}\n"
        "uplink: {broker: 'mqtt://127.0.0.1:1883'}\n")
    (tmp_path / "fleet.yaml").write_text("devices:\n  - {profile: freezer.yaml, count: 2}\n")
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", "--fleet",
                           str(tmp_path / "fleet.yaml"), "--duration", "6h", "--faults", "",
                           "--workdir", str(tmp_path / "run"), "--report",
                           str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.load(open(tmp_path / "r.json"))
    with sqlite3.connect(str(tmp_path / "run" / "fleet.sqlite")) as db:
        raised = dict(db.execute("SELECT device, count(*) FROM events WHERE event = "
                                 "'sensor_error' AND state = 'raised' GROUP BY device"))
    assert report["fleet"]["sensor_faults"] == 0 and len(raised) == 2
    for d in report["devices"]:
        n, said = d["sensor_errors"]["power"]
        assert n == raised[d["device"]] > 0
        assert "more than 3.2 A through 0.1 ohm" in said
    line = next(x for x in proc.stdout.splitlines() if x.startswith("sensor errors: "))
    assert line.startswith("sensor errors: power %d on 2 devices (no sensor fault was injected"
                           % sum(raised.values()))
    assert "the first said: power: INA219 at i2c0:0x40 shunt voltage" in line


def test_every_problem_of_a_fleet_file_is_said_at_its_line_and_column(tmp_path):
    # Only the first was said, without a line or a "did you mean", unlike a profile's.
    from simulator.fleet import FleetError
    shutil.copytree("examples", tmp_path / "examples")
    path = tmp_path / "f.yaml"
    path.write_text("devices:\n  - {profile: examples/printer.yaml, cout: 3}\n"
                    "  - {profile: examples/printer.yaml, count: 0, id: 5}\n")
    with pytest.raises(FleetError) as exc:
        load_fleet(str(path))
    assert str(exc.value).splitlines() == [
        "%s:2:38: devices[0]: unknown key cout, did you mean 'count'?" % path,
        "%s:3:45: devices[1].count: expected a whole number >= 1" % path,
        "%s:3:52: devices[1].id: expected text like 'printer-{n:04d}'" % path]


def test_a_missing_fleet_file_is_said_without_an_errno(tmp_path):
    from simulator.fleet import FleetError
    with pytest.raises(FleetError) as exc:
        load_fleet(str(tmp_path / "none.yaml"))
    assert str(exc.value) == "%s: cannot read: No such file or directory" % (tmp_path / "none.yaml")


@pytest.mark.parametrize("template, says", [
    ("..{n}", "devices[0].id: '..{n}' gives '..1', not an id of up to 64 letters"),
    ("<script>{n}", "gives '<script>1', not an id"),
    ("p-{n:0200d}", "not an id of up to 64"),
    # the id as written, not as rewritten ('a-{m}-{n:04d}')
    ("a-{m}", "devices[0].id: expected text like 'printer-{n:04d}', got 'a-{m}'"),
])
def test_fleet_device_ids_follow_the_profiles_rule(tmp_path, template, says):
    from simulator.fleet import FleetError
    path = tmp_path / "f.yaml"
    path.write_text("devices:\n  - {profile: %s, id: '%s'}\n"
                    % (os.path.abspath("examples/printer.yaml"), template))
    with pytest.raises(FleetError) as exc:
        load_fleet(str(path))
    assert says in str(exc.value) and str(path) in str(exc.value)


def test_a_fault_schedule_depends_on_the_seed_alone_and_shares_the_fleet():
    spec = faults.parse("outage:every=6h,for=1h,share=0.5;power:every=1d,share=0.25;"
                        "restart:count=3;outage:every=1d,for=2h,scope=fleet")
    profiles = [{"sensors": [{"name": "x", "driver": "ina219"}]}] * 8
    day = 86400000

    def actions(seed):
        s = faults.Schedule(spec, profiles, 2 * day, seed)
        return s.due(2 * day + 3 * 3600000)
    a = actions(4)
    assert a == actions(4) and a != actions(5)
    restarts = [t for t, action, _, _ in a if action == "restart"]
    assert restarts == [day // 2, day, 3 * day // 2]
    assert [t for t, _, _, _ in a] == sorted(t for t, _, _, _ in a)
    downs = [(t, i) for t, action, i, _ in a if action == "down"]
    ups = [(t, i) for t, action, i, _ in a if action == "up"]
    assert len(downs) == len(ups) > 0
    # A fleet-wide outage takes every device down at one instant.
    by_time = {}
    for t, i in downs:
        by_time.setdefault(t, set()).add(i)
    assert any(devices == set(range(8)) for devices in by_time.values())
    assert 1 <= len({i for _, action, i, _ in a if action == "cut"}) <= 2


def example(name):
    from firmware.profile.compile import compile as compile_profile
    profile, errors = compile_profile("examples/%s.yaml" % name)
    assert not errors
    return profile


def test_a_sensor_fault_uses_the_drivers_own_failure():
    spec = faults.parse("sensor:every=1h,for=10min")
    washer, printer = example("washer"), example("printer")
    printer["sensors"] = [s for s in printer["sensors"] if s["driver"] == "ina219"]
    acts = faults.Schedule(spec, [washer, printer], 86400000, 1).due(2 * 86400000)
    kinds = {(i, details[1]) for _, action, i, details in acts if action == "sensor"}
    assert kinds == {(0, "timeout"), (1, "nack")}


def test_a_sensor_fault_of_a_given_kind_hits_only_the_sensors_that_can_have_it():
    # A bad CRC is a UART's (the washer's PZEM-004T); the printer's INA219 is on I2C and its
    # probes on ADC pins: the fault was once given to any sensor and the run crashed on it.
    spec = faults.parse("sensor:every=1h,for=10min,kind=bad_crc")
    profiles = [example("printer"), example("washer")] * 3
    acts = faults.Schedule(spec, profiles, 86400000, 1).due(2 * 86400000)
    hit = {(i % 2, details) for _, action, i, details in acts if action == "sensor"}
    assert {d for _, d in hit} and {i for i, _ in hit} == {1}
    assert {kind for _, (_, kind) in hit} == {"bad_crc"}
    # a share is of the devices that can have it: 2 of the 3 washers, whatever the printers
    # (picked from all six, a printer drawn was passed over and fewer were hit)
    spec = faults.parse("sensor:every=1h,for=10min,kind=bad_crc,share=0.6")
    for seed in range(1, 8):
        acts = faults.Schedule(spec, profiles, 86400000, seed).due(2 * 86400000)
        assert len({i for _, action, i, _ in acts if action == "sensor"}) == 2, seed
    faults.check(spec, profiles)
    with pytest.raises(faults.FaultError) as exc:
        faults.check(spec, [example("printer"), example("pill-bottle")])
    assert str(exc.value).startswith("sensor: kind=bad_crc: no sensor of the fleet has that "
                                     "fault (theirs: disconnected, dout_low, nack, no_chip, ")


def test_simulate_refuses_a_sensor_fault_no_sensor_can_have_before_it_starts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", "--devices", "2",
                           "--duration", "1h", "--faults", "sensor:kind=bogus",
                           "--workdir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("tether simulate: sensor: kind=bogus: no sensor of the fleet")
    assert not (tmp_path / "run").exists()


def test_restart_faults_need_the_embedded_broker_and_slow_links_are_static():
    spec = faults.parse("slow:latency=200ms,bandwidth=20kbps,share=0.5")
    s = faults.Schedule(spec, [{"sensors": []}] * 4, 3600000, 1)
    assert len(s.static) == 2 and s.static[0][2] == (200, 20000.0)
    assert s.due(3600000) == []


def test_time_on_the_fleet_clock_runs_fast_and_wakes_sleepers_in_order():
    from simulator.clock import FleetClock

    async def main():
        clock = FleetClock(1763856000000, speed=None)
        woke = []

        async def sleeper(name, ms, times):
            c = clock.device()
            for _ in range(times):
                await c.sleep(ms)
                woke.append((clock.t, name))
        tasks = [asyncio.ensure_future(sleeper("a", 600000, 6)),
                 asyncio.ensure_future(sleeper("b", 1500000, 2))]
        await clock.run(3600000)
        clock.finish()
        await asyncio.gather(*tasks)
        return woke, clock.device().now()
    woke, now = asyncio.run(main())
    # At one instant, who went to sleep first wakes first: b (asleep since 1.5M) before a.
    assert woke == [(600000, "a"), (1200000, "a"), (1500000, "b"), (1800000, "a"),
                    (2400000, "a"), (3000000, "b"), (3000000, "a"), (3600000, "a")]
    assert now == (1763856000000 + 3600000, True)


def test_commands_printed_without_the_urls_password_say_how_to_give_it():
    for db, said in (("postgresql://ingest:s3cr3t@db/fleet", True),
                     ("postgresql://ingest@db/fleet", False), ("/tmp/fleet.sqlite", False)):
        out = io.StringIO()
        simulate_cmd._password_note(db, out)
        assert ("PGPASSWORD" in out.getvalue()) is said and "s3cr3t" not in out.getvalue()


def test_plots_without_matplotlib_are_refused_before_the_run(tmp_path):
    # They were refused once the whole run was over, with exit 1 (a reading lost).
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "block"))
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "simulate", "--duration", "1h",
                           "--plots", str(tmp_path / "plots"), "--workdir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == ("tether simulate: --plots needs matplotlib: pip install matplotlib "
                           "(tether's [plots] extra)\n")
    assert "simulating" not in proc.stdout and not (tmp_path / "run").exists()


def test_the_closing_hint_names_the_tether_that_ran_when_it_is_not_on_path(tmp_path):
    # After the quickstart `tether` is in the venv's bin/, not on PATH: "see it: tether
    # console" was "command not found".
    script = os.path.join(os.path.dirname(sys.executable), "tether")
    assert os.path.exists(script), "the venv has no tether script: pip install -e ."
    proc = subprocess.run([script, "simulate", "--duration", "1h", "--workdir",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=180,
                          cwd=str(tmp_path), env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert proc.returncode == 0, proc.stderr
    assert "see it: %s console --db run/fleet.sqlite " % script in proc.stdout, proc.stdout


def test_the_plots_show_the_devices_where_most_happened():
    # The first three printers were drawn whatever happened elsewhere: a run's only swap was
    # on printer-0004, which no plot showed.
    from types import SimpleNamespace

    from simulator.plots import _busiest
    devices = [SimpleNamespace(device_id="p-%d" % i, truth={}) for i in range(1, 6)]
    found = {"p-4": [(1, "cartridge_replaced"), (2, "reorder")], "p-2": [(1, "forecast")],
             "p-5": [(1, "empty")]}
    shown = _busiest(devices, found, 3, ("reorder", "empty", "cartridge_replaced"))
    assert [d.device_id for d in shown] == ["p-1", "p-4", "p-5"]
    # a cartridge that really ran dry counts too: where the device said nothing, it matters
    devices[2].truth = {"ink_empty": [(5, "ink_c"), (9, "ink_k")]}
    shown = _busiest(devices, found, 3, ("reorder", "empty", "cartridge_replaced"),
                     ("ink_empty",))
    assert [d.device_id for d in shown] == ["p-3", "p-4", "p-5"]


def test_the_closing_hint_gives_the_console_the_runs_broker_but_never_its_password():
    from firmware.simulate_cmd import _broker_option
    assert _broker_option(None) == ""
    assert _broker_option("mqtt://127.0.0.1:1883") == " --broker mqtt://127.0.0.1:1883"
    assert _broker_option("mqtts://u:secret@h:8883") == " --broker BROKER_URL"


def test_with_devices_left_online_where_to_look_is_said_before_waiting_for_ctrl_c(
        tmp_path, monkeypatch):
    # The report:/look:/see it: lines came after Ctrl-C, when the console they point at had
    # closed.
    async def at_once():
        return None
    monkeypatch.setattr(simulate_cmd, "_signalled", at_once)
    args = _args(tmp_path)
    args.devices, args.workers, args.faults, args.stay_online = 1, 1, "", True
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out, err=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "faults: none" in text
    assert text.index("see it: ") < text.index("the devices stay online") and text.count(
        "see it: ") == 1, text


def test_the_reports_fleet_totals_count_the_boots_as_the_docs_table_lists_them(tmp_path):
    args = _args(tmp_path)
    args.devices, args.workers, args.faults = 2, 1, "power:every=1h,share=1"
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out, err=out) == 0, out.getvalue()
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert report["fleet"]["boots"] == sum(d["boots"] for d in report["devices"]) > 2


def test_a_report_made_again_after_the_devices_stayed_online_still_adds_up(tmp_path,
                                                                          monkeypatch):
    # The part was stored before the devices stopped: what they sent while online (a slow
    # link still draining) was read as delivered and as still waiting both, "-455 LOST".
    async def a_while():
        await asyncio.sleep(2)
    monkeypatch.setattr(simulate_cmd, "_signalled", a_while)
    args = _args(tmp_path)
    args.devices, args.workers, args.stay_online = 1, 1, True
    # (a link this slow has not drained by the first report, on any machine this runs on:
    # readings still waiting then are delivered during the wait)
    args.faults, args.duration = "slow:bandwidth=2kbps,latency=200ms", 4 * 3600000
    out = io.StringIO()
    simulate_cmd.main(args, out=out, err=out)
    from firmware import report_cmd
    import argparse
    parser = argparse.ArgumentParser()
    report_cmd.add_command(parser.add_subparsers())
    again = io.StringIO()
    code = report_cmd.main(parser.parse_args(["report", "--db", str(tmp_path / "w" /
                                                                   "fleet.sqlite")]),
                           out=again, err=again)
    from simulator import parts
    from simulator.report import from_parts
    report = from_parts(str(tmp_path / "w" / "fleet.sqlite"),
                        parts.load(str(tmp_path / "w" / "fleet.sqlite"))[1])
    f = report["fleet"]
    assert f["lost"] == 0 and f["generated"] == (f["delivered"] + f["reported_dropped"] +
                                                 f["waiting"] + f["power_cut_window"]), f
    assert code == 0, again.getvalue()


def test_overlapping_outages_of_a_device_keep_its_link_down_until_the_last_one_ends(tmp_path):
    # The first window's end brought the link back under a second one still on: the report's
    # outage time fell a sixth short of the schedule's.
    spec = faults.parse("outage:every=6h,for=5h,share=1")
    lines = load_fleet(DEFAULT_FLEET, 1)
    duration = 2 * 86400000
    schedule = faults.Schedule(spec, [p for p, n, _ in lines for _ in range(n)], duration, 3)
    windows, opened = [], []
    for t, _, action, i, _ in sorted(schedule.actions):
        if action == "down":
            opened.append(t)
        elif action == "up":
            windows.append((opened.pop(0), t))
    merged = []
    for a, b in sorted(windows):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    assert len(merged) < len(windows), "the seed must give overlapping windows"
    expected = sum(min(b, duration) - a for a, b in merged)
    args = _args(tmp_path)
    args.devices, args.workers, args.seed, args.faults = 1, 1, 3, "outage:every=6h,for=5h,share=1"
    args.duration = duration
    out = io.StringIO()
    assert simulate_cmd.main(args, out=out, err=out) == 0, out.getvalue()
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert report["devices"][0]["outage_ms"] == expected


def test_the_progress_shows_a_long_phase_now_and_then_not_once(monkeypatch):
    # The repairs after a run (minutes on a slow link) printed one line and then nothing: the
    # run looked hung. Each phase gets a line at once, then one every every_s while it lasts.
    from simulator import progress
    now = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    out = io.StringIO()
    p = progress.Progress(out=out, every_s=5.0)
    p.live = None
    snap = {"wall_s": 1.0, "device_time_ms": 0, "duration_ms": 1000, "online": 1, "devices": 1,
            "generated": 0, "delivered": 0, "backlog": 0, "outages": 0, "power_cuts": 0,
            "events": 0}
    for t, phase in ((1000.0, "running"), (1001.0, "running"), (1002.0, "repairing"),
                     (1003.0, "repairing"), (1008.0, "repairing"), (1009.0, "done")):
        now[0] = t
        p.update(dict(snap, phase=phase))
    assert [line.split("] ")[1].split(":")[0] for line in out.getvalue().splitlines()] == [
        "running", "repairing", "repairing", "done"]
