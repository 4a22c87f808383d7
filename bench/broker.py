"""The embedded broker's throughput against mosquitto's, in the same run.

    python3 bench/broker.py

The broker `tether simulate` starts when no --broker is given (simulator/broker.py: rumqttd
from the `iotcore` package, in a process of its own) and Debian's mosquitto on loopback
(simulator.lab.mosquitto.Mosquitto, with `max_queued_messages 0`: at its default of 1000 it drops QoS 1
messages for a subscriber that falls behind, and this load makes it fall behind) take turns
with the same load, all of it in this process's event loop: 20 devices, each the portable
client (agent/mqtt.py) with 4 QoS 1 PUBLISHes in flight (the profile's window) on its own
tether/v1/{device}/up/batch, sending the reference day's batches (simulator/reference.py, 144
batches of 420 readings, printer-0001's profile) encoded compact (~108 B) or SenML (~4.46 KB),
and one subscriber (QoS 1, the portable client too) on tether/v1/+/up/batch.

Figures: messages/s from the first PUBLISH to the last delivery (best of ROUNDS, rounds
interleaved between the brokers); the broker's CPU time per message and its share of a core
(from /proc, in that same round); this process's share of a core, which shows when the clients,
not the broker, set the rate; then each broker's start and stop time, and 1,000 connections
(connect time at 100 at a time, the broker's memory per connection). Checked in every round:
every PUBLISH acknowledged, and every message delivered to the subscriber exactly once.
Target: the embedded broker moves at least half as many messages per second as mosquitto
(the simulator, not its broker, should be what limits a run). Exit status 1 if a broker could
not start or a check failed.
"""
import asyncio
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

from agent.mqtt import Client  # noqa: E402

PUBLISHERS = 20
WINDOW = 4
ROUNDS = 3
MESSAGES = {"compact": 20000, "senml": 6000}
CONNECTIONS = 1000
TARGET_RATIO = 0.5


class Failed(Exception):
    pass


def payloads(encoding):
    """The reference day's 144 batches, encoded; each message gets its 8-byte number in front
    (publisher, sequence), so that the subscriber's check is exact."""
    enc = c.encoder(encoding)
    return [bytes(b.encode(enc)) for b in c.batches()]


async def until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Failed("timed out: " + what)
        await asyncio.sleep(0.002)


async def one_round(port, pid, bodies, total):
    """(msg/s, broker CPU s, this process's CPU s, wall s) of one run of `total` messages."""
    size = max(len(b) for b in bodies) + 64
    seen = set()
    dups = [0]

    def on_message(topic, payload, retain):
        key = payload[:8]
        if key in seen:
            dups[0] += 1
        seen.add(key)
    sub = Client("bench-sub", "127.0.0.1", port, max_packet=size + 64)
    sub.on_message = on_message
    await sub.connect()
    await sub.subscribe("tether/v1/+/up/batch", 1)
    pubs = [Client("bench-pub-%02d" % k, "127.0.0.1", port, max_packet=size)
            for k in range(PUBLISHERS)]
    for p in pubs:
        await p.connect()
    per = total // PUBLISHERS
    acks = [0]

    async def publisher(k, client):
        free = asyncio.Semaphore(WINDOW)

        def on_puback(pid_):
            acks[0] += 1
            free.release()
        client.on_puback = on_puback
        topic = "tether/v1/bench-%02d/up/batch" % k
        for i in range(per):
            await free.acquire()
            await client.publish(topic, k.to_bytes(2, "big") + i.to_bytes(6, "big")
                                 + bodies[i % len(bodies)], qos=1)

    cpu0, me0, t0 = c.proc_cpu_s(pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(publisher(k, p) for k, p in enumerate(pubs)))
    n = per * PUBLISHERS
    await until(lambda: acks[0] >= n and len(seen) >= n, 60,
                "%d of %d PUBACKs, %d of %d delivered" % (acks[0], n, len(seen), n))
    wall = time.perf_counter() - t0
    cpu, me = c.proc_cpu_s(pid) - cpu0, time.process_time() - me0
    for p in pubs:
        await p.disconnect()
    await sub.disconnect()
    if acks[0] != n or len(seen) != n or dups[0]:
        raise Failed("%d PUBACKs, %d delivered, %d duplicates, of %d"
                     % (acks[0], len(seen), dups[0], n))
    return n / wall, cpu, me, wall


async def connections(port, pid):
    """(seconds to connect CONNECTIONS clients 100 at a time, broker KiB per connection)."""
    rss0 = c.rss_kib(pid)
    clients = [Client("bench-conn-%04d" % i, "127.0.0.1", port, max_packet=256)
               for i in range(CONNECTIONS)]
    gate = asyncio.Semaphore(100)

    async def connect(cl):
        async with gate:
            await cl.connect()
    t = time.perf_counter()
    await asyncio.gather(*(connect(cl) for cl in clients))
    dt = time.perf_counter() - t
    await asyncio.sleep(0.5)
    per = (c.rss_kib(pid) - rss0) / CONNECTIONS
    if not all(cl.connected for cl in clients):
        raise Failed("a connection was lost")
    await asyncio.gather(*(cl.disconnect() for cl in clients))
    return dt, per


async def run(tmp):
    from simulator.broker import EmbeddedBroker
    from simulator.lab.mosquitto import Mosquitto

    embedded = EmbeddedBroker()
    t = time.perf_counter()
    await embedded.start()
    starts = {"embedded": time.perf_counter() - t}
    mosq = Mosquitto(os.path.join(tmp, "mosquitto"), log_type="error warning",
                     extra_conf="max_queued_messages 0")
    t = time.perf_counter()
    mosq.start()
    starts["mosquitto"] = time.perf_counter() - t
    mosq_version = subprocess.run([mosq.binary, "-h"], capture_output=True,
                                  text=True).stdout.split("\n")[0].replace(" version", "")
    names = {"embedded": "embedded: rumqttd (iotcore %s)" % importlib.metadata.version("iotcore"),
             "mosquitto": "baseline: " + mosq_version}
    brokers = {"embedded": (embedded.port, embedded.pid), "mosquitto": (mosq.port, mosq.pid)}
    try:
        conns = {}
        for key in ("embedded", "mosquitto"):   # first: fresh brokers, for their memory
            conns[key] = await connections(*brokers[key])
        bodies = {enc: payloads(enc) for enc in MESSAGES}
        best = {}
        for r in range(ROUNDS):
            for enc in MESSAGES:
                for key in ("embedded", "mosquitto"):
                    port, pid = brokers[key]
                    got = await one_round(port, pid, bodies[enc], MESSAGES[enc])
                    print("  round %d, %s, %s: %.0f msg/s" % (r + 1, enc, key, got[0]), flush=True)
                    if (enc, key) not in best or got[0] > best[enc, key][0]:
                        best[enc, key] = got
    finally:
        t = time.perf_counter()
        await embedded.stop()
        stops = {"embedded": time.perf_counter() - t}
        t = time.perf_counter()
        mosq.stop()
        stops["mosquitto"] = time.perf_counter() - t

    print()
    print("QoS 1 throughput, %d publishers x window %d -> 1 subscriber (best of %d):"
          % (PUBLISHERS, WINDOW, ROUNDS))
    rows = []
    verdicts = []
    for enc in MESSAGES:
        sizes = [len(b) for b in bodies[enc]]
        label = "%s %d-%d B" % (enc, min(sizes) + 8, max(sizes) + 8)
        base = best[enc, "mosquitto"][0]
        for key in ("embedded", "mosquitto"):
            rate, cpu, me, wall = best[enc, key]
            n = MESSAGES[enc] // PUBLISHERS * PUBLISHERS
            rows.append([label, names[key], "%.0f" % rate,
                         "%.2f" % (rate / base) if key == "embedded" else "1",
                         "%.0f" % (cpu / n * 1e6), "%.0f %%" % (cpu / wall * 100),
                         "%.0f %%" % (me / wall * 100)])
        ratio = best[enc, "embedded"][0] / base
        verdicts.append("  %s: embedded/mosquitto %.2f, target >= %.1f: %s"
                        % (enc, ratio, TARGET_RATIO, c.verdict(ratio, TARGET_RATIO, True)))
    c.table(["payload", "broker", "msg/s", "x mosquitto", "broker CPU us/msg", "broker CPU",
             "this process CPU"], rows, left=(0, 1))
    for v in verdicts:
        print(v)
    print("  broker CPU = its share of one core during the run; this process (the %d+1 clients)"
          " near 100 %% means the clients set the rate" % PUBLISHERS)
    print()
    print("life cycle and connections:")
    c.table(["broker", "start s", "stop s", "%d connections s" % CONNECTIONS,
             "broker KiB/connection"],
            [[names[k], "%.3f" % starts[k], "%.3f" % stops[k], "%.2f" % conns[k][0],
              "%.0f" % conns[k][1]] for k in ("embedded", "mosquitto")], left=(0,))
    print("  start = until it answers (embedded: start() returns after a CONNACK; it includes"
          " a Python interpreter importing iotcore)")


def main():
    print(__doc__.split("\n\n")[2].replace("\n", " ").strip())
    print()
    tmp = tempfile.mkdtemp(prefix="tether-bench-broker-")
    try:
        asyncio.run(run(tmp))
    except Failed as exc:
        print("FAILED: %s" % exc)
        return 1
    except RuntimeError as exc:   # a broker that cannot start
        print("FAILED: %s" % exc)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
