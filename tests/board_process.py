"""A board's boots on the host, and what reached the broker and the ingest from it.

One boot is one real `micropython` process in the board's folder (its filesystem root) running
tests/portable/board_boot.py: the doubles of machine, network and ntptime go into sys.modules,
then /main.py runs unchanged; machine.reset() ends the process. Used by tests/test_board_entry.py
(a board folder laid out by hand) and tests/test_flash_end_to_end.py (one `tether flash` wrote).
"""
import json
import os
import sqlite3
import subprocess
import threading
import time

from agent import cbor, cbor_decode

# The whole agent, sim chips, MQTT client and board from .mpy: this profile ran from 200k when it
# was measured (bench/heap.py measures the printer).
HEAP = os.getenv("TETHER_BOARD_HEAP", "224k")  # set it to measure
RESET_EXIT = 75   # tests/portable/machine_fake.py: machine.reset() ends the process so
UID = "a4cf12345678"  # machine_fake.unique_id()

# A `platform: sim` profile with its WiFi credentials as secrets; %d is the broker's port.
PROFILE = """\
device: {id: "board-{uid}"}
platform: sim
wifi: {ssid: !secret wifi_ssid, password: !secret wifi_password}
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 250ms}
batch: {max_readings: 2, max_age: 1s}
buffer: {storage: flash, max_bytes: 64KiB, ram_readings: 4, flush_every: 1s}
uplink:
  broker: mqtt://127.0.0.1:%d
  keepalive: 5s
  backoff: {min: 100ms, max: 1s}
"""
SECRETS = "wifi_ssid: workshop\nwifi_password: not-a-real-passphrase\n"
QUICK_NET = {"CONNECT_MS": 200, "POLL_MS": 50, "BACKOFF_MIN_MS": 100, "BACKOFF_MAX_MS": 400,
             "NTP_RETRY_MIN_MS": 100}
QUICK_RESTARTS = {"RESTART_MIN_MS": 10, "RESTART_MAX_MS": 40}


class BoardProcess:
    """Boots of the board whose filesystem root is the folder `board`. module_path: the
    MICROPYPATH folders where board_boot and the doubles are found (after the board's root,
    which MicroPython searches first); heap: MicroPython's -X heapsize."""

    def __init__(self, binary, board, module_path, heap=HEAP):
        self.binary = binary
        self.heap = heap
        self.board = board
        self.module_path = list(module_path)
        self.proc = None
        self.lines = []

    def boot(self, **doubles):
        """Starts one boot; doubles: what tests/portable/board_boot.py reads from doubles.json."""
        (self.board / "doubles.json").write_text(json.dumps(doubles))
        self.lines = []
        env = dict(os.environ, MICROPYPATH=":".join(self.module_path + [".frozen"]))
        self.proc = subprocess.Popen([self.binary, "-X", "heapsize=" + self.heap, "-m", "board_boot"],
                                     cwd=str(self.board), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, args=(self.proc, self.lines),
                                       daemon=True)
        self.reader.start()
        return self

    def _read(self, proc, lines):
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    def said(self, text):
        return [line for line in self.lines if text in line]

    def wait_said(self, text, n=1, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.said(text)) >= n:
                return self.said(text)
            if self.proc.poll() is not None:
                self.reader.join(10)  # it has read the last lines
                if len(self.said(text)) >= n:
                    return self.said(text)
                break
            time.sleep(0.05)
        raise AssertionError("the board did not say %r %d times; it said:\n%s"
                             % (text, n, "\n".join(self.lines[-40:])))

    def wait_reset(self, timeout=30):
        code = self.proc.wait(timeout)
        self.reader.join(10)
        assert code == RESET_EXIT, "exit %s:\n%s" % (code, "\n".join(self.lines[-40:]))

    def crash_boots(self):
        path = self.board / "tether_boots"
        return int(path.read_text()) if path.exists() else None

    def end(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_rows(db, sql, predicate, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        try:
            got = rows(db, sql)
        except sqlite3.OperationalError:  # the ingest has not made its tables yet
            got = None
        if got is not None and predicate(got):
            return got
        time.sleep(0.1)
    raise AssertionError("the ingest stored %s" % (got,))


def healths(sub, device, predicate=lambda h: True, timeout=30):
    topic = "tether/v1/%s/up/health" % device
    got = sub.wait_for(lambda m: any(t == topic and predicate(cbor_decode.loads(p))
                                     for t, p, _, _ in m), timeout)
    found = [cbor_decode.loads(p) for t, p, _, _ in got if t == topic]
    if not any(predicate(h) for h in found):
        raise AssertionError("no such health report; got %s" % found[-2:])
    return found


def replies(sub, device, cid, timeout=30):
    topic = "tether/v1/%s/up/event" % device

    def mine(m):
        out = []
        for t, p, _, _ in m:
            if t == topic:
                d = cbor_decode.loads(p)
                if isinstance(d, dict) and d.get("reply") == cid:
                    out.append(d)
        return out
    return mine(sub.wait_for(lambda m: mine(m), timeout))


def command(sub, device, fields):
    sub.publish("tether/v1/%s/down/cmd" % device, cbor.dumps(fields))
