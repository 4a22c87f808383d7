"""Profile mistakes come out as `file:line:col: key.path: expected ..., got ...`, all of them."""
import pathlib
import textwrap

import pytest

from firmware.profile.compile import compile

DATA = pathlib.Path(__file__).parent / "data" / "profiles"

BASE = """\
device: {id: kettle}
platform: esp32
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
  - {id: uart0, type: uart, tx: 17, rx: 16}
uplink: {broker: "mqtt://localhost"}
"""


def errors_of(tmp_path, text, base=BASE):
    """Errors of a profile made of `base` (lines 1-6) followed by text (from line 7)."""
    (tmp_path / "p.yaml").write_text(base + textwrap.dedent(text))
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert compiled is None
    return [e.split("p.yaml:", 1)[1] for e in errors]


def test_several_errors_are_all_reported_in_line_order(monkeypatch):
    monkeypatch.chdir(DATA)
    compiled, errors = compile("many-errors.yaml")
    assert compiled is None
    assert errors == [
        "many-errors.yaml:3:7: device.id: expected an id of up to 64 letters, digits, '-', '_' "
        "and '.' that starts with a letter or a digit, optionally with '{uid}' "
        "(like 'printer-{uid}'), got 'coffee/1'",
        "many-errors.yaml:15:5: sensors[1]: unknown key 'intervl', did you mean 'interval'?",
        "many-errors.yaml:19:14: sensors[2].address: expected an I2C address from 0x08 to 0x77, got 0x80",
        "many-errors.yaml:20:15: sensors[2].interval: expected a duration like '10s' (ms, s, min, h or d), got 'fast'",
        "many-errors.yaml:22:14: buffer.max_bytes: expected a size like '64KiB', got '1GB'",
    ]


def test_yaml_syntax_error_has_file_line_and_column(monkeypatch):
    monkeypatch.chdir(DATA)
    assert compile("syntax-error.yaml") == (None, [
        "syntax-error.yaml:7:4: YAML syntax error: while parsing a block collection; "
        "expected <block end>, but found '<block mapping start>' (is this line indented "
        "differently from the keys above it?)"])


@pytest.mark.parametrize("text, says", [
    ("device: {id: kettle}\nsensors:\n\t- name: x\n",
     "3:1: YAML syntax error: while scanning for the next token; found character '\\t' that "
     "cannot start any token (a tab: indent with spaces)"),
    ("device:\n  id: kettle\n    platform: esp32\n",
     "3:13: YAML syntax error: mapping values are not allowed here (a key indented under a "
     "value: check this line's indentation, or quote a value that holds ': ')"),
    # Said where it starts: it was the file's name alone.
    ("device: {id: kettle, model: Bob's kettle}\n# [[[ in a comment\nx: '[[[' \nsensors: "
     + "[" * 3000 + "]" * 3000,
     "4:74: values are nested too deeply: brackets more than 64 deep from here"),
])
def test_yaml_slips_are_said_in_a_profiles_words_at_their_place(tmp_path, text, says):
    (tmp_path / "p.yaml").write_text(text)
    assert compile(str(tmp_path / "p.yaml")) == (None, ["%s:%s" % (tmp_path / "p.yaml", says)])


def test_unknown_key_suggests_the_close_known_key(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, intervall: 10s}
        """) == ["8:46: sensors[0]: unknown key 'intervall', did you mean 'interval'?"]


def test_unknown_key_without_a_close_one_lists_the_known_keys(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        colour: red
        """) == ["8:1: unknown key 'colour' (expected one of: substitutions, packages, device, "
                 "platform, chip, buses, sensors, buffer, batch, uplink, wifi, ignore_pin_warnings)"]


def test_unknown_top_level_key_suggests_the_plural(tmp_path):
    assert errors_of(tmp_path, """\
        sensor: [{name: power, driver: ina219, bus: i2c0}]
        """) == ["1:1: missing required key 'sensors'",
                 "7:1: unknown key 'sensor', did you mean 'sensors'?"]


def test_esphomes_names_for_a_section_point_to_the_profiles(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        mqtt: {broker: 10.0.0.5}
        """) == ["8:1: unknown key 'mqtt', did you mean 'uplink'? (ESPHome's 'mqtt:' is "
                 "'uplink:' here)"]


def test_a_typed_key_that_leaves_out_a_mapping_is_said_once_with_the_typo_after_it(tmp_path):
    # The calibration's own keys were said missing, at a "sensors[0].calibration" that is not in
    # the file, before the typo that caused it.
    assert errors_of(tmp_path, """\
        sensors:
          - name: tank
            driver: level_probe
            pin: 34
            calibraton: {raw_empty: 400, raw_full: 3700}
        """) == ["8:5: sensors[0]: missing required key 'calibration' (with raw_empty and "
                 "raw_full)",
                 "11:5: sensors[0]: unknown key 'calibraton', did you mean 'calibration'?"]


def test_values_that_passed_the_check_and_broke_the_board_or_the_terminal_are_refused(
        tmp_path):
    # Each passed `tether check`: the NUL made `tether run` say only "embedded null byte", the
    # long prefix and user name made the board retry its connect for ever (or never receive a
    # command), and the model's escape sequence went to the terminal as it was. A newline in a
    # value split its error line in two.
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buffer: {path: "state\\0b"}
        """, base=BASE.replace("{id: kettle}", '{id: kettle, model: "a\\x1b[31mred"}').replace(
            '"mqtt://localhost"}', '"mqtt://local\\nhost", topic_prefix: "%s", username: %s}'
            % ("p" * 129, "u" * 70000))) == [
        "1:29: device.model: expected text without control characters (a newline, a tab, an "
        "escape), got 'a\\x1b[31mred'",
        "6:18: uplink.broker: expected a broker URL like 'mqtt://host:1883' or 'mqtts://host:8883'"
        ", got 'mqtt://local\\nhost'",
        "6:54: uplink.topic_prefix: expected a topic prefix of at most 128 bytes and 5 levels, "
        "got '%s...'" % ("p" * 57),
        "6:197: uplink.username: expected at most MQTT's 65535 bytes, got 70000",
        "8:16: buffer.path: expected a folder path, got 'state\\x00b'",
    ]
    # a no-break space is no control character (a model name of the shop's own)
    (tmp_path / "nbsp.yaml").write_text(BASE.replace(
        "{id: kettle}", '{id: kettle, model: "Acme\\u00a0WashPro 8"}')
        + "sensors: [{name: power, driver: ina219, bus: i2c0}]\n")
    assert compile(str(tmp_path / "nbsp.yaml"))[1] == []
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=BASE.replace('"mqtt://localhost"}', '"mqtt://localhost", topic_prefix: a/b/c/d/e/f}')
    ) == ["6:52: uplink.topic_prefix: expected a topic prefix of at most 128 bytes and 5 levels, "
          "got 'a/b/c/d/e/f'"]


C3 = """\
device: {id: kettle}
platform: esp32
chip: esp32c3
buses:
  - {id: i2c0, type: i2c, sda: 8, scl: 9}
  - {id: uart0, type: uart, tx: 21, rx: 20}
uplink: {broker: "mqtt://localhost"}
"""


def test_an_esp32_c3_is_checked_by_its_own_pins_and_buses(tmp_path):
    # A C3's I2C on GPIO8/9 and its probe on GPIO3 were refused by the ESP32's rules (GPIO6-11
    # are its flash, its ADC1 is 32-39), and there was no way to say which chip a board is.
    (tmp_path / "ok.yaml").write_text(C3 + "sensors:\n"
                                      "  - {name: tank, driver: level_probe, pin: 3,\n"
                                      "     calibration: {raw_empty: 400, raw_full: 3700}}\n")
    compiled, errors = compile(str(tmp_path / "ok.yaml"))
    assert errors == [] and compiled["chip"] == "esp32c3"
    assert errors_of(tmp_path, """\
        sensors:
          - {name: tank, driver: level_probe, pin: 5, calibration: {raw_empty: 1, raw_full: 2}}
          - {name: tank2, driver: level_probe, pin: 14, calibration: {raw_empty: 1, raw_full: 2}}
          - {name: tank3, driver: level_probe, pin: 22, calibration: {raw_empty: 1, raw_full: 2}}
        """, base=C3 + "  # line 8\n") == [
        "10:44: sensors[0].pin: expected an ADC1 pin, 0-4 (ADC2 pins cannot be read while Wi-Fi is "
        "on), got 5",
        "11:45: sensors[1].pin: expected a GPIO that is not wired to the ESP32-C3's flash chip "
        "(11-17), got 14",
        "12:45: sensors[2].pin: expected an ESP32-C3 GPIO number (0-21), got 22"]


def test_a_second_uart_bus_on_a_chip_with_one_free_uart_is_refused(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=C3.replace("  - {id: uart0, type: uart, tx: 21, rx: 20}\n",
                             "  - {id: uart0, type: uart, tx: 21, rx: 20}\n"
                             "  - {id: uart1, type: uart, tx: 4, rx: 5}\n")) == [
        "7:5: buses[2]: an ESP32-C3 has 1 free UART (UART0 is the REPL): this is uart bus 2"]


def test_a_mistyped_chip_is_one_error_not_its_pins_judged_by_another_chips_rules(tmp_path):
    # Espressif writes ESP32-C3: "esp32-c3" gave the chip's error and five about the classic
    # ESP32's flash pins and ADC1
    assert errors_of(tmp_path, """\
        sensors:
          - {name: tank, driver: level_probe, pin: 4, calibration: {raw_empty: 1, raw_full: 2}}
        """, base=C3.replace("chip: esp32c3", "chip: esp32-c3") + "# 8\n") == [
        "3:7: chip: expected one of 'esp32', 'esp32s2', 'esp32s3', 'esp32c3', 'esp32c6', got "
        "'esp32-c3', did you mean 'esp32c3'?"]


def test_chip_goes_with_an_esp32_and_names_one(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=BASE.replace("platform: esp32", "platform: esp32\nchip: esp8266")) == [
        "3:7: chip: expected one of 'esp32', 'esp32s2', 'esp32s3', 'esp32c3', 'esp32c6', got "
        "'esp8266'"]
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=BASE.replace("platform: esp32", "platform: sim\nchip: esp32c3")) == [
        "3:7: chip: 'chip' says which ESP32 a board is: it goes with 'platform: esp32'"]
    # a platform said wrong is said once, not again at its chip
    errors = errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=BASE.replace("platform: esp32", "platform: esp23\nchip: esp32c3"))
    assert [e for e in errors if "chip" in e] == []


def test_a_unit_naming_another_scale_of_what_the_chip_reports_is_refused(tmp_path):
    # ESPHome's `unit_of_measurement: kWh` beside a `multiply: 0.001` filter: written as a
    # unit here, it went out as a label on values still in Wh, 1000 times off.
    errors = errors_of(tmp_path, """\
        sensors:
          - {name: energy, driver: pzem004t, bus: uart0, quantity: energy, unit: kWh}
          - {name: t, driver: sht3x, bus: i2c0, unit: F}
          - {name: shunt, driver: ina219, bus: i2c0, quantity: shunt_voltage, unit: V}
          - {name: c, driver: ina219, bus: i2c0, quantity: current, unit: mA}
          - {name: ok_label, driver: sht3x, bus: i2c0, unit: degC}
          - {name: ok_case, driver: pzem004t, bus: uart0, quantity: energy, unit: wh}
          - {name: scaled, driver: hx711, pins: {dout: 18, sck: 19}, unit: kg,
             calibration: {scale: 412000}}
        """)
    assert errors == [
        "8:74: sensors[0].unit: pzem004t reports energy in Wh: the label 'kWh' would not "
        "convert its values (leave unit out, or write Wh)",
        "9:47: sensors[1].unit: sht3x reports temperature in Cel: the label 'F' would not "
        "convert its values (leave unit out, or write Cel)",
        "10:77: sensors[2].unit: ina219 reports shunt_voltage in mV: the label 'V' would not "
        "convert its values (leave unit out, or write mV)",
        "11:67: sensors[3].unit: ina219 reports current in A: the label 'mA' would not "
        "convert its values (leave unit out, or write A)"]


def test_wrong_type_says_what_was_expected_and_got(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            address: [0x40]
            filters: 5
        """) == ["11:14: sensors[0].address: expected an I2C address from 0x08 to 0x77, got a list",
                 "12:14: sensors[0].filters: expected a mapping, got 5"]


def test_out_of_range_values_are_errors(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: mains, driver: pzem004t, bus: uart0, address: 248}
          - {name: weight, driver: hx711, pins: {dout: 4, sck: 5}, gain: 100}
          - {name: tank, driver: level_probe, pin: 40, calibration: {raw_empty: 1, raw_full: 2}}
        batch: {max_readings: 0}
        """) == [
            "8:58: sensors[0].address: expected a Modbus address from 1 to 247, got 248",
            "9:66: sensors[1].gain: expected one of 128, 64, 32, got 100",
            "10:44: sensors[2].pin: expected an ESP32 GPIO number (0-39; there is no GPIO20, "
            "24 or 28-31), got 40",
            "11:23: batch.max_readings: expected an integer from 1 to 10000, got 0",
        ]


@pytest.mark.parametrize("value, message", [
    ("fast", "expected a duration like '10s' (ms, s, min, h or d), got 'fast'"),
    ("10", "expected a duration like '10s' (ms, s, min, h or d), got 10"),
    ("0.5ms", "expected a duration like '10s' (ms, s, min, h or d), a whole number of "
              "milliseconds, got '0.5ms'"),
    ("-5s", "expected a duration like '10s' (ms, s, min, h or d), not a negative one, got "
            "'-5s'"),
    ("50ms", "expected a duration from 100ms to 1d, got '50ms'"),
    ("2d", "expected a duration from 100ms to 1d, got '2d'"),
    ("30m", "expected a duration like '10s' (ms, s, min, h or d), got '30m' (write 30min)"),
    ("2 hours", "expected a duration like '10s' (ms, s, min, h or d), got '2 hours' (write 2h)"),
    ("never", "expected a duration like '10s' (ms, s, min, h or d), got 'never' (there is no "
              "'never': leave out what should not run)"),
])
def test_bad_interval_is_reported(tmp_path, value, message):
    # 0.5ms and -5s read "expected a duration like '10s'": what is wrong with them is said
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, interval: %s}
        """ % value) == ["8:56: sensors[0].interval: " + message]


def test_a_device_id_with_braces_unquoted_says_to_quote_it(tmp_path):
    # `id: {uid}` is a YAML mapping and `{id: printer-{uid}}` a syntax error, said as such
    assert errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n",
                     BASE.replace("device: {id: kettle}", "device:\n  id: {uid}"))[0].endswith(
        "got a mapping (in quotes: id: 'printer-{uid}')")
    said = errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n",
                     BASE.replace("{id: kettle}", "{id: printer-{uid}}"))
    assert said == ["1:22: YAML syntax error: while parsing a flow mapping; expected ',' or '}', "
                    "but got '{' (a value that holds '{' needs quotes there: id: "
                    "'printer-{uid}')"]


@pytest.mark.parametrize("value, hint", [
    ('"0x40"', " (in quotes it is text: write the number without them)"),
    ("'64'", " (in quotes it is text: write the number without them)"),
    ("'forty'", ""),
])
def test_a_quoted_number_where_an_integer_goes_says_so(tmp_path, value, hint):
    # '0x40' is in range: the address was refused for its quotes, and the message did not say.
    (error,) = errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, address: %s}
        """ % value)
    assert error.endswith("expected an I2C address from 0x08 to 0x77, got %s%s"
                          % (value if value[0] == "'" else "'0x40'", hint)), error


@pytest.mark.parametrize("key, value, expected", [
    ("pin", '"33"', "expected a pin number"),
    ("filters", '{median: "3"}', "expected an odd window size from 3 to 15"),
])
def test_a_quoted_pin_or_window_says_its_quotes_are_the_fault(tmp_path, key, value, expected):
    sensor = {"pin": "33", "filters": "{}", key: value}
    (error,) = errors_of(tmp_path, """\
        sensors:
          - {name: ink, driver: level_probe, calibration: {raw_empty: 400, raw_full: 3700},
             pin: %(pin)s, filters: %(filters)s}
        """ % sensor)
    assert error.endswith("%s, got '%s' (in quotes it is text: write the number without them)"
                          % (expected, "33" if key == "pin" else "3")), error


def test_a_quoted_bus_frequency_says_its_quotes_are_the_fault(tmp_path):
    (error,) = errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n",
                         BASE.replace("sda: 21, scl: 22", 'sda: 21, scl: 22, frequency: "400000"'))
    assert error.endswith("buses[0].frequency: expected a frequency like '100kHz' or 400000, got "
                          "'400000' (in quotes it is text: write the number without them)"), error


@pytest.mark.parametrize("value, message", [
    ("8", "expected a size like '64KiB', got 8"),
    ("8 bytes", "expected a size like '64KiB', got '8 bytes'"),
    ("128B", "expected a size from 256B to 64KiB, got '128B'"),
    ("1MiB", "expected a size from 256B to 64KiB, got '1MiB'"),
])
def test_bad_size_is_reported(tmp_path, value, message):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        batch: {max_bytes: %s}
        """ % value) == ["8:20: batch.max_bytes: " + message]


@pytest.mark.parametrize("value, got", [("0", "0"), ("-0.1", "-0.1"), ("'0.1'", "'0.1' (in quotes "
                                        "it is text: write the number without them)"),
                                        ("fine", "'fine'"), (".nan", ".nan")])
def test_bad_resolution_is_reported(tmp_path, value, got):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, resolution: %s}
        """ % value) == ["8:58: sensors[0].resolution: expected a positive decimal like 0.1, got " + got]


def test_driver_name_typo_suggests_the_driver(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina291, bus: i2c0}
        """) == ["8:27: sensors[0].driver: expected one of 'ina219', 'pzem004t', 'hx711', "
                 "'ads1115', 'level_probe', 'sht3x', got 'ina291', did you mean 'ina219'?"]


def test_a_driver_named_in_capitals_suggests_its_name(tmp_path):
    # INA219, as the datasheet and every error message spell it: no suggestion at all
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: INA219, bus: i2c0}
        """)[0].endswith("got 'INA219', did you mean 'ina219'?")


def test_duplicate_sensor_names_are_errors(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0}
          - {name: power, driver: ina219, bus: i2c0, quantity: current}
        """) == ["9:12: sensors[1].name: duplicate sensor name 'power' (also sensors[0])"]


def test_duplicate_bus_ids_are_errors(tmp_path):
    base = BASE.replace("  - {id: uart0, type: uart", "  - {id: i2c0, type: uart")
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base) == ["5:10: buses[1].id: duplicate bus id 'i2c0' (also buses[0])"]


def test_a_pin_used_twice_is_an_error(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: weight, driver: hx711, pins: {dout: 4, sck: 22}}
        """) == ["8:56: sensors[0].pins.sck: pin 22 is already used by buses[0].scl"]


def test_two_quantities_of_one_hx711_may_share_its_pins(tmp_path):
    (tmp_path / "p.yaml").write_text(BASE + textwrap.dedent("""\
        sensors:
          - {name: weight, driver: hx711, pins: {dout: 4, sck: 5}}
          - {name: pills, driver: hx711, pins: {dout: 4, sck: 5}, quantity: count,
             calibration: {pill_weight: 0.5}}
        """))
    assert compile(str(tmp_path / "p.yaml"))[1] == []


def test_sensor_on_an_undeclared_bus_is_an_error(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c1}
        """) == ["8:40: sensors[0].bus: no bus with id 'i2c1' is declared, did you mean 'i2c0'?"]


def test_sensor_on_a_bus_of_the_wrong_type_is_an_error(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: uart0}
          - {name: mains, driver: pzem004t, bus: i2c0}
        """) == ["8:40: sensors[0].bus: expected an I2C bus, got 'uart0', which is a UART bus",
                 "9:42: sensors[1].bus: expected a UART bus, got 'i2c0', which is an I2C bus"]


def test_two_chips_on_one_i2c_address_are_an_error_but_one_chip_twice_is_not(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, address: 0x48}
          - {name: current, driver: ina219, bus: i2c0, address: 0x48, quantity: current}
          - {name: volts, driver: ads1115, bus: i2c0}
        """) == ["10:5: sensors[2]: address 0x48 on bus 'i2c0' is already used by sensors[0] (ina219)"]


def test_level_probe_needs_exactly_one_of_pin_or_adc(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: tank
            driver: level_probe
            calibration: {raw_empty: 1, raw_full: 2}
        """) == ["8:5: sensors[0]: expected exactly one of 'pin' (an ADC pin of the board) or "
                 "'adc' (a channel of an ADS1115)"]


def test_esp32_adc2_pins_and_raspberry_pi_pins_are_refused_for_level_probes(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: tank, driver: level_probe, pin: 25, calibration: {raw_empty: 1, raw_full: 2}}
        """) == ["8:44: sensors[0].pin: expected an ADC1 pin, 32-39 (ADC2 pins cannot be read "
                 "while Wi-Fi is on), got 25"]
    base = BASE.replace("platform: esp32", "platform: rpi").replace(
        "sda: 21, scl: 22", "sda: 2, scl: 3").replace("tx: 17, rx: 16", "tx: 14, rx: 15")
    assert errors_of(tmp_path, """\
        sensors:
          - {name: tank, driver: level_probe, pin: 5, calibration: {raw_empty: 1, raw_full: 2}}
        """, base) == ["8:44: sensors[0].pin: the Raspberry Pi has no ADC: use 'adc:' with an "
                       "ADS1115 instead of 'pin:'"]


def test_hx711_count_needs_pill_weight(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: pills
            driver: hx711
            pins: {dout: 4, sck: 5}
            quantity: count
            calibration: {tare: 100}
        """) == ["12:18: sensors[0].calibration: calibration.pill_weight is required with "
                 "quantity 'count' (the weight is divided by it): give it on this sensor or "
                 "another of the same load cell"]


def test_filters_and_thresholds_are_checked(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            filters: {median: 4, deadband: -1, min: 10, max: 10}
            thresholds:
              - {event: high, above: 10, below: 5}
              - {event: low, hysteresis: 1}
        """) == [
            "11:23: sensors[0].filters.median: expected an odd window size from 3 to 15, got 4",
            "11:36: sensors[0].filters.deadband: expected a number >= 0, got -1",
            "11:54: sensors[0].filters.max: expected a number above min (10), got 10",
            "13:9: sensors[0].thresholds[0]: expected exactly one of 'below' or 'above'",
            "14:9: sensors[0].thresholds[1]: expected exactly one of 'below' or 'above'",
        ]


def test_buffer_must_hold_four_batches_and_the_journal(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buffer: {max_bytes: 16KiB}
        batch: {max_bytes: 8KiB}
        """) == ["8:21: buffer.max_bytes: the buffer must hold several batches: expected "
                 "buffer.max_bytes >= 4 x batch.max_bytes + the journal (4110 bytes for "
                 "batch.max_readings 420) = 36878B, got 16KiB"]
    # 4 x 4 KiB passed here, and the agent refused it at start (a traceback in tether check's
    # air estimate): the journal is taken from the buffer too.
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buffer: {max_bytes: 16KiB}
        batch: {max_bytes: 4KiB}
        """) == ["8:21: buffer.max_bytes: the buffer must hold several batches: expected "
                 "buffer.max_bytes >= 4 x batch.max_bytes + the journal (4110 bytes for "
                 "batch.max_readings 420) = 20494B, got 16KiB"]
    from agent import batch
    from agent.buffer import Buffer, journal_bytes
    from agent.log import Log
    from agent.schema import Schema
    from agent.store import RamStore
    enc = batch.Encoder("d", Schema([("a", "", 1, 0)]), "compact", False, 4096, 420)
    for size, ok in ((4 * 4096 + journal_bytes(420, 32), True),
                     (4 * 4096 + journal_bytes(420, 32) - 1, False)):   # the agent's own rule
        try:
            Buffer(Log(RamStore(), size, size // 8, batch.seq_of), enc, 420, 600000, 32, 60000)
            assert ok
        except ValueError:
            assert not ok


def test_uplink_rules(tmp_path):
    base = BASE.replace('uplink: {broker: "mqtt://localhost"}\n', "")
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink:
          broker: mqtt://localhost
          password: hunter2
          ca: ca.pem
          topic_prefix: tether/+/v1
          keepalive: 1500ms
          backoff: {min: 10min}
        """, base) == [
            "9:13: uplink.password: a password needs a username",
            "10:7: uplink.ca: TLS files need an mqtts:// broker",
            "10:7: uplink.ca: cannot read '%s': No such file or directory" % (tmp_path / "ca.pem"),
            "11:17: uplink.topic_prefix: expected a topic prefix like 'tether/v1' (no '+', '#' or "
            "spaces, no '/' at either end, no '$' at the start), got 'tether/+/v1'",
            "12:14: uplink.keepalive: expected a duration from 5s to 1h, got '1500ms'",
            "13:18: uplink.backoff.min: expected min <= max, got min '10min' and max 5min",
        ]


@pytest.mark.parametrize("url", ["http://example.com", "mqtt://", "mqtt://host:0",
                                 "mqtt://host:99999", "mqtt://host/topic"])
def test_broker_must_be_an_mqtt_or_mqtts_url(tmp_path, url):
    base = BASE.replace('uplink: {broker: "mqtt://localhost"}', 'uplink: {broker: "%s"}' % url)
    assert errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n", base) == [
        "6:18: uplink.broker: expected a broker URL like 'mqtt://host:1883' or "
        "'mqtts://host:8883', got '%s'" % url]


def test_tls_files_need_mqtts_and_cert_goes_with_key(tmp_path):
    (tmp_path / "client.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    base = BASE.replace('uplink: {broker: "mqtt://localhost"}\n', "")
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        uplink:
          broker: mqtt://localhost
          cert: client.pem
        """, base) == ["9:9: uplink.cert: 'cert' and 'key' go together: 'key' is missing",
                       "9:9: uplink.cert: TLS files need an mqtts:// broker"]


def test_duplicate_yaml_keys_are_errors(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            name: power2
        """) == ["11:5: sensors[0]: duplicate key 'name' (first at line 8)"]


def test_a_lone_surrogate_in_a_value_or_a_key_is_an_error_not_a_traceback(tmp_path):
    # `ssid: "\\ud800"` raised UnicodeEncodeError out of the WiFi name's byte count: exit 1
    assert errors_of(tmp_path, """\
        wifi: {ssid: "\\ud800", password: "ab\\udfffcdefgh"}
        "\\ud801": 3
        sensors: [{name: p, driver: ina219, bus: i2c0}]
        """) == [
        "7:14: wifi.ssid: expected text, got a lone UTF-16 surrogate (a \\uD800-\\uDFFF "
        "escape), which is no character",
        "7:34: wifi.password: expected text, got a lone UTF-16 surrogate (a \\uD800-\\uDFFF "
        "escape), which is no character",
        "8:1: expected a key, got a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape), which is "
        "no character"]


def test_a_file_of_a_lone_document_marker_is_told_what_it_lacks_as_an_empty_one(tmp_path):
    # `---` alone said "expected a mapping of top-level keys, got nothing"; an empty file
    # listed the keys a profile needs
    for text in ("", "---\n", "# a profile to come\n---\n"):
        (tmp_path / "p.yaml").write_text(text)
        _, errors = compile(str(tmp_path / "p.yaml"))
        assert [e.split("p.yaml:", 1)[1] for e in errors] == [
            "1:1: missing required key '%s'" % k for k in ("device", "platform", "sensors",
                                                          "uplink")], (text, errors)


def test_unsupported_tags_are_errors(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: !include sensors.yaml
        """) == ["7:10: sensors: unsupported tag '!include'; share settings between files with "
                 "'packages: [FILE, ...]'"]


def test_esphomes_keys_on_a_sensor_are_told_their_equivalent_even_without_a_driver(tmp_path):
    # Without `driver:` no key of the sensor was checked, so `platform:` (ESPHome's word for
    # it) went unsaid; with one, `platform` was sent to the top level and `internal` was
    # "did you mean 'interval'?".
    assert errors_of(tmp_path, """\
        sensors:
          - platform: ina219
            id: power
            internal: true
            accuracy_decimals: 2
            filters: [{median: 5}, {delta: 2}]
            thresholds: [{event: on, above: 3}]
          - name: p2
            driver: ina219
            bus: i2c0
            platform: ina219
            filters: {delta: 2, sliding_window_moving_average: {}}
        logger:
        """) == [
        "8:5: sensors[0]: missing required key 'driver'",
        "8:5: sensors[0]: missing required key 'name'",
        "8:5: sensors[0]: unknown key 'platform' (ESPHome's sensor 'platform:' is 'driver:' "
        "here)",
        "9:5: sensors[0]: unknown key 'id' (a sensor's 'id:' in ESPHome is its 'name:' here)",
        "10:5: sensors[0]: unknown key 'internal' (ESPHome's 'internal:' has no equivalent: "
        "every sensor is sent; leave it out)",
        "11:5: sensors[0]: unknown key 'accuracy_decimals' (ESPHome's 'accuracy_decimals: 2' "
        "is 'resolution: 0.01' here)",
        "12:14: sensors[0].filters: expected a mapping, got a list (ESPHome's list of filters "
        "is one mapping here, like filters: {median: 5, deadband: 2})",
        "13:26: sensors[0].thresholds[0].event: expected an event name of up to 32 lowercase "
        "letters, digits and '_' that starts with a letter, got on (YAML reads an unquoted on "
        "as true: write 'on' in quotes)",
        "17:5: sensors[1]: unknown key 'platform' (ESPHome's sensor 'platform:' is 'driver:' "
        "here)",
        "18:15: sensors[1].filters: unknown key 'delta' (ESPHome's 'delta:' is 'deadband:' "
        "here)",
        "18:25: sensors[1].filters: unknown key 'sliding_window_moving_average' (the window "
        "filter here is 'median: N' (odd, 3-15))",
        "19:1: unknown key 'logger' (the board's console is read with 'tether logs'; leave it "
        "out)"]


def test_a_calibration_key_written_on_the_sensor_is_told_it_goes_in_calibration(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: p, driver: ina219, bus: i2c0, shunt_ohms: 0.1}
          - {name: w, driver: hx711, pins: {dout: 18, sck: 19}, gain: 64, tare: 3}
        """) == [
        "8:42: sensors[0]: unknown key 'shunt_ohms': it goes in a sensor's 'calibration:' "
        "(ina219)",
        "9:67: sensors[1]: unknown key 'tare': it goes in a sensor's 'calibration:' (hx711)"]


def test_esphomes_words_are_told_only_where_esphome_writes_them(tmp_path):
    # `platform` under 'device:' (ESPHome's older esphome: {platform: ESP32}) is the profile's
    # own top-level key out of place, not a sensor's driver
    base = BASE.replace("device: {id: kettle}", "device: {id: kettle, platform: esp32}")
    assert errors_of(tmp_path, """\
        sensors: [{name: p, driver: ina219, bus: i2c0}]
        """, base=base) == ["1:22: device: unknown key 'platform': it goes in the top level"]


def test_esphomes_gpio_names_are_pins_and_a_pin_mapping_is_told_to_be_a_number(tmp_path):
    (tmp_path / "ok.yaml").write_text(BASE.replace("tx: 17, rx: 16", "tx: GPIO17, rx: gpio16")
                                      + "sensors:\n  - {name: w, driver: hx711, "
                                        "pins: {dout: GPIO18, sck: 19}}\n")
    compiled, errors = compile(str(tmp_path / "ok.yaml"))
    assert errors == []
    assert compiled["buses"][1]["tx"] == 17 and compiled["buses"][1]["rx"] == 16
    assert compiled["sensors"][0]["pins"] == {"dout": 18, "sck": 19}
    assert errors_of(tmp_path, """\
        sensors:
          - {name: w, driver: hx711, pins: {dout: GPIO17, sck: {number: 19}}}
        """) == ["8:43: sensors[0].pins.dout: pin 'GPIO17' is already used by buses[1].tx",
                 "8:56: sensors[0].pins.sck: expected a pin number, got a mapping (write the "
                 "pin's number)"]


def test_missing_profile_file_is_an_error(tmp_path):
    assert compile(str(tmp_path / "nope.yaml")) == (
        None, ["%s: cannot read: No such file or directory" % (tmp_path / "nope.yaml")])


def test_alias_bombs_are_refused(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += ["a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 7)]
    (tmp_path / "p.yaml").write_text("\n".join(lines) + "\n")
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert compiled is None
    assert any("too many values (aliases expand to more than 100000)" in e for e in errors)


def test_a_raspberry_pi_bus_off_the_headers_pins_needs_its_port(tmp_path):
    # What `tether read` and `install-service` open: the check says so first.
    base = BASE.replace("platform: esp32", "platform: rpi").replace(
        "tx: 17, rx: 16", "tx: 14, rx: 15")
    assert errors_of(tmp_path, "sensors: [{name: t, driver: ina219, bus: i2c0}]\n", base) == [
        "4:5: buses[0]: i2c bus i2c0 on sda 21, scl 22: a Raspberry Pi has this bus on sda 0/"
        "scl 1 or sda 2/scl 3; for another device give its file as `port` (e.g. /dev/i2c-N)"]
    (tmp_path / "p.yaml").write_text(base.replace("sda: 21, scl: 22",
                                                  "sda: 21, scl: 22, port: /dev/i2c-3")
                                     + "sensors: [{name: t, driver: ina219, bus: i2c0}]\n")
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == [] and compiled["buses"][0]["port"] == "/dev/i2c-3"


def test_a_key_written_in_the_wrong_section_is_told_where_it_goes(tmp_path):
    # It said "unknown key 'utc_offset' (expected one of: type, schedule, ...)", and a pharmacy's
    # integrator looked for the key among those.
    assert errors_of(tmp_path, """\
        sensors:
          - {name: pills, driver: hx711, pins: {dout: 4, sck: 5}, quantity: count,
             calibration: {pill_weight: 0.5}, baud: 9600,
             insight: {type: adherence, schedule: ["08:00"], utc_offset: "+01:00",
                       lead_time: 5d}}
        interval: 10s
        password: x
        """) == [
        "9:39: sensors[0]: unknown key 'baud': it goes in a uart bus",
        "10:54: sensors[0].insight: unknown key 'utc_offset': it goes in 'device:'",
        "11:16: sensors[0].insight: unknown key 'lead_time': it goes in an insight of type "
        "consumable",
        "12:1: unknown key 'interval': it goes in a sensor",
        "13:1: unknown key 'password': it goes in 'wifi:' or 'uplink:'"]
    # A word that means another thing elsewhere gets no home: a broker's port is in its URL.
    said = errors_of(tmp_path, "sensors: [{name: t, driver: ina219, bus: i2c0, min: 0}]\n",
                     BASE.replace('broker: "mqtt://localhost"', 'broker: "mqtt://localhost", '
                                                                 'port: 8883, min: 1s'))
    assert said == [
        "6:38: uplink: unknown key 'port' (expected one of: broker, client_id, username, "
        "password, ca, cert, key, topic_prefix, encoding, deflate, keepalive, ack_timeout, "
        "backoff, health_every, window)",
        "6:50: uplink: unknown key 'min': it goes in 'uplink:' under 'backoff:' or a sensor's "
        "'filters:'",
        "7:48: sensors[0]: unknown key 'min': it goes in 'uplink:' under 'backoff:' or a "
        "sensor's 'filters:'"], said


def test_a_raspberry_pi_bus_with_a_port_needs_no_pins(tmp_path, capsys):
    # A USB serial adapter has none of the Pi's pins: made-up tx and rx were required.
    from firmware.cli import main
    path = tmp_path / "p.yaml"
    path.write_text("device: {id: w-1}\nplatform: rpi\nbuses:\n"
                    "  - {id: usb, type: uart, port: /dev/ttyUSB0}\n"
                    "sensors: [{name: power, driver: pzem004t, bus: usb}]\n"
                    "uplink: {broker: 'mqtt://localhost'}\n")
    profile, errors = compile(str(path))
    assert errors == [] and profile["buses"] == [
        {"id": "usb", "type": "uart", "baud": 9600, "port": "/dev/ttyUSB0"}]
    assert main(["check", str(path)]) == 0
    assert "  bus       usb: uart, 9600 baud, on /dev/ttyUSB0" in capsys.readouterr().out
    path.write_text(path.read_text().replace("platform: rpi", "platform: esp32"))
    assert [e.split("p.yaml:", 1)[1] for e in compile(str(path))[1]][:2] == [
        "4:5: buses[0]: missing required key 'rx'", "4:5: buses[0]: missing required key 'tx'"]


def test_an_esp32_bus_with_a_port_is_refused(tmp_path):
    # Compiled and never read: a board's bus is its pins, not a Linux device file.
    base = BASE.replace("sda: 21, scl: 22", "sda: 21, scl: 22, port: /dev/i2c-3")
    errors = errors_of(tmp_path, "sensors: [{name: t, driver: ina219, bus: i2c0}]\n", base)
    assert len(errors) == 1 and errors[0].endswith(
        "buses[0].port: a port is a Linux device file (a Raspberry Pi's); an ESP32's bus is its "
        "pins: remove it"), errors


def test_a_bad_pin_of_a_raspberry_pi_bus_is_said_once(tmp_path):
    base = BASE.replace("platform: esp32", "platform: rpi").replace(
        "sda: 21, scl: 22", "sda: 2, scl: 3").replace("tx: 17, rx: 16", "tx: 99, rx: 15")
    assert errors_of(tmp_path, "sensors: [{name: t, driver: ina219, bus: i2c0}]\n", base) == [
        "5:33: buses[1].tx: expected a BCM GPIO number from 0 to 27, got 99"]


def test_a_bus_port_must_be_a_device_path(tmp_path):
    from firmware.profile.compile import compile as compile_profile
    path = tmp_path / "p.yaml"
    path.write_text("device: {id: w-1}\nplatform: rpi\nbuses:\n"
                    "  - {id: uart1, type: uart, tx: 14, rx: 15, port: /dev/ttyUSB0}\n"
                    "  - {id: uart2, type: uart, tx: 0, rx: 1, port: COM3}\n"
                    "sensors:\n  - {name: power, driver: pzem004t, bus: uart1, interval: 10s}\n"
                    "uplink: {broker: 'mqtt://localhost'}\n")
    profile, errors = compile_profile(str(path))
    assert errors == ["%s:5:49: buses[1].port: expected a device path like '/dev/ttyUSB0', "
                      "got 'COM3'" % path]
    path.write_text(path.read_text().replace("  - {id: uart2, type: uart, tx: 0, rx: 1, port: COM3}\n", ""))
    profile, errors = compile_profile(str(path))
    assert not errors and profile["buses"][0]["port"] == "/dev/ttyUSB0"


@pytest.mark.parametrize("bad", ["'..'", "'.hidden'", "'-rf'", "'<script>'", "a" * 65,
                                 "'{uid}/x'"])
def test_a_device_id_follows_the_rule_the_ingest_checks(tmp_path, bad):
    errors = errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n",
                       base=BASE.replace("{id: kettle}", "{id: %s}" % bad))
    assert len(errors) == 1 and errors[0].startswith("1:14: device.id: expected an id of up to "
                                                     "64 letters"), errors


def test_a_device_id_template_with_uid_is_accepted(tmp_path):
    (tmp_path / "p.yaml").write_text(BASE.replace("{id: kettle}", "{id: 'kettle-{uid}'}")
                                     + "sensors: [{name: power, driver: ina219, bus: i2c0}]\n")
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert not errors and compiled["device"]["id"] == "kettle-{uid}"


@pytest.mark.parametrize("value, message", [
    ("1.0e+99999999", "expected a positive decimal like 0.1 (in size from 1e-30 to 1e30), got "
                      "1.0e+99999999"),
    ("1.0e-31", "expected a positive decimal like 0.1 (in size from 1e-30 to 1e30), got 1.0e-31"),
    ("0.123456789012345678901", "expected a positive decimal like 0.1 with at most 19 significant "
                                "digits, got 0.123456789012345678901"),
])
def test_a_resolution_too_large_small_or_long_is_refused(tmp_path, value, message):
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, resolution: %s}
        """ % value) == ["8:58: sensors[0].resolution: " + message]


def test_numbers_past_a_sane_size_are_refused_where_written(tmp_path):
    digits = "9" * 5000
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, filters: {max: %s}}
          - {name: pwr, driver: ina219, bus: i2c0, address: 0x41, filters: {max: 1.0e+400}}
        """ % digits) == [
        "8:61: sensors[0].filters.max: expected an integer (of at most 4300 digits), got '%s...'"
        % digits[:57],
        "9:74: sensors[1].filters.max: expected a number (in size from 1e-30 to 1e30), got "
        "1.0e+400"]


def test_a_typed_scalar_that_is_not_its_type_is_an_error(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        batch: {max_readings: !!int many}
        """) == ["8:23: batch.max_readings: expected an integer (of at most 4300 digits), got 'many'"]


def test_a_control_character_is_a_syntax_error_at_its_line_and_column(tmp_path):
    assert errors_of(tmp_path, "sensors: [{name: power, driver: ina219, bus: i2c0}]\n"
                               "batch: {max_readings: 4\x01}\n") == [
        "8:24: YAML syntax error: character #x0001: special characters are not allowed"]


def test_a_package_that_cannot_be_read_stops_the_rules(tmp_path):
    (tmp_path / "broken.yaml").write_text("batch: [\n")
    (tmp_path / "p.yaml").write_text("packages: [broken.yaml]\ndevice: {id: kettle}\n")
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == ["%s:2:1: YAML syntax error: while parsing a flow node; expected the node "
                      "content, but found '<stream end>'" % (tmp_path / "broken.yaml")]


def test_a_secrets_file_that_cannot_be_read_is_reported_once(tmp_path):
    (tmp_path / "secrets.yaml").write_text("pw: [\n")
    (tmp_path / "p.yaml").write_text(BASE.replace('"mqtt://localhost"', '"mqtt://localhost", '
                                                  "username: !secret u, password: !secret pw"))
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert len(errors) == 1 and "secrets.yaml:2:1: YAML syntax error" in errors[0]


def test_text_that_is_not_utf8_is_an_error_at_its_line_and_column(tmp_path):
    (tmp_path / "p.yaml").write_bytes(b"device: {id: kettle}\nplatform: caf\xe9\n")
    assert compile(str(tmp_path / "p.yaml")) == (None, ["%s:2:14: not UTF-8 text"
                                                        % (tmp_path / "p.yaml")])


def test_a_substitution_bomb_is_refused_with_one_error(tmp_path):
    (tmp_path / "p.yaml").write_text("substitutions: {a: %s}\n" % ("x" * 100000) + BASE
                                     + "sensors: [{name: power, driver: ina219, bus: i2c0, "
                                       "unit: %s}]\n" % ("$a" * 11))
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == ["%s:8:58: sensors[0].unit: substitutions put more than 1 MiB of text into "
                      "the profile; simplify it" % (tmp_path / "p.yaml")]


def test_among_more_than_100_variables_no_close_one_is_suggested(tmp_path):
    names = "".join("  v%d: x\n" % i for i in range(101))
    (tmp_path / "p.yaml").write_text("substitutions:\n" + names + "device: {id: k, model: $v1000}\n")
    compiled, errors = compile(str(tmp_path / "p.yaml"))
    assert ("%s:103:24: device.model: unknown substitution variable 'v1000' (text with a '$' of "
            "its own: !literal '...')" % (tmp_path / "p.yaml")) in errors


def test_insight_mistakes_name_the_key_and_what_was_expected(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: ink_c
            driver: level_probe
            pin: 32
            calibration: {raw_empty: 400, raw_full: 3700}
            insight: {type: consumabel, lead_time: 10d}
          - name: power
            driver: ina219
            bus: i2c0
            insight: {type: consumable, lead_time: 10}
          - name: pills
            driver: hx711
            pins: {dout: 25, sck: 26}
            quantity: count
            calibration: {pill_weight: 0.5}
            insight: {type: adherence, schedule: ["8am", "20:00"], pils: 2}
          - name: mains
            driver: pzem004t
            bus: uart0
            insight: {type: energy, cycle_above: 5, standby_below: 8}
          - name: level
            driver: level_probe
            pin: 33
            calibration: {raw_empty: 400, raw_full: 3700}
            insight: [consumable]
        """) == [
        "12:21: sensors[0].insight.type: expected one of 'consumable', 'adherence', 'energy', "
        "got 'consumabel', did you mean 'consumable'?",
        "16:21: sensors[1].insight.type: a consumable insight reads a level, not a power",
        "16:44: sensors[1].insight.lead_time: expected a duration like '10s' (ms, s, min, h or d), got 10",
        "22:43: sensors[2].insight.schedule[0]: expected a time of day like '08:00', got '8am'",
        "22:60: sensors[2].insight: unknown key 'pils', did you mean 'pills'?",
        "26:60: sensors[3].insight.standby_below: expected a power under cycle_above "
        "(5 W), got 8",
        "31:14: sensors[4].insight: expected a mapping with a 'type' (consumable, adherence, "
        "energy), got a list",
    ]


def test_a_utc_offset_is_a_signed_hours_and_minutes(tmp_path):
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        """, base=BASE.replace("device: {id: kettle}",
                               "device: {id: kettle, utc_offset: '+15:00'}")) == [
        "1:34: device.utc_offset: expected an offset from UTC like '+01:00' or '-05:00' "
        "(at most 14 h), got '+15:00'"]


@pytest.mark.parametrize("tagged", ['!!int ""', '!!float ""', "!!bool maybe"])
def test_a_typed_scalar_its_yaml_constructor_cannot_read_is_an_error(tmp_path, tagged):
    # PyYAML raises IndexError / KeyError for these, not ValueError
    message = {"!!int": "an integer (of at most 4300 digits)", "!!float": "a number",
               "!!bool": "true or false"}[tagged.split()[0]]
    assert errors_of(tmp_path, """\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        batch: {max_readings: %s}
        """ % tagged) == ["8:23: batch.max_readings: expected %s, got '%s'"
                          % (message, tagged.split()[1].strip('"'))]


@pytest.mark.parametrize("prefix, digit", [("0x", "f"), ("0b", "1")])
def test_a_hex_or_binary_integer_past_4300_decimal_digits_is_refused(tmp_path, prefix, digit):
    text = prefix + digit * 15000
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0, filters: {max: %s}}
        """ % text) == [
        "8:61: sensors[0].filters.max: expected an integer (of at most 4300 digits), got '%s...'"
        % text[:57]]


def test_a_tag_on_a_key_is_an_error_not_ignored(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            !secret address: 0x40
        """) == ["11:5: sensors[0]: unsupported tag '!secret' on a key"]


def test_a_substitution_that_makes_a_hex_integer_past_4300_digits_is_refused(tmp_path):
    digits = "f" * 15000
    errors = errors_of(tmp_path, """\
        substitutions: {x: %s}
        sensors: [{name: power, driver: ina219, bus: i2c0, filters: {max: 0x$x}}]
        """ % digits)
    assert errors == ["8:67: sensors[0].filters.max: expected a number, got '0x%s...'"
                      % digits[:55]]


def test_an_esp32_on_mqtts_without_a_ca_is_refused_at_check(tmp_path):
    # It passed check, build and flash, and the board could never connect: an ESP32 has no
    # certificate store (MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED at every connect).
    base = BASE.replace('uplink: {broker: "mqtt://localhost"}', 'uplink: {broker: '
                        '"mqtts://broker.example.com"}')
    assert errors_of(tmp_path, """\
        sensors:
          - {name: power, driver: ina219, bus: i2c0}
        """, base) == ["6:18: uplink.broker: an ESP32 has no certificate store: an mqtts:// "
                       "broker needs 'ca', the PEM file of the CA that signed the broker's "
                       "certificate"]


def test_a_quoted_number_is_told_to_lose_its_quotes_wherever_a_number_is_read(tmp_path):
    # Only integers said so; `resolution: "0.01"` read as if 0.01 were wrong.
    assert errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            resolution: "0.01"
            thresholds: [{event: high, above: "1600"}]
        """) == [
        "11:17: sensors[0].resolution: expected a positive decimal like 0.1, got '0.01' (in "
        "quotes it is text: write the number without them)",
        "12:39: sensors[0].thresholds[0].above: expected a number, got '1600' (in quotes it is "
        "text: write the number without them)"]


def test_a_quoted_substitution_used_where_a_number_goes_names_the_variables_quotes(tmp_path):
    # ESPHome users quote substitutions; the hint pointed at the use, where quotes in a flow
    # mapping are needed, and the refused pill_weight was also said to be missing.
    base = 'substitutions: {low: "15", pill_g: "0.45"}\n' + BASE
    assert [e.replace(str(tmp_path) + "/", "") for e in errors_of(tmp_path, """\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            thresholds: [{event: low, below: "${low}"}]
          - {name: pills, driver: hx711, pins: {dout: 18, sck: 19}, quantity: count,
             calibration: {pill_weight: "${pill_g}"}}
        """, base=base)] == [
        "12:38: sensors[0].thresholds[0].below: expected a number, got '15' (text: the "
        "substitution 'low' is quoted at p.yaml:1:22; write it without quotes)",
        "14:33: sensors[1].calibration.pill_weight: expected a number, got '0.45' (text: the "
        "substitution 'pill_g' is quoted at p.yaml:1:36; write it without quotes)"]


def test_a_threshold_event_may_not_take_the_name_of_the_agents_own_or_its_insights(tmp_path):
    # A `sensor_error` threshold raised read as the sensor failing, in the console and the
    # ingest; `empty` beside a consumable insight as the cartridge running out.
    assert errors_of(tmp_path, """\
        sensors:
          - name: ink
            driver: level_probe
            pin: 34
            calibration: {raw_empty: 400, raw_full: 3700}
            insight: {type: consumable}
            thresholds:
              - {event: empty, below: 1}
              - {event: sensor_error, above: 99}
              - {event: uncertain_level, above: 99}
              - {event: Low, below: 5}
              - {event: low, below: 5}
              - {event: low, below: 3}
        """) == [
        "14:17: sensors[0].thresholds[0].event: event 'empty' is taken: its consumable insight's; "
        "name the threshold's event otherwise",
        "15:17: sensors[0].thresholds[1].event: event 'sensor_error' is taken: the sampler's, "
        "when the sensor fails; name the threshold's event otherwise",
        "16:17: sensors[0].thresholds[2].event: event 'uncertain_level' is taken: the sampler's, "
        "for unsure readings; name the threshold's event otherwise",
        "17:17: sensors[0].thresholds[3].event: expected an event name of up to 32 lowercase "
        "letters, digits and '_' that starts with a letter, got 'Low' (write low)",
        # two raising and clearing one event: which one crossed?
        "19:17: sensors[0].thresholds[5].event: event 'low' is taken: sensors[0].thresholds[4] "
        "raises it too, below its level; name the threshold's event otherwise"]
    # a band's two ends, one below and one above, are one alarm
    (tmp_path / "band.yaml").write_text(BASE + textwrap.dedent("""\
        sensors:
          - name: power
            driver: ina219
            bus: i2c0
            thresholds:
              - {event: out_of_range, below: 5}
              - {event: out_of_range, above: 95}
        """))
    assert compile(str(tmp_path / "band.yaml"))[1] == []


def test_a_threshold_past_the_sensors_plausibility_range_is_refused_it_never_fires(tmp_path):
    assert errors_of(tmp_path, """\
        sensors:
          - name: weight
            driver: hx711
            pins: {dout: 25, sck: 26}
            filters: {min: -100, max: 5000}
            thresholds:
              - {event: low, below: -200}
              - {event: high, above: 5000}
              - {event: fine, below: -99}
        """) == [
        "13:29: sensors[0].thresholds[0].below: below -200 never fires: readings under "
        "filters.min (-100) are dropped",
        "14:30: sensors[0].thresholds[1].above: above 5000 never fires: readings over "
        "filters.max (5000) are dropped"]


def test_one_mistake_in_a_block_several_places_share_is_one_line_naming_them_all(tmp_path):
    # a typo in the printer's anchored &ink_filters gave four lines at one position
    from firmware.profile.compile import compile as compile_profile
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / "examples"
    text = (root / "printer.yaml").read_text()
    assert "median: 5, min: 0" in text
    (tmp_path / "common").mkdir()
    for f in (root / "common").iterdir():
        (tmp_path / "common" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "p.yaml").write_text(text.replace("median: 5, min: 0", "mediam: 5, min: 0"))
    (tmp_path / "secrets.yaml").write_bytes((root / "secrets.yaml").read_bytes())
    _, errors = compile_profile(str(tmp_path / "p.yaml"))
    assert errors == ["%s:34:28: sensors[0].filters (and sensors[1].filters, sensors[2].filters, "
                    "sensors[3].filters, which use the same lines): unknown key 'mediam', did "
                    "you mean 'median'?" % (tmp_path / "p.yaml")], errors


def test_problems_without_a_place_are_each_kept_and_shared_ones_joined():
    from firmware.profile.errors import messages
    got = messages([("a.yaml", None, None, "sensors[0]", "unreadable"),
                    ("a.yaml", None, None, "sensors[1]", "unreadable"),
                    ("a.yaml", 3, 5, "sensors[0].filters", "bad"),
                    ("a.yaml", 3, 5, "sensors[1].filters", "bad"),
                    ("a.yaml", 3, 5, "", "bad")])
    assert got == ["a.yaml: sensors[0]: unreadable", "a.yaml: sensors[1]: unreadable",
                   "a.yaml:3:5: bad",
                   "a.yaml:3:5: sensors[0].filters (and sensors[1].filters, which use the same "
                   "lines): bad"]


def test_a_size_with_a_lower_case_b_is_warned_of_as_bits_read_as_bytes(tmp_path):
    # '256Kb' passed as 256,000 bytes: the maker meant 256 KiB, or wrote bits
    from firmware.profile.compile import compile_with_secrets
    (tmp_path / "p.yaml").write_text(BASE + textwrap.dedent("""\
        sensors: [{name: power, driver: ina219, bus: i2c0}]
        buffer: {max_bytes: 256Kb}
        batch: {max_bytes: 8KB}
        wifi: {ssid: x}
        """).replace("8KB", "8kib"))
    warnings = []
    compiled, errors, _ = compile_with_secrets(str(tmp_path / "p.yaml"), warnings=warnings)
    assert errors == [] and compiled["buffer"]["max_bytes"] == 256000
    assert [w.split("p.yaml:", 1)[1] for w in warnings if "GPIO" not in w] == [
        "8:21: buffer.max_bytes: warning: '256Kb' is read as 256,000 bytes; a lower-case b is "
        "usually bits: write KB or KiB"]
