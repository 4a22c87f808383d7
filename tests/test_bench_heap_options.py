"""bench/heap.py's options and verdicts: a bad option is a one-line error before anything runs,
and only the 64-bit port's figures are judged against the target (the issue's)."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "heap.py"


def run(*args):
    return subprocess.run([sys.executable, str(BENCH)] + list(args), capture_output=True,
                          text=True, timeout=60)


def test_bad_options_are_refused_with_one_line_and_no_traceback():
    for args, said in ((["--m32"], "bench/heap.py: --m32 goes with --build-frozen"),
                       (["--frozen"], "bench/heap.py: missing value after --frozen"),
                       (["--unfrozen", "a"], "bench/heap.py: --unfrozen goes with --frozen"),
                       (["--frozen", "a", "--build-frozen", "b"],
                        "bench/heap.py: --frozen and --build-frozen exclude each other"),
                       (["--bogus"], "bench/heap.py: unknown option --bogus")):
        proc = run(*args)
        assert proc.returncode == 2
        assert proc.stderr.startswith(said) and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stdout == ""


def test_a_frozen_binary_is_refused_for_the_runs_that_load_the_bundles_mpy(tmp_path):
    # Its image already holds the bundle's names: .mpy files loaded under it would not intern
    # them, and the figure would be too small. A stand-in binary that imports anything:
    fake = tmp_path / "micropython"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    sys.path.insert(0, str(ROOT))
    from bench.heap import check_frozen
    check_frozen(str(fake))
    try:
        check_frozen(str(fake), expect=False)
    except SystemExit as exc:
        assert "--unfrozen %s: Tether is frozen into it" % fake in str(exc)
    else:
        raise AssertionError("a frozen binary passed as --unfrozen")
    plain = tmp_path / "plain-micropython"
    plain.write_text("#!/bin/sh\necho \"ImportError: no module named 'firmware'\"; exit 1\n")
    plain.chmod(0o755)
    check_frozen(str(plain), expect=False)
    try:
        check_frozen(str(plain))
    except SystemExit as exc:
        assert "--frozen %s: Tether is not frozen into it" % plain in str(exc)
    else:
        raise AssertionError("a binary without Tether passed as --frozen")


def test_only_a_64_bit_figure_gets_the_targets_verdict():
    sys.path.insert(0, str(ROOT))
    from bench.heap import verdict
    assert verdict(128, 64) == "target 128k: meets target"
    assert verdict(136, 64) == "target 128k: MISSES TARGET"
    assert verdict(None, 64) == "target 128k: MISSES TARGET"
    assert verdict(144, 32) == "target 128k (for the 64-bit port: none judged here)"
