# The MicroPython half of bench/insights.py:
#   micropython -X heapsize=64k -m mp_insight KIND CONFIG.json READINGS.bin
#
# One sensor's detector (agent/insights/KIND) fed a recorded sequence of readings (16-byte
# records: int64 device ms, float64 value) as the sampler feeds it. Prints `key value` lines:
# the heap its code takes, the heap of one detector when made and after the whole sequence (its
# state is bounded: this is what a sensor costs), and the time of the feed loop against the same
# loop calling a function that does nothing.
import gc
import json
import struct
import sys
import time

CHUNK = 256  # records read at a time: the file is far larger than the heap


def loop(path, feed):
    buf = bytearray(16 * CHUNK)
    n = 0
    t0 = time.ticks_us()
    with open(path, "rb") as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            for i in range(0, got, 16):
                t, v = struct.unpack_from("<qd", buf, i)
                feed(t, v, True)
                n += 1
    return n, time.ticks_diff(time.ticks_us(), t0)


def nothing(t, v, synced):
    pass


def main():
    kind, cfg_path, seq_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(cfg_path) as f:
        cfg = json.load(f)
    gc.collect()
    m0 = gc.mem_alloc()
    module = __import__("agent.insights." + kind, None, None, (kind,))
    gc.collect()
    m1 = gc.mem_alloc()
    sent = [0]

    def emit(t, event, value, fields):
        sent[0] += 1
    d = module.Detector(cfg, emit)
    gc.collect()
    m2 = gc.mem_alloc()
    n, us = loop(seq_path, d.feed)
    gc.collect()
    m3 = gc.mem_alloc()
    n0, us0 = loop(seq_path, nothing)
    print("code", m1 - m0)
    print("state_new", m2 - m1)
    print("state_after", m3 - m1)
    print("readings", n)
    print("events", sent[0])
    print("us_feed", us)
    print("us_loop", us0)


main()
