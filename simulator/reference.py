"""The reference workload that every Tether benchmark uses (bench/README.md).

One day of one connected printer that also carries a smart pill bottle's scale, sampled every
10 s: ink_c ink_m ink_y ink_k (%, 0.1), power (W, 0.1), energy (Wh, integer counter), pills
(count). Deterministic (fixed seed), and line for line the same as the team's generator the
baselines were measured with (bench/wire_size.py checks it where that file is at hand), so
figures from different changes, runs and machines compare. Usage:

    python -m simulator.reference [OUT.jsonl] [--hours H]
"""
import json
import random
import sys

T0 = 1763856000  # 2025-11-23T00:00:00Z
STEP = 10
CHANNELS = ("energy", "ink_c", "ink_k", "ink_m", "ink_y", "pills", "power")


def readings(hours=24):
    """Yields {"t": unix seconds, "n": name, "v": value}, sorted by t then n."""
    rnd = random.Random(8428)
    ink = {"ink_c": 71.4, "ink_m": 64.9, "ink_y": 80.2, "ink_k": 38.7}
    energy_wh = 15230.0
    pills = 60
    doses = {8 * 3600: 1, 13 * 3600: 2, 20 * 3600: 1}
    printing_left = 0
    for i in range(int(hours * 3600 / STEP)):
        t = T0 + i * STEP
        day_s = (t - T0) % 86400
        busy_hours = 8 * 3600 <= day_s < 18 * 3600
        if printing_left == 0 and rnd.random() < (0.02 if busy_hours else 0.002):
            printing_left = rnd.randint(1, 12)
        if printing_left:
            printing_left -= 1
            power = 28.0 + rnd.gauss(0, 1.5)
            for k in ink:
                if rnd.random() < 0.06:
                    ink[k] = max(0.0, ink[k] - 0.1)
        else:
            power = 3.5 + rnd.gauss(0, 0.15)
        energy_wh += power * STEP / 3600.0
        for at, count in doses.items():
            if at <= day_s < at + STEP and rnd.random() < 0.9:
                pills = max(0, pills - count)
        if day_s == 12 * 3600 and pills < 20:
            pills += 60
        values = {"energy": int(energy_wh), "ink_c": round(ink["ink_c"], 1),
                  "ink_k": round(ink["ink_k"], 1), "ink_m": round(ink["ink_m"], 1),
                  "ink_y": round(ink["ink_y"], 1), "pills": pills, "power": round(power, 1)}
        for name in CHANNELS:
            yield {"t": t, "n": name, "v": values[name]}


def write(path, hours=24):
    with open(path, "w") as f:
        for r in readings(hours):
            f.write(json.dumps(r) + "\n")


def main(argv):
    hours = 24
    args = list(argv)
    if "--hours" in args:
        i = args.index("--hours")
        hours = float(args[i + 1])
        del args[i:i + 2]
    write(args[0] if args else "reference-readings.jsonl", hours)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
