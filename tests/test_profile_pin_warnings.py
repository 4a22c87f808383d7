"""Pins an ESP32 can use but that bite later (a strapping pin, the console's, USB's, PSRAM's) are
warned of where they are written, as ESPHome warns of strapping pins; the profile still passes."""
import pathlib
import textwrap

import pytest

from firmware.cli import main
from firmware.profile.compile import compile_with_secrets

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def profile(tmp_path, buses, chip="esp32", platform="esp32", more=""):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        device: {id: kettle}
        platform: %s
        %s
        buses: %s
        sensors: [{name: power, driver: ina219, bus: b}]
        uplink: {broker: "mqtt://localhost"}
        """) % (platform, "chip: " + chip if chip else "# no chip", buses) + more)
    return str(path)


def warnings_of(path):
    warnings = []
    compiled, errors, _ = compile_with_secrets(path, warnings=warnings)
    assert errors == [] and compiled is not None
    return [w.split("p.yaml:", 1)[1] for w in warnings]


def test_an_i2c_bus_on_the_esp32s_flash_voltage_strap_and_console_is_warned_of_at_each_pin(
        tmp_path):
    assert warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: 12, scl: 1}]")) == [
        "4:33: buses[0].sda: warning: GPIO12 is a strapping pin that sets the flash's voltage: "
        "pulled up at reset (an I2C bus's pull-up), a module with 3.3 V flash does not boot",
        "4:42: buses[0].scl: warning: GPIO1 is UART0's TX, the console that `tether flash` and "
        "`tether logs` reach through a board's USB-serial chip: once the agent opens its bus "
        "there, neither reaches the board"]


@pytest.mark.parametrize("chip, sda, scl, says", [
    ("esp32", 0, 2, ["GPIO0 is a strapping pin", "GPIO2 is a strapping pin"]),
    ("esp32", 16, 17, ["GPIO16 is wired to the PSRAM of ESP32-WROVER",
                       "GPIO17 is wired to the PSRAM of ESP32-WROVER"]),
    ("esp32c3", 8, 9, ["GPIO8 is a strapping pin", "GPIO9 is a strapping pin"]),
    ("esp32c3", 18, 19, ["GPIO18 is the chip's own USB (D-)", "GPIO19 is the chip's own USB (D+)"]),
    ("esp32c3", 20, 21, ["GPIO20 is UART0's RX", "GPIO21 is UART0's TX"]),
    ("esp32s3", 35, 43, ["GPIO35 is wired to the flash or PSRAM on ESP32-S3 modules with octal",
                         "GPIO43 is UART0's TX"]),
    ("esp32s2", 45, 19, ["GPIO45 is a strapping pin", "GPIO19 is the chip's own USB (D-)"]),
    ("esp32c6", 12, 15, ["GPIO12 is the chip's own USB (D-)", "GPIO15 is a strapping pin"]),
    ("esp32c6", 16, 17, ["GPIO16 is UART0's TX", "GPIO17 is UART0's RX"]),
    ("esp32c6", 4, 5, ["GPIO4 is a strapping pin", "GPIO5 is a strapping pin"]),
])
def test_each_chip_warns_of_its_own_pins(tmp_path, chip, sda, scl, says):
    got = warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: %d, scl: %d}]" % (sda, scl),
                              chip))
    assert [w.split("warning: ", 1)[1][:len(s)] for w, s in zip(got, says)] == says
    assert len(got) == 2


def test_pins_free_of_all_that_are_not_warned_of(tmp_path):
    assert warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 22}]")) == []
    assert warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: 4, scl: 5}]", "esp32c3")) == []


@pytest.mark.parametrize("platform", ["rpi", "sim"])
def test_a_raspberry_pi_or_simulated_board_has_no_pin_warnings(tmp_path, platform):
    # GPIO1 and 12 are warned of on an ESP32
    assert warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: 1, scl: 12, port: /dev/i2c-3}]",
                               None, platform)) == []


def test_ignore_pin_warnings_silences_only_the_gpios_it_lists(tmp_path):
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 0, scl: 1}]",
                   more="ignore_pin_warnings: [1]\n")
    got = warnings_of(path)
    assert len(got) == 1 and got[0].startswith("4:33: buses[0].sda: warning: GPIO0 is a strapping")
    # the board never sees it: it is not in the compiled profile
    compiled, _, _ = compile_with_secrets(path)
    assert "ignore_pin_warnings" not in compiled


def test_a_bad_ignore_pin_warnings_is_an_error_at_its_place(tmp_path):
    def errors(more, **kw):
        port = ", port: /dev/i2c-1" if kw.get("platform") == "rpi" else ""  # refused on an ESP32
        path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 22%s}]" % port,
                       more=more, **kw)
        compiled, errors, _ = compile_with_secrets(path)
        assert compiled is None
        return [e.split("p.yaml:", 1)[1] for e in errors]
    assert errors("ignore_pin_warnings: [1, x, 40, 99]\n") == [
        "7:26: ignore_pin_warnings[1]: expected a GPIO number, got 'x'",
        "7:29: ignore_pin_warnings[2]: expected an ESP32 GPIO number (0-39; there is no GPIO20, "
        "24 or 28-31), got 40",
        # past 63 too: it said "a GPIO number" without the chip's
        "7:33: ignore_pin_warnings[3]: expected an ESP32 GPIO number (0-39; there is no GPIO20, "
        "24 or 28-31), got 99"]
    assert errors("ignore_pin_warnings: 12\n") == [
        "7:22: ignore_pin_warnings: expected a list of GPIO numbers, got 12"]
    assert errors("ignore_pin_warnings: [12]\n", chip=None, platform="rpi") == [
        "7:22: ignore_pin_warnings: 'ignore_pin_warnings' goes with 'platform: esp32', whose "
        "pins are warned of"]


def test_ignoring_a_pin_with_nothing_to_ignore_is_a_warning_itself(tmp_path):
    # 21 for 12: the real warning would stay, and a pin that comes back later would be hidden
    got = warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 12}]",
                              more="ignore_pin_warnings: [21]\n"))
    assert [w[:40] for w in got] == ["4:42: buses[0].scl: warning: GPIO12 is a",
                                     "7:23: ignore_pin_warnings[0]: warning: G"]
    assert got[1].endswith("GPIO21 is not a pin this profile is warned of: nothing to ignore")


def test_a_pin_from_secrets_is_not_told_by_a_warning(tmp_path):
    # the summary shows it as ***: "GPIO12 is a strapping pin" would tell it
    (tmp_path / "secrets.yaml").write_text("sda_pin: 12\n")
    assert warnings_of(profile(tmp_path, "[{id: b, type: i2c, sda: !secret sda_pin, scl: 22}]"
                               )) == []


def test_uart_hx711_and_probe_pins_are_warned_of_too(tmp_path):
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 22}, "
                             "{id: u, type: uart, tx: 1, rx: 3}]", more=(
        "sensors:\n"
        "  - {name: power, driver: ina219, bus: b}\n"
        "  - {name: w, driver: hx711, pins: {dout: 0, sck: 2}, calibration: {tare: 1, scale: 2}}\n"
        "  - {name: v, driver: pzem004t, bus: u, quantity: voltage}\n"))
    text = pathlib.Path(path).read_text().replace(
        "sensors: [{name: power, driver: ina219, bus: b}]\n", "", 1)
    pathlib.Path(path).write_text(text)
    got = warnings_of(path)
    assert [w.split(": warning: ")[0].split(": ", 1)[1] for w in got] == [
        "buses[1].tx", "buses[1].rx", "sensors[1].pins.dout", "sensors[1].pins.sck"]


def test_check_prints_warnings_on_stderr_and_still_passes(tmp_path, capsys):
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 12}]")
    assert main(["check", path]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(path + ": ok\n")
    assert err.startswith(path + ":4:42: buses[0].scl: warning: GPIO12 is a strapping pin")


def test_check_prints_warnings_beside_errors(tmp_path, capsys):
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 12}]",
                   more="batch: {max_bytes: 1}\n")
    assert main(["check", path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(path + ":7:20: batch.max_bytes: expected")
    assert err[1].startswith(path + ":4:42: buses[0].scl: warning: GPIO12")


def test_build_prints_the_warnings_before_it_builds(tmp_path, capsys):
    from firmware.build import _compile_profile
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 12}]",
                   more="wifi: {ssid: home}\n")
    compiled, _ = _compile_profile(path, ())
    assert compiled["wifi"]["ssid"] == "home"
    assert "buses[0].scl: warning: GPIO12" in capsys.readouterr().err


def test_compile_prints_warnings_on_stderr_and_writes_the_profile(tmp_path, capsys):
    path = profile(tmp_path, "[{id: b, type: i2c, sda: 21, scl: 12}]")
    assert main(["compile", path, "-o", str(tmp_path / "p.json")]) == 0
    assert "warning: GPIO12" in capsys.readouterr().err
    assert (tmp_path / "p.json").stat().st_size > 0


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")
                                           if p.name != "secrets.yaml"))
def test_the_examples_use_no_pin_that_is_warned_of(example):
    # what makers copy: the pill bottle's HX711 sat on GPIO16/17, a WROVER's PSRAM
    warnings = []
    compiled, errors, _ = compile_with_secrets(str(EXAMPLES / example), warnings=warnings)
    assert errors == [] and warnings == []
