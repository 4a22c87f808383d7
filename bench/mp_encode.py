# MicroPython side of bench/encode_speed.py (not a benchmark to run by itself).
#
#   micropython -X heapsize=64k -m mp_encode DATA ENCODING MODE [REPEAT]
#
# DATA is a small text file that bench/encode_speed.py writes: the device id, the channel
# table, then one batch's rows. MODE is
#   speed  best time of REPEAT encodes of the batch (gc on, as on a board)
#   mem    gc.mem_alloc() above the idle heap while encoding, with no collection in between
#   heap   just encode the batch a few times (to find the smallest heap that can)
# Output: "key value" lines.
import gc

gc.collect()
_at_start = gc.mem_alloc()

import array
import binascii
import sys
import time

from agent import batch
from agent.schema import Schema

gc.collect()
_imported = gc.mem_alloc()


def load(path):
    f = open(path)
    device = f.readline().strip()
    channels = []
    for _ in range(int(f.readline())):
        name, unit, m, e = f.readline().rstrip("\n").split("|")
        channels.append((name, unit, int(m), int(e)))
    base, seq, boot = [int(x) for x in f.readline().split()]
    n = int(f.readline())
    ts = array.array("i", bytes(4 * n))
    chs = array.array("B", bytes(n))
    vals = array.array("i", bytes(4 * n))
    for i in range(n):
        t, ch, v = f.readline().split()
        ts[i] = int(t)
        chs[i] = int(ch)
        vals[i] = int(v)
    f.close()
    return device, channels, base, seq, boot, ts, chs, vals


def main():
    path, encoding, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    device, channels, base, seq, boot, ts, chs, vals = load(path)
    n = len(ts)
    sch = Schema(channels)
    gc.collect()
    loaded = gc.mem_alloc()
    enc = batch.Encoder(device, sch, encoding, False, 8192, n)
    gc.collect()
    made = gc.mem_alloc()
    if encoding == "compact":
        # compact imports agent.compact when the encoder is made: count it as code, not state.
        out = enc.w.buf
        scratch = enc.compact
        state = len(out) + 4 * len(scratch.us) + 2 * len(scratch.gaps)
    else:
        state = len(enc.w.buf)
    if mode == "speed":
        best = None
        for _ in range(repeat):
            t0 = time.ticks_us()
            enc.encode(base, ts, chs, vals, 0, n, seq, boot, 0, True)
            dt = time.ticks_diff(time.ticks_us(), t0)
            if best is None or dt < best:
                best = dt
        data = enc.encode(base, ts, chs, vals, 0, n, seq, boot, 0, True)
        print("readings", n)
        print("best_us", best)
        print("bytes", len(data))
        print("crc32", binascii.crc32(data) & 0xFFFFFFFF)
    elif mode == "mem":
        peaks = []
        for _ in range(repeat):
            gc.collect()
            idle = gc.mem_alloc()
            gc.disable()  # no collection may hide what the encoder allocates
            data = enc.encode(base, ts, chs, vals, 0, n, seq, boot, 0, True)
            peak = gc.mem_alloc() - idle
            gc.enable()
            peaks.append(peak)
        data = None
        gc.collect()
        print("imports", _imported - _at_start)
        print("rows", loaded - _imported)
        print("encoder", made - loaded)
        print("encoder_buffers", state)
        print("idle", gc.mem_alloc())
        print("free", gc.mem_free())
        print("first", peaks[0])
        print("steady", max(peaks[1:]) if len(peaks) > 1 else peaks[0])
    else:
        for _ in range(repeat):
            data = enc.encode(base, ts, chs, vals, 0, n, seq, boot, 0, True)
        print("bytes", len(data))
    print("ok 1")


main()
