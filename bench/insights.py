"""Edge insights scored against the simulator's truth, with fixed seeds (docs/insights.md).

    python3 bench/insights.py           # every scenario (< 15 min on 2 cores)
    python3 bench/insights.py --quick   # the same scenarios, smaller (~1 min): a smoke run that
                                        # shows the figures without judging them
    python3 bench/insights.py --only consumables --seeds 7,11,13
                                        # one scenario (and its insight's MicroPython figures),
                                        # once per seed instead of its fixed one: is a score
                                        # robust, or only met at the bench's seed?

Each scenario runs fleets of one example profile through simulator/insight_run.py (each unit's
appliance model against the agent's own detectors, direct: the model's values at each sensor's
interval, rounded to its resolution), then scores every insight with simulator/scores and prints
each figure next to its target and flags each one missed. The scenarios run two at a
time (one per core).

Then, for each insight under MicroPython (`-X heapsize=64k`, .mpy): the heap one sensor's
detector takes (when made, and after the recorded sequence: its state is bounded) and its CPU
per reading, from a sequence of one unit's readings recorded in the same run (bench/mp_insight.py),
against the same loop calling a function that does nothing (the baseline).
"""
import concurrent.futures
import json
import os
import pathlib
import struct
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import MicroPythonBench, parse_kv, table  # noqa: E402

# (name, example, units, days, seed); --quick divides units by QUICK.
SCENARIOS = [
    ("consumables", "printer", 60, 60, 101),
    ("doses", "pill-bottle", 100, 30, 202),
    ("motors: washers", "washer", 30, 120, 303),
    ("motors: fridges", "fridge", 60, 120, 404),
]
QUICK = 5
# (kind, example, days recorded) for the MicroPython figures.
RECORDED = [("consumable", "printer", 30), ("adherence", "pill-bottle", 30),
            ("energy", "washer", 14), ("energy", "fridge", 14)]


def compiled(example):
    from firmware.profile.compile import compile
    p, errors = compile(str(ROOT / "examples" / (example + ".yaml")))
    if errors:
        raise SystemExit("\n".join(errors))
    return p


def scenario(name, example, units, days, seed):
    """Runs in a worker process: (name, units, days, score lines, wall s, readings)."""
    from simulator import insight_run, scores
    t0 = time.monotonic()
    done = insight_run.run(compiled(example), units, days, seed, direct=True)
    wall = time.monotonic() - t0
    lines = []
    for area, rows in scores.score(done).items():
        lines += rows
    return name, units, days, lines, wall, sum(u.readings for u in done)


def record(kind, example, days, folder):
    """One unit's readings of the first sensor with a `kind` insight, as mp_insight reads them;
    (config path, readings path, sensor, count)."""
    import random
    from simulator import insight_run
    from simulator.models import model_for
    profile = compiled(example)
    model = model_for(profile)(profile, random.Random(7), insight_run.START_MS, 0)
    unit_profile = insight_run.provisioned(profile, model)
    sensor = next(s for s in unit_profile["sensors"] if s.get("insight", {}).get("type") == kind)
    out = []

    def tap(name, t, v):
        if name == sensor["name"]:
            out.append(struct.pack("<qd", t, v))
    insight_run.run_unit(profile, model, "rec", 7, insight_run.START_MS, days, direct=True,
                         tap=tap)
    cfg = os.path.join(folder, "%s-%s.json" % (kind, example))
    seq = os.path.join(folder, "%s-%s.bin" % (kind, example))
    with open(cfg, "w") as f:
        json.dump(sensor["insight"], f)
    with open(seq, "wb") as f:
        f.write(b"".join(out))
    return cfg, seq, sensor["name"], len(out)


def _option(argv, name):
    """The value after `name` in argv, or None; SystemExit with a one-line reason if missing."""
    if name not in argv:
        return None
    i = argv.index(name)
    if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        raise SystemExit("%s needs a value" % name)
    return argv[i + 1]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    only = _option(argv, "--only")
    seeds = _option(argv, "--seeds")
    unknown = [a for i, a in enumerate(argv) if a.startswith("--") and a not in (
        "--quick", "--only", "--seeds")]
    if unknown:
        raise SystemExit("unknown option %s (known: --quick, --only NAME, --seeds N,N,...)"
                         % unknown[0])
    scenarios = SCENARIOS
    recorded = RECORDED
    if only is not None:
        scenarios = [x for x in SCENARIOS if x[0].split(":")[0] == only]
        if not scenarios:
            raise SystemExit("--only: no scenario %r (scenarios: %s)" % (
                only, ", ".join(sorted({x[0].split(":")[0] for x in SCENARIOS}))))
        examples = {x[1] for x in scenarios}
        recorded = [r for r in RECORDED if r[1] in examples]
    if seeds is not None:
        try:
            seeds = [int(x) for x in seeds.split(",")]
        except ValueError:
            raise SystemExit("--seeds: expected whole numbers separated by commas, got %r"
                             % seeds)
        scenarios = [(name + (" seed %d" % seed), example, units, days, seed)
                     for seed in seeds for name, example, units, days, _ in scenarios]
    from simulator.scores import shown as figure
    print(__doc__.split("\n\n")[2].replace("\n", " ").strip())
    print()
    t_start = time.monotonic()
    rows = []
    runs = []
    missed = 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(scenario, name, example,
                               max(2, units // QUICK) if quick else units, days, seed)
                   for name, example, units, days, seed in scenarios]
        for f in futures:
            name, units, days, lines, wall, readings = f.result()
            runs.append([name, str(units), str(days), "%d" % readings, "%.0f" % wall])
            for label, value, target, ok in lines:
                shown = "no data" if value is None else figure(value)
                if quick or ok is None:  # a fifth of the units: too few to judge a target
                    verdict = ""
                else:
                    verdict = "meets target" if ok else "MISSES TARGET"
                    missed += ok is False
                rows.append([name, label, shown, target, verdict])
    print("scores (fixed seeds)%s:" % (", --quick: a fifth of the units, too few to judge the "
                                       "targets" if quick else ""))
    table(["scenario", "figure", "value", "target", ""], rows, left=(0, 1, 3, 4))
    print()
    print("scenarios:")
    table(["scenario", "units", "days", "readings", "wall s"], runs)
    print()

    bench = MicroPythonBench()
    mp_rows = []
    failed = False
    try:
        print("MicroPython: %s" % bench.version)
        for kind, example, days in recorded:
            cfg, seq, sensor, n = record(kind, example, days, bench.tmp)
            code, out, err = bench.run("mp_insight", [kind, cfg, seq], heap="64k", timeout=900)
            if code:
                failed = True
                print("%s on %s: micropython failed:\n%s%s" % (kind, example, out, err))
                continue
            kv = parse_kv(out)
            assert kv["readings"] == n, (kv["readings"], n)
            per = (kv["us_feed"] - kv["us_loop"]) / float(n)
            mp_rows.append([kind, "%s.%s" % (example, sensor), "%d d, %d" % (days, n),
                            str(kv["code"]), str(kv["state_new"]), str(kv["state_after"]),
                            "%.1f" % per, "%.1f" % (kv["us_loop"] / float(n)),
                            str(kv["events"])])
    finally:
        bench.close()
    print()
    print("per insight under MicroPython (-X heapsize=64k, 64-bit unix port, .mpy):")
    table(["insight", "sensor", "readings", "code B", "state B (new)",
           "STATE B PER SENSOR (after)", "CPU us/reading", "baseline loop us/reading",
           "events"], mp_rows, left=(0, 1))
    print("  code = gc.mem_alloc() that importing the insight's module adds, with agent.insights "
          "and agent.cbor, which it imports (a board has the cbor encoder loaded anyway)")
    print("  state = gc.mem_alloc() of one detector (with its emit closure), made and after the "
          "whole sequence; CPU = (feed loop - the same loop with a do-nothing function) / readings"
          " on this PC (an ESP32 is some 10-30x slower)")
    print()
    total = time.monotonic() - t_start
    full = not quick and only is None and seeds is None    # the time target is the whole run's
    print("benchmark time: %.0f s%s%s" % (
        total, " (target < 900 s)" if full else "",
        "  MISSES TARGET" if full and total >= 900 else ""))
    if missed:
        print("%d figure(s) MISS their target" % missed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
