# Reads compact batch bodies (agent/compact.py writes them; docs/wire-format.md has the rules).
# Every count is checked against the data's bits (a run of zeros is shorter than its count: not
# against the bits left), so a hostile body cannot make it allocate or loop beyond its own size.
from agent import cbor, cbor_decode
from agent.compact import MAX_READINGS, MAX_UNARY
from agent.shown import shown

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_MAX_GAMMA_BITS = const(64)


class _BitReader:
    def __init__(self, data, offset):
        self.data = data
        self.bit = 0
        self.size = 8 * len(data)
        self.offset = offset  # of data within the batch, for error messages

    def error(self, what):
        return cbor.Malformed("compact body: %s" % what, self.offset + self.bit // 8)

    def get(self, n):
        if self.bit + n > self.size:
            raise cbor.Truncated("compact body ends inside a code", self.offset + len(self.data))
        v = 0
        data = self.data
        bit = self.bit
        for _ in range(n):
            v = (v << 1) | ((data[bit >> 3] >> (7 - (bit & 7))) & 1)
            bit += 1
        self.bit = bit
        return v

    def gamma(self):
        zeros = 0
        while not self.get(1):
            zeros += 1
            if zeros >= _MAX_GAMMA_BITS:
                raise self.error("a gamma code longer than %d bits" % _MAX_GAMMA_BITS)
        return (1 << zeros) | self.get(zeros)

    def rice(self, k):
        q = 0
        while q < MAX_UNARY and self.get(1):
            q += 1
        if q == MAX_UNARY:
            q = self.gamma() + MAX_UNARY - 1
        return (q << k) | self.get(k)

    def seq(self, n):
        out = []
        if n == 0:
            return out
        mode = self.get(5)
        k = mode & 15
        if not mode & 16:
            for _ in range(n):
                out.append(self.rice(k))
            return out
        while len(out) < n:
            if self.get(1):
                out.append(self.rice(k) + 1)
            else:
                run = self.gamma()
                if len(out) + run > n:
                    raise self.error("a run of %d zeros overflows the sequence" % run)
                for _ in range(run):
                    out.append(0)
        return out


def _signed(u):
    return -(u >> 1) - 1 if u & 1 else u >> 1


def decode(body, schema):
    """The readings of a compact body as (t_ms, channel number, scaled int), time-ordered by slot."""
    r = cbor_decode.Reader(body)
    major, count, at = r.head()
    if major != 4 or count != 4:
        raise cbor.Malformed("a compact body is an array of 4 items", 0)
    schema_id = r.item()
    exp = r.item()
    t0 = r.item()
    data = r.item()
    if not r.at_end():
        raise cbor.TrailingData("bytes after the compact body", r.pos)
    if schema_id != schema.id:
        raise cbor.Malformed("body is for schema %s, not %08x" % (shown(schema_id), schema.id),
                             0)
    # a bool is an int to CPython: exp false, t0 true were taken as 0 and 1
    if (type(exp) is not int or exp not in (0, -3) or type(t0) is not int
            or not isinstance(data, bytes)
            or not -0xFFFFFFFFFFFFFFFF <= t0 <= 0xFFFFFFFFFFFFFFFF):
        raise cbor.Malformed("bad compact body header", 0)
    unit = 1000 if exp == 0 else 1
    bits = _BitReader(data, len(body) - len(data))
    slots = bits.gamma()
    if slots > bits.size or slots > MAX_READINGS:
        raise bits.error("%d time slots in %d bits (a batch holds at most %d readings)"
                         % (slots, bits.size, MAX_READINGS))
    times = [t0 * unit]
    d = 0
    for dd in bits.seq(slots - 1):
        d += _signed(dd)
        times.append(times[-1] + d * unit)
    rows = []
    for c in range(len(schema.channels)):
        if not bits.get(1):
            continue
        every = bits.get(1)
        count = slots if every else bits.gamma()
        if count > bits.size:
            raise bits.error("%d readings in %d bits" % (count, bits.size))
        if len(rows) + count > MAX_READINGS:
            raise bits.error("more than %d readings" % MAX_READINGS)
        if every:
            at_slots = range(slots)
        else:
            at_slots = []
            s = 0
            for gap in bits.seq(count):
                s += gap
                if s >= slots:
                    raise bits.error("a reading at slot %d of %d" % (s, slots))
                at_slots.append(s)
        v = _signed(bits.gamma() - 1)
        deltas = bits.seq(len(at_slots) - 1)
        for i, s in enumerate(at_slots):
            if i:
                v += _signed(deltas[i - 1])
            rows.append((s, c, i, v))  # i keeps a channel's readings of one slot in order
    if bits.size - bits.bit >= 8:
        raise bits.error("%d bits left over" % (bits.size - bits.bit))
    rows.sort()
    return [(times[s], c, v) for s, c, _, v in rows]
