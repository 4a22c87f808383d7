"""The compiled form: plain JSON types, units resolved to integers, sensors in profile order."""
import json
import textwrap

import pytest

from firmware.cli import main
from firmware.profile.compile import compile

SMALL = """\
device:
  id: scale-{uid}
platform: esp32
buses:
  - {id: bus0, type: i2c, sda: 21, scl: 22, frequency: 400kHz}
  - {id: serial, type: uart, tx: 17, rx: 16}
sensors:
  - name: power
    driver: ina219
    bus: bus0
    interval: 250ms
    resolution: 0.10
    filters: {median: 3, deadband: 0.5}
    thresholds:
      - {event: high_power, above: 20, hysteresis: 1.5}
  - name: pills
    driver: hx711
    pins: {dout: 4, sck: 5}
    quantity: count
    interval: 1min
    calibration: {tare: 100, scale: 2.5, pill_weight: 0.5}
  - name: tank
    driver: level_probe
    adc: {bus: bus0, channel: 2}
    interval: 24h
    calibration: {raw_empty: 120, raw_full: 26000}
  - name: mains
    driver: pzem004t
    bus: serial
    address: 3
    quantity: energy
    unit: Wh
    resolution: 10
buffer: {storage: ram, max_bytes: 1MiB, ram_readings: 8, flush_every: 30s}
batch: {max_bytes: 64KiB, max_age: 1h, max_readings: 10000}
uplink:
  broker: mqtt://b.example.com:8883  # plain: an ESP32 on mqtts:// needs a ca file
  client_id: scale-client
  username: scale
  topic_prefix: acme/v2
  deflate: true
  keepalive: 30s
  ack_timeout: 2min
  backoff: {min: 500ms, max: 1d}
  health_every: 1h
"""

EXPECTED = {
    "v": 1,
    "device": {"id": "scale-{uid}"},
    "platform": "esp32",
    "chip": "esp32",        # the default: which ESP32
    "buses": [
        {"id": "bus0", "type": "i2c", "sda": 21, "scl": 22, "frequency": 400_000},
        {"id": "serial", "type": "uart", "tx": 17, "rx": 16, "baud": 9600},
    ],
    "sensors": [
        {"name": "power", "driver": "ina219", "quantity": "power", "unit": "W",
         "interval_ms": 250, "resolution": [1, -1], "bus": "bus0", "address": 0x40,
         "calibration": {"shunt_ohms": 0.1, "max_current": 3.2},
         "filters": {"median": 3, "deadband": 0.5},
         "thresholds": [{"event": "high_power", "above": 20, "hysteresis": 1.5}]},
        {"name": "pills", "driver": "hx711", "quantity": "count", "unit": "count",
         "interval_ms": 60_000, "resolution": [1, 0], "pins": {"dout": 4, "sck": 5}, "gain": 128,
         "calibration": {"tare": 100, "scale": 2.5, "pill_weight": 0.5},
         "filters": {}, "thresholds": []},
        {"name": "tank", "driver": "level_probe", "quantity": "level", "unit": "%",
         "interval_ms": 86_400_000, "resolution": [1, -1],
         "adc": {"bus": "bus0", "address": 0x48, "channel": 2},
         "calibration": {"raw_empty": 120, "raw_full": 26000}, "filters": {}, "thresholds": []},
        {"name": "mains", "driver": "pzem004t", "quantity": "energy", "unit": "Wh",
         "interval_ms": 60_000, "resolution": [1, 1], "bus": "serial", "address": 3,
         "calibration": {}, "filters": {}, "thresholds": []},
    ],
    "buffer": {"storage": "ram", "path": "/buffer", "max_bytes": 1_048_576, "ram_readings": 8,
               "flush_ms": 30_000},
    "batch": {"max_readings": 10_000, "max_bytes": 65_536, "max_age_ms": 3_600_000},
    "uplink": {"host": "b.example.com", "port": 8883, "tls": False, "client_id": "scale-client",
               "username": "scale", "prefix": "acme/v2", "encoding": "compact", "deflate": True,
               "keepalive_ms": 30_000, "ack_timeout_ms": 120_000, "backoff_min_ms": 500,
               "backoff_max_ms": 86_400_000, "health_ms": 3_600_000, "window": 4},
}


def write(tmp_path, text, name="p.yaml"):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return str(tmp_path / name)


def test_compiled_form_is_exact_for_a_small_profile(tmp_path):
    assert compile(write(tmp_path, SMALL)) == (EXPECTED, [])


def test_defaults_fill_a_minimal_profile(tmp_path):
    compiled, errors = compile(write(tmp_path, """\
        device: {id: kettle}
        platform: rpi
        buses: [{id: i2c0, type: i2c, sda: 2, scl: 3}]
        sensors: [{name: volts, driver: ads1115, bus: i2c0}]
        uplink: {broker: "mqtt://localhost"}
        """))
    assert errors == []
    assert compiled["sensors"] == [{
        "name": "volts", "driver": "ads1115", "quantity": "voltage", "unit": "V",
        "interval_ms": 60_000, "resolution": [1, -1], "bus": "i2c0", "address": 0x48,
        "channel": 0, "calibration": {"gain": 2.048}, "filters": {}, "thresholds": []}]
    assert compiled["buffer"] == {"storage": "flash", "path": "/var/lib/tether/buffer",
                                  "max_bytes": 262_144, "ram_readings": 32, "flush_ms": 60_000}
    assert compiled["batch"] == {"max_readings": 420, "max_bytes": 8192, "max_age_ms": 600_000}
    assert compiled["uplink"] == {
        "host": "localhost", "port": 1883, "tls": False, "client_id": "kettle", "prefix": "tether/v1",
        "encoding": "compact", "deflate": False, "keepalive_ms": 60_000, "ack_timeout_ms": 30_000,
        "backoff_min_ms": 1000, "backoff_max_ms": 300_000, "health_ms": 300_000, "window": 4}


@pytest.mark.parametrize("text, parts", [
    ("0.1", [1, -1]), ("0.5", [5, -1]), ("1", [1, 0]), ("10", [1, 1]), ("0.10", [1, -1]),
    ("0.25", [25, -2]), ("2.5", [25, -1]), ("100", [1, 2]), ("0.001", [1, -3]),
    ("0.30000000000000004", [30000000000000004, -17]),
])
def test_resolution_is_read_exactly_from_the_yaml_text(tmp_path, text, parts):
    compiled, errors = compile(write(tmp_path, """\
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0, resolution: %s}]
        uplink: {broker: "mqtt://localhost"}
        """ % text))
    assert compiled["sensors"][0]["resolution"] == parts


def test_tls_files_are_embedded_relative_to_the_profile(tmp_path, tls_files):
    client = tls_files.client("device-A")
    (tmp_path / "certs").mkdir()
    texts = {}
    for name, source in (("ca", tls_files.ca_pem), ("client", client["cert_pem"]),
                         ("client-key", client["key_pem"])):
        texts[name] = open(source).read()
        (tmp_path / "certs" / ("%s.pem" % name)).write_text(texts[name])
    compiled, errors = compile(write(tmp_path, """\
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink:
          broker: mqtts://[::1]
          ca: certs/ca.pem
          cert: certs/client.pem
          key: certs/client-key.pem
        """))
    assert errors == []
    uplink = compiled["uplink"]
    assert (uplink["host"], uplink["port"]) == ("::1", 8883)
    assert [uplink[k] for k in ("ca", "cert", "key")] == [
        texts["ca"], texts["client"], texts["client-key"]]


def test_tether_compile_writes_json_equal_to_compile(tmp_path, capsys):
    path = write(tmp_path, SMALL)
    out = tmp_path / "out.json"
    assert main(["compile", path, "-o", str(out)]) == 0
    text = out.read_text()
    assert json.loads(text) == EXPECTED
    assert text == json.dumps(EXPECTED, sort_keys=True, separators=(",", ":")) + "\n"
    assert main(["compile", path]) == 0
    assert capsys.readouterr().out == text


def test_tether_compile_fails_with_errors_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, SMALL.replace("interval: 250ms", "interval: 50ms"))
    out = tmp_path / "out.json"
    assert main(["compile", path, "-o", str(out)]) == 2
    assert not out.exists()
    assert capsys.readouterr().err == (
        "%s:11:15: sensors[0].interval: expected a duration from 100ms to 1d, got '50ms'\n" % path)
