"""The whole agent against a real Mosquitto, under CPython (paho-mqtt) and the real MicroPython
(agent/mqtt.py): readings from the simulated sensors reach a subscriber over verified TLS; birth
and will; mutual TLS and the ACL; health; commands, including garbage that must not stop it."""
import json
import os
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest

from agent import batch, batch_decode, cbor, cbor_decode
from agent.schema import Schema
from firmware.profile.compile import compile as compile_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROFILE = """\
device: {id: %(device)s, model: Test Printer}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 250ms}
  - {name: ink_c, driver: level_probe, pin: 34, interval: 250ms,
     calibration: {raw_empty: 410, raw_full: 3720}}
batch: {max_readings: 100, max_age: 1s}
buffer: {storage: ram, ram_readings: 100, flush_every: 1s}
uplink:
  broker: %(broker)s
  keepalive: 5s
  backoff: {min: 100ms, max: 1s}
  health_every: 10s
%(extra)s"""


@pytest.fixture(params=["cpython", "micropython"])
def interp(request):
    return request.param


class Run:
    """The agent process (tests/portable/agent_main.py) for one compiled profile."""

    def __init__(self, request, interp, tmp_path, yaml_text, seconds=30, health_ms=None):
        path = tmp_path / "profile.yaml"
        path.write_text(yaml_text)
        profile, errors = compile_profile(str(path))
        assert not errors, errors
        if health_ms is not None:  # below what a profile may ask for: a test's steps
            profile["uplink"]["health_ms"] = health_ms
        self.profile = profile
        compiled = tmp_path / "profile.json"
        compiled.write_text(json.dumps(profile))
        if interp == "cpython":
            cmd = [sys.executable, "-u", os.path.join(ROOT, "tests", "portable", "agent_main.py")]
            env, cwd = None, ROOT
        else:
            mp = request.getfixturevalue("micropython")
            cmd = [mp.binary, "-X", "heapsize=512k", "-m", "agent_main"]
            env, cwd = dict(os.environ, MICROPYPATH=mp.lib_dir + ":.frozen"), mp.lib_dir
        self.proc = subprocess.Popen(cmd + [str(compiled), str(seconds)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_line(self, prefix, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None and not any(l.startswith(prefix) for l in self.lines):
                break
            time.sleep(0.05)
        raise AssertionError("no %r from the agent; it said %s\n%s" % (
            prefix, self.lines[-10:], self.proc.stderr.read() if self.proc.poll() is not None else ""))

    def end(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(20)


class Watcher:
    """A subscriber with full rights that keeps every message by topic."""

    def __init__(self, port, username=None, password=None):
        self.messages = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watcher",
                                  protocol=paho.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = lambda c, u, m: self._add(m)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.subscribe("tether/v1/#", 1)
        self.client.loop_start()
        time.sleep(0.3)

    def _add(self, m):
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), m.retain))

    def on(self, topic):
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def wait(self, topic, predicate=lambda p: True, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p, _ in self.on(topic):
                if predicate(p):
                    return p
            time.sleep(0.05)
        raise AssertionError("nothing on %s; got topics %s" % (
            topic, sorted(set(t for t, _, _ in self.messages))))

    def command(self, device, fields):
        payload = fields if isinstance(fields, bytes) else cbor.dumps(fields)
        self.client.publish("tether/v1/%s/down/cmd" % device, payload, 1)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def readings_of(watcher, device, profile):
    schema = Schema.from_profile(profile)
    out = []
    for payload, _ in watcher.on("tether/v1/%s/up/batch" % device):
        out.extend(batch_decode.decode(payload, {schema.id: schema}).readings)
    return out


def test_readings_reach_the_cloud_over_verified_tls_with_birth_health_and_will(
        request, interp, tmp_path, mosquitto_factory, tls_files):
    broker = mosquitto_factory(tls="server")
    device = "tls-" + interp
    watcher = Watcher(broker.port)
    run = Run(request, interp, tmp_path, PROFILE % {
        "device": device, "broker": "mqtts://localhost:%d" % broker.tls_port,
        "extra": "  ca: %s\n" % tls_files.ca_pem})
    try:
        run.wait_line("ready")
        watcher.wait("tether/v1/%s/status" % device, lambda p: p == b"online")
        schema = watcher.wait("tether/v1/%s/up/schema" % device)
        assert Schema.from_cbor(schema).names == ["power", "ink_c"]
        health = cbor_decode.loads(watcher.wait("tether/v1/%s/up/health" % device))
        assert health["device"] == device and health["boot"] == 1 and health["connects"] == 1
        assert set(health["sensors"]) == {"power", "ink_c"}
        deadline = time.time() + 60
        got = []
        while len(got) < 8 and time.time() < deadline:
            time.sleep(0.05)
            got = readings_of(watcher, device, run.profile)
        assert len(got) >= 8 and {name for _, name, _ in got} == {"power", "ink_c"}
        assert all(v == 3.5 for _, n, v in got if n == "power")
        # A crash (no clean stop): the broker publishes the will, retained.
        run.proc.kill()
        watcher.wait("tether/v1/%s/status" % device, lambda p: p == b"offline", timeout=20)
    finally:
        run.end()
        watcher.stop()


def test_mutual_tls_and_the_acl_let_a_device_write_only_under_its_own_name(
        request, interp, tmp_path, mosquitto_factory, tls_files):
    broker = mosquitto_factory(tls="mutual", users=True, acl=True)
    watcher = Watcher(broker.port, "admin", "admin-secret")
    client = tls_files.client("device-A")
    extra = "  ca: %s\n  cert: %s\n  key: %s\n" % (tls_files.ca_pem, client["cert_pem"],
                                                 client["key_pem"])
    url = "mqtts://localhost:%d" % broker.tls_port
    run = Run(request, interp, tmp_path, PROFILE % {"device": "device-A", "broker": url,
                                                    "extra": extra})
    try:
        watcher.wait("tether/v1/device-A/up/batch")  # its own name: delivered
    finally:
        run.end()
    # device-A's certificate, but the topics of device-B: the broker drops every publish.
    (tmp_path / "b").mkdir()
    run = Run(request, interp, tmp_path / "b", PROFILE % {"device": "device-B", "broker": url,
                                                          "extra": extra})
    try:
        run.wait_line("ready")
        time.sleep(4)
        assert watcher.on("tether/v1/device-B/up/batch") == []
        assert watcher.on("tether/v1/device-B/status") == []
        # (the client id) the broker said so
        assert "Denied PUBLISH from device-B" in broker.log_when(
            lambda text: "Denied PUBLISH from device-B" in text)
    finally:
        run.end()
        watcher.stop()


def test_a_broker_that_refuses_the_command_subscription_still_gets_the_readings(
        request, interp, tmp_path, mosquitto):
    # A policy that lets a device publish but not subscribe (AWS IoT, EMQX, HiveMQ) answers
    # SUBACK 0x80: the agent dropped each connection on it and never delivered a batch.
    from simulator.lab.netproxy import Proxy
    proxy = Proxy(mosquitto.port)
    proxy.refuse_subscriptions = True
    watcher = Watcher(mosquitto.port)
    url = "mqtt://127.0.0.1:%d" % proxy.port
    run = Run(request, interp, tmp_path, PROFILE % {"device": "device-A", "broker": url,
                                                    "extra": ""}, health_ms=1000)
    try:
        watcher.wait("tether/v1/device-A/up/batch",
                     lambda p: len(watcher.on("tether/v1/device-A/up/batch")) >= 3)
        health = watcher.wait("tether/v1/device-A/up/health",
                              lambda p: cbor_decode.loads(p)["last_error"] is not None)
    finally:
        run.end()
        watcher.stop()
        proxy.close()
    report = cbor_decode.loads(health)
    assert report["last_error"] == ("the broker refused the subscription to "
                                    "tether/v1/device-A/down/cmd: commands cannot reach the "
                                    "device")
    assert report["connects"] == 1 and proxy.connections == 1


def test_commands_are_answered_and_garbage_does_not_stop_the_agent(
        request, interp, tmp_path, mosquitto):
    device = "cmd-" + interp
    watcher = Watcher(mosquitto.port)
    run = Run(request, interp, tmp_path, PROFILE % {
        "device": device, "broker": "mqtt://127.0.0.1:%d" % mosquitto.port, "extra": ""})
    replies = "tether/v1/%s/up/event" % device

    def reply(cid):
        def match(p):
            d = cbor_decode.loads(p)
            return isinstance(d, dict) and d.get("reply") == cid
        return cbor_decode.loads(watcher.wait(replies, match))

    try:
        run.wait_line("ready")
        watcher.wait("tether/v1/%s/status" % device, lambda p: p == b"online")
        # "online" goes out before the command topic's SUBSCRIBE, health after it: a command
        # sent in between would never reach the device
        healths(watcher, device, 1)
        watcher.command(device, {"id": 1, "cmd": "ping"})
        r = reply(1)
        assert r["ok"] is True and set(r["result"]) == {"t", "synced", "uptime_s"}
        watcher.command(device, b"\xff\xfe not cbor")
        watcher.command(device, {"id": 2, "cmd": "self_destruct"})
        watcher.command(device, {"id": 3, "cmd": "set_interval", "sensor": "power",
                                 "interval_ms": 5})
        watcher.command(device, {"id": 4, "cmd": "set_interval", "sensor": "toner",
                                 "interval_ms": 1000})
        watcher.command(device, {"id": 5, "cmd": "ping", "extra": True})
        assert "unknown command 'self_destruct'" in reply(2)["error"]
        assert "from 100 to 86400000, got 5" in reply(3)["error"]
        assert "no sensor 'toner'" in reply(4)["error"]
        assert "unknown argument 'extra'" in reply(5)["error"]
        garbage = [cbor_decode.loads(p) for p, _ in watcher.on(replies)]
        assert any(d["reply"] is None and "not CBOR" in d["error"] for d in garbage)
        watcher.command(device, {"id": "six", "cmd": "set_interval", "sensor": "power",
                                 "interval_ms": 2000})
        assert reply("six")["result"] == {"sensor": "power", "interval_ms": 2000}
        watcher.command(device, {"id": 7, "cmd": "diag"})
        diag = reply(7)["result"]
        assert diag["sensors"][0][:2] == ["power", 2000] and diag["rejected"] >= 5
        assert diag["model"] == "Test Printer"  # kept by the agent, which lets the profile go
        before = len(watcher.on("tether/v1/%s/up/batch" % device))
        watcher.command(device, {"id": 8, "cmd": "flush"})
        assert reply(8)["ok"] is True
        watcher.wait("tether/v1/%s/up/batch" % device,
                     lambda p: len(watcher.on("tether/v1/%s/up/batch" % device)) > before)
        watcher.command(device, {"id": 9, "cmd": "reboot"})
        assert reply(9)["result"] == {"rebooting": True}
        run.wait_line("rebooting")
        run.wait_line("stopped")
        assert run.proc.wait(20) == 0
    finally:
        run.end()
        watcher.stop()


def test_a_resend_command_brings_back_acknowledged_batches_byte_identical(
        request, interp, tmp_path, mosquitto):
    # What the ingest does when the broker lost batches it acknowledged (docs/uplink.md,
    # "Repair"): it asks for them again and gets the very same bytes on the normal topic.
    device = "repair-" + interp
    watcher = Watcher(mosquitto.port)
    run = Run(request, interp, tmp_path, PROFILE % {
        "device": device, "broker": "mqtt://127.0.0.1:%d" % mosquitto.port, "extra": ""})
    batches = "tether/v1/%s/up/batch" % device

    def copies(seq):
        return [p for p, _ in watcher.on(batches) if batch.seq_of(p) == seq]

    try:
        run.wait_line("ready")
        health = cbor_decode.loads(watcher.wait("tether/v1/%s/up/health" % device))
        assert set(health["seq"]) == {"batch", "event"}
        # [oldest, newest, store id]: each log made here has an id of its own
        assert all(len(v) == 3 and v[1] >= -1 and v[2] >= 1 << 16
                   for v in health["seq"].values())
        # Batch 2 here means the broker acknowledged 0 and 1 before this command reaches the
        # device: it handles their PUBACKs first, in order.
        watcher.wait(batches, lambda p: batch.seq_of(p) >= 2)
        first = [copies(0)[0], copies(1)[0]]
        watcher.command(device, {"id": "r", "cmd": "resend", "kind": "batch",
                                 "ranges": [[0, 1], [1000000, 1000001]]})
        reply = cbor_decode.loads(watcher.wait("tether/v1/%s/up/event" % device, lambda p: (
            isinstance(cbor_decode.loads(p), dict) and cbor_decode.loads(p).get("reply") == "r")))
        assert reply["ok"] is True and reply["result"] == {
            "kind": "batch", "queued": 2, "gone": [], "dropped": [],
            "unknown": [[1000000, 1000001]], "store": health["seq"]["batch"][2]}, reply
        for seq in (0, 1):
            watcher.wait(batches, lambda p: len(copies(seq)) >= 2)
            assert copies(seq) == [first[seq], first[seq]]
    finally:
        run.end()
        watcher.stop()


# ---- a downlink that cannot knock a device off ----

def plain(device, port):
    return PROFILE % {"device": device, "broker": "mqtt://127.0.0.1:%d" % port, "extra": ""}


def replies_to(watcher, device, cid):
    out = []
    for p, _ in watcher.on("tether/v1/%s/up/event" % device):
        d = cbor_decode.loads(p)
        if isinstance(d, dict) and "reply" in d and d["reply"] == cid:
            out.append(d)
    return out


def wait_reply(watcher, device, cid):
    watcher.wait("tether/v1/%s/up/event" % device, lambda p: replies_to(watcher, device, cid))
    return replies_to(watcher, device, cid)


def healths(watcher, device, n=1, predicate=lambda h: True, timeout=30):
    """The health reports so far, once n of them satisfy predicate."""
    topic = "tether/v1/%s/up/health" % device
    deadline = time.time() + timeout
    while True:
        got = [cbor_decode.loads(p) for p, _ in watcher.on(topic)]
        if len([h for h in got if predicate(h)]) >= n:
            return got
        if time.time() > deadline:
            raise AssertionError("%d health reports, %s" % (len(got), got[-1:]))
        time.sleep(0.05)


def connections(broker, device):
    return broker.log().count(" as %s (" % device)


def test_commands_of_3_kib_to_1_mib_get_an_error_reply_are_counted_and_the_connection_stays(
        request, interp, tmp_path, mosquitto):
    device = "big-" + interp
    watcher = Watcher(mosquitto.port)
    run = Run(request, interp, tmp_path, plain(device, mosquitto.port), health_ms=1000)
    try:
        run.wait_line("ready")
        watcher.wait("tether/v1/%s/status" % device, lambda p: p == b"online")
        # "online" goes out before the command topic's SUBSCRIBE, health after it: a command
        # sent in between would never reach the device
        healths(watcher, device, 1)
        sizes = {"k3": 3 * 1024, "k100": 100 * 1024, "k1024": 1024 * 1024}
        payloads = {cid: cbor.dumps({"id": cid, "cmd": "ping", "pad": b"\x00" * n})
                    for cid, n in sizes.items()}
        for cid, payload in payloads.items():
            watcher.command(device, payload)
        watcher.command(device, {"id": "small", "cmd": "ping"})
        assert wait_reply(watcher, device, "small")[0]["ok"] is True
        for cid, payload in payloads.items():
            [r] = replies_to(watcher, device, cid)
            assert r["ok"] is False and r["error"].startswith(
                "command of %d bytes is larger than the " % len(payload)), r
        health = healths(watcher, device, 1, lambda h: h["too_large"] == 3)[-1]
        assert health["connects"] == 1 and health["reconnects"] == 0
        assert connections(mosquitto, device) == 1
    finally:
        run.end()
        watcher.stop()


def test_a_burst_of_commands_gets_each_one_answered_or_counted_as_dropped(
        request, interp, tmp_path, mosquitto):
    # At most 8 wait to be run (agent/uplink.py): how many a burst loses depends on the
    # scheduler, that none is lost unseen does not.
    device = "burst-" + interp
    watcher = Watcher(mosquitto.port)
    run = Run(request, interp, tmp_path, plain(device, mosquitto.port), health_ms=500)
    try:
        run.wait_line("ready")
        healths(watcher, device, 1)
        ids = ["b%d" % k for k in range(100)]
        for cid in ids:
            watcher.command(device, {"id": cid, "cmd": "ping"})

        def answered():
            return sum(len(replies_to(watcher, device, cid)) for cid in ids)
        got = healths(watcher, device, 1,
                      lambda h: h["commands_dropped"] + answered() == len(ids), timeout=60)
        assert max(h["commands_dropped"] for h in got) + answered() == len(ids)
        assert all(len(replies_to(watcher, device, cid)) <= 1 for cid in ids)
    finally:
        run.end()
        watcher.stop()


def test_a_retained_oversized_command_does_not_loop_the_device_through_reconnects(
        request, interp, tmp_path, mosquitto):
    device = "loop-" + interp
    watcher = Watcher(mosquitto.port)
    big = cbor.dumps({"id": "stuck", "cmd": "ping", "pad": b"\x00" * 3 * 1024})
    watcher.client.publish("tether/v1/%s/down/cmd" % device, big, 1, retain=True).wait_for_publish(5)
    run = Run(request, interp, tmp_path, plain(device, mosquitto.port), health_ms=1000)
    try:
        [r] = wait_reply(watcher, device, "stuck")
        assert r["ok"] is False and "larger than" in r["error"]
        # Five health reports, a second apart: one connection all along (before, the device
        # reconnected one to two times a second, and published status, schema and health
        # again each time).
        got = healths(watcher, device, 5)
        assert all(h["connects"] == 1 for h in got), [h["connects"] for h in got]
        assert got[-1]["too_large"] == 1
        assert connections(mosquitto, device) == 1
        assert [p for p, _ in watcher.on("tether/v1/%s/status" % device)] == [b"online"]
        assert len(replies_to(watcher, device, "stuck")) == 1
    finally:
        run.end()
        watcher.stop()


def kick(port, client_id):
    """Connect with the device's client id: the broker closes the device's connection. One
    CONNECT, then DISCONNECT, with no network thread: one would reconnect on its own when the
    device takes its id back, knock the device off again, and the commands sent to the second
    connection would be lost with it."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=paho.MQTTv311)
    c.connect("127.0.0.1", port, keepalive=10)
    deadline = time.time() + 10
    while not c.is_connected():
        assert time.time() < deadline, "no CONNACK for the kick"
        c.loop(0.1)
    c.disconnect()


def test_a_command_runs_once_across_a_reconnect_and_a_retained_one_never_twice(
        request, interp, tmp_path, mosquitto):
    device = "once-" + interp
    cmd_topic = "tether/v1/%s/down/cmd" % device
    watcher = Watcher(mosquitto.port)
    # Retained before the device is there: it arrives retained, and is not run.
    watcher.client.publish(cmd_topic, cbor.dumps({"id": "old", "cmd": "flush"}), 1,
                           retain=True).wait_for_publish(5)
    run = Run(request, interp, tmp_path, plain(device, mosquitto.port), health_ms=1000)
    try:
        [r] = wait_reply(watcher, device, "old")
        assert r["ok"] is False and "retained command not run" in r["error"]
        watcher.command(device, {"id": "d1", "cmd": "flush"})
        assert wait_reply(watcher, device, "d1")[0]["ok"] is True
        # Retained while the device is connected: delivered live (no retain flag), it runs.
        watcher.client.publish(cmd_topic, cbor.dumps({"id": "live", "cmd": "flush"}), 1,
                               retain=True).wait_for_publish(5)
        assert wait_reply(watcher, device, "live")[0]["ok"] is True
        kick(mosquitto.port, device)
        healths(watcher, device, 1, lambda h: h["connects"] == 2)
        # The broker has replayed "live", retained, to the new subscription; now "d1" again.
        watcher.command(device, {"id": "d1", "cmd": "flush"})
        watcher.command(device, {"id": "after", "cmd": "ping"})
        assert wait_reply(watcher, device, "after")[0]["ok"] is True
        # Replies leave in the order the commands came: none came for the repeats.
        assert [len(replies_to(watcher, device, cid)) for cid in ("old", "d1", "live")] == [1, 1, 1]
        watcher.command(device, {"id": "diag", "cmd": "diag"})
        assert wait_reply(watcher, device, "diag")[0]["result"]["skipped"] == 2
    finally:
        run.end()
        watcher.stop()
