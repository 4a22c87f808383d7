"""`substitutions:` and `packages:` behave as an ESPHome user expects."""
import pathlib
import textwrap

from firmware.profile.compile import compile

DATA = pathlib.Path(__file__).parent / "data" / "profiles"


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_substitutions_fill_both_forms_and_keep_the_variable_type(tmp_path):
    compiled, errors = compile(write(tmp_path, "p.yaml", """\
        substitutions:
          name: kettle
          every: 10
          low: 15
          addr: 0x41
        device: {id: "${name}-{uid}", model: $name Pro}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            address: ${addr}
            interval: ${every}s
            thresholds: [{event: low_power, below: "${low}"}]
        uplink: {broker: "mqtt://${name}.local"}
        """))
    assert errors == []
    assert compiled["device"] == {"id": "kettle-{uid}", "model": "kettle Pro"}
    sensor = compiled["sensors"][0]
    assert (sensor["address"], sensor["interval_ms"]) == (0x41, 10_000)
    assert sensor["thresholds"] == [{"event": "low_power", "below": 15, "hysteresis": 0}]
    assert compiled["uplink"]["host"] == "kettle.local"


def test_unknown_substitution_variable_is_an_error_at_its_value(tmp_path):
    path = write(tmp_path, "p.yaml", """\
        substitutions: {name: kettle}
        device: {id: "${nmae}-1"}
        platform: sim
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        uplink: {broker: "mqtt://$host"}
        """)
    assert compile(path) == (None, [
        path + ":2:14: device.id: unknown substitution variable 'nmae', did you mean 'name'?",
        path + ":6:18: uplink.broker: unknown substitution variable 'host' (text with a '$' "
               "of its own: !literal '...')",
    ])


def test_literal_text_keeps_its_dollar_signs_as_written(tmp_path):
    # "Brew $pro" was an unknown variable, and `$$pro` too: a model name could not hold a '$'.
    path = write(tmp_path, "p.yaml", """\
        substitutions: {pro: X}
        device: {id: k, model: !literal "Brew $pro ${pro}"}
        platform: sim
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        uplink: {broker: "mqtt://localhost"}
        """)
    compiled, errors = compile(path)
    assert errors == [] and compiled["device"]["model"] == "Brew $pro ${pro}"


BASE = """\
substitutions:
  host: broker.example.com
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 5s}
  - {name: current, driver: ina219, bus: i2c0, quantity: current}
batch: {max_age: 5min, max_readings: 100}
uplink:
  broker: mqtt://${host}
  keepalive: 30s
"""


def test_packages_merge_under_the_profile(tmp_path):
    write(tmp_path, "common/base.yaml", BASE)
    compiled, errors = compile(write(tmp_path, "p.yaml", """\
        packages: [common/base.yaml]
        substitutions: {host: mqtt.kettles.example.com}
        device: {id: kettle}
        platform: esp32
        sensors:
          - {name: temp, driver: ads1115, bus: i2c0}
          - {name: power, resolution: 1}
        batch: {max_readings: 50}
        uplink: {encoding: senml}
        """))
    assert errors == []
    # Package sensors first in their order, a same-named one merged in place, new ones appended.
    assert [(s["name"], s["interval_ms"], s["resolution"]) for s in compiled["sensors"]] == [
        ("power", 5000, [1, 0]), ("current", 60000, [1, -1]), ("temp", 60000, [1, -1])]
    assert compiled["batch"]["max_readings"] == 50 and compiled["batch"]["max_age_ms"] == 300_000
    uplink = compiled["uplink"]
    assert (uplink["host"], uplink["keepalive_ms"], uplink["encoding"]) == (
        "mqtt.kettles.example.com", 30_000, "senml")


def test_esphomes_packages_mapping_of_includes_merges_as_the_list_does(tmp_path):
    write(tmp_path, "common/base.yaml", BASE)
    body = textwrap.dedent("""\
        substitutions: {host: mqtt.kettles.example.com}
        device: {id: kettle}
        platform: esp32
        sensors:
          - {name: temp, driver: ads1115, bus: i2c0}
        """)
    listed = compile(write(tmp_path, "a.yaml", "packages: [common/base.yaml]\n" + body))
    mapped = compile(write(tmp_path, "b.yaml", "packages:\n  base: !include common/base.yaml\n"
                           + body))
    assert listed[1] == mapped[1] == [] and listed[0] == mapped[0]


def test_problems_in_a_profile_with_packages_give_one_path_per_sensor(tmp_path):
    # A substitution's problem and a rule's problem on the same sensor, the package's two
    # sensors merged ahead of it: both name it sensors[2], its place in the merged profile.
    write(tmp_path, "common/base.yaml", BASE)
    path = write(tmp_path, "p.yaml", """\
        packages: [common/base.yaml]
        device: {id: kettle}
        platform: esp32
        sensors:
          - name: temp
            driver: ads1115
            bus: i2c0
            interval: ${nope}
            resolution: -1
        """)
    compiled, errors = compile(path)
    assert [e.split(": ", 2)[:2] for e in errors] == [
        [path + ":8:15", "sensors[2].interval"], [path + ":9:17", "sensors[2].resolution"]]


def test_a_substitution_refused_where_defined_is_not_also_unknown_where_used(tmp_path):
    path = write(tmp_path, "p.yaml", """\
        substitutions: {low: [1]}
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0, filters: {min: "${low}"}}]
        uplink: {broker: "mqtt://localhost"}
        """)
    assert compile(path) == (None, [path + ":1:22: substitutions.low: expected a single value, "
                                    "got a list"])


def test_later_packages_override_earlier_ones(tmp_path):
    write(tmp_path, "a.yaml", "batch: {max_readings: 10, max_age: 1min}\n")
    write(tmp_path, "b.yaml", "batch: {max_readings: 20}\n")
    compiled, errors = compile(write(tmp_path, "p.yaml", """\
        packages: [a.yaml, b.yaml]
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink: {broker: "mqtt://localhost"}
        """))
    assert errors == []
    assert compiled["batch"] == {"max_readings": 20, "max_age_ms": 60_000, "max_bytes": 8192}


def test_error_inside_a_package_names_the_package_file_and_line(monkeypatch):
    monkeypatch.chdir(DATA)
    assert compile("with-package.yaml") == (None, [
        "parts/bad-base.yaml:5:12: batch.max_age: expected a duration like '10s' (ms, s, min, h or d), got '10 minutes' (write 10min)"])


def test_missing_package_file_is_an_error_at_its_entry(tmp_path):
    path = write(tmp_path, "p.yaml", """\
        packages:
          - common/nope.yaml
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink: {broker: "mqtt://localhost"}
        """)
    assert compile(path) == (None, [
        "%s:2:5: packages[0]: cannot read '%s': No such file or directory"
        % (path, tmp_path / "common" / "nope.yaml")])


def test_an_empty_package_path_is_said_to_be_one(tmp_path):
    # it read the profile's folder: "cannot read '.': Is a directory"
    path = write(tmp_path, "p.yaml", """\
        packages: ["", " "]
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink: {broker: "mqtt://localhost"}
        """)
    assert compile(path) == (None, [
        "%s:1:12: packages[0]: expected a file path, got ''" % path,
        "%s:1:16: packages[1]: expected a file path, got ' '" % path])


def test_packages_cannot_be_nested(tmp_path):
    write(tmp_path, "a.yaml", "packages: [b.yaml]\n")
    path = write(tmp_path, "p.yaml", """\
        packages: [a.yaml]
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink: {broker: "mqtt://localhost"}
        """)
    assert compile(path) == (None, ["%s:1:1: packages: a package cannot include packages" % (tmp_path / "a.yaml")])


def test_yaml_merge_keys_and_anchors_work(tmp_path):
    compiled, errors = compile(write(tmp_path, "p.yaml", """\
        device: {id: kettle}
        platform: sim
        buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
        sensors:
          - &chip {name: power, driver: ina219, bus: i2c0, interval: 5s}
          - <<: *chip
            name: current
            quantity: current
        uplink: {broker: "mqtt://localhost"}
        """))
    assert errors == []
    assert [(s["name"], s["quantity"], s["interval_ms"]) for s in compiled["sensors"]] == [
        ("power", "power", 5000), ("current", "current", 5000)]


def test_a_hidden_top_level_key_holds_a_template_for_anchors(tmp_path):
    # An anchor had nowhere to live but the first sensor: `x-probe: &probe` was an unknown key.
    path = write(tmp_path, "p.yaml", """\
        .probe: &probe {driver: level_probe, interval: 1min,
                        calibration: {raw_empty: 410, raw_full: 3720}}
        device: {id: k}
        platform: esp32
        sensors:
          - {<<: *probe, name: ink_c, pin: 34}
          - {<<: *probe, name: ink_m, pin: 35, interval: 10s}
        uplink: {broker: "mqtt://localhost"}
        """)
    compiled, errors = compile(path)
    assert errors == []
    assert [(s["name"], s["driver"], s["pin"], s["interval_ms"]) for s in compiled["sensors"]] \
        == [("ink_c", "level_probe", 34, 60000), ("ink_m", "level_probe", 35, 10000)]
    assert ".probe" not in compiled
