"""`tether run`: the agent as a Raspberry Pi runs it (here on virtual chips), stopped by SIGTERM,
and started again on the same buffer."""
import signal
import subprocess
import sys
import time

import paho.mqtt.client as paho

PROFILE = """\
device: {id: pi-1}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 200ms}
batch: {max_readings: 10, max_age: 1min}
uplink: {broker: "mqtt://127.0.0.1:%d", backoff: {min: 100ms, max: 1s}}
"""


def test_run_delivers_readings_and_stops_cleanly_on_sigterm(tmp_path, mosquitto):
    got = []
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="w", protocol=paho.MQTTv311)
    watcher.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe("tether/v1/pi-1/#", 1)
    watcher.loop_start()
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % mosquitto.port)
    store = tmp_path / "buffer"
    for round_ in (1, 2):
        proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "run", str(profile),
                                 "--store", str(store)], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        assert first.startswith("pi-1: 1 sensors, buffer at %s" % store)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert out.startswith("stopped: 0 batches waiting for the broker, 0 readings dropped")
    watcher.loop_stop()
    batches = [p for t, p in got if t == "tether/v1/pi-1/up/batch"]
    status = [p for t, p in got if t == "tether/v1/pi-1/status"]
    assert len(batches) >= 4  # 10 readings a batch, 5 a second, 3 s a run, and a flush at stop
    assert status == [b"online", b"offline", b"online", b"offline"]
    from agent import batch_decode
    seqs = [batch_decode.read_envelope(p).seq for p in batches]
    boots = [batch_decode.read_envelope(p).boot for p in batches]
    assert seqs == list(range(len(seqs))) and set(boots) == {1, 2}
