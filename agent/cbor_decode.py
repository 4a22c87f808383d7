# Decoding CBOR (RFC 8949), for CPython and MicroPython alike: agent/cbor.py has the encoder,
# the error types and Tag/Simple/UNDEFINED.
#
# The decoder never allocates more than the input can hold: every declared length is checked
# against the bytes left first, nesting is limited, and every error names its byte offset.
import struct

from agent.cbor import (MAX_DEPTH, UNDEFINED, DecodeError, Malformed, Simple, Tag, TooDeep,
                        TrailingData, Truncated)

# A map key is a CBOR integer (64 bits), text or bytes; not a bignum. Both ends made once: a
# negation made per key is a heap object on a board.
_KEY_HIGH = 1 << 64
_KEY_LOW = -(1 << 64)


def _utf8_strict(raw):
    """False if raw has an overlong form, a surrogate or a code point past U+10FFFF.

    MicroPython's decode only checks the byte structure (lead and continuation bytes), which
    lets those through; CPython rejects them (RFC 3629), and so must both. raw has already
    passed decode, so every byte >= 0xC0 is a lead byte with a continuation byte after it.
    """
    for i in range(len(raw)):
        b = raw[i]
        if b >= 0xC0:
            c = raw[i + 1]
            if (b < 0xC2 or b > 0xF4 or (b == 0xE0 and c < 0xA0) or (b == 0xED and c > 0x9F)
                    or (b == 0xF0 and c < 0x90) or (b == 0xF4 and c > 0x8F)):
                return False
    return True


class Reader:
    """Decodes CBOR items one after another from a bytes-like object.

    Every length header is checked against the bytes left before anything is allocated, nesting
    is limited to max_depth, and every error names the byte offset.
    """

    def __init__(self, data, pos=0, end=None, max_depth=MAX_DEPTH):
        self.data = memoryview(data)
        self.pos = pos
        self.end = len(data) if end is None else end
        self.max_depth = max_depth

    def at_end(self):
        return self.pos >= self.end

    def _need(self, n, start):
        if self.pos + n > self.end:
            short = self.pos + n - self.end
            raise Truncated("the input ends %d byte%s early" % (short, "" if short == 1 else "s"),
                            start)

    def head(self):
        """(major, argument, start offset) of the next item; argument None means indefinite."""
        start = self.pos
        self._need(1, start)
        ib = self.data[self.pos]
        self.pos += 1
        major = ib >> 5
        ai = ib & 31
        if ai < 24:
            return major, ai, start
        if ai == 31:
            if major in (0, 1, 6):
                raise Malformed("indefinite length is not allowed for major type %d" % major, start)
            return major, None, start
        if ai > 27:
            raise Malformed("reserved additional information %d" % ai, start)
        size = 1 << (ai - 24)
        self._need(size, start)
        n = 0
        for b in self.data[self.pos:self.pos + size]:
            n = (n << 8) | b
        self.pos += size
        return major, n, start

    _chunk_head = head    # each chunk's of an indefinite-length string (Counted counts them)

    def item(self):
        return self._item(0)

    def _item(self, depth):
        if depth > self.max_depth:
            raise TooDeep("nesting deeper than %d" % self.max_depth, self.pos)
        major, n, start = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2 or major == 3:
            if n is None:
                return self._chunks(major)
            return self._string(major, n, start)
        if major == 4:
            if n is None:
                out = []
                while not self._break():
                    out.append(self._item(depth + 1))
                return out
            if n > self.end - self.pos:
                raise Truncated("array of %d items cannot fit in %d bytes" % (n, self.end - self.pos), start)
            # Made at its size, not grown by appends: a list of a few hundred items grown one
            # at a time leaves its smaller copies behind as holes in a board's heap.
            out = [None] * n
            for i in range(n):
                out[i] = self._item(depth + 1)
            return out
        if major == 5:
            out = {}
            if n is None:
                while not self._break():
                    self._pair(out, depth)
                return out
            if 2 * n > self.end - self.pos:
                raise Truncated("map of %d pairs cannot fit in %d bytes" % (n, self.end - self.pos), start)
            for _ in range(n):
                self._pair(out, depth)
            return out
        if major == 6:
            inner = self._item(depth + 1)
            if n == 2 or n == 3:
                if not isinstance(inner, (bytes, bytearray)):
                    raise Malformed("bignum tag %d needs a byte string" % n, start)
                value = int.from_bytes(inner, "big") if len(inner) else 0
                return value if n == 2 else -1 - value
            return Tag(n, inner)
        return self._simple(n, start)

    def _pair(self, out, depth):
        kpos = self.pos
        key = self._item(depth + 1)
        try:
            hash(key)
        except TypeError:
            raise Malformed("a map key must be a number, string or other simple value", kpos)
        if isinstance(key, int) and (key >= _KEY_HIGH or key < _KEY_LOW):
            # Bignum keys k x (2**61 - 1) all hash alike on CPython: a map of them took its
            # decoder time that grows with the square of its size (a 585 KB health report
            # held the ingest 24 s).
            raise Malformed("a map key past 64 bits", kpos)
        if key in out:
            # The key is not in the message: repr of a long bignum raises on CPython (digit
            # limit) and a long string would be copied; kpos says where it is.
            raise Malformed("duplicate map key", kpos)
        out[key] = self._item(depth + 1)

    def _break(self):
        if self.pos >= self.end:
            raise Truncated("indefinite-length item has no break", self.pos)
        if self.data[self.pos] == 0xFF:
            self.pos += 1
            return True
        return False

    def _string(self, major, n, start):
        self._need(n, start)
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        if major == 2:
            return raw
        try:
            s = raw.decode("utf-8")
        except UnicodeError:
            raise Malformed("text string is not valid UTF-8", start)
        if len(s) != n and not _utf8_strict(raw):  # len(s) == n: all ASCII, nothing to check
            raise Malformed("text string is not valid UTF-8", start)
        return s

    def _chunks(self, major):
        parts = []
        while not self._break():
            m, n, cstart = self._chunk_head()
            if m != major or n is None:
                raise Malformed("a chunk of an indefinite-length string must be a definite string "
                                "of the same type", cstart)
            parts.append(self._string(major, n, cstart))
        return (b"" if major == 2 else "").join(parts)

    def _simple(self, n, start):
        if n is None:
            raise Malformed("unexpected break", start)
        size = self.pos - start - 1
        if size == 0 or size == 1:
            if size == 1 and n < 32:
                raise Malformed("simple value %d in two-byte form" % n, start)
            if n == 20:
                return False
            if n == 21:
                return True
            if n == 22:
                return None
            if n == 23:
                return UNDEFINED
            return Simple(n)
        if size == 2:
            return _half(self.data[start + 1] << 8 | self.data[start + 2])
        if size == 4:
            return struct.unpack(">f", bytes(self.data[start + 1:start + 5]))[0]
        return struct.unpack(">d", bytes(self.data[start + 1:start + 9]))[0]


def _half(h):
    """A half float's value from its 16 bits: by hand, since struct's "e" came in MicroPython
    1.23 and a command's shortest float form is often a half (0.5, 1.5)."""
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 31:
        v = float("nan") if m else float("inf")
    else:
        # a subnormal (e 0) is m * 2^-24, a normal one (1024 + m) * 2^(e - 25): both exact
        v = (m + (1024 if e else 0)) * 2.0 ** ((e or 1) - 25)
    return -v if h & 0x8000 else v


class TooMany(DecodeError):
    """More items than the limit, in all."""


class Counted(Reader):
    """A Reader that takes at most `most` items in all, an array's or a map's counted at its
    head: 2 KB of CBOR holds 2,000 empty maps, more than a board's heap (a command's arguments
    are a few dozen)."""

    def __init__(self, data, max_depth, most):
        Reader.__init__(self, data, 0, None, max_depth)
        self.left = self.most = most

    def _item(self, depth):
        self.left -= 1
        if self.left >= 0 and self.pos < self.end and self.data[self.pos] >> 5 in (4, 5):
            pos = self.pos
            major, n, _ = self.head()
            self.pos = pos
            if n is not None and n * (major - 3) > self.left:  # a map's pairs are 2 items
                self.left = -1
        if self.left < 0:
            raise TooMany("more than %d items" % self.most, self.pos)
        return Reader._item(self, depth)

    def _chunk_head(self):
        # a chunk is an item too: 2 KB of empty ones built 2,000 strings
        self.left -= 1
        if self.left < 0:
            raise TooMany("more than %d items" % self.most, self.pos)
        return self.head()


def loads(data, max_depth=MAX_DEPTH, most=None):
    """Exactly one CBOR item from data, of at most `most` items in all where given; anything
    after it is an error."""
    r = Reader(data, max_depth=max_depth) if most is None else Counted(data, max_depth, most)
    v = r.item()
    if not r.at_end():
        raise TrailingData("%d bytes follow the item" % (r.end - r.pos), r.pos)
    return v
