# MicroPython side of bench/buffer.py (not a benchmark to run by itself).
#
#   micropython -X heapsize=1m -m mp_buffer PROFILE.json READINGS.txt ACKS BLOCK_SIZE BLOCKS
#
# Runs the profile's buffer on LittleFS (os.VfsLfs2) mounted on a RAM block device that stands in
# for the board's flash, feeds it the readings, and counts what reaches the "flash": bytes passed
# to writeblocks (programmed) and blocks erased. PROFILE.json is a compiled profile (its buffer
# settings already set by bench/buffer.py). READINGS.txt has one line per timestamp:
# "t_ms v0 v1 ... v6", values scaled to each channel's resolution. ACKS=1 acks every batch as
# soon as it is formed, as an uplink with a good link would. Output: "key value" lines.
import gc
import os
import sys
import time

from agent import profile as compiled
from agent.store import FileStore

DEVICE = "printer-0001"


class RamFlash:
    """A block device in RAM with the extended interface that LittleFS uses; counts writes."""

    def __init__(self, block_size, blocks):
        self.block_size = block_size
        self.data = bytearray(block_size * blocks)
        self.prog = 0     # bytes programmed
        self.erases = 0   # blocks erased
        self.reads = 0
        self.blank = b"\xff" * block_size

    def readblocks(self, block, buf, offset=0):
        at = block * self.block_size + offset
        n = len(buf)
        buf[:] = memoryview(self.data)[at:at + n]
        self.reads += n

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple interface: erase, then write whole blocks
            for i in range(len(buf) // self.block_size):
                self.ioctl(6, block + i)
            offset = 0
        at = block * self.block_size + offset
        n = len(buf)
        self.data[at:at + n] = buf
        self.prog += n

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            self.erases += 1
            at = arg * self.block_size
            self.data[at:at + self.block_size] = self.blank
            return 0
        return 0


def stale_reads(store):
    """True if FileStore.read misses bytes appended to a file after it was first read (its
    cached read handle does not see later appends on LittleFS)."""
    store.append("probe", b"a")
    store.sync()
    store.read("probe", 0, 1)
    store.append("probe", b"b")
    store.sync()
    stale = store.read("probe", 1, 1) != b"b"
    store.remove("probe")
    return stale


def reopen_after_append(store):
    """Benchmark-side workaround for stale reads: drop the cached read handle of a file that
    was appended to since it was opened. Changes no byte written."""
    appended = {}
    append = store.append
    read = store.read

    def append2(name, data):
        appended[name] = True
        append(name, data)

    def read2(name, offset, n):
        if appended.pop(name, False) and store._in_name == name:
            store._close_in()
        return read(name, offset, n)

    store.append = append2
    store.read = read2


def main():
    profile_path, readings_path, acks, block_size, blocks = sys.argv[1:6]
    acks = acks == "1"
    p = compiled.load(profile_path)
    flash = RamFlash(int(block_size), int(blocks))
    os.VfsLfs2.mkfs(flash)
    os.mount(os.VfsLfs2(flash), "/flash")
    store = FileStore("/flash/buffer")
    stale = stale_reads(store)
    if stale:
        reopen_after_append(store)
    buf = compiled.buffer(p, store=store, device_id=DEVICE)
    buf.open()
    buf.set_synced(True)
    stored = [0]
    log = buf.log
    append_batch = log.append_batch

    def counting(seq, count, data):
        stored[0] += len(data)
        append_batch(seq, count, data)

    log.append_batch = counting
    prog0, erases0, written0 = flash.prog, flash.erases, store.written
    gc.collect()
    appends = 0
    append_us = 0
    ack_us = 0
    batches = 0
    acked = 0
    f = open(readings_path)
    ticks = time.ticks_us
    diff = time.ticks_diff
    append = buf.append
    for line in f:
        parts = line.split()
        t = int(parts[0])
        for ch in range(1, len(parts)):
            v = int(parts[ch])
            t0 = ticks()
            append(t, ch - 1, v)
            append_us += diff(ticks(), t0)
            appends += 1
        if acks and buf.batches != batches:
            t0 = ticks()
            while True:
                item = buf.next_batch()
                if item is None:
                    break
                buf.ack(item[0])
                acked += 1
            ack_us += diff(ticks(), t0)
        batches = buf.batches
    f.close()
    buf.close()
    print("stale_reads", 1 if stale else 0)
    print("appends", appends)
    print("append_us", append_us)
    print("ack_us", ack_us)
    print("batches", buf.batches)
    print("acked", acked)
    print("dropped", log.dropped)
    print("stored", stored[0])
    print("written", store.written - written0)
    print("prog", flash.prog - prog0)
    print("erases", flash.erases - erases0)
    print("files", " ".join(os.listdir("/flash/buffer")))
    os.umount("/flash")
    print("ok 1")


main()
