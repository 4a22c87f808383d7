"""What the writer does when the database fails or refuses (ingest/subscriber.py Ingest._commit,
ingest/handlers.py, the stores): a lost connection is tried again and reconnected, what a
message makes the database refuse is the message's (a `malformed` row), never a stop of the
ingest. The writer is driven directly (Ingest._commit on a store, no broker); its backoff sleep
is counted so that a writer that would try again for ever fails the test instead of hanging it."""
import logging
import types

import psycopg
import pytest

from agent import batch
from agent.schema import Schema
from ingest import subscriber
from ingest.store import open_store
from ingest.subscriber import Ingest

PREFIX = "tether/v1"
SCHEMA = Schema([("power", "W", 1, -1)])
T0 = 1763856000000


def compact(device, seq, schema=SCHEMA):
    import array
    enc = batch.Encoder(device, schema, "compact", max_readings=3)
    return bytes(enc.encode(T0, array.array("q", [0, 10000, 20000]), array.array("B", [0, 0, 0]),
                            array.array("q", [714, 716, 700]), 0, 3, seq, 1, 0, True))


def msg(device, kind, payload, k=0):
    return ("%s/%s/up/%s" % (PREFIX, device, kind), payload, 1, k, 1.0e9 + k, 0)


class GivesUp(Exception):
    """The writer kept trying again past what the test allows."""


@pytest.fixture
def patient(monkeypatch):
    """The writer's time with a backoff sleep that does not sleep and raises GivesUp after 20."""
    import time
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) > 20:
            raise GivesUp("still trying after %d attempts" % len(sleeps))

    monkeypatch.setattr(subscriber, "time", types.SimpleNamespace(
        time=time.time, monotonic=time.monotonic, sleep=sleep))
    return sleeps


@pytest.fixture
def writer():
    made = []

    def make(url, **options):
        i = Ingest("127.0.0.1", 1, url, repair=False, **options)
        i.client_id = "failures"
        i._db = open_store(url)
        made.append(i)
        return i

    yield make
    for i in made:
        i._db.close()


def rows(i, sql):
    return [tuple(r) for r in i._db.execute(sql).fetchall()]


def kill_backend(url, pid):
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0]


def test_a_connection_killed_in_a_chores_pass_is_reconnected_and_what_comes_next_stored(
        postgres_url, writer, patient):
    i = writer(postgres_url)
    i._commit([msg("dev-1", "batch", compact("dev-1", 0))], False)  # no schema yet: held
    assert rows(i, "SELECT device, seq FROM held") == [("dev-1", 0)]
    chores = i._chores
    killed = []

    def chores_on_a_dead_connection(d):
        if not killed:  # the server ends the connection while the writer is in a transaction
            killed.append(i._db.conn.info.backend_pid)
            kill_backend(postgres_url, killed[0])
        return chores(d)

    i._chores = chores_on_a_dead_connection
    i._commit([], True)  # a pass that does not plan (no repair) and has a held row
    assert killed and i._db.conn.info.backend_pid != killed[0]
    i._commit([msg("dev-1", "schema", SCHEMA.to_cbor()), msg("dev-1", "batch",
                                                             compact("dev-1", 1), 1)], False)
    assert rows(i, "SELECT seq FROM batches ORDER BY seq") == [(0,), (1,)]
    assert rows(i, "SELECT count(*) FROM held") == [(0,)]


def test_a_database_error_of_several_lines_is_logged_on_one(postgres_url, writer, patient,
                                                            caplog, monkeypatch):
    i = writer(postgres_url)
    begin = i._db.begin
    calls = []

    def begin_once_failing():
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly\n\tThis "
                                           "probably means the server terminated abnormally\n")
        begin()

    monkeypatch.setattr(i._db, "begin", begin_once_failing)
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        i._commit([msg("dev-1", "schema", SCHEMA.to_cbor())], False)
    [line, back] = [r.getMessage() for r in caplog.records if "the database" in r.getMessage()]
    assert line.startswith("the database: server closed the connection unexpectedly This "
                           "probably means the server terminated abnormally; trying again")
    assert "\n" not in line and "\t" not in line
    # the log ended on the failure, as if it still stood
    assert back == "the database stores again: 1 messages stored, 0 wait"
    assert rows(i, "SELECT count(*) FROM schemas") == [(1,)]


@pytest.mark.parametrize("ack_after_store", [True, False])
def test_messages_a_stop_leaves_unstored_are_said_lost_when_acknowledged_on_receipt(
        postgres_url, writer, patient, caplog, monkeypatch, ack_after_store):
    # With --ack-on-receipt the log said "not acknowledged: the broker sends them again" of
    # messages it had acknowledged: gone, while the operator read that they were safe.
    i = writer(postgres_url, ack_after_store=ack_after_store)

    def down():
        raise psycopg.OperationalError("connection refused")
    monkeypatch.setattr(i._db, "begin", down)
    i._stopping = True
    i._q.put(msg("dev-2", "schema", SCHEMA.to_cbor()))  # a group still queued behind it
    with caplog.at_level(logging.ERROR, logger="tether.ingest"):
        i._commit([msg("dev-1", "schema", SCHEMA.to_cbor())], False)
        i._commit([i._q.get()], False)  # the next group: not tried, not said again
    said = " ".join(r.getMessage() for r in caplog.records)
    # it said 0, then 65, of one stop: the group being tried and those queued, once
    assert said.count("stopping with") == 1 and "stopping with 2 messages not stored" in said
    if ack_after_store:
        assert "the broker sends them again" in said and "LOST" not in said
    else:
        assert "acknowledged on receipt (--ack-on-receipt): LOST" in said
        assert "the broker sends them again" not in said


def senml(device, seq, channel, unit="W", max_bytes=32768):
    import array
    enc = batch.Encoder(device, Schema([(channel, unit, 1, -1)]), "senml", max_bytes=max_bytes)
    return bytes(enc.encode(T0, array.array("q", [0, 10000]), array.array("B", [0, 0]),
                            array.array("q", [714, 716]), 0, 2, seq, 1, 0, True))


def incompressible(n_bytes, seed=1):
    """Text of n_bytes bytes of UTF-8 that no compression shortens (CJK characters at random)."""
    import random
    rnd = random.Random(seed)
    return "".join(chr(0x4E00 + rnd.randrange(20000)) for _ in range(n_bytes // 3))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "fleet.sqlite")
    return request.getfixturevalue("postgres_url")


def test_a_name_too_long_to_store_makes_its_message_malformed_and_the_rest_is_stored(
        any_url, writer, patient):
    i = writer(any_url)
    long_name = incompressible(6000)
    from agent import cbor
    group = [msg("dev-1", "batch", senml("dev-1", 0, long_name)),
             msg("dev-1", "batch", senml("dev-1", 1, "power", unit="W" * 300), 1),
             msg("dev-1", "schema", Schema([("p" * 300, "W", 1, -1)]).to_cbor(), 2),
             msg("dev-1", "event", cbor.dumps([1, "dev-1", 0, 1, 1, T0, "e" * 256, "s", "raised",
                                               None, 1.0]), 3),
             msg("dev-1", "event", cbor.dumps([1, "dev-1", 1, 1, 1, T0, "e", long_name,
                                               "raised", None, 1.0]), 4),
             msg("dev-2", "batch", senml("dev-2", 0, "power"), 5)]
    i._commit(group, False)
    i._commit([msg("dev-2", "batch", senml("dev-2", 1, "power"), 6)], False)
    assert rows(i, "SELECT device, seq FROM batches ORDER BY device, seq") == [
        ("dev-2", 0), ("dev-2", 1)]
    reasons = [r for (r,) in rows(i, "SELECT reason FROM malformed ORDER BY id")]
    assert len(reasons) == 5 and all("at most 255 bytes of UTF-8" in r for r in reasons), reasons
    assert reasons[0].startswith("batch: channel name of 6000 bytes")
    assert reasons[1].startswith("batch: unit name of 300 bytes")
    assert reasons[2].startswith("schema: channel name of 300 bytes")
    assert reasons[3].startswith("event name of 256 bytes")
    assert reasons[4].startswith("sensor name of 6000 bytes")
    assert all(len(r) < 200 for r in reasons)
    assert rows(i, "SELECT count(*) FROM events") == [(0,)]
    assert i.stats()["malformed"] == 5 and i.stats()["batches"] == 2


def test_what_postgresql_refuses_for_a_message_is_the_messages_not_a_failure(
        postgres_url, writer, patient, monkeypatch):
    from ingest import decode
    monkeypatch.setattr(decode, "MAX_NAME", 1 << 20)  # past decode: the index refuses the name
    i = writer(postgres_url)
    i._commit([msg("dev-1", "batch", senml("dev-1", 0, incompressible(6000))),
               msg("dev-2", "batch", senml("dev-2", 0, "power"), 1)], False)
    assert rows(i, "SELECT device, seq FROM batches") == [("dev-2", 0)]
    [(reason,)] = rows(i, "SELECT reason FROM malformed")
    assert reason.startswith("the database refused it: index row size") and "\n" not in reason
    assert patient == []  # stored at the first attempt (with savepoints), nothing tried again


@pytest.mark.parametrize("sqlstate,failed", [
    ("08006", True), ("40P01", True), ("40001", True), ("53100", True), ("57P01", True),
    ("58030", True), ("55P03", True), ("54000", False), ("22003", False), ("23505", False),
    ("55000", True), ("42P01", True), ("42501", True), ("XX000", True), ("22021", False)])
def test_postgresql_errors_are_the_databases_or_the_messages_by_sqlstate(sqlstate, failed):
    from ingest.store.postgres import PostgresStore
    exc = psycopg.errors.lookup(sqlstate)("x")
    assert PostgresStore.failed(None, exc) is failed
    assert PostgresStore.failed(None, psycopg.OperationalError("the connection is lost"))
    assert PostgresStore.failed(None, psycopg.InterfaceError("closed"))
    assert not PostgresStore.failed(None, psycopg.DataError("a NUL character"))


def planning_writer(writer, url):
    """A writer that plans repairs at its next chores pass, after a connect without a session."""
    import time

    from ingest import repair
    i = writer(url)
    i._repair = repair.Repair(repair.Policy(), i.prefix, i.client_id)
    i._ready = True
    i._probe = time.time() + 1
    return i


def test_a_device_numbering_past_32_bits_is_refused_clearly_and_the_ingest_goes_on(
        any_url, writer, patient):
    # A device numbers below 2^32 (its log's state file and the resend command's ranges); the
    # ingest keeps a device's later stores from 2^32 on (ingest/numbering.py), where such a
    # number would have taken another store's place.
    top = 1 << 32
    i = planning_writer(writer, any_url)
    from agent import cbor
    i._commit([msg(device, kind, payload, k) for k, (device, kind, payload) in enumerate([
        ("dev-1", "batch", senml("dev-1", top, "power")),
        ("dev-1", "health", cbor.dumps({"v": 1, "device": "dev-1", "t": 5,
                                        "seq": {"batch": [top - 1, top]}})),
        ("dev-2", "batch", senml("dev-2", 0, "power")),
        ("dev-2", "health", cbor.dumps({"v": 1, "device": "dev-2", "t": 5,
                                        "seq": {"batch": [0, 0]}}))])], False)
    i._commit([], True)  # plans: the tails may be lost, each is probed 64 numbers past
    assert i._probe is None
    assert sorted(r[0] for r in rows(i, "SELECT reason FROM malformed")) == [
        "batch 4294967296 of dev-1: past 2^32 (a device numbers below that)",
        "health: seq.batch: a device's numbers are below 2^32"]
    assert rows(i, "SELECT device, batch_newest FROM devices ORDER BY device") == [("dev-2", 64)]
    i._commit([msg("dev-1", "batch", senml("dev-1", top - 1, "power"), 4)], False)
    assert rows(i, "SELECT seq FROM batches WHERE device = 'dev-1'") == [(top - 1,)]


def test_a_database_error_in_repair_planning_leaves_the_messages_stored(
        postgres_url, writer, patient, caplog):
    i = planning_writer(writer, postgres_url)

    def plan(db, now):
        db.execute("SELECT 1 / 0")  # a planning bug the database reports
    i._repair.plan = plan
    with caplog.at_level(logging.ERROR, logger="tether.ingest"):
        i._commit([msg("dev-1", "batch", senml("dev-1", 0, "power"))], True)
    assert rows(i, "SELECT device, seq FROM batches") == [("dev-1", 0)]
    assert any("repair planning failed" in r.getMessage() for r in caplog.records)
    assert patient == []


def tether_ingest(db):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:1", "--db", str(db)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("version", [1, 3, 4])
def test_an_sqlite_file_of_another_program_is_refused_in_one_line_and_left_as_it_is(
        tmp_path, version):
    import sqlite3
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
    db.execute("PRAGMA user_version = %d" % version)
    db.commit()
    db.close()
    proc = tether_ingest(path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "tether ingest: %s is an SQLite file of something else, not of the Tether ingest "
        "(user_version %d, and no table devices)" % (path, version)]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (version,)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
    finally:
        db.close()


def test_a_database_the_ingest_cannot_read_at_start_is_said_in_one_line(tmp_path):
    import sqlite3

    from ingest.store import sqlite as backend
    path = tmp_path / "odd.sqlite"
    backend.connect(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE schemas RENAME COLUMN document TO body")
    db.commit()
    db.close()
    proc = tether_ingest(path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "tether ingest: %s: no such column: document" % path]


def test_a_message_the_database_refuses_past_its_savepoint_alone_is_malformed(
        any_url, writer, patient):
    import sqlite3
    i = writer(any_url)
    refusal = (psycopg.errors.ProgramLimitExceeded if any_url.startswith("postgresql:")
               else sqlite3.IntegrityError)
    poison = msg("dev-1", "batch", senml("dev-1", 1, "poison"), 1)
    handle, begin, commit = i._handle, i._db.begin, i._db.commit
    seen = []

    def handle_noting(m, d):
        seen.append(m)
        return handle(m, d)

    def begin_afresh():
        seen.clear()
        begin()

    def commit_refusing():  # as a COMMIT the database refuses for what one message wrote
        if poison in seen:
            raise refusal("the database will not take this\nDETAIL: a second line")
        commit()

    i._handle, i._db.begin, i._db.commit = handle_noting, begin_afresh, commit_refusing
    group = [msg("dev-1", "batch", senml("dev-1", 0, "power")), poison,
             msg("dev-2", "batch", senml("dev-2", 0, "power"), 2)]
    i._commit(group, False)
    assert rows(i, "SELECT device, seq FROM batches ORDER BY device, seq") == [
        ("dev-1", 0), ("dev-2", 0)]
    assert rows(i, "SELECT topic, reason FROM malformed") == [
        (poison[0], "the database refused it: the database will not take this DETAIL: a "
                    "second line")]
    assert i.stats()["batches"] == 2 and i.stats()["malformed"] == 1
    i._commit([msg("dev-1", "batch", senml("dev-1", 2, "power"), 3)], False)
    assert i.stats()["batches"] == 3


def test_a_nan_or_infinite_event_value_is_stored_null_on_both_backends():
    # SQLite stored NaN as NULL and PostgreSQL as 'NaN', as readings and insight fields are not
    from agent import cbor
    from ingest import decode
    for v in (float("nan"), float("inf"), -float("inf")):
        e = decode.event("p2", cbor.dumps([1, "p2", 0, 3, 1, 1763856000000, "ink_low", "ink_c",
                                           "raised", v, None]))
        assert e.value is None
    e = decode.event("p2", cbor.dumps([1, "p2", 0, 3, 1, 1763856000000, "ink_low", "ink_c",
                                       "raised", 14.9, None]))
    assert e.value == 14.9


@pytest.mark.parametrize("persistent", [True, False])
def test_a_reconnect_without_a_session_is_warned_of_only_where_one_was_kept(persistent, caplog):
    # --clean-session never has a session: its every reconnect warned that one was lost
    from types import SimpleNamespace
    from ingest.subscriber import Ingest
    i = Ingest("127.0.0.1", 1, ":memory:", persistent=persistent)
    client = SimpleNamespace(subscribe=lambda topics: (0, 1))   # paho's (result, mid)
    ok = SimpleNamespace(is_failure=False)
    with caplog.at_level(logging.WARNING, logger="tether.ingest"):
        for _ in range(2):
            i._on_connect(client, None, SimpleNamespace(session_present=False), ok, None)
    warned = [r for r in caplog.records if "kept no session" in r.getMessage()]
    assert len(warned) == (1 if persistent else 0)
