"""Nothing lost, against real faults: a real Mosquitto restarted under the agent, the agent killed
with SIGKILL and restarted on its buffer, a partition longer than the buffer holds, and brokers
that never answer or never acknowledge. Each runs the agent (tests/portable/uplink_agent.py:
the real buffer and uplink, fed numbered readings) under CPython (paho-mqtt) and under the real
MicroPython (agent/mqtt.py), and ends with a check at a subscriber: every sequence number
arrived, none missing, and duplicates only as byte-identical re-deliveries."""
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest

from agent import batch_decode
from agent.schema import Schema
from simulator.lab.mosquitto import FakeBroker
from simulator.lab.netproxy import Proxy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = Schema([("n", "", 1, 0)])
INTERPRETERS = ["cpython", "micropython"]


class AgentProc:
    """One run of the agent process; its stdout lines are collected as they come."""

    def __init__(self, interp, micropython, store, port, device, total, **opts):
        args = [str(store), "127.0.0.1", str(port), device, str(total)]
        args += ["%s=%s" % kv for kv in opts.items()]
        if interp == "cpython":
            self.cmd = [sys.executable, "-u", os.path.join(ROOT, "tests", "portable",
                                                          "uplink_agent.py")] + args
            self.env = None
            self.cwd = ROOT
        else:
            self.cmd = [micropython.binary, "-X", "heapsize=256k", "-m", "uplink_agent"] + args
            self.env = dict(os.environ, MICROPYPATH=micropython.lib_dir + ":.frozen")
            self.cwd = micropython.lib_dir
        self.stored = []
        self.acked = []
        self.lines = []
        self.done = threading.Event()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env, cwd=self.cwd)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if not line.endswith("\n"):
                break  # cut by the SIGKILL while it was written: the agent never said it
            word, _, rest = line.partition(" ")
            if word == "stored":
                self.stored.append(int(rest))
            elif word == "acked":
                self.acked.append(int(rest))
            elif word == "done":
                self.done.set()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout):
        ok = self.done.wait(timeout)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        err = self.proc.stderr.read()
        assert ok, "agent did not finish:\n%s\n%s" % ("\n".join(self.lines[-20:]), err)
        return self.lines[-1]


class Collector:
    """The consumer: a persistent QoS 1 subscription to the device's batches, which keeps every
    batch by sequence number and notes any re-delivery whose bytes differ."""

    def __init__(self, port, device):
        self.batches = {}
        self.redelivered = 0
        self.mismatched = []
        self.lock = threading.Lock()
        self.topic = "tether/v1/%s/up/batch" % device
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="collector-" + device,
                                  clean_session=False, protocol=paho.MQTTv311)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topic, 1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert subscribed.wait(60), "the collector never got its SUBACK"

    def _message(self, client, userdata, msg):
        b = batch_decode.decode(msg.payload, {SCHEMA.id: SCHEMA})
        with self.lock:
            old = self.batches.get(b.seq)
            if old is None:
                self.batches[b.seq] = (bytes(msg.payload), b)
            else:
                self.redelivered += 1
                if old[0] != msg.payload:
                    self.mismatched.append(b.seq)

    def wait_for(self, seqs, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if all(s in self.batches for s in seqs):
                    return True
            time.sleep(0.05)
        return False

    def values(self):
        with self.lock:
            return sorted(v for _, b in self.batches.values() for _, _, v in b.readings)

    def dropped(self):
        with self.lock:
            return max((b.dropped for _, b in self.batches.values()), default=0)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(params=INTERPRETERS)
def interp(request):
    return request.param


@pytest.fixture
def mp(request, interp):
    return request.getfixturevalue("micropython") if interp == "micropython" else None


def assert_complete(collector, total, per_batch=20):
    seqs = list(range((total + per_batch - 1) // per_batch))
    assert collector.wait_for(seqs, 30), "missing seqs: %s" % sorted(
        set(seqs) - set(collector.batches))[:20]
    assert collector.mismatched == []
    assert collector.values() == list(range(total))


def test_broker_restarted_a_dozen_times_while_the_agent_publishes(interp, mp, mosquitto_factory,
                                                                  tmp_path):
    # Restarts are clean stops (SIGTERM): the broker then keeps the collector's queued messages
    # in its persistence file, so the check sees only what the agent did. The agent sees its
    # connections end at any point of a publish, as with any broker crash.
    broker = mosquitto_factory(persistence=True)
    device = "chaos-a-" + interp
    collector = Collector(broker.port, device)
    total = 4000
    agent = AgentProc(interp, mp, tmp_path / "store", broker.port, device, total, rate=400)
    restarts = 0
    rnd = random.Random(1)
    while not agent.done.is_set() and restarts < 12:
        time.sleep(0.3 + rnd.random() * 0.5)
        broker.restart()
        restarts += 1
    assert restarts >= 10
    assert agent.finish(60) == "done 0 0"
    assert_complete(collector, total)
    assert collector.redelivered > 0
    collector.stop()


def test_agent_killed_with_sigkill_at_random_moments_loses_nothing(interp, mp, mosquitto,
                                                                   tmp_path):
    device = "chaos-b-" + interp
    collector = Collector(mosquitto.port, device)
    total = 3000
    store = tmp_path / "store"
    rnd = random.Random(2)
    stored = set()
    for _ in range(8):
        agent = AgentProc(interp, mp, store, mosquitto.port, device, total, rate=400)
        time.sleep(0.1 + rnd.random() * 1.2)  # sometimes during start-up and open()
        agent.kill()
        stored.update(agent.stored)
    agent = AgentProc(interp, mp, store, mosquitto.port, device, total, rate=400)
    assert agent.finish(60) == "done 0 0"
    stored.update(agent.stored)
    assert stored, "no batch was stored before the kills: the test proved nothing"
    assert_complete(collector, total)
    assert stored <= set(collector.batches)
    collector.stop()


def test_partition_longer_than_the_buffer_reports_exactly_what_was_dropped(interp, mp, mosquitto,
                                                                           tmp_path):
    device = "chaos-c-" + interp
    collector = Collector(mosquitto.port, device)
    proxy = Proxy(mosquitto.port)
    proxy.partition(True)
    total = 3000
    agent = AgentProc(interp, mp, tmp_path / "store", proxy.port, device, total, rate=3000,
                      max_bytes=8192, batch_bytes=512, linger_s=60)
    deadline = time.time() + 30
    while len(agent.stored) < total // 20 and time.time() < deadline:
        time.sleep(0.05)
    assert len(agent.stored) == total // 20, "the agent did not finish sampling offline"
    proxy.partition(False)
    assert agent.finish(60).startswith("done 0 ")
    dropped = int(agent.lines[-1].split()[2])
    assert dropped > 0, "the buffer did not overflow: the test proved nothing"
    # What the broker acknowledged reaches the collector on its own thread.
    deadline = time.time() + 60
    while collector.values() != list(range(dropped, total)) and time.time() < deadline:
        time.sleep(0.05)
    values = collector.values()
    # Oldest first: exactly the first `dropped` readings are gone, all the others arrived, and
    # the batches say so.
    assert collector.dropped() == dropped
    assert values == list(range(dropped, total))
    assert collector.mismatched == []
    proxy.close()
    collector.stop()


def test_brokers_that_never_answer_or_never_acknowledge_are_left_and_retried(interp, mp,
                                                                             mosquitto, tmp_path):
    device = "chaos-d-" + interp
    collector = Collector(mosquitto.port, device)
    fake = FakeBroker()  # answers CONNECT and PINGREQ, never a PUBACK
    proxy = Proxy(fake.port)
    proxy.black_hole(True)  # first: TCP accepted, then silence: no CONNACK
    total = 400
    agent = AgentProc(interp, mp, tmp_path / "store", proxy.port, device, total, rate=400,
                      linger_s=60)
    deadline = time.time() + 60
    while proxy.connections < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.connections >= 2, "the agent did not retry after its CONNACK timeout"
    assert agent.acked == []
    proxy.black_hole(False)
    proxy.cut()
    deadline = time.time() + 15
    publishes = []
    while time.time() < deadline:
        publishes = [p for p in list(fake.packets) if p[0] & 0xF0 == 0x30]
        if any(p[0] & 0x08 for p in publishes):  # a re-send, DUP set, after no PUBACK
            break
        time.sleep(0.1)
    assert any(p[0] & 0x08 for p in publishes), "no re-send after the PUBACK timeout"
    assert agent.acked == []
    proxy.upstream = mosquitto.port
    proxy.cut()
    assert agent.finish(60) == "done 0 0"
    assert_complete(collector, total)
    proxy.close()
    fake.close()
    collector.stop()


def take_over(port, client_id):
    """Connects under client_id and leaves: Mosquitto closes the connection that held that id
    (the device's) before it sends this one its CONNACK. A raw socket, so that no client library
    reconnects and takes the id over once more."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + struct.pack("!H", len(cid)) + cid
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(bytes([0x10, len(body)]) + body)
        connack = b""
        while len(connack) < 4:
            more = s.recv(4 - len(connack))
            assert more, "the broker closed the taking-over connection"
            connack += more
        assert connack == b"\x20\x02\x00\x00", connack
        s.sendall(b"\xe0\x00")


@pytest.mark.parametrize("interp,client", [("cpython", "paho"), ("cpython", "mqtt"),
                                           ("micropython", "mqtt")])
def test_connections_the_broker_ends_right_after_connack_count_as_failures_for_the_backoff(
        interp, client, mp, mosquitto, tmp_path):
    # A broker that accepts the device and drops it at once (a retained command that made the
    # client fail did this 1-2 times a second) must not keep it in a tight loop: each such
    # connection is a failure, and after the quick retries the backoff's cap doubles. The
    # uplink says which cap it drew each delay under; stable_ms is far longer than the test, so
    # no connection here can count as stable however slowly it is scheduled.
    device = "kicked-%s-%s" % (interp, client)
    onlines = []
    subscribed = threading.Event()
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watcher-" + device,
                          protocol=paho.MQTTv311)
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe("tether/v1/%s/status" % device, 1)
    watcher.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    watcher.on_message = lambda c, u, m: m.payload == b"online" and onlines.append(m)
    watcher.connect("127.0.0.1", mosquitto.port, keepalive=10)
    watcher.loop_start()
    assert subscribed.wait(10)
    agent = AgentProc(interp, mp, tmp_path / "store", mosquitto.port, device, 10 ** 7, rate=100,
                      client=client, stable_ms=600000, show_backoff=1)
    caps = lambda: [int(l.split()[1]) for l in agent.lines if l.startswith("backoff ")]  # noqa

    def wait_for(condition, what):
        deadline = time.time() + 30
        while not condition():
            assert agent.proc.poll() is None, "the agent ended: %s" % agent.proc.stderr.read()
            assert time.time() < deadline, "%s; the agent said %s" % (what, agent.lines[-10:])
            time.sleep(0.02)

    try:
        for kicks in range(8):
            # "online" is published after the CONNACK: the connection is up when it arrives.
            wait_for(lambda: len(onlines) > kicks, "no connection %d" % (kicks + 1))
            take_over(mosquitto.port, device)
        wait_for(lambda: len(onlines) == 9 and len(caps()) == 8, "no connection 9")
        # Five quick retries at the minimum (50 ms), then the cap doubles with each failure.
        assert caps() == [50, 50, 50, 50, 50, 100, 200, 400]
    finally:
        agent.proc.terminate()
        agent.proc.wait(15)
        watcher.loop_stop()
        watcher.disconnect()
