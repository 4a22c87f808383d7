"""Encode speed (CPython and MicroPython) and encode memory (MicroPython) of Tether batches.

    python3 bench/encode_speed.py

CPython: readings/s to encode the reference day's 144 batches with Tether's compact and SenML
encoders, against cbor2.dumps and json.dumps of the same readings in the same run (best of N:
the machine is shared). MicroPython (`micropython -X heapsize=64k`, agent/ as .mpy): readings/s
on one 420-reading batch, and how much heap encoding that batch allocates above the idle heap.
"""
import binascii
import json
import os
import sys
import types
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

import cbor2  # noqa: E402

REPEAT = 9
TARGET_CPY = 1000000          # compact readings/s on CPython
TARGET_MEM = {"compact": 8 * 1024, "senml": 16 * 1024}  # bytes allocated while encoding a batch
MP_REPEAT = 50


def cpython(batches):
    n = sum(len(b) for b in batches)
    rows = []
    for b in batches:
        rows.append([[b.ts[i], b.chs[i], b.vals[i]] for i in range(len(b))])
    dicts = []
    for b in batches:
        dicts.append([{"t": t // 1000, "n": name, "v": v} for t, name, v in b.readings])

    json_dumps = json.dumps
    compact = c.encoder("compact")
    compact_z = c.encoder("compact", True)
    senml = c.encoder("senml")
    cases = [  # (label, fn(i) that encodes batch i)
        ("Tether compact", lambda i: batches[i].encode(compact)),
        ("Tether compact+deflate", lambda i: batches[i].encode(compact_z)),
        ("Tether SenML-CBOR", lambda i: batches[i].encode(senml)),
        ("cbor2.dumps, [t, ch, v] rows", lambda i: cbor2.dumps(rows[i])),
        ("json.dumps, [t, ch, v] rows", lambda i: json_dumps(rows[i])),
        ("cbor2.dumps, {t, n, v} dicts", lambda i: cbor2.dumps(dicts[i])),
        ("json.dumps, {t, n, v} dicts", lambda i: json_dumps(dicts[i])),
    ]
    results = {}
    table = []
    for label, fn in cases:
        size = sum(len(fn(i)) for i in range(len(batches)))  # also warms up
        per_batch, whole = c.best_per_item(fn, len(batches), REPEAT)
        rate = n / per_batch
        results[label] = rate
        table.append([label, "%.1f" % (per_batch * 1000), "%.3f" % (rate / 1e6),
                      "%.3f" % (n / whole / 1e6), "%.2f" % (size / n)])
    native = "native code" if isinstance(cbor2.dumps, types.BuiltinFunctionType) else "Python"
    print("CPython %s, cbor2 %s (cbor2.dumps is %s); the day = %d readings in 144 batches"
          % (sys.version.split()[0], metadata.version("cbor2"), native, n))
    c.table(["encoder", "ms/day", "M readings/s", "(whole-day runs)", "B/reading"], table)
    print("  ms/day = sum over the 144 batches of each batch's best of %d encodes (rounds "
          "interleaved, so a burst of load on this shared machine spoils few of them); "
          "(whole-day runs) = the best of %d timed runs over the whole day, for comparison"
          % (REPEAT, REPEAT))
    print("  baselines encode the same readings, already built as Python objects (not timed):")
    print("  [t, ch, v] rows = one list per batch of [ms offset, channel number, scaled int] "
          "(what Tether's encoders get, as arrays);")
    print("  {t, n, v} dicts = one list per batch of {\"t\": Unix s, \"n\": name, \"v\": value} "
          "(the workload's own form). Neither baseline has an envelope or batch metadata.")
    rate = results["Tether compact"]
    print("  Tether compact: %.3f M readings/s, target >= %.1f M: %s (%.2fx cbor2.dumps of rows, "
          "%.2fx json.dumps of rows)"
          % (rate / 1e6, TARGET_CPY / 1e6, c.verdict(rate, TARGET_CPY, True),
             rate / results["cbor2.dumps, [t, ch, v] rows"],
             rate / results["json.dumps, [t, ch, v] rows"]))


def write_batch(path, b, sch):
    with open(path, "w") as f:
        f.write("%s\n%d\n" % (c.DEVICE, len(sch.channels)))
        for ch in sch.channels:
            f.write("%s|%s|%d|%d\n" % ch)
        f.write("%d %d %d\n%d\n" % (b.base, b.seq, c.BOOT, len(b)))
        for i in range(len(b)):
            f.write("%d %d %d\n" % (b.ts[i], b.chs[i], b.vals[i]))


def min_heap(mp, data, encoding, lo=8, hi=64):
    """The smallest heap in KiB (1 KiB steps) at which the script imports, loads the batch,
    makes the encoder and encodes five times, or None if even hi fails."""
    def works(k):
        rc, out, _ = mp.run("mp_encode", [data, encoding, "heap", 5], heap="%dk" % k)
        return rc == 0 and "ok 1" in out
    if not works(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def micropython(batches, sch):
    """Prints the MicroPython figures; returns False if its bytes differ from CPython's."""
    mp = c.MicroPythonBench()
    ok = True
    try:
        compact = c.encoder("compact")
        b = max(batches, key=lambda x: len(x.encode(compact)))
        data = mp.path("batch.txt")
        write_batch(data, b, sch)
        print("%s; portable core compiled to .mpy; one batch: #%d (%02d:%02d-%02d:%02d), the "
              "day's largest compact batch, 420 readings passed in a %d-byte text file"
              % (mp.version, b.seq, b.seq // 6, b.seq % 6 * 10, (b.seq + 1) // 6,
                 (b.seq + 1) % 6 * 10, os.path.getsize(data)))
        speed_rows = []
        mem = {}
        for encoding in ("compact", "senml"):
            enc = c.encoder(encoding)
            cpy = c.best_of(lambda: b.encode(enc), 20, 20)
            expect = bytes(b.encode(enc))
            rc, out, err = mp.run("mp_encode", [data, encoding, "speed", MP_REPEAT])
            if rc:
                raise SystemExit("micropython failed:\n%s%s" % (out, err))
            r = c.parse_kv(out)
            same = r["bytes"] == len(expect) and r["crc32"] == binascii.crc32(expect)
            speed_rows.append([encoding, "%d" % r["best_us"], "%.0f" % (420 / r["best_us"] * 1e6),
                               "%.0f" % (420 / cpy), "%d" % r["bytes"],
                               "yes" if same else "NO"])
            ok = ok and same
            rc, out, err = mp.run("mp_encode", [data, encoding, "mem", 10])
            if rc:
                raise SystemExit("micropython failed:\n%s%s" % (out, err))
            mem[encoding] = c.parse_kv(out)
            mem[encoding]["min_heap"] = min_heap(mp, data, encoding)
        print("speed (best of %d encodes of the batch, gc on):" % MP_REPEAT)
        c.table(["encoding", "us/batch", "readings/s", "CPython readings/s, same batch",
                 "bytes", "same bytes as CPython"], speed_rows)
        print()
        print("memory at -X heapsize=64k (gc.mem_alloc(), bytes; 64-bit unix port: 32-byte GC "
              "blocks, 8-byte words, so a 32-bit ESP32 needs less):")
        rows = []
        for encoding in ("compact", "senml"):
            m = mem[encoding]
            rows.append([encoding, "%d" % m["imports"], "%d" % m["rows"],
                         "%d (%d buffers)" % (m["encoder"], m["encoder_buffers"]),
                         "%d" % m["idle"], "%d" % m["first"], "%d" % m["steady"],
                         "<= %d" % TARGET_MEM[encoding],
                         c.verdict(max(m["first"], m["steady"]), TARGET_MEM[encoding]),
                         "%dk" % m["min_heap"] if m["min_heap"] else "> 64k"])
        c.table(["encoding", "imports", "rows+schema", "encoder", "IDLE", "ENCODE 1st",
                 "ENCODE again", "target", "", "min heap"], rows, left=(0, 8))
        print("  idle = gc.mem_alloc() after imports, with the encoder and the 420 row arrays made "
              "and gc.collect() done;")
        print("  ENCODE = gc.mem_alloc() after one encode minus idle, with gc.disable() in between: "
              "the volume allocated while encoding, an upper bound of the peak live memory it adds;")
        print("  the encoder's buffers (output bytearray of batch.max_bytes = 8192, compact scratch "
              "arrays for 420 rows) are allocated once when it is made, so they are in idle, not in "
              "ENCODE;")
        print("  min heap = the smallest -X heapsize (1 KiB steps) at which this whole script "
              "(imports, rows, encoder, 5 encodes) runs.")
    finally:
        mp.close()
    return ok


def main():
    print("Tether encode speed and memory, reference day")
    sch = c.schema()
    batches = c.batches(sch=sch)
    print()
    print("== CPython ==")
    cpython(batches)
    print()
    print("== MicroPython ==")
    if not micropython(batches, sch):
        print("FAILED: MicroPython's batch bytes differ from CPython's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
