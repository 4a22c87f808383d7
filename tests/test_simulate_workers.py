"""A fleet spread over processes (`tether simulate --workers N`) and over machines (`--shard I/N`,
then `tether report --db`) is one fleet: the same devices, readings, faults and truth as in one
process with the same seed, and one report that covers every device."""
import argparse
import io
import json
import sqlite3
import subprocess
import sys

import pytest

from firmware import report_cmd, simulate_cmd

FAULTS = "outage:every=3h,for=1h,share=0.5;power:every=90min,share=1"
# What a run decides from its seed alone (health reports and bytes on the air follow the wall
# clock: when a connection came up, how many turns a reconnect took).
SAME = ("device", "model", "generated", "delivered", "reported_dropped", "waiting", "lost",
        "power_cut_window", "lost_at_broker", "events", "events_raised", "events_waiting",
        "events_lost", "power_cuts", "boots", "outage_ms", "truth", "insights")


def args_of(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    simulate_cmd.add_command(sub)
    report_cmd.add_command(sub)
    return parser.parse_args(list(argv))


def simulate(tmp_path, name, *more, devices=4, duration="12h"):
    out, err = io.StringIO(), io.StringIO()
    work = tmp_path / name
    code = simulate_cmd.main(args_of(
        "simulate", "--workdir", str(work), "--devices", str(devices), "--duration", duration,
        "--speed", "max", "--seed", "7", "--faults", FAULTS, *more), out=out, err=err)
    return code, out.getvalue(), err.getvalue(), work


def per_device(report):
    return [{k: d[k] for k in SAME} for d in report["devices"]]


def whole_fleet_report(db, tmp_path):
    """`tether report --db` of the 4-device fleet: it must count every device and lose none."""
    out = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(db), "--report",
                                   str(tmp_path / "r.json")), out=out) == 0
    assert out.getvalue().startswith("4 devices, ") and " 0 LOST" in out.getvalue()
    return json.loads((tmp_path / "r.json").read_text())


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The reference: the fleet in this one process."""
    code, out, err, work = simulate(tmp_path_factory.mktemp("alone"), "w", "--workers", "1")
    assert code == 0, out + err
    return json.loads((work / "report.json").read_text())


def test_a_fleet_in_two_workers_is_the_fleet_of_one_process(tmp_path, alone):
    code, out, err, work = simulate(tmp_path, "w", "--workers", "2")
    assert code == 0, out + err
    assert "in 2 processes" in out
    report = json.loads((work / "report.json").read_text())
    assert report["fleet"]["devices"] == 4 and report["fleet"]["lost"] == 0
    f = report["fleet"]
    assert f["delivered"] + f["power_cut_window"] == f["generated"] > 0
    assert report["fleet"]["power_cuts"] >= 8  # the faults hit devices of both workers
    assert per_device(report) == per_device(alone)
    assert report["insight_scores"] == alone["insight_scores"]
    # The last progress line is the fleet as it ended, not as the workers last noted it running.
    done = [line for line in out.splitlines() if "] done: " in line][-1]
    assert " %d readings generated," % f["generated"] in done and " backlog 0 batches" in done
    # Each worker stored its part; `tether report` makes the same report from the database.
    with sqlite3.connect(str(work / "fleet.sqlite")) as db:
        assert db.execute("SELECT first_device, devices FROM sim_parts ORDER BY first_device"
                          ).fetchall() == [(0, 2), (2, 2)]
    out = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(work / "fleet.sqlite"), "--report",
                                   str(tmp_path / "again.json")), out=out) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert per_device(again) == per_device(report)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_shards_against_one_broker_and_database_report_the_whole_fleet(
        tmp_path, alone, mosquitto, backend, request):
    db = tmp_path / "fleet.sqlite" if backend == "sqlite" else \
        request.getfixturevalue("postgres_url")
    broker = "mqtt://127.0.0.1:%d" % mosquitto.port
    for shard in ("1/2", "2/2"):
        code, out, err, _ = simulate(tmp_path, "w", "--shard", shard, "--broker", broker,
                                     "--db", str(db), "--workers", "1")
        assert code == 0, out + err
        assert "shard %s: devices" % shard in out
        if shard == "1/2":  # half the fleet is not a report yet
            err = io.StringIO()
            assert report_cmd.main(args_of("report", "--db", str(db)), out=io.StringIO(),
                                   err=err) == 2
            assert "parts for devices 1-2 of 4, none for 3-4: a shard has not stored its part" in \
                err.getvalue()
    report = whole_fleet_report(db, tmp_path)
    assert per_device(report) == per_device(alone)
    assert report["insight_scores"] == alone["insight_scores"]


def test_two_shards_side_by_side_as_two_machines_run_them_report_the_whole_fleet(
        tmp_path, alone, mosquitto):
    # Each shard's ingest takes its share of every shard's messages while it runs; the first to
    # end leaves the group, and nothing of the other's may be lost with it.
    db = tmp_path / "fleet.sqlite"
    base = [sys.executable, "-m", "firmware.cli", "simulate", "--devices", "4", "--duration",
            "12h", "--speed", "max", "--seed", "7", "--faults", FAULTS, "--broker",
            "mqtt://127.0.0.1:%d" % mosquitto.port, "--db", str(db), "--workers", "1"]
    shards = [subprocess.Popen(base + ["--shard", "%d/2" % i, "--workdir", str(tmp_path / str(i))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for i in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in shards]
    assert [p.returncode for p in shards] == [0, 0], outs
    report = whole_fleet_report(db, tmp_path)
    assert per_device(report) == per_device(alone)


@pytest.mark.parametrize("argv, says", [
    (["--shard", "0/2"], "--shard: expected I/N with 1 <= I <= N (the first shard is 1/N), "
                         "got '0/2'"),
    (["--shard", "3/2"], "--shard: expected I/N with 1 <= I <= N"),
    (["--shard", "half"], "--shard: expected I/N"),
    (["--shard", "\u00b9/2"], "--shard: expected I/N"),    # a superscript 1: int() refuses it
    (["--shard", "1/2"], "--shard: the shards of a fleet meet in one broker and one database: "
                         "give --broker and --db"),
    (["--broker", "mqtt://127.0.0.1:1", "--faults", "restart"],
     "--faults: restart restarts the embedded broker, which --broker replaces"),
    (["--shard", "1/5", "--broker", "mqtt://127.0.0.1:1", "--db", "x.sqlite"],
     "--shard: 5 shards of a fleet of 4 devices: at most one shard per device"),
])
def test_bad_shards_are_said_plainly_and_exit_2(tmp_path, argv, says):
    code, out, err, work = simulate(tmp_path, "w", *argv)
    assert code == 2 and err.startswith("tether simulate: %s" % says), err
    assert err.count("\n") == 1
    assert not work.exists()


def test_a_broker_that_cannot_be_reached_is_said_without_a_session_to_remove(tmp_path, caplog):
    code, out, err, work = simulate(tmp_path, "w", "--broker", "mqtt://127.0.0.1:1",
                                    "--duration", "1h")
    assert code == 2 and "cannot connect to the broker 127.0.0.1:1" in err, err
    # the ingest never connected: the broker holds no session of it to warn about
    assert not [r for r in caplog.records if "session" in r.getMessage()], caplog.text


@pytest.mark.parametrize("value", ["0", "-1", "two", "257"])
def test_bad_worker_counts_are_refused_by_the_command_line(value, capsys):
    with pytest.raises(SystemExit) as exc:
        args_of("simulate", "--workers", value)
    assert exc.value.code == 2
    assert "argument --workers: expected a whole number from 1 to 256, got %r" % value in \
        capsys.readouterr().err


def test_a_report_of_a_database_without_a_run_is_said_plainly(tmp_path):
    err = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(tmp_path / "none.sqlite")),
                           err=err) == 2
    assert err.getvalue() == "tether report: %s: no such database\n" % (tmp_path / "none.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.commit()
    err = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(other)), err=err) == 2
    assert "holds no simulation run (no such table: sim_parts)" in err.getvalue()
    from ingest import connect_db  # a `tether ingest` database: its tables, no run in them
    connect_db(str(tmp_path / "ingest.sqlite")).close()
    err = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(tmp_path / "ingest.sqlite")),
                           err=err) == 2
    assert err.getvalue() == ("tether report: %s holds no simulation run: a `tether simulate` "
                              "(each shard) stores its part when it ends; an interrupted one, or "
                              "a `tether ingest`, stores none\n" % (tmp_path / "ingest.sqlite"))


def test_no_worker_enters_a_window_before_every_worker_has_finished_the_last_one():
    import math
    import multiprocessing

    from simulator import workers
    shared = multiprocessing.get_context("spawn").RawArray("d", workers.HEAD + 3 * workers.SLOTS)
    shared[workers.CEILING] = math.inf
    a, b, c = (workers.Sync(shared, i, 3) for i in range(3))
    a.reached(20000)
    b.reached(10000)
    c.reached(9000)  # still in the first window: nobody goes past its end
    assert a.limit() == b.limit() == c.limit() == 10000
    c.reached(10000)
    assert a.limit() == 20000
    shared[workers.CEILING] = 12000  # the parent's: a broker restart is due there
    assert a.limit() == 12000
    c.reached(math.inf)  # a worker done with device time holds nobody back
    shared[workers.CEILING] = math.inf
    assert a.limit() == 20000 and workers.split(0, 10, 3) == [(0, 3), (3, 6), (6, 10)]


def test_the_progress_line_never_shows_more_delivered_than_generated(tmp_path):
    # The workers note what they generated every NOTE_EVERY_S; the ingest's count is live. A
    # line showed "23223 readings generated, 25190 delivered".
    import multiprocessing

    from simulator import workers
    from simulator.fleet import DEFAULT_FLEET, load_fleet
    fleet = workers.WorkerFleet(load_fleet(DEFAULT_FLEET, 4), str(tmp_path), 3600000,
                                workers=2)
    fleet.shared = multiprocessing.get_context("spawn").RawArray(
        "d", workers.HEAD + 2 * workers.SLOTS)
    for w, generated in enumerate((11000, 12223)):
        fleet.shared[workers.HEAD + w * workers.SLOTS + workers.GENERATED] = generated
    fleet.ingest = type("Ingest", (), {"stats": lambda self: {"readings": 25190}})()
    snap = fleet.snapshot()
    assert (snap["generated"], snap["delivered"]) == (25190, 25190)
    fleet.ingest = type("Ingest", (), {"stats": lambda self: {"readings": 20000}})()
    snap = fleet.snapshot()
    assert (snap["generated"], snap["delivered"]) == (23223, 20000)


def test_the_parent_waits_for_newest_numbers_until_every_worker_has_looked_and_found_none(
        tmp_path):
    # Each worker counts its devices whose newest batch or event the database does not know
    # (simulator/workers.py, _watch_tails); -1 until it has looked, or while it cannot read.
    import asyncio
    import multiprocessing

    from simulator import workers
    from simulator.fleet import DEFAULT_FLEET, load_fleet
    fleet = workers.WorkerFleet(load_fleet(DEFAULT_FLEET, 4), str(tmp_path), 3600000,
                                workers=2)
    fleet.shared = multiprocessing.get_context("spawn").RawArray(
        "d", workers.HEAD + 2 * workers.SLOTS)

    def unknown(first, second):
        for w, n in enumerate((first, second)):
            fleet.shared[workers.HEAD + w * workers.SLOTS + workers.UNKNOWN] = n
        return asyncio.run(fleet._tails_unknown())
    assert unknown(-1, -1) == 1
    assert unknown(-1, 0) == 1  # one has found none, the other has not looked
    assert unknown(-1, 3) == 3
    assert unknown(2, 3) == 5
    assert unknown(0, 0) == 0


def test_ctrl_c_stops_a_run_in_workers_with_a_line_not_a_traceback_and_no_process_left(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    # Ctrl-C at its default in the child, as in a terminal: a shell's background job (as a
    # runner may start the suite) ignores SIGINT, and the child would inherit that
    cli = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "sys.argv[0] = 'tether'; runpy.run_module('firmware.cli', run_name='__main__')")
    proc = subprocess.Popen(
        [sys.executable, "-c", cli, "simulate", "--devices", "4", "--workers", "2",
         "--duration", "30d", "--speed", "max", "--workdir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().startswith("simulating 4 devices")
        for line in proc.stdout:  # the progress lines: interrupted once every worker runs
            if " 4/4 online" in line:
                break
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.endswith("tether simulate: interrupted\n"), err
    # the workers went with it: nothing is left in the run's process group
    with pytest.raises(ProcessLookupError):
        for _ in range(600):
            os.killpg(proc.pid, 0)
            time.sleep(0.1)


def test_a_worker_gone_while_the_parent_drains_fails_the_run_at_once(tmp_path, monkeypatch):
    from ingest.subscriber import Ingest
    from simulator import workers
    drain = workers.WorkerFleet._drain_all
    asked = []

    async def killed_first(fleet):
        fleet.procs[0].kill()  # every worker has drained; the parent waits for the ingest
        fleet.procs[0].join()
        return await drain(fleet)
    monkeypatch.setattr(workers.WorkerFleet, "_drain_all", killed_first)
    # the ingest would wait for repairs: asked only if the drain goes on without the worker
    monkeypatch.setattr(Ingest, "repair_pending", lambda self: asked.append(1) or False)
    code, out, err, _ = simulate(tmp_path, "w", "--workers", "2", devices=2, duration="1h")
    assert code == 2, out + err
    assert err.splitlines()[-1] == ("tether simulate: worker 1 of 2 (devices 1-1) failed (exit "
                                    "status -9): see the lines above"), err
    assert asked == []


def test_the_ingest_pace_hold_ends_when_a_worker_is_gone():
    import asyncio

    from simulator.fleet import FleetError, IngestPace

    class Fleet:
        ingest_group = None
        devices_total = 2

        def __init__(self):
            self.gate = type("Gate", (), {"published": 10 ** 6})()
            self.ingest = self

        def stored(self):
            return 0

        def quiet_s(self):
            self.quiet_asked += 1
            return 0.0 if self.quiet_asked < 3 else 1.0  # the ingest falls quiet at last

        def _check_workers(self):
            raise FleetError("worker 1 of 2 (devices 1-1) failed")
    fleet = Fleet()
    fleet.quiet_asked = 0
    with pytest.raises(FleetError):
        asyncio.run(IngestPace(fleet)._hold())


def test_a_shard_of_another_run_or_one_run_twice_is_refused_before_it_runs(tmp_path, mosquitto):
    db = tmp_path / "fleet.sqlite"
    broker = "mqtt://127.0.0.1:%d" % mosquitto.port

    def shard(which, *more):
        return simulate(tmp_path, "w" + which[0], "--shard", which, "--broker", broker, "--db",
                        str(db), "--workers", "1", *more, devices=2, duration="1h")
    code, out, err, _ = shard("1/2")
    assert code == 0, out + err
    code, out, err, _ = shard("2/2", "--seed", "8")
    assert code == 2 and err.startswith(
        "tether simulate: --db: %s holds a part of another run (seed 7, 2 devices, 3600000 ms, "
        "fleet " % db), err
    assert "another run needs a database of its own" in err
    code, out, err, _ = shard("1/2")
    assert code == 2 and err == (
        "tether simulate: --db: %s holds devices 1-1 of this run already: a shard runs once "
        "into its database (to run it again, drop and create the database and run every "
        "shard)\n" % db)
    code, out, err, _ = shard("2/2")
    assert code == 0, out + err
    assert report_cmd.main(args_of("report", "--db", str(db)), out=io.StringIO(),
                           err=io.StringIO()) == 0


def test_a_shard_into_a_file_without_parts_leaves_it_to_its_ingest_to_say_what_it_is(tmp_path):
    import sqlite3
    from simulator.parts import check_shard
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(str(path)) as db:
        db.execute("CREATE TABLE notes (x)")
    check_shard(str(path), "seed 7", 0, 2)          # no traceback: no parts to compare with
    (tmp_path / "empty.sqlite").write_bytes(b"")
    check_shard(str(tmp_path / "empty.sqlite"), "seed 7", 0, 2)


def test_shards_run_with_other_faults_are_not_merged_into_one_report(tmp_path, mosquitto,
                                                                   monkeypatch):
    # Started at once on two machines, neither has stored its part when the other checks.
    from simulator import parts
    monkeypatch.setattr(parts, "check_shard", lambda *a: None)
    db = tmp_path / "fleet.sqlite"
    broker = "mqtt://127.0.0.1:%d" % mosquitto.port
    for shard, faults in (("1/2", FAULTS), ("2/2", "power:every=2h,share=1")):
        code, out, err, _ = simulate(tmp_path, "w" + shard[0], "--shard", shard, "--broker",
                                     broker, "--db", str(db), "--workers", "1", "--faults",
                                     faults, devices=2, duration="1h")
        assert code == 0, out + err
    err = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", str(db)), out=io.StringIO(), err=err) == 2
    [line] = err.getvalue().splitlines()
    assert line.startswith("tether report: %s: runs 'seed 7, 2 devices, 3600000 ms, fleet " % db)
    assert line.endswith("have the same seed, devices and duration but other fleets or faults: "
                         "their parts are not merged (the shards of one run take the same fleet "
                         "file and --faults; run the shards that differ again)"), line


def test_a_postgresql_database_without_runs_is_said_in_one_line(postgres_url):
    from ingest.store import open_store
    db = open_store(postgres_url)
    db.execute("DROP TABLE sim_parts")
    db.close()
    err = io.StringIO()
    assert report_cmd.main(args_of("report", "--db", postgres_url), err=err) == 2
    [line] = err.getvalue().splitlines()
    assert "holds no simulation run (relation \"sim_parts\" does not exist LINE 1: " in line, line


def test_without_workers_the_fleet_is_spread_over_every_core(tmp_path, monkeypatch):
    monkeypatch.setattr(simulate_cmd.os, "cpu_count", lambda: 3)
    code, out, err, work = simulate(tmp_path, "w", duration="2h")
    assert code == 0, out + err
    assert "in 3 processes" in out
    report = json.loads((work / "report.json").read_text())
    assert report["fleet"]["devices"] == 4 and report["fleet"]["lost"] == 0


def test_a_console_port_asked_for_and_taken_is_an_error_not_another_port(tmp_path):
    import socket
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        code, out, err, work = simulate(tmp_path, "w", "--console", "--console-port", str(port),
                                        "--duration", "1h")
    finally:
        taken.close()
    assert code == 2 and err.startswith("tether simulate: --console-port %d: " % port), err
    assert "console: http" not in out and "simulating" not in out  # said before the run


def test_a_worker_that_fails_mid_run_says_so_and_stops_its_sleeping_devices():
    # A failure inside a worker's run (a sensor fault its chips lacked, before tether simulate
    # refused those up front) left its devices asleep on a clock nobody moved: stopping them
    # never returned, the worker never said it failed, and the run hung in silence.
    import asyncio

    from simulator import workers
    from simulator.clock import FleetClock

    class Fleet:
        broker_url = "mqtt://127.0.0.1:1883"

        def __init__(self):
            self.clock = FleetClock(1763856000000, speed=None)

        async def _devices_run(self, host, port):
            raise ValueError("a fault the devices' chips lack")

        async def _stop_devices(self):
            Sync.states.append("stop, device time %s" % (
                "ended" if self.clock.finished else "still running"))
            await self.clock.device().sleep(60000)  # returns once device time has ended

    class Sync:
        states = []

        def state(self, s):
            self.states.append(s)

    async def main():
        return await asyncio.wait_for(workers._work(Fleet(), Sync(), True), 60)
    with pytest.raises(ValueError, match="a fault the devices' chips lack"):
        asyncio.run(main())
    assert Sync.states == [workers.FAILED, "stop, device time ended"]


def test_a_shard_run_again_is_refused_naming_all_its_devices_not_one_workers(monkeypatch):
    # Its workers each store a part: the refusal named the first worker's devices alone.
    from simulator import parts
    monkeypatch.setattr(parts, "_rows", lambda db: [("run", 0, 5, None), ("run", 5, 5, None),
                                                    ("run", 15, 5, None), ("run", 20, 10, None)])
    with pytest.raises(parts.PartsError) as err:
        parts.check_shard("fleet.sqlite", "run", 0, 20)
    assert "holds devices 1-10, 16-20 of this run already" in str(err.value)
    parts.check_shard("fleet.sqlite", "run", 30, 40)      # another shard's devices: free


def test_the_ingest_of_a_fleet_in_workers_dates_now_by_the_devices_time():
    # The parent's own clock stands still: its ingest took the run's start for now, and every
    # day of a PostgreSQL run after the second went to readings_outside, out of the partitions.
    import math
    from simulator import workers
    fleet = workers.WorkerFleet([("printer", 3, {})], "unused", 5 * 86400000, workers=2)
    start = fleet.clock.start_unix_ms / 1000.0
    assert fleet.device_now() == start
    fleet.shared = [0.0] * (workers.HEAD + workers.SLOTS * 2)
    fleet.shared[workers.HEAD + workers.T] = 3 * 86400000.0
    fleet.shared[workers.HEAD + workers.SLOTS + workers.T] = 3 * 86400000.0 + 60000
    assert fleet.device_now() == start + 3 * 86400 + 60
    fleet.shared[workers.HEAD + workers.SLOTS + workers.T] = math.inf   # done: the run's end
    assert fleet.device_now() == start + 5 * 86400
