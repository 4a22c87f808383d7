"""Stored readings per second of the ingest, SQLite and PostgreSQL, one and two processes.

    python3 bench/ingest.py            (--quick: 10 devices, 2 runs each, for bench/run_all.py)

The reference workload (shared/bench/README.md): DEVICES devices each publish the reference
day, 144 compact batches of 420 readings, through a mosquitto on loopback
(`max_queued_messages 0`, so the broker drops nothing for an ingest that is behind). For each
store and number of `tether ingest` processes (one shared subscription group, `--no-repair`:
nothing is missing), a warm-up first: the devices' schemas and first batches, stored before the
clock starts (connections made, each device's channels and the day's partition in place, as
the baseline's partitions are made before its clock). Then the clock runs from the first
PUBLISH of the other 143 batches a device until the database holds every batch (polled every
20 ms, every 2 ms over the last tenth of them). The publisher, a thread of this
bench, writes the fleet's QoS 1 PUBLISH packets, made beforehand, on one connection as fast as
the broker reads them (publish()). Each figure is the fastest of --repeat runs (3), each into a
new database, and so is the baseline's: the host is shared, and one run of a second or two
varies by a fifth.

- Baseline, in the same run: the same rows (one per batch and channel, as the ingest stores
  them) COPYed into the same PostgreSQL server by one client, in one transaction, prepared in
  memory first. Target: the PostgreSQL ingest at >= 0.5x that rate.
- CPU per 1,000 readings, over the same time: the ingest processes' (user + system, every
  thread, from /proc) and PostgreSQL's server processes' (its postmaster's children, alive and
  reaped, but the backend of this bench's polling connection), both read as the last batch is
  found stored (what follows, the processes' stop and the summary they print, is not the
  ingest's work).
- The storage layouts: a row per reading against a row per batch and channel with arrays (what
  ingest/store/postgres.py stores), written with COPY and read back, with their size.
- On paper: the processes and the database a million devices need (60,480 readings each a day).

PostgreSQL runs durable (fsync on) as a production server would, on the machine's disk.
"""
import argparse
import functools
import math
import os
import signal
import socket
import struct
import subprocess
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

DEVICES = 20
DEVICES_QUICK = 10  # 6 made runs of 0.2 s: 0.49x and 0.59x in two runs of the same code
REPEAT_QUICK = 2
MILLION = 1000000
TARGET = 0.5  # PostgreSQL ingest / plain COPY
LIVENESS_S = 600
POLL_S, POLL_DONE_S = 0.02, 0.002  # the count's poll, and over the last tenth of the batches
REPEAT = 3  # runs of each figure, the fastest kept, the baseline's too: this host is shared


def messages(devices):
    """[(topic, payload, retained)]: each device's schema (retained), then the day's batches,
    devices interleaved as a fleet publishes them. The first 2 x devices (the schemas and each
    device's first batch) are the runs' warm-up."""
    from agent import cbor, cbor_decode
    sch = c.schema()
    enc = c.encoder("compact")
    day = [bytes(b.encode(enc)) for b in c.batches(sch=sch)]  # a view into its buffer
    schema = sch.to_cbor()
    names = ["bench-%04d" % i for i in range(devices)]
    out = [("tether/v1/%s/up/schema" % d, schema, True) for d in names]
    for data in day:
        fields = cbor_decode.loads(data)
        for d in names:
            fields[1] = d
            out.append(("tether/v1/%s/up/batch" % d, cbor.dumps(fields), False))
    return out


def _length(n):
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first, body):
    return bytes([first]) + _length(len(body)) + body


def _string(data):
    return struct.pack(">H", len(data)) + data


def packets(msgs):
    """msgs as the fleet's MQTT 3.1.1 packets: CONNECT (clean session), then a QoS 1 PUBLISH
    each (packet ids 1, 2, ...)."""
    if len(msgs) >= 0xFFFF:
        raise SystemExit("%d messages: more than one connection's packet ids" % len(msgs))
    out = [_packet(0x10, _string(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60)
                   + _string(b"bench-publisher"))]
    for pid, (topic, payload, retain) in enumerate(msgs, 1):
        out.append(_packet(0x32 | retain, _string(topic.encode()) + struct.pack(">H", pid)
                           + payload))
    return out


def publish(port, data):
    """Writes the packets made by packets() on one socket, as fast as the broker reads them,
    until the broker has acknowledged every PUBLISH, then disconnects: a publisher whose Python
    does nearly nothing a message (paho's client took a tenth of this machine's two cores in
    the run, from the ingest it measures)."""
    count = len(data) - 1
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data[0])
        if sock.recv(4) != b"\x20\x02\x00\x00":
            raise SystemExit("the broker refused the publisher's CONNECT")
        sender = threading.Thread(target=sock.sendall, args=(b"".join(data[1:]),), daemon=True)
        sender.start()
        acked = 0
        pending = b""
        deadline = time.monotonic() + LIVENESS_S
        while acked < count:  # each PUBACK is 4 bytes: 0x40, 2, the packet id
            if time.monotonic() > deadline:
                raise SystemExit("the broker acknowledged %d of %d messages" % (acked, count))
            pending += sock.recv(65536)
            acked += len(pending) // 4
            pending = pending[len(pending) // 4 * 4:]
        sender.join()
        sock.sendall(b"\xe0\x00")


def postmaster_cpu(server, exclude=()):
    """CPU seconds of the server's postmaster and the children it reaped (the backends that
    served connections now closed) and those alive, but those whose pid is in `exclude`."""
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        pid = int(f.readline())
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p):
        with open("/proc/%d/stat" % p) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields  # fields[0] is the state (3rd field)

    total = 0
    s = stat(pid)
    total += sum(int(x) for x in s[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            try:
                s = stat(int(entry))
            except OSError:
                continue
            if int(s[1]) == pid and int(entry) not in exclude:
                total += int(s[11]) + int(s[12])
    return total / tick


class Run:
    """One store and process count: times the ingest of `msgs` into `db`, after a warm-up."""

    def __init__(self, name, broker, db, processes, warm, msgs, count, server_cpu, log):
        self.name, self.broker, self.db, self.processes = name, broker, db, processes
        self.log = log
        self.warm, self.msgs, self.count, self.server_cpu = warm, msgs, count, server_cpu

    def __call__(self):
        """(seconds, the ingest processes' CPU seconds, the server's or None) of storing msgs,
        each measured from the first PUBLISH until the database holds their every batch."""
        procs = []
        for i in range(self.processes):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "firmware.cli", "ingest",
                 "--broker", "mqtt://127.0.0.1:%d" % self.broker.port, "--db", self.db,
                 "--group", self.name, "--no-repair", "--quiet", "--clean-session",
                 "--client-id", "%s-%d" % (self.name, i)],
                cwd=str(c.ROOT), stdout=subprocess.PIPE, stderr=self.log, text=True))
        try:
            for p in procs:  # its first line says it is subscribed
                line = p.stdout.readline()
                if not line.startswith("ingest "):
                    raise SystemExit("tether ingest did not start: %s(log: %s)"
                                     % (line, self.log.name))
            warm, timed = packets(self.warm), packets(self.msgs)
            stored = batches(self.warm)
            self._publish(warm, 0, stored)
            cpu = -sum(process_cpu(p.pid) for p in procs)
            server = -self.server_cpu() if self.server_cpu else None
            start = time.perf_counter()
            self._publish(timed, stored, stored + batches(self.msgs))
            elapsed = time.perf_counter() - start
            cpu += sum(process_cpu(p.pid) for p in procs)
            if server is not None:
                server += self.server_cpu()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
                p.wait()
                p.stdout.close()
        return elapsed, cpu, server

    def _publish(self, data, before, after):
        """Publishes the packets made by packets() and returns once the database holds `after`
        batches, from `before`. The count is polled every POLL_S, and every POLL_DONE_S over the
        last tenth (each poll costs the server a count, and the figure the poll's step)."""
        threading.Thread(target=publish, args=(self.broker.port, data), daemon=True).start()
        deadline = time.monotonic() + LIVENESS_S
        near = after - (after - before) // 10
        while True:
            n = self.count()
            if n >= after:
                return
            if time.monotonic() > deadline:
                raise SystemExit("the ingest did not store every batch within %d s"
                                 % LIVENESS_S)
            time.sleep(POLL_DONE_S if n >= near else POLL_S)


def batches(msgs):
    return sum(1 for t, _, _ in msgs if t.endswith("/batch"))


def process_cpu(pid):
    """CPU seconds (user + system, every thread) of a running process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sqlite_count(path):
    import sqlite3

    def count():
        try:
            with sqlite3.connect(path, timeout=30) as conn:
                return conn.execute("SELECT count(*) FROM batches").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0
    return count


def pg_count(url):
    """Counts on one connection, made once: a connection a poll would cost the server a process
    each time, and its CPU would count as the ingest's."""
    import psycopg
    conn = psycopg.connect(url, autocommit=True)

    def count():
        try:
            return conn.execute("SELECT count(*) FROM batches").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0
    count.close = conn.close
    count.pid = conn.info.backend_pid  # its backend's CPU is the bench's, not the ingest's
    return count


def new_database(server, name):
    import psycopg
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s"' % name)
        conn.execute('CREATE DATABASE "%s"' % name)
    return server.url.rsplit("/", 1)[0] + "/" + name


def schemas_and_batches(msgs):
    """({schema id: Schema}, [batch payloads]) of msgs, as an ingest sees them."""
    from agent.schema import Schema
    schemas = {}
    batches = []
    for topic, payload, _ in msgs:
        if topic.endswith("/schema"):
            s = Schema.from_cbor(payload)
            schemas[s.id] = s
        else:
            batches.append(payload)
    return schemas, batches


def packed_rows(msgs):
    """The readings_packed rows the ingest stores for msgs (and the readings in them)."""
    from agent import batch_decode
    from ingest.store import extremes
    schemas, batches = schemas_and_batches(msgs)
    rows = []
    for payload in batches:
        b = batch_decode.decode(payload, schemas)
        per = {}
        for t, n, v in b.readings:
            per.setdefault(n, ([], []))
            per[n][0].append(t)
            per[n][1].append(float(v))
        for n, (ts, vs) in per.items():
            rows.append((b.device, b.seq, n, ts[0], ts, vs, None) + extremes(ts, vs))
    return rows


def decode_rate(msgs, decode):
    """Readings/s of decoding the batches alone with decode(payload, schemas), best of 3: what
    one ingest process cannot go past, whatever the store."""
    schemas, batches = schemas_and_batches(msgs)
    n = sum(len(decode(b, schemas).readings) for b in batches)
    return n / c.best_of(lambda: [decode(b, schemas) for b in batches], repeat=3)


def copy_baseline(server, msgs, k):
    """(seconds, readings, server CPU seconds) of one plain COPY of the ingest's rows into a new
    database of the same layout, partitions made beforehand."""
    from ingest.store import postgres
    url = new_database(server, "bench_copy_%d" % k)
    store = postgres.connect(url)
    try:
        rows = packed_rows(msgs)
        for r in rows:
            store._partition(r[3])
        cpu = postmaster_cpu(server)
        store.begin()
        start = time.perf_counter()
        store._copy([postgres.row_data(r) for r in rows])  # its binary form made in the time
        store.commit()
        elapsed = time.perf_counter() - start
        return elapsed, sum(len(r[4]) for r in rows), postmaster_cpu(server) - cpu
    finally:
        store.close()


def layouts(server, msgs):
    """[(layout, write s, bytes per reading, read s)] for a row per reading and for arrays."""
    import psycopg
    url = new_database(server, "bench_layout")
    rows = packed_rows(msgs)
    n = sum(len(r[4]) for r in rows)
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE per_reading (device text NOT NULL, t_ms bigint NOT NULL, "
                     "channel text NOT NULL, value double precision, seq bigint NOT NULL)")
        conn.execute("CREATE INDEX ON per_reading (device, channel, t_ms)")
        conn.execute("CREATE TABLE packed (device text NOT NULL, seq bigint NOT NULL, "
                     "channel text NOT NULL, t_first bigint NOT NULL, t_ms bigint[] NOT NULL, "
                     "value double precision[] NOT NULL)")
        conn.execute("CREATE INDEX ON packed (device, channel, t_first)")
        conn.execute("CREATE VIEW packed_readings AS SELECT device, r.t_ms, channel, r.value "
                     "FROM packed CROSS JOIN LATERAL unnest(t_ms, value) AS r (t_ms, value)")
        flat = [(d, t, ch, v, s) for d, s, ch, _, ts, vs, *_ in rows for t, v in zip(ts, vs)]
        for name, table, cols, types, data, view in (
                ("a row per reading", "per_reading", "device, t_ms, channel, value, seq",
                 ["text", "int8", "text", "float8", "int8"], flat, "per_reading"),
                ("a row per batch and channel (arrays)", "packed",
                 "device, seq, channel, t_first, t_ms, value",
                 ["text", "int8", "text", "int8", "int8[]", "float8[]"],
                 [r[:6] for r in rows], "packed_readings")):
            start = time.perf_counter()
            with conn.transaction():
                with conn.cursor().copy("COPY %s (%s) FROM STDIN (FORMAT BINARY)"
                                        % (table, cols)) as copy:
                    copy.set_types(types)
                    for r in data:
                        copy.write_row(r)
            write = time.perf_counter() - start
            conn.execute("VACUUM ANALYZE %s" % table)
            size = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
            device = rows[0][0]

            def read():
                conn.execute("SELECT t_ms, value FROM %s WHERE device = %%s AND channel = "
                             "'power' ORDER BY t_ms" % view, (device,)).fetchall()
                conn.execute("SELECT device, channel, t_ms / 3600000, avg(value) FROM %s "
                             "GROUP BY 1, 2, 3" % view).fetchall()
            out.append((name, n / write, size / n, c.best_of(read, repeat=3)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="%d devices" % DEVICES_QUICK)
    ap.add_argument("--devices", type=int)
    ap.add_argument("--repeat", type=int, help="runs of each, the fastest kept (default %d; "
                    "%d with --quick)" % (REPEAT, REPEAT_QUICK))
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = REPEAT_QUICK if args.quick else REPEAT
    devices = args.devices or (DEVICES_QUICK if args.quick else DEVICES)

    from simulator.lab.mosquitto import Mosquitto, find_tool
    from simulator.lab.postgres import Postgres
    if find_tool("mosquitto") is None:
        raise SystemExit("needs Debian's mosquitto and postgresql (tests/system-deps)")
    msgs = messages(devices)
    warm, timed = msgs[:2 * devices], msgs[2 * devices:]
    schemas = msgs[:devices]
    readings = len(timed) * c.READINGS_PER_DAY // 144  # 420 a batch
    tmp = tempfile.mkdtemp(prefix="tether-bench-ingest-")
    broker = Mosquitto(os.path.join(tmp, "mosquitto"), log_type="error warning",
                       extra_conf="max_queued_messages 0\nmax_inflight_messages 1000").start()
    server = Postgres(durable=True).start()
    results = []
    try:
        print("%d devices x the reference day: %d batches (the first of each device's as a "
              "warm-up), %d readings timed, through mosquitto %s"
              % (devices, devices * 144, readings, broker.port))
        for backend, processes in (("SQLite", 1), ("SQLite", 2), ("PostgreSQL", 1),
                                   ("PostgreSQL", 2)):
            runs = []
            for k in range(args.repeat):
                name = "ingest_%s_%d_%d" % (backend.lower(), processes, k)
                if backend == "SQLite":
                    db = os.path.join(tmp, name + ".sqlite")
                    count = sqlite_count(db)
                    server_cpu = None
                else:
                    db = new_database(server, name)
                    count = pg_count(db)
                    server_cpu = functools.partial(postmaster_cpu, server, (count.pid,))
                with open(os.path.join(tmp, name + ".log"), "w") as log:
                    runs.append(Run(name, broker, db, processes, warm, timed, count, server_cpu,
                                    log)())
                if backend == "PostgreSQL":
                    count.close()
            elapsed, cpu, server_cpu = min(runs)
            results.append((backend, processes, readings / elapsed, cpu, server_cpu))
            print("  %s, %d process%s: %s s" % (backend, processes,
                                                "" if processes == 1 else "es",
                                                " / ".join("%.2f" % r[0] for r in runs)),
                  flush=True)
        copies = [copy_baseline(server, schemas + timed, k) for k in range(args.repeat)]
        copy_s, copy_n, copy_cpu = min(copies)
        assert copy_n == readings, (copy_n, readings)
        copy_rate = readings / copy_s
        print("  baseline COPY: %s s" % " / ".join("%.2f" % r[0] for r in copies))
        shapes = layouts(server, schemas + timed)
        from agent import batch_decode
        from ingest import fastdecode
        decoding = decode_rate(msgs, batch_decode.decode)
        fast = decode_rate(msgs, fastdecode.decode)
    finally:
        server.stop()
        broker.stop()
        if sys.exc_info()[0] is None:   # some 180 MB of databases and logs; kept on a failure,
            shutil.rmtree(tmp, ignore_errors=True)     # whose message names a log in it

    print()
    print("Stored readings per second (from the first PUBLISH until the database holds every "
          "batch):")
    rows = []
    for backend, processes, rate, cpu, server_cpu in results:
        rows.append([backend, str(processes), "{:,.0f}".format(rate),
                     "%.2f" % (rate / copy_rate) if backend == "PostgreSQL" else "",
                     "%.1f" % (cpu * 1000 * 1000 / readings),
                     "%.1f" % (server_cpu * 1000 * 1000 / readings) if server_cpu else ""])
    rows.append(["baseline: a plain COPY of the same rows", "1", "{:,.0f}".format(copy_rate),
                 "1.00", "", "%.1f" % (copy_cpu * 1000 * 1000 / readings)])
    c.table(["store", "processes", "readings/s", "x COPY", "ingest CPU ms/1000",
             "server CPU ms/1000"], rows)
    best = max(r[2] for r in results if r[0] == "PostgreSQL")
    print("  PostgreSQL ingest / plain COPY: %.2fx (target >= %.1fx): %s"
          % (best / copy_rate, TARGET, c.verdict(best / copy_rate, TARGET, True)))
    print("  for scale: decoding the batches alone on one core runs at %s readings/s, %.2fx the "
          "COPY, with the ingest's decoder (ingest/fastdecode); %s readings/s, %.2fx, with the "
          "portable reference (agent.batch_decode)" % ("{:,.0f}".format(fast), fast / copy_rate,
                                                       "{:,.0f}".format(decoding),
                                                       decoding / copy_rate))
    print()
    print("Storage layouts (COPY of the same %d readings; read: one device's channel of a day "
          "+ hourly averages of every channel and device):" % readings)
    c.table(["layout", "write readings/s", "bytes/reading", "read s"],
            [[name, "{:,.0f}".format(w), "%.1f" % b, "%.3f" % r] for name, w, b, r in shapes])
    print()
    paper(results, readings, shapes)
    return 0


def paper(results, readings, shapes):
    """The processes and database a million devices need, from the figures above."""
    per_s = MILLION * c.READINGS_PER_DAY / 86400.0
    _, _, rate, cpu, server_cpu = [r for r in results if r[:2] == ("PostgreSQL", 1)][0]
    per_process = readings / cpu  # one writer thread: at most one core's worth
    processes = math.ceil(2 * per_s / per_process)  # half busy: room for peaks and catching up
    server_cores = per_s * server_cpu / readings
    size = shapes[1][2]
    print("On paper, a million devices (60,480 readings each a day): %s readings/s on average."
          % "{:,.0f}".format(per_s))
    print("  ingest: %s readings per CPU second and process here, so %d process%s (at most half "
          "busy) in one shared subscription group" % ("{:,.0f}".format(per_process), processes,
                                                      "" if processes == 1 else "es"))
    print("  PostgreSQL: %.1f cores busy writing (%.2f ms CPU per 1,000 readings here), "
          "%s rows/s into readings_packed (60 readings a row), %.0f GB a day at %.1f bytes a "
          "reading before any compression: one server with %d+ cores and fast disks, daily "
          "partitions dropped past the retention (or TimescaleDB with compression)"
          % (server_cores, server_cpu * 1e6 / readings, "{:,.0f}".format(per_s / 60),
             per_s * 86400 * size / 1e9, size, max(4, math.ceil(2 * server_cores))))


if __name__ == "__main__":
    sys.exit(main())
