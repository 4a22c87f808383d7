"""The energy insight's profile keys (firmware/profile/insights/energy.py): defaults, and every
mistake as `file:line:col: key.path: expected ..., got ...`."""
from tests.test_profile_errors import errors_of

from firmware.profile.compile import compile

SENSOR = """\
sensors:
  - name: power
    driver: pzem004t
    bus: uart0
    quantity: power
    interval: 5s
    insight: %s
"""


def test_defaults_and_given_keys_compile(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "device: {id: w}\nplatform: esp32\nbuses:\n  - {id: uart0, type: uart, tx: 17, rx: 16}\n"
        "uplink: {broker: 'mqtt://localhost'}\n" + SENSOR % (
            "{type: energy, watch: reversal, batch: 3, drift_limit: 8, report_at: '06:30', "
            "programmes: [{name: eco, duration: 3h, energy: 700}]}"))
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == []
    cfg = compiled["sensors"][0]["insight"]
    assert cfg["watch"] == "reversal" and cfg["batch"] == 3 and cfg["drift_h"] == 8
    assert cfg["drift_k"] == 1 and cfg["learn"] == 20 and cfg["report_min"] == 390
    assert cfg["motor_lo_w"] == 30 and cfg["motor_hi_w"] == 1000
    assert cfg["programmes"] == [{"name": "eco", "duration_ms": 3 * 3600000, "energy_wh": 700}]


def test_bad_energy_keys_are_reported_where_they_are(tmp_path):
    assert errors_of(tmp_path, SENSOR % (
        "{type: energy, watch: power, batch: 0, learn: 500, drift_slack: 0}")) == [
        "13:36: sensors[0].insight.watch: expected one of 'energy', 'peak', 'reversal', "
        "'capacity', got 'power'",
        "13:50: sensors[0].insight.batch: expected an integer from 1 to 64, got 0",
        "13:60: sensors[0].insight.learn: expected an integer from 3 to 200, got 500",
        "13:78: sensors[0].insight.drift_slack: expected a number > 0, got 0",
    ]


def test_numbers_past_what_an_appliance_or_a_tariff_takes_are_reported(tmp_path):
    # a tariff of 1e308 priced a day at infinity; a slack of 3 or more never alarms (one cycle
    # adds at most 3 - slack)
    assert errors_of(tmp_path, SENSOR % (
        "{type: energy, tariff: 2000000, grid_intensity: 20000, drift_slack: 3, drift_limit: 1001}")
    ) == [
        "13:37: sensors[0].insight.tariff: expected a number <= 1000000, got 2000000",
        "13:62: sensors[0].insight.grid_intensity: expected a number <= 10000, got 20000",
        "13:82: sensors[0].insight.drift_slack: expected a number < 3, got 3",
        "13:98: sensors[0].insight.drift_limit: expected a number <= 1000, got 1001",
    ]


def test_levels_in_the_wrong_order_are_reported(tmp_path):
    assert errors_of(tmp_path, SENSOR % (
        "{type: energy, cycle_above: 20, standby_below: 20, motor_above: 900, "
        "motor_below: 800}")) == [
        "13:61: sensors[0].insight.standby_below: expected a power under cycle_above "
        "(20 W), got 20",
        "13:78: sensors[0].insight.motor_above: expected a power under motor_below "
        "(800 W), got 900",
    ]


def test_a_level_in_the_wrong_order_with_its_default_says_so(tmp_path):
    # `cycle_above: 4` alone was told as standby_below's fault, "got 4" being cycle_above's
    assert errors_of(tmp_path, SENSOR % "{type: energy, cycle_above: 4}") == [
        "13:42: sensors[0].insight.cycle_above: expected a power above standby_below "
        "(5 W, its default), got 4"]
    assert errors_of(tmp_path, SENSOR % "{type: energy, standby_below: 12}") == [
        "13:44: sensors[0].insight.standby_below: expected a power under cycle_above "
        "(10 W, its default), got 12"]


def test_a_programme_signature_needs_its_energy(tmp_path):
    assert errors_of(tmp_path, SENSOR % (
        "{type: energy, programmes: [{name: eco, duration: 3h}]}")) == [
        "13:42: sensors[0].insight.programmes[0]: missing required key 'energy'",
    ]


def test_a_refused_level_is_reported_once_not_again_as_out_of_order(tmp_path):
    assert errors_of(tmp_path, SENSOR % "{type: energy, cycle_above: -5, motor_below: 0}") == [
        "13:42: sensors[0].insight.cycle_above: expected a number > 0, got -5",
        "13:59: sensors[0].insight.motor_below: expected a number > 0, got 0",
    ]


def test_a_currency_is_one_to_8_characters_as_the_device_takes_it(tmp_path):
    assert errors_of(tmp_path, SENSOR % "{type: energy, currency: Euros and cents}") == [
        "13:39: sensors[0].insight.currency: expected a currency of 1 to 8 printable characters "
        "like 'EUR', got 'Euros and cents'"]
    assert errors_of(tmp_path, SENSOR % "{type: energy, currency: ''}") == [
        "13:39: sensors[0].insight.currency: expected a currency of 1 to 8 printable characters "
        "like 'EUR', got ''"]


def test_a_number_with_an_exponent_is_a_number_though_yaml_1_1_reads_it_as_text(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "device: {id: w}\nplatform: esp32\nbuses:\n  - {id: uart0, type: uart, tx: 17, rx: 16}\n"
        "uplink: {broker: 'mqtt://localhost'}\n" + SENSOR % (
            "{type: energy, tariff: 3e-1, grid_intensity: 2.5e2}"))
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == []
    cfg = compiled["sensors"][0]["insight"]
    assert cfg["tariff"] == 0.3 and cfg["co2_g_per_kwh"] == 250
    # Quoted, it is text as written: still refused.
    assert errors_of(tmp_path, SENSOR % "{type: energy, tariff: '3e-1'}") == [
        "13:37: sensors[0].insight.tariff: expected a number, got '3e-1' (in quotes it is text: "
        "write the number without them)"]


def test_a_drift_limit_one_odd_cycle_reaches_is_refused(tmp_path):
    # One cycle adds at most 3 - drift_slack to the CUSUM: a limit at or under that lets a
    # single spike raise maintenance_due.
    assert errors_of(tmp_path, SENSOR % "{type: energy, drift_slack: 0.5, drift_limit: 2.5}") == [
        "13:60: sensors[0].insight.drift_limit: expected drift_limit above 2.5 (3 - drift_slack): "
        "at or under it one odd cycle alone raises maintenance_due, got 2.5",
    ]
    assert compiles(tmp_path, SENSOR % "{type: energy, drift_slack: 0.5, drift_limit: 2.6}")


def test_an_energy_insight_needs_readings_closer_than_an_outage(tmp_path):
    # Readings 15 min apart were each taken for an outage: every report said 0 kWh.
    text = SENSOR.replace("interval: 5s", "interval: 15min")
    assert errors_of(tmp_path, text % "{type: energy}") == [
        "12:15: sensors[0].interval: expected an interval of at most 5min: its energy insight "
        "counts readings further apart as an outage, got '15min'",
    ]
    assert compiles(tmp_path, SENSOR.replace("interval: 5s", "interval: 5min") % "{type: energy}")


def compiles(tmp_path, text):
    from tests.test_profile_errors import BASE
    (tmp_path / "ok.yaml").write_text(BASE + text)
    compiled, errors = compile(str(tmp_path / "ok.yaml"))
    assert errors == []
    return compiled is not None


def test_a_currency_with_a_control_character_is_refused(tmp_path):
    assert errors_of(tmp_path, SENSOR % '{type: energy, currency: "E\\tR"}')[0].endswith(
        # escaped: a tab shown as it is hid in the line
        "expected a currency of 1 to 8 printable characters like 'EUR', got 'E\\tR'")


def test_a_programme_whose_energy_is_in_kwh_is_said_so(tmp_path):
    # energy: 0.34 (kWh written for Wh) passed check: 0.5 W over 42 min, a cycle no wash makes
    got = errors_of(tmp_path, SENSOR % (
        "{type: energy, programmes: [{name: eco, duration: 42min, energy: 0.34}]}"))
    assert len(got) == 1 and got[0].endswith(
        "programmes[0].energy: expected the energy of a cycle in Wh: 0.34 over 42min is "
        "0.486 W on average, under standby_below (5 W), so no cycle could match it (kWh? 0.34 "
        "kWh is 340 Wh), got 0.34"), got


def test_a_grid_intensity_in_kg_is_said_so(tmp_path):
    got = errors_of(tmp_path, SENSOR % "{type: energy, grid_intensity: 0.04}")
    assert len(got) == 1 and got[0].endswith(
        "grid_intensity: expected grams of CO2 per kWh (a grid's are 10-1200; 0.04 kg is 40 g), "
        "got 0.04"), got


def test_a_programme_name_is_one_every_cycle_can_carry_and_named_once(tmp_path):
    # '' named cycles "", a right-to-left override reordered a dashboard's row, and two
    # signatures of one name could not be told apart: all passed check
    got = errors_of(tmp_path, SENSOR % (
        '{type: energy, programmes: [{name: "", duration: 3h, energy: 700}, '
        '{name: "eco\\u202e40", duration: 3h, energy: 700}, '
        '{name: %s, duration: 3h, energy: 700}, '
        '{name: eco 40, duration: 3h, energy: 700}, {name: eco 40, duration: 1h, energy: 900}]}'
        % ("x" * 33)))
    what = "expected a programme's name of 1 to 32 printable characters like 'eco 40', got "
    assert got == [
        "13:49: sensors[0].insight.programmes[0].name: " + what + "''",
        # escaped: shown as it is it turned the error's line around it backwards
        "13:88: sensors[0].insight.programmes[1].name: " + what + "'eco\\u202e40'",
        "13:138: sensors[0].insight.programmes[2].name: " + what + "'" + "x" * 33 + "'",
        "13:251: sensors[0].insight.programmes[4].name: expected a name no other programme "
        "has, got 'eco 40'"], got
