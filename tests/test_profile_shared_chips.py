"""Sensors that read one chip share its settings: an INA219's power and bus voltage its
calibration, an HX711's weight and pill count its gain, tare and scale. Given on any one, they
hold for all; two that differ are an error at the second. Before, the chip was built from the
first sensor alone and a second one's calibration was ignored in silence."""
import textwrap

from firmware.cli import main
from firmware.profile.compile import compile
from hal.board import drivers
from hal.sim.platform import SimPlatform

HEAD = """\
device: {id: m-1}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
uplink: {broker: "mqtt://127.0.0.1:1883"}
sensors:
"""


def write(tmp_path, sensors):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + textwrap.dedent(sensors))
    return str(path)


def read_all(profile):
    """{sensor name: its reading or the error's words}, through the real drivers on virtual
    chips."""
    platform = SimPlatform(profile)
    out = {}
    for s, chip in zip(profile["sensors"], drivers(profile, platform)):
        try:
            chip.setup()
            out[s["name"]] = chip.measure().get(s["quantity"])
        except Exception as exc:
            out[s["name"]] = str(exc)
    return out


def test_a_calibration_given_on_the_second_sensor_of_a_chip_holds_for_the_first(tmp_path):
    profile, errors = compile(write(tmp_path, """\
      - {name: volts, driver: ina219, bus: i2c0, quantity: bus_voltage}
      - {name: amps, driver: ina219, bus: i2c0, quantity: current,
         calibration: {shunt_ohms: 0.01, max_current: 8}}
    """))
    assert errors == []
    assert [s["calibration"] for s in profile["sensors"]] == [
        {"shunt_ohms": 0.01, "max_current": 8}] * 2
    # The one driver (built from the first sensor) has the 10 mOhm shunt: it was 0.1, the
    # default, and a real current read ten times too low.
    chip = drivers(profile, SimPlatform(profile))[1]
    assert (chip.shunt_ohms, chip.max_current) == (0.01, 8)


def test_two_calibrations_of_one_chip_are_an_error_at_the_second(tmp_path):
    path = write(tmp_path, """\
      - {name: volts, driver: ina219, bus: i2c0, quantity: bus_voltage,
         calibration: {shunt_ohms: 0.1}}
      - {name: amps, driver: ina219, bus: i2c0, quantity: current,
         calibration: {shunt_ohms: 0.01}}
    """)
    _, errors = compile(path)
    assert errors == ["%s:10:30: sensors[1].calibration.shunt_ohms: 0.01 differs from "
                      "sensors[0].calibration.shunt_ohms (0.1), and both read the same chip "
                      "(ina219 at i2c0:0x40), which has one shunt_ohms: give it once, or the "
                      "same on each" % path]
    # Another address is another chip.
    (tmp_path / "b").mkdir()
    _, errors = compile(write(tmp_path / "b", """\
      - {name: volts, driver: ina219, bus: i2c0, calibration: {shunt_ohms: 0.1}}
      - {name: amps, driver: ina219, bus: i2c0, address: 0x41, calibration: {shunt_ohms: 0.01}}
    """))
    assert errors == []


def test_two_level_probes_on_one_pin_are_one_probe_judged_once(tmp_path):
    # "pin 3 is already used" came with "raw_full differs ... both read the same chip": one
    # said the pin could not be shared, the other how to share it. One probe, as on an ADS1115.
    path = write(tmp_path, """\
      - {name: tank, driver: level_probe, pin: 3, calibration: {raw_empty: 100, raw_full: 3900}}
      - {name: tank_slow, driver: level_probe, pin: 3, interval: 10min,
         calibration: {raw_empty: 100, raw_full: 3000}}
    """)
    _, errors = compile(path)
    assert len(errors) == 1 and "already used" not in errors[0], errors
    assert errors[0].startswith("%s:9:44: sensors[1].calibration.raw_full: 3000 differs from "
                                "sensors[0].calibration.raw_full (3900), and both read the "
                                "same chip" % path), errors
    (tmp_path / "b").mkdir()
    _, errors = compile(write(tmp_path / "b", """\
      - {name: tank, driver: level_probe, pin: 3, calibration: {raw_empty: 100, raw_full: 3900}}
      - {name: tank_slow, driver: level_probe, pin: 3, interval: 10min,
         calibration: {raw_empty: 100, raw_full: 3900}}
      - {name: weight, driver: hx711, pins: {dout: 3, sck: 5}}
    """))
    assert errors == ["%s:10:46: sensors[2].pins.dout: pin 3 is already used by sensors[0].pin"
                      % (tmp_path / "b" / "p.yaml")], errors


def test_a_pill_count_reads_when_the_weight_of_its_load_cell_comes_first(tmp_path):
    # The pill bottle's two sensors in the other order: every count was "hx711 gave no count".
    profile, errors = compile(write(tmp_path, """\
      - {name: weight, driver: hx711, pins: {dout: 16, sck: 17}, quantity: weight,
         calibration: {tare: 8421, scale: 412.5}}
      - {name: pills, driver: hx711, pins: {dout: 16, sck: 17}, quantity: count,
         calibration: {tare: 8421, scale: 412.5, pill_weight: 0.5}}
    """))
    assert errors == []
    got = read_all(profile)
    assert got == {"weight": 100.0, "pills": 200}, got


def test_two_gains_of_one_load_cell_are_an_error(tmp_path):
    path = write(tmp_path, """\
      - {name: weight, driver: hx711, pins: {dout: 16, sck: 17}}
      - {name: pills, driver: hx711, pins: {dout: 16, sck: 17}, quantity: count, gain: 64,
         calibration: {pill_weight: 0.5}}
    """)
    _, errors = compile(path)
    assert len(errors) == 0  # one gain given: it holds for both
    (tmp_path / "b").mkdir()
    path = write(tmp_path / "b", """\
      - {name: weight, driver: hx711, pins: {dout: 16, sck: 17}, gain: 128}
      - {name: pills, driver: hx711, pins: {dout: 16, sck: 17}, quantity: count, gain: 64,
         calibration: {pill_weight: 0.5}}
    """)
    _, errors = compile(path)
    assert len(errors) == 1 and "sensors[1].gain: 64 differs from sensors[0].gain (128)" in \
        errors[0], errors


def test_two_gains_on_one_ads1115_channel_each_read_at_their_own(tmp_path):
    # A coarse and a fine range of one input: the second read at the first's gain (1.0 V
    # inside +-0.256 V, silently wrong).
    profile, errors = compile(write(tmp_path, """\
      - {name: coarse, driver: ads1115, bus: i2c0, channel: 1, calibration: {gain: 4.096}}
      - {name: fine, driver: ads1115, bus: i2c0, channel: 1, resolution: 0.0001,
         calibration: {gain: 0.256}}
    """))
    assert errors == []
    got = read_all(profile)
    assert got["coarse"] == 1.0 and "beyond the +-0.256 V full scale" in got["fine"], got


def test_an_ina219_calibration_beyond_the_chip_is_said_at_its_line_not_a_traceback(tmp_path,
                                                                                  capsys):
    path = write(tmp_path, """\
      - {name: power, driver: ina219, bus: i2c0, calibration: {shunt_ohms: 100, max_current: 8}}
    """)
    assert main(["check", path]) == 2
    assert capsys.readouterr().err == (
        "%s:7:70: sensors[0].calibration.shunt_ohms: shunt_ohms x max_current is 800 V, more "
        "than ten times the INA219's 0.32 V full scale: a shunt in ohms (0.1, not 100 for 100 "
        "milliohms)?\n" % path)


def test_an_ina219_max_current_in_milliamps_is_said_at_max_current(tmp_path, capsys):
    # With the shunt left at its default the error landed on shunt_ohms, which was right
    path = write(tmp_path, """\
      - {name: power, driver: ina219, bus: i2c0, calibration: {max_current: 3200}}
    """)
    assert main(["check", path]) == 2
    assert capsys.readouterr().err == (
        "%s:7:71: sensors[0].calibration.max_current: shunt_ohms x max_current is 320 V, more "
        "than ten times the INA219's 0.32 V full scale: a max_current in amperes (3.2, not "
        "3200 for 3.2 A)?\n" % path)


def test_check_estimates_a_profile_whose_batch_of_readings_passes_max_bytes(tmp_path, capsys):
    # The estimate filled a batch by count and age only and stopped check with BufferFull; the
    # agent cuts by bytes too.
    path = tmp_path / "p.yaml"
    path.write_text(HEAD.replace("sensors:\n", "batch: {max_bytes: 256B, max_readings: 400}\n"
                                 "sensors:\n").replace("1883\"}", "1883\", encoding: senml}")
                    + "".join(
        "  - {name: water_tank_level_probe_number_%02d, driver: level_probe, pin: %d, "
        "calibration: {raw_empty: 300, raw_full: 3800}}\n" % (i, i) for i in range(8)))
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
    assert "batches/day" in capsys.readouterr().out


def test_a_unit_is_short_and_a_buffer_path_is_not_empty(tmp_path):
    path = write(tmp_path, """\
      - {name: power, driver: ina219, bus: i2c0, unit: %s}
    """ % ("w" * 17)) + ""
    (tmp_path / "p.yaml").write_text((tmp_path / "p.yaml").read_text() + "buffer: {path: ''}\n")
    _, errors = compile(path)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "sensors[0].unit: expected a unit of 1 to 16 ASCII letters, digits or symbols without "
        "spaces, like 'W', '%RH' or 'ug/m3', got 'wwwwwwwwwwwwwwwww'",
        "buffer.path: expected a folder path, got ''"], errors


def test_the_calibration_a_chip_ends_up_with_is_the_one_judged(tmp_path):
    # Each sensor's half of a calibration passed alone; merged, the driver refused it at start.
    path = write(tmp_path, """\
      - {name: volts, driver: ina219, bus: i2c0, quantity: bus_voltage,
         calibration: {shunt_ohms: 200}}
      - {name: amps, driver: ina219, bus: i2c0, quantity: current,
         calibration: {max_current: 50}}
    """)
    _, errors = compile(path)
    assert errors == ["%s:8:30: sensors[0].calibration.shunt_ohms: shunt_ohms x max_current is "
                      "10000 V, more than ten times the INA219's 0.32 V full scale: a shunt in "
                      "ohms (0.1, not 100 for 100 milliohms)?" % path], errors
    # and one that is fine merged is not judged on one half and the other's default
    (tmp_path / "b").mkdir()
    _, errors = compile(write(tmp_path / "b", """\
      - {name: volts, driver: ina219, bus: i2c0, calibration: {shunt_ohms: 0.0001}}
      - {name: amps, driver: ina219, bus: i2c0, quantity: current,
         calibration: {max_current: 3000}}
    """))
    assert errors == []
    # 100 for 100 milliohms with the default 3.2 A: 320 V, read 1000 times too low
    (tmp_path / "c").mkdir()
    _, errors = compile(write(tmp_path / "c", """\
      - {name: amps, driver: ina219, bus: i2c0, calibration: {shunt_ohms: 100}}
    """))
    assert len(errors) == 1 and "is 320 V, more than ten times" in errors[0], errors


def test_a_pill_weight_given_on_the_weight_holds_for_the_count_of_its_load_cell(tmp_path):
    profile, errors = compile(write(tmp_path, """\
      - {name: weight, driver: hx711, pins: {dout: 16, sck: 17},
         calibration: {tare: 8421, scale: 412.5, pill_weight: 0.5}}
      - {name: pills, driver: hx711, pins: {dout: 16, sck: 17}, quantity: count}
    """))
    assert errors == []
    assert read_all(profile) == {"weight": 100.0, "pills": 200}
    (tmp_path / "b").mkdir()
    _, errors = compile(write(tmp_path / "b", """\
      - {name: pills, driver: hx711, pins: {dout: 16, sck: 17}, quantity: count}
    """))
    assert len(errors) == 1 and errors[0].endswith(
        "sensors[0]: calibration.pill_weight is required with quantity 'count' (the weight is "
        "divided by it): give it on this sensor or another of the same load cell"), errors
