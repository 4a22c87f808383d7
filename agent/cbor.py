# CBOR (RFC 8949) for CPython and MicroPython alike.
#
# Encoding is deterministic (RFC 8949 section 4.2.1): shortest argument forms, definite lengths,
# floats in the shortest of half/single/double that keeps the value, map keys sorted by their
# encoded bytes. The float check works on the IEEE bit pattern with integers only, so both
# interpreters make the same bytes whatever their struct module does with half floats.
#
# Writer encodes into one bytearray: fixed (a batch buffer allocated once; overflow raises
# BufferFull) or growable (dumps). Decoding is in agent/cbor_decode.py, which a board that only
# sends never loads.
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_BIG = 0x10000000000000000  # 2**64: past it an integer becomes a bignum (tags 2 and 3)
MAX_DEPTH = const(32)


class CBORError(ValueError):
    """Base of every error this module raises; `offset` is the byte where it was found."""

    def __init__(self, message, offset=None):
        self.reason = message
        if offset is not None:
            message = "at byte %d: %s" % (offset, message)
        super().__init__(message)
        self.offset = offset


class EncodeError(CBORError):
    pass


class BufferFull(EncodeError):
    """A fixed Writer ran out of room."""


class DecodeError(CBORError):
    pass


class Truncated(DecodeError):
    """The input ends inside an item, or a length header claims more than the input holds."""


class TrailingData(DecodeError):
    """Bytes follow the one item that was expected."""


class TooDeep(DecodeError):
    """Arrays, maps and tags nest deeper than the limit."""


class Malformed(DecodeError):
    """Not well-formed CBOR, or a form this decoder refuses (duplicate map keys, bad UTF-8)."""


class Tag:
    """A tagged item that the decoder does not turn into a Python value itself."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Simple:
    """A simple value other than false, true, null and undefined."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Simple) and self.value == other.value

    def __hash__(self):
        return self.value

    def __repr__(self):
        return "Simple(%d)" % self.value


class _Undefined:
    def __repr__(self):
        return "undefined"


UNDEFINED = _Undefined()


def float_bits(f):
    """(size, bits): the shortest IEEE 754 form (2, 4 or 8 bytes) that holds f exactly."""
    d = struct.unpack(">Q", struct.pack(">d", f))[0]
    sign = d >> 63
    exp = (d >> 52) & 0x7FF
    mant = d & 0xFFFFFFFFFFFFF
    if exp == 0x7FF:
        if mant:
            return 2, 0x7E00  # the one canonical NaN
        return 2, (sign << 15) | 0x7C00
    if exp == 0:
        if mant == 0:
            return 2, sign << 15
        return 8, d  # a double subnormal is too small for half or single
    e = exp - 1023
    sig = mant | 0x10000000000000
    if -14 <= e <= 15:
        if mant & 0x3FFFFFFFFFF == 0:
            return 2, (sign << 15) | ((e + 15) << 10) | (mant >> 42)
    elif -24 <= e < -14:
        shift = 28 - e  # 52 - (e + 24)
        if sig & ((1 << shift) - 1) == 0:
            return 2, (sign << 15) | (sig >> shift)
    if -126 <= e <= 127:
        if mant & 0x1FFFFFFF == 0:
            return 4, (sign << 31) | ((e + 127) << 23) | (mant >> 29)
    elif -149 <= e < -126:
        shift = -97 - e  # 52 - (e + 149)
        if sig & ((1 << shift) - 1) == 0:
            return 4, (sign << 31) | (sig >> shift)
    return 8, d


def _key_bytes(k):
    w = Writer()
    w.value(k)
    return bytes(w.getvalue())


def _sort_key(pair):
    return pair[0]


_SORT_IN_PLACE = 64   # keys: past that, _sort_ascii's n*n steps cost more than the garbage


def _ascii_keys(keys):
    """Whether every key is an ASCII str: its encoding's order is then (length, text)."""
    for k in keys:
        if not isinstance(k, str):
            return False
        for c in k:
            if c >= "\x80":
                return False
    return True


def _sort_ascii(keys):
    """Sorts ASCII keys as their encodings sort (RFC 8949 4.2.1: the head holds the length, so
    shorter first, then bytewise), in place and without allocating: a health report's keys each
    encoded into bytes of their own to be sorted made 14 KB of garbage per report on a board's
    heap (64-bit unix port)."""
    for i in range(1, len(keys)):
        k = keys[i]
        n = len(k)
        j = i - 1
        while j >= 0 and (len(keys[j]) > n or (len(keys[j]) == n and keys[j] > k)):
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = k


class Writer:
    """Encodes CBOR items into a bytearray.

    Writer(bytearray(n)) writes into that buffer and raises BufferFull past its end; Writer()
    grows its own buffer, from `size` bytes. getvalue() is a memoryview of what was written.
    """

    def __init__(self, buf=None, size=64):
        if buf is None:
            self.buf = bytearray(size)
            self.fixed = False
        else:
            self.buf = buf
            self.fixed = True
        self.pos = 0

    def reset(self):
        self.pos = 0

    def getvalue(self):
        return memoryview(self.buf)[:self.pos]

    def _room(self, n):
        need = self.pos + n
        if need > len(self.buf):
            if self.fixed:
                raise BufferFull("output buffer of %d bytes is full" % len(self.buf))
            size = len(self.buf) * 2
            while size < need:
                size *= 2
            grown = bytearray(size)
            grown[:self.pos] = memoryview(self.buf)[:self.pos]
            self.buf = grown

    def raw(self, data):
        n = len(data)
        self._room(n)
        self.buf[self.pos:self.pos + n] = data
        self.pos += n

    def byte(self, b):
        self._room(1)
        self.buf[self.pos] = b
        self.pos += 1

    def head(self, major, n):
        """The initial byte(s) of an item: major type 0-7 and its argument n >= 0, shortest form."""
        mt = major << 5
        if n < 24:
            if n < 0:  # a board's bytearray would store n & 0xFF silently: refuse it on both
                raise EncodeError("argument %d is negative" % n)
            self._room(1)
            self.buf[self.pos] = mt | n
            self.pos += 1
        elif n < 0x100:
            self._room(2)
            self.buf[self.pos] = mt | 24
            self.buf[self.pos + 1] = n
            self.pos += 2
        elif n < 0x10000:
            self._room(3)
            struct.pack_into(">BH", self.buf, self.pos, mt | 25, n)
            self.pos += 3
        elif n < 0x100000000:
            self._room(5)
            struct.pack_into(">BI", self.buf, self.pos, mt | 26, n)
            self.pos += 5
        elif n < _BIG:
            self._room(9)
            struct.pack_into(">BQ", self.buf, self.pos, mt | 27, n)
            self.pos += 9
        else:
            raise EncodeError("argument %d does not fit in 64 bits" % n)

    def open_bytes(self):
        """Starts a byte string whose length is not known yet; returns where its content starts.

        Room for the longest header is reserved, and close_bytes moves the content back over what
        the real header does not use: the alternative, a second buffer to build the content in,
        would double the RAM a batch takes.
        """
        self._room(5)
        self.pos += 5
        return self.pos

    def close_bytes(self, start):
        n = self.pos - start
        head = 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5
        at = start - 5
        self.pos = at
        self.head(2, n)
        if head < 5:
            self.buf[at + head:at + head + n] = memoryview(self.buf)[start:start + n]
        self.pos = at + head + n

    def int(self, n):
        if n >= 0:
            if n < _BIG:
                self.head(0, n)
            else:
                self._bignum(2, n)
        else:
            m = -1 - n
            if m < _BIG:
                self.head(1, m)
            else:
                self._bignum(3, m)

    def _bignum(self, tag, n):
        size = 0
        x = n
        while x:
            x >>= 8
            size += 1
        self.head(6, tag)
        self.head(2, size)
        self.raw(n.to_bytes(size, "big"))

    def float(self, f):
        size, bits = float_bits(f)
        self._room(size + 1)
        if size == 2:
            struct.pack_into(">BH", self.buf, self.pos, 0xF9, bits)
        elif size == 4:
            struct.pack_into(">BI", self.buf, self.pos, 0xFA, bits)
        else:
            struct.pack_into(">BQ", self.buf, self.pos, 0xFB, bits)
        self.pos += size + 1

    def text(self, s):
        data = s.encode("utf-8")
        self.head(3, len(data))
        self.raw(data)

    def bytes(self, data):
        self.head(2, len(data))
        self.raw(data)

    def array(self, n):
        self.head(4, n)

    def map(self, n):
        self.head(5, n)

    def tag(self, n):
        self.head(6, n)

    def value(self, v):
        """Any supported Python value, deterministically."""
        if v is None:
            self.byte(0xF6)
        elif v is True:
            self.byte(0xF5)
        elif v is False:
            self.byte(0xF4)
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, float):
            self.float(v)
        elif isinstance(v, str):
            self.text(v)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            self.bytes(v)
        elif isinstance(v, (list, tuple)):
            self.head(4, len(v))
            for item in v:
                self.value(item)
        elif isinstance(v, dict):
            keys = list(v)
            if len(keys) <= _SORT_IN_PLACE and _ascii_keys(keys):
                self._text_map(keys, (v,))
                return
            pairs = [(_key_bytes(k), val) for k, val in v.items()]
            pairs.sort(key=_sort_key)
            self.head(5, len(pairs))
            for kb, val in pairs:
                self.raw(kb)
                self.value(val)
        elif isinstance(v, Tag):
            self.head(6, v.tag)
            self.value(v.value)
        elif isinstance(v, Simple):
            # 24..31 in two bytes are not well-formed (RFC 8949 section 3.3); 20..23 would collide
            # with false/true/null/undefined (and make duplicate map keys); > 255 does not exist.
            n = v.value
            if 0 <= n < 20:
                self.byte(0xE0 | n)
            elif 32 <= n < 256:
                self.byte(0xF8)
                self.byte(n)
            else:
                raise EncodeError("simple value %r cannot be encoded" % (n,))
        elif v is UNDEFINED:
            self.byte(0xF7)
        else:
            raise EncodeError("cannot encode a value of type %s" % type(v).__name__)

    def maps(self, dicts):
        """One map of the keys of all the dicts (no key in two of them), as value() would
        write the dict they make together, without making it: a small heap has no room to
        grow a dict of twenty keys by a few more (Agent.health)."""
        keys = []
        for d in dicts:
            keys.extend(d)
        if len(keys) <= _SORT_IN_PLACE and _ascii_keys(keys):
            self._text_map(keys, dicts)
            return
        merged = {}
        for d in dicts:
            merged.update(d)
        self.value(merged)

    def _text_map(self, keys, dicts):
        _sort_ascii(keys)
        self.head(5, len(keys))
        for k in keys:
            self.text(k)
            for d in dicts:
                if k in d:
                    self.value(d[k])
                    break


def dumps(v):
    w = Writer()
    w.value(v)
    return bytes(w.getvalue())
