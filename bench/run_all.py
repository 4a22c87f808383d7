"""Runs every Tether benchmark, one after the other, and lists the figures that miss a target.

    python3 bench/run_all.py        (or: python3 -m bench)

Each benchmark prints its own figures, baselines and targets; this adds a summary. The exit
status is 0 when every benchmark ran (a missed target is a finding, not a failure), 1 otherwise.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# fleet.py --quick: its full run takes ~17 min; run it alone for the 10,000-device figure.
BENCHMARKS = (("wire_size.py",), ("encode_speed.py",), ("buffer.py",), ("sampler.py",),
              ("uplink.py",), ("bundle_size.py",), ("flash.py", "--quick"), ("recovery.py", "--quick"), ("repair.py", "--quick"), ("heap.py", "--quick"),
              ("broker.py",), ("fleet.py", "--quick"), ("ingest.py", "--quick"), ("insights.py",),
              ("console.py", "--quick"))


def main():
    failed = []
    misses = []
    start = time.time()
    for name, *options in BENCHMARKS:
        cmd = [sys.executable, os.path.join("bench", name)] + options
        print("$ python3 bench/%s" % " ".join([name] + options), flush=True)
        t = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            if "MISSES TARGET" in line:
                misses.append("%s: %s" % (name, " ".join(line.split())))
        proc.wait()
        print("(bench/%s: exit %d, %.0f s)" % (name, proc.returncode, time.time() - t))
        print(flush=True)
        if proc.returncode:
            failed.append(name)
    print("== summary: %d benchmarks in %.0f s ==" % (len(BENCHMARKS), time.time() - start))
    for name in failed:
        print("FAILED to run: bench/%s" % name)
    if misses:
        print("lines with a missed target:")
        for m in misses:
            print("  " + m)
    else:
        print("every target met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
