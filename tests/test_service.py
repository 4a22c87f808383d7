"""`tether install-service`: the systemd unit it writes for a Raspberry Pi profile (checked by
Debian's systemd-analyze), the files it installs, its errors; and `tether run` as systemd runs
it: outputs that are pipes, stopped by SIGTERM, which delivers what waited and saves the buffer.

No test here installs into this machine's /etc: they use --dry-run or --root."""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import time

import pytest

from simulator.lab.mosquitto import require_tool
from tests.run_process import LIVENESS_S, Run, watch

ROOT = pathlib.Path(__file__).resolve().parent.parent
# An I2C power monitor, a PZEM on the header's UART and one on a USB adapter, a HX711 on two
# GPIO pins; the bus `spare` is declared and no sensor uses it.
PI_PROFILE = """\
device: {id: scale-1, model: Pill scale}
platform: rpi
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
  - {id: mains, type: uart, tx: 14, rx: 15}
  - {id: usb, type: uart, tx: 0, rx: 1, port: /dev/ttyUSB0}
  - {id: spare, type: i2c, sda: 22, scl: 23, port: /dev/i2c-3}
sensors:
  - {name: power, driver: ina219, bus: i2c0}
  - {name: volts, driver: pzem004t, bus: mains, quantity: voltage}
  - {name: heater, driver: pzem004t, bus: usb, quantity: power}
  - {name: weight, driver: hx711, pins: {dout: 5, sck: 6}}
uplink: {broker: "mqtts://broker.example:8883", username: u, password: s3cret-pw}
"""


def tether(*args, env=None, cwd=ROOT, first=None):
    """first: a folder whose modules shadow the installed ones."""
    path = str(ROOT) if first is None else "%s:%s" % (first, ROOT)
    return subprocess.run([sys.executable, "-m", "firmware.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=LIVENESS_S,
                          env=dict(env or os.environ, PYTHONPATH=path))


def write(tmp_path, text, name="pi.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def dry_run(profile, *args):
    done = tether("install-service", profile, "--dry-run", *args)
    assert done.returncode == 0, done.stderr
    # What this machine lacks for a real install (no i2c group, a checkout in /tmp) is warned
    # of; nothing else is said.
    assert all(line.startswith("warning: an install on this machine would stop here: ")
               for line in done.stderr.splitlines()), done.stderr
    return done.stdout


def unit_of(printed):
    """The unit in --dry-run's output: without the lines around it that say where it goes."""
    lines = printed.splitlines(True)
    assert lines[1].startswith("# /etc/systemd/system/") and lines[-1].startswith("# then: ")
    return "".join(lines[2:-1])


def systemd_analyze():
    return require_tool("systemd-analyze", "systemd")


def verify(tmp_path, name, unit):
    """systemd-analyze verify of the unit as tether-NAME.service: no error and no warning.
    (It checks that ExecStart's program exists: the unit names this test's own Python.)"""
    folder = tmp_path / "verify"
    folder.mkdir(exist_ok=True)
    path = folder / ("tether-%s.service" % name)
    path.write_text(unit)
    done = subprocess.run([systemd_analyze(), "verify", str(path)], capture_output=True,
                          text=True, timeout=LIVENESS_S)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", (
        done.returncode, done.stdout + done.stderr)


def test_the_unit_allows_exactly_the_device_files_of_the_buses_and_pins_the_sensors_use(tmp_path):
    printed = dry_run(write(tmp_path, PI_PROFILE), "--gpiochip", "/dev/gpiochip0")
    unit = unit_of(printed)
    lines = unit.splitlines()
    assert [l for l in lines if l.startswith("Device")] == [
        "DevicePolicy=closed",
        "DeviceAllow=/dev/gpiochip0 rw",
        "DeviceAllow=/dev/i2c-1 rw",
        "DeviceAllow=/dev/serial0 rw",
        "DeviceAllow=/dev/ttyUSB0 rw",
        # a USB adapter plugged in after the start (or again as ttyUSB1) was denied: the class
        "DeviceAllow=char-ttyUSB rw",
    ]
    assert "SupplementaryGroups=dialout gpio i2c" in lines
    assert ("ExecStart=%s -I -m firmware.cli run --gpiochip /dev/gpiochip0 "
            "${CREDENTIALS_DIRECTORY}/profile.json" % sys.executable) in lines
    assert "LoadCredential=profile.json:/etc/tether/scale-1.json" in lines
    for line in ("DynamicUser=yes", "StateDirectory=tether", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "Restart=always", "RestartSec=10s", "StartLimitIntervalSec=0",
                 "RestartPreventExitStatus=2",
                 "TimeoutStopSec=30s", "Description=Tether agent for scale-1 (Pill scale)",
                 "SyslogIdentifier=tether-scale-1"):
        assert line in lines, line
    assert printed.splitlines()[:2] == [
        "# /etc/tether/scale-1.json (mode 0600): the compiled profile, with its secrets",
        "# /etc/systemd/system/tether-scale-1.service:"]
    assert "s3cret-pw" not in printed
    verify(tmp_path, "scale-1", unit)


def test_a_usb_adapter_by_its_stable_name_allows_both_usb_serial_classes(tmp_path):
    unit = unit_of(dry_run(write(tmp_path, PI_PROFILE.replace(
        "/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0")), "--gpiochip",
        "/dev/gpiochip0"))
    allowed = [line for line in unit.splitlines() if line.startswith("DeviceAllow=char-")]
    assert allowed == ["DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyUSB rw"]
    # a class is looked up when the service starts, and is there once its module is loaded
    modules = "modprobe@cdc_acm.service modprobe@usbserial.service"
    assert "Wants=network-online.target " + modules in unit.splitlines()
    assert "After=network-online.target time-sync.target " + modules in unit.splitlines()
    verify(tmp_path, "scale-1", unit)


def test_a_profile_without_gpio_pins_gets_no_gpio_chip_nor_group(tmp_path):
    unit = unit_of(dry_run("examples/washer.yaml", "--device", "washer-7"))
    lines = unit.splitlines()
    assert [l for l in lines if l.startswith("DeviceAllow=")] == ["DeviceAllow=/dev/serial0 rw"]
    assert "SupplementaryGroups=dialout" in lines
    assert ("ExecStart=%s -I -m firmware.cli run --device washer-7 "
            "${CREDENTIALS_DIRECTORY}/profile.json" % sys.executable) in lines
    assert "LoadCredential=profile.json:/etc/tether/washer-7.json" in lines
    verify(tmp_path, "washer-7", unit)


def test_root_install_writes_the_compiled_profile_for_root_alone_and_the_unit(tmp_path):
    profile = write(tmp_path, PI_PROFILE)
    root = tmp_path / "root"
    done = tether("install-service", profile, "--gpiochip", "/dev/gpiochip0", "--root", str(root))
    assert done.returncode == 0, done.stderr
    compiled = root / "etc/tether/scale-1.json"
    unit = root / "etc/systemd/system/tether-scale-1.service"
    assert done.stdout == "wrote %s and %s\n" % (compiled, unit)
    assert stat.S_IMODE(compiled.stat().st_mode) == 0o600
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    data = json.loads(compiled.read_text())
    assert data["device"]["id"] == "scale-1" and data["uplink"]["password"] == "s3cret-pw"
    assert data["buffer"]["path"] == "/var/lib/tether/buffer"  # the unit's StateDirectory
    assert unit.read_text() == unit_of(dry_run(profile, "--gpiochip", "/dev/gpiochip0"))
    # The unit starts this machine's Python: an image built here must have it at that path
    assert done.stderr.startswith(
        "warning: the unit starts %s (this machine's tether): the system under %s must have "
        "tether installed at that same path" % (sys.executable, root)), done.stderr
    assert "ExecStart=%s -I -m firmware.cli run" % sys.executable in unit.read_text()
    # Again, with another model: both files replaced whole.
    done = tether("install-service", write(tmp_path, PI_PROFILE.replace("Pill scale", "Scale 2")),
                  "--gpiochip", "/dev/gpiochip0", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "(Scale 2)" in unit.read_text()
    assert sorted(p.name for p in unit.parent.iterdir()) == ["tether-scale-1.service"]


def test_a_buffer_holding_another_devices_readings_is_refused_as_tether_run_would(tmp_path):
    root = tmp_path / "root"
    buffer = root / "var/lib/tether/buffer"
    buffer.mkdir(parents=True)
    (buffer / "device").write_text("w1\n")      # what tether run left of device w1
    done = tether("install-service", "examples/washer.yaml", "--device", "w7", "--root",
                  str(root))
    assert done.returncode == 2 and done.stderr == (
        "tether install-service: the buffer in /var/lib/tether/buffer holds the readings of "
        "device w1, and tether run would refuse to send them as w7: remove it to drop them "
        "(sudo rm -rf /var/lib/tether/buffer) or give this profile its own buffer.path under "
        "/var/lib/tether/\n")
    assert tether("install-service", "examples/washer.yaml", "--device", "w1", "--root",
                  str(root)).returncode == 0


def test_a_second_device_on_the_same_buffer_is_refused(tmp_path):
    root = str(tmp_path / "root")
    assert tether("install-service", "examples/washer.yaml", "--device", "w1",
                  "--root", root).returncode == 0
    done = tether("install-service", "examples/fridge.yaml", "--device", "f1", "--root", root)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("tether install-service: the service of /etc/tether/w1.json already "
                           "keeps its buffer in /var/lib/tether/buffer: give this profile its "
                           "own buffer.path under /var/lib/tether/, or, if this device replaces "
                           "w1 (a --device id mistyped), remove that service and its buffer "
                           "first (sudo tether remove-service w1 --purge)\n")
    fridge = (ROOT / "examples/fridge.yaml").read_text().replace(
        "buffer:\n", "buffer:\n  path: /var/lib/tether/fridge\n")
    # Its own buffer, but the washer's serial port, which one process at a time opens: the
    # second service would fail its meter for good.
    done = tether("install-service", write_beside_examples(tmp_path, fridge), "--device", "f1",
                  "--root", root)
    assert done.returncode == 2 and done.stderr == (
        "tether install-service: the serial port /dev/serial0 is also w1's (tether-w1.service), "
        "and one process at a time opens it: put the sensors on it in one profile (Modbus "
        "meters at their own addresses on one bus), or give this one a port of its own\n")
    fridge = fridge.replace("    rx: 15\n", "    rx: 15\n    port: /dev/ttyUSB0\n", 1)
    done = tether("install-service", write_beside_examples(tmp_path / "usb", fridge), "--device",
                  "f1", "--root", root)
    assert done.returncode == 0, done.stderr
    # One inside the other: installed, its service stopped at its first start for good.
    inner = (ROOT / "examples/fridge.yaml").read_text().replace(
        "buffer:\n", "buffer:\n  path: /var/lib/tether/buffer/f2\n")
    done = tether("install-service", write_beside_examples(tmp_path / "x", inner), "--device",
                  "f2", "--root", root)
    assert done.returncode == 2 and "are one inside the other" in done.stderr, done.stderr


def write_beside_examples(tmp_path, text):
    """A profile that includes the examples' common/ package, written outside the repository."""
    shutil.copytree(ROOT / "examples/common", tmp_path / "common")
    shutil.copy(ROOT / "examples/secrets.yaml", tmp_path / "secrets.yaml")
    return write(tmp_path, text, "product.yaml")


def refused(*args, env=None, code=2):
    done = tether("install-service", *args, env=env)
    assert done.returncode == code, (done.returncode, done.stderr)
    assert done.stdout == "" and "Traceback" not in done.stderr
    return done.stderr


def test_an_invalid_profile_is_refused_with_the_compilers_errors(tmp_path):
    err = refused(write(tmp_path, PI_PROFILE.replace("driver: ina219", "driver: ina999")),
                  "--dry-run")
    assert "pi.yaml:9:27: sensors[0].driver: " in err and "ina999" in err


def test_an_esp32_profile_is_refused_with_a_pointer_to_tether_flash(tmp_path):
    path = write(tmp_path, PI_PROFILE.replace("platform: rpi", "platform: esp32").replace(
        "  - {name: weight, driver: hx711, pins: {dout: 5, sck: 6}}\n", "").replace(
        "port: /dev/ttyUSB0", "tx: 25, rx: 26").replace("tx: 0, rx: 1, ", "").replace(
        ", port: /dev/i2c-3", "").replace("mqtts://", "mqtt://"))  # a board on mqtts:// needs a ca, which check says first
    err = refused(path, "--dry-run")
    assert err == ("tether install-service: %s is a profile for an ESP32 (platform: esp32), "
                   "which runs the agent itself: put it on the board with `tether flash %s "
                   "--port /dev/ttyUSB0`\n" % (path, path))


def test_a_sim_profile_is_refused(tmp_path):
    path = write(tmp_path, PI_PROFILE.replace("platform: rpi", "platform: sim"))
    assert "a service runs a Raspberry Pi profile (platform: rpi)" in refused(path, "--dry-run")


def test_a_template_device_id_needs_device(tmp_path):
    assert refused("examples/washer.yaml", "--dry-run") == (
        "tether install-service: the device id 'washer-{uid}' is a template: give --device ID\n")


def test_a_buffer_outside_the_state_directory_is_refused(tmp_path):
    for path in ("/home/pi/buffer", "/var/lib/tether", "/var/lib/tether/../other"):
        profile = write(tmp_path, PI_PROFILE + "buffer: {path: %s}\n" % path)
        err = refused(profile, "--dry-run", "--gpiochip", "/dev/gpiochip0")
        assert err.startswith("tether install-service: %s: buffer.path is %s, and the service "
                              "may write only under /var/lib/tether/" % (profile, path)), err


def test_a_bus_on_pins_a_pi_does_not_have_it_on_is_refused(tmp_path):
    profile = write(tmp_path, PI_PROFILE.replace("tx: 14, rx: 15", "tx: 16, rx: 17"))
    err = refused(profile, "--dry-run", "--gpiochip", "/dev/gpiochip0")
    assert err.startswith("%s:" % profile) and ": uart bus mains on tx 16, rx 17: a Raspberry " \
        "Pi has this bus on tx 14/rx 15" in err, err


def test_gpio_pins_allow_the_gpio_chips_found_again_at_each_start_unless_one_is_named(
        tmp_path, monkeypatch):
    # A chip fixed at install (gpiochip4) stopped the service when a kernel update renumbered
    # the Pi 5's chips; tether run finds the pin controller by its label at each start.
    from firmware import service
    from firmware.profile.compile import compile as compile_profile
    monkeypatch.setattr(service, "find_gpiochip", lambda: "/dev/gpiochip4")
    profile, errors = compile_profile(write(tmp_path, PI_PROFILE))
    assert not errors
    unit = service.plan(profile, "pi.yaml", None)[0]
    lines = unit.splitlines()
    assert "DeviceAllow=char-gpiochip rw" in lines and "gpiochip4" not in unit
    assert [l for l in lines if l.startswith("ExecStart=")] == [
        "ExecStart=%s -I -m firmware.cli run ${CREDENTIALS_DIRECTORY}/profile.json"
        % sys.executable]
    assert "SupplementaryGroups=dialout gpio i2c" in lines
    verify(tmp_path, "scale-1", unit)
    named = service.plan(profile, "pi.yaml", None, "/dev/gpiochip0")[0]
    assert "DeviceAllow=/dev/gpiochip0 rw" in named and "char-gpiochip" not in named


def test_gpio_pins_without_a_gpio_chip_found_are_warned_of_and_packaged(tmp_path):
    # This machine is no Raspberry Pi: no pin controller (or no gpiod) to find. A real install
    # here is refused (the service would find none either); a dry run says so, and --root
    # packages an image for a Pi on a build host (it asked for --gpiochip, which would pin the
    # chip the service no longer pins).
    done = tether("install-service", write(tmp_path, PI_PROFILE), "--dry-run")
    assert done.returncode == 0 and "DeviceAllow=char-gpiochip rw" in done.stdout
    warned = [line for line in done.stderr.splitlines() if "GPIO chip" in line]
    assert len(warned) == 1 and warned[0].startswith(
        "warning: an install on this machine would stop here: the profile uses GPIO pins, and the Pi's GPIO chip "
        "was not found: ") and warned[0].endswith("give it with --gpiochip /dev/gpiochipN"), \
        done.stderr
    assert "[Errno" not in done.stderr
    done = tether("install-service", write(tmp_path, PI_PROFILE), "--root", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    err = refused(write(tmp_path, PI_PROFILE), "--dry-run", "--gpiochip", "/dev/ttyS0")
    assert "--gpiochip: expected a GPIO chip like /dev/gpiochip0, got '/dev/ttyS0'" in err


def test_installing_without_systemctl_is_refused_before_anything_is_written(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    err = refused("examples/washer.yaml", "--device", "w1", code=3,
                  env=dict(os.environ, PATH=str(empty)))
    assert err.startswith("tether install-service: systemctl not found: this machine does not "
                          "run systemd"), err


def test_installing_as_another_user_than_root_is_refused(tmp_path):
    assert shutil.which("systemctl"), "systemctl is missing: run tests/system-deps as root"
    args = [sys.executable, "-m", "firmware.cli", "install-service", "examples/washer.yaml",
            "--device", "w1"]
    if os.geteuid() == 0:  # as root (a container's CI): the same command as nobody
        args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + args
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=LIVENESS_S,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr == ("tether install-service: installing a service needs root: run it "
                           "with sudo (--dry-run shows the unit as any user)\n")


def test_remove_service_takes_away_the_unit_and_profile_and_keeps_the_buffer(tmp_path):
    root = tmp_path / "root"
    assert tether("install-service", "examples/washer.yaml", "--device", "w1", "--root",
                  str(root)).returncode == 0
    buffer = root / "var/lib/tether/buffer"
    buffer.mkdir(parents=True)
    (buffer / "device").write_text("w1\n")       # what tether run left
    (buffer / "00000003.seg").write_bytes(b"batches not yet delivered")
    done = tether("remove-service", "w1", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "removed tether-w1.service: %s, %s" % (root / "etc/systemd/system/tether-w1.service",
                                               root / "etc/tether/w1.json"),
        "its buffer stays in /var/lib/tether/buffer: what it holds goes out if w1 is installed "
        "again (--purge removes it)",
        "the broker keeps its retained status and schema: clear them with an empty retained "
        "message on each (docs/raspberry-pi.md, Removing it)"]
    assert not (root / "etc/tether/w1.json").exists()
    assert not (root / "etc/systemd/system/tether-w1.service").exists()
    assert (buffer / "00000003.seg").exists()
    # Gone: said, with what is installed.
    assert tether("install-service", "examples/washer.yaml", "--device", "w2", "--root",
                  str(root)).returncode == 2  # w1's buffer: refused, as before the removal
    done = tether("remove-service", "w1", "--root", str(root))
    assert done.returncode == 2 and done.stderr == (
        "tether remove-service: no service of device w1 is installed here (none is)\n")


def test_remove_service_purge_removes_the_buffer_of_that_device_only(tmp_path):
    root = tmp_path / "root"
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples)
    for device, port in (("w1", ""), ("w2", "    port: /dev/ttyUSB0\n")):
        profile = write(examples, (examples / "washer.yaml").read_text().replace(
            "buffer:", "buffer:\n  path: /var/lib/tether/%s" % device, 1).replace(
            "    rx: 15\n", "    rx: 15\n" + port, 1), device + ".yaml")
        done = tether("install-service", profile, "--device", device, "--root", str(root))
        assert done.returncode == 0, done.stderr
        (root / "var/lib/tether" / device).mkdir(parents=True)
        (root / "var/lib/tether" / device / "device").write_text("w1\n")  # both w1's
    done = tether("remove-service", "w2", "--purge", "--root", str(root))
    assert done.returncode == 2 and done.stderr == (
        "tether remove-service: --purge: the buffer in /var/lib/tether/w2 holds the readings "
        "of device w1, not w2: left as it is; nothing was changed\n")
    assert (root / "etc/tether/w2.json").exists()
    done = tether("remove-service", "w1", "--purge", "--root", str(root))
    assert done.returncode == 0 and "removed its buffer /var/lib/tether/w1\n" in done.stdout
    assert not (root / "var/lib/tether/w1").exists() and (root / "var/lib/tether/w2").exists()
    done = tether("remove-service", "w9", "--root", str(root))
    assert done.returncode == 2 and done.stderr.endswith("(installed: w2)\n")


def test_a_reinstall_that_moves_the_buffer_warns_of_the_readings_left_in_the_old_one(tmp_path):
    root = tmp_path / "root"
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples)
    assert tether("install-service", str(examples / "washer.yaml"), "--device", "w1", "--root",
                  str(root)).returncode == 0
    old = root / "var/lib/tether/buffer"
    old.mkdir(parents=True)
    (old / "00000007.seg").write_bytes(b"batches not yet delivered")
    moved = write(examples, (examples / "washer.yaml").read_text().replace(
        "buffer:", "buffer:\n  path: /var/lib/tether/w1", 1), "moved.yaml")
    done = tether("install-service", moved, "--device", "w1", "--root", str(root))
    assert done.returncode == 0 and beside_the_python(done.stderr) == (
        "warning: the service's buffer was /var/lib/tether/buffer, and what it holds is not sent "
        "from there: move its files into /var/lib/tether/w1 before the service starts "
        "(--no-start, then systemctl start), or remove it to drop them\n")
    # Installed again as it is now: nothing to say.
    done = tether("install-service", moved, "--device", "w1", "--root", str(root))
    assert done.returncode == 0 and beside_the_python(done.stderr) == ""


def beside_the_python(stderr):
    """stderr without the warnings every --root install gives about the Python the unit
    starts (which vary with where this checkout's Python is)."""
    return "".join(line for line in stderr.splitlines(True) if not (
        line.startswith("warning: the unit starts ") or "which the service cannot see" in line
        or "cannot import tether without PYTHONPATH" in line))


def test_removing_a_service_as_another_user_than_root_is_refused():
    assert shutil.which("systemctl"), "systemctl is missing: run tests/system-deps as root"
    args = [sys.executable, "-m", "firmware.cli", "remove-service", "w1"]
    if os.geteuid() == 0:
        args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + args
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=LIVENESS_S,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr == ("tether remove-service: removing a service needs root: run it with "
                           "sudo\n")


# -- tether run as the unit runs it ------------------------------------------------------------

SIM_PROFILE = """\
device: {id: pi-9}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 100ms}
batch: {max_readings: 10000, max_age: 1d}
uplink: {broker: "mqtt://127.0.0.1:%d", encoding: senml, backoff: {min: 100ms, max: 1s}}
"""


def readings_taken(run, status, at_least):
    """The readings count of the first status line that starts so and counts at_least."""
    while True:
        taken = int(run.wait_for(status).split("; ")[1].split()[0])
        if taken >= at_least:
            return taken


def test_sigterm_delivers_what_waited_saves_the_buffer_and_nothing_goes_twice(tmp_path,
                                                                              mosquitto):
    from agent import batch_decode
    watcher, got = watch(mosquitto.port, "tether/v1/pi-9/up/batch")
    compiled = tmp_path / "profile.json"  # as the unit gives it: compiled, by its credential
    done = tether("compile", write(tmp_path, SIM_PROFILE % mosquitto.port), "-o", str(compiled))
    assert done.returncode == 0, done.stderr
    store = tmp_path / "state"
    for boot in (1, 2):
        run = Run(str(compiled), "--store", str(store), "--status-every", "1s")
        assert run.wait_for("pi-9:").startswith(
            "pi-9: 1 sensor, buffer at %s (0 batches waiting), broker" % store)
        run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
        taken = readings_taken(run, "status: connected", 5)  # in RAM: a batch holds 10000
        code, rest = run.stop()
        assert code == 0, rest
        assert rest.endswith("stopped: 0 batches waiting for the broker, 0 readings dropped "
                             "in all\n"), rest
        # Every line a whole plain line, on stderr; nothing on stdout.
        assert run.stdout == b""
        assert all(line.endswith(b"\n") and b"\r" not in line and b"\x1b" not in line
                   for line in run.raw), run.raw
        deadline = time.monotonic() + LIVENESS_S
        while len(got) < boot and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) == boot, got
        batch = batch_decode.decode(got[-1][1])
        assert (batch.boot, batch.seq) == (boot, boot - 1)
        assert len(batch.readings) >= taken  # all it had taken when the status line came
    watcher.loop_stop()
    assert [batch_decode.read_envelope(p).seq for _, p in got] == [0, 1]


def test_on_a_terminal_tether_run_writes_the_same_plain_lines_as_under_systemd(tmp_path,
                                                                               mosquitto):
    # No TTY-only output: the lines a person sees in a terminal are the journal's lines.
    import pty
    import select
    import signal
    import tty
    compiled = tmp_path / "profile.json"
    done = tether("compile", write(tmp_path, SIM_PROFILE % mosquitto.port), "-o", str(compiled))
    assert done.returncode == 0, done.stderr
    master, slave = pty.openpty()
    tty.setraw(slave)  # the bytes as the program wrote them: no \n -> \r\n on the way
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "run", str(compiled), "--store",
         str(tmp_path / "state"), "--status-every", "1s"], stdin=subprocess.DEVNULL,
        stdout=slave, stderr=slave, cwd=pathlib.Path(__file__).resolve().parent.parent)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + LIVENESS_S
    try:
        while seen.count(b"status: connected") < 2 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        proc.send_signal(signal.SIGTERM)
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the program closed its end
                break
            if not chunk:
                break
            seen += chunk
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait(10)
        os.close(master)
    assert proc.returncode == 0, seen
    lines = seen.split(b"\n")
    assert lines[0].startswith(b"pi-9: 1 sensor, buffer at ") and lines[-1] == b"", seen
    assert b"\r" not in seen and b"\x1b" not in seen, seen
    assert b"connected to 127.0.0.1:%d" % mosquitto.port in seen
    assert lines[-2].startswith(b"stopped: "), seen


def test_sigterm_while_the_broker_is_away_saves_what_waited_for_the_next_start(tmp_path,
                                                                               mosquitto):
    from agent import batch_decode
    from simulator.lab.mosquitto import free_port
    watcher, got = watch(mosquitto.port, "tether/v1/pi-9/up/batch")
    compiled = tmp_path / "profile.json"
    done = tether("compile", write(tmp_path, SIM_PROFILE % mosquitto.port), "-o", str(compiled))
    assert done.returncode == 0, done.stderr
    store = str(tmp_path / "state")
    away = Run(str(compiled), "--store", store, "--status-every", "1s",
               "--broker", "mqtt://127.0.0.1:%d" % free_port())  # nothing listens there
    away.wait_for("cannot connect")
    taken = readings_taken(away, "status: not connected", 5)
    code, rest = away.stop()
    assert code == 0
    assert rest.endswith("stopped: 1 batch waiting for the broker, 0 readings dropped in "
                         "all\n"), rest
    back = Run(str(compiled), "--store", store, "--status-every", "1s")
    assert "(1 batch waiting)" in back.wait_for("pi-9:")
    back.wait_for("connected to 127.0.0.1:%d, sending 1 batch that waited" % mosquitto.port)
    readings_taken(back, "status: connected", 1)  # of its own, for its stop to send
    code, rest = back.stop()
    assert code == 0 and rest.endswith("stopped: 0 batches waiting for the broker, 0 readings "
                                       "dropped in all\n"), rest
    deadline = time.monotonic() + LIVENESS_S
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.loop_stop()
    first, second = (batch_decode.decode(p) for _, p in got)
    assert (first.boot, first.seq) == (1, 0) and len(first.readings) >= taken
    assert (second.boot, second.seq) == (2, 1)
    assert len(got) == 2


def test_the_default_buffer_of_a_pi_profile_is_in_the_units_state_directory():
    from firmware import service
    from firmware.profile.schema import BUFFER_PATHS
    assert BUFFER_PATHS["rpi"].startswith(service.STATE_DIR + "/")
    assert "StateDirectory=%s" % service.STATE_DIR.rsplit("/", 1)[1] in unit_of(
        dry_run("examples/washer.yaml", "--device", "w1")).splitlines()


# The checks a real install makes before it writes anything (a test never installs for real).

def test_a_tether_in_a_home_folder_is_refused_the_service_cannot_see_it(monkeypatch):
    from firmware import service
    monkeypatch.setattr(sys, "executable", "/home/pi/venv/bin/python")
    with pytest.raises(service.ServiceError) as info:
        service._check_visible()
    assert info.value.code == 3
    assert str(info.value).startswith(
        "tether install-service: Python is in /home/pi/venv/bin/python, which the service "
        "cannot see (ProtectHome=yes): install tether outside home and temporary folders")


def test_a_python_reached_through_a_symlink_into_a_home_or_tmp_is_refused(monkeypatch, tmp_path):
    from firmware import service
    # A venv's python3 is a symlink to the Python it was made from (pyenv's lives in /root).
    monkeypatch.setattr(os.path, "realpath", lambda p: "/root/.pyenv/versions/3.11.7/bin/python3"
                        if p == "/opt/tether/bin/python3" else p)
    monkeypatch.setattr(sys, "executable", "/opt/tether/bin/python3")
    with pytest.raises(service.ServiceError) as info:
        service._check_visible()
    assert "Python is in /root/.pyenv/versions/3.11.7/bin/python3, which the service cannot " \
           "see (ProtectHome=yes)" in str(info.value)
    monkeypatch.setattr(sys, "executable", "/tmp/tether/bin/python3")
    with pytest.raises(service.ServiceError) as info:
        service._check_visible()
    assert "Python is in /tmp/tether/bin/python3, which the service cannot see " \
           "(PrivateTmp=yes)" in str(info.value)
    assert "tether is not on PyPI: the `tether-agent` there is another project" in str(
        info.value)


def test_a_dry_run_warns_of_what_a_real_install_here_would_refuse(monkeypatch, capsys):
    from firmware import cli, service
    monkeypatch.setattr(sys, "executable", "/home/pi/venv/bin/python")
    monkeypatch.setattr(service, "_check_groups", lambda groups: (_ for _ in ()).throw(
        service.ServiceError(3, "tether install-service: no group gpio on this machine")))
    monkeypatch.chdir(ROOT)
    code = cli.main(["install-service", "examples/washer.yaml", "--device", "w1", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0 and "[Service]" in out
    assert err.splitlines() == [
        "warning: an install on this machine would stop here: no group gpio on this machine",
        "warning: an install on this machine would stop here: Python is in /home/pi/venv/bin/python, which the "
        "service cannot see (ProtectHome=yes): install tether outside home and temporary "
        "folders, e.g. %s, and run that tether (docs/raspberry-pi.md)" % service.INSTALL]


def test_a_python_that_cannot_import_tether_without_pythonpath_is_refused(monkeypatch):
    from firmware import service
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")  # Debian's, without tether
    monkeypatch.setattr(service, "HIDDEN", ())
    with pytest.raises(service.ServiceError) as info:
        service._check_visible()
    assert info.value.code == 3
    assert "cannot import tether without PYTHONPATH, as the service would start it" in str(
        info.value)


def test_the_python_running_the_tests_passes_the_checks(monkeypatch):
    from firmware import service
    monkeypatch.setattr(service, "HIDDEN", ())  # wherever this checkout is
    service._check_visible()  # the test venv's Python imports tether (pip install -e) by itself
    service._check_groups(["root"])


def test_a_missing_device_group_is_refused():
    from firmware import service
    with pytest.raises(service.ServiceError) as info:
        service._check_groups(["root", "tether-no-such-group"])
    assert info.value.code == 3
    assert str(info.value).startswith("tether install-service: no group tether-no-such-group on "
                                      "this machine")


def test_the_units_command_does_not_run_a_firmware_folder_in_its_working_directory(tmp_path):
    # `python -m` puts the working directory (the unit's, /var/lib/tether) first on sys.path:
    # a firmware/ folder there was run instead of the installed tether.
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "__init__.py").write_text("raise SystemExit('HIJACKED')\n")
    (tmp_path / "firmware" / "cli.py").write_text("raise SystemExit('HIJACKED')\n")
    from firmware import service
    proc = subprocess.run(service.command() + ["--version"], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "HIJACKED" not in proc.stdout + proc.stderr, proc.stderr


def test_gpio_pins_without_the_gpio_bindings_are_warned_of_even_with_gpiochip(tmp_path):
    # --gpiochip skipped the check: the unit was installed, and every start stopped on the
    # missing gpiod.
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "gpiod.py").write_text("raise ImportError('No module named gpiod')\n")
    profile = write(tmp_path, PI_PROFILE)
    done = tether("install-service", profile, "--dry-run", "--gpiochip", "/dev/gpiochip0",
                  first=tmp_path / "shadow")
    assert done.returncode == 0
    assert ("warning: an install on this machine would stop here: the profile uses GPIO pins: "
            "GPIO on Linux needs libgpiod's Python bindings, version 2") in done.stderr


def test_a_reinstall_that_moves_a_buffer_holding_readings_stops_the_service_not_restarts_it():
    # The warning to move the files "before the service starts" came after the restart that
    # started it on a new, empty buffer.
    from firmware import service
    s = "tether-w1.service"
    assert service.steps_of(s, False, None) == [["daemon-reload"], ["enable", s],
                                                ["restart", s]]
    assert service.steps_of(s, False, ("/var/lib/tether/a", "/var/lib/tether/b")) == [
        ["daemon-reload"], ["enable", s], ["stop", s]]
    assert service.steps_of(s, True, ("/var/lib/tether/a", "/var/lib/tether/b")) == [
        ["daemon-reload"]]


def test_a_reinstall_not_started_says_a_running_service_keeps_its_old_profile():
    # It said `systemctl enable --now`, which leaves a running service as it is: the owner
    # thought the new profile was in use.
    from firmware.service import said_after
    assert said_after("tether-w1.service", True, None, True) == (
        "installed, not started: systemctl enable tether-w1.service; systemctl restart "
        "tether-w1.service (a running service keeps its old profile until then)\n")
    assert said_after("tether-w1.service", True, None, False) == (
        "installed, not started: systemctl enable --now tether-w1.service\n")
    assert said_after("tether-w1.service", False, None, True).startswith("started ")


def test_the_services_status_lines_are_the_installers_choice(tmp_path):
    # 1,440 status lines a day in an SD card's journal, and a unit not to be edited.
    path = write(tmp_path, PI_PROFILE)
    assert " run --status-every 10min " in dry_run(path, "--status-every", "10min")
    unit = unit_of(dry_run(path, "--quiet"))
    assert " run --quiet " in unit
    verify(tmp_path, "scale-1", unit)
    assert "--status-every" not in dry_run(path) and "--quiet" not in dry_run(path)
