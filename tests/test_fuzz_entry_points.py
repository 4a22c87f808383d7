"""Fuzzing the entry points that take input from outside: the profile loader, the batch decoder
and the command parser. Whatever comes in, each answers (a profile or errors; readings or a
DecodeError; a reply) and never raises anything else.

Derandomized, without an example database, and with a modest number of examples: the same
examples run every time, in seconds, so these tests cannot flake.
"""
import asyncio
import json
import os
import re
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from agent import batch_decode, cbor, cbor_decode, compact_decode, senml_decode
from agent.schema import Schema
from firmware import batchfile
from firmware.profile.compile import compile
from firmware.profile.schema import TOP_KEYS

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FUZZ_FILES = settings(FUZZ, max_examples=80)  # each example writes and compiles a profile
REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "examples", "reference-printer.yaml")

# -- the profile loader ---------------------------------------------------------------------------

YAML_CHARS = list(":-[]{},&*!|>'\"#%@`?$<.\n \t") + list("abcxyz019") + [
    "\x00", "\x85", "\ufeff", "\u2028", "\U0001f600", "\r"]
PROFILE_WORDS = TOP_KEYS + [
    "id", "name", "driver", "bus", "interval", "resolution", "unit", "type", "sda", "scl",
    "broker", "encoding", "max_readings", "max_age", "ca", "password", "!secret x", "${v}",
    "<<", "*a", "&a", "ina219", "i2c", "10s", "0.1", "1e400", ".nan", "-1", "0x40", "~",
    "1" * 5000 + "s"]
# Numbers no Python float can hold, written into the YAML text unquoted.
RAW = ["1.0e+99999999", "-1.0e-99999999", "9" * 5000, "0x" + "f" * 5000, "0.5e+400"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=12) | st.sampled_from(PROFILE_WORDS + RAW))
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(PROFILE_WORDS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=25)
WHOLE_FILE = ("cannot read", "values are nested too deeply")


def dumped(doc):
    text = yaml.safe_dump(doc, allow_unicode=True, width=1 << 20)
    for word in RAW:
        text = text.replace("'%s'" % word, word)
    return text


def loaded(folder, text):
    path = os.path.join(folder, "p.yaml")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    compiled, errors = compile(path)
    assert (compiled is None) == bool(errors)
    for error in errors:
        assert error.startswith(path + ":"), error
        where = re.match(re.escape(path) + r"(:\d+:\d+)?: ", error)
        assert where, error
        assert where.group(1) or error[len(path) + 2:].startswith(WHOLE_FILE), error
    return compiled


@FUZZ_FILES
@given(st.text(alphabet=st.sampled_from(YAML_CHARS), max_size=200))
def test_fuzz_profile_loader_with_yaml_text_gives_a_profile_or_placed_errors(text):
    with tempfile.TemporaryDirectory() as folder:
        loaded(folder, text)


@FUZZ_FILES
@given(st.dictionaries(st.sampled_from(TOP_KEYS), STRUCTURES, max_size=6))
def test_fuzz_profile_loader_with_yaml_structures_gives_a_profile_or_placed_errors(doc):
    with tempfile.TemporaryDirectory() as folder:
        loaded(folder, dumped(doc))


def places(doc):
    """(container, key) of every value in a YAML document, depth first."""
    found = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        found.append((doc, key))
        if isinstance(value, (dict, list)):
            found += places(value)
    return found


@FUZZ_FILES
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), STRUCTURES), min_size=1, max_size=3))
def test_fuzz_profile_loader_with_values_of_a_valid_profile_replaced_gives_a_profile_or_errors(
        replacements):
    with open(REFERENCE) as f:
        doc = yaml.safe_load(f)
    for at, value in replacements:
        where = places(doc)
        container, key = where[at % len(where)]
        container[key] = value
    with tempfile.TemporaryDirectory() as folder:
        loaded(folder, dumped(doc))


# -- the batch decoder ----------------------------------------------------------------------------

def _valid_batch_files():
    from firmware.profile.compile import compile as compile_profile
    profile, errors = compile_profile(REFERENCE)
    assert not errors
    lines = ['{"t": %d, "n": "%s", "v": %s}' % (1763856000 + 10 * i, name, value)
             for i in range(30) for name, value in (("power", i / 10), ("pills", 60 - i))]
    files = []
    for encoding in ("senml", "compact"):
        for deflate in (False, True):
            profile["uplink"]["encoding"] = encoding
            profile["uplink"]["deflate"] = deflate
            profile["batch"]["max_readings"] = 20
            schema, batches, _ = batchfile.encode(profile, lines)
            files.append((schema, batches))
    return files


VALID = _valid_batch_files()
SCHEMAS = {VALID[0][0].id: VALID[0][0]}
MUTATION = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
                     st.integers(0, 10 ** 6), st.integers(0, 255))


def mutated(data, mutations):
    data = bytearray(data)
    for op, at, byte in mutations:
        i = at % (len(data) + 1)
        if op == "flip" and i < len(data):
            data[i] ^= 1 << (byte % 8)
        elif op == "set" and i < len(data):
            data[i] = byte
        elif op == "insert":
            data[i:i] = bytes([byte])
        elif op == "delete":
            del data[i:i + 1 + byte % 4]
        elif op == "cut":
            del data[i:]
    return bytes(data)


def printed(batch):
    """What `tether decode` prints of a batch, both ways (a bignum of 5000 digits cannot be)."""
    for t, name, value in batch.readings:
        assert isinstance(t, int) and isinstance(name, str)
        assert isinstance(value, (int, float, str, bool))
        json.dumps({"t": batchfile._seconds(t), "n": name, "v": value})
    json.dumps(batchfile.senml_json(batch))


def decoded_or_refused(data, schemas=SCHEMAS):
    try:
        b = batch_decode.decode(data, schemas)
    except cbor.DecodeError:
        return None
    printed(b)
    return b


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_batch_decoder_with_random_bytes_decodes_or_raises_a_decode_error(data):
    decoded_or_refused(data)


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(0, 10 ** 6),
       st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_batch_decoder_with_mutated_batches_decodes_or_raises_a_decode_error(
        which, batch, mutations):
    batches = VALID[which][1]
    decoded_or_refused(mutated(batches[batch % len(batches)], mutations))


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.lists(MUTATION, min_size=1, max_size=6))
def test_fuzz_batch_file_reader_with_mutated_files_reads_or_raises_a_decode_error(
        which, mutations):
    schema, batches = VALID[which]
    data = mutated(schema.to_cbor() + b"".join(batches), mutations)
    try:
        for _, kind, item in batchfile.items(data):
            if kind == "batch":
                printed(item)
    except cbor.DecodeError:
        pass


CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8) | st.sampled_from([0, 1, 2, 3, 4, 5, 6, -1, -2, -3, "_", "x_"])
    | st.sampled_from([2 ** 64, -2 ** 64 - 1, 1e308, -1e308, 1e15])
    | st.integers(4400, 4401).map(lambda n: (-1) ** n * 10 ** n),  # too long to print
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.integers(-7, 7) | st.text(max_size=3), inner, max_size=5)
    | st.builds(cbor.Tag, st.sampled_from([4, 2, 3, 1, 100]), inner)
    | st.builds(lambda e, m: cbor.Tag(4, [e, m]), st.integers(-100, 100),
                st.integers(-2 ** 70, 2 ** 70)),
    max_leaves=20)


SENML_LABELS = [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, "x_", 99]
SENML_PACKS = st.lists(st.dictionaries(st.sampled_from(SENML_LABELS), CBOR_VALUES, max_size=5),
                       max_size=4) | CBOR_VALUES


@FUZZ
@given(SENML_PACKS)
def test_fuzz_senml_decoder_with_random_packs_decodes_or_raises_a_decode_error(pack):
    try:
        records = senml_decode.decode(pack)
    except cbor.DecodeError:
        return
    for name, unit, t, value in records:
        assert isinstance(name, str) and isinstance(unit, str) and isinstance(t, int)
        json.dumps([t, value])


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=4), st.text(max_size=2), st.integers(1, 10 ** 6),
                          st.integers(-9, 9)), min_size=1, max_size=4),
       st.sampled_from([0, -3]), st.integers(-2 ** 40, 2 ** 40), st.binary(max_size=40))
def test_fuzz_compact_decoder_with_random_bits_decodes_or_raises_a_decode_error(
        channels, exp, t0, bits):
    schema = Schema(channels)
    body = cbor.dumps([schema.id, exp, t0, bits])
    try:
        rows = compact_decode.decode(body, schema)
    except cbor.DecodeError:
        return
    for t, c, v in rows:
        assert isinstance(t, int) and 0 <= c < len(channels) and isinstance(v, int)


@FUZZ
@given(CBOR_VALUES)
def test_fuzz_schema_documents_read_or_raise_a_decode_error(doc):
    data = cbor.dumps({"channels": doc} if isinstance(doc, list) else doc)
    try:
        schema = Schema.from_cbor(data)
    except cbor.DecodeError:
        return
    for c in range(len(schema.channels)):  # what decoding a compact body does with it
        schema.value(c, -12345)


# -- the command parser ---------------------------------------------------------------------------

def _agent():
    from agent.clock import SystemClock
    from agent.runtime import Agent
    from agent.store import RamStore
    from firmware.profile.compile import compile as compile_profile
    from hal.sim.platform import SimPlatform
    profile, errors = compile_profile(REFERENCE)
    assert not errors
    profile["buffer"]["storage"] = "ram"
    return Agent(profile, SimPlatform(profile), SystemClock(), object, store=RamStore(),
                 events_store=RamStore(), reboot=lambda: None)


AGENT = _agent()
NAMES = sorted(AGENT.commands.handlers)
ARGS = st.dictionaries(
    st.sampled_from(["sensor", "interval_ms", "kind", "ranges", "id", "cmd", "x"])
    | st.text(max_size=4), CBOR_VALUES, max_size=4)
COMMANDS = st.builds(
    lambda cid, name, args: dict(args, id=cid, cmd=name),
    st.integers(-2 ** 70, 2 ** 70) | st.text(max_size=8) | CBOR_VALUES,
    st.sampled_from(NAMES) | CBOR_VALUES, ARGS)
INTERNAL = re.compile(r"[A-Z][A-Za-z]*(Error|Exception)\b")  # a bug's exception, not a reply


def replied(payload):
    # Each example is a first delivery: the ids of earlier examples would make it a repeat,
    # which is dropped unanswered (tests/portable/test_commands.py).
    AGENT.commands.recent = []
    loop = asyncio.new_event_loop()
    try:
        reply, then = loop.run_until_complete(AGENT.commands.handle(payload))
    finally:
        loop.close()
    if reply is None:
        assert payload == b""  # only an empty message (a cleared retained command) goes unanswered
        return None
    doc = cbor_decode.loads(reply)
    assert set(doc) >= {"reply", "ok"} and doc["ok"] in (True, False)
    if not doc["ok"]:
        assert isinstance(doc["error"], str) and not INTERNAL.match(doc["error"]), doc["error"]
    return doc


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_command_parser_with_random_bytes_always_replies(payload):
    replied(payload)


@FUZZ
@given(CBOR_VALUES)
def test_fuzz_command_parser_with_random_cbor_always_replies(value):
    replied(cbor.dumps(value))


@FUZZ
@given(COMMANDS)
def test_fuzz_command_parser_with_command_shaped_maps_always_replies(command):
    payload = cbor.dumps(command)
    doc = replied(payload)
    try:
        cbor_decode.loads(payload, 4)
    except cbor.DecodeError:  # a bignum tag around a text, say: not CBOR, so no id either
        return
    cid = command["id"]
    if (isinstance(cid, str) and len(cid) <= 64
            or isinstance(cid, int) and not isinstance(cid, bool) and -2 ** 64 < cid < 2 ** 64):
        assert doc["reply"] == cid
    else:  # no id the device could remember (agent/commands.py)
        assert doc["reply"] is None
