# The log tests' helpers (test_log.py, test_log_retention.py). Portable.
#
# The batches are stand-ins, "B" + seq (u32) + filler, so each test says exactly how big its
# records are; agent.batch's real batches go through the log in test_buffer.py.
import struct

from agent.log import Log
from agent.store import FileStore, RamStore
from support import tmpdir

REC = 7 + 2 + 40  # bytes of one stand-in record with the default 35 bytes of filler


def fake(seq, filler=35):
    return b"B" + struct.pack("<I", seq) + bytes([seq & 0xFF]) * filler


def seq_of(data):
    return struct.unpack("<I", bytes(data[1:5]))[0]


def new_log(store, max_bytes=4096, segment_bytes=4 * REC):
    return Log(store, max_bytes, segment_bytes, seq_of)


def opened(store, **kw):
    log = new_log(store, **kw)
    log.open()
    return log


def add(log, seq, count=10, filler=35):
    data = fake(seq, filler)
    log.append_batch(seq, count, data)
    log.sync()
    return data


def drain(log):
    out = []
    while True:
        b = log.next_batch()
        if b is None:
            return out
        out.append((b[0], bytes(b[1])))


def seqs(log):
    return [s for s, _ in drain(log)]


def both_stores():
    """A fresh FileStore folder and a fresh RamStore, each with a way to get it back 'after a
    reboot' (a new FileStore over the same folder; the same RamStore object)."""
    path = tmpdir() + "/log"
    ram = RamStore()
    return [(FileStore(path), lambda: FileStore(path)), (ram, lambda: ram)]
