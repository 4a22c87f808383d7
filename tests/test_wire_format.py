"""The test vectors of docs/wire-format.md, checked under CPython and under MicroPython."""
import array
import asyncio
import pathlib
import struct
import re
import sys
from decimal import Decimal
from types import SimpleNamespace

import cbor2
import pytest

from agent import batch, batch_decode, cbor, cbor_decode
from agent.commands import Commands
from agent.log import Log
from agent.runtime import Agent
from agent.schema import Schema
from agent.store import RamStore

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"
SCHEMA = Schema([("power", "W", 1, -1), ("pills", "count", 1, 0)])
T = 1763856000000
STORE = 0x5A17E5E1  # the logs' store id in the vectors of a device's log
# (label in the doc, encoding, envelope (seq, boot, dropped, synced, store id), rows (base,
# offsets, channels, values), readings)
CASES = [
    ("SenML (81 bytes)", "senml", (5, 2, 0, True, 0), (T, [0, 0, 10000, 20000], [0, 1, 0, 0], [35, 60, 284, 281]),
     [(T, "power", 3.5), (T, "pills", 60), (T + 10000, "power", 28.4), (T + 20000, "power", 28.1)]),
    ("compact (37 bytes)", "compact", (5, 2, 0, True, 0), (T, [0, 0, 10000, 20000], [0, 1, 0, 0], [35, 60, 284, 281]),
     [(T, "power", 3.5), (T, "pills", 60), (T + 10000, "power", 28.4), (T + 20000, "power", 28.1)]),
    ("compact from a log (42 bytes)", "compact", (5, 2, 0, True, STORE), (T, [0, 0, 10000, 20000], [0, 1, 0, 0], [35, 60, 284, 281]),
     [(T, "power", 3.5), (T, "pills", 60), (T + 10000, "power", 28.4), (T + 20000, "power", 28.1)]),
    ("compact (44 bytes)", "compact", (6, 2, 420, False, 0), (T + 250, [0, 1500, 2250], [0, 0, 1], [-12, -12, 7]),
     [(T + 250, "power", -1.2), (T + 1750, "power", -1.2), (T + 2500, "pills", 7)]),
    ("SenML (89 bytes)", "senml", (6, 2, 420, False, 0), (T + 250, [0, 1500, 2250], [0, 0, 1], [-12, -12, 7]),
     [(T + 250, "power", -1.2), (T + 1750, "power", -1.2), (T + 2500, "pills", 7)]),
]


def vectors():
    """label -> bytes, from the indented hex blocks of the doc."""
    found = {}
    for block in re.finditer(r"\n    ([^\n]+)\n((?:    [0-9a-f]+\n)+)", DOC.read_text()):
        found[block.group(1).strip()] = bytes.fromhex("".join(block.group(2).split()))
    return found


def encode(encoding, env, rows):
    base, offsets, channels, values = rows
    enc = batch.Encoder("dev-1", SCHEMA, encoding, False, 1024, 16)
    seq, boot, dropped, synced, enc.store = env
    return bytes(enc.encode(base, array.array("i", offsets), array.array("B", channels),
                            array.array("i", values), 0, len(offsets), seq, boot, dropped, synced))


def test_schema_document_and_id_match_the_doc():
    doc = vectors()
    assert SCHEMA.to_cbor() == doc["schema document (id 0x1a95f48a)"]
    assert SCHEMA.id == 0x1A95F48A
    assert Schema.from_cbor(SCHEMA.to_cbor()).channels == SCHEMA.channels


def test_encoder_writes_exactly_the_documented_vectors():
    doc = vectors()
    for label, encoding, env, rows, _ in CASES:
        assert encode(encoding, env, rows).hex() == doc[label].hex(), label


def test_documented_vectors_decode_to_the_documented_readings():
    doc = vectors()
    for label, encoding, env, _, readings in CASES:
        b = batch_decode.decode(doc[label], {SCHEMA.id: SCHEMA})
        assert (b.device, b.seq, b.boot, b.dropped, b.synced, b.store) == ("dev-1",) + env
        assert b.readings == readings, label
        assert [type(r[2]) for r in b.readings] == [type(r[2]) for r in readings]


def test_senml_vector_body_is_a_standard_senml_pack_for_cbor2():
    env = cbor2.loads(vectors()["SenML (81 bytes)"])
    pack = cbor2.loads(env[7])
    assert pack[0][-2] == "power" and pack[0][-4] == "W" and pack[0][-3] == 1763856000
    # Decimal fractions (tag 4) come out of cbor2 as exact decimals, not binary floats.
    assert [r[2] for r in pack] == [Decimal("3.5"), Decimal("28.4"), Decimal("28.1"), 60]
    assert [r[6] for r in pack] == [0, 10, 20, 0]


def test_micropython_writes_the_same_vectors(micropython, tmp_path):
    lines = ["from agent import batch", "from agent.schema import Schema", "import array",
             "s = Schema([('power', 'W', 1, -1), ('pills', 'count', 1, 0)])",
             "print(hex(s.id), s.to_cbor().hex())"]
    for label, encoding, env, rows, _ in CASES:
        base, offsets, channels, values = rows
        lines.append("e = batch.Encoder('dev-1', s, %r, False, 1024, 16)" % encoding)
        lines.append("e.store = %d" % env[4])
        lines.append("print(bytes(e.encode(%d, array.array('i', %r), array.array('B', %r), "
                     "array.array('i', %r), 0, %d, %d, %d, %d, %r)).hex())"
                     % ((base, offsets, channels, values, len(offsets)) + env[:4]))
    script = tmp_path / "vectors.py"
    script.write_text("\n".join(lines) + "\n")
    proc = micropython.run([str(script)])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split()
    doc = vectors()
    assert out[0] == "0x1a95f48a" and out[1] == doc["schema document (id 0x1a95f48a)"].hex()
    assert out[2:] == [doc[label].hex() for label, *_ in CASES]


RESEND = {"id": 42, "cmd": "resend", "kind": "batch", "ranges": [[118, 130], [200, 200]]}
RESEND_REPLY = {"reply": 42, "ok": True, "result": {
    "kind": "batch", "queued": 9, "gone": [[118, 119]], "dropped": [[120, 121]],
    "unknown": [[200, 200]], "store": STORE}}
RESEND_ERROR = {"reply": 43, "ok": False,
                "error": "bounded: at most 1024 sequence numbers a command, got 1025"}
RESEND_CASES = [("resend command (46 bytes)", RESEND), ("resend reply (90 bytes)", RESEND_REPLY),
                ("resend error reply (79 bytes)", RESEND_ERROR)]


def test_resend_vectors_are_the_deterministic_cbor_of_the_documented_maps():
    doc = vectors()
    for label, value in RESEND_CASES:
        assert cbor.dumps(value).hex() == doc[label].hex(), label
        assert cbor_decode.loads(doc[label]) == value == cbor2.loads(doc[label]), label


class _Uplink:
    def __init__(self):
        self.queued = []

    def repair(self, kind, ranges):
        self.queued.append((kind, ranges))
        return True


def test_a_device_answers_the_documented_resend_with_exactly_the_documented_reply():
    # One 4-byte stand-in batch a segment, room for 78: batches 0..119 acked, 120..199 not, so
    # the log keeps 122..199 and dropped 120 and 121 unsent once nothing acked was left.
    rec = 7 + 2 + 4
    log = Log(RamStore(), 78 * rec, rec, lambda data: struct.unpack("<I", bytes(data))[0])
    log.open()
    log.store_id = STORE
    for seq in range(200):
        log.append_batch(seq, 1, struct.pack("<I", seq))
        if seq < 120:
            assert log.ack(log.next_batch()[0])
    # What Agent._resend reads of an agent: its logs and its uplink.
    device = SimpleNamespace(buffer=SimpleNamespace(log=log), events=None, uplink=_Uplink())
    commands = Commands({"resend": lambda cmd: Agent._resend(device, cmd)})
    doc = vectors()
    reply, _ = asyncio.run(commands.handle(doc["resend command (46 bytes)"]))
    assert reply == doc["resend reply (90 bytes)"]
    assert device.uplink.queued == [("batch", [[122, 130]])]
    too_many = {"id": 43, "cmd": "resend", "kind": "batch", "ranges": [[0, 1000], [2000, 2023]]}
    reply, _ = asyncio.run(commands.handle(cbor.dumps(too_many)))
    assert reply == doc["resend error reply (79 bytes)"]


def test_micropython_writes_the_same_resend_vectors(micropython, tmp_path):
    script = tmp_path / "resend.py"
    script.write_text("from agent import cbor\n" + "".join(
        "print(cbor.dumps(%r).hex())\n" % (value,) for _, value in RESEND_CASES))
    proc = micropython.run([str(script)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [vectors()[label].hex() for label, _ in RESEND_CASES]


# every field the detector sends (agent/insights/consumable.py), `since` among them
REORDER = {"days": 16.4, "low_days": 12.9, "high_days": 21.7, "level": 31.5,
           "rate_per_day": 1.92, "lead_days": 10.0, "weekly": True, "since": T - 30 * 86400000}
SNOOZE = {"id": "c-7", "cmd": "insight", "sensor": "ink_c", "action": "snooze",
          "event": "reorder", "for_ms": 172800000}
SNOOZE_REPLY = {"reply": "c-7", "ok": True, "result": {"sensor": "ink_c", "event": "reorder",
                                                        "until": T + 172800000}}


def test_an_insight_event_is_the_documented_bytes_and_decodes_to_its_fields():
    from agent import events_decode
    from agent.events import Events
    log = Log(RamStore(), 8192, 2048, batch.seq_of)
    log.open()
    log.boot = 2
    events = Events(log, "printer-0001")
    events.open()
    log.store_id = STORE
    events.emit(T, True, "reorder", "ink_c", "insight", 16.4, REORDER)
    data = bytes(events.next_event()[1])
    assert data == vectors()["reorder event (182 bytes)"]
    e = events_decode.decode(data)
    assert (e.event, e.sensor, e.state, e.value, e.detail, e.synced) == (
        "reorder", "ink_c", "insight", 16.4, REORDER, True)
    assert e.store == STORE
    assert cbor2.loads(data)[10] == REORDER


def test_an_event_outside_the_documented_ranges_is_refused():
    # Extra flag bits, a state nobody defined, a negative time or a float version were stored.
    from agent import events_decode
    good = [1, "dev-1", 3, 2, 1, T, "ink_low", "ink_c", "raised", 14.9, None]
    assert events_decode.decode(cbor2.dumps(good)).state == "raised"
    for i, bad in ((4, 8), (8, "weird"), (5, -5), (2, 1 << 63), (0, 1.0), (0, True)):
        fields = list(good)
        fields[i] = bad
        with pytest.raises(cbor.Malformed):
            events_decode.decode(cbor2.dumps(fields))


def test_a_device_answers_the_documented_insight_command_with_the_documented_reply():
    from agent.clock import FakeClock
    from agent.insights import Insights
    sensor = {"name": "ink_c", "quantity": "level",
              "insight": {"type": "consumable", "lead_time_ms": 864000000,
                          "window_ms": 56 * 86400000, "empty": 0, "swap_jump": 20,
                          "forecast_ms": 86400000, "learn_ms": 2 * 86400000,
                          "utc_offset_min": 0}}
    device = SimpleNamespace(clock=FakeClock(0, T), insights=Insights(None, [sensor]))
    commands = Commands({"insight": lambda cmd: Agent._insight(device, cmd)})
    doc = vectors()
    assert cbor_decode.loads(doc["insight command (73 bytes)"]) == SNOOZE
    reply, _ = asyncio.run(commands.handle(doc["insight command (73 bytes)"]))
    assert reply == doc["insight reply (65 bytes)"] == cbor.dumps(SNOOZE_REPLY)
    assert device.insights.snoozed == {("ink_c", "reorder"): T + 172800000}


def test_a_deflated_body_where_nothing_can_inflate_it_is_a_decode_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "deflate", None)  # None in sys.modules: ImportError
    monkeypatch.setitem(sys.modules, "zlib", None)
    with pytest.raises(cbor.DecodeError, match="neither `deflate` nor `zlib`"):
        batch_decode.inflate(b"\x03\x00", 9)


def test_a_schema_document_of_more_channels_than_a_byte_numbers_is_refused():
    # 100,000 channels in 1.5 MB, kept by the ingest for good; a channel number is one byte.
    # (The ingest's decoder: a board never reads a schema document.)
    from agent.schema import Schema
    item = cbor.dumps(["c", "", cbor.Tag(4, [0, 1])])
    head = b"\xa1" + cbor.dumps("channels") + b"\x99\x01"
    with pytest.raises(cbor.Malformed):
        Schema.from_cbor(head + b"\x01" + item * 257)
    assert len(Schema.from_cbor(head + b"\x00" + item * 256).channels) == 256
