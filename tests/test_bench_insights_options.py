"""bench/insights.py's options: a bad --only, --seeds or an unknown option is a one-line error
before anything runs."""
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "insights.py"


def run(*args):
    return subprocess.run([sys.executable, str(BENCH)] + list(args), capture_output=True,
                          text=True, timeout=60)


def test_bad_options_are_refused_with_one_line_and_no_traceback():
    for args, said in ((["--only", "nope"], "--only: no scenario 'nope' (scenarios: consumables"),
                       (["--seeds", "7,x"], "--seeds: expected whole numbers"),
                       (["--seeds"], "--seeds needs a value"),
                       (["--bogus"], "unknown option --bogus")):
        proc = run(*args)
        assert proc.returncode != 0
        assert proc.stderr.startswith(said) and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
