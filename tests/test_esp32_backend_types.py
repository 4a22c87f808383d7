"""hal/esp32.py type-checked by mypy against micropython-esp32-stubs, the ESP32 port's machine API.

hal/esp32.py runs only on a board, so no host test can call the real machine.I2C; a type
checker with the ESP32 port's stubs checks every call it makes (class names, positional and
keyword arguments, constants such as ADC.ATTN_11DB) instead. The test also proves the check
can fail: copies of hal/esp32.py with one call changed (a misspelled keyword, a missing
constant) and small snippets that misuse machine.I2C / machine.UART must each be reported.

Why mypy, and how: micropython-esp32-stubs installs bare `machine.pyi`, `time.pyi`, ... into
site-packages and its companion micropython-stdlib-stubs a typeshed-shaped `stdlib/` folder.
mypy does not pick stubs up from there (they are not a PEP 561 package) and refuses
site-packages on its search path, so the test copies the files both distributions list into
a folder of its own: the ESP32 modules go on mypy_path, MicroPython's stdlib becomes the
typeshed (--custom-typeshed-dir), so the code is checked against MicroPython's builtins too.
Errors inside the stubs themselves (some are not valid for mypy) are silenced per stub module;
errors in the checked code are not. pyright was not needed.
"""
import ast
import pathlib
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ESP32 = ROOT / "hal" / "esp32.py"
STUBS = "micropython-esp32-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"


def pinned_stubs_version():
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'"%s==([^"]+)"' % STUBS, text)
    assert found, "pyproject.toml's test extra must pin %s==<version>" % STUBS
    return found.group(1)


def _dist(name):
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.fail("%s is not installed: pip install -e '.[test]'" % name, pytrace=False)


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """run(paths) -> (exit status, error lines) of mypy with the ESP32 stubs."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.fail("mypy is not installed: pip install -e '.[test]'\n" + proc.stderr,
                    pytrace=False)
    stubs = _dist(STUBS)
    assert stubs.version == pinned_stubs_version(), \
        "installed %s %s, pyproject.toml pins %s" % (STUBS, stubs.version, pinned_stubs_version())
    work = tmp_path_factory.mktemp("esp32-types")
    typings, typeshed = work / "typings", work / "typeshed"
    for dist in (stubs, _dist(STDLIB_STUBS)):
        for file in dist.files or ():
            name = str(file)
            if name.startswith(("stdlib/", "stubs/")):
                target = typeshed / name
            elif name.endswith(".pyi"):
                target = typings / name
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dist.locate_file(file), target)
    assert (typings / "machine.pyi").is_file() and (typeshed / "stdlib" / "VERSIONS").is_file()
    stub_modules = sorted(p.stem if p.suffix == ".pyi" else p.name for p in typings.iterdir())
    (work / "mypy.ini").write_text(
        "[mypy]\nmypy_path = %s\ncheck_untyped_defs = True\nwarn_unused_ignores = True\n"
        "strict_equality = True\ncache_dir = %s\n\n[mypy-%s]\nignore_errors = True\n"
        % (typings, work / "cache", ",".join("%s,%s.*" % (m, m) for m in stub_modules)))

    def run(paths):
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(work / "mypy.ini"),
             "--custom-typeshed-dir", str(typeshed), "--show-error-codes", "--no-pretty",
             "--no-error-summary"] + [str(p) for p in paths],
            capture_output=True, text=True, cwd=str(work), timeout=300)
        errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and not errors):
            pytest.fail("mypy did not run:\n%s%s" % (proc.stdout, proc.stderr), pytrace=False)
        return proc.returncode, errors

    run.work = work
    return run


def test_esp32_backend_type_checks_against_the_esp32_stubs(mypy):
    status, errors = mypy([ESP32])
    assert errors == [] and status == 0


# One call of hal/esp32.py changed each: the checker must flag that line.
MUTANTS = [
    ("obj = machine.I2C(self._i2c_ids[used], scl=scl, sda=sda, freq=freq)",
     "obj = machine.I2C(self._i2c_ids[used], scl=scl, sda=sda, frequency=freq)"),
    ("obj = machine.SoftI2C(scl=scl, sda=sda, freq=freq)",
     "obj = machine.SoftI2C(scl=scl, sda=sda, freq=freq, id=2)"),
    ("tx=bus[\"tx\"], rx=bus[\"rx\"], timeout=timeout_ms)",
     "tx=bus[\"tx\"], rx=bus[\"rx\"], timeout_ms=timeout_ms)"),
    ("machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)",
     "machine.Pin(n, machine.Pin.IN, machine.Pin.PULLUP)"),
    ("machine.Pin(n, machine.Pin.OUT, value=value)",
     "machine.Pin(n, machine.Pin.OUT, initial=value)"),
    ("atten=machine.ADC.ATTN_11DB)", "attenuation=machine.ADC.ATTN_11DB)"),
    ("atten=machine.ADC.ATTN_11DB)", "atten=machine.ADC.ATTN_12DB)"),
]

# Misuses of machine's API written from scratch: each must be an error.
SNIPPETS = {
    "i2c_keyword": "machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), frequency=400000)",
    "i2c_no_pins": "machine.SoftI2C(freq=100000)",
    "uart_read_args": "machine.UART(1, 9600).read(8, 100)",
    "uart_read_may_be_none": "data: bytes = machine.UART(1, 9600, timeout=100).read(8)",
    "uart_keyword": "machine.UART(1, baud=9600, tx=17, rx=16)",
    "adc_method": "machine.ADC(machine.Pin(32)).read_u12()",
}


def statement_lines(source, line):
    """The lines of the innermost simple statement of source that spans line."""
    spans = [(node.lineno, node.end_lineno) for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.stmt) and not hasattr(node, "body")
             and node.lineno <= line <= node.end_lineno]
    assert spans, "no statement at line %d" % line
    first, last = min(spans, key=lambda span: span[1] - span[0])
    return set(range(first, last + 1))


def test_esp32_type_check_catches_wrong_machine_calls(mypy):
    source = ESP32.read_text()
    paths, expected = [], {}
    for i, (old, new) in enumerate(MUTANTS):
        assert source.count(old) == 1, "hal/esp32.py changed: update MUTANTS (%r)" % old
        mutant = source.replace(old, new)
        path = mypy.work / ("esp32_mutant_%d.py" % i)
        path.write_text(mutant)
        paths.append(path)
        expected[path.name] = statement_lines(mutant, source.count("\n", 0, source.index(old)) + 1)
    for name, code in SNIPPETS.items():
        path = mypy.work / ("misuse_%s.py" % name)
        path.write_text("import machine\n\n%s\n" % code)
        paths.append(path)
        expected[path.name] = {3}
    status, errors = mypy(paths)
    assert status == 1
    flagged = {}
    for line in errors:
        name, number = line.split(":")[:2]
        flagged.setdefault(pathlib.Path(name).name, set()).add(int(number))
    missed = [name for name, lines in expected.items() if not lines & flagged.get(name, set())]
    assert missed == [], "not reported: %s\n%s" % (missed, "\n".join(errors))
    assert set(flagged) == set(expected), "errors elsewhere:\n" + "\n".join(errors)


def test_esp32_module_imports_anywhere_but_the_platform_needs_machine(monkeypatch):
    import hal.esp32

    monkeypatch.setitem(sys.modules, "machine", None)  # CPython: `import machine` now fails
    with pytest.raises(ImportError):
        hal.esp32.Esp32Platform()
