"""End-to-end repair, the ingest's side (ingest/repair.py): gap finding, the grace period, the
per-device and fleet-wide rate limits, replies, the layout migration, all on an injected clock;
then against a real Mosquitto, with a device that answers resend commands as the protocol says
(docs/uplink.md, "How the ingest repairs gaps")."""
import json
import logging
import sqlite3
import subprocess
import sys
import time

import paho.mqtt.client as paho
import pytest

from agent import cbor, cbor_decode
from firmware.profile.compile import compile as compile_profile
from simulator import reference
from ingest.store import sqlite as ingest_mod
from ingest import Ingest, connect_db, known_newest, repairing, summary, totals
from ingest import repair
from ingest.repair import (Ages, ID_PREFIX, MAX_SEQS, Policy, Repair, choose, missing,
                              refill)
from ingest.store import open_store
from tests.test_ingest import encode, envelope

PREFIX = "tether/v1"
GRACE = 10.0
POLICY = dict(grace=GRACE, interval=5.0, timeout=30.0, reask=60.0, rate=1.0, burst=3)


# ---- the pure parts ----

def test_missing_ranges_lie_between_stored_numbers_and_after_the_last():
    assert missing([0, 1, 4, 5, 9], 0, 11) == [(2, 3), (6, 8), (10, 11)]
    assert missing([], 3, 5) == [(3, 5)]
    assert missing(range(6), 0, 5) == []
    assert missing([2, 7, 40], 3, 9) == [(3, 6), (8, 9)]


def test_a_gap_keeps_its_age_while_it_grows_or_is_partly_filled():
    ages = Ages()
    assert ages.update("d", [(10, 12)], 100.0) == [(10, 12, 100.0)]
    # The tail grew (a newer health report) and 11 arrived: the old parts keep their time.
    assert ages.update("d", [(10, 10), (12, 15)], 105.0) == [
        (10, 10, 100.0), (12, 12, 100.0), (13, 15, 105.0)]
    assert ages.update("d", [(3, 4), (12, 15)], 107.0) == [
        (3, 4, 107.0), (12, 12, 100.0), (13, 15, 105.0)]
    ages.keep({"other"})
    assert ages.update("d", [(12, 12)], 110.0) == [(12, 12, 110.0)]
    assert ages.update("d", [], 111.0) == [] and "d" not in ages.seen


def test_a_command_is_bounded_and_skips_what_was_just_asked_for():
    assert choose([(0, 9)], [3, 4, 8]) == [[0, 2], [5, 7], [9, 9]]
    assert choose([(0, 9), (20, 22)], [0, 21, 22]) == [[1, 9], [20, 20]]
    assert choose([(5, 5)], [5]) == []
    assert choose([(0, 5000)], []) == [[0, MAX_SEQS - 1]]
    many = [(k * 10, k * 10 + 1) for k in range(40)]
    assert choose(many, []) == [[k * 10, k * 10 + 1] for k in range(16)]
    assert choose([(0, 1000), (2000, 2100)], []) == [[0, 1000], [2000, 2022]]
    assert sum(b - a + 1 for a, b in choose([(0, 1000), (2000, 2100)], [])) == MAX_SEQS


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst():
    assert refill(0, None, 50.0, 2.0, 10) == 10
    assert refill(0.0, 50.0, 51.5, 2.0, 10) == 3.0
    assert refill(4.0, 50.0, 1000.0, 2.0, 10) == 10
    assert refill(4.0, 50.0, 40.0, 2.0, 10) == 4.0  # another process's clock a little behind


@pytest.mark.parametrize("option", [dict(grace=-1), dict(rate=0), dict(burst=0.5),
                                    dict(interval="5"), dict(reask=float("nan"))])
def test_a_bad_policy_is_refused(option):
    with pytest.raises(ValueError, match="repair"):
        Policy(**option)


# ---- on the database, with the clock in the test's hands ----

@pytest.fixture(scope="module")
def batches():
    profile, errors = compile_profile("examples/reference-printer.yaml")
    assert not errors
    lines = [json.dumps(r) for r in reference.readings(hours=2)]
    _, data = encode(profile, lines, "dev", "senml")
    return data  # 12 SenML batches of 420 readings, seq 0..11


def batch(batches, device, seq):
    return envelope(batches[seq % len(batches)], device=device, seq=seq)


def event(device, seq):
    return cbor.dumps([1, device, seq, 1, 1, 1763856000000 + seq, "ink_low", "ink_c", "raised",
                       14.0, None])


def health(device, batch=None, event=None, **extra):
    seq = {}
    if batch is not None:
        seq["batch"] = list(batch)
    if event is not None:
        seq["event"] = list(event)
    doc = {"v": 1, "device": device, "boot": 1, "t": 5, "dropped": 0, "seq": seq}
    doc.update(extra)
    return cbor.dumps(doc)


def answer(cmd, ok=True, **result):
    doc = {"reply": cmd["id"], "ok": ok}
    if ok:
        result.setdefault("kind", cmd["kind"])
        for key in ("gone", "dropped", "unknown"):
            result.setdefault(key, [])
        result.setdefault("queued", 0)
        doc["result"] = result
    else:
        doc["error"] = "bounded"
    return cbor.dumps(doc)


class Desk:
    """An ingest's storing and planning without a broker: messages go in through its writer's
    own path, stamped with the test's clock, and plan(now) returns the commands it would send."""

    def __init__(self, path, ingest_id="ingest-a", **policy):
        self.ingest = Ingest("127.0.0.1", 1, str(path), repair=False)
        self.ingest._db = connect_db(str(path))
        self.db = self.ingest._db
        self.repair = Repair(Policy(**dict(POLICY, **policy)), PREFIX, ingest_id)

    def put(self, device, kind, payload, at):
        topic = "%s/%s/%s" % (PREFIX, device, kind if kind == "status" else "up/" + kind)
        self.ingest._commit([(topic, payload, 0, 0, at, 0)], False)

    def batches(self, device, data, seqs, at):
        for s in seqs:
            self.put(device, "batch", batch(data, device, s), at)

    def plan(self, now):
        self.db.begin()
        try:
            out = self.repair.plan(self.db, now)
        finally:
            self.db.commit()
        return [(topic.split("/")[2], cbor_decode.loads(payload)) for topic, payload in out]

    def close(self):
        self.db.close()


def rows(db, sql, *args):
    """Rows of a query on the database (a SQLite file or a PostgreSQL URL)."""
    store = open_store(db, create=False)
    try:
        return [tuple(r) for r in store.execute(sql, args).fetchall()]
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, tmp_path):
    """Desks on one database: a SQLite file, or a PostgreSQL database (the same SQL through
    its store: repair stays exact on both)."""
    made = []
    where = (tmp_path / "fleet.sqlite" if request.param == "sqlite"
             else request.getfixturevalue("postgres_url"))

    def make(**options):
        d = Desk(where, **options)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


T0 = 1000.0


def test_gaps_and_the_tail_are_asked_for_once_their_grace_is_over(desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 1, 2, 5, 6], T0)
    assert d.plan(T0) == []  # no health report with `seq` yet: nothing to compare with
    d.put("p1", "health", health("p1", batch=[0, 9]), T0)
    assert d.plan(T0 + 1) == []
    assert d.plan(T0 + GRACE - 0.1) == []
    (device, cmd), = d.plan(T0 + 1 + GRACE)
    assert device == "p1"
    assert cmd["cmd"] == "resend" and cmd["kind"] == "batch"
    assert cmd["ranges"] == [[3, 4], [7, 9]] and cmd["id"].startswith(ID_PREFIX)
    assert rows(d.ingest.db_path, "SELECT seq, asks FROM asked ORDER BY seq") == [
        (3, 1), (4, 1), (7, 1), (8, 1), (9, 1)]
    assert summary(d.ingest.db_path)["p1"]["open"] == 5


def test_what_is_missing_is_counted_per_device_for_a_shard_that_waits_for_its_own(
        desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 1, 2, 5, 6], T0)
    d.put("p1", "health", health("p1", batch=[0, 9]), T0)
    d.batches("p2", batches, [0, 1], T0)
    d.put("p2", "health", health("p2", batch=[0, 1]), T0)
    d.plan(T0 + 1)
    db = d.ingest.db_path
    assert repairing(db) == repairing(db, {"p1", "p2"}) == repairing(db, {"p1"}) == 5
    assert repairing(db, {"p2"}) == repairing(db, set()) == 0
    assert known_newest(db) == {"p1": (9, -1), "p2": (1, -1)}


def test_what_arrives_within_the_grace_period_is_not_asked_for(desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 2], T0)
    d.put("p1", "health", health("p1", batch=[0, 3]), T0)
    assert d.plan(T0) == []
    d.batches("p1", batches, [1, 3], T0 + 5)  # late, not lost
    assert d.plan(T0 + 5 + GRACE) == []
    assert repairing(d.ingest.db_path) == 0
    assert rows(d.ingest.db_path, "SELECT batch_done FROM devices") == [(3,)]


def test_a_device_has_one_request_at_a_time_and_an_interval_between_them(desk, batches):
    d = desk(interval=5.0, timeout=30.0, reask=60.0)
    d.batches("p1", batches, [0, 4], T0)
    d.put("p1", "health", health("p1", batch=[0, 4], event=[0, 3]), T0)
    for k in (0, 2):
        d.put("p1", "event", event("p1", k), T0)
    d.plan(T0)
    (_, first), = d.plan(T0 + GRACE)
    assert (first["kind"], first["ranges"]) == ("batch", [[1, 3]])
    # Unanswered: nothing more for this device (not even its event gaps) until the timeout.
    assert d.plan(T0 + GRACE + 1) == []
    assert d.plan(T0 + GRACE + 29) == []
    (_, second), = d.plan(T0 + GRACE + 30)
    assert (second["kind"], second["ranges"]) == ("event", [[1, 1], [3, 3]])
    # Answered (queued): the device is free again after the interval from its request, and the
    # batches asked for half a minute ago are not asked for again before `reask`.
    d.put("p1", "event", answer(second, queued=2), T0 + GRACE + 31)
    assert d.plan(T0 + GRACE + 34) == []
    assert d.plan(T0 + GRACE + 35) == []  # 1..3 were asked for at +GRACE: not yet again
    (_, third), = d.plan(T0 + GRACE + 60)
    assert (third["kind"], third["ranges"]) == ("batch", [[1, 3]])
    assert rows(d.ingest.db_path, "SELECT seq, asks FROM asked WHERE kind = 'batch' "
                                  "ORDER BY seq") == [(1, 2), (2, 2), (3, 2)]


def test_the_fleet_wide_bucket_holds_for_every_process_sharing_the_file(desk, batches):
    a = desk(rate=1.0, burst=3, ingest_id="ingest-a")
    b = desk(rate=1.0, burst=3, ingest_id="ingest-b")
    devices = ["p%d" % k for k in range(6)]
    for dev in devices:
        a.batches(dev, batches, [0, 2], T0)
        a.put(dev, "health", health(dev, batch=[0, 2]), T0)
    a.plan(T0)
    b.plan(T0)
    asked = [dev for dev, _ in a.plan(T0 + GRACE)]
    assert len(asked) == 3  # the burst
    assert b.plan(T0 + GRACE) == []  # the same bucket, and the same devices' slots
    asked += [dev for dev, _ in b.plan(T0 + GRACE + 1)]  # one token a second
    assert len(asked) == 4
    asked += [dev for dev, _ in a.plan(T0 + GRACE + 3)]
    assert sorted(asked) == devices
    assert a.plan(T0 + GRACE + 4) == [] and b.plan(T0 + GRACE + 4) == []
    per_process = dict(rows(a.ingest.db_path, "SELECT ingest, count(*) FROM requests "
                                               "GROUP BY ingest"))
    assert per_process == {"ingest-a": 5, "ingest-b": 1}


def test_two_processes_never_ask_one_device_at_once(desk, batches):
    a = desk(ingest_id="ingest-a")
    b = desk(ingest_id="ingest-b")
    a.batches("p1", batches, [0, 3], T0)
    a.put("p1", "health", health("p1", batch=[0, 3]), T0)
    a.plan(T0)
    b.plan(T0)
    assert len(a.plan(T0 + GRACE)) == 1
    assert b.plan(T0 + GRACE) == [] and b.plan(T0 + GRACE + 20) == []


def test_an_offline_device_is_not_asked_until_it_is_back(desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 3], T0)
    d.put("p1", "health", health("p1", batch=[0, 3]), T0)
    d.put("p1", "status", b"offline", T0)
    d.plan(T0)
    assert d.plan(T0 + GRACE) == []
    d.put("p1", "status", b"online", T0 + GRACE)
    assert [c["ranges"] for _, c in d.plan(T0 + GRACE + 1)] == [[[1, 2]]]


def test_a_device_sending_after_an_offline_status_is_asked(desk, batches):
    # Its retained `online` lost at a broker dropping messages: the `offline` before it stood,
    # and its gap was never asked for while it went on sending (an ingest review).
    d = desk()
    d.batches("p1", batches, [0, 3], T0)
    d.put("p1", "health", health("p1", batch=[0, 3]), T0)
    d.put("p1", "status", b"offline", T0)
    d.plan(T0)
    assert d.plan(T0 + GRACE) == []
    d.put("p1", "batch", batch(batches, "p1", 4), T0 + GRACE)     # heard from after it
    assert [c["ranges"] for _, c in d.plan(T0 + GRACE + 1)] == [[[1, 2]]]


def test_a_reply_settles_what_is_gone_or_dropped_and_what_arrives_counts_as_repaired(
        desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 1, 2, 5, 6, 10], T0)
    d.put("p1", "health", health("p1", batch=[0, 12]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    assert cmd["ranges"] == [[3, 4], [7, 9], [11, 12]]
    # 3 is gone (overwritten on the device), 4 was dropped unsent, 12 is beyond what it formed
    # (its newest was wrong), and 7..9 and 11 are on their way.
    d.put("p1", "event", answer(cmd, queued=4, gone=[[3, 3]], dropped=[[4, 4]],
                                unknown=[[12, 12]]), T0 + GRACE + 1)
    for s in (7, 8, 9, 11):
        d.put("p1", "batch", batch(batches, "p1", s), T0 + GRACE + 2)
    d.put("p1", "batch", batch(batches, "p1", 8), T0 + GRACE + 2)  # a second answer: a duplicate
    d.plan(T0 + GRACE + 3)
    s = summary(d.ingest.db_path)["p1"]
    assert (s["batches"], s["readings"], s["duplicates"]) == (10, 10 * 420, 1)
    assert (s["repaired"], s["repaired_readings"]) == (4, 4 * 420)
    assert (s["lost_at_broker"], s["dropped_by_device"], s["open"]) == (1, 1, 0)
    assert s["gaps"] == [(3, 4)] and s["newest"] == 11
    assert repairing(d.ingest.db_path) == 0
    assert rows(d.ingest.db_path, "SELECT seq, reason FROM lost ORDER BY seq") == [
        (3, "broker"), (4, "dropped")]
    assert rows(d.ingest.db_path, "SELECT seq FROM batches WHERE repaired = 1 ORDER BY seq") \
        == [(7,), (8,), (9,), (11,)]
    assert rows(d.ingest.db_path, "SELECT count(*) FROM asked") == [(0,)]
    assert rows(d.ingest.db_path, "SELECT id, answered_at FROM requests") == [
        (cmd["id"], T0 + GRACE + 1)]
    t = totals(d.ingest.db_path)
    assert (t["repaired"], t["lost_at_broker"], t["dropped_by_device"]) == (4, 1, 1)
    # The next health report says 12 again: it is asked for again (re-checked, not settled).
    d.put("p1", "health", health("p1", batch=[0, 12]), T0 + 100)
    d.plan(T0 + 100)
    assert [c["ranges"] for _, c in d.plan(T0 + 100 + GRACE)] == [[[12, 12]]]


def test_only_numbers_asked_for_and_still_missing_are_settled(desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 3], T0)
    d.put("p1", "health", health("p1", batch=[0, 3]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    d.put("p1", "batch", batch(batches, "p1", 1), T0 + GRACE)  # arrived in the meantime
    # A device that says more than it was asked about settles nothing beyond it.
    d.put("p1", "event", answer(cmd, gone=[[0, 1000]]), T0 + GRACE + 1)
    assert rows(d.ingest.db_path, "SELECT seq, reason FROM lost") == [(2, "broker")]
    # And a stale copy of 2 that turns up after all is stored, and no longer lost.
    d.put("p1", "batch", batch(batches, "p1", 2), T0 + GRACE + 2)
    s = summary(d.ingest.db_path)["p1"]
    assert (s["batches"], s["lost_at_broker"], s["gaps"]) == (4, 0, [])


def test_events_are_repaired_like_batches(desk):
    d = desk()
    for k in (0, 1, 4):
        d.put("p1", "event", event("p1", k), T0)
    d.put("p1", "health", health("p1", batch=[None, -1], event=[0, 5]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    assert (cmd["kind"], cmd["ranges"]) == ("event", [[2, 3], [5, 5]])
    d.put("p1", "event", answer(cmd, queued=2, gone=[[5, 5]]), T0 + GRACE)
    for k in (2, 3):
        d.put("p1", "event", event("p1", k), T0 + GRACE)
    s = summary(d.ingest.db_path)["p1"]
    assert (s["events"], s["events_repaired"], s["events_lost_at_broker"]) == (5, 2, 1)
    assert (s["lost_at_broker"], s["repaired"]) == (0, 0)
    assert repairing(d.ingest.db_path) == 0


def test_a_device_holding_a_gap_between_stored_batches_is_not_probed_past_them(desk, batches):
    # A whole answer at the top of what was asked probes past the tail only when it is the tail:
    # batches stored above a gap say the device's tail is not there.
    d = desk()
    d.batches("p1", batches, list(range(0, 4)) + list(range(6, 10)), T0)
    d.put("p1", "health", health("p1", batch=[0, 2]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    assert cmd["ranges"] == [[4, 5]]
    d.put("p1", "event", answer(cmd, queued=2), T0 + GRACE)
    d.batches("p1", batches, [4, 5], T0 + GRACE)
    assert repairing(d.ingest.db_path) == 0
    assert summary(d.ingest.db_path)["p1"]["newest"] == 2


def test_a_device_holding_the_top_of_a_tail_request_is_asked_past_it_until_unknown(
        desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 1], T0)
    d.put("p1", "health", health("p1", batch=[0, 3]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    assert cmd["ranges"] == [[2, 3]]
    d.put("p1", "event", answer(cmd, queued=2), T0 + GRACE)
    d.batches("p1", batches, [2, 3], T0 + GRACE)
    d.plan(T0 + 2 * GRACE)
    (_, cmd), = d.plan(T0 + 3 * GRACE)
    assert cmd["ranges"] == [[4, 3 + 64]]
    d.put("p1", "event", answer(cmd, queued=1, unknown=[[5, 67]]), T0 + 3 * GRACE)
    d.batches("p1", batches, [4], T0 + 3 * GRACE)
    assert repairing(d.ingest.db_path) == 0
    assert summary(d.ingest.db_path)["p1"]["newest"] == 4


def test_below_the_oldest_it_holds_only_gaps_between_stored_batches_are_asked_for(desk, batches):
    # An ingest that joined late (or a device whose log has moved on) does not ask for a history
    # the device no longer holds; a gap between batches it stored is asked for, and settled.
    d = desk()
    d.batches("p1", batches, [5, 6, 8, 20, 21], T0)
    d.put("p1", "health", health("p1", batch=[15, 23]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    assert cmd["ranges"] == [[7, 7], [9, 19], [22, 23]]
    d2 = desk()
    d2.batches("p2", batches, [5, 6], T0)
    d2.put("p2", "health", health("p2", batch=[2, 6]), T0)
    d2.plan(T0)
    assert [c["ranges"] for _, c in d2.plan(T0 + GRACE)] == [[[2, 4]]]


def test_a_refused_request_is_logged_and_asked_again_later(desk, batches):
    d = desk()
    d.batches("p1", batches, [0, 2], T0)
    d.put("p1", "health", health("p1", batch=[0, 2]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    d.put("p1", "event", answer(cmd, ok=False), T0 + GRACE)
    assert rows(d.ingest.db_path, "SELECT count(*) FROM lost") == [(0,)]
    assert d.plan(T0 + GRACE + 10) == []
    assert [c["ranges"] for _, c in d.plan(T0 + GRACE + 60)] == [[[1, 1]]]


@pytest.mark.parametrize("kind,payload,says", [
    ("health", health("p1", batch=[0]), "seq.batch is not [oldest, newest]"),
    ("health", health("p1", batch=[-1, 3]), "oldest -1 is not null"),
    ("health", health("p1", batch=[0, "3"]), "newest '3' is not -1"),
    ("health", cbor.dumps({"device": "p1", "seq": [1, 2]}), "seq is not a map"),
    ("event", cbor.dumps({"reply": ID_PREFIX + "x", "ok": True, "result": {"kind": "x"}}),
     "kind batch or event"),
    ("event", cbor.dumps({"reply": ID_PREFIX + "x", "ok": True,
                          "result": {"kind": "batch", "gone": [[5, 2]]}}),
     "gone: [5, 2] is not a range"),
    ("event", cbor.dumps({"reply": ID_PREFIX + "x", "ok": True,
                          "result": {"kind": "batch", "gone": [[1, 1]] * 65}}),
     "at most 64 ranges"),
])
def test_a_malformed_seq_or_reply_is_counted_and_changes_nothing(desk, kind, payload, says):
    d = desk()
    d.put("p1", kind, payload, T0)
    (reason,), = rows(d.ingest.db_path, "SELECT reason FROM malformed")
    assert says in reason
    assert rows(d.ingest.db_path, "SELECT count(*) FROM lost") == [(0,)]
    assert rows(d.ingest.db_path, "SELECT count(*) FROM replies") == [(0,)]


# ---- the layout ----

def test_a_version_1_file_is_migrated_and_keeps_what_it_holds(tmp_path, batches):
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.executescript(ingest_mod.SCHEMA_SQL)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO devices (device, first_seen, last_seen, last_seq, batches, readings) "
               "VALUES ('old', 1, 1, 1, 2, 840)")
    for seq in (0, 1):
        db.execute("INSERT INTO batches (device, seq, boot, dropped, synced, encoding, deflated, "
                   "bytes, crc32, received_at, readings) VALUES ('old', ?, 1, 0, 1, 'senml', 0, "
                   "1, 1, 1, 420)", (seq,))
    db.execute("INSERT INTO events (device, seq, boot, t_ms, synced, event, sensor, state, "
               "received_at) VALUES ('old', 7, 1, 1, 1, 'e', 's', 'raised', 1)")
    db.commit()
    db.close()
    d = Desk(tmp_path / "old.sqlite")
    try:
        assert d.db.execute("PRAGMA user_version").fetchone() == (ingest_mod.DB_VERSION,)
        assert d.db.execute("SELECT count(*) FROM insights").fetchone() == (0,)
        assert d.db.execute("SELECT count(*) FROM sim_parts").fetchone() == (0,)
        d.batches("old", batches, [2], T0)
        d.put("old", "health", health("old", batch=[0, 3]), T0)
        d.plan(T0)
        assert [c["ranges"] for _, c in d.plan(T0 + GRACE)] == [[[3, 3]]]
    finally:
        d.close()
    s = summary(path)["old"]
    # (the two old batches were written without their readings rows)
    assert (s["batches"], s["readings"], s["repaired"], s["lost_at_broker"]) == (3, 420, 0, 0)
    assert rows(path, "SELECT readings, last_event_seq, event_done FROM devices") == [
        (1260, 7, None)]
    # its logs from before store ids: store 0, numbered as they were
    assert rows(path, "SELECT kind, store, number FROM stores ORDER BY kind") == [
        ("batch", 0, 0), ("event", 0, 0)]


def test_a_file_of_a_newer_layout_is_refused(tmp_path):
    path = str(tmp_path / "new.sqlite")
    connect_db(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = %d" % (ingest_mod.DB_VERSION + 1))
    db.close()
    with pytest.raises(RuntimeError, match="layout version %d, of a newer ingest"
                       % (ingest_mod.DB_VERSION + 1)):
        connect_db(path)


# ---- against Mosquitto ----

def ranges_of(seqs):
    out = []
    for s in sorted(seqs):
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


class Device:
    """A device on paho that answers resend commands as docs/uplink.md says: it re-publishes
    what its `log` (seq -> batch bytes) holds and names the rest gone, dropped or unknown."""

    def __init__(self, port, name, log, newest, dropped=()):
        self.name = name
        self.log = log
        self.newest = newest
        self.dropped = set(dropped)
        self.commands = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=paho.MQTTv311)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("%s/%s/down/cmd" % (PREFIX, name), 1)[1]
        self.publish("status", b"online", retain=True)

    def publish(self, sub, payload, retain=False):
        topic = "%s/%s/%s" % (PREFIX, self.name, sub if sub == "status" else "up/" + sub)
        return self.client.publish(topic, payload, 1, retain)

    def send(self, seqs):
        for info in [self.publish("batch", self.log[s]) for s in seqs]:
            info.wait_for_publish(10)

    def health(self):
        self.publish("health", health(self.name, batch=[min(self.log), self.newest])
                     ).wait_for_publish(10)

    def _on_message(self, client, userdata, msg):
        cmd = cbor_decode.loads(msg.payload)
        self.commands.append(cmd)
        asked = [s for a, b in cmd["ranges"] for s in range(a, b + 1)]
        held = [s for s in asked if s in self.log]
        result = {"kind": "batch", "queued": len(held),
                  "gone": ranges_of(s for s in asked if s not in self.log and s <= self.newest
                                    and s not in self.dropped),
                  "dropped": ranges_of(s for s in asked if s in self.dropped),
                  "unknown": ranges_of(s for s in asked if s > self.newest)}
        self.publish("event", cbor.dumps({"reply": cmd["id"], "ok": True, "result": result}))
        for s in held:  # behind the reply, as a device's queue sends them
            self.publish("batch", self.log[s])

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


FAST = dict(grace=0.5, interval=0.5, timeout=5.0, reask=5.0, rate=50.0, burst=50)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_ingest_repairs_what_the_broker_lost_from_a_device_that_holds_it(
        mosquitto, batches, tmp_path):
    log = {s: batch(batches, "p9", s) for s in range(12)}
    device = Device(mosquitto.port, "p9", log, newest=11, dropped=[5])
    del log[7], log[5]  # overwritten since, and dropped unsent when the device's log was full
    ingest = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "f.sqlite"),
                    repair=Policy(**FAST)).start()
    try:
        # What the broker lost: 3, 4, 5, 7 between what arrived, and 10, 11 at the tail.
        device.send([0, 1, 2, 6, 8, 9])
        device.health()
        assert wait_for(lambda: ingest.stats()["health"] == 1
                        and repairing(ingest.db_path) == 0), summary(ingest.db_path)
        assert ingest.wait_idle(20)
    finally:
        ingest.stop()
        device.close()
    s = summary(ingest.db_path)["p9"]
    assert (s["batches"], s["readings"], s["repaired"], s["repaired_readings"]) \
        == (10, 10 * 420, 4, 4 * 420)
    assert (s["lost_at_broker"], s["dropped_by_device"], s["open"]) == (1, 1, 0)
    assert rows(ingest.db_path, "SELECT seq, reason FROM lost") == [(5, "dropped"),
                                                                   (7, "broker")]
    assert rows(ingest.db_path, "SELECT seq FROM batches WHERE repaired = 1") == [
        (3,), (4,), (10,), (11,)]
    assert all(c["cmd"] == "resend" and c["kind"] == "batch" and len(c["ranges"]) <= 16
               for c in device.commands)
    assert device.commands[0]["ranges"] == [[3, 5], [7, 7], [10, 11]]
    st = ingest.stats()
    assert (st["requests"], st["repaired"], st["lost_at_broker"], st["dropped_by_device"]) \
        == (len(device.commands), 4, 1, 1)


def test_a_tail_lost_with_its_health_report_is_found_by_a_probe_after_the_session_was_lost(
        mosquitto, batches, tmp_path):
    # The broker (no persistence) restarted while the ingest was away: what the device published
    # then, its health report too, went nowhere. The ingest connects without a session, so it
    # asks for the tail past what it stored; the device re-sends what it has and says where its
    # tail ends.
    db = str(tmp_path / "f.sqlite")
    log = {s: batch(batches, "p9", s) for s in range(6)}
    device = Device(mosquitto.port, "p9", log, newest=3)
    ingest = Ingest("127.0.0.1", mosquitto.port, db, repair=Policy(**FAST)).start()
    try:
        device.send([0, 1, 2, 3])
        device.health()
        assert wait_for(lambda: totals(db)["batches"] == 4 and totals(db)["health"] == 1)
        assert ingest.wait_idle(20)
    finally:
        ingest.stop()
        device.close()
    mosquitto.restart()
    device = Device(mosquitto.port, "p9", log, newest=5)
    device.send([4, 5])
    device.health()
    ingest = Ingest("127.0.0.1", mosquitto.port, db, repair=Policy(**FAST)).start()
    try:
        assert wait_for(lambda: totals(db)["batches"] == 6 and repairing(db) == 0), summary(db)
        assert ingest.wait_idle(20)
    finally:
        ingest.stop()
        device.close()
    assert device.commands[0]["ranges"] == [[4, 3 + 64]]
    assert rows(db, "SELECT seq FROM batches WHERE repaired = 1") == [(4,), (5,)]
    assert summary(db)["p9"]["newest"] == 5  # set back by the device's `unknown`
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]


def test_tether_ingest_shows_per_device_what_was_repaired_and_lost(mosquitto, batches,
                                                                   tmp_path):
    db = tmp_path / "cli.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "ingest", "--broker",
         "mqtt://127.0.0.1:%d" % mosquitto.port, "--db", str(db), "--quiet",
         "--repair-grace", "0.5", "--repair-interval", "0.5", "--repair-reask", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("ingest "), first + proc.stderr.read()
    log = {s: batch(batches, "printer-0042", s) for s in range(8)}
    device = Device(mosquitto.port, "printer-0042", log, newest=7)
    del log[2]
    try:
        device.send([0, 1, 4, 5])
        device.health()
        assert wait_for(lambda: totals(db)["batches"] == 7 and repairing(db) == 0)
    finally:
        device.close()
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    head = next(k for k, line in enumerate(lines) if line.startswith("device "))
    assert lines[head + 2].split() == ["printer-0042", "7", str(7 * 420), "3", str(3 * 420),
                                       "1", "0", "0"]
    assert lines[-1].startswith("stopped: ")
    assert "3 batches repaired, 1 lost at the broker, 0 dropped by devices" in lines[-1]


def test_bad_repair_options_are_said_plainly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:1", "--db", str(tmp_path / "x.sqlite"),
                           "--repair-rate", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "repair rate must be above 0" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- the simulator's report ----

def test_the_report_counts_what_was_lost_at_the_broker_apart_and_what_was_repaired(desk,
                                                                                    batches):
    from array import array
    from types import SimpleNamespace as NS

    from ingest import lost_seqs
    from simulator import parts
    from simulator.device import SimDevice
    from simulator.report import from_parts, text

    def build(fleet):  # as Fleet._report makes it
        body = parts.part(fleet, lost_seqs(fleet.db_path), fleet.restarts, fleet.started_wall,
                          fleet.ended_wall, parts.erased(fleet.db_path, fleet.devices))
        return from_parts(fleet.db_path, [body])

    d = desk()
    d.batches("p1", batches, [0, 1, 4], T0)
    d.put("p1", "health", health("p1", batch=[0, 4]), T0)
    d.plan(T0)
    (_, cmd), = d.plan(T0 + GRACE)
    d.put("p1", "event", answer(cmd, queued=1, gone=[[2, 2]]), T0 + GRACE)
    d.put("p1", "batch", batch(batches, "p1", 3), T0 + GRACE)

    class Device(NS):
        readings_in = SimDevice.readings_in
        crashed = None

        def failed(self):
            pass

    log = NS(unacked_readings=0, unacked=0)
    device = Device(device_id="p1", profile={"device": {"model": "m"}, "sensors": []}, buffered=5 * 420 - 100,
                    batch_readings={7: array("I", [420, 420, 320, 420, 420])}, first_store=7,
                    cut_losses=0, erases=0,
                    agent=NS(buffer=NS(log=log), events=NS(log=log)), events_raised=0,
                    power_cuts=0, boots=1, outage_ms=0, sensor_faults=0, backlog_max=0,
                    link=NS(bytes_up=1000),
                    model=NS(truth={}))
    fleet = NS(db_path=d.ingest.db_path, devices=[device], duration_ms=3600000, seed=1,
               started_wall=1.0, ended_wall=2.0, restarts=0, first=0, devices_total=1,
               clock=NS(start_unix_ms=T0), history=[])
    f = build(fleet)["fleet"]
    assert (f["generated"], f["delivered"], f["lost"]) == (2000, 4 * 420, 0)
    assert (f["lost_at_broker"], f["lost_at_broker_batches"]) == (320, 1)
    assert (f["repaired"], f["repaired_batches"]) == (420, 1)
    assert "320 readings (1 batches) and 0 events LOST AT THE BROKER" in text(build(fleet))


# ---- a device's new log (ingest/numbering.py) ----

OLD_LOG, NEW_LOG = 0x10001, 0x20002
NEW = 1 << 32  # where the ingest numbers a device's second store from


def logged(batches, device, seq, store, dropped=0):
    """Batch `seq` as a log with store id `store` sends it (a version 2 envelope)."""
    f = cbor_decode.loads(batch(batches, device, seq))
    f[4] = dropped
    return cbor.dumps([2] + f[1:7] + [store, f[7]])


def old_log(d, batches, seqs, newest):
    """Device p1's first log: these batches, and a health report of the newest it published."""
    for s in seqs:
        d.put("p1", "batch", logged(batches, "p1", s, OLD_LOG), T0)
    d.put("p1", "health", health("p1", batch=[0, newest, OLD_LOG]), T0)


def test_devices_that_sent_health_reports_are_not_told_of_as_sending_none(desk, batches,
                                                                         caplog):
    # A device on firmware whose health carries no seq, and one whose log was made afresh
    # (its repair start cleared until the new log's report): both were warned of as sending
    # no health report ("for 129600 min" after a reflash).
    d = desk()
    d.batches("old", batches, [0, 2], T0)
    d.put("old", "health", health("old"), T0)          # no seq
    old_log(d, batches, (0, 1), 1)
    d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG), T0 + 5)
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        for k in range(30):
            d.plan(T0 + 60 * k)
    assert [r.getMessage() for r in caplog.records if "no health report" in r.getMessage()] == []


def test_a_device_whose_log_was_made_afresh_is_stored_from_the_new_logs_zero(desk, batches):
    d = desk()
    db = d.ingest.db_path
    old_log(d, batches, (0, 1, 2, 3), 5)  # 4 and 5 never arrive
    # The board is erased (tether flash --firmware): a new log numbers from 0 again.
    for s in (0, 1, 3):
        d.put("p1", "batch", logged(batches, "p1", s, NEW_LOG), T0 + 1)
    d.put("p1", "health", health("p1", batch=[0, 4, NEW_LOG]), T0 + 1)
    assert rows(db, "SELECT count(*) FROM malformed") == [(0,)]
    assert rows(db, "SELECT seq FROM batches ORDER BY seq") == [
        (0,), (1,), (2,), (3,), (NEW,), (NEW + 1,), (NEW + 3,)]
    assert rows(db, "SELECT readings FROM devices") == [(7 * 420,)]
    assert rows(db, "SELECT kind, store, number FROM stores ORDER BY number") == [
        ("batch", OLD_LOG, 0), ("batch", NEW_LOG, 1)]
    # What the erased log had published and never delivered is lost, and says so.
    assert rows(db, "SELECT seq, reason FROM lost ORDER BY seq") == [(4, "erased"),
                                                                     (5, "erased")]
    assert d.ingest.stats()["stores_replaced"] == 1
    assert (d.ingest.stats()["erased_with_device"], summary(db)["p1"]["erased_with_device"]) \
        == (2, 2)
    # Repair asks the new log for what it lacks, in the new log's own numbers.
    assert d.plan(T0 + 2) == []
    (device, cmd), = d.plan(T0 + 2 + GRACE)
    assert cmd["ranges"] == [[2, 2], [4, 4]] and cmd["store"] == NEW_LOG
    d.put("p1", "event", answer(cmd, gone=[[2, 2]], queued=1, store=NEW_LOG), T0 + 3)
    d.put("p1", "batch", logged(batches, "p1", 4, NEW_LOG), T0 + 3)
    assert rows(db, "SELECT seq, reason FROM lost WHERE seq >= ? ORDER BY seq", NEW) == [
        (NEW + 2, "broker")]
    # A late batch of the old log is still stored under its own number.
    d.put("p1", "batch", logged(batches, "p1", 4, OLD_LOG), T0 + 4)
    assert rows(db, "SELECT seq, reason FROM lost WHERE seq < ?", NEW) == [(5, "erased")]
    # Gaps are within one log: none spans the two.
    assert rows(db, "SELECT from_seq, to_seq FROM gaps ORDER BY from_seq") == [(NEW + 2, NEW + 2)]


def test_two_boards_publishing_under_one_device_id_are_told_of_once(desk, batches, caplog):
    # Two boards flashed with one id (no {uid}): their logs' batches come in turn, which the
    # ingest read as one erased log after another, and said nothing else.
    d = desk()
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        for s in range(4):
            d.put("p1", "batch", logged(batches, "p1", s, OLD_LOG), T0 + s)
            d.put("p1", "batch", logged(batches, "p1", s, NEW_LOG), T0 + s)
    said = [r.getMessage() for r in caplog.records if "one device id" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "device p1: a batch of its earlier log (its store 0 here) came after one of its newer "
        "log (store 1)"), said
    assert rows(d.ingest.db_path, "SELECT count(*) FROM batches") == [(8,)]


def test_a_reply_or_health_report_of_a_log_the_ingest_never_met_changes_nothing(desk, batches):
    d = desk()
    db = d.ingest.db_path
    old_log(d, batches, (0, 1, 3), 3)
    assert d.plan(T0 + 1) == []
    (device, cmd), = d.plan(T0 + 1 + GRACE)
    assert cmd["ranges"] == [[2, 2]]
    d.put("p1", "event", answer(cmd, gone=[[2, 2]], store=0x30003), T0 + 2)
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]
    assert rows(db, "SELECT count(*) FROM stores") == [(1,)]
    d.put("p1", "event", answer(cmd, gone=[[2, 2]], store=OLD_LOG), T0 + 3)
    assert rows(db, "SELECT seq, reason FROM lost") == [(2, "broker")]


def test_a_device_from_before_store_ids_that_gets_a_new_log_keeps_its_numbers(desk, batches):
    d = desk()
    db = d.ingest.db_path
    d.batches("p1", batches, [0, 1, 2], T0)  # version 1 envelopes: store 0
    d.put("p1", "event", event("p1", 0), T0)
    d.put("p1", "health", health("p1", batch=[0, 2], event=[0, 0]), T0)
    f = cbor_decode.loads(event("p1", 0))
    d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG), T0 + 1)
    d.put("p1", "event", cbor.dumps([2] + f[1:] + [NEW_LOG]), T0 + 1)
    assert rows(db, "SELECT seq FROM batches ORDER BY seq") == [(0,), (1,), (2,), (NEW,)]
    assert rows(db, "SELECT seq FROM events ORDER BY seq") == [(0,), (NEW,)]
    assert rows(db, "SELECT kind, store, number FROM stores ORDER BY kind, number") == [
        ("batch", 0, 0), ("batch", NEW_LOG, 1), ("event", 0, 0), ("event", NEW_LOG, 1)]
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]
    assert rows(db, "SELECT count(*) FROM malformed") == [(0,)]


def test_a_log_that_drew_a_new_id_past_its_first_numbers_is_asked_only_from_where_it_starts(
        desk, batches):
    # An id file that failed its check: the log draws a new id and numbers on from 3, its
    # batches 0..2 still under the old one. Nothing below 3 is the new store's to ask for.
    d = desk()
    db = d.ingest.db_path
    old_log(d, batches, (0, 1, 2), 2)
    for s in (3, 4):
        d.put("p1", "batch", logged(batches, "p1", s, NEW_LOG), T0 + 1)
    d.put("p1", "health", health("p1", batch=[3, 5, NEW_LOG]), T0 + 1)
    assert d.plan(T0 + 1) == []
    (device, cmd), = d.plan(T0 + 2 + GRACE)
    assert (cmd["ranges"], cmd["store"]) == ([[5, 5]], NEW_LOG)
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]


def test_a_health_report_of_a_batch_log_not_met_yet_makes_no_store_and_settles_nothing(
        desk, batches):
    # A log made afresh reports before its first batch, or a short-lived one's report comes
    # late: the numbers the ingest has stand.
    d = desk()
    db = d.ingest.db_path
    old_log(d, batches, (0, 1, 3), 3)
    d.put("p1", "health", health("p1", batch=[0, 9, 0x30003], event=[0, 4, 0x40004]), T0 + 1)
    assert rows(db, "SELECT kind, store FROM stores ORDER BY kind") == [("batch", OLD_LOG)]
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]
    assert rows(db, "SELECT batch_newest FROM devices") == [(3,)]
    assert d.plan(T0 + 1) == []
    (device, cmd), = d.plan(T0 + 2 + GRACE)
    assert (cmd["ranges"], cmd["store"]) == ([[2, 2]], OLD_LOG)


def test_an_erased_log_is_settled_up_to_what_it_said_it_published_not_a_probe_past_it(
        desk, batches):
    d = desk()
    db = d.ingest.db_path
    old_log(d, batches, (0, 1, 2), 2)
    d.db.begin()
    repair.probe(d.db, T0 + 100)  # the ingest reconnected: each tail is probed 64 past
    d.db.commit()
    assert rows(db, "SELECT batch_newest FROM devices") == [(66,)]
    d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG), T0 + 1)
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]


def test_a_new_logs_dropped_readings_add_to_the_devices_total(desk, batches):
    # A log made afresh counts its drops from 0: taken as it came, the device's total stood
    # still (the console's "Dropping data" silent) until the new count passed the old one.
    d = desk()
    db = d.ingest.db_path
    d.put("p1", "batch", logged(batches, "p1", 0, OLD_LOG, dropped=50), T0)
    d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG, dropped=7), T0 + 1)
    d.put("p1", "health", health("p1", batch=[0, 0, NEW_LOG], dropped=9), T0 + 1)
    assert rows(db, "SELECT dropped FROM batches ORDER BY seq") == [(50,), (57,)]
    assert rows(db, "SELECT dropped_reported, dropped_health FROM devices") == [(57, 59)]


def test_a_number_the_device_says_it_holds_and_never_sends_is_asked_ever_less_then_lost(
        desk, batches):
    # A device that re-sends something else under that number (another log's batch): asked for
    # every minute for ever, until the reasks grew and ended.
    d = desk()
    db = d.ingest.db_path
    d.batches("p1", batches, [0, 2], T0)
    d.put("p1", "health", health("p1", batch=[0, 2]), T0)
    d.plan(T0)
    now, asked = T0 + GRACE, []
    while now < T0 + GRACE + 60 * 280:
        for _, cmd in d.plan(now):
            assert cmd["ranges"] == [[1, 1]]
            asked.append(now)
            d.put("p1", "event", answer(cmd, queued=1), now)  # held, it says; nothing comes
        now += 30
    waits = [b - a for a, b in zip(asked, asked[1:])]
    assert len(asked) == repair.MAX_ASKS
    assert all(60 * 2 ** k <= w <= 60 * 2 ** k + 30 for k, w in enumerate(waits)), waits
    assert rows(db, "SELECT seq, reason FROM lost") == [(1, "broker")]
    assert rows(db, "SELECT count(*) FROM asked") == [(0,)]
    d.put("p1", "batch", batch(batches, "p1", 1), now)  # it comes after all
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]


def one_gap(d, batches):
    """Device p1 with batch 1 missing between 0 and 2, as its health report says, planned once."""
    d.batches("p1", batches, [0, 2], T0)
    d.put("p1", "health", health("p1", batch=[0, 2]), T0)
    d.plan(T0)
    return d


def test_a_device_that_never_answers_is_warned_of_once_and_its_gaps_are_not_called_lost(
        desk, batches, caplog):
    # A broker ACL that lets a device publish but not read its commands (Mosquitto grants the
    # subscription and drops the commands): after 8 unanswered asks the numbers were recorded
    # as lost at the broker, which still held nothing wrong, and nothing said why.
    d = one_gap(desk(), batches)   # no status at all (an ACL denying it): warned of too
    db = d.ingest.db_path
    now, asked = T0 + GRACE, []
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        while now < T0 + GRACE + 60 * 600:
            for _, cmd in d.plan(now):
                assert cmd["ranges"] == [[1, 1]]
                asked.append((now, cmd))
            d.put("p1", "batch", batch(batches, "p1", 3), now)  # online, publishing
            now += 30
    assert len(asked) > repair.MAX_ASKS
    assert rows(db, "SELECT count(*) FROM lost") == [(0,)]
    said = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(said) == 1, said
    assert "tether/v1/p1/down/cmd" in said[0]
    # It answers at last (it holds it, it says, and sends nothing): asked once more after the
    # longest wait, then settled as an answering device's would be.
    d.put("p1", "event", answer(asked[-1][1], queued=1), now)
    later = now + 60 * 2 ** (repair.MAX_ASKS - 1)
    for _, cmd in d.plan(later):
        d.put("p1", "event", answer(cmd, queued=1), later)
    d.plan(later + 60 * 2 ** (repair.MAX_ASKS - 1))
    assert rows(db, "SELECT seq, reason FROM lost") == [(1, "broker")]


def test_a_late_answering_or_silent_offline_device_is_not_called_unreachable(desk, batches,
                                                                             caplog):
    # The warning took a device that answers 10 s after the request's timeout, or one that
    # stopped publishing before the request (powered off, its will not yet due), for one whose
    # commands the broker drops.
    for late in (True, False):
        d = one_gap(desk(), batches)
        now, due = T0 + GRACE, []
        with caplog.at_level(logging.WARNING, logger="tether.ingest"):
            while now < T0 + GRACE + 3600 * 10:
                for _, cmd in d.plan(now):
                    due.append((now + 40, cmd))
                while late and due and due[0][0] <= now:
                    d.put("p1", "event", answer(due.pop(0)[1], queued=1), now)
                    d.put("p1", "batch", batch(batches, "p1", 3), now)
                now += 10
        said = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
        assert said == [], (late, said)
        d.close()


def test_a_backlog_received_late_from_an_offline_device_is_not_taken_for_it_online(
        desk, batches, caplog):
    # A group member's queued share, taken after a restart, came after the device's offline
    # (stored by the other member): received now, it read as a device online that ignores
    # its commands ("do commands reach it?")
    d = one_gap(desk(), batches)
    d.put("p1", "status", b"offline", T0)
    now = T0 + GRACE
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        while now < T0 + GRACE + 60 * 600:
            d.plan(now)
            d.put("p1", "batch", batch(batches, "p1", 3), now)  # the backlog, arriving
            now += 30
    said = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert said == [], said


def test_a_device_sending_batches_and_never_its_health_is_told_of_once(desk, batches, caplog):
    # A broker that drops a device's health reports (an ACL on up/health, a size limit between
    # a batch's and a report's) acknowledges them: the gaps waited for good, and nothing said so.
    d = desk()
    d.batches("p1", batches, [0, 2], T0)
    d.batches("p2", batches, [0, 2], T0)
    d.put("p2", "health", health("p2", batch=[0, 2]), T0)
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        for k in range(30):
            d.plan(T0 + 60 * k)
    said = [r.getMessage() for r in caplog.records if "no health report" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("device p1 has sent batches for 1"), said
    assert "tether/v1/p1/up/health" in said[0]


def test_an_erased_log_that_never_reported_its_health_has_its_gaps_settled(desk, batches):
    d = desk()
    db = d.ingest.db_path
    for s in (0, 2):
        d.put("p1", "batch", logged(batches, "p1", s, OLD_LOG), T0)
    d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG), T0 + 1)
    assert rows(db, "SELECT seq, reason FROM lost") == [(1, "erased")]
    assert rows(db, "SELECT count(*) FROM gaps") == [(1,)]  # seen, and settled


def test_new_logs_settle_at_most_max_settled_numbers_a_device_a_day(desk, batches,
                                                                    monkeypatch, caplog):
    # Stores 1, 2, 3... each sent as batch 0 and batch 2^32 - 1: 65,536 rows of `lost` for
    # every two small messages, 900 MB in two minutes, from one device on its own topic.
    from ingest import numbering
    monkeypatch.setattr(numbering, "MAX_SETTLED", 10)
    d = desk()
    db = d.ingest.db_path
    for k in range(4):
        for s in (0, 6):
            d.put("p1", "batch", logged(batches, "p1", s, 0x10001 + k), T0 + k)
    assert rows(db, "SELECT count(*) FROM lost") == [(10,)]   # 5 then 5, then nothing more
    assert "its new batch logs left more numbers to settle as erased in a day than 10" \
        in caplog.text
    # the next day has its own allowance
    d.put("p1", "batch", logged(batches, "p1", 0, 0x20009), T0 + 86400 + 10)
    assert rows(db, "SELECT count(*) FROM lost") == [(15,)]


def test_a_database_from_before_store_ids_settles_an_erased_log_up_to_its_last_health(
        tmp_path, batches):
    path = tmp_path / "old.sqlite"
    d = Desk(path)
    for s in (0, 1, 2):
        d.put("p1", "batch", batch(batches, "p1", s), T0)
    d.put("p1", "health", health("p1", batch=[0, 5]), T0)  # 3..5 on their way
    d.close()
    with sqlite3.connect(str(path)) as conn:  # as the layout before store ids left it
        conn.executescript(
            "DROP TABLE stores; DROP VIEW gaps; CREATE VIEW gaps AS SELECT device, prev + 1 AS "
            "from_seq, seq - 1 AS to_seq, seq - prev - 1 AS missing FROM (SELECT device, seq, "
            "LAG(seq) OVER (PARTITION BY device ORDER BY seq) AS prev FROM batches) "
            "WHERE seq > prev + 1; DROP INDEX events_alarms; DROP INDEX events_sensor_errors; "
            "PRAGMA user_version = 6;")
    d = Desk(path)
    try:
        assert rows(path, "SELECT kind, store, reported FROM stores ORDER BY kind") == [
            ("batch", 0, 5), ("event", 0, None)]
        d.put("p1", "batch", logged(batches, "p1", 0, NEW_LOG), T0 + 1)
    finally:
        d.close()
    assert rows(path, "SELECT seq, reason FROM lost ORDER BY seq") == [
        (3, "erased"), (4, "erased"), (5, "erased")]
