# Batches: encode -> decode gives the readings back exactly, and hostile bytes give clear errors.
# Runs under CPython and under MicroPython.
#
# Decoding is the consumer's job (the ingest, `tether decode`), never the board's: this module
# holds encoders, decoders and, for inflate, a 32 KiB deflate window at once, which is more than
# a board ever loads. The board's side (the encoder, the buffer) is tested at 64k elsewhere.
MICROPYTHON_HEAP = "256k"
import array
import random

from agent import batch, batch_decode, cbor
from agent.schema import Schema
from agent.shown import shown
from support import raises

T0 = 1763856000000
SCHEMA = Schema([("ink_c", "%", 1, -1), ("pills", "count", 1, 0), ("flow", "l/min", 25, -2),
                 ("rpm", "", 1, 2)])
SCHEMAS = {SCHEMA.id: SCHEMA}
# 100000 zero bytes, raw deflate: a small body that expands far past a decoder's limit.
ZERO_BOMB = bytes.fromhex("edc13101000000c2a0f54f6d0d0fa0" + "00" * 96 + "805703")


def rows(seed, n, whole_seconds=True):
    """n rows: irregular times (slots shared by several channels, gaps, ms when asked), channels
    in and out, values jumping, drifting and near the +-2**30 limit."""
    rnd = random.Random(seed) if hasattr(random, "Random") else None
    r = rnd.randint if rnd else random.randint
    if rnd is None:
        random.seed(seed)
    ts = array.array("i", bytes(4 * n))
    chs = array.array("B", bytes(n))
    vals = array.array("i", bytes(4 * n))
    t = 0
    v = [0, 60, -8, 1000]
    for i in range(n):
        if r(0, 3) == 0:
            t += r(1, 30) * 1000 + (0 if whole_seconds else r(0, 999))
        c = r(0, 3)
        k = r(0, 9)
        if k == 0:
            v[c] = r(-(2 ** 30) + 1, 2 ** 30 - 1)
        elif k < 4:
            v[c] += r(-3, 3)
        ts[i] = t
        chs[i] = c
        vals[i] = v[c]
    return ts, chs, vals


def expected(base, ts, chs, vals, n):
    out = []
    for i in range(n):
        out.append((base + ts[i], SCHEMA.names[chs[i]], SCHEMA.value(chs[i], vals[i])))
    return out


def by_slot(readings):
    # Decoders order readings by time slot, then channel: rows of one slot may come in any order.
    out = []
    i = 0
    while i < len(readings):
        j = i
        while j < len(readings) and readings[j][0] == readings[i][0]:
            j += 1
        # A full sort key: MicroPython's sort is not stable.
        group = [(SCHEMA.index[r[1]], k, r) for k, r in enumerate(readings[i:j])]
        group.sort()
        out.extend([g[2] for g in group])
        i = j
    return out


def encode(encoding, ts, chs, vals, n, seq=7, dropped=0, synced=True, max_bytes=1536):
    e = batch.Encoder("dev-9", SCHEMA, encoding, False, max_bytes, 64)
    return bytes(e.encode(T0, ts, chs, vals, 0, n, seq, 3, dropped, synced))


def test_compact_batches_decode_to_exactly_the_readings_encoded():
    for seed in range(6):
        n = 1 + seed * 12
        ts, chs, vals = rows(seed, n, whole_seconds=seed % 2 == 0)
        b = batch_decode.decode(encode("compact", ts, chs, vals, n), SCHEMAS)
        assert b.readings == by_slot(expected(T0, ts, chs, vals, n)), seed


def test_senml_batches_decode_to_exactly_the_readings_encoded():
    for seed in range(6):
        n = 1 + seed * 12
        ts, chs, vals = rows(seed, n, whole_seconds=seed % 2 == 0)
        b = batch_decode.decode(encode("senml", ts, chs, vals, n), SCHEMAS)
        assert b.readings == by_slot(expected(T0, ts, chs, vals, n)), seed
        units = {"ink_c": "%", "pills": "count", "flow": "l/min", "rpm": ""}
        for name in b.units:
            assert b.units[name] == units[name], (seed, name)


def test_a_clock_stepping_back_inside_a_batch_round_trips():
    ts = array.array("i", [0, 0, 10000, 4000, 4000, 9000, 3000000])
    chs = array.array("B", [0, 1, 0, 0, 1, 0, 1])
    vals = array.array("i", [1, 2, 3, 4, 5, 6, 7])
    for encoding in ("senml", "compact"):
        got = batch_decode.decode(encode(encoding, ts, chs, vals, 7), SCHEMAS).readings
        assert sorted(got) == sorted(expected(T0, ts, chs, vals, 7)), encoding
        if encoding == "compact":
            assert [r[0] - T0 for r in got] == [0, 0, 10000, 4000, 4000, 9000, 3000000]


def test_a_deflating_encoder_deflates_where_the_interpreter_can_and_sends_plain_where_not():
    # CPython compresses with zlib; MicroPython with `deflate` where the build can compress, and
    # the unix build in these tests cannot (nor has it zlib): its batches go plain, still whole.
    import sys
    can = batch.compressor() is not None
    if sys.implementation.name == "cpython":
        assert can
    n = 60
    ts, chs, vals = rows(3, n)
    # SenML repeats its names: a body deflate always makes smaller (a body it would not is sent
    # plain)
    e = batch.Encoder("dev-9", SCHEMA, "senml", True, 4096, 64)
    data = bytes(e.encode(T0, ts, chs, vals, 0, n, 7, 3, 0, True))
    b = batch_decode.decode(data, SCHEMAS)
    assert b.deflated == can
    assert sorted(b.readings) == sorted(expected(T0, ts, chs, vals, n))
    plain = encode("senml", ts, chs, vals, n, max_bytes=4096)
    assert (len(data) < len(plain)) if can else data == plain


def test_values_come_back_as_the_decimals_they_were():
    ts = array.array("i", [0, 0, 0, 0])
    chs = array.array("B", [0, 1, 2, 3])
    vals = array.array("i", [714, 60, 7, 3])  # 71.4 %, 60 pills, 1.75 l/min, 300 rpm
    for encoding in ("senml", "compact"):
        got = batch_decode.decode(encode(encoding, ts, chs, vals, 4), SCHEMAS).readings
        assert [r[2] for r in got] == [71.4, 60, 1.75, 300], encoding
        assert [type(r[2]) for r in got] == [float, int, float, int], encoding


def test_envelope_carries_device_sequence_boot_dropped_and_clock_state():
    ts, chs, vals = rows(1, 10)
    for encoding in ("senml", "compact"):
        data = encode(encoding, ts, chs, vals, 10, seq=123456, dropped=4200, synced=False)
        b = batch_decode.decode(data, SCHEMAS)
        assert (b.device, b.seq, b.boot, b.dropped, b.synced, b.deflated) == (
            "dev-9", 123456, 3, 4200, False, False)
        assert batch.seq_of(data) == 123456
        assert b.encoding == (1 if encoding == "compact" else 0)


def test_rows_that_do_not_fit_the_byte_limit_raise_buffer_full():
    ts, chs, vals = rows(2, 200)
    for encoding in ("senml", "compact"):
        raises(cbor.BufferFull, encode, encoding, ts, chs, vals, 200, 7, 0, True, 120)


def test_every_truncation_of_a_batch_is_rejected_with_a_cbor_error():
    ts, chs, vals = rows(3, 30)
    for encoding in ("senml", "compact"):
        data = encode(encoding, ts, chs, vals, 30)
        for cut in range(len(data)):
            raises(cbor.CBORError, batch_decode.decode, data[:cut], SCHEMAS)


def test_mutated_batches_decode_or_raise_cbor_errors_never_anything_else():
    ts, chs, vals = rows(4, 40)
    rnd = random.Random(5) if hasattr(random, "Random") else None
    r = rnd.randint if rnd else random.randint
    for encoding in ("senml", "compact"):
        data = encode(encoding, ts, chs, vals, 40)
        for _ in range(150):
            bad = bytearray(data)
            for _ in range(r(1, 3)):
                bad[r(0, len(bad) - 1)] = r(0, 255)
            try:
                batch_decode.decode(bytes(bad), SCHEMAS)
            except cbor.CBORError:
                pass


def test_compact_batch_without_its_schema_names_the_schema_it_needs():
    ts, chs, vals = rows(1, 5)
    exc = raises(cbor.Malformed, batch_decode.decode, encode("compact", ts, chs, vals, 5), {})
    assert str(SCHEMA.id) in str(exc)


def test_other_format_versions_and_unknown_flags_are_rejected():
    ts, chs, vals = rows(1, 5)
    data = bytearray(encode("senml", ts, chs, vals, 5))
    assert data[1] == 1  # the version follows the array head
    data[1] = 2
    exc = raises(cbor.Malformed, batch_decode.decode, bytes(data), SCHEMAS)
    assert "version 2" in str(exc)
    good = encode("senml", ts, chs, vals, 5)
    env = [1, "dev-9", 7, 3, 0, 0, 0x80, b""]
    exc = raises(cbor.Malformed, batch_decode.decode, cbor.dumps(env), SCHEMAS)
    assert "flags" in str(exc)
    assert batch_decode.decode(good, SCHEMAS).seq == 7


def test_a_body_that_is_not_deflate_data_is_rejected():
    env = [1, "dev-9", 7, 3, 0, 0, 2, b"\xff\xfe\xfd\xfc not deflate"]
    raises(cbor.Malformed, batch_decode.decode, cbor.dumps(env), SCHEMAS)


def test_an_empty_or_cut_deflated_body_is_a_decode_error_on_both_interpreters():
    # MicroPython's inflater raised EOFError out of the decoder for an empty body
    for body in (b"", b"\x4b"):
        env = [1, "dev-9", 7, 3, 0, 0, 2, body]
        raises(cbor.DecodeError, batch_decode.decode, cbor.dumps(env), SCHEMAS)


def test_a_deflate_bomb_stops_at_the_decoders_limit():
    env = [1, "dev-9", 7, 3, 0, 0, 2, ZERO_BOMB]
    exc = raises(cbor.Malformed, batch_decode.decode, cbor.dumps(env), SCHEMAS, 0, 16384)
    assert "16384" in str(exc)


def test_compact_body_with_counts_beyond_its_bits_is_rejected():
    # gamma(2**20) slots in a 5-byte bit string.
    body = cbor.dumps([SCHEMA.id, 0, 1763856000, b"\x00\x00\x08\x00\x00"])
    env = [1, "dev-9", 7, 3, 0, 1, 1, body]
    raises(cbor.CBORError, batch_decode.decode, cbor.dumps(env), SCHEMAS)


def test_senml_decoder_reads_foreign_packs_and_rejects_must_understand_fields():
    from agent import senml_decode
    pack = [{-2: "urn:dev:ow:10e2073a01080063:", -3: 1320067464, 0: "voltage", 1: "V", 2: 120.1},
            {0: "current", 6: -5, 2: 1.2}, {0: "current", 6: -4, 2: cbor.Tag(4, [-1, 13])}]
    got = senml_decode.decode(pack)
    assert got[0] == ("urn:dev:ow:10e2073a01080063:voltage", "V", 1320067464000, 120.1)
    assert got[1] == ("urn:dev:ow:10e2073a01080063:current", "", 1320067459000, 1.2)
    assert got[2][3] == 1.3
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: 1, "bad_": 1}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: "not a number"}])


def test_senml_numbers_past_64_bits_and_float_times_past_any_clock_are_refused():
    from agent import senml_decode
    big = 1 << 65  # added to a float base value it overflows on CPython, and becomes inf on MicroPython
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", -5: 1.5, 2: big}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: cbor.Tag(4, [-64, big])}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: 1, 6: 1e300}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: 1, -3: big}])
    top = (1 << 63) - 1  # what a signed 64-bit column holds: 2**63 and 10**64 are refused
    # 2**40 s: a time a single-precision float (an ESP32's) holds as exactly as a double
    assert senml_decode.decode([{0: "x", 2: top, 6: 2.0 ** 40}]) == [
        ("x", "", 2 ** 40 * 1000, top)]
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: 1 << 63}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: -(1 << 63) - 1}])
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: cbor.Tag(4, [64, 1])}])
    assert senml_decode.decode([{0: "x", 2: cbor.Tag(4, [18, 9]), 6: 0}])[0][3] == 9 * 10 ** 18


def test_a_schema_document_with_a_huge_resolution_is_refused():
    for exponent, mantissa in ((1000000, 1), (-65, 1), (0, 1 << 64), (0, 0)):
        doc = cbor.dumps({"channels": [["x", "", cbor.Tag(4, [exponent, mantissa])]]})
        raises(cbor.Malformed, Schema.from_cbor, doc)


def test_a_boolean_where_a_body_or_schema_wants_an_integer_is_refused():
    # CPython's bool is an int: 4([true, 20]) was a reading of 200, a compact body's exp false
    # and t0 true were 0 and 1, and a schema's resolution 4([false, true]) a channel's
    from agent import compact_decode, senml_decode
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", 2: cbor.Tag(4, [True, 20])}])
    for exp, t0 in ((False, 1000), (0, True), (0.0, 1000)):
        raises(cbor.Malformed, compact_decode.decode, cbor.dumps([SCHEMA.id, exp, t0, b"\xf0"]),
               SCHEMA)
    doc = cbor.dumps({"channels": [["x", "", cbor.Tag(4, [False, True])]]})
    raises(cbor.Malformed, Schema.from_cbor, doc)


def test_envelope_numbers_past_a_signed_64_bit_integer_are_refused():
    # 2**63 was decoded here and then refused by the ingest's 64-bit columns.
    env = [1, "dev-9", 1 << 63, 3, 0, 0, 0, cbor.dumps([])]
    raises(cbor.Malformed, batch_decode.read_envelope, cbor.dumps(env))
    env[2] = (1 << 63) - 1
    assert batch_decode.read_envelope(cbor.dumps(env)).seq == (1 << 63) - 1


def test_an_envelope_version_or_encoding_of_another_type_is_refused():
    # 1.0 and false are equal to 1 and 0 in Python, not in CBOR: an implementer's encoder bug
    # must not pass.
    for bad in ([1.0, "dev-9", 1, 3, 0, 0, 0, cbor.dumps([])],
                [True, "dev-9", 1, 3, 0, 0, 0, cbor.dumps([])],
                [1, "dev-9", 1, 3, 0, False, 0, cbor.dumps([])]):
        raises(cbor.Malformed, batch_decode.read_envelope, cbor.dumps(bad))


def test_a_bignum_or_an_array_where_a_batch_has_a_number_is_refused_in_a_short_message():
    # A bignum (tag 2) of 2000 bytes: CPython will not format an int of over 4300 digits, so a
    # message that showed it with %r would raise ValueError instead of cbor.Malformed.
    big = b"\xc2\x59\x07\xd0" + b"\xff" * 2000
    d = cbor.dumps
    bad = [
        b"\x88" + big + d(["dev-9", 7, 3, 0, 0, 0, b""])[1:],                 # version
        b"\x88" + d([1, "dev-9", 7, 3, 0])[1:] + big + d([0, b""])[1:],        # encoding
        d([1, "dev-9", 7, 3, 0, 1, 0, b"\x84" + big + d([0, 0, b""])[1:]]),   # schema id
        d([1, "dev-9", 7, 3, 0, 1, 0, d([[1], 0, 0, b""])]),
        d([1, "dev-9", 7, 3, 0, 1, 0, d([{1: 1}, 0, 0, b""])]),
        d([1, "dev-9", 7, 3, 0, 1, 0, b"\x84\xd8\x63" + big + d([0, 0, b""])[1:]]),  # tag 99
    ]
    for data in bad:
        exc = raises(cbor.Malformed, batch_decode.decode, data, SCHEMAS)
        assert len(str(exc)) < 200, str(exc)


def test_a_tag_shows_a_bignum_it_holds_without_formatting_it():
    assert shown(cbor.Tag(2, 1 << 20000)) == "Tag(2, <int of more than 64 bits>)"
    assert shown(cbor.Tag(99, [1, "x"])) == "Tag(99, [1, 'x'])"
    assert shown(list(range(20))) == "<list of 20>"
    assert shown("x" * 100) == "'%s'..." % ("x" * 37)


def test_a_senml_sum_or_time_past_a_signed_64_bit_integer_is_refused():
    from agent import senml_decode
    top = (1 << 63) - 1
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", -5: top, 2: top}])    # bv + v
    raises(cbor.Malformed, senml_decode.decode, [{0: "x", -3: 1 << 62, 2: 1}])  # bt in ms
    assert senml_decode.decode([{0: "x", -5: 1, 2: top - 1, 6: 0}])[0][3] == top

