"""Uplink benchmarks: backlog drain time, bytes on the wire, MicroPython heap.

    python3 bench/uplink.py            (or: python3 bench/uplink.py drain|wire|heap, one part)

The reference day (144 batches of 420 readings, device printer-0001) is stored, while
"offline", in the profile's buffer (agent.buffer + agent.log on a FileStore in a temporary
folder, fed reading by reading as the agent feeds it); then a mosquitto on loopback, started
here, appears and the real Uplink drains the backlog (bench/mp_uplink.py, one process a run):

1. Drain time, from the moment the uplink makes its client (right before connect) until the
   last stored batch is acknowledged, window 4 (the profile's) and 16, on CPython
   (agent/host/paho_client.py) and MicroPython (agent/mqtt.py, -X heapsize=256k), against a
   plain paho-mqtt loop publishing the same 144 payloads with QoS 1 to the same topic and
   waiting for every PUBACK, in the same run: best of ROUNDS, rounds interleaved, against a
   mosquitto with set_tcp_nodelay true (the target), then one with mosquitto's defaults.
2. Bytes on the wire, counted at the socket by simulator/lab/netproxy.Proxy between the uplink and
   mosquitto (TCP payload bytes each way: MQTT and TLS, not IP/TCP headers), plain and TLS,
   compact and SenML, CPython and MicroPython: per batch and per reading, and the connection's
   fixed costs apart (each read while the run is paused with everything acknowledged).
3. MicroPython heap, TLS off: gc.mem_alloc() sampled in the publish path, at -X heapsize=64k
   or, for what does not fit there on this 64-bit port, at 256k; the smallest heap at which
   the full uplink drain, and smaller parts of it, run.

Every run is checked: every stored batch acknowledged on one connection, and a subscriber got
exactly the 144 batches, byte for byte, in order. Exit status 1 only if a run failed or a check
did not hold; a missed target is printed as MISSES TARGET.
"""
import copy
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

ROUNDS = 11              # against mosquitto with set_tcp_nodelay true: the target's figures
ROUNDS_DEFAULT = 5       # against mosquitto's defaults, for comparison
WINDOWS = (4, 16)
MP_HEAP = "256k"          # for the timed MicroPython runs and the bytes runs
HEAP_SMALL = "64k"        # for the heap figures
TARGET_RATIO = 1.5        # the uplink's drain time / the plain paho loop's
SENML_BUFFER = 1 << 20    # a day of SenML (~640 KB) does not fit the profile's 256 KiB buffer
NOTES_PUBLISH = 35        # shared/NOTES.md: one QoS 1 PUBLISH on tether/v1/printer-0001/batch
NOTES_PUBACK = 4
MP_SCRIPT = os.path.join(c.ROOT, "bench", "mp_uplink.py")


class Failed(Exception):
    pass


# -- the backlog -------------------------------------------------------------------------------

def profile_for(encoding):
    p = c.profile()
    p["uplink"]["encoding"] = encoding
    p["uplink"]["deflate"] = False
    p["uplink"]["host"] = "127.0.0.1"
    if encoding == "senml":
        p["buffer"]["max_bytes"] = SENML_BUFFER
    return p


def make_backlog(folder, p, batches, payloads):
    """Feeds the day's readings to the profile's buffer on a FileStore in folder, as the agent
    does, and checks that it holds exactly the 144 expected batches, byte for byte."""
    from agent import profile as compiled
    from agent.store import FileStore
    q = copy.deepcopy(p)
    # One journal write per batch instead of one per 32 readings: the batches (the log's
    # contents) are the same, the storing just takes 144 fsyncs instead of ~1,900.
    q["buffer"]["ram_readings"] = q["batch"]["max_readings"]
    q["buffer"]["flush_ms"] = q["batch"]["max_age_ms"]
    buf = compiled.buffer(q, store=FileStore(folder), device_id=c.DEVICE)
    buf.open()
    buf.set_synced(True)
    for b in batches:
        for i in range(len(b)):
            buf.append(b.base + b.ts[i], b.chs[i], b.vals[i])
    buf.cut()
    got = []
    while True:
        item = buf.next_batch()
        if item is None:
            break
        got.append(bytes(item[1]))
    log = buf.log
    unacked, dropped = log.unacked, log.dropped
    buf.close()
    if dropped or unacked != len(payloads) or got != payloads:
        raise Failed("the stored backlog is not the day's %d batches (%d stored, %d dropped, "
                     "%s)" % (len(payloads), unacked, dropped,
                              "same bytes" if got == payloads else "bytes differ"))
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if f.endswith(".seg"))


# -- the checking subscriber -----------------------------------------------------------------

class Check:
    """A subscriber to the batch topic: after each run, exactly the expected batches, in order."""

    def __init__(self, port):
        from simulator.lab.mosquitto import Subscriber
        self.sub = Subscriber(port, topics=(c.TOPIC,), client_id="bench-uplink-check")
        self.sub.connect()

    def reset(self):
        with self.sub._cond:
            del self.sub.messages[:]

    def verify(self, payloads, label):
        self.sub.wait_count(len(payloads), timeout=10)
        time.sleep(0.05)  # anything extra
        with self.sub._cond:
            got = [m[1] for m in self.sub.messages]
        if got != payloads:
            same = sum(1 for g, p in zip(got, payloads) if g == p)
            raise Failed("%s: the subscriber got %d messages, %d of them the expected batches in "
                         "place; expected exactly %d" % (label, len(got), same, len(payloads)))

    def stop(self):
        self.sub.stop()


# -- running one drain ------------------------------------------------------------------------

class Runner:
    def __init__(self, tmp, mp):
        self.tmp = tmp
        self.mp = mp
        self.n = 0
        self.runs = 0        # MicroPython uplink drains that ran and passed their checks,
        self.early = 0       # the PUBACKs in them that came before the uplink had noted their
        self.early_runs = 0  # packet id, and in how many runs

    def copy(self, template):
        self.n += 1
        folder = os.path.join(self.tmp, "run-%d" % self.n)
        shutil.copytree(template, folder)
        return folder

    def run(self, interp, args, heap=MP_HEAP, timeout=120, on_pause=None):
        """(returncode, {key: value}, stdout + stderr) of one bench/mp_uplink.py process.
        on_pause(marker): called when a run with pause=1 pauses, before it is let go on."""
        args = [str(a) for a in args]
        if on_pause is None:
            if interp == "cpython":
                proc = subprocess.run([sys.executable, MP_SCRIPT] + args, capture_output=True,
                                      text=True, timeout=timeout, cwd=c.ROOT)
                rc, out, err = proc.returncode, proc.stdout, proc.stderr
            else:
                rc, out, err = self.mp.run("mp_uplink", args, heap=heap, timeout=timeout)
            return rc, c.parse_kv(out), out + err
        if interp == "cpython":
            cmd, cwd, env = [sys.executable, "-u", MP_SCRIPT] + args, c.ROOT, None
        else:
            cmd = [self.mp.mp.binary, "-X", "heapsize=" + heap, "-m", "mp_uplink"] + args
            cwd = self.mp.tmp
            env = dict(os.environ, MICROPYPATH=self.mp.mp.lib_dir + ":.frozen")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() in ("drained", "connected"):
                on_pause(line.strip())
                proc.stdin.write("\n")
                proc.stdin.flush()
                break
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        out = "".join(lines) + out
        return proc.returncode, c.parse_kv(out), out + err

    def drain(self, interp, template, profile_path, port, window=0, ca=None, heap=MP_HEAP,
              sample=0, expect=144, timeout_s=60, check=None, payloads=None, label="",
              extra=(), on_pause=None):
        """One drain of a copy of template; raises Failed unless it ran and passed its checks."""
        folder = self.copy(template)
        try:
            if check is not None:
                check.reset()
            args = ["mode=drain", "profile=" + profile_path, "store=" + folder, "port=%d" % port,
                    "window=%d" % window, "expect=%d" % expect, "heap=%d" % sample,
                    "timeout_s=%d" % timeout_s] + list(extra)
            if ca:
                args.append("ca=" + ca)
            if on_pause is not None:
                args.append("pause=1")
            rc, r, text = self.run(interp, args, heap=heap, timeout=timeout_s + 60,
                                   on_pause=on_pause)
            if rc or r.get("ok") != 1:
                raise Failed("%s: the drain failed (exit %d):\n%s" % (label, rc, tail(text)))
            if r["connects"] != 1:
                raise Failed("%s: the uplink connected %d times (last error: %s)"
                             % (label, r["connects"], r["last_error"]))
            if check is not None:
                check.verify(payloads, label)
            if interp == "micropython" and not any(a.startswith("mode=") for a in extra):
                # the uplink over agent/mqtt.py: how often its PUBACK came too early
                self.runs += 1
                if r.get("early_pubacks"):
                    self.early += r["early_pubacks"]
                    self.early_runs += 1
            return r
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def tail(text, n=25):
    return "\n".join(text.rstrip().splitlines()[-n:])


# -- the baseline: a plain paho-mqtt loop -----------------------------------------------------

def write_payloads(path, payloads):
    with open(path, "wb") as f:
        for p in payloads:
            f.write(struct.pack("<I", len(p)) + p)


def read_payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    out, at = [], 0
    while at < len(data):
        n = struct.unpack_from("<I", data, at)[0]
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return out


def plain_loop(port, path, inflight):
    """The baseline, in its own process like the uplink: paho-mqtt as its docs show it (network
    thread from loop_start; inflight 0: paho's default max_inflight_messages, 20), connect,
    publish the payloads with QoS 1 to the batch topic, wait for every PUBACK. Prints the times
    in us from the connect() call."""
    import paho.mqtt.client as paho
    payloads = read_payloads(path)
    connected = threading.Event()
    done = threading.Event()
    st = {"n": 0, "conn": None, "all": None}
    clock = time.perf_counter

    def on_connect(client, userdata, flags, reason, properties):
        st["conn"] = clock()
        connected.set()

    def on_publish(client, userdata, mid, reason, properties):
        st["n"] += 1
        if st["n"] == len(payloads):
            st["all"] = clock()
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-plain-loop",
                         protocol=paho.MQTTv311)
    if inflight:
        client.max_inflight_messages_set(inflight)
    client.on_connect = on_connect
    client.on_publish = on_publish
    t0 = clock()
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    if not connected.wait(10):
        print("failed no CONNACK")
        return 1
    for p in payloads:
        client.publish(c.TOPIC, p, qos=1)
    ok = done.wait(30)
    client.disconnect()
    client.loop_stop()
    if not ok:
        print("failed %d of %d PUBACKs" % (st["n"], len(payloads)))
        return 1
    print("connack_us %d" % ((st["conn"] - t0) * 1e6))
    print("all_us %d" % ((st["all"] - t0) * 1e6))
    print("ok 1")
    return 0


def run_plain(port, path, check, payloads, inflight):
    check.reset()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "plain-loop", str(port),
                           path, str(inflight)], capture_output=True, text=True, timeout=90,
                          cwd=c.ROOT)
    r = c.parse_kv(proc.stdout)
    if proc.returncode or r.get("ok") != 1:
        raise Failed("the plain paho loop failed:\n%s" % tail(proc.stdout + proc.stderr))
    check.verify(payloads, "plain paho loop")
    return r


# -- 1. drain time ----------------------------------------------------------------------------

def drain_times(runner, broker, check, tmpl, profile_path, payloads_path, payloads, rounds,
                judge=True):
    """Prints the table; returns (the baseline's best us, [(label, best us, ratio)]). judge:
    print the target's verdicts (else the ratios only)."""
    # (kind, interpreter or in-flight limit, window, label); the first is the baseline
    configs = [("plain", 0, None, "plain paho-mqtt loop (BASELINE; 20 in flight)"),
               ("plain", 4, None, "plain paho-mqtt loop, 4 in flight (for comparison)")]
    for interp, name in (("cpython", "CPython uplink, paho_client"),
                         ("micropython", "MicroPython uplink, agent/mqtt.py")):
        for w in WINDOWS:
            configs.append(("uplink", interp, w, "%s, window %d" % (name, w)))
    times = {k: [] for k in range(len(configs))}
    for _ in range(rounds):
        for k, (kind, what, w, label) in enumerate(configs):
            if kind == "plain":
                r = run_plain(broker.port, payloads_path, check, payloads, what)
                times[k].append((r["all_us"], r["connack_us"], None, None))
            else:
                r = runner.drain(what, tmpl, profile_path, broker.port, window=w, check=check,
                                 payloads=payloads, label=label)
                times[k].append((r["all_us"], r["connack_us"], r["all_us"] - r["first_us"],
                                 r["buffer_us"]))
    base = min(t[0] for t in times[0])
    rows = []
    verdicts = []
    for k, (kind, what, w, label) in enumerate(configs):
        ts = times[k]
        best = min(ts, key=lambda t: t[0])
        med = statistics.median(t[0] for t in ts)
        ratio = best[0] / base
        if kind == "plain":
            cells = ["-" if k == 0 else "%.2fx" % ratio, ""]
        else:
            cells = ["%.2fx" % ratio, c.verdict(ratio, TARGET_RATIO) if judge else "-"]
            verdicts.append((label, best[0], ratio))
        rows.append([label, "%.1f" % (best[0] / 1000), "%.1f" % (med / 1000),
                     "%.1f" % (best[1] / 1000),
                     "-" if best[2] is None else "%.1f" % (best[2] / 1000),
                     "-" if best[3] is None else "%.1f" % (best[3] / 1000),
                     "%.0f" % (144 / best[0] * 1e6)] + cells)
    c.table(["run (best of %d, rounds interleaved)" % rounds, "ms", "median ms", "CONNACK ms",
             "batches ms", "buffer ms", "batches/s", "vs BASELINE",
             "target <= %.1fx" % TARGET_RATIO], rows, left=(0, 8))
    print("  ms = from the client's creation (right before connect) until the last of the 144 "
          "batches is acknowledged (the plain loop: from its connect() call to its 144th "
          "PUBACK); figures of the run with the best ms;")
    print("  CONNACK ms = until connect() returned; batches ms = from the first batch read from "
          "the buffer (after the birth message and the SUBSCRIBE/SUBACK of down/cmd) to the "
          "last PUBACK; buffer ms = of that, in the buffer's next_batch and ack (log reads, "
          "state file writes with fsync on CPython);")
    print("  every run: all 144 acknowledged on one connection, and the checking subscriber got "
          "exactly the 144 batches, byte for byte, in order.")
    return base, verdicts


# -- 2. bytes on the wire ---------------------------------------------------------------------

def settled(proxy):
    """The proxy's (up, down) counters once they stop moving (it counts in its own threads)."""
    last = None
    for _ in range(100):
        now = (proxy.bytes_up, proxy.bytes_down)
        if now == last:
            break
        last = now
        time.sleep(0.02)
    return last


def measured(run, upstream):
    """Runs run(port, on_pause) through a fresh proxy; returns (its result, the counters when
    the run paused (all acknowledged, or just connected), the counters at the end)."""
    from simulator.lab.netproxy import Proxy
    proxy = Proxy(upstream)
    try:
        at = {}

        def on_pause(marker):
            at["pause"] = (proxy.bytes_up, proxy.bytes_down)

        r = run(proxy.port, on_pause)
        end = settled(proxy)
        if "pause" not in at:
            raise Failed("the run never paused")
        return r, at["pause"], end
    finally:
        proxy.close()


def minus(a, b):
    return (a[0] - b[0], a[1] - b[1])


def wire_bytes(runner, broker, check, configs, ca_path):
    """configs: [(interp, encoding, tls, template, empty template, profile path, payloads)]."""
    from firmware.airtime import mqtt_publish_overhead
    results = []
    for interp, encoding, tls, tmpl, empty, profile_path, payloads in configs:
        label = "%s %s %s" % (interp, encoding, "TLS" if tls else "plain")
        upstream = broker.tls_port if tls else broker.port
        ca = ca_path if tls else None

        def connect(port, on_pause):
            rc, r, text = runner.run(interp, ["mode=connect", "port=%d" % port, "pause=1"]
                                     + (["ca=" + ca] if ca else []), on_pause=on_pause)
            if rc or r.get("ok") != 1:
                raise Failed("%s: connect failed:\n%s" % (label, tail(text)))
            return r

        rc_, conn, conn_end = measured(connect, upstream)
        r0, e_done, e_end = measured(
            lambda port, on_pause: runner.drain(
                interp, empty, profile_path, port, ca=ca, expect=0, on_pause=on_pause,
                label=label + " (empty buffer)"), upstream)
        r1, t_done, t_end = measured(
            lambda port, on_pause: runner.drain(
                interp, tmpl, profile_path, port, ca=ca, check=check, payloads=payloads,
                on_pause=on_pause, label=label), upstream)
        # The health message says how much is queued: a few bytes longer with the backlog.
        dh = r1["health_bytes"] - r0["health_bytes"]
        n = len(payloads)
        batches = minus(t_done, e_done)
        results.append({
            "label": label, "interp": interp, "encoding": encoding, "tls": tls, "n": n,
            "tls_version": rc_.get("tls"),
            "payload": sum(len(p) for p in payloads) / n,
            "mqtt": sum(mqtt_publish_overhead(c.TOPIC, len(p)) for p in payloads) / n,
            "up": (batches[0] - dh) / n, "down": batches[1] / n,
            "connect": conn, "disconnect": minus(conn_end, conn),
            "birth": minus((e_done[0] + dh, e_done[1]), conn), "stop": minus(t_end, t_done),
            "day": t_end[0] + t_end[1]})
    rdg = c.BATCH_READINGS
    rows = []
    for x in results:
        rows.append([
            "CPython paho" if x["interp"] == "cpython" else "MicroPython mqtt.py",
            x["encoding"], "TLS" if x["tls"] else "plain",
            "%.1f" % x["payload"], "%.1f" % x["up"], "%.1f" % x["down"],
            "%.3f" % (x["payload"] / rdg),
            "%.3f" % ((x["payload"] + NOTES_PUBLISH + NOTES_PUBACK) / rdg),
            "%.3f" % ((x["up"] + x["down"]) / rdg),
            "%d/%d" % x["connect"], "%d/%d" % x["birth"],
            "%d/%d" % (x["stop"][0] + x["disconnect"][0], x["stop"][1] + x["disconnect"][1]),
            "%.3f" % (x["day"] / (x["n"] * rdg)),
        ])
    c.table(["client", "encoding", "link", "payload", "up", "down", "payload/rdg",
             "NOTES est./rdg", "WIRE/rdg", "connect", "birth etc.", "stop", "day/rdg"],
            rows, left=(0, 1, 2))
    print("  bytes at the socket (TCP payload: MQTT and, with TLS, its records and handshake; "
          "IP/TCP headers not counted), counted by the proxy, up/down = device->broker / "
          "broker->device;")
    print("  per batch: payload = the encoded batch alone; up, down = (the drain - the same "
          "uplink with an empty buffer), each read once every message was acknowledged, / 144;")
    print("  per reading (/420): payload alone; NOTES est. = payload + 35 B PUBLISH + 4 B PUBACK "
          "(shared/NOTES.md); WIRE = up + down per batch / 420;")
    print("  fixed per connection, up/down: connect = TCP%s CONNECT (with the will) and CONNACK, "
          "until connect() returned; birth etc. = status online, SUBSCRIBE down/cmd and SUBACK, "
          "the retained schema (compact only), one health message, their PUBACKs; stop = status "
          "offline and DISCONNECT at the clean stop (and whatever the broker still sends before "
          "it closes);" % " (+ TLS handshake)")
    print("  day/rdg = every byte of the one connection that drained the day, fixed costs "
          "included, / 60,480 readings.")
    print("  checks: every run acknowledged all 144 batches on one connection and the subscriber "
          "got exactly the 144 batches.")
    for x in results:
        if not x["tls"]:
            exact = x["payload"] + x["mqtt"]
            # averages of runs, printed to 0.01 B: within that, the same
            same = abs(x["up"] - exact) < 0.05 and abs(x["down"] - NOTES_PUBACK) < 0.05
            print("  %s: per batch up %.2f B = payload %.2f + PUBLISH framing %.2f (fixed header "
                  "3, topic %d+2, packet id 2), down %.2f B = a PUBACK: %s"
                  % (x["label"], x["up"], x["payload"], x["mqtt"], len(c.TOPIC), x["down"],
                     "exactly MQTT 3.1.1's arithmetic" if same else "DIFFERS from MQTT 3.1.1's "
                     "arithmetic"))
    for x in results:
        if x["tls"]:
            plain = [y for y in results if y["interp"] == x["interp"]
                     and y["encoding"] == x["encoding"] and not y["tls"]]
            if plain:
                y = plain[0]
                extra = x["up"] - y["up"]
                record = {22: ": a TLS 1.3 record = 5 B header + 1 B content type + 16 B "
                              "AEAD tag",
                          29: ": a TLS 1.2 AES-GCM record = 5 B header + 8 B explicit nonce "
                              "+ 16 B tag"}.get(round(extra), "")
                print("  %s%s: TLS adds %.1f B up and %.1f B down per batch (one record each "
                      "way%s), %d B up + %d B down to connect (handshake)"
                      % (x["label"], " (%s)" % x["tls_version"] if x["tls_version"] else "",
                         extra, x["down"] - y["down"], record,
                         x["connect"][0] - y["connect"][0], x["connect"][1] - y["connect"][1]))
    print("  NOTES' 35 B is for topic tether/v1/printer-0001/batch (28 chars); the topic is "
          "%s (%d chars) and a payload over 124 B needs a 2-byte remaining length: 38 B here."
          % (c.TOPIC, len(c.TOPIC)))
    return results


# -- 3. MicroPython heap ----------------------------------------------------------------------

def smallest_heap(runner, broker, check, tmpl, profile_path, payloads, extra, lo=16, hi=256):
    """The smallest -X heapsize (KiB, 2 KiB steps) at which the run passes its checks, or None
    if it does not at hi."""
    def works(k):
        try:
            runner.drain("micropython", tmpl, profile_path, broker.port, heap="%dk" % k,
                         check=check, payloads=payloads, label="heap %dk" % k, timeout_s=15,
                         extra=extra)
            return True
        except Failed:
            return False
    if not works(hi):
        return None
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def why(exc):
    """The last line of a MicroPython traceback in a Failed, or its first line."""
    lines = [x for x in str(exc).splitlines() if x.strip()]
    for line in reversed(lines):
        if "Error" in line:
            return line.strip()
    return lines[0] if lines else str(exc)


def heap_figures(runner, mp, broker, check, tmpl, profile_path, schema_path, payloads_path,
                 payloads):
    configs = [  # key, name, mp_uplink arguments
        ("full", "full uplink", ("buffer=buffer",)),
        ("log", "uplink on the log", ("buffer=log", "schema=" + schema_path)),
        ("client", "client on the log", ("mode=client",)),
        ("file", "client from a file", ("mode=file", "payloads=" + payloads_path)),
    ]
    base = mp.mp.run_code("import gc; gc.collect(); print(gc.mem_alloc())", heap=HEAP_SMALL)
    base = int(base.stdout.split()[0])
    runs = {}
    notes = []
    for key, name, extra in configs:
        for heap in (HEAP_SMALL, MP_HEAP):
            try:
                runs[key] = (heap, runner.drain(
                    "micropython", tmpl, profile_path, broker.port, heap=heap, sample=1,
                    check=check, payloads=payloads, label="%s at %s" % (name, heap),
                    timeout_s=30, extra=extra))
                break
            except Failed as exc:
                if heap == MP_HEAP:
                    raise
                notes.append("%s at -X heapsize=%s: %s" % (name, heap, why(exc)))
        runs[key][1]["smallest"] = smallest_heap(runner, broker, check, tmpl, profile_path,
                                                 payloads, extra)
    keys = [k for k, _, _ in configs]
    names = dict((k, n) for k, n, _ in configs)
    script = runs["file"][1]["m_start"] - base

    def row(label, fn):
        return [label] + [fn(runs[k][1]) for k in keys]

    def kib(k):
        return "%dk" % k if k else "> 256k"

    c.table(["gc.mem_alloc(), bytes"] + ["%s (%s)" % (names[k], runs[k][0]) for k in keys], [
        row("runtime + this bench script's code (%d B of it)" % script,
            lambda r: "%d" % r["m_start"]),
        row("+ asyncio", lambda r: "%d" % (r["m_start"] + r["m_imports"])),
        row("+ what each imports and opens (profile, buffer, log, agent.mqtt)",
            lambda r: "%d" % r["m_open"]),
        row("+ uplink and/or client made", lambda r: "%d" % r["m_ready"]),
        row("IDLE: connected, all acked, nothing in flight", lambda r: "%d" % r["m_idle"]),
        row("PEAK live while publishing", lambda r: "%d" % r["peak"]),
        row("PEAK above IDLE", lambda r: "%d" % (r["peak"] - r["m_idle"])),
        row("peak mem_alloc() incl. garbage (gc off between points)",
            lambda r: "%d" % r["raw_peak"]),
        row("net allocated per batch (all / 144)", lambda r: "%.0f" % (r["alloc"] / 144)),
        row("most between two points (before ...)",
            lambda r: "%d (%s)" % (r["alloc_max"], r["alloc_max_at"])),
        row("smallest -X heapsize that publishes the day", lambda r: kib(r["smallest"])),
        row("the same less this script's code", lambda r: kib(
            r["smallest"] and r["smallest"] - script // 1024)),
    ], left=(0,))
    for n in notes:
        print("  does not run: " + n)
    print("  full uplink = what the agent runs: the profile's Buffer (420-row arrays, 8 KiB "
          "encoder buffer, scratch) and events log, the uplink (schema, one health message), "
          "agent/mqtt.py's client (2 x 2 KiB packet buffers);")
    print("  uplink on the log = the same uplink and client draining the same Log, without the "
          "Buffer, the events log and agent.profile/buffer/schema; client on the log = "
          "agent/mqtt.py publishing the Log's batches and acking them, no uplink; client from a "
          "file = agent/mqtt.py publishing the 144 payloads read one at a time into one buffer, "
          "no Log: the least that publishes the day;")
    print("  TLS off, window 4; 64-bit unix port: 8-byte words, 16-byte GC blocks, and the .mpy "
          "bytecode of every imported module is on the heap (this bench script's own: %d B);"
          % script)
    print("  sample points (from the first batch on): every packet the client writes "
          "(client._send, inside publish(), the payload in its send buffer), every batch read, "
          "every batch's PUBACK (in the client's reader task): gc.collect() then "
          "gc.mem_alloc() at each, gc off in between; 'net allocated' = growth of mem_alloc() "
          "between points, less what MicroPython frees explicitly;")
    print("  the uplinks' largest allocation between two points is the health message "
          "(agent/runtime.py's, CBOR-encoded from a dict) built once per connection;")
    print("  smallest heap: 2 KiB steps, no sampling, all 144 acked on one connection and the "
          "subscriber check; a heap smaller by the script's code is what a board whose own "
          "main.py is small would need, roughly.")
    return runs


# -- main -------------------------------------------------------------------------------------

def main(only=None):
    """only: "drain", "wire" or "heap" to run one part (all by default)."""
    from simulator.lab.mosquitto import Mosquitto, make_tls_files
    print("Tether uplink: backlog drain, bytes on the wire, MicroPython heap; reference day "
          "(144 batches x 420 readings), device %s, topic %s" % (c.DEVICE, c.TOPIC))
    start = time.time()
    failures = []
    tmp = tempfile.mkdtemp(prefix="tether-bench-uplink-")
    mp = broker = check = fast = fast_check = None
    try:
        sch = c.schema()
        batches = c.batches(sch=sch)
        payloads = {}
        tmpl = {}
        profiles = {}
        for encoding in ("compact", "senml"):
            enc = c.encoder(encoding)
            payloads[encoding] = [bytes(b.encode(enc)) for b in batches]
            p = profile_for(encoding)
            profiles[encoding] = os.path.join(tmp, "profile-%s.json" % encoding)
            with open(profiles[encoding], "w") as f:
                json.dump(p, f)
            tmpl[encoding] = os.path.join(tmp, "backlog-" + encoding)
            seg = make_backlog(tmpl[encoding], p, batches, payloads[encoding])
            print("backlog %-7s: 144 batches, %d B of batch payloads, %d B of log segments, "
                  "stored through Buffer.append on a FileStore (buffer max %d B)"
                  % (encoding, sum(map(len, payloads[encoding])), seg,
                     p["buffer"]["max_bytes"]))
        schema_path = os.path.join(tmp, "schema.cbor")
        with open(schema_path, "wb") as f:
            f.write(sch.to_cbor())
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        payloads_path = os.path.join(tmp, "payloads-compact.bin")
        write_payloads(payloads_path, payloads["compact"])

        tls_files = make_tls_files(os.path.join(tmp, "tls"))
        broker = Mosquitto(os.path.join(tmp, "mosquitto"), tls="server", tls_files=tls_files,
                           log_type="error warning")
        broker.start()
        version = subprocess.run([broker.binary, "-h"], capture_output=True,
                                 text=True).stdout.splitlines()[0]
        print("broker: %s on 127.0.0.1:%d (TLS listener :%d, throwaway CA, server certificate "
              "for localhost)" % (version.strip(), broker.port, broker.tls_port))
        check = Check(broker.port)
        fast = Mosquitto(os.path.join(tmp, "mosquitto-nodelay"), log_type="error warning",
                         extra_conf="set_tcp_nodelay true")
        fast.start()
        fast_check = Check(fast.port)
        print("and one more with set_tcp_nodelay true on 127.0.0.1:%d" % fast.port)
        mp = c.MicroPythonBench()
        print("%s; agent/ as .mpy; CPython %s, paho-mqtt %s"
              % (mp.version, sys.version.split()[0], paho_version()))
        runner = Runner(tmp, mp)

        verdicts = []
        if only in (None, "drain"):
            print()
            print("== 1. backlog drain: 144 stored compact batches, mosquitto on loopback, TLS "
                  "off; MicroPython at -X heapsize=%s ==" % MP_HEAP)
            print("-- mosquitto with set_tcp_nodelay true (the target is judged here) --")
            base, verdicts = drain_times(runner, fast, fast_check, tmpl["compact"],
                                         profiles["compact"], payloads_path, payloads["compact"],
                                         ROUNDS)
            print("-- mosquitto as configured by default (set_tcp_nodelay false) --")
            drain_times(runner, broker, check, tmpl["compact"], profiles["compact"],
                        payloads_path, payloads["compact"], ROUNDS_DEFAULT, judge=False)
            print("  Without TCP_NODELAY on the broker's side (mosquitto's default; paho and "
                  "agent/mqtt.py do not set it either), the PUBACK that ends a burst often waits "
                  "for the device's delayed ACK of the previous one: Nagle's algorithm plus "
                  "Linux's 40 ms delayed ACK, once per burst (here, once at the end of the "
                  "drain). It hits the plain loop and the uplink alike, at random, and is the "
                  "~40 ms between the two tables; set_tcp_nodelay true on the broker removes it.")

        configs = []
        for interp, encoding in (("cpython", "compact"), ("cpython", "senml"),
                                 ("micropython", "compact")):
            for tls in (False, True):
                configs.append((interp, encoding, tls, tmpl[encoding], empty, profiles[encoding],
                                payloads[encoding]))
        if only in (None, "wire"):
            print()
            print("== 2. bytes on the wire per reading (simulator/lab/netproxy.Proxy between the uplink "
                  "and mosquitto; window 4) ==")
            wire_bytes(runner, broker, check, configs, str(tls_files.ca_pem))

        if only in (None, "heap"):
            print()
            print("== 3. MicroPython heap while publishing, TLS off, -X heapsize=%s ==" %
                  HEAP_SMALL)
            heap_figures(runner, mp, fast, fast_check, tmpl["compact"], profiles["compact"],
                         schema_path, payloads_path, payloads["compact"])

        if verdicts:
            print()
            print("Targets:")
            for label, t, ratio in verdicts:
                print("  %-45s %5.1f ms = %.2fx the plain paho loop's %.1f ms  target <= %.1fx  "
                      "%s%s" % (label, t / 1000, ratio, base / 1000, TARGET_RATIO,
                                c.verdict(ratio, TARGET_RATIO),
                                " (with the NOTE's workaround)" if "MicroPython" in label
                                and runner.early else ""))
        if runner.early:
            print()
            print("NOTE: in %d of the %d MicroPython uplink runs, agent/mqtt.py delivered a PUBACK "
                  "through on_puback before the publish() that sent its batch had returned (%d "
                  "PUBACKs in all): publish() yields (await _sleep_ms(0)) after writing, and "
                  "agent/uplink.py notes the packet id (self.inflight[pid] = ... in _fill) only "
                  "once publish() has returned, so its _puback() drops such a PUBACK as not a "
                  "batch's. As is, that batch stays unacknowledged until the PUBACK timeout "
                  "(30 s) drops the connection, and every batch after it is sent again "
                  "(bench/mp_uplink.py ... early_ack_fix=0 shows it). These runs used a "
                  "benchmark-side workaround: bench/mp_uplink.py holds such a PUBACK and hands "
                  "it to the uplink when _fill() next asks the buffer for a batch; it changes no "
                  "byte on the wire." % (runner.early_runs, runner.runs, runner.early))
    except Failed as exc:
        failures.append(str(exc))
    finally:
        for x in (check, fast_check, broker, fast):
            if x is not None:
                x.stop()
        if mp is not None:
            mp.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("(%.0f s)" % (time.time() - start))
    for f in failures:
        print("FAILED: " + f)
    return 1 if failures else 0


def paho_version():
    try:
        import paho.mqtt
        return paho.mqtt.__version__
    except Exception:
        return "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "plain-loop":
        sys.exit(plain_loop(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
