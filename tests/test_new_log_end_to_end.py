"""A device whose buffer is made afresh (an erased board, a new SD card, remove-service --purge)
numbers its batches from 0 again: end to end through a real Mosquitto, `tether run` and
`tether ingest`, the new log's batches are stored beside the old one's, none refused
(docs/ingest.md, "A device's new log")."""
import shutil
import sqlite3
import subprocess
import sys
import time

from agent import batch_decode
from agent.schema import Schema
from tests.run_process import Run, until, watch
from tests.test_run_cli import PROFILE

LIVENESS_S = 120  # what a stuck run gets before it fails (not a timing assertion)


def _batches(seen):
    return [p for t, p in seen if t.endswith("/up/batch")]


def query(db, sql):
    try:
        with sqlite3.connect(str(db), timeout=30) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return None


def test_a_device_whose_buffer_was_made_afresh_has_every_batch_of_both_logs_stored(
        tmp_path, mosquitto):
    db = tmp_path / "fleet.sqlite"
    ingest = subprocess.Popen([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                               "mqtt://127.0.0.1:%d" % mosquitto.port, "--db", str(db),
                               "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher, got = watch(mosquitto.port, "tether/v1/pi-1/#")
    try:
        deadline = time.monotonic() + LIVENESS_S
        while not query(db, "SELECT 1 FROM sqlite_master WHERE name = 'stores'"):
            assert ingest.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        profile = tmp_path / "pi.yaml"
        profile.write_text(PROFILE % (mosquitto.port, ""))
        store = tmp_path / "buffer"
        for round_ in (1, 2):
            run = Run(str(profile), "--store", str(store))
            run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
            before = len(_batches(got))
            until(got, lambda seen: len(_batches(seen)) >= before + 2, "two batches of the run")
            code, rest = run.stop()
            assert code == 0 and rest.startswith("stopped: 0 batches waiting"), rest
            # Its last batch went before its offline status: both seen, `want` below is whole.
            until(got, lambda seen: [p for t, p in seen if t.endswith("/status")].count(
                b"offline") == round_, "the run's offline status")
            shutil.rmtree(store)  # the board erased: the next run makes a new buffer
        schemas = {}
        for topic, p in list(got):
            if topic.endswith("/schema"):
                sch = Schema.from_cbor(p)
                schemas[sch.id] = sch
        sent = [batch_decode.decode(p, schemas) for t, p in list(got) if t.endswith("/batch")]
        logs = sorted({b.store for b in sent})
        assert len(logs) == 2 and all(s >= 1 << 16 for s in logs)
        first = [b.store for b in sent][0]
        want = sorted({(0 if b.store == first else 1 << 32) + b.seq for b in sent})
        assert min(b.seq for b in sent if b.store != first) == 0  # numbered from 0 again
        while [s for (s,) in query(db, "SELECT seq FROM batches ORDER BY seq") or []] != want:
            assert ingest.poll() is None, ingest.stderr.read()
            assert time.monotonic() < deadline, query(db, "SELECT seq FROM batches")
            time.sleep(0.2)
        assert query(db, "SELECT count(*) FROM malformed") == [(0,)]
        assert query(db, "SELECT store, number FROM stores WHERE kind = 'batch' "
                         "ORDER BY number") == [(first, 0), ([s for s in logs if s != first][0],
                                                             1)]
        assert query(db, "SELECT count(*) FROM lost") == [(0,)]  # all came before the wipe
        assert query(db, "SELECT count(*) FROM readings") == [
            (sum(len(b.readings) for b in sent),)]
    finally:
        watcher.loop_stop()
        ingest.terminate()
        ingest.wait(30)
