"""End-to-end repair: what it costs to get back what a broker lost.

    python3 bench/repair.py            (--quick: 5 devices, for bench/run_all.py)

A 20-device fleet (`tether simulate --broker`, the default fleet file's appliances, one day of
device time at full speed, seed 11, no other faults) publishes through a mosquitto on loopback
that runs without persistence (and with `max_queued_messages 0`, as docs/simulator.md says for
a fleet at full speed) and is killed with SIGKILL three times during the run, each time after
another KILL_EVERY batches reached the simulator's own ingest and KILL_APART_S after the last. Each kill loses what the
broker held for the ingest (its session and the messages queued in it) although the broker had
acknowledged them to the devices: only the devices still have those batches, and the ingest asks
them again (docs/uplink.md, "Repair"). Measured:

- readings repaired: delivered in batches the ingest asked for again, and lost at the broker
  (the devices no longer held them: must be 0);
- time until the database is complete after the last restart: until the ingest's database held
  every reading the devices generated (the report's ground truth); the run's own end (device time
  over, devices still online for repairs) is shown beside it;
- extra bytes on the air: the devices' PUBLISH bytes (MQTT framing included: re-sent batches,
  replies, reconnects' status, schema and health) against a baseline run with the same seed and
  no kills, measured in the same invocation; and the `resend` commands, as seen by a watcher
  subscribed to the command topics (at least that many: one published while the watcher
  reconnects after a kill is not seen).

Exit status 1 only when a run failed (a reading unaccounted for, a run that did not finish).
"""
import json
import os
import sqlite3
import subprocess
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402
from simulator.lab.mosquitto import Mosquitto, find_tool  # noqa: E402

DEVICES = 20
DEVICES_QUICK = 5
KILLS = 3
KILL_EVERY = 500          # batches stored at the ingest between two kills (20 devices: 2,880)
KILL_APART_S = 2.0     # at least this long between two kills
LIVENESS_S = 600


def count(db, sql):
    try:
        with sqlite3.connect(str(db), timeout=30) as conn:
            return conn.execute(sql).fetchone()[0] or 0
    except sqlite3.OperationalError:  # not created yet
        return 0


class CommandWatcher:
    """Counts the resend commands on tether/v1/+/down/cmd and their bytes on the air (PUBLISH
    framing included, as the device's client receives them)."""

    def __init__(self, port):
        import paho.mqtt.client as paho
        self.commands = 0
        self.bytes = 0
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self._client.on_connect = lambda cl, *a: cl.subscribe("tether/v1/+/down/cmd", 1)
        self._client.on_message = self._message
        self._client.reconnect_delay_set(0.05, 0.2)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _message(self, client, userdata, msg):
        self.commands += 1
        self.bytes += len(msg.payload) + 5 + len(msg.topic) + (2 if msg.qos else 0)

    def stop(self):
        self._client.disconnect()
        self._client.loop_stop()


def run(devices, kills, folder):
    """One fleet run; returns its figures."""
    os.makedirs(folder)
    # max_queued_messages 0: at its default of 1,000 mosquitto drops what an ingest that falls
    # behind a full-speed fleet has not taken (docs/simulator.md), which repair then fills too,
    # and the baseline would not be one.
    broker = Mosquitto(folder + "/broker", persistence=False, log_type="error",
                       extra_conf="max_queued_messages 0")
    broker.start()
    watcher = CommandWatcher(broker.port)
    report_path = folder + "/report.json"
    own_db = folder + "/w/fleet.sqlite"
    log = open(folder + "/simulate.log", "wb")
    started = time.monotonic()
    sim = subprocess.Popen([sys.executable, "-m", "firmware.cli", "simulate", "--broker",
                            "mqtt://127.0.0.1:%d" % broker.port, "--devices", str(devices),
                            "--duration", "1d", "--speed", "max", "--seed", "11",
                            "--faults", "", "--workdir", folder + "/w",
                            "--report", report_path],
                           cwd=c.ROOT, stdout=log, stderr=subprocess.STDOUT)
    samples = []   # (wall s since start, readings stored)
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.monotonic() - started,
                            count(own_db, "SELECT count(*) FROM readings")))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kill_at = []
    try:
        deadline = started + LIVENESS_S
        batches = "SELECT count(*) FROM batches"
        for i in range(kills):
            want = KILL_EVERY * (i + 1) * devices // DEVICES
            while count(own_db, batches) < want:
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the fleet ended before kill %d (exit %s): see %s"
                                     % (i + 1, sim.returncode, folder))
                time.sleep(0.05)
            if kill_at:  # apart in time too: repairs after a kill fill the database fast
                time.sleep(max(0.0, kill_at[-1] + KILL_APART_S - (time.monotonic() - started)))
            broker.kill()
            broker.start()
            kill_at.append(time.monotonic() - started)
        sim.wait(max(1, deadline - time.monotonic()))
        ended = time.monotonic() - started
    finally:
        done.set()
        sampler.join()
        if sim.poll() is None:
            sim.kill()
        watcher.stop()
        broker.stop()
        log.close()
    report = json.load(open(report_path))
    fleet = report["fleet"]
    want = fleet["generated"] - fleet["reported_dropped"] - fleet["power_cut_window"]
    complete = next((t for t, n in samples if n >= want), ended)
    return {"fleet": fleet, "want": want, "exit": sim.returncode, "kills": kill_at,
            "complete_s": complete, "ended_s": ended, "commands": watcher.commands,
            "command_bytes": watcher.bytes, "stored": count(own_db,
                                                             "SELECT count(*) FROM readings")}


def main(quick=False):
    if find_tool("mosquitto") is None:
        raise SystemExit("needs Debian's mosquitto (tests/system-deps)")
    devices = DEVICES_QUICK if quick else DEVICES
    folder = tempfile.mkdtemp(prefix="tether-bench-repair-")
    print("fleet: %d devices of the default fleet file, 1 day of device time at full speed, "
          "seed 11, no other faults; mosquitto without persistence on loopback" % devices)
    base = run(devices, 0, folder + "/baseline")
    hit = run(devices, KILLS, folder + "/kills")
    failed = False
    for name, r in (("baseline", base), ("3 kills", hit)):
        f = r["fleet"]
        ok = r["exit"] == 0 and f["lost"] == 0 and f["lost_at_broker"] == 0 and \
            r["stored"] == r["want"]
        failed |= not ok
        print("%-8s exit %s, %d readings generated, %d stored of the %d expected, %d repaired "
              "(%d batches), %d lost at the broker, %d lost, %d resend commands%s"
              % (name, r["exit"], f["generated"], r["stored"], r["want"], f["repaired"],
                 f["repaired_batches"], f["lost_at_broker"], f["lost"], r["commands"],
                 "" if ok else "  FAILED"))
    last = hit["kills"][-1] if hit["kills"] else 0.0
    print()
    print("kills at %s s of the run" % ", ".join("%.1f" % t for t in hit["kills"]))
    print("readings repaired: %d (%.2f %% of the %d generated)"
          % (hit["fleet"]["repaired"], 100.0 * hit["fleet"]["repaired"] /
             max(1, hit["fleet"]["generated"]), hit["fleet"]["generated"]))
    print("database complete %.1f s after the last restart (the fleet's run, repairs "
          "included, ended %.1f s after it)" % (hit["complete_s"] - last, hit["ended_s"] - last))
    up_base = base["fleet"]["bytes_on_air"]
    up_hit = hit["fleet"]["bytes_on_air"]
    extra = up_hit - up_base + hit["command_bytes"]
    print("bytes on the air: %d up with kills against %d in the baseline (+%d, %+.2f %%); "
          "resend commands down: at least %d in %d bytes; extra in all: %d bytes (%.3f per reading "
          "generated)" % (up_hit, up_base, up_hit - up_base,
                          100.0 * (up_hit - up_base) / max(1, up_base), hit["commands"],
                          hit["command_bytes"], extra,
                          extra / max(1, hit["fleet"]["generated"])))
    if failed or "--keep" in sys.argv[1:]:
        print("runs kept in %s" % folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv[1:]))
