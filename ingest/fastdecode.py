"""Compact batches decoded fast, for the ingest's hot path (host only: agent/ stays portable).

agent/batch_decode is the reference; this decoder gives exactly what it gives, as per-channel
columns that the stores take without a tuple per reading. It reads the envelope and the compact
body's CBOR header only in the plain form the agent writes (definite lengths, no tags, nothing
after them); the bit-packed part, where the reference spends its time a bit at a time, becomes a
string of '0' and '1': a run of Rice codes is matched by one regular expression, each code looked
up in a table, and the deltas are summed by itertools.accumulate.

Anything unusual (a SenML body, another form of the CBOR, a schema this process has not got, a
run that overflows, any error at all) goes to agent/batch_decode, so a malformed batch fails with
exactly the reference's error, and an odd but valid one decodes as the reference decodes it.
"""
import re
from itertools import accumulate

from agent import batch_decode
from agent.batch import COMPACT, FLAG_DEFLATED, FLAG_SYNCED, VERSION, VERSION_STORE
from agent.compact import MAX_READINGS, MAX_UNARY

from ingest.decode import check_names, text

_MAX_GAMMA_BITS = 64  # as agent/compact_decode
_MAX_PATTERNS = 512
TOP = 0x7FFFFFFFFFFFFFFF  # what a signed 64-bit column holds: larger goes to the reference


class Unusual(Exception):
    """Not for the fast path: the reference decodes it (or says what is wrong with it)."""


class Decoded:
    """A decoded batch: the envelope's fields as agent/batch_decode.Batch has them, and its
    readings as `columns`, [(channel, [t_ms], [value])], in the order in which each channel
    first appears among the readings, each column in time order; `text` is True when a value
    is text (SenML `vs`). `readings` gives the reference's [(t_ms, channel, value)] (built when
    asked for)."""

    __slots__ = ("device", "store", "seq", "boot", "dropped", "encoding", "synced", "deflated",
                 "schema_id", "units", "columns", "text", "count", "t_first", "t_last", "_readings",
                 "_order")

    def __init__(self, b, columns, count, t_first, t_last, readings=None, order=None,
                 text=False):
        self.device, self.seq, self.boot, self.dropped = b.device, b.seq, b.boot, b.dropped
        self.store = b.store
        self.encoding, self.synced, self.deflated = b.encoding, b.synced, b.deflated
        self.schema_id, self.units = b.schema_id, b.units
        self.columns = columns
        self.text = text
        self.count, self.t_first, self.t_last = count, t_first, t_last
        self._readings = readings
        self._order = order  # how to interleave the columns into the reference's readings

    @property
    def readings(self):
        if self._readings is None:
            self._readings = self._order()
        return self._readings


def from_reference(b):
    """A Decoded of agent/batch_decode's Batch b, its names, units and text values as
    ingest/decode.text() has them (a SenML batch carries its own; a compact batch's come from a
    Schema that ingest/decode.schema() made so)."""
    readings = b.readings
    if any("\x00" in name or isinstance(v, str) and "\x00" in v for _, name, v in readings):
        readings = [(t, text(name), text(v) if isinstance(v, str) else v)
                    for t, name, v in readings]
    if any("\x00" in k or isinstance(u, str) and "\x00" in u for k, u in b.units.items()):
        b.units = {text(k): text(u) if isinstance(u, str) else u for k, u in b.units.items()}
    per = {}
    for t, name, value in readings:
        c = per.get(name)
        if c is None:
            c = per[name] = (name, [], [])
        c[1].append(t)
        c[2].append(value)
    return Decoded(b, list(per.values()), len(readings),
                   readings[0][0] if readings else None, readings[-1][0] if readings else None,
                   readings, text=any(isinstance(r[2], str) for r in readings))


def decode(payload, schemas):
    """What agent/batch_decode.decode(payload, schemas) gives, as a Decoded; its errors, and
    ingest/decode.Bad for a channel name or unit longer than the ingest stores."""
    try:
        b = _fast(payload, schemas)
    except Exception:  # noqa: BLE001 - whatever it is, the reference decides
        b = from_reference(batch_decode.decode(payload, schemas))
    check_names(b)
    return b


class _Codes(dict):
    """Rice code (as a '0'/'1' string) -> its value, for one Rice parameter k."""

    def __init__(self, k, signed):
        dict.__init__(self)
        self.k = k
        self.signed = signed

    def __missing__(self, code):
        q = code.index("0")
        u = (q << self.k) | (int(code[q + 1:], 2) if self.k else 0)
        v = (u >> 1) ^ -(u & 1) if self.signed else u
        if len(self) < 4096:
            self[code] = v
        return v


_UNSIGNED = [_Codes(k, False) for k in range(16)]
_SIGNED = [_Codes(k, True) for k in range(16)]
_CODE = [re.compile("1{0,%d}0[01]{%d}" % (MAX_UNARY - 1, k)) for k in range(16)]
_RUNS = {}  # (k, n) -> a pattern matching up to n unescaped Rice codes in a row


def _run_of(k, n):
    p = _RUNS.get((k, n))
    if p is None:
        if len(_RUNS) > _MAX_PATTERNS:  # a hostile variety of lengths: start again
            _RUNS.clear()
        p = _RUNS[k, n] = re.compile("(?:1{0,%d}0[01]{%d}){0,%d}" % (MAX_UNARY - 1, k, n))
    return p


class _Bits:
    """The reference's _BitReader over a string of bits; Unusual where it would raise."""

    __slots__ = ("s", "pos", "size")

    def __init__(self, data):
        self.size = 8 * len(data)
        self.s = format(int.from_bytes(data, "big"), "0%db" % self.size)
        self.pos = 0

    def get(self, n):
        pos = self.pos
        if pos + n > self.size:
            raise Unusual
        self.pos = pos + n
        return int(self.s[pos:pos + n], 2)

    def gamma(self):
        pos = self.pos
        one = self.s.find("1", pos, pos + _MAX_GAMMA_BITS)
        if one < 0:
            raise Unusual
        end = 2 * one - pos + 1
        if end > self.size:
            raise Unusual
        self.pos = end
        return int(self.s[one:end], 2)

    def rice(self, k):
        pos = self.pos
        zero = self.s.find("0", pos, pos + MAX_UNARY)
        if zero < 0:  # MAX_UNARY ones: the quotient follows as a gamma code
            if pos + MAX_UNARY > self.size:
                raise Unusual
            self.pos = pos + MAX_UNARY
            q = self.gamma() + MAX_UNARY - 1
            end = self.pos + k
            if end > self.size:
                raise Unusual
            self.pos = end
            return (q << k) | (int(self.s[end - k:end], 2) if k else 0)
        end = zero + 1 + k
        if end > self.size:
            raise Unusual
        self.pos = end
        return ((zero - pos) << k) | (int(self.s[zero + 1:end], 2) if k else 0)

    def seq(self, n, signed):
        """n codes as agent/compact_decode reads them (signed: each through _signed)."""
        if n == 0:
            return []
        mode = self.get(5)
        k = mode & 15
        if not mode & 16:
            table = (_SIGNED if signed else _UNSIGNED)[k]
            out = []
            while True:
                m = _run_of(k, n - len(out)).match(self.s, self.pos)  # never None: {0,n}
                end = m.end()
                out += map(table.__getitem__, _CODE[k].findall(self.s, self.pos, end))
                self.pos = end
                if len(out) == n:
                    return out
                u = self.rice(k)  # an escaped code, or Unusual
                out.append((u >> 1) ^ -(u & 1) if signed else u)
        out = []
        s = self.s
        while len(out) < n:
            pos = self.pos
            if pos >= self.size:
                raise Unusual
            self.pos = pos + 1
            if s[pos] == "1":
                u = self.rice(k) + 1
                out.append((u >> 1) ^ -(u & 1) if signed else u)
            else:
                run = self.gamma()
                if len(out) + run > n:
                    raise Unusual
                out += [0] * run
        return out


def _head(data, pos):
    """(major type, argument, end) of the definite-length CBOR head at data[pos]."""
    ib = data[pos]
    ai = ib & 31
    if ai < 24:
        return ib >> 5, ai, pos + 1
    if ai > 27:
        raise Unusual
    end = pos + 1 + (1 << (ai - 24))
    if end > len(data):
        raise Unusual
    return ib >> 5, int.from_bytes(data[pos + 1:end], "big"), end


def _int(data, pos):
    major, n, pos = _head(data, pos)
    if major > 1:
        raise Unusual
    return (n if major == 0 else -1 - n), pos


def _bytes(data, pos, major_type):
    major, n, pos = _head(data, pos)
    if major != major_type or pos + n > len(data):
        raise Unusual
    return data[pos:pos + n], pos + n


def _envelope(data):
    """The envelope of a compact batch, in the plain form the agent writes it (definite lengths,
    no tags: what the reference reads the same way); Unusual for anything else."""
    major, n, pos = _head(data, 0)
    if major != 4 or (n, data[pos]) not in ((8, VERSION), (9, VERSION_STORE)):
        raise Unusual
    device, pos = _bytes(data, pos + 1, 3)
    seq, pos = _int(data, pos)
    boot, pos = _int(data, pos)
    dropped, pos = _int(data, pos)
    encoding, pos = _int(data, pos)
    flags, pos = _int(data, pos)
    store = 0
    if n == 9:
        store, pos = _int(data, pos)
        if not 0 < store <= 0xFFFFFFFF:
            raise Unusual
    body, pos = _bytes(data, pos, 2)
    if (pos != len(data) or encoding != COMPACT or min(seq, boot, dropped, flags) < 0
            or max(seq, boot, dropped) > TOP or flags & ~(FLAG_SYNCED | FLAG_DEFLATED)):
        raise Unusual
    b = batch_decode.Batch(device.decode(), seq, boot, dropped, encoding, flags, body)
    b.store = store
    return b


def _fast(payload, schemas):
    b = _envelope(payload)
    body = b.body
    if b.deflated:
        body = batch_decode.inflate(body)
    major, n, pos = _head(body, 0)
    if major != 4 or n != 4:
        raise Unusual
    schema_id, pos = _int(body, pos)
    exp, pos = _int(body, pos)
    t0, pos = _int(body, pos)
    data, pos = _bytes(body, pos, 2)
    if pos != len(body):
        raise Unusual
    schema = dict.get(schemas, schema_id)  # not Schemas.get: a miss is the reference's to note
    if (schema is None or schema_id != schema.id or exp not in (0, -3)
            or not -0xFFFFFFFFFFFFFFFF <= t0 <= 0xFFFFFFFFFFFFFFFF or not data):
        raise Unusual
    names = schema.names
    if len(set(names)) != len(names):
        raise Unusual  # two channels of one name: one column in the reference's grouping
    unit = 1000 if exp == 0 else 1
    bits = _Bits(data)
    slots = bits.gamma()
    if slots > bits.size or slots > MAX_READINGS:
        raise Unusual
    ds = accumulate(bits.seq(slots - 1, True))
    if unit == 1:
        times = list(accumulate(ds, initial=t0))
    else:
        times = list(accumulate(map(unit.__mul__, ds), initial=t0 * unit))
    if max(times) > TOP or min(times) < -TOP - 1:
        raise Unusual
    chans = []  # (first slot, channel number, name, slots or None for every slot, values)
    total = 0
    for c, (name, _, mantissa, exponent) in enumerate(schema.channels):
        if not bits.get(1):
            continue
        every = bits.get(1)
        n = slots if every else bits.gamma()
        total += n
        if n > bits.size or total > MAX_READINGS:
            raise Unusual  # a few bytes saying millions of readings: the reference says so
        if every:
            at = None
        else:
            at = list(accumulate(bits.seq(n, False)))
            if at[-1] >= slots:
                raise Unusual
        v = bits.gamma() - 1
        values = list(accumulate(bits.seq(n - 1, True), initial=(v >> 1) ^ -(v & 1)))
        if exponent >= 0:
            scale = mantissa * 10 ** exponent
            if scale != 1:
                values = list(map(scale.__mul__, values))
            if max(values) > TOP or min(values) < -TOP - 1:
                raise Unusual  # the reference says what is wrong
        else:
            div = 10 ** -exponent
            if mantissa == 1:
                values = list(map(div.__rtruediv__, values))
            else:
                # x * mantissa / div, as the reference, without a Python frame a value
                values = list(map(div.__rtruediv__, map(mantissa.__mul__, values)))
        chans.append((0 if at is None else at[0], c, name, at, values))
    if bits.size - bits.pos >= 8:
        raise Unusual
    if not chans:
        raise Unusual
    chans.sort(key=lambda ch: ch[:2])
    columns = []
    full = True
    first_slot = slots
    last_slot = 0
    for first, c, name, at, values in chans:
        if at is None:
            columns.append((name, times, values))
            last_slot = slots - 1
        else:
            full = False
            columns.append((name, [times[s] for s in at], values))
            last_slot = max(last_slot, at[-1])
        first_slot = min(first_slot, first)
    for name, unit_, _, _ in schema.channels:
        b.units[name] = unit_
    b.schema_id = schema_id
    n_readings = sum(len(col[2]) for col in columns)
    if full:
        def order():
            return [(t, name, v) for t, vs in zip(times, zip(*[col[2] for col in columns]))
                    for name, v in zip([col[0] for col in columns], vs)]
    else:
        def order():
            rows = []
            for _, c, name, at, values in chans:
                for i, (s, v) in enumerate(zip(range(slots) if at is None else at, values)):
                    rows.append((s, c, i, name, v))
            rows.sort(key=lambda row: row[:3])
            return [(times[s], name, v) for s, _, _, name, v in rows]
    return Decoded(b, columns, n_readings, times[first_slot], times[last_slot], order=order)
