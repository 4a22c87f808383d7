# The batch: a CBOR envelope around a SenML or compact body (docs/wire-format.md).
#
#   [1, device id, sequence number, boot count, dropped readings, encoding, flags, body]
#   [2, device id, seq, boot, dropped, encoding, flags, store id, body]   (agent/log.py's id)
#
# The encoder streams rows straight from the buffer's arrays into one bytearray allocated when
# it is made: a batch built first as a tree of dicts does not fit a 64 KiB MicroPython heap.
from agent import cbor

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

VERSION = const(1)
VERSION_STORE = const(2)  # with the log's store id (agent/log.py) before the body
SENML = const(0)
COMPACT = const(1)
ENCODINGS = ("senml", "compact")
FLAG_SYNCED = const(1)    # times are Unix time (NTP/RTC); otherwise time since boot
FLAG_DEFLATED = const(2)  # the body is raw deflate (RFC 1951) of the CBOR body


def compressor():
    """A function bytes -> raw deflate bytes, or None where this interpreter cannot compress.

    MicroPython's `deflate` compresses only in builds that enable it (not the unix build in the
    tests); CPython has zlib.
    """
    try:
        import deflate
        import io

        def squeeze(data):
            out = io.BytesIO()
            d = deflate.DeflateIO(out, deflate.RAW)
            d.write(data)
            d.close()
            return out.getvalue()

        squeeze(b"probe")
        return squeeze
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    try:
        import zlib

        def squeeze(data):
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(data) + c.flush()

        squeeze(b"probe")
        return squeeze
    except (ImportError, AttributeError):
        return None


class Encoder:
    """Makes batches for one device, into a buffer of max_bytes allocated once."""

    def __init__(self, device, schema, encoding="compact", deflate=False, max_bytes=8192,
                 max_readings=420):
        self.device = device
        self.schema = schema
        self.encoding = ENCODINGS.index(encoding)
        self.w = cbor.Writer(bytearray(max_bytes))
        if self.encoding == COMPACT:
            from agent import compact
            self.compact = compact.Encoder(schema, max_readings)
        else:
            from agent import senml
            self.senml = senml
            self.compact = None
        self.squeeze = compressor() if deflate else None
        self.store = 0  # the log's store id (agent/log.py); 0: none, a version 1 envelope

    def use(self, schema):
        """Encodes with schema from now on: a buffer's rows made under an earlier profile leave
        under the schema they were numbered by (agent/buffer.py)."""
        self.schema = schema
        if self.compact is not None:
            from agent import compact
            self.compact = compact.Encoder(schema, len(self.compact.us))

    def encode(self, base, ts, chs, vals, start, end, seq, boot, dropped, synced):
        """The batch of rows start..end-1 (times base + ts[i] in ms, channel numbers chs[i],
        scaled values vals[i]) as a memoryview into the encoder's buffer, valid until the next
        call. Raises cbor.BufferFull when the rows do not fit in max_bytes."""
        w = self.w
        w.reset()
        store = self.store
        w.array(9 if store else 8)
        w.int(VERSION_STORE if store else VERSION)
        w.text(self.device)
        w.int(seq)
        w.int(boot)
        w.int(dropped)
        w.int(self.encoding)
        flags_at = w.pos
        w.int(FLAG_SYNCED if synced else 0)
        if store:
            w.int(store)
        at = w.open_bytes()
        try:
            if self.compact is not None:
                self.compact.encode(w, base, ts, chs, vals, start, end)
            else:
                self.senml.encode(w, self.schema, base, ts, chs, vals, start, end)
        except IndexError:  # the bit writer ran past the buffer
            raise cbor.BufferFull("%d readings do not fit in %d bytes" % (end - start, len(w.buf)))
        if self.squeeze is not None:
            z = self.squeeze(memoryview(w.buf)[at:w.pos])
            if len(z) < w.pos - at:
                w.buf[at:at + len(z)] = z
                w.pos = at + len(z)
                w.buf[flags_at] |= FLAG_DEFLATED
        w.close_bytes(at)
        return w.getvalue()


def _arg(data, at):
    """(argument, end) of the CBOR head at data[at]: enough to step over our own envelope."""
    ai = data[at] & 31
    if ai < 24:
        return ai, at + 1
    size = 1 << (ai - 24)
    n = 0
    for i in range(at + 1, at + 1 + size):
        n = (n << 8) | data[i]
    return n, at + 1 + size


def compact(data):
    """Whether a batch this encoder made is compact (its schema document needed to read it),
    from its envelope's encoding item."""
    length, at = _arg(data, 2)
    at += length
    for _ in range(3):     # seq, boot, dropped: stepped over, not read (no long ints)
        ai = data[at] & 31
        at += 1 if ai < 24 else 1 + (1 << (ai - 24))
    return data[at] == 1


def seq_of(data):
    """The sequence number of a batch this encoder made, read without decoding the rest; the
    log calls it for every record it scans, and a board has no decoder loaded."""
    length, at = _arg(data, 2)  # after the array head and the version: the device id
    return _arg(data, at + length)[0]
