"""`pip install` from a clone (not -e, as docs/raspberry-pi.md installs it) gives a tether whose
defaults work: the wheel carries the examples (pyproject.toml's data-files) and the commands
find them under the installation's prefix (firmware/examples.py), not beside the source."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from firmware import examples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis",
        ".tether", "tether-sim", "tether-demo"}


def example_files():
    out = []
    for folder, dirs, files in os.walk(os.path.join(ROOT, "examples")):
        dirs[:] = [d for d in dirs if d not in SKIP]
        out += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files]
    return sorted(out)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the wheel of this tree installed (no -e), seeing this venv's dependencies."""
    tmp = tmp_path_factory.mktemp("installed")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP
                                                       or n.endswith(".egg-info")])
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src),
                    "-w", str(wheels)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.iterdir()
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300,
                   capture_output=True)
    # This venv's packages (paho, cbor2, ...) as a plain path: its .pth files, the editable
    # install of this tree among them, are not run from there.
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    return wheel, venv


def test_the_wheel_carries_every_example_file(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.split(".data/data/share/tether/", 1)[1] for n in z.namelist()
                   if ".data/data/share/tether/" in n}
    assert shipped == set(example_files())


def test_the_wheel_carries_the_licence_its_version_and_no_test_parts(installed):
    # MIT asks for its text beside the code (there was no LICENSE); the version was written in
    # two places, tether --version and health reports saying one, the wheel the other
    import tomllib
    from agent.runtime import VERSION
    wheel, venv = installed
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["version"] == VERSION
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert any(n.endswith("licenses/LICENSE") for n in names), names
    assert not [n for n in names if n.startswith(("simulator/lab/", "tests/"))]
    said = subprocess.run([str(venv / "bin" / "tether"), "--version"], capture_output=True,
                          text=True, check=True, timeout=60)
    assert said.stdout.split() == ["tether", VERSION]


def test_an_installed_copy_simulates_and_demos_with_its_defaults(installed, tmp_path):
    _, venv = installed
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import firmware.examples as e; print(e.__file__); print(e.folder())"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == str(venv / "share/tether/examples")
    sim = subprocess.run([str(venv / "bin" / "tether"), "simulate", "--duration", "1h"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    assert "0 LOST" in sim.stdout and (tmp_path / "tether-sim" / "fleet.sqlite").exists()
    demo = subprocess.run([str(venv / "bin" / "tether"), "demo"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "tether-demo" / "reference.compact.cbor").exists()


def test_the_source_trees_examples_come_first_and_a_copy_needs_the_fleet_to_count(tmp_path,
                                                                                  monkeypatch):
    assert examples.folder() == os.path.join(ROOT, "examples")
    monkeypatch.setattr(examples, "__file__", str(tmp_path / "site" / "firmware" / "examples.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path / "prefix"))
    stray = tmp_path / "site" / "examples"          # some other package's top-level 'examples'
    stray.mkdir(parents=True)
    copy = tmp_path / "prefix" / "share" / "tether" / "examples"
    (copy / "fleets").mkdir(parents=True)
    (copy / "fleets" / "mixed.yaml").write_text("devices: []\n")
    assert examples.folder() == str(copy)
