"""The chip registry (hal/chips.py) is the one place that lists the chips: each has its own
driver, virtual chip, schema entry and tests, nothing else spells a driver name, and modules()
names exactly the chip modules a profile makes a board import."""
import ast
import inspect
import json
import pathlib
import re
import subprocess
import sys

import pytest

from firmware.profile.chips import DRIVERS
from firmware.profile.compile import compile as compile_profile
from firmware.profile.rules import EMPTY, REQUIRED
from hal import chips

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMES = list(chips.CHIPS)
ALL_DRIVERS = "tests/data/profiles/all-drivers.yaml"


def compiled(path):
    profile, problems = compile_profile(str(ROOT / path))[:2]
    assert not problems, problems
    return profile


def chip_files(name):
    return {ROOT / "hal" / "drivers" / (name + ".py"), ROOT / "hal" / "sim" / (name + ".py"),
            ROOT / "firmware" / "profile" / "chips" / (name + ".py"),
            ROOT / "tests" / "portable" / ("test_%s.py" % name)}


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_chip_has_its_driver_virtual_chip_schema_entry_and_tests(name):
    for path in chip_files(name):
        assert path.is_file(), "%s has no %s" % (name, path.relative_to(ROOT))
    driver = chips.driver(name)
    for attr in ("key", "where", "build"):
        assert callable(getattr(driver, attr, None)), "hal.drivers.%s.%s" % (name, attr)
    sim = chips.virtual(name)
    for attr in ("key", "build", "state", "set_quantity", "faults", "fault"):
        assert callable(getattr(sim, attr, None)), "hal.sim.%s.%s" % (name, attr)
    # The virtual chip starts from a state for each quantity the profile lets a sensor read.
    assert sorted(sim.DEFAULTS) == sorted(DRIVERS[name]["quantities"])
    assert isinstance(sim.FAULT, str)
    for other in chips.CHIPS[name].values():
        assert other in chips.CHIPS, "%s needs unregistered chip %s" % (name, other)


def test_the_every_driver_fixture_holds_every_registered_chip():
    # tests/portable/test_board.py reads, faults and clears each chip of it on both
    # interpreters: a chip left out of it is left out of those checks.
    assert {s["driver"] for s in compiled(ALL_DRIVERS)["sensors"]} == set(NAMES)


def test_a_drivers_own_keyword_defaults_agree_with_its_schema_entry():
    # The schema entry owns the defaults a board runs with (build() passes every one); a
    # driver's own, for a REPL or a test that makes it directly, must not say otherwise.
    checked = 0
    for name in NAMES:
        module = chips.driver(name)
        entry = DRIVERS[name]
        owned = {field: default for _, field, _, default in entry["fields"] + entry["calibration"]
                 if default not in (REQUIRED, EMPTY, None)}  # any type: "high" as 0.5
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            for p in inspect.signature(cls.__init__).parameters.values():
                if p.name in owned and p.default is not inspect.Parameter.empty:
                    assert p.default == owned[p.name], (name, cls.__name__, p.name)
                    checked += 1
    assert checked >= 5


def _clock_params(module):
    """{class name: the platform clocks (sleep_ms, ticks_ms, ticks_us) its __init__ takes}."""
    out = {}
    for cls in vars(module).values():
        if inspect.isclass(cls) and cls.__module__ == module.__name__:
            out[cls.__name__] = {p for p in inspect.signature(cls.__init__).parameters
                                 if p in ("sleep_ms", "ticks_ms", "ticks_us")}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_a_drivers_module_builds_it_with_the_platforms_clocks_and_no_defaults_of_its_own(name):
    # A driver built without ctx.sleep_ms waits for real on the sim platform: every test passed,
    # and a day of a simulated fridge took 24 s instead of 2. A `.get(key, default)` in build()
    # is a second owner of a default the schema entry owns.
    module = chips.driver(name)
    clocks = _clock_params(module)
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and clocks.get(node.func.id):
            passed = {k.arg: ast.unparse(k.value) for k in node.keywords}
            for clock in clocks[node.func.id]:
                assert passed.get(clock) == "ctx." + clock, (
                    "%s line %d: pass %s=ctx.%s" % (name, node.lineno, clock, clock))
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and (
                len(node.args) > 1):
            raise AssertionError("%s line %d: %s: the compiled profile carries every default"
                                 % (name, node.lineno, ast.unparse(node)))


def test_every_chip_is_placed_with_the_keys_the_checks_and_the_summary_read():
    # An address under another key ("addr") skipped the address-clash check, took another
    # chip's place on the simulated bus and crashed `tether check`'s summary.
    from firmware.profile.summary import where
    for s in compiled_minimal()["sensors"]:
        place = chips.place(s)
        assert "pin" in s or "pins" in s or {"bus", "address"} <= set(place), (
            "%s: a chip sits at `pin`, `pins`, or `bus` and `address` (docs/drivers.md)"
            % s["driver"])
        assert where(s, ("uart1",))


def test_a_chips_own_faults_are_named_apart_from_its_buss():
    # A chip fault named as a bus fault ("noise") can never be injected: the bus's is taken.
    from hal.sim.platform import fault_kinds
    for s in compiled_minimal()["sensors"]:
        kinds = fault_kinds(compiled_minimal(), s)
        assert len(set(kinds)) == len(kinds), (s["driver"], kinds)


def test_the_schema_entries_are_exactly_the_registered_chips_in_its_order():
    entries = sorted(p.stem for p in (ROOT / "firmware" / "profile" / "chips").glob("*.py")
                     if p.stem != "__init__")
    assert entries == sorted(NAMES)
    assert list(DRIVERS) == NAMES


def test_no_module_outside_a_chips_own_files_spells_a_driver_name():
    own = {ROOT / "hal" / "chips.py"}
    for name in NAMES:
        own |= chip_files(name)
    scanned = [p for folder in ("agent", "hal", "firmware") for p in (ROOT / folder).rglob("*.py")
               if p not in own]
    scanned.append(ROOT / "simulator" / "faults.py")
    for must in ("hal/board.py", "hal/sim/platform.py", "firmware/profile/schema.py",
                 "firmware/profile/crosscheck.py", "firmware/profile/summary.py"):
        assert ROOT / must in scanned
    word = re.compile(r"\b(%s)\b" % "|".join(NAMES))
    found = []
    for path in scanned:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if word.search(line):
                found.append("%s:%d: %s" % (path.relative_to(ROOT), n, line.strip()))
    assert found == []


def imported(path):
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [node.module] + [node.module + "." + a.name for a in node.names]
    return names


@pytest.mark.parametrize("name", NAMES)
def test_a_chips_modules_reach_other_chips_only_through_the_registry(name):
    # tether build follows imports: an import of another chip would ship it for every profile.
    others = ["hal.%s.%s" % (kind, o) for o in NAMES if o != name for kind in ("drivers", "sim")]
    for path in (ROOT / "hal" / "drivers" / (name + ".py"), ROOT / "hal" / "sim" / (name + ".py")):
        assert [m for m in imported(path) if m in others] == [], path


@pytest.mark.parametrize("path,drivers", [
    ("examples/printer.yaml", ["ina219", "level_probe"]),
    ("examples/reference-printer.yaml", ["hx711", "ina219", "level_probe", "pzem004t"]),
    ("examples/pill-bottle.yaml", ["hx711"]),
    ("examples/washer.yaml", ["pzem004t"]),
    ("examples/fridge.yaml", ["pzem004t", "sht3x"]),
    # A level probe on an ADS1115 needs that chip's driver too.
    (ALL_DRIVERS, ["ads1115", "hx711", "ina219", "level_probe", "pzem004t", "sht3x"]),
])
def test_modules_names_the_drivers_a_profile_uses_and_with_sim_their_virtual_chips(path,
                                                                                  drivers):
    profile = compiled(path)
    assert chips.modules(profile) == ["hal.drivers." + d for d in drivers]
    assert chips.modules(profile, sim=True) == (["hal.drivers." + d for d in drivers]
                                                + ["hal.sim." + d for d in drivers])


def test_modules_counts_a_chip_a_sensor_reaches_only_through_another_chips_key():
    probe = {"driver": "level_probe", "adc": {"bus": "i2c0", "address": 0x48, "channel": 1}}
    assert chips.modules({"sensors": [probe]}) == ["hal.drivers.ads1115",
                                                   "hal.drivers.level_probe"]
    assert chips.modules({"sensors": [{"driver": "level_probe", "pin": 34}]}) == [
        "hal.drivers.level_probe"]


def test_an_unknown_driver_is_refused_by_name():
    with pytest.raises(ValueError, match="no driver 'max6675'"):
        chips.modules({"sensors": [{"driver": "max6675"}]})
    with pytest.raises(ValueError, match="no driver 'max6675'"):
        chips.driver("max6675")


LOADED = """
import json, sys
from hal.board import drivers
from hal.sim.platform import SimPlatform
profile = json.load(sys.stdin)
drivers(profile, SimPlatform(profile))
names = %r
print(json.dumps(sorted(m for m in sys.modules if m.rsplit(".", 1)[-1] in names
                        and m.startswith(("hal.drivers.", "hal.sim.")))))
"""


@pytest.mark.parametrize("path", ["examples/printer.yaml", "examples/pill-bottle.yaml",
                                  ALL_DRIVERS])
def test_a_board_imports_exactly_the_chip_modules_modules_names(path):
    profile = compiled(path)
    profile["platform"] = "sim"
    proc = subprocess.run([sys.executable, "-c", LOADED % (NAMES,)], input=json.dumps(profile),
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == chips.modules(profile, sim=True)


MINIMAL = """device: {id: bench-1}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
  - {id: uart1, type: uart, tx: 17, rx: 16}
sensors:
  - {name: power, driver: ina219, bus: i2c0}
  - {name: mains, driver: pzem004t, bus: uart1}
  - {name: weight, driver: hx711, pins: {dout: 4, sck: 5}}
  - {name: volts, driver: ads1115, bus: i2c0}
  - {name: ink, driver: level_probe, adc: {bus: i2c0, channel: 2},
     calibration: {raw_empty: 410, raw_full: 3720}}
  - {name: cabinet, driver: sht3x, bus: i2c0}
uplink: {broker: "mqtt://localhost"}
"""


def compiled_minimal():
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "minimal.yaml"
        path.write_text(MINIMAL)
        return compiled(path)


def test_the_compiled_profile_carries_every_default_the_drivers_read(tmp_path):
    profile = compiled_minimal()
    assert sorted(s["driver"] for s in profile["sensors"]) == sorted(NAMES)
    for s in profile["sensors"]:
        entry = DRIVERS[s["driver"]]
        defaults = [(s, f) for f in entry["fields"]] + [(s["calibration"], f)
                                                        for f in entry["calibration"]]
        for held, (key, name, rule, default) in defaults:
            if isinstance(default, (int, float)):  # not REQUIRED, EMPTY or None (optional)
                assert held[name] == default, (s["driver"], name)
    # Every driver and virtual chip builds from those values alone and reads its default state.
    from hal.board import drivers
    from hal.sim.platform import SimPlatform
    for s, d in zip(profile["sensors"], drivers(profile, SimPlatform(profile))):
        d.setup()
        got = d.measure()[s["quantity"]]
        held = chips.virtual(s["driver"]).DEFAULTS[s["quantity"]]
        # within the sensor's resolution: a chip in Pa or Wh reads in coarser steps than 0.1
        mantissa, exponent = s["resolution"]
        assert got == pytest.approx(held, abs=mantissa * 10.0 ** exponent), (s["name"], got)


def test_every_channel_of_one_virtual_ads1115_starts_at_its_sensors_default(tmp_path):
    # Two probes on one ADS1115 (a Pi printer's inks): the second read 0 and failed as
    # "disconnected", since only the chip's first sensor got its default.
    path = tmp_path / "pi.yaml"
    path.write_text(
        "device: {id: pi-1}\nplatform: rpi\nbuses:\n  - {id: i2c1, type: i2c, sda: 2, scl: 3}\n"
        "sensors:\n"
        "  - {name: ink_c, driver: level_probe, adc: {bus: i2c1, address: 0x48, channel: 0},\n"
        "     calibration: {raw_empty: 2000, raw_full: 20000}}\n"
        "  - {name: ink_m, driver: level_probe, adc: {bus: i2c1, address: 0x48, channel: 1},\n"
        "     calibration: {raw_empty: 2000, raw_full: 20000}}\n"
        "  - {name: v2, driver: ads1115, bus: i2c1, address: 0x48, channel: 2}\n"
        "  - {name: v3, driver: ads1115, bus: i2c1, address: 0x48, channel: 3}\n"
        "uplink: {broker: 'mqtt://127.0.0.1:1883'}\n")
    done = subprocess.run([sys.executable, "-m", "firmware.cli", "read", str(path), "--platform",
                           "sim"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split() for line in done.stdout.splitlines()[1:]] == [
        ["ink_c", "50.0", "%"], ["ink_m", "50.0", "%"], ["v2", "1.0", "V"], ["v3", "1.0", "V"]]


def test_read_help_names_each_bus_fault_and_a_wrong_kind_lists_the_sensors_own(capsys):
    # The help listed every chip's faults by hand (dout_low, an HX711's, was missing; a new
    # chip's were never there): it names the buses', and a wrong KIND the sensor's.
    from firmware import cli
    from hal.sim.i2c import FAULTS as I2C
    from hal.sim.platform import SimPlatform, fault_kinds
    from hal.sim.uart import FAULTS as UART
    parser, _ = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["read", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert [k for k in I2C + UART if k not in shown] == []
    profile = compiled(ALL_DRIVERS)
    platform = SimPlatform(profile)
    for s in profile["sensors"]:
        with pytest.raises(ValueError) as err:
            platform.fault(s["name"], "bogus")
        assert str(err.value).endswith("its faults are %s" % ", ".join(fault_kinds(profile, s)))


def test_every_default_of_a_chip_is_a_value_its_profile_key_takes(tmp_path):
    # A default its own rule refuses (`choice([1, 2, 4])` of ints says "expected one of '1',
    # '2', '4', got 4" to a profile that writes 4) compiles in unseen, and no profile can ask
    # for it back once another value is set.
    import types

    import yaml

    from firmware.profile.yamlsource import load
    checked = 0
    for name in NAMES:
        entry = DRIVERS[name]
        for key, compiled_key, rule, default in entry["fields"] + entry["calibration"]:
            if default in (REQUIRED, EMPTY, None) or isinstance(default, (list, dict)):
                continue
            path = tmp_path / ("%s-%s.yaml" % (name, key))
            path.write_text(yaml.safe_dump({key: default}))
            root, problems = load(str(path))
            assert problems == [], problems
            ctx = types.SimpleNamespace(problems=[], platform="sim", chip=None)
            assert rule(ctx, root.value[key]) == default, (name, key, default)
            assert ctx.problems == []
            checked += 1
    assert checked >= 8


def test_a_registry_line_without_its_schema_entry_names_the_file_to_write():
    # It was a ModuleNotFoundError ten frames down, at every command's start.
    from firmware.profile.chips import entry
    with pytest.raises(ImportError) as err:
        entry("bmp820")
    assert str(err.value) == ("hal/chips.py lists the chip 'bmp820', which has no schema entry "
                              "firmware/profile/chips/bmp820.py (docs/drivers.md, \"Adding a "
                              "chip\")")
