"""The reference ingest (the ingest package, `tether ingest`) against a real Mosquitto: batches
encoded by the real encoder and published by a plain paho client land in SQLite exactly."""
import copy
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time

import paho.mqtt.client as paho
import pytest

from agent import batch_decode, cbor, cbor_decode
from firmware import batchfile
from firmware.profile.compile import compile as compile_profile
from simulator import reference
from ingest import Ingest, summary, totals

PREFIX = "tether/v1"


@pytest.fixture(scope="module")
def profiles():
    out = {}
    for name in ("reference-printer", "pill-bottle"):
        compiled, errors = compile_profile("examples/%s.yaml" % name)
        assert not errors
        out[name] = compiled
    return out


@pytest.fixture(scope="module")
def two_hours():
    return [json.dumps(r) for r in reference.readings(hours=2)]


def encode(profile, lines, device, encoding="compact", deflate=False):
    """(schema, [batch bytes]) through the real encoder, cut by the profile's batch policy."""
    p = copy.deepcopy(profile)
    p["uplink"]["encoding"] = encoding
    p["uplink"]["deflate"] = deflate
    schema, batches, _ = batchfile.encode(p, lines, device)
    return schema, batches


def envelope(data, **changes):
    """The same batch with envelope fields changed (device, seq, boot, dropped)."""
    fields = cbor_decode.loads(data)
    for i, name in enumerate(("version", "device", "seq", "boot", "dropped", "encoding", "flags",
                              "body")):
        if name in changes:
            fields[i] = changes[name]
    return cbor.dumps(fields)


class Publisher:
    def __init__(self, port):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="publisher",
                                  protocol=paho.MQTTv311)
        self.client.max_inflight_messages_set(50)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def __call__(self, topic, payload, retain=False):
        self.client.publish(topic, payload, 1, retain).wait_for_publish(10)

    def many(self, items):
        infos = [self.client.publish(t, p, 1) for t, p in items]
        for info in infos:
            info.wait_for_publish(10)

    def batches(self, device, batches):
        self.many(("%s/%s/up/batch" % (PREFIX, device), b) for b in batches)

    def schema(self, device, schema):
        self("%s/%s/up/schema" % (PREFIX, device), schema.to_cbor(), retain=True)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publish(mosquitto):
    p = Publisher(mosquitto.port)
    yield p
    p.close()


@pytest.fixture
def ingest(mosquitto, tmp_path):
    started = []

    def make(**options):
        i = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "fleet.sqlite"), **options)
        started.append(i)
        return i.start()

    yield make
    for i in started:
        i.stop()


def rows(db_path, sql, *args):
    db = sqlite3.connect(db_path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def expected_rows(device, batches, schema):
    out = []
    for data in batches:
        b = batch_decode.decode(data, {schema.id: schema})
        out += [(device, t, n, v, b.seq) for t, n, v in b.readings]
    return sorted(out, key=lambda r: (r[4], r[1], r[2]))


@pytest.mark.parametrize("encoding,deflate", [("senml", False), ("compact", False),
                                              ("senml", True), ("compact", True)])
def test_readings_land_in_sqlite_exactly_as_encoded(profiles, two_hours, publish, ingest,
                                                    encoding, deflate):
    schema, batches = encode(profiles["reference-printer"], two_hours, "printer-7", encoding,
                             deflate)
    assert len(batches) == 12
    i = ingest()
    publish.schema("printer-7", schema)
    publish.batches("printer-7", batches)
    assert i.wait_idle(20)
    db = i.db_path
    got = rows(db, "SELECT device, t_ms, channel, value, seq FROM readings "
                   "ORDER BY seq, t_ms, channel")
    assert got == expected_rows("printer-7", batches, schema)
    # ... and those are the readings of the workload, to the bit (71.4 is the float 71.4).
    truth = sorted((round(r["t"] * 1000), r["n"], r["v"]) for r in map(json.loads, two_hours))
    assert sorted((t, n, v) for _, t, n, v, _ in got) == truth
    assert {type(v) for _, _, n, v, _ in got if n == "ink_c"} == {float}
    assert {type(v) for _, _, n, v, _ in got if n == "pills"} == {int}
    stored = rows(db, "SELECT seq, boot, dropped, synced, encoding, deflated, bytes, readings "
                      "FROM batches ORDER BY seq")
    deflated = [batch_decode.read_envelope(b).deflated for b in batches]
    assert any(deflated) == deflate  # a body is deflated only where that makes it smaller
    assert stored == [(k, 1, 0, 1, encoding, int(z), len(b), 420)
                      for k, (b, z) in enumerate(zip(batches, deflated))]
    assert dict(rows(db, "SELECT channel, unit FROM channels")) == {
        "energy": "Wh", "ink_c": "%", "ink_k": "%", "ink_m": "%", "ink_y": "%", "pills": "count",
        "power": "W"}
    s = summary(db)["printer-7"]
    assert (s["batches"], s["readings"], s["duplicates"], s["gaps"]) == (12, 5040, 0, [])
    assert (s["first_seq"], s["last_seq"]) == (0, 11)
    st = i.stats()
    assert (st["batches"], st["readings"], st["malformed"], st["held"]) == (12, 5040, 0, 0)
    assert st["devices"]["printer-7"] == {"batches": 12, "readings": 5040, "duplicates": 0}


def test_duplicates_gaps_and_dropped_counts(profiles, two_hours, publish, ingest):
    schema, batches = encode(profiles["reference-printer"], two_hours, "p1")
    dropped = [0, 0, 7, 7, 12, 12]
    batches = [envelope(b, dropped=d) for b, d in zip(batches[:6], dropped)]
    i = ingest()
    db = i.db_path
    publish.schema("p1", schema)
    publish.batches("p1", [batches[k] for k in (0, 1, 2, 4, 5)])
    publish.batches("p1", [batches[1], batches[4]])  # re-sends after lost PUBACKs
    # The same sequence number with other bytes: not a duplicate, a device that lost its state.
    publish.batches("p1", [envelope(batches[2], boot=9)])
    assert i.wait_idle(20)
    s = summary(db)["p1"]
    assert s["gaps"] == [(3, 3)]
    assert (s["batches"], s["readings"], s["duplicates"]) == (5, 5 * 420, 2)
    assert s["dropped_reported"] == 12
    assert rows(db, "SELECT seq, dropped FROM batches ORDER BY seq") == [
        (0, 0), (1, 0), (2, 7), (4, 12), (5, 12)]
    assert rows(db, "SELECT from_seq, to_seq, missing FROM gaps") == [(3, 3, 1)]
    (reason,), = rows(db, "SELECT reason FROM malformed")
    assert "arrived again with other bytes" in reason
    assert i.stats()["duplicates"] == 2

    publish.batches("p1", [batches[3]])  # the missing batch, late: no gap any more
    assert i.wait_idle(20)
    s = summary(db)["p1"]
    assert s["gaps"] == [] and s["batches"] == 6 and s["readings"] == 6 * 420
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    assert rows(db, "SELECT device, t_ms, channel, value, seq FROM readings "
                    "ORDER BY seq, t_ms, channel") == expected_rows("p1", batches, schema)
    assert rows(db, "SELECT batches, readings, duplicates, dropped_reported, last_seq FROM devices"
                ) == [(6, 6 * 420, 2, 12, 5)]


def test_a_compact_batch_waits_for_its_schema(profiles, two_hours, publish, ingest):
    schema_a, batches_a = encode(profiles["reference-printer"], two_hours, "dev-a")
    pill_lines = [json.dumps({"t": 1763856000 + 30 * k, "n": "pills", "v": 60 - k // 40})
                  for k in range(200)]
    schema_b, batches_b = encode(profiles["pill-bottle"], pill_lines, "dev-b")
    assert schema_a.id != schema_b.id
    i = ingest(hold_timeout=3.0)
    db = i.db_path
    publish.batches("dev-a", batches_a[:3])
    publish.batches("dev-b", batches_b)
    assert i.wait_idle(20)
    assert i.stats()["held"] == 3 + len(batches_b)
    assert summary(db)["dev-a"]["readings"] == 0
    publish.schema("dev-a", schema_a)  # in time: decoded
    assert i.wait_idle(20)
    assert i.stats()["held"] == len(batches_b)
    assert rows(db, "SELECT device, t_ms, channel, value, seq FROM readings ORDER BY seq, t_ms, "
                    "channel") == expected_rows("dev-a", batches_a[:3], schema_a)
    # dev-b's schema does not come: after hold_timeout its batches count as undecodable ...
    deadline = time.monotonic() + 10
    while i.stats()["undecodable"] < len(batches_b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert i.stats()["undecodable"] == len(batches_b)
    assert i.stats()["held"] == 0
    reasons = [r for r, in rows(db, "SELECT reason FROM malformed")]
    assert len(reasons) == len(batches_b)
    assert all("needs schema %#010x" % schema_b.id in r for r in reasons)
    # ... but stay in the file, and are decoded if it turns up after all.
    publish.schema("dev-b", schema_b)
    assert i.wait_idle(20)
    assert summary(db)["dev-b"]["readings"] == 200
    assert rows(db, "SELECT count(*) FROM held") == [(0,)]


def test_held_batches_are_bounded(profiles, two_hours, publish, ingest):
    _, batches = encode(profiles["reference-printer"], two_hours, "dev-a")
    i = ingest(max_held=2)
    publish.batches("dev-a", batches[:3])
    assert i.wait_idle(20)
    st = i.stats()
    assert (st["held"], st["undecodable"]) == (2, 1)
    assert rows(i.db_path, "SELECT seq FROM held WHERE given_up_at IS NOT NULL") == [(0,)]
    # Past the bound, the device holding the most gives up its oldest: one flooding batches of
    # a schema it never sends gave up every other device's too.
    _, others = encode(profiles["reference-printer"], two_hours, "dev-c")
    publish.batches("dev-c", others[:1])
    assert i.wait_idle(20)
    assert rows(i.db_path, "SELECT device, seq FROM held WHERE given_up_at IS NOT NULL "
                           "ORDER BY device, seq") == [("dev-a", 0), ("dev-a", 1)]
    assert rows(i.db_path, "SELECT device FROM held WHERE given_up_at IS NULL "
                           "ORDER BY device") == [("dev-a",), ("dev-c",)]


def test_an_ingest_given_its_devices_stores_none_of_the_others(publish, ingest):
    # tether simulate --broker on a broker other devices use: their retained statuses went
    # into the run's database and its report ("of 4 devices" for 2).
    publish("%s/intruder-1/status" % PREFIX, b"online", retain=True)
    publish("%s/p2/status" % PREFIX, b"online", retain=True)
    i = ingest(devices={"p2"})
    publish("%s/intruder-1/up/event" % PREFIX,
            cbor.dumps([1, "intruder-1", 0, 1, 1, 5000, "ink_low", "ink_c", "raised", 1.0, None]))
    publish("%s/p2/up/event" % PREFIX,
            cbor.dumps([1, "p2", 0, 1, 1, 5000, "ink_low", "ink_c", "raised", 1.0, None]))
    assert i.wait_idle(20)
    assert rows(i.db_path, "SELECT device FROM devices") == [("p2",)]
    assert rows(i.db_path, "SELECT device FROM events") == [("p2",)]
    publish("%s/intruder-1/status" % PREFIX, b"", retain=True)    # the broker is shared
    publish("%s/p2/status" % PREFIX, b"", retain=True)


def test_events_replies_health_and_status_are_stored(publish, ingest):
    i = ingest()
    db = i.db_path
    event = cbor.dumps([1, "p2", 0, 3, 1, 1763856000000, "ink_low", "ink_c", "raised", 14.9, None])
    fault = cbor.dumps([1, "p2", 1, 3, 0, 5000, "sensor_error", "power", "raised", None,
                        "INA219 at i2c0:0x40 did not acknowledge"])
    reply = cbor.dumps({"reply": 7, "ok": True, "result": {"t": 5, "synced": False}})
    health = cbor.dumps({"v": 1, "device": "p2", "boot": 3, "t": 1763856000000, "synced": True,
                         "uptime_s": 12, "heap_free": None, "dropped": 40, "rssi": -61,
                         "last_error": None, "sensors": {"power": {"readings": 3}}})
    publish("%s/p2/status" % PREFIX, b"online", retain=True)
    for payload in (event, fault, event, reply):
        publish("%s/p2/up/event" % PREFIX, payload)
    publish("%s/p2/up/health" % PREFIX, health)
    assert i.wait_idle(20)
    assert rows(db, "SELECT seq, boot, t_ms, synced, event, sensor, state, value, detail "
                    "FROM events ORDER BY seq") == [
        (0, 3, 1763856000000, 1, "ink_low", "ink_c", "raised", 14.9, None),
        (1, 3, 5000, 0, "sensor_error", "power", "raised", None,
         "INA219 at i2c0:0x40 did not acknowledge")]
    (rid, ok, body), = rows(db, "SELECT reply, ok, body FROM replies")
    assert (rid, ok, json.loads(body)["result"]) == (7, 1, {"t": 5, "synced": False})
    (t_ms, doc), = rows(db, "SELECT t_ms, health FROM health")
    assert t_ms == 1763856000000 and json.loads(doc)["rssi"] == -61
    s = summary(db)["p2"]
    assert (s["events"], s["last_status"], s["dropped_health"]) == (2, "online", 40)
    assert rows(db, "SELECT events, event_duplicates FROM devices") == [(2, 1)]
    publish("%s/p2/status" % PREFIX, b"offline", retain=True)
    assert i.wait_idle(20)
    assert summary(db)["p2"]["last_status"] == "offline"
    st = i.stats()
    assert (st["events"], st["event_duplicates"], st["replies"], st["health"], st["malformed"]) \
        == (2, 1, 1, 1, 0)
    # Event 0's number again with another event (a device whose store was wiped): counted as
    # a duplicate, a `reorder` after a wipe was gone without a trace.
    publish("%s/p2/up/event" % PREFIX, cbor.dumps(
        [1, "p2", 0, 1, 1, 1763900000000, "reorder", "ink_c", "insight", 4.5, {"days": 4.5}]))
    assert i.wait_idle(20)
    (reason,), = rows(db, "SELECT reason FROM malformed")
    assert reason == ("event 0 of p2 arrived again with other content (did the device lose its "
                      "sequence numbers?)")
    assert i.stats()["event_duplicates"] == 1


def test_a_health_report_or_reply_delivered_again_is_stored_once(publish, ingest):
    # They have no number to de-duplicate on: one the broker delivered again (the ingest stopped
    # after storing it, before its PUBACK) made a second row, counted twice in the console.
    i = ingest()
    db = i.db_path
    reply = cbor.dumps({"reply": 7, "ok": True, "result": {"pong": True}})
    health = {"v": 1, "device": "p3", "boot": 3, "t": 1763856000000, "synced": True,
              "uptime_s": 12, "heap_free": None, "dropped": 40, "rssi": -61, "last_error": None,
              "sensors": {}}
    for payload in (reply, reply):
        publish("%s/p3/up/event" % PREFIX, payload)
    for doc in (health, health, dict(health, rssi=-70), dict(health, t=1763856300000)):
        publish("%s/p3/up/health" % PREFIX, cbor.dumps(doc))
    assert i.wait_idle(20)
    assert len(rows(db, "SELECT body FROM replies")) == 1
    # the same time with other content (a second report made in the same ms) is a report
    assert [(t, json.loads(h)["rssi"]) for t, h in rows(
        db, "SELECT t_ms, health FROM health ORDER BY rowid")] == [
        (1763856000000, -61), (1763856000000, -70), (1763856300000, -61)]
    st = i.stats()
    assert (st["replies"], st["reply_duplicates"], st["health"], st["health_duplicates"]) == (
        1, 1, 3, 1)


def test_insight_events_are_stored_with_their_fields_and_bad_ones_refused(publish, ingest):
    i = ingest()
    db = i.db_path
    fields = {"days": 9.5, "low": 8.0, "high": 11.25, "level": 21.4, "rate_per_day": 2.25,
              "lead_days": 10, "note": None, "ok": True, "points": [3, 4]}
    reorder = cbor.dumps([1, "p9", 0, 1, 1, 1763856000000, "reorder", "ink_c", "insight", 9.5,
                          fields])
    bad = [cbor.dumps([1, "p9", 1, 1, 1, 1763856000001, "reorder", "ink_c", "insight", 9.5, d])
           for d in ("text", {"nested": {"map": 1}}, {1: 2}, {"many": list(range(65))})]
    odd = cbor.dumps([1, "p9", 2, 1, 1, 1763856000002, "forecast", "ink_m", "insight", 3.0,
                      {"days": float("nan"), "band": [1.0, float("inf")]}])
    for payload in [reorder, reorder, odd] + bad:
        publish("%s/p9/up/event" % PREFIX, payload)
    assert i.wait_idle(20)
    (t_ms, event, sensor, value, stored), nan = rows(
        db, "SELECT t_ms, event, sensor, value, fields FROM insights ORDER BY seq")
    assert (t_ms, event, sensor, value) == (1763856000000, "reorder", "ink_c", 9.5)
    assert json.loads(stored) == fields
    # A figure that is not a number is kept as null, as in health: the event is not lost.
    assert json.loads(nan[4]) == {"days": None, "band": [1.0, None]}
    assert rows(db, "SELECT json_extract(fields, '$.lead_days') FROM insights") == [(10,), (None,)]
    assert rows(db, "SELECT seq, state FROM events") == [(0, "insight"), (2, "insight")]
    st = i.stats()
    assert (st["insights"], st["event_duplicates"], st["malformed"]) == (2, 1, 4)


def test_every_event_every_insight_kind_sends_is_stored_in_the_insights_table(publish, ingest):
    from agent.insights import KINDS, module
    i = ingest()
    sent = []
    for kind in KINDS:
        for event in module(kind).EVENTS:
            seq = len(sent)
            fields = {"kind": kind, "value": seq + 0.5}
            sent.append((1763856000000 + seq, event, kind + "_sensor", seq + 0.5, fields))
            publish("%s/p8/up/event" % PREFIX, cbor.dumps(
                [1, "p8", seq, 1, 1, 1763856000000 + seq, event, kind + "_sensor", "insight",
                 seq + 0.5, fields]))
    assert i.wait_idle(20)
    stored = rows(i.db_path, "SELECT t_ms, event, sensor, value, fields FROM insights "
                             "ORDER BY seq")
    assert [r[:4] + (json.loads(r[4]),) for r in stored] == sent
    assert len(sent) == 13 and i.stats()["malformed"] == 0


def test_an_ingest_that_leaves_its_group_has_the_broker_send_the_rest_to_the_members_left(
        publish, ingest):
    # A persistent member that only disconnected keeps its share: mosquitto queued half of
    # these for it (10 of 20), to wait until it came back. One that leaves (a simulated run's
    # ingest at its end, whose session is then removed) unsubscribes first.
    leaver = ingest(group="g", client_id="leaver")
    stayer = ingest(group="g", client_id="stayer")
    leaver.stop(leave=True)
    for n in range(20):
        publish("%s/dev-%d/up/health" % (PREFIX, n), cbor.dumps({"uptime_s": n}))
    deadline = time.monotonic() + 20
    while stayer.stats()["health"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stayer.stats()["health"] == 20


def test_malformed_payloads_on_every_topic_are_counted_and_never_stop_it(
        profiles, two_hours, publish, ingest, caplog):
    schema, batches = encode(profiles["reference-printer"], two_hours, "p3")
    senml = encode(profiles["reference-printer"], two_hours, "p3", "senml")[1][0]
    good = batches[0]
    big = b"\xde\xad" * 600
    garbage = [
        ("up/batch", b"\xff\x00not cbor"),
        ("up/batch", big),
        ("up/batch", envelope(good, version=3)),
        ("up/batch", cbor.dumps([1, "p3", 0])),
        ("up/batch", envelope(senml, body=b"\x99\x99\x99")),  # a body that is not CBOR
        ("up/batch", envelope(good, body=cbor.dumps([[1], 0, 0, b""]))),  # unhashable schema id
        ("up/batch", envelope(good, device="someone-else")),
        ("up/batch", envelope(good, seq=2 ** 64 - 1)),
        ("up/batch", b""),
        ("up/event", b"\xc0"),
        ("up/event", cbor.dumps({"ok": True})),
        ("up/event", cbor.dumps([1, "p3", 0])),
        ("up/event", cbor.dumps([1, "p3", 0, 1, 0, 0, "e", "s", "raised", "high", None])),
        ("up/health", b"garbage"),
        ("up/health", cbor.dumps([1, 2, 3])),
        ("up/schema", b"\xa1\x61"),
        ("up/schema", cbor.dumps({"channels": [["power", "W", 5]]})),
        ("status", b"maybe"),
    ]
    i = ingest()
    db = i.db_path
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        for suffix, payload in garbage:
            publish("%s/p3/%s" % (PREFIX, suffix), payload)
        publish("%s//up/batch" % PREFIX, good)  # `+` matches an empty device id: not ours
        publish.schema("p3", schema)
        publish.batches("p3", [good])
        assert i.wait_idle(20)
    assert i.stats()["malformed"] == len(garbage) + 1
    assert rows(db, "SELECT count(*) FROM malformed") == [(len(garbage) + 1,)]
    assert summary(db)["p3"]["batches"] == 1 and summary(db)["p3"]["readings"] == 420
    for topic, reason, size, hexed in rows(db, "SELECT topic, reason, bytes, payload_hex "
                                               "FROM malformed"):
        assert reason and len(hexed) <= 32
    assert rows(db, "SELECT bytes, payload_hex FROM malformed WHERE length(payload_hex) = 32 "
                    "AND payload_hex LIKE 'dead%'") == [(1200, "dead" * 8)]
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == len(garbage) + 1
    assert all("\n" not in line and len(line) < 400 for line in lines)
    assert not any("dead" * 9 in line for line in lines)
    assert any("version 3 is not supported" in line for line in lines)



def test_a_restarted_ingest_gets_what_the_broker_queued_for_it(profiles, two_hours, publish,
                                                               ingest, mosquitto, tmp_path):
    schema, batches = encode(profiles["reference-printer"], two_hours, "p4")
    first = ingest(client_id="ingest-under-test")
    publish.schema("p4", schema)
    publish.batches("p4", batches[:4])
    assert first.wait_idle(20)
    first.stop()
    publish.batches("p4", batches[4:])  # while it is down
    second = ingest(client_id="ingest-under-test")
    assert second.wait_idle(20, quiet=1.0)
    s = summary(second.db_path)["p4"]
    assert (s["batches"], s["readings"], s["gaps"], s["duplicates"]) == (12, 5040, [], 0)
    assert second.stats()["batches"] == 8


def _ingest_process(port, db, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                             "mqtt://127.0.0.1:%d" % port, "--db", str(db), "--every", "0.5"]
                            + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = proc.stdout.readline()
    assert first.startswith("ingest tether-ingest-"), first + proc.stderr.read()
    return proc


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("stopped: "), out
    return last


def test_a_stop_while_the_database_cannot_be_read_says_so_in_one_line_exit_0(mosquitto,
                                                                           tmp_path):
    # A routine stop while PostgreSQL was away ended in a traceback and exit 1, which systemd
    # records as a failure. Here the path the totals are read from is a folder now.
    import os
    db = tmp_path / "fleet.sqlite"
    proc = _ingest_process(mosquitto.port, db)
    os.replace(db, tmp_path / "moved.sqlite")
    db.mkdir()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    last = out.strip().splitlines()[-1]
    assert last.startswith("stopped: ") and "the database cannot be read just now: " in last, out


def test_two_ingest_processes_split_the_fleet_and_share_one_file(profiles, two_hours, publish,
                                                                 mosquitto, tmp_path):
    db = tmp_path / "fleet.sqlite"
    procs = [_ingest_process(mosquitto.port, db, "--group", "tether-ingest") for _ in range(2)]
    try:
        devices = ["fleet-%02d" % k for k in range(8)]
        schema, batches = encode(profiles["reference-printer"], two_hours, "x")
        publish.schema(devices[0], schema)
        sent = []
        for d in devices:
            sent.append((d, [envelope(b, device=d) for b in batches]))
        items = []
        for k in range(len(batches)):  # interleaved, as a fleet sends them
            for d, bs in sent:
                items.append(("%s/%s/up/batch" % (PREFIX, d), bs[k]))
        twice = [(t, p) for t, p in items[::10]]
        publish.many(items + twice)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            t = totals(db)
            if t["batches"] == len(items) and t["duplicates"] == len(twice):
                break
            time.sleep(0.2)
    finally:
        lines = [_stop(p) for p in procs]
    t = totals(db)
    assert (t["batches"], t["readings"], t["duplicates"]) == (len(items), len(items) * 420,
                                                              len(twice))
    assert (t["malformed"], t["missing"], t["held"]) == (0, 0, 0)
    per_process = dict(rows(str(db), "SELECT ingest, count(*) FROM batches GROUP BY ingest"))
    assert len(per_process) == 2 and all(n > 0 for n in per_process.values()), per_process
    assert sum(int(line.split(" messages")[0].split()[-1]) for line in lines) \
        == len(items) + len(twice) + 2  # every message once; the schema to each of them
    for d in devices:
        s = summary(str(db))[d]
        assert (s["batches"], s["readings"], s["gaps"]) == (12, 5040, [])
    assert rows(str(db), "SELECT count(*) FROM (SELECT device, t_ms, channel FROM readings "
                         "GROUP BY device, t_ms, channel HAVING count(*) > 1)") == [(0,)]


def test_tether_ingest_over_verified_tls(mosquitto_factory, tls_files, profiles, two_hours,
                                         tmp_path):
    broker = mosquitto_factory(tls="server")
    db = tmp_path / "tls.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                             "mqtts://localhost:%d" % broker.tls_port, "--ca",
                             str(tls_files.ca_pem), "--db", str(db), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert "(TLS)" in first, first + proc.stderr.read()
    publish = Publisher(broker.port)
    try:
        schema, batches = encode(profiles["reference-printer"], two_hours, "p5")
        publish.schema("p5", schema)
        publish.batches("p5", batches)
        deadline = time.monotonic() + 20
        while totals(db)["batches"] < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        publish.close()
        last = _stop(proc)
    assert "12 batches, 5040 readings" in last
    assert summary(db)["p5"]["readings"] == 5040


def test_tether_ingest_says_why_it_cannot_start(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(users=True)
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:%d" % broker.port, "--db", str(tmp_path / "x.sqlite"),
                           "--username", "admin", "--password", "wrong"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "refused" in proc.stderr and "wrong" not in proc.stderr
    # a refusal is no broker lost: "lost the broker (...closed by the broker or lost)" followed
    assert "lost the broker" not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker", "http://x",
                           "--db", str(tmp_path / "x.sqlite")], capture_output=True, text=True)
    assert proc.returncode == 2 and "mqtt://host:1883" in proc.stderr


def test_tether_ingest_on_a_websockets_listener_says_the_port_is_no_plain_mqtt_one(
        mosquitto_factory, tmp_path):
    # It said "lost the broker (Protocol error); reconnecting" four times, then "no answer
    # from the broker within 10 s": the broker had answered, in HTTP.
    from simulator.lab.mosquitto import free_port
    port = free_port()
    mosquitto_factory(extra_conf="listener %d 127.0.0.1\nprotocol websockets" % port)
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:%d" % port, "--db", str(tmp_path / "x.sqlite")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "lost the broker" not in proc.stderr, proc.stderr
    assert proc.stderr.count("is that port a plain MQTT listener? (not a websockets one") == 2, (
        proc.stderr)   # once as it tries again, once as it gives up


def test_the_subcommand_plugs_into_a_parser():
    import argparse

    from firmware import ingest_cmd
    parser = argparse.ArgumentParser(prog="tether")
    sub = parser.add_subparsers(dest="command")
    ingest_cmd.add_command(sub)
    args = parser.parse_args(["ingest", "--broker", "mqtts://u:p%40ss@broker.example",
                              "--db", "f.sqlite", "--group", "g2"])
    assert args.func is ingest_cmd.main and args.group == "g2" and args.prefix == "tether/v1"
    assert ingest_cmd.parse_broker(args.broker) == ("broker.example", 8883, True, "u", "p@ss")
    assert ingest_cmd.parse_broker("mqtt://[::1]:1884") == ("::1", 1884, False, None, None)



def test_acknowledging_on_receipt_stores_everything_too(mosquitto, profiles, tmp_path):
    lines = [json.dumps(r) for r in reference.readings(hours=12)]
    schema, batches = encode(profiles["reference-printer"], lines, "p6")
    i = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "f.sqlite"), ack_after_store=False)
    i.start()
    publish = Publisher(mosquitto.port)
    try:
        publish.schema("p6", schema)
        publish.batches("p6", batches + batches[:5])
        assert i.wait_idle(30)
    finally:
        publish.close()
        i.stop()
    s = summary(i.db_path)["p6"]
    assert (s["batches"], s["readings"], s["duplicates"], s["gaps"]) == (72, 72 * 420, 5, [])


def test_the_ingest_reconnects_after_a_broker_restart(profiles, two_hours, mosquitto, ingest,
                                                      caplog):
    schema, batches = encode(profiles["reference-printer"], two_hours, "p7")
    i = ingest()
    publish = Publisher(mosquitto.port)
    publish.schema("p7", schema)
    publish.batches("p7", batches[:6])
    assert i.wait_idle(20)
    publish.close()
    mosquitto.restart()
    deadline = time.monotonic() + 15
    while not i.stats()["connected"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert i.stats()["connected"]  # and subscribed again
    publish = Publisher(mosquitto.port)
    try:
        publish.schema("p7", schema)
        publish.batches("p7", batches[6:])
        assert i.wait_idle(20)
    finally:
        publish.close()
    s = summary(i.db_path)["p7"]
    assert (s["batches"], s["readings"], s["gaps"]) == (12, 5040, [])
    # a broker without persistence kept nothing for it: said, as the lossy case it is
    assert [r for r in caplog.records if r.levelname == "WARNING" and
            "the broker kept no session" in r.getMessage()], caplog.text


def test_plain_subscriptions_by_default_and_shared_ones_on_request(profiles, two_hours, publish,
                                                                   ingest):
    assert Ingest("h", 1, "f", group="g").topics[0] == "$share/g-batch/" + PREFIX + "/+/up/batch"
    schema, batches = encode(profiles["reference-printer"], two_hours, "p8")
    i = ingest()
    assert i.topics[0] == PREFIX + "/+/up/batch"
    publish.schema("p8", schema)
    publish.batches("p8", batches)
    assert i.wait_idle(20)
    assert summary(i.db_path)["p8"]["readings"] == 5040


def test_a_broker_that_goes_away_is_said_so_not_as_an_unspecified_error(mosquitto, tmp_path,
                                                                        caplog):
    # "lost the broker 127.0.0.1:N (Unspecified error)": paho's MQTT 5 code for any close.
    i = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "f.sqlite")).start()
    try:
        with caplog.at_level(logging.WARNING, logger="tether.ingest"):
            mosquitto.stop()
            deadline = time.monotonic() + 30
            while not any("lost the broker" in r.getMessage() for r in caplog.records) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        mosquitto.start()
        i.stop()
    [line] = [r.getMessage() for r in caplog.records if "lost the broker" in r.getMessage()]
    assert line == ("lost the broker 127.0.0.1:%d (the connection was closed by the broker or "
                    "lost); reconnecting" % mosquitto.port)
