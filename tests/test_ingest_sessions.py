"""The ingest's sessions against a real Mosquitto with persistence: `tether ingest` with its
defaults loses nothing across broker restarts, and the ingest inside `tether simulate` keeps a
session through a restart and removes it when the run ends, failed or not (docs/ingest.md,
"Which mode is safe where"; bench/broker_restart.py measures the other modes)."""
import argparse
import asyncio
import json
import sqlite3
import threading
import time

import paho.mqtt.client as paho
import pytest

from firmware import ingest_cmd
from simulator import sessions
from simulator.fleet import DEFAULT_FLEET, Fleet, FleetError, load_fleet
from ingest import Ingest, summary
from firmware.profile.compile import compile as compile_profile
from simulator import reference
from tests.test_ingest import Publisher, encode
from tests.test_simulate import assert_every_reading_accounted


def session_present(port, client_id, keep=False):
    """Whether the broker holds a session for client_id: connects with clean_session=False and
    reads the CONNACK's flag; then removes the session that connection made or resumed, unless
    keep."""
    flags = {}
    done = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False, protocol=paho.MQTTv311)

    def on_connect(cl, userdata, f, reason, properties):
        flags["present"] = f.session_present
        done.set()
    client.on_connect = on_connect
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    if not keep:
        assert sessions.forget("127.0.0.1", port, client_id)
    return flags["present"]


@pytest.fixture
def persistent_broker(mosquitto_factory):
    return mosquitto_factory(persistence=True, log_type="error warning",
                             extra_conf="max_queued_messages 0")


def reference_batches(device, hours=2, change=None):
    """(schema, [batch]) of the reference printer's readings through the real encoder; change(p)
    edits the compiled profile first (another schema)."""
    profile, errors = compile_profile("examples/reference-printer.yaml")
    assert not errors
    if change is not None:
        change(profile)
    return encode(profile, [json.dumps(r) for r in reference.readings(hours=hours)], device)


def ingest_once(broker, path, client_id, then=lambda: None):
    """An ingest of client_id on the file at path, started, then() (what is published while it
    runs), idle again, stopped: its stats."""
    i = Ingest("127.0.0.1", broker.port, str(path), client_id=client_id).start()
    try:
        then()
        assert i.wait_idle(30, quiet=1.5)
        return i.stats()
    finally:
        i.stop()


def test_tether_ingest_defaults_to_plain_subscriptions_and_a_persistent_session():
    parser = argparse.ArgumentParser()
    ingest_cmd.add_command(parser.add_subparsers())
    args = parser.parse_args(["ingest", "--broker", "mqtt://h", "--db", "f.sqlite"])
    assert args.group is None and not args.clean_session
    i = Ingest("h", 1, "f.sqlite")
    assert i.group is None and i.persistent
    assert not any(t.startswith("$share/") for t in i.topics)


def test_the_default_ingest_loses_nothing_across_three_broker_restarts(persistent_broker,
                                                                      tmp_path):
    schema, batches = reference_batches("r1")
    i = Ingest("127.0.0.1", persistent_broker.port, str(tmp_path / "f.sqlite"),
               client_id="ingest-restarts").start()
    try:
        publish = Publisher(persistent_broker.port)
        publish.schema("r1", schema)
        publish.batches("r1", batches[:3])
        publish.close()
        for k in range(3):
            persistent_broker.restart()  # SIGTERM: mosquitto saves its database
            # Published at once, while the ingest is still reconnecting (paho waits >= 1 s):
            # only its session on the broker takes these.
            publish = Publisher(persistent_broker.port)
            publish.batches("r1", batches[3 + 3 * k:6 + 3 * k])
            publish.close()
        deadline = time.monotonic() + 60  # paho reconnects after 1 s, then 2, 4...
        while not i.stats()["connected"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert i.wait_idle(30, quiet=1.5) and i.stats()["connected"]
    finally:
        i.stop()
    s = summary(i.db_path)["r1"]
    assert (s["batches"], s["readings"], s["gaps"]) == (12, 5040, [])


class Restarts:
    """The fleet's progress hook (called every 0.5 s of wall time from the fleet's clock):
    restarts the broker (SIGTERM) at each of the first `count` calls once readings flow. The
    restart runs inside the call, so the fleet stands still meanwhile and every restart
    happens while the devices are running, however loaded the machine is."""

    def __init__(self, broker, count):
        self.broker = broker
        self.count = count
        self.done = 0

    def update(self, snap):
        if self.done < self.count and snap["phase"] == "running" and snap["delivered"]:
            self.broker.restart()
            self.done += 1

    def close(self):
        pass


def test_the_simulators_ingest_session_survives_broker_restarts_and_is_gone_after_the_run(
        persistent_broker, tmp_path):
    hook = Restarts(persistent_broker, 3)
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 6), str(tmp_path), 24 * 3600000, speed=None, seed=7,
                  broker_url="mqtt://127.0.0.1:%d" % persistent_broker.port, client="paho",
                  progress=hook)
    report = asyncio.run(fleet.run())
    assert hook.done == 3
    assert_every_reading_accounted(report, str(tmp_path / "fleet.sqlite"))
    client_id = fleet.ingest.client_id
    assert client_id.startswith("tether-sim-")
    assert not session_present(persistent_broker.port, client_id)


@pytest.mark.parametrize("failure", [FleetError("a failure in the middle of the run"),
                                     KeyboardInterrupt()])
def test_a_failed_or_interrupted_run_removes_its_ingest_session_too(persistent_broker, tmp_path,
                                                                   monkeypatch, failure):
    async def fails(self, host, port):
        self.ingest.stop()  # its session stays on the broker, as it does in a run
        assert session_present(port, self.ingest.client_id, keep=True)
        raise failure
    monkeypatch.setattr(Fleet, "_run_devices", fails)
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 2), str(tmp_path), 3600000, speed=None,
                  broker_url="mqtt://127.0.0.1:%d" % persistent_broker.port)
    with pytest.raises(type(failure)):
        asyncio.run(fleet.run())
    assert not session_present(persistent_broker.port, fleet.ingest.client_id)


def test_removing_a_session_from_a_broker_that_is_gone_says_so(persistent_broker):
    persistent_broker.stop()
    assert sessions.forget("127.0.0.1", persistent_broker.port, "nobody", timeout=2) is False


def test_the_progress_line_says_when_the_database_cannot_be_read_not_minus_one_devices():
    from firmware.ingest_cmd import _line
    stats = {k: 0 for k in ("messages", "batches", "readings", "duplicates", "malformed", "held",
                            "requests", "repaired")}
    assert _line(stats, 3).endswith(", 3 devices in the database")
    assert _line(stats, -1).endswith(", the database cannot be read just now")


def test_a_resumed_session_is_not_sent_the_fleets_retained_messages_again(persistent_broker,
                                                                           tmp_path):
    # Subscribed again, the broker sent every retained schema and status again on top of what
    # the session had queued: past its max_queued_messages it dropped live batches behind them
    schema, batches = reference_batches("r1")
    publish = Publisher(persistent_broker.port)
    publish.schema("r1", schema)
    for n in range(50):
        publish("tether/v1/s%d/status" % n, b"online", retain=True)

    def run(db, then):
        return ingest_once(persistent_broker, tmp_path / db, "ingest-retained", then)

    first = run("f.sqlite", lambda: publish.batches("r1", batches[:3]))
    assert (first["schemas"], first["status"], first["batches"]) == (1, 50, 3)
    publish.batches("r1", batches[3:6])             # queued in its session meanwhile
    again = run("f.sqlite", lambda: publish.batches("r1", batches[6:9]))
    assert (again["schemas"], again["status"], again["batches"]) == (0, 0, 6)
    s = summary(str(tmp_path / "f.sqlite"))["r1"]
    assert (s["batches"], s["gaps"]) == (9, [])
    # the same id on a new file has no schema to decode with: it takes the retained ones
    new = run("new.sqlite", lambda: None)
    assert (new["schemas"], new["status"]) == (1, 50)
    publish.close()


def test_a_first_connect_with_no_session_says_whose_session_the_broker_may_still_hold(
        persistent_broker, tmp_path, caplog):
    # An ingest restarted under another default id (an sslmode added to --db, a new host name)
    # left the broker queuing the fleet for the old one, and said nothing
    schema, batches = reference_batches("r1", hours=1)
    publish = Publisher(persistent_broker.port)
    publish.schema("r1", schema)

    def run(client_id, part):
        ingest_once(persistent_broker, tmp_path / "f.sqlite", client_id,
                    lambda: publish.batches("r1", batches[2 * part:2 * part + 2]))

    caplog.set_level("WARNING", logger="tether.ingest")
    run("ingest-old", 0)
    assert not [r for r in caplog.records if "no session" in r.getMessage()]
    caplog.set_level("INFO", logger="tether.ingest")
    run("ingest-standby", 1)      # another id that stored lately: a hot standby, running
    said = [r for r in caplog.records if "no session" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"], said      # said, not warned of
    assert "came to ingest-old, 0 min ago" in said[0].getMessage()
    caplog.clear()
    caplog.set_level("WARNING", logger="tether.ingest")
    db = sqlite3.connect(str(tmp_path / "f.sqlite"))
    db.execute("UPDATE batches SET received_at = received_at - 3600, ingest = 'ingest-old'")
    db.commit()
    db.close()
    run("ingest-new", 2)          # and an hour after the old id's last batch
    said = [r.getMessage() for r in caplog.records if "no session" in r.getMessage()]
    assert len(said) == 1 and "newest batch came to ingest-old, 60 min ago" in said[0], said
    assert "if no ingest runs as ingest-old any more" in said[0]
    assert "--client-id ingest-old takes them" in said[0]
    caplog.clear()
    assert sessions.forget("127.0.0.1", persistent_broker.port, "ingest-new")
    run("ingest-new", 3)          # its own session gone (a broker without persistence)
    said = [r.getMessage() for r in caplog.records if "no session" in r.getMessage()]
    assert len(said) == 1 and "which stored this database's newest batch" in said[0], said
    publish.close()
    sessions.forget("127.0.0.1", persistent_broker.port, "ingest-old")


def test_a_batch_held_in_a_resumed_session_gets_its_devices_retained_schema(persistent_broker,
                                                                            tmp_path):
    # A database restored from a backup lacks a schema whose message went to the one before;
    # a resumed session takes no retained schemas again: the device's batches were held for
    # good. Its schema topic alone is subscribed, and the broker sends its retained schema.
    import shutil
    schema1, batches1 = reference_batches("r1", hours=1)
    schema2, batches2 = reference_batches(              # another schema
        "r2", hours=1, change=lambda p: p["sensors"][0].update(resolution=[1, -2]))
    assert schema1.to_cbor() != schema2.to_cbor()
    publish = Publisher(persistent_broker.port)
    path = tmp_path / "f.sqlite"

    def run(then=lambda: None):
        return ingest_once(persistent_broker, path, "ingest-restored", then)

    publish.schema("r1", schema1)
    run(lambda: publish.batches("r1", batches1[:2]))
    shutil.copy(path, tmp_path / "backup.sqlite")
    publish.schema("r2", schema2)
    run(lambda: publish.batches("r2", batches2[:2]))
    shutil.copy(tmp_path / "backup.sqlite", path)      # restored: r2's schema is not in it
    publish.batches("r2", batches2[2:4])               # queued in its session
    stats = run()
    assert summary(str(path))["r2"]["batches"] == 2 and stats["held"] == 0, stats
    publish.close()


def test_another_topic_prefix_on_the_same_database_is_another_default_client_id():
    # It resumed the old prefix's session, whose subscriptions the broker kept: the new
    # prefix's schemas and statuses were never subscribed. The default prefix's ids stay.
    import hashlib
    import socket
    from ingest.store import client_base
    host = socket.gethostname().split(".")[0][:24] or "host"
    before = "tether-ingest-%s-%s" % (host, hashlib.sha1(b"fleet.sqlite|None").hexdigest()[:6])
    assert client_base("fleet.sqlite", None) == client_base("fleet.sqlite", None,
                                                            "tether/v1") == before
    assert client_base("fleet.sqlite", None, "acme/v1") != before
