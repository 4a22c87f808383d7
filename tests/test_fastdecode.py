"""The ingest's fast decoder (ingest/fastdecode.py) gives exactly what agent/batch_decode gives:
the same envelope, readings (values of the same type), units and errors, for batches of every
encoding the agent sends and for bytes that are not batches at all."""
import array
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import batch, batch_decode
from agent.schema import Schema
from ingest import fastdecode

T0 = 1763856000000


@st.composite
def batches(draw, encodings=("compact", "senml"), unique_names=False):
    """(payload, schemas): a batch the agent's encoder makes of generated rows."""
    nch = draw(st.integers(1, 6))
    names = st.sampled_from(["a", "b", "c", "ink_c", "power", "pills"])
    channels = [(draw(names), draw(st.sampled_from(["", "%", "W"])),
                 draw(st.sampled_from([1, 1, 2, 25, 7])), draw(st.integers(-4, 3)))
                for _ in range(nch)]
    if unique_names:
        channels = [("ch%d" % i,) + c[1:] for i, c in enumerate(channels)]
    schema = Schema(channels)
    n = draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2 ** 32))
    rnd = random.Random(seed)
    whole = draw(st.booleans())
    jumps = draw(st.sampled_from([0, 0.05, 0.5]))  # big value jumps: escaped Rice codes
    steady = draw(st.booleans())  # mostly unchanged values: runs of zero deltas
    ts = array.array("q", bytes(8 * n))
    chs = array.array("B", bytes(n))
    vals = array.array("q", bytes(8 * n))
    t = 0
    v = [rnd.randint(-1000, 1000) for _ in range(nch)]
    present = [rnd.random() < 0.8 or c == 0 for c in range(nch)]
    for i in range(n):
        if rnd.random() < 0.4:
            t += rnd.choice([10000, 10000, 10000, rnd.randint(1, 30) * 1000]) + (
                0 if whole else rnd.randint(0, 999))
        c = rnd.choice([c for c in range(nch) if present[c]])
        if rnd.random() < jumps:
            v[c] = rnd.randint(-(2 ** 30), 2 ** 30)
        elif not steady or rnd.random() < 0.1:
            v[c] += rnd.randint(-50, 50)
        ts[i], chs[i], vals[i] = t, c, v[c]
    encoding = draw(st.sampled_from(encodings))
    enc = batch.Encoder("dev-1", schema, encoding, deflate=draw(st.booleans()),
                        max_bytes=65536, max_readings=n)
    data = bytes(enc.encode(T0 + draw(st.integers(-10 ** 6, 10 ** 6)), ts, chs, vals, 0, n,
                            draw(st.integers(0, 2 ** 40)), draw(st.integers(0, 99)),
                            draw(st.integers(0, 9)), draw(st.booleans())))
    return data, {schema.id: schema}


def outcome(fn, payload, schemas):
    """What decoding gives, comparable: the envelope, readings with each value's type, units, or
    the error's type and message."""
    try:
        b = fn(payload, schemas)
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc), str(exc))
    return ((b.device, b.seq, b.boot, b.dropped, b.encoding, b.synced, b.deflated, b.schema_id),
            [(t, n, v, type(v)) for t, n, v in b.readings], list(b.units.items()))


def same_as_reference(payload, schemas):
    ref = outcome(batch_decode.decode, payload, schemas)
    assert outcome(fastdecode.decode, payload, schemas) == ref
    if ref[0] != "error":
        got = fastdecode.decode(payload, schemas)
        want = fastdecode.from_reference(batch_decode.decode(payload, schemas))
        assert got.columns == want.columns
        assert (got.count, got.t_first, got.t_last, got.text) == (
            want.count, want.t_first, want.t_last, want.text)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches())
def test_every_batch_decodes_as_the_reference_decodes_it(b):
    same_as_reference(*b)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches(encodings=("compact",), unique_names=True))
def test_compact_batches_take_the_fast_path(b):
    payload, schemas = b
    fast = fastdecode._fast(payload, schemas)  # raises Unusual if it would fall back
    ref = batch_decode.decode(payload, schemas)
    assert [(t, n, v, type(v)) for t, n, v in fast.readings] == [
        (t, n, v, type(v)) for t, n, v in ref.readings]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches(), st.data())
def test_damaged_batches_fail_or_decode_as_the_reference_does(b, data):
    payload, schemas = b
    damaged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "byte", "cut", "insert"]))
        at = data.draw(st.integers(0, len(damaged) - 1))
        if how == "flip":
            damaged[at] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "byte":
            damaged[at] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del damaged[at:]
            if not damaged:
                damaged = bytearray(b"\x88")
        else:
            damaged[at:at] = bytes([data.draw(st.integers(0, 255))])
    same_as_reference(bytes(damaged), schemas)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches(encodings=("compact",)))
def test_a_batch_whose_schema_is_missing_fails_as_the_reference_does(b):
    same_as_reference(b[0], {})


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=64))
def test_random_bytes_fail_or_decode_as_the_reference_does(payload):
    same_as_reference(payload, {})


def test_numbers_past_a_signed_64_bit_integer_fail_as_the_reference_says():
    # The fast path took an envelope seq of 2**63 that the reference refuses, and both passed a
    # value of 10**19 (a schema of resolution 10**12) that the database then refused.
    big = Schema([("p", "W", 1, 12)])
    enc = batch.Encoder("dev-1", big, "compact", False, 65536, 4)
    ts = array.array("q", [0, 10000])
    chs = array.array("B", [0, 0])
    payload = bytes(enc.encode(T0, ts, chs, array.array("q", [10 ** 7, 5]), 0, 2, 1, 1, 0, True))
    assert outcome(batch_decode.decode, payload, {big.id: big})[0] == "error"
    same_as_reference(payload, {big.id: big})
    small = Schema([("p", "W", 1, -1)])
    enc = batch.Encoder("dev-1", small, "compact", False, 65536, 4)
    for seq in (2 ** 63 - 1, 2 ** 63):
        payload = bytes(enc.encode(T0, ts, chs, array.array("q", [1, 2]), 0, 2, seq, 1, 0, True))
        same_as_reference(payload, {small.id: small})
    assert outcome(batch_decode.decode, payload, {small.id: small})[0] == "error"
