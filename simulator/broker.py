"""The MQTT broker that `tether simulate` starts when no `--broker` is given.

    broker = EmbeddedBroker()          # or EmbeddedBroker(port=1883)
    await broker.start()               # a free loopback port; returns once it answers CONNECT
    print(broker.url)                  # mqtt://127.0.0.1:PORT
    ...
    await broker.stop()                # start() again later: the same port (a broker restart)

The broker is rumqttd (Rust, Apache-2.0) as compiled into the PyPI package `iotcore` (MIT): a
real MQTT 3.1.1 broker, not one of ours. It runs in a child process of its own (a `python -c`
that imports iotcore and calls `IotCoreBroker(config_path=...).run_forever()`), never in the
simulator's process:
- rumqttd has no shutdown call: only ending its process frees the port and the memory, and
  `stop()` must really stop it (tests, and the simulator's broker-restart fault);
- the simulated fleet keeps its core to itself: the broker's threads run on the other one;
- the child watches the pipe on its stdin and exits when the simulator's process ends, however
  it ends (a crash, SIGKILL), so no broker is left behind holding the port.

Why this broker (measured here, see the commit that added it; bench/broker.py repeats the
throughput figures): of the brokers installable from PyPI on Python 3.11 it is the one that did
everything Tether relies on with both of our clients: QoS 1 with a window in flight, retained
messages, the will on a dropped connection and on a silent one (keep alive), `$share/group/...`
shared subscriptions with 3.1.1 clients, persistent sessions (clean_session=False) that get what
was published while they were away, client-id takeover, thousands of connections. amqtt 0.12.1
has no shared subscriptions, drops messages queued for a persistent session whose client is
anonymous, and sends retained messages to clients that never subscribed to them.

What to know about rumqttd, and how it is configured here:
- Each topic filter that has subscribers keeps the messages published on it in an in-memory log
  of `buffer_mb` MiB (segments of buffer_mb/8 MiB; the oldest segment is dropped when the log is
  full), whether or not they were delivered already. So memory grows with the traffic up to
  about twice buffer_mb per busy filter, then stays there. A subscriber that falls further
  behind than buffer_mb (a stalled ingest, or a persistent session offline that long) silently
  loses the oldest messages, already acknowledged to their publishers. The simulator's ground
  truth makes such a loss visible in its report (lost > 0); stock mosquitto drops for a slow
  subscriber too, after max_queued_messages (1000 by default).
- Shared subscriptions are keyed by their group name alone: one client subscribing two filters
  in the same group (`$share/g/a/#` and `$share/g/b/#`) gets the messages of only one of them,
  the others never arrive (measured). Give each filter a group of its own (`$share/g-a/a/#`,
  `$share/g-b/b/#`): that works here and means the same on every broker.
- A shared subscription whose members have persistent sessions: a member that comes back gets
  what was published while it was away even if another member already got it (duplicates, no
  loss): the ingest de-duplicates by (device, sequence). But a group whose only member went
  away with messages it had not acknowledged stops acknowledging new PUBLISHes on the topic, and
  that member's reconnect got no SUBACK (measured: bench/broker_restart.py): the simulator's
  ingest uses plain subscriptions unless given a group.
- Payloads up to `max_payload` bytes (a larger PUBLISH closes the connection); at most
  `max_connections` connections; each connection costs ~40 KiB of the broker's memory.
- Retained messages and sessions live in memory only: a restart (stop, start) forgets them.
"""
import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"

# The child process. `python -c` puts the working directory first on sys.path: dropped, so that
# a folder named `iotcore` where the user runs `tether simulate` cannot shadow the package.
# rumqttd's tracing spans reach Python's logging as one record per packet (measured: a log line
# per PUBLISH and 3x the broker's CPU): silenced unless TETHER_BROKER_DEBUG is set.
_CHILD = """\
import logging, os, shutil, signal, sys, threading
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the simulator, which then stops us
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
if os.environ.get("TETHER_BROKER_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
else:
    logging.getLogger("rumqttd").setLevel(logging.CRITICAL)
from iotcore.iotcore import IotCoreBroker
def _orphaned():
    try:
        sys.stdin.buffer.read()   # EOF: the parent closed the pipe or is gone
    finally:
        shutil.rmtree(os.path.dirname(sys.argv[1]), ignore_errors=True)  # our temp folder
        os._exit(0)
threading.Thread(target=_orphaned, daemon=True).start()
try:
    IotCoreBroker(config_path=sys.argv[1]).run_forever()
    print("rumqttd stopped (TETHER_BROKER_DEBUG=1 shows its log)", flush=True)
except BaseException as exc:  # e.g. OSError: the port is in use
    print("%s: %s" % (type(exc).__name__, exc), flush=True)
os._exit(1)
"""

_CONFIG = """\
# rumqttd configuration written by tether's simulator/broker.py
id = 0

[router]
id = 0
max_connections = {max_connections}
max_outgoing_packet_count = 200
max_segment_size = {segment}
max_segment_count = {segments}

[v4.1]
name = "tether"
listen = "{host}:{port}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 100
dynamic_filters = true
"""

_SEGMENTS = 8


class BrokerError(RuntimeError):
    """The embedded broker could not start (its log is in the message)."""


def _free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _connect_packet(client_id):
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


class EmbeddedBroker:
    """rumqttd (PyPI `iotcore`) in a child process on a loopback port. See the module doc."""

    def __init__(self, port=None, buffer_mb=256, max_payload=256 * 1024, max_connections=20000,
                 start_timeout=15.0):
        if buffer_mb < _SEGMENTS:
            raise ValueError("buffer_mb below %d" % _SEGMENTS)
        self._port = port
        self._chosen = port is None   # a port we picked: another one if it is taken meanwhile
        self.buffer_mb = buffer_mb
        self.max_payload = max_payload
        self.max_connections = max_connections
        self.start_timeout = start_timeout
        self.proc = None
        self._dir = None
        self._log_path = None
        self._lock = None   # (event loop, asyncio.Lock)

    # ---- what the simulator uses ----

    @property
    def port(self):
        return self._port

    @property
    def host(self):
        return HOST

    @property
    def url(self):
        return "mqtt://%s:%d" % (HOST, self._port) if self._port else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    async def start(self):
        """Starts the broker; returns once it has answered an MQTT CONNECT with a CONNACK.
        BrokerError if it cannot (iotcore missing, port taken, no answer within start_timeout).
        Calls of start() and stop() from concurrent tasks take turns: a stop() never tears down
        a broker that another task's start() is still waiting for."""
        async with self._turn():
            return await self._start()

    async def stop(self, timeout=5.0):
        """SIGTERM, SIGKILL after `timeout`; returns once the process is gone (the port is free
        for the next start())."""
        async with self._turn():
            await self._stop(timeout)

    async def _start(self):
        if self.running:
            return self
        if importlib.util.find_spec("iotcore") is None:
            raise BrokerError("the embedded MQTT broker needs the `iotcore` package "
                              "(pip install 'iotcore>=0.4'), or give a broker with --broker")
        for attempt in range(3):
            if self._port is None:
                self._port = _free_port()
            try:
                await self._start_once()
                # A restart keeps the port: its clients know no other. Taken meanwhile (by
                # another program's free port), the restart fails and says so.
                self._chosen = False
                return self
            except BrokerError as exc:
                in_use = "in use" in str(exc).lower()
                if not (self._chosen and in_use and attempt < 2):
                    raise
                self._port = None  # someone took the free port between our check and its bind

    async def _stop(self, timeout=5.0):
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                deadline = time.monotonic() + timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if proc.poll() is None:
                    proc.kill()
                    while proc.poll() is None:
                        await asyncio.sleep(0.01)
            if proc.stdin is not None:
                proc.stdin.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def log(self):
        """What the broker process wrote (empty unless something went wrong, or with
        TETHER_BROKER_DEBUG=1 in the environment)."""
        try:
            with open(self._log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def __repr__(self):
        return "<EmbeddedBroker %s %s>" % (self.url, "running" if self.running else "stopped")

    # ---- inside ----

    def _turn(self):
        """The lock that makes start() and stop() take turns, made in the running event loop
        (an asyncio.Lock belongs to one loop; this object may outlive one: tests, restarts)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    async def _start_once(self):
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="tether-broker-")
        conf = os.path.join(self._dir, "rumqttd.toml")
        with open(conf, "w") as f:
            f.write(_CONFIG.format(
                host=HOST, port=self._port, max_connections=self.max_connections,
                max_payload=self.max_payload, segments=_SEGMENTS,
                segment=self.buffer_mb * 1024 * 1024 // _SEGMENTS))
        self._log_path = os.path.join(self._dir, "broker.log")
        with open(self._log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, conf],
                                         stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, close_fds=True,
                                         start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                code, text = self.proc.returncode, self._log_tail()
                await self._stop()
                raise BrokerError("the embedded broker exited with code %s at start (port %d):\n%s"
                                  % (code, self._port, text))
            if await self._answers():
                return
            if time.monotonic() > deadline:
                text = self._log_tail()
                await self._stop()
                raise BrokerError("the embedded broker did not answer on port %d within %.0f s:\n%s"
                                  % (self._port, self.start_timeout, text))
            await asyncio.sleep(0.02)

    async def _answers(self):
        """True when a CONNECT on the port gets a CONNACK accepting it."""
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self._port), 1.0)
            writer.write(_connect_packet("tether-probe-%d" % os.getpid()))
            connack = await asyncio.wait_for(reader.readexactly(4), 2.0)
            writer.write(b"\xe0\x00")  # DISCONNECT
            await writer.drain()
            return connack == b"\x20\x02\x00\x00"
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            if writer is not None:
                writer.close()

    def _log_tail(self, n=4000):
        text = self.log()
        return text[-n:] if text else "(nothing in its log)"
