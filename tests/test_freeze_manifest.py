"""firmware/manifest.py, executed as MicroPython's build does (tools/manifestfile.py: its
folder as the working directory, include()/package()/module() and `options` as globals) with
stand-ins that record what it names: every file exists, and it freezes everything the board's
entry point imports (followed statically, as the bundle builder does)."""
import ast
import os
import pathlib

import pytest

from agent.insights import KINDS

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "firmware" / "manifest.py"
NOT_ON_A_BOARD = ("agent.host", "hal.linux", "hal.sim")  # host-only, or the sim platform


class Options:
    def __init__(self, **given):
        self.given = given
        self.default = {}

    def defaults(self, **kwargs):
        self.default = kwargs

    def __getattr__(self, name):
        return self.given.get(name, self.default.get(name))


def run_manifest(**options):
    """(frozen module names, included manifests) for the manifest with these include options."""
    frozen, included = [], []

    def package(package_path, files=None, base_path=".", opt=None):
        base = pathlib.Path(base_path).resolve()
        if files is None:
            files = [str(p.relative_to(base / package_path))
                     for p in (base / package_path).rglob("*.py")]
        for f in files:
            path = base / package_path / f
            assert path.is_file(), "the manifest names %s, which does not exist" % path
            frozen.append(_module_name(pathlib.Path(package_path) / f))

    def module(module_path, base_path=".", opt=None):
        path = pathlib.Path(base_path).resolve() / module_path
        assert path.is_file(), "the manifest names %s, which does not exist" % path
        frozen.append(_module_name(pathlib.Path(module_path)))

    before = os.getcwd()
    os.chdir(MANIFEST.parent)
    try:
        exec(MANIFEST.read_text(), {"package": package, "module": module,
                                    "include": included.append, "options": Options(**options)})
    finally:
        os.chdir(before)
    return frozen, included


def _module_name(rel):
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _file(name):
    p = ROOT.joinpath(*name.split("."))
    if p.with_suffix(".py").is_file():
        return p.with_suffix(".py")
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return None


def board_imports():
    """The project modules firmware/main.py reaches through import statements, anywhere in a
    module (imports inside functions too), with their packages."""
    from firmware.build import insight_modules
    from hal.chips import CHIPS
    # Drivers are imported by name through the registry (hal.chips.driver), not by a statement,
    # and so are insights (agent.insights.module) and what holds a pill bottle's early readings.
    kinds = insight_modules({"sensors": [{"insight": {"type": kind, "tz": "UTC0"}}
                                         for kind in KINDS]})
    seen, todo = set(), ["firmware.board"] + ["hal.drivers." + name for name in CHIPS] + kinds
    while todo:
        name = todo.pop()
        if name in seen or _file(name) is None or name.startswith(NOT_ON_A_BOARD):
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        for node in ast.walk(ast.parse(_file(name).read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                todo += [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
    return seen


def test_the_entry_point_imports_only_firmware_board():
    tree = ast.parse((ROOT / "firmware" / "main.py").read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, [a.name for a in n.names]) for n in imported] == [("firmware", ["board"])]


def test_the_manifest_freezes_everything_the_entry_point_imports_and_the_port_modules():
    frozen, included = run_manifest()
    assert included == ["$(PORT_DIR)/boards/manifest.py"]  # asyncio, ntptime
    assert len(frozen) == len(set(frozen))
    needed = board_imports()
    assert "hal.drivers.ina219" in needed and "agent.runtime" in needed  # the walk works
    assert sorted(needed - set(frozen)) == []
    assert not [m for m in frozen if m.startswith(NOT_ON_A_BOARD)]


def test_every_driver_is_frozen_by_default_and_a_maker_can_pick_a_few():
    frozen, _ = run_manifest()
    drivers = sorted(p.stem for p in (ROOT / "hal" / "drivers").glob("*.py")
                     if p.stem != "__init__")
    assert sorted(m[len("hal.drivers."):] for m in frozen
                  if m.startswith("hal.drivers.")) == drivers
    frozen, _ = run_manifest(drivers=["ina219", "level_probe"])
    assert sorted(m for m in frozen if m.startswith("hal.drivers.")) == [
        "hal.drivers.i2c16", "hal.drivers.ina219", "hal.drivers.level_probe",
        "hal.drivers.modbus"]  # the helpers, always
    assert "agent.runtime" in frozen and "firmware.board" in frozen


def test_a_driver_that_does_not_exist_is_refused_by_name():
    with pytest.raises(ValueError, match="no driver 'ina220'; drivers are ads1115, hx711, "
                                         "ina219, level_probe, pzem004t"):
        run_manifest(drivers=["ina220"])


def test_a_port_whose_manifest_is_elsewhere_can_leave_out_the_port_include():
    # bench/frozen_manifest.py: the unix port keeps its manifest under variants/, not boards/.
    frozen, included = run_manifest(port_manifest=False, drivers=["ina219", "level_probe"])
    assert included == []
    assert frozen == run_manifest(drivers=["ina219", "level_probe"])[0]
