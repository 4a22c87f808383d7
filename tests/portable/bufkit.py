# Helpers for the buffer and log tests (tests/portable/test_buffer*.py, test_log.py and the host
# crash tests): a small buffer, numbered readings, a store that loses power at a chosen write,
# and a workload that records what it saw become durable, with the checks that must hold after
# any power cut. Portable: runs under CPython and MicroPython alike.
from agent import batch
from agent.buffer import Buffer
from agent.log import Log
from agent.schema import Schema

CHANNELS = [("a", "", 1, 0), ("b", "", 1, 0), ("c", "", 1, 0)]  # resolution 1: values stay ints
T0 = 1000000
STEP = 250


def schema():
    return Schema(CHANNELS)


class RecordingLog(Log):
    """A Log that remembers each batch it was given, so a test knows the bytes it must find."""

    def __init__(self, *args):
        Log.__init__(self, *args)
        self.formed = []  # (seq, count, bytes), cleared by the workload once a call returns

    def append_batch(self, seq, count, data):
        self.formed.append((seq, count, bytes(data)))
        Log.append_batch(self, seq, count, data)


def make(store, max_bytes=16384, segment_bytes=1024, max_readings=24, ram_readings=4,
         flush_ms=60000, max_age_ms=600000, batch_bytes=256, log=RecordingLog,
         encoding="compact"):
    """A Buffer (not yet opened) over store, with a 3-channel schema and device id "dev-1"."""
    lg = log(store, max_bytes, segment_bytes, batch.seq_of)
    enc = batch.Encoder("dev-1", schema(), encoding, False, batch_bytes, max_readings)
    return Buffer(lg, enc, max_readings, max_age_ms, ram_readings, flush_ms)


def reading(i):
    """The i-th reading of a workload, (t_ms, channel, value): every one is unique, and its
    time gives its number back (index())."""
    return T0 + STEP * i, i % 3, 7 * i - 50


def index(row):
    return (row[0] - T0) // STEP


def append(buf, i):
    t, c, v = reading(i)
    buf.append(t, c, v)


class Envelope:
    def __init__(self, fields):
        self.store = fields.pop(7) if fields[0] == batch.VERSION_STORE else 0
        _, self.device, self.seq, self.boot, self.dropped, self.encoding, flags, _ = fields
        self.synced = bool(flags & batch.FLAG_SYNCED)


def decode(data):
    """(the envelope, [(t_ms, channel, value)]) of one compact batch. The envelope is read with
    agent.cbor_decode and the body with agent.compact_decode: agent.batch_decode would also load
    the SenML decoder, ~8 KB more of a 64k heap."""
    from agent import cbor_decode, compact_decode
    fields = cbor_decode.loads(bytes(data))
    assert (fields[0], len(fields)) in ((batch.VERSION, 8), (batch.VERSION_STORE, 9))
    assert fields[5] == batch.COMPACT
    return Envelope(fields), compact_decode.decode(fields[-1], schema())


def rows(data):
    return decode(data)[1]


def ram_rows(buf):
    """The readings waiting in the buffer's RAM (after open(): those the journal gave back)."""
    return [(buf.base + buf.ts[i], buf.chs[i], buf.vals[i]) for i in range(buf.n)]


def drain(buf):
    """[(seq, bytes)] of every batch the buffer hands out now, in order."""
    out = []
    while True:
        b = buf.next_batch()
        if b is None:
            return out
        out.append((b[0], bytes(b[1])))


def seg_bytes(store):
    total = 0
    for name in store.names():
        if name.endswith(".seg"):
            total += store.size(name)
    return total
