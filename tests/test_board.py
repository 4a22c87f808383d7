"""The host side of the board builder: `tether read`, and the compiled fixture the portable
tests use."""
import subprocess
import sys

from firmware.profile.compile import compile as compile_profile

FIXTURE = "tests/data/profiles/all-drivers.yaml"


def test_portable_fixture_is_the_compiled_yaml():
    sys.path.insert(0, "tests/portable")
    try:
        from all_drivers import PROFILE
    finally:
        sys.path.pop(0)
    assert PROFILE == compile_profile(FIXTURE)[0]


def tether(*args):
    return subprocess.run([sys.executable, "-m", "firmware.cli"] + list(args),
                          capture_output=True, text=True)


def test_read_prints_every_sensor_with_its_unit_at_its_resolution():
    proc = tether("read", FIXTURE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == FIXTURE + " on sim: 10 sensors"
    assert lines[1:] == ["  power    3.5 W", "  mains    3.5 W", "  energy   15230 Wh",
                         "  pills    30 count", "  weight   13.5 g", "  volts    1.0 V",
                         "  ink_c    50.0 %", "  ink_k    50.0 %", "  cabinet  21.0 Cel",
                         "  damp     45.0 %RH"]


def test_read_reports_each_failing_sensor_and_exits_1():
    proc = tether("read", FIXTURE, "--fault", "power=nack", "--fault", "energy=bad_crc",
                  "--count", "2", "--interval", "1ms")
    assert proc.returncode == 1
    out = proc.stdout
    assert out.count("  power    ERROR INA219 at i2c0:0x40 did not acknowledge") == 2
    assert out.count("ERROR PZEM-004T at uart1:1") == 4  # mains and energy: one chip
    assert "  volts    1.0 V" in out and out.endswith("6 of 20 readings failed\n")


def test_read_names_the_type_of_an_exception_no_driver_meant():
    # "ERROR index out of range" from a driver's bug read as the sensor's own failure
    import io
    from firmware.read import read_round

    class Buggy:
        def setup(self):
            pass

        def measure(self):
            return {"power": [][1]}

    class Nack(Buggy):
        def measure(self):
            from hal.bus import SensorError
            raise SensorError("INA219", "i2c0:0x40", "did not acknowledge", "nack")

    profile = {"sensors": [{"name": "power", "quantity": "power"},
                           {"name": "mains", "quantity": "power"}]}
    out = io.StringIO()
    assert read_round(profile, [Buggy(), Nack()], out, set()) == 2
    assert out.getvalue().splitlines() == [
        "  power  ERROR IndexError: list index out of range",
        "  mains  ERROR INA219 at i2c0:0x40 did not acknowledge"]


def test_read_rejects_bad_options_with_a_clear_message():
    proc = tether("read", FIXTURE, "--fault", "toner=nack")
    assert proc.returncode == 2 and "no sensor 'toner'" in proc.stderr
    proc = tether("read", FIXTURE, "--fault", "power")      # it read "no fault '' for power"
    assert proc.returncode == 2 and "--fault power: expected SENSOR=KIND" in proc.stderr
    proc = tether("read", "examples/printer.yaml")
    assert proc.returncode == 2 and "read on the board itself" in proc.stderr
    # it judged the ESP32's I2C pins against a Pi's ("a Raspberry Pi has this bus on sda 0")
    proc = tether("read", "examples/printer.yaml", "--platform", "rpi")
    assert proc.returncode == 2 and ("--platform rpi takes a profile written for a Raspberry "
                                     "Pi (platform: rpi); this one is for esp32") in proc.stderr
    proc = tether("read", FIXTURE, "--interval", "soon")
    assert proc.returncode == 2 and "--interval: expected a duration like '10s'" in proc.stderr


def test_read_on_a_pi_without_its_serial_port_says_how_to_enable_it():
    proc = tether("read", "examples/washer.yaml")
    assert proc.returncode == 2
    assert "cannot open the rpi platform" in proc.stderr and "/dev/serial0" in proc.stderr
    assert "[Errno" not in proc.stderr
