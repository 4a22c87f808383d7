"""A `tether run` process for the tests, with its standard error (where all its lines go) read
line by line as they come, and a watcher that records what reaches the broker."""
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIVENESS_S = 60  # generous: only a broken program takes this long


class Run:
    """`tether run ARGS` with both outputs pipes, as under systemd. Lines are kept as the bytes
    that came (`raw`), so that a carriage return or an escape sequence would show."""

    def __init__(self, *args, journal=False, cwd=ROOT):
        """journal: standard error as systemd hands a service the journal's stream (a socket
        there; a pipe here), named by JOURNAL_STREAM; cwd: the working folder."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("JOURNAL_STREAM", None)
        stderr = subprocess.PIPE
        if journal:
            r, stderr = os.pipe()
            st = os.fstat(stderr)
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        self.proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "run", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=stderr, cwd=cwd, env=env)
        if journal:
            os.close(stderr)
            self.proc.stderr = os.fdopen(r, "rb")
        self.lines = queue.Queue()
        self.seen = []
        self.raw = []
        self.stdout = b""
        threading.Thread(target=self._read, daemon=True).start()
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._out.start()

    def _read(self):
        for line in self.proc.stderr:
            self.raw.append(line)
            self.lines.put(line.decode("utf-8", "replace"))
        self.lines.put(None)

    def _read_stdout(self):
        self.stdout = self.proc.stdout.read()

    def wait_for(self, *words):
        """The first line (from now on) that holds all of words."""
        deadline = time.monotonic() + LIVENESS_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if all(w in line for w in words):
                return line
        raise AssertionError("no line with %r; got:\n%s" % (words, "".join(self.seen)))

    def stop(self, sig=signal.SIGTERM):
        """Sends sig and waits for the end: (exit code, the lines not yet read, joined)."""
        self.proc.send_signal(sig)
        return self.end()

    def end(self):
        self.proc.wait(timeout=LIVENESS_S)
        rest = []
        while True:
            line = self.lines.get(timeout=LIVENESS_S)
            if line is None:
                break
            rest.append(line)
        self.seen += rest
        self._out.join(LIVENESS_S)
        return self.proc.returncode, "".join(rest)


def watch(port, topic):
    """A client recording (topic, payload) of what reaches the broker under topic; subscribed
    when this returns, so nothing published after it is missed."""
    got = []
    subscribed = threading.Event()
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="w", protocol=paho.MQTTv311)
    watcher.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_connect = lambda c, *a: c.subscribe(topic, 1)
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    assert subscribed.wait(LIVENESS_S), "the watcher never got its SUBACK"
    return watcher, got


def until(got, enough, what):
    """Waits until enough(got) holds (what reaches the watcher comes on its own thread)."""
    deadline = time.monotonic() + LIVENESS_S
    while not enough(list(got)):
        assert time.monotonic() < deadline, "never saw %s: %r" % (what, got[-5:])
        time.sleep(0.05)
