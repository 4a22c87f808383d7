"""The ingest's handler path (ingest/handlers.py, Ingest._commit: parse the topic, decode,
store, each message in its own savepoint) fed random topics and payloads by hypothesis: no
exception escapes, nothing is an internal error, and every message that is not stored is counted
as malformed, with a row in `malformed`. No broker: the messages go straight to the writer's
code, as paho's thread hands them over. (The decoders and the command parser have their own
fuzz tests in tests/test_fuzz_entry_points.py.)"""
import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from agent import cbor, ids
from firmware import batchfile
from firmware.profile.compile import compile as compile_profile
from simulator import reference
from ingest import Ingest, connect_db

PREFIX = "tether/v1"
DEVICE = "fz-1"


def _good():
    profile, errors = compile_profile("examples/reference-printer.yaml")
    assert not errors
    lines = [json.dumps(r) for r in reference.readings(hours=1)]
    out = {}
    for encoding in ("compact", "senml"):
        p = copy.deepcopy(profile)
        p["uplink"]["encoding"] = encoding
        schema, batches, _ = batchfile.encode(p, lines, DEVICE)
        out[encoding] = batches[0]
        out["schema"] = schema.to_cbor()
    return out


GOOD = _good()
KINDS = ["up/batch", "up/event", "up/health", "up/schema", "status", "up/other", "down/cmd", ""]

devices = st.one_of(
    st.just(DEVICE), st.sampled_from(["..", ".", "<script>", "a" * 5000, "a" * 65, "-x", ""]),
    st.text(max_size=80), st.text(alphabet="abz09.-_/+#", max_size=12))
topics = st.one_of(
    st.builds(lambda d, k: "%s/%s/%s" % (PREFIX, d, k) if k else "%s/%s" % (PREFIX, d),
              devices, st.sampled_from(KINDS)),
    st.text(max_size=120))
cbor_items = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70),
              st.floats(), st.text(max_size=20), st.binary(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=8),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner,
                                            max_size=6)),
    max_leaves=30)


@st.composite
def mutated(draw):
    """A real batch or schema with a few bytes changed, cut short or extended."""
    data = bytearray(draw(st.sampled_from(sorted(GOOD.values()))))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


payloads = st.one_of(st.binary(max_size=300), cbor_items.map(cbor.dumps), mutated(),
                     st.sampled_from(sorted(GOOD.values()) + [b"online", b"offline", b""]))


def fresh_ingest():
    i = Ingest("127.0.0.1", 1, ":memory:")
    i.client_id = "fuzz"
    i._db = connect_db(":memory:")
    return i


def stored(db):
    return sum(db.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
               for t in ("batches", "held", "events", "replies", "health", "schemas"))


# Derandomized and without an example database, as tests/test_fuzz_entry_points.py: the same
# examples every run, so the test cannot flake.
@settings(derandomize=True, database=None, max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=6))
def test_random_topics_and_payloads_never_escape_and_odd_ones_count_as_malformed(messages):
    i = fresh_ingest()
    try:
        group = [(t, p, 0, k, 1.0e9 + k, 0) for k, (t, p) in enumerate(messages)]
        i._commit(group, False)
        db = i._db
        s = i.stats()
        assert s["messages"] == len(messages)
        reasons = [r for (r,) in db.execute("SELECT reason FROM malformed")]
        assert s["malformed"] == len(reasons)
        assert not [r for r in reasons if r.startswith("internal error")], reasons
        # Every message is stored somewhere, counted as a duplicate, or malformed (a status or
        # schema being cleared, and a status, leave no row of their own).
        assert stored(db) + s["duplicates"] + s["event_duplicates"] + s["malformed"] \
            + s["status"] + sum(1 for t, p in messages if not p) >= len(messages)
        for (device,) in db.execute("SELECT device FROM devices"):
            assert ids.valid(device), device
    finally:
        i._db.close()


def test_device_ids_the_profiles_refuse_are_malformed():
    i = fresh_ingest()
    try:
        bad = ["..", "a" * 5000, "<script>"]
        group = [("%s/%s/up/schema" % (PREFIX, d), GOOD["schema"], 0, k, 1.0e9, 0)
                 for k, d in enumerate(bad)]
        group.append(("%s/%s/up/schema" % (PREFIX, DEVICE), GOOD["schema"], 0, 9, 1.0e9, 0))
        i._commit(group, False)
        assert i.stats()["malformed"] == 3
        assert [r for (r,) in i._db.execute("SELECT reason FROM malformed")] == [
            "the device id in the topic is not an id of up to 64 letters, digits, '-', '_' "
            "and '.' that starts with a letter or a digit"] * 3
        assert [d for (d,) in i._db.execute("SELECT device FROM devices")] == [DEVICE]
    finally:
        i._db.close()


# A bignum (CBOR tag 2) of 2000 bytes: CPython's str() and repr() refuse an int of over 4300
# digits, so an error message or a JSON text that formats it would raise instead of storing
# the message or counting it malformed.
BIG = b"\xc2\x59\x07\xd0" + b"\xff" * 2000


def _event(seq=None, value=None, state="raised", detail=None):
    d = cbor.dumps
    return (b"\x8b" + d(1) + d(DEVICE) + (seq or d(1)) + d(0) + d(0) + d(5) + d("e") + d("s")
            + d(state) + (value or d(None)) + (detail or d(None)))


def test_bignums_anywhere_in_a_message_are_stored_or_malformed_never_an_internal_error():
    d = cbor.dumps
    up = "%s/%s/up/" % (PREFIX, DEVICE)
    messages = [
        (up + "health", b"\xa2" + d("t") + d(1) + d("x") + BIG),          # a value: stored
        (up + "health", b"\xa2" + d("t") + d(2) + BIG + d(1)),            # a key: malformed
        (up + "health", b"\xa1" + d("device") + BIG),
        (up + "health", b"\xa2" + d("reply") + BIG + d("ok") + d(True)),
        (up + "event", _event(seq=BIG)),
        (up + "event", _event(value=BIG)),
        (up + "event", _event(value=b"\x81" + BIG)),
        (up + "event", _event(state="insight", detail=b"\xa1" + BIG + d(1))),
        (up + "batch", b"\x88" + BIG + d([DEVICE, 1, 0, 0, 0, 0, b""])[1:]),
        (up + "batch", b"\x88" + d([1, DEVICE, 1, 0, 0])[1:] + BIG + d([0, b""])[1:]),
        (up + "batch", d([1, DEVICE, 1, 0, 0, 1, 0, b"\x84" + BIG + d([0, 0, b""])[1:]])),
        (up + "batch", d([1, DEVICE, 1, 0, 0, 1, 0, d([[1], 0, 0, b""])])),
        (up + "batch", d([1, DEVICE, 1, 0, 0, 1, 0, d([{1: 1}, 0, 0, b""])])),
    ]
    i = fresh_ingest()
    try:
        i._commit([(t, p, 0, k, 1.0e9 + k, 0) for k, (t, p) in enumerate(messages)], False)
        reasons = [r for (r,) in i._db.execute("SELECT reason FROM malformed")]
        assert not [r for r in reasons if r.startswith("internal error")], reasons
        assert all(len(r) < 300 for r in reasons), reasons
        # a bignum key is refused by the decoder (its hash: agent/cbor_decode.py)
        assert i.stats()["malformed"] == len(messages) - 2
        assert i._db.execute("SELECT count(*) FROM health").fetchone()[0] == 2
    finally:
        i._db.close()


def _amplified(channels, slots, every=True):
    """A deflated compact batch of a few hundred bytes that says `slots` slots of one reading
    each for every channel (one bit per slot time, each channel's values one run of zeros)."""
    import zlib
    from agent.schema import Schema
    bits = []

    def gamma(v):
        z = v.bit_length() - 1
        bits.append("0" * z + "1" + (format(v & ((1 << z) - 1), "0%db" % z) if z else ""))
    schema = Schema([("c%d" % i, "", 1, 0) for i in range(channels)])
    gamma(slots)
    bits.append("00000" + "110" + "0" * (slots - 2))    # Rice k=0: +1 ms, then steady
    for _ in range(channels):
        if every:
            bits.append("11")
        else:
            bits.append("10")
            gamma(slots)
            bits.append("10000" + "0")                  # the slots: one run of zero gaps
            gamma(slots)
        bits.append("1" + "10000" + "0")                # first value 0, then a run of zeros
        gamma(slots - 1)
    s = "".join(bits)
    s += "0" * (-len(s) % 8)
    body = cbor.dumps([schema.id, -3, 1700000000000, int(s, 2).to_bytes(len(s) // 8, "big")])
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = z.compress(body) + z.flush()
    return schema, cbor.dumps([1, "amp-1", 0, 1, 0, 1, 3, deflated])


def test_a_tiny_batch_that_says_more_readings_than_a_batch_holds_is_malformed_not_expanded():
    # A device's 200-byte batch decoded into 16 million readings: gigabytes in the ingest,
    # and every other device's messages waited behind it. At 10,000 (batch.max_readings'
    # largest) it is refused before any list of them is made, by the fast path and by the
    # reference decoder that says why.
    from agent import batch_decode, compact_decode
    from ingest import fastdecode
    from ingest.decode import Schemas
    for channels, slots, every in ((16, 1000000, True), (1, 10001, True), (2, 6000, True),
                                   (3, 4000, False)):
        schema, payload = _amplified(channels, slots, every)
        assert len(payload) < 2000
        schemas = Schemas()
        dict.__setitem__(schemas, schema.id, schema)
        b = batch_decode.read_envelope(payload)
        body = batch_decode.inflate(b.body)
        try:
            compact_decode.decode(body, schema)
            assert False, "decoded"
        except cbor.Malformed as exc:
            assert "10000" in str(exc), exc
        try:
            fastdecode._fast(payload, schemas)
            assert False, "decoded"
        except fastdecode.Unusual:
            pass
        i = fresh_ingest()
        try:
            i._commit([("tether/v1/amp-1/up/schema", schema.to_cbor(), 0, 0, 1.0e9, 0),
                       ("tether/v1/amp-1/up/batch", payload, 0, 1, 1.0e9 + 1, 0)], False)
            reasons = [r for (r,) in i._db.execute("SELECT reason FROM malformed")]
            assert len(reasons) == 1 and "10000" in reasons[0], reasons
            assert i._db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
        finally:
            i._db.close()
    # At the bound itself, a batch decodes whole.
    schema, payload = _amplified(2, 5000)
    rows = compact_decode.decode(batch_decode.inflate(batch_decode.read_envelope(payload).body),
                                 schema)
    assert len(rows) == 10000


def test_a_senml_pack_of_more_records_than_a_batch_holds_is_malformed():
    from agent import senml_decode
    from agent.senml import N, V
    pack = [{N: "p", V: 1}] * 10000
    assert len(senml_decode.decode(pack)) == 10000
    try:
        senml_decode.decode(pack + [{N: "p", V: 1}])
        assert False, "decoded"
    except cbor.Malformed as exc:
        assert "10001 SenML records" in str(exc) and "10000" in str(exc), exc
