"""Messages a hostile or broken sender publishes, fed to the ingest's writer (Ingest._commit, no
broker) on SQLite and on PostgreSQL: each is stored once or refused with its reason in
`malformed`, the same on both backends, and none holds the one writer for long."""
import array

import pytest

from agent import batch, cbor
from agent.schema import Schema
from ingest.store import open_store
from ingest.subscriber import Ingest

PREFIX = "tether/v1"
SCHEMA = Schema([("power", "W", 1, -1)])
T0 = 1763856000000


def compact(seq, t0=T0):
    enc = batch.Encoder("d-1", SCHEMA, "compact", max_readings=3)
    return bytes(enc.encode(t0, array.array("q", [0, 10000, 20000]), array.array("B", [0, 0, 0]),
                            array.array("q", [714, 716, 700]), 0, 3, seq, 1, 0, True))


def msg(kind, payload, k=0):
    return ("%s/d-1/up/%s" % (PREFIX, kind), payload, 1, k, 1.0e9 + k, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def writer(request, tmp_path):
    url = str(tmp_path / "f.sqlite") if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = "hostile"
    i._db = open_store(url)
    yield i
    i._db.close()


def reasons(i):
    return [r for (r,) in i._db.execute("SELECT reason FROM malformed ORDER BY id").fetchall()]


def test_a_held_batch_sent_again_with_other_bytes_is_malformed_not_a_copy(writer):
    # Waiting for its schema, the second batch under its number was counted a duplicate and
    # left no trace; stored, it is refused as other bytes, and so it is now when held.
    writer._commit([msg("batch", compact(0))], False)
    writer._commit([msg("batch", compact(0, T0 + 5000), 1)], False)
    writer._commit([msg("batch", compact(0), 2)], False)          # the same bytes: a copy
    assert reasons(writer) == ["batch 0 of d-1 arrived again with other bytes (did the device "
                               "lose its sequence numbers?)"]
    assert writer.stats()["duplicates"] == 1
    writer._commit([msg("schema", SCHEMA.to_cbor(), 3)], False)
    assert writer._db.execute("SELECT seq, crc32 FROM batches").fetchall()[0][0] == 0


def test_a_schema_naming_one_channel_twice_is_refused(writer):
    # its two channels' readings were stored as one, under the last one's unit
    twice = Schema([("a", "W", 1, -1), ("a", "count", 1, 0)])
    nul = Schema([("b\x00", "W", 1, -1), ("b\ufffd", "W", 1, -1)])   # one name as stored
    writer._commit([msg("schema", twice.to_cbor()), msg("schema", nul.to_cbor(), 1)], False)
    assert reasons(writer) == ["schema: channel name 'a' given twice",
                               "schema: channel name 'b\\ufffd' given twice"]


def test_an_event_value_past_64_bits_is_refused_on_both_backends(writer):
    # SQLite refused it ("Python int too large"), PostgreSQL stored it as 1.18e21
    d = cbor.dumps
    for k, value in enumerate((1 << 70, 1 << 63, -(1 << 63) - 1)):
        event = (b"\x8b" + d(1) + d("d-1") + d(k) + d(0) + d(0) + d(5) + d("e") + d("s")
                 + d("raised") + d(value) + d(None))
        writer._commit([msg("event", event, k)], False)
    assert reasons(writer) == ["event value <int of more than 64 bits> is past 64 bits",
                               "event value %d is past 64 bits" % (1 << 63),
                               "event value %d is past 64 bits" % (-(1 << 63) - 1)]
    assert writer._db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_a_payload_larger_than_any_message_is_refused_before_it_is_decoded(writer):
    # 10 MB of CBOR held the writer 11 s (decoded twice), and 5 MB of empty maps in a health
    # report took 888 MB
    big = b"\x9a\x00\x98\x96\x80" + b"\x00" * 10000000        # an array of 10 M zeros
    writer._commit([msg("event", big), msg("health", b"\xbf" + b"\x00\xa0" * 600000 + b"\xff", 1)],
                   False)
    assert reasons(writer) == [
        "a payload of 10000005 bytes, more than the 131072 any Tether message is (a batch's "
        "max_bytes is at most 64 KiB)",
        "a payload of 1200002 bytes, more than the 131072 any Tether message is (a batch's "
        "max_bytes is at most 64 KiB)"]
    many = b"\xbf" + b"".join(cbor.dumps("k%d" % n) + b"\xa0" for n in range(9000)) + b"\xff"
    writer._commit([msg("health", many, 2)], False)
    assert reasons(writer)[-1].startswith("health: not CBOR: at byte ")
    assert reasons(writer)[-1].endswith("more than 8192 items")


class _Message:
    def __init__(self, payload, qos, mid=1):
        self.topic, self.payload, self.qos, self.mid = "tether/v1/d-1/up/health", payload, qos, mid


def test_a_payload_larger_than_any_message_is_never_queued_whole(writer):
    # paho takes up to the broker's packet limit (256 MB): queued whole until the writer
    # refused it by its size.
    writer._on_message(None, None, _Message(b"\xa1" + b"x" * 500000, 0))
    (queued,) = [writer._q.get_nowait()]
    assert len(queued[1]) == 500001 and bytes(queued[1]) == b"\xa1" + b"x" * 15
    writer._commit([queued], False)
    assert reasons(writer) == ["a payload of 500001 bytes, more than the 131072 any Tether "
                               "message is (a batch's max_bytes is at most 64 KiB)"]


def test_a_flood_of_qos_0_messages_is_dropped_and_counted_past_the_queues_bound(
        writer, monkeypatch, caplog):
    # A device's QoS 0 health reports of 1 MB, faster than the writer: 1.4 GB of memory.
    from ingest import subscriber
    monkeypatch.setattr(subscriber, "MAX_QUEUED", 100000)
    report = cbor.dumps({"v": 1, "device": "d-1", "boot": 1, "t": 5, "last_error": "E" * 60000})
    for mid in range(5):
        writer._on_message(None, None, _Message(report, 0, mid))
    assert writer._q.qsize() == 2 and writer.stats()["flooded"] == 3
    assert "QoS 0 ones are dropped (stats: flooded)" in caplog.text
