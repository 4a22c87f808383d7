"""Nothing lost end to end (issue 8): a live fleet (`tether simulate --broker`) through a
Mosquitto with persistence that is restarted with SIGTERM three times, killed with SIGKILL once
and started once without persistence, while a standalone `tether ingest` with its defaults is
killed with SIGKILL and, after those last three blows, started again. At the end its database
holds every reading the devices generated, less what the report counts as dropped by devices or
lost in power-cut windows: what the broker lost, the ingest asked the devices for again. The
simulator's own ingest (a persistent session of its own, through the same broker blows but not
the ingest kill) reports no loss and holds the same readings."""
import json
import signal
import sqlite3
import subprocess
import sys
import time

from ingest import summary, totals
from simulator.report import text as simulate_report_text

STEP = 40          # batches stored between two blows
LIVENESS_S = 240   # what a stuck run gets before it fails (not a timing assertion)


def count(db, sql):
    try:
        with sqlite3.connect(str(db), timeout=30) as conn:
            return conn.execute(sql).fetchone()[0] or 0
    except sqlite3.OperationalError:  # not created yet
        return 0


def start_ingest(port, db, log):
    proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                             "mqtt://127.0.0.1:%d" % port, "--db", str(db), "--quiet"],
                            stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: count(db, "SELECT count(*) FROM sqlite_master") > 0, proc)
    return proc


def wait_until(condition, *procs, what="the run", detail=lambda: ""):
    deadline = time.monotonic() + LIVENESS_S
    while not condition():
        for p in procs:
            assert p.poll() is None, "%s ended early (exit %s)" % (p.args[3], p.returncode)
        assert time.monotonic() < deadline, "%s did not get there %s" % (what, detail())
        time.sleep(0.2)


def test_a_fleet_loses_nothing_through_broker_restarts_kills_and_an_ingest_kill(
        mosquitto_factory, tmp_path):
    broker = mosquitto_factory(persistence=True, log_type="error warning")
    url = "mqtt://127.0.0.1:%d" % broker.port
    db = tmp_path / "standalone.sqlite"
    report_path = tmp_path / "report.json"
    ingest_log = open(tmp_path / "ingest.log", "ab")
    sim_log = open(tmp_path / "simulate.log", "wb")
    ingest = start_ingest(broker.port, db, ingest_log)
    sim = subprocess.Popen([sys.executable, "-m", "firmware.cli", "simulate", "--broker", url,
                            "--devices", "4", "--duration", "2d", "--speed", "4000x",
                            "--seed", "11", "--workdir", str(tmp_path / "w"),
                            "--report", str(report_path), "--stay-online"],
                           stdout=sim_log, stderr=subprocess.STDOUT)
    own_db = tmp_path / "w" / "fleet.sqlite"
    batches = "SELECT count(*) FROM batches"
    try:
        def after_more(path):
            start = count(path, batches)
            wait_until(lambda: count(path, batches) >= start + STEP, sim, what=str(path))

        def kill_the_ingest():
            ingest.kill()
            ingest.wait()

        def start_the_ingest():
            nonlocal ingest
            ingest = start_ingest(broker.port, db, ingest_log)

        # Each blow after STEP more batches have gone through. While the ingest is dead its
        # session holds its backlog on the broker: the SIGKILL loses what came since the last
        # save, and the restart without persistence loses the session itself, so nothing is
        # kept for it until it is back. Only the devices still have those batches.
        for watch, blow in ((db, broker.restart),
                            (db, broker.restart),
                            (db, kill_the_ingest),
                            (own_db, lambda: broker.restart(kill=True)),
                            (own_db, broker.restart),
                            (own_db, lambda: broker.restart(persistence=False)),
                            (own_db, start_the_ingest)):
            after_more(watch)
            blow()
        assert broker.starts == 6
        wait_until(report_path.exists, sim, ingest, what="the fleet's report")
        report = json.loads(report_path.read_text())
        want = {d["device"]: d["generated"] - d["reported_dropped"] - d["power_cut_window"]
                for d in report["devices"]}
        events = {d["device"]: d["events_raised"] for d in report["devices"]}
        assert report["fleet"]["waiting"] == report["fleet"]["events_waiting"] == 0, report
        stored = lambda: {k: v["readings"] for k, v in summary(db).items()}  # noqa: E731
        wait_until(lambda: stored() == want, sim, ingest, what="the standalone ingest's repair",
                   detail=lambda: "(stored %s of %s)" % (stored(), want))
    finally:
        for p in (sim, ingest):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (sim, ingest):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        ingest_log.close()
        sim_log.close()
    assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    # The simulator's own ingest: its report is written once its repairs are done and before
    # the devices linger, so the SIGINT leaves it as it was and the exit status is its verdict.
    # Batches a device re-sends for either ingest go out on their normal topic, so each ingest
    # also gets what the other asked for: this holds the two together, not each one alone.
    f = report["fleet"]
    assert (f["lost"], f["events_lost"], f["lost_at_broker"], f["lost_at_broker_batches"],
            f["events_lost_at_broker"]) == (0, 0, 0, 0, 0), simulate_report_text(report)
    assert {d["device"]: d["delivered"] for d in report["devices"]} == want
    assert {d["device"]: d["events"] for d in report["devices"]} == events
    own = summary(own_db)
    assert {k: v["readings"] for k, v in own.items()} == want
    assert {k: v["events"] for k, v in own.items()} == events
    t_own = totals(own_db)
    assert (t_own["lost_at_broker"], t_own["events_lost_at_broker"], t_own["held"]) == \
        (0, 0, 0), t_own
    assert count(own_db, "SELECT count(*) FROM (SELECT 1 FROM readings "
                         "GROUP BY device, t_ms, channel HAVING count(*) > 1)") == 0
    assert sim.returncode == 0, (tmp_path / "simulate.log").read_text()[-3000:]
    s = summary(db)
    assert {k: v["readings"] for k, v in s.items()} == want
    assert {k: v["events"] for k, v in s.items()} == events
    t = totals(db)
    assert (t["lost_at_broker"], t["events_lost_at_broker"], t["held"]) == (0, 0, 0), t
    assert t["repaired"] > 0  # the batches published while it had no session came this way
    # Each reading once: a repair that arrives twice is a duplicate batch, never two rows.
    assert count(db, "SELECT count(*) FROM (SELECT 1 FROM readings "
                     "GROUP BY device, t_ms, channel HAVING count(*) > 1)") == 0
    print("standalone ingest: %d batches repaired (%d readings), %d duplicates; the simulator's "
          "own ingest: %d readings repaired" % (t["repaired"], t["repaired_readings"],
                                                t["duplicates"], report["fleet"]["repaired"]))
