"""agent/cbor.py against cbor2 (the independent reference) and against itself on MicroPython.

Property tests (hypothesis) over nested values: round trips both ways through cbor2, byte
equality with cbor2's canonical encoder, acceptance of whatever cbor2 writes, and a fuzzer that
may only ever see CBORError. Then the same values encoded by one MicroPython process must give
the bytes CPython gives, and hostile headers must fail fast in a 64k MicroPython heap.
"""
import math
import random
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import cbor, cbor_decode

DEEP = 1000  # max_depth for round trips: generated values may nest past the default limit

# --- values -------------------------------------------------------------------------------------

EDGE_INTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64 - 1,
             2 ** 64, 2 ** 64 + 1, 2 ** 72, -1, -24, -25, -256, -257, -2 ** 32, -2 ** 32 - 1,
             -2 ** 64, -2 ** 64 - 1, -2 ** 64 - 2, 10 ** 30, -10 ** 30]
EDGE_FLOATS = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 2.2250738585072014e-308,
               2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -24, 2.0 ** -14, 65504.0, 65505.0, 65536.0,
               2.0 ** -149, 2.0 ** -150, 2.0 ** -126, 3.4028234663852886e+38, 2.0 ** 128,
               1.1, 0.1, 1e300, -4.1, 100000.0, 1 + 2.0 ** -10, 1 + 2.0 ** -11, 1 + 2.0 ** -23,
               1 + 2.0 ** -24]

ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-2 ** 70, 2 ** 70), st.integers())
floats = st.one_of(
    st.sampled_from(EDGE_FLOATS),
    st.floats(),                                   # incl. nan, inf, subnormals
    st.floats(width=16), st.floats(width=32),      # values exact in half and single
    st.floats(width=16, min_value=-2.0 ** -14, max_value=2.0 ** -14),   # half subnormals
    st.floats(width=32, min_value=-2.0 ** -126, max_value=2.0 ** -126), # single subnormals
)
texts = st.text(st.characters(codec="utf-8"), max_size=30)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=30))
# Map keys a decoder takes: a bignum key is refused (agent/cbor_decode.py: keys k x (2**61 - 1)
# hash alike), test_cbor.py::test_a_bignum_map_key_is_refused.
keys = st.one_of(st.sampled_from([i for i in EDGE_INTS if -2 ** 64 <= i < 2 ** 64]),
                 st.integers(-2 ** 64, 2 ** 64 - 1), texts)


def values_with(key_strategy):
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=5),
                                   st.dictionaries(key_strategy, children, max_size=5)),
        max_leaves=20)


values = values_with(keys)
# Keys whose encodings sort the same bytewise (RFC 8949 section 4.2.1) and length-first (RFC 7049
# canonical, section 4.2.3): all ints 0..23 are one byte, all one-letter texts two bytes.
agreeing_values = values_with(st.one_of(st.integers(0, 23), st.sampled_from("abcxyz")))


def same(a, b):
    """Deep equality that tells 1 from 1.0 from True and -0.0 from 0.0, and has NaN == NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):  # keys matched by their encoding: a NaN key is not == to itself
        if len(a) != len(b):
            return False
        b_by_key = {cbor.dumps(k): x for k, x in b.items()}
        return all(same(x, b_by_key.get(cbor.dumps(k), _MISSING)) for k, x in a.items())
    return a == b


_MISSING = object()


def ref_deterministic(v):
    """RFC 8949 section 4.2.1 encoding with every scalar encoded by cbor2 (canonical=True).

    Only the container framing and the bytewise key sort are done here; cbor2 cannot sort that
    way itself (see test_cbor2_canonical_sorts_length_first_where_rfc_8949_sorts_bytewise).
    """
    if isinstance(v, list):
        return _head(4, len(v)) + b"".join(ref_deterministic(x) for x in v)
    if isinstance(v, dict):
        pairs = sorted((ref_deterministic(k), ref_deterministic(x)) for k, x in v.items())
        return _head(5, len(v)) + b"".join(k + x for k, x in pairs)
    return cbor2.dumps(v, canonical=True)


def _head(major, n):
    head = bytearray(cbor2.dumps(n))  # an unsigned int's head is the head we want
    head[0] |= major << 5
    return bytes(head)


# --- (a), (b): round trips -------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(values)
def test_cbor2_decodes_our_encoding_to_the_same_value(v):
    assert same(cbor2.loads(cbor.dumps(v)), v)


@settings(max_examples=200, deadline=None)
@given(values)
def test_our_decoder_decodes_our_encoding_to_the_same_value(v):
    assert same(cbor_decode.loads(cbor.dumps(v), DEEP), v)


# --- (c): byte equality with cbor2's canonical encoder ------------------------------------------

@settings(max_examples=200, deadline=None)
@given(agreeing_values)
def test_our_bytes_equal_cbor2_canonical_where_both_key_orders_agree(v):
    assert cbor.dumps(v) == cbor2.dumps(v, canonical=True)


@settings(max_examples=200, deadline=None)
@given(values)
def test_our_bytes_equal_cbor2_scalars_in_bytewise_sorted_maps(v):
    assert cbor.dumps(v) == ref_deterministic(v)


def test_cbor2_canonical_sorts_length_first_where_rfc_8949_sorts_bytewise():
    # cbor2 6's canonical=True orders map keys shorter-encoding first (RFC 7049 section 3.9,
    # kept in RFC 8949 as section 4.2.3 "length-first"); RFC 8949 section 4.2.1, which Tether
    # follows, orders them by their bytes. They differ only when a longer key has smaller
    # bytes: 100 (0x1864) sorts before -1 (0x20) bytewise, after it length-first. Floats, ints,
    # bignums and lengths agree (the tests above).
    v = {-1: "a", 100: "b"}
    assert cbor.dumps(v) == bytes.fromhex("a2" "18646162" "206161")
    assert cbor2.dumps(v, canonical=True) == bytes.fromhex("a2" "206161" "18646162")


# --- (d): whatever cbor2 writes, we read --------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(values)
def test_our_decoder_reads_every_form_cbor2_writes(v):
    for enc in (cbor2.dumps(v),                              # floats as float64, keys unsorted
                cbor2.dumps(v, canonical=True),
                cbor2.dumps(v, indefinite_containers=True)):  # indefinite arrays and maps
        assert same(cbor_decode.loads(enc, DEEP), v), enc.hex()


# --- (e): the decoder under fuzz ------------------------------------------------------------------

def _loads_or_cbor_error(data):
    """loads(data), or None if it raised a CBORError; anything else propagates and fails."""
    try:
        return cbor_decode.loads(data)
    except cbor.CBORError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data), (exc, data.hex())
        return None


def _plain(v):
    """True for values made only of what cbor2 returns as the same Python types."""
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_plain(k) and _plain(x) for k, x in v.items())
    return v is None or isinstance(v, (bool, int, float, str, bytes))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_nothing_but_CBORError(data):
    _loads_or_cbor_error(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutated_encodings_raise_nothing_but_CBORError_and_agree_with_cbor2(v, data):
    enc = bytearray(cbor.dumps(v))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        at = data.draw(st.integers(0, len(enc)))
        byte = data.draw(st.sampled_from([0x00, 0x17, 0x18, 0x1B, 0x1F, 0x5B, 0x7F, 0x9B,
                                          0x9F, 0xBF, 0xC2, 0xF8, 0xFB, 0xFF])
                         | st.integers(0, 255))
        if kind == "set" and at < len(enc):
            enc[at] = byte
        elif kind == "insert":
            enc.insert(at, byte)
        elif kind == "delete" and at < len(enc):
            del enc[at]
        elif kind == "cut":
            del enc[at:]
    got = _loads_or_cbor_error(bytes(enc))
    if got is not None and _plain(got):
        # What we accept, the reference reads the same way.
        assert same(cbor2.loads(bytes(enc)), got), enc.hex()


@settings(max_examples=100, deadline=None)
@given(values)
def test_every_proper_prefix_of_an_encoding_is_truncated(v):
    enc = cbor.dumps(v)
    for cut in range(len(enc)):
        with pytest.raises(cbor.Truncated) as info:
            cbor_decode.loads(enc[:cut], DEEP)
        assert info.value.offset <= cut


@settings(max_examples=100, deadline=None)
@given(values, st.binary(min_size=1, max_size=4))
def test_bytes_after_an_encoding_are_trailing_data_at_its_end(v, extra):
    enc = cbor.dumps(v)
    with pytest.raises(cbor.TrailingData) as info:
        cbor_decode.loads(enc + extra, DEEP)
    assert info.value.offset == len(enc)


@settings(max_examples=100, deadline=None)
@given(values, st.integers(1, 8))
def test_fixed_writer_gives_the_bytes_of_dumps_or_BufferFull(v, short):
    enc = cbor.dumps(v)
    w = cbor.Writer(bytearray(len(enc)))
    w.value(v)
    assert bytes(w.getvalue()) == enc
    if short <= len(enc):
        with pytest.raises(cbor.BufferFull):
            cbor.Writer(bytearray(len(enc) - short)).value(v)


# --- shortest floats against an oracle ------------------------------------------------------------

def _shortest_by_struct(x):
    """The narrowest struct format that gives x back unchanged: an oracle for float_bits."""
    if math.isnan(x):
        return 2, 0x7E00
    for size, fmt, ufmt in ((2, ">e", ">H"), (4, ">f", ">I"), (8, ">d", ">Q")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == x:
            return size, struct.unpack(ufmt, packed)[0]
    raise AssertionError(x)


def test_float_bits_agrees_with_struct_for_every_half():
    for bits in range(0x10000):
        x = struct.unpack(">e", struct.pack(">H", bits))[0]
        assert cbor.float_bits(x) == _shortest_by_struct(x), hex(bits)


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 2 ** 32 - 1))
def test_float_bits_agrees_with_struct_for_single_bit_patterns(bits):
    x = struct.unpack(">f", struct.pack(">I", bits))[0]
    assert cbor.float_bits(x) == _shortest_by_struct(x)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.floats(), st.integers(0, 2 ** 64 - 1).map(
    lambda b: struct.unpack(">d", struct.pack(">Q", b))[0])))
def test_float_bits_agrees_with_struct_for_doubles(x):
    assert cbor.float_bits(x) == _shortest_by_struct(x)


# --- the same bytes on MicroPython --------------------------------------------------------------

def _bignum_key(v):
    """Whether v holds a map with an integer key past 64 bits (a decoder refuses it)."""
    if isinstance(v, dict):
        return any(isinstance(k, int) and not isinstance(k, bool) and not
                   -2 ** 64 <= k < 2 ** 64 or _bignum_key(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_bignum_key(x) for x in v)
    return False


def _random_value(rng, depth=0):
    kind = rng.randrange(10 if depth < 3 else 8)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(EDGE_INTS) + rng.choice([0, 0, 1, -1])
    if kind == 2:
        bits = rng.choice([5, 8, 16, 32, 63, 64, 65, 100, 200])
        return rng.choice([1, -1]) * rng.getrandbits(bits)
    if kind == 3:
        return rng.choice(EDGE_FLOATS)
    if kind == 4:
        fmt, ufmt, width = rng.choice([(">e", ">H", 16), (">f", ">I", 32), (">d", ">Q", 64)])
        return float(struct.unpack(fmt, struct.pack(ufmt, rng.getrandbits(width)))[0])
    if kind == 5:
        ranges = [(0x20, 0x7E), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF),
                  (0x10000, 0x10FFFF)]  # every UTF-8 length, no surrogates
        n = rng.choice([0, 1, 3, 10, 23, 24, 30])
        return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(n))
    if kind == 6 or kind == 7:
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 5, 23, 24, 40])))
    if kind == 8:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    out = {}
    for _ in range(rng.randrange(8)):
        key = _random_value(rng, 3) if rng.random() < 0.5 else rng.randint(-300, 300)
        if isinstance(key, (int, str)) and not isinstance(key, bool):
            out[key] = _random_value(rng, depth + 1)
    return out


def _literal(v):
    """Python source for v that MicroPython evaluates to exactly v.

    Floats go through their bit pattern and text through its UTF-8 bytes, so no difference in
    the two parsers (float rounding, string escapes) can make the inputs differ.
    """
    if v is None or isinstance(v, (bool, int, bytes)):
        return repr(v)
    if isinstance(v, float):
        return "F(%r)" % struct.pack(">d", v)
    if isinstance(v, str):
        return "S(%r)" % v.encode("utf-8")
    if isinstance(v, list):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (_literal(k), _literal(x)) for k, x in v.items()) + "}"
    raise TypeError(type(v))


MP_SCRIPT = """\
import struct
from agent.cbor import dumps
from agent.cbor_decode import loads

def F(b):
    return struct.unpack(">d", b)[0]

def S(b):
    return b.decode("utf-8")

VALUES = [
%s
]
for v in VALUES:
    enc = dumps(v)
    try:
        back = "same" if dumps(loads(enc, 1000)) == enc else "differs"
    except Exception as e:  # a bignum map key, which the decoder refuses
        back = "refused" if "map key past 64 bits" in str(e) else "error"
    print(enc.hex(), back)
"""


def test_micropython_encodes_every_value_to_the_bytes_cpython_does(micropython, tmp_path):
    rng = random.Random(8949)
    values = [_random_value(rng) for _ in range(400)]
    values += [{k: 0 for k in ("b", "a", 1, -1, 100, "aa", 2 ** 70, -2 ** 70, "\u00fc", "z")}]
    expected = [cbor.dumps(v).hex() for v in values]
    script = tmp_path / "encode_all.py"
    script.write_text(MP_SCRIPT % ",\n".join(_literal(v) for v in values), encoding="utf-8")
    # A big heap: the script compiles a few hundred literals on the interpreter; agent.cbor is
    # the .mpy a board runs.
    proc = micropython.run([str(script)], heap="32m")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert len(lines) == 2 * len(values), proc.stdout[-2000:]
    for i, v in enumerate(values):
        got, round_trip = lines[2 * i], lines[2 * i + 1]
        assert got == expected[i], (i, v)
        assert round_trip == ("refused" if _bignum_key(v) else "same"), (i, v)


HOSTILE = [  # (hex, times repeated, error, offset)
    ("5b8000000000000000" "0102", 1, "Truncated", 0),  # byte string of 2**63 bytes
    ("7b8000000000000000" "6162", 1, "Truncated", 0),  # text string of 2**63 bytes
    ("59" "9c40" "0102", 1, "Truncated", 0),           # 40000 bytes declared, 2 present
    ("9b0000000100000000" "0102", 1, "Truncated", 0),  # array of 2**32 items
    ("bb0000000100000000" "0102", 1, "Truncated", 0),  # map of 2**32 pairs
    ("99" "9c40" "0102", 1, "Truncated", 0),           # array of 40000 items
    ("81" "5f" "5b8000000000000000", 1, "Truncated", 2),
    ("c2" "5bffffffffffffffff", 1, "Truncated", 1),
    ("81", 10000, "TooDeep", 33),                       # 10,000 nested arrays
    ("9f", 10000, "TooDeep", 33),
    ("a100", 5000, "TooDeep", 65),
]

MP_HOSTILE = """\
import gc
from agent import cbor, cbor_decode
gc.collect()
print("free", gc.mem_free())
for hexed, times in %r:
    data = bytes.fromhex(hexed) * times
    gc.collect()
    gc.disable()
    before = gc.mem_free()
    try:
        cbor_decode.loads(data)
        print("accepted")
    except cbor.CBORError as exc:
        print(type(exc).__name__, exc.offset, before - gc.mem_free())
    gc.enable()
"""


def test_hostile_headers_fail_fast_under_micropython_with_a_64k_heap(micropython):
    code = MP_HOSTILE % ([(hexed, times) for hexed, times, _, _ in HOSTILE],)
    proc = micropython.run(["-c", code], heap="64k")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("free ")
    for (hexed, _, kind, offset), line in zip(HOSTILE, lines[1:]):
        name, at, used = line.split()
        assert (name, int(at)) == (kind, offset), (hexed[:24], line)
        # Nothing sized by a header; a bomb costs what 32 levels of lists and frames cost.
        assert int(used) < (2048 if kind == "Truncated" else 8192), (hexed[:24], line)
    assert len(lines) == 1 + len(HOSTILE)
