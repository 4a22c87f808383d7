"""NUL in a message's text (ingest/decode.py text()): PostgreSQL's text and jsonb refuse it, so
both stores keep it as U+FFFD, the message stored on either backend as on the other, visibly
changed and nothing lost (docs/ingest.md)."""
import array
import json

from agent import batch, cbor
from agent.schema import Schema
from ingest.store import open_store
from ingest.subscriber import Ingest
from tests import test_ingest_groups
from tests.test_ingest_groups import T0, msg

db_url = test_ingest_groups.db_url  # the fixture: a SQLite file, and a PostgreSQL database

NUL_SCHEMA = Schema([("po\x00wer", "W\x00", 1, -1), ("pills", "", 1, 0)])
R = "\ufffd"


def encoded(device, seq, encoding):
    ts = array.array("q", [0, 0, 10000, 10000])
    chs = array.array("B", [0, 1, 0, 1])
    vals = array.array("q", [714, 3, 716, 2])
    enc = batch.Encoder(device, NUL_SCHEMA, encoding, max_readings=4)
    return bytes(enc.encode(T0, ts, chs, vals, 0, 4, seq, 1, 0, True))


MESSAGES = [
    msg("dev-1", "schema", NUL_SCHEMA.to_cbor(), 0),
    msg("dev-1", "batch", encoded("dev-1", 0, "compact"), 1),
    msg("dev-2", "batch", encoded("dev-2", 0, "senml"), 2),
    msg("dev-1", "event", cbor.dumps([1, "dev-1", 0, 1, 1, T0, "in\x00k", "ink\x00c", "raised",
                                      14.9, "de\x00tail"]), 3),
    msg("dev-1", "event", cbor.dumps([1, "dev-1", 1, 1, 1, T0, "reorder", "ink_c", "insight",
                                      9.5, {"no\x00te": "a\x00b", "points": ["x\x00"]}]), 4),
    msg("dev-1", "event", cbor.dumps({"reply": "r\x00", "ok": True, "res\x00ult": "\x00"}), 5),
    msg("dev-1", "health", cbor.dumps({"v": 1, "t": T0, "last_\x00error": "I2C\x00 fault"}), 6),
]


def test_nul_in_any_text_is_stored_as_the_replacement_character(db_url):
    url = db_url("nul_text")
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = "nul"
    i._db = open_store(url)
    try:
        for m in MESSAGES:
            i._commit([m], False)
        rows = {sql: sorted(i._db.execute(sql).fetchall(), key=repr) for sql in (
            "SELECT topic, reason FROM malformed",
            "SELECT device, count(*) FROM batches GROUP BY device",
            "SELECT DISTINCT device, channel FROM readings",
            "SELECT device, channel, unit FROM channels",
            "SELECT event, sensor, state, detail FROM events",
            "SELECT reply, body FROM replies",
            "SELECT fields FROM insights",
            "SELECT health FROM health",
            "SELECT channels FROM schemas")}
    finally:
        i._db.close()
    assert rows["SELECT topic, reason FROM malformed"] == []
    assert rows["SELECT device, count(*) FROM batches GROUP BY device"] == [("dev-1", 1),
                                                                          ("dev-2", 1)]
    assert rows["SELECT DISTINCT device, channel FROM readings"] == [
        ("dev-1", "pills"), ("dev-1", "po%swer" % R), ("dev-2", "pills"), ("dev-2", "po%swer" % R)]
    assert ("dev-1", "po%swer" % R, "W" + R) in rows["SELECT device, channel, unit FROM channels"]
    assert ("dev-2", "po%swer" % R, "W" + R) in rows["SELECT device, channel, unit FROM channels"]
    # (a state is one of three words: one with a NUL is malformed, test_wire_format.py)
    assert ("in%sk" % R, "ink%sc" % R, "raised", "de%stail" % R) in \
        rows["SELECT event, sensor, state, detail FROM events"]
    [(reply, body)] = rows["SELECT reply, body FROM replies"]
    assert (reply, json.loads(body)["res%sult" % R]) == ("r" + R, R)
    [(fields,)] = rows["SELECT fields FROM insights"]
    assert json.loads(fields) == {"no%ste" % R: "a%sb" % R, "points": ["x" + R]}
    [(health,)] = rows["SELECT health FROM health"]
    assert json.loads(health)["last_%serror" % R] == "I2C%s fault" % R
    [(channels,)] = rows["SELECT channels FROM schemas"]
    assert json.loads(channels)[0][:2] == ["po%swer" % R, "W" + R]
