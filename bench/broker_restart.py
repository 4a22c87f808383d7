"""What a subscriber gets across a broker restart, by broker and by kind of subscription.

    python3 bench/broker_restart.py [--messages N]

Which ingest mode is safe on which broker (docs/ingest.md, `tether ingest --help`) rests on this
table. Brokers: Debian's mosquitto with persistence on and off (simulator.lab.mosquitto.Mosquitto,
`max_queued_messages 0` so that no queue limit hides what a restart does), and the embedded
broker of `tether simulate` (simulator/broker.py, rumqttd from `iotcore`). Subscriptions, each
with a client id of its own and QoS 1, acknowledged by hand (paho's manual_ack) as the ingest
does:
- `shared`: `$share/g/bench/t`, persistent session (clean_session=False): `tether ingest --group`;
- `plain`: `bench/t`, persistent session: `tether ingest` with its defaults;
- `clean`: `bench/t`, clean session: the old ingest of `tether simulate`.

One run, with N messages in each phase:
  A   published while the subscriber is connected; it receives what the broker sends and
      acknowledges none of it (a message on its way into the database when the broker goes);
  then the subscriber disconnects;
  B1  published while it is away, before the broker stops;
  the broker stops: not at all, SIGTERM (a clean shutdown: mosquitto saves its database) or
  SIGKILL (mosquitto saves nothing it had not saved before), and starts again on the same port;
  B2  published after the restart, before the subscriber is back (devices reconnect first);
  the subscriber reconnects with the same client id and session flag, subscribes again (as the
  ingest does on every connect) and now acknowledges everything;
  C   published once it is back: the check that it receives live messages at all.
Each phase's cell is how many of its N messages arrived after the reconnect (distinct); `lost`
counts those the broker acknowledged to the publisher and never delivered, `unacked` the
PUBLISHes it did not acknowledge within 5 s (a device would keep those and send them again).
The safe mode on a broker is the one with nothing lost under the restarts that broker survives.
Exit status 1 if a broker could not start.
"""
import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

TOPIC = "bench/t"
MODES = ("shared", "plain", "clean")
STOPS = ("none", "SIGTERM", "SIGKILL")
PHASES = ("A", "B1", "B2", "C")
QUIET_S = 1.5  # nothing more arrived for this long: the broker has sent what it will


class Sub:
    """A paho subscriber that records payloads and acknowledges only while `acking` is set."""

    def __init__(self, port, client_id, mode):
        import paho.mqtt.client as paho
        self.paho = paho
        self.port = port
        self.client_id = client_id
        self.mode = mode
        self.topic = ("$share/g/" + TOPIC) if mode == "shared" else TOPIC
        self.got = []
        self.acking = False
        self.last = time.monotonic()
        self.subscribed = threading.Event()
        self.client = None

    def connect(self):
        paho = self.paho
        self.subscribed.clear()
        cl = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                         clean_session=self.mode == "clean", protocol=paho.MQTTv311,
                         manual_ack=True)
        cl.on_connect = lambda cl_, u, f, rc, p: cl_.subscribe(self.topic, 1)
        cl.on_subscribe = lambda *a: self.subscribed.set()
        cl.on_message = self._on_message
        cl.connect("127.0.0.1", self.port, 30)
        cl.loop_start()
        self.client = cl
        if not self.subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker on port %d" % self.port)

    def _on_message(self, cl, userdata, msg):
        self.got.append(bytes(msg.payload))
        self.last = time.monotonic()
        if self.acking:
            cl.ack(msg.mid, msg.qos)

    def disconnect(self):
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def wait_quiet(self, at_least=0.0, timeout=30.0):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            if now - start >= at_least and now - max(self.last, start) >= QUIET_S:
                return
            time.sleep(0.05)


def publish(port, phase, n, timeout=5.0):
    """Publishes n QoS 1 messages `phase:i`; how many the broker acknowledged within timeout
    (rumqttd stops acknowledging a topic whose shared group has no member online)."""
    import paho.mqtt.client as paho
    cl = paho.Client(paho.CallbackAPIVersion.VERSION2,
                     client_id="bench-pub-%d-%s" % (os.getpid(), phase), protocol=paho.MQTTv311)
    cl.max_inflight_messages_set(20)
    deadline = time.monotonic() + 10
    while True:
        try:
            cl.connect("127.0.0.1", port, 30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cl.loop_start()
    infos = [cl.publish(TOPIC, ("%s:%d" % (phase, i)).encode(), 1) for i in range(n)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(i.is_published() for i in infos):
        time.sleep(0.02)
    acked = sum(1 for i in infos if i.is_published())
    cl.disconnect()
    cl.loop_stop()
    return acked


class BrokerDown(Exception):
    """A broker that could not start."""


class MosquittoBroker:
    def __init__(self, folder, persistence):
        from simulator.lab.mosquitto import Mosquitto
        self.m = Mosquitto(folder, persistence=persistence, log_type="error warning",
                           extra_conf="max_queued_messages 0")
        self.port = self.m.port

    def start(self):
        self.m.start()

    def restart(self, how):
        if how == "SIGKILL":
            self.m.kill()
        else:
            self.m.stop()
        self.m.start()

    def close(self):
        self.m.stop()


class RumqttdBroker:
    def __init__(self, folder, persistence):
        from simulator.broker import EmbeddedBroker
        self.b = EmbeddedBroker()
        self.port = None

    def start(self):
        asyncio.run(self.b.start())
        self.port = self.b.port

    def restart(self, how):
        if how == "SIGKILL":
            self.b.proc.kill()
            self.b.proc.wait()
        asyncio.run(self.b.stop())
        asyncio.run(self.b.start())

    def close(self):
        asyncio.run(self.b.stop())


BROKERS = [
    ("mosquitto 2.0.11, persistence", MosquittoBroker, True),
    ("mosquitto 2.0.11, no persistence", MosquittoBroker, False),
    ("rumqttd (embedded)", RumqttdBroker, False),
]


def one_run(make, folder, persistence, mode, stop, n, k):
    broker = make(folder, persistence)
    try:
        broker.start()
    except Exception as exc:  # noqa: BLE001 - mosquitto or iotcore missing, no answer
        raise BrokerDown(str(exc))
    sub = Sub(broker.port, "bench-sub-%d-%d" % (os.getpid(), k), mode)
    try:
        acked = {}
        sub.connect()
        acked["A"] = publish(broker.port, "A", n)
        sub.wait_quiet(timeout=10)
        sub.disconnect()
        acked["B1"] = publish(broker.port, "B1", n)
        if stop != "none":
            broker.restart(stop)
        acked["B2"] = publish(broker.port, "B2", n)
        sub.got = []
        sub.acking = True
        sub.connect()
        sub.wait_quiet(at_least=0.5)
        acked["C"] = publish(broker.port, "C", n)
        sub.wait_quiet()
    finally:
        sub.disconnect()
        broker.close()
    got = {}
    for phase in PHASES:
        got[phase] = len({p for p in sub.got if p.startswith(phase.encode() + b":")})
    return got, acked


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=50, metavar="N",
                    help="messages in each phase (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.messages < 1:
        ap.error("--messages must be at least 1")
    n = args.messages
    tmp = tempfile.mkdtemp(prefix="tether-bench-restart-")
    rows = []
    k = 0
    try:
        for name, make, persistence in BROKERS:
            for mode in MODES:
                for stop in STOPS:
                    k += 1
                    print("%s, %s, %s ..." % (name, mode, stop), file=sys.stderr, flush=True)
                    try:
                        got, acked = one_run(make, os.path.join(tmp, str(k)), persistence, mode,
                                             stop, n, k)
                    except BrokerDown as exc:
                        print("%s: %s" % (name, exc), file=sys.stderr)
                        return 1
                    except RuntimeError as exc:  # e.g. no SUBACK after the restart
                        rows.append([name, mode, stop] + ["-"] * (len(PHASES) + 2) + [str(exc)])
                        continue
                    lost = sum(max(acked[p] - got[p], 0) for p in PHASES)
                    stalled = sum(n - acked[p] for p in PHASES)
                    rows.append([name, mode, stop] + [str(got[p]) for p in PHASES]
                                + [str(lost), str(stalled), ""])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("Messages received after the reconnect, of %d published in each phase (A: while "
          "connected, not acknowledged; B1: while away; B2: after the restart, before it is "
          "back; C: once back). lost: acknowledged to the publisher, never delivered; "
          "unacked: PUBLISHes the broker did not acknowledge within 5 s" % n)
    c.table(["broker", "subscription", "restart"] + list(PHASES) + ["lost", "unacked", "note"],
            rows, left=(0, 1, 2, 9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
