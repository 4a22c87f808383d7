"""The uplink's MQTT client on CPython (Raspberry Pi, simulator), on paho-mqtt 2.x.

Same interface, and the same behaviour seen from the caller, as the portable asyncio client in
`agent/mqtt.py` (the one the boards run), so the store-and-forward uplink is written once:

    client = Client("printer-0001", "broker.example", 8883, ssl=context, will=(...))
    client.on_puback = lambda pid: ...           # in the event loop thread
    await client.connect()
    pid = await client.publish(topic, payload)   # returns once handed over, not on PUBACK

Threading model: no thread of paho's. paho is driven from the asyncio event loop that calls
`connect()`: its socket is registered with `loop.add_reader` (and `add_writer` while paho has
bytes queued, through paho's `on_socket_register_write` / `on_socket_unregister_write` hooks),
readiness calls `loop_read()` / `loop_write()`, and each client has its own `loop.call_later`
timer for `loop_misc()` (keepalive pings, the ping timeout) every keepalive/8, first fired at a
random phase. So every paho callback, and every callback of this class, runs in the event loop
thread, with nothing to marshal.

Why not paho's `loop_start()`: that is one OS thread per connection, and the simulator runs up
to 10,000 connections in one process: 10,000 threads (each with its stack, each waking in its
own `select()` at least every second and contending for the GIL) plus a `call_soon_threadsafe`
hop for every callback. Driven from the loop, a connection costs a registered file descriptor
and a timer. Measured here (2-core shared machine, loopback mosquitto, one 500 B QoS 1 message
per device every 10 s): 10,000 connections in one process used 21-26 % of a core, ~9 KiB each,
p50 PUBACK latency 0.35 ms, no extra thread. The latency tail (p99 11-14 ms, max 70-230 ms)
comes from CPython's cyclic garbage collector walking every client's objects, not from paho's
`loop_misc` (NOTES.md saw it in one `loop_misc` pass over all clients; here each client's is its
own small timer): with `gc.freeze()` after the fleet connected, p99 was 2.7 ms and max 15 ms.

The only blocking step paho has is `connect()` (DNS, TCP connect, TLS handshake, all done by
paho in blocking mode): it runs in the loop's default executor (a thread pool), under
`timeout_ms`. Nothing else of paho is touched until it has returned; from then on only the loop
thread uses the paho object. If connect() is abandoned (timeout, cancellation, close()) while
that thread still runs, the thread closes the socket when paho returns.

Decisions that matter to the uplink:
- paho's automatic reconnect is never used (no `loop_forever`, `reconnect_on_failure=False`),
  and every `connect()` builds a fresh paho client. What paho had queued or in flight on a
  connection is thrown away with it and never reappears on a later connection: the uplink
  re-sends from its durable buffer. After the connection ends, `publish` raises OSError.
- `max_inflight_messages_set(0)` (no limit; set before `connect()`, as paho requires): the
  uplink's window is the only flow control, so paho never holds a PUBLISH back in a queue of its
  own, as the portable client never does. `max_queued_messages_set(0)` likewise.
- publish() returns once paho has the packet; it is written when the socket is writable, in
  order. It does not wait for the write as the portable client does: the window bounds what waits.
- DUP: paho sets the DUP flag only when it re-sends on a reconnect of the same paho client,
  which never happens here, and its `publish()` has no DUP argument. The uplink re-sends
  unacknowledged batches with dup=True, and docs/uplink.md promises the flag on the wire with
  either transport, so publish() sets the bit in the packet paho has just queued (see
  _mark_dup: paho internals, guarded; without them a message would only lack the advisory flag).
- Errors as in agent/mqtt.py: MQTTError(code) (the CONNACK return code 1-5, 0x80 for a refused
  SUBSCRIBE, ERR_PROTOCOL, ERR_TOO_LARGE, ERR_NO_ID), OSError for the network, and timeouts as
  OSError(ETIMEDOUT), here also an asyncio.TimeoutError. on_close(exc) once per connection that
  connect() opened, with None after disconnect() or close().
- TLS: `tls_set_context()` then `tls_insecure_set(False)`. The latter sets `check_hostname =
  True` on the context passed in (Python then also forces CERT_REQUIRED): the certificate and the
  host name are always verified. paho opens the TCP connection to `host` and would send SNI for,
  and check the certificate against, `host`; the context is handed to paho wrapped, so that both
  use `server_hostname` when it is given (connect to 10.0.0.5, verify `broker.example`), and so
  that a socket whose handshake failed is closed (paho leaves it to the garbage collector).
- close() ends the connection with an RST (see _close_socket): no DISCONNECT, so the broker
  publishes the will at once.
- `max_packet` bounds what comes in, as in the portable client. paho has no limit of its own
  and reads each packet whole into memory, so paho reads through a _Gate: a PUBLISH larger than
  max_packet never reaches paho; it is read past in pieces, reported through on_too_large and
  acknowledged, and the connection stays up. Any other packet larger than max_packet ends the
  connection with MQTTError(ERR_TOO_LARGE). paho runs with manual_ack so that this client
  acknowledges every QoS 1 message itself, the ones paho never saw included.
- Credentials are handed to paho and never logged, printed or put in an exception or repr.
"""

import asyncio
import errno
import logging
import random
import socket
import struct
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

# The same exception class, codes and option checks as the portable client.
from agent.mqtt import ERR_NO_ID, ERR_PROTOCOL, ERR_TOO_LARGE, MQTTError, check_options

__all__ = ["Client", "MQTTError"]

log = logging.getLogger(__name__)

# A timeout is an OSError(ETIMEDOUT), as agent/mqtt.py raises it (one `except (OSError,
# MQTTError)` covers every failure), and an asyncio.TimeoutError too. From Python 3.11 both are
# the built-in TimeoutError; on 3.10 this class is both.
if issubclass(asyncio.TimeoutError, OSError):
    Timeout = TimeoutError
else:
    class Timeout(asyncio.TimeoutError, TimeoutError):
        pass


def _timeout(what):
    return Timeout(errno.ETIMEDOUT, what)


# paho 2.x hands MQTT 3.1.1 CONNACK return codes to VERSION2 callbacks as MQTT 5 reason codes;
# MQTTError.code is the 3.1.1 return code, as on the wire (and as agent/mqtt.py reports it).
_CONNACK_RC = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}

_IDLE, _CONNECTING, _CONNECTED, _DISCONNECTING, _CLOSED = range(5)

_HEAD = 64    # bytes of an oversized message's payload kept for on_too_large (its id), as in
              # agent/mqtt.py


class _Paho(paho.Client):
    """paho's client, reading its socket through a _Gate once one is set."""

    gate = None

    def _sock_recv(self, bufsize):
        if self.gate is None:
            return super()._sock_recv(bufsize)
        return self.gate.recv(bufsize)


class _Gate:
    """Between paho's reader and its socket: a packet of up to max_packet bytes goes through
    untouched; a larger PUBLISH never reaches paho, which would hold it whole in memory (paho
    appends every piece of a packet to one buffer before it looks at it). Its first max_packet
    bytes are read (topic, packet id, the payload's start), the rest is read past in pieces,
    and client._too_large() reports and acknowledges it. Any other larger packet ends the
    connection.

    This works because paho reads exactly one packet's bytes at a time: the type byte, the
    length bytes one by one, then the body. So when paho asks for bytes at a packet boundary,
    the gate reads the fixed header itself, and either hands it over (and then the body, up to
    its length) or keeps the packet from paho altogether. Only paho's private _sock_recv is
    replaced (paho 2.2): should a paho rename it, large messages would reach paho whole again,
    and tests/test_paho_client.py, which measures the memory taken, would fail."""

    def __init__(self, client, mqttc):
        self.client = client
        self.mqttc = mqttc
        self.max_packet = client.max_packet
        self.hdr = bytearray()   # the fixed header being read
        self.out = b""           # a header passed through, that paho has still to read
        self.left = 0            # body bytes of that packet that paho has still to read
        self.big = None          # the oversized PUBLISH being read: [first, n, the bytes held,
                                 # bytes to skip, (topic, packet id, payload start) once known]

    def _raw(self, n):
        return paho.Client._sock_recv(self.mqttc, n)

    def recv(self, bufsize):
        if self.out:
            data, self.out = self.out[:bufsize], self.out[bufsize:]
            return data
        if self.left:
            data = self._raw(min(bufsize, self.left))
            self.left -= len(data)
            return data
        hdr = self.hdr
        while self.big is None:
            data = self._raw(1)
            if not data:
                return data    # the broker closed the connection: paho says so
            hdr.append(data[0])
            if len(hdr) == 1 or (hdr[-1] & 0x80 and len(hdr) < 5):
                continue
            n = 0
            for i in range(len(hdr) - 1, 0, -1):
                n = (n << 7) | (hdr[i] & 0x7F)
            first = hdr[0]
            if hdr[-1] & 0x80:    # a fifth length byte follows: no MQTT packet is that long
                del hdr[:]
                self.client._fail(self.mqttc, MQTTError(
                    ERR_PROTOCOL, "protocol error: remaining length longer than 4 bytes"))
                raise ConnectionError("bad remaining length")
            if n <= self.max_packet:
                self.out, self.left = bytes(hdr), n
                del hdr[:]
                return self.recv(bufsize)
            del hdr[:]
            if first & 0xF0 != 0x30:
                self.client._fail(self.mqttc, MQTTError(
                    ERR_TOO_LARGE, "incoming packet of %d bytes, max_packet %d"
                    % (n, self.max_packet)))
                raise ConnectionError("packet too large")
            self.big = [first, n, bytearray(), n - self.max_packet, None]
        return self._read_big()

    def _read_big(self):
        big = self.big
        first, n, held = big[0], big[1], big[2]
        while big[4] is None:
            data = self._raw(self.max_packet - len(held))
            if not data:
                return data
            held += data
            if len(held) == self.max_packet:
                try:
                    big[4] = _publish_head(first, n, held)
                except MQTTError as exc:
                    self.client._fail(self.mqttc, exc)
                    raise ConnectionError("bad packet") from None
        while big[3]:
            data = self._raw(min(big[3], max(self.max_packet, 4096)))
            if not data:
                return data
            big[3] -= len(data)
        self.big = None
        topic, pid, pos = big[4]
        self.client._too_large(self.mqttc, topic, pid, n - pos, len(held) - pos,
                               bytes(held[pos:pos + _HEAD]), bool(first & 1))
        raise BlockingIOError    # one such message at a time: paho's loop gets its turn


def _publish_head(first, n, held):
    """(topic, packet id or 0, where the payload starts) of a PUBLISH of n bytes whose first
    bytes are `held`, checked as agent/mqtt.py checks them."""
    qos = (first >> 1) & 3
    if qos > 1 or (qos == 0 and first & 0x08):
        raise MQTTError(ERR_PROTOCOL, "protocol error: PUBLISH flags 0x%x" % (first & 0xF))
    tlen = (held[0] << 8) | held[1]
    pos = 2 + tlen + (2 if qos else 0)
    if tlen == 0 or pos > n:
        raise MQTTError(ERR_PROTOCOL, "protocol error: PUBLISH topic length %d" % tlen)
    if pos > len(held):
        raise MQTTError(ERR_TOO_LARGE, "incoming topic of %d bytes, max_packet %d"
                        % (tlen, len(held)))
    raw = bytes(held[2:2 + tlen])
    try:
        topic = raw.decode()
    except UnicodeError:
        raise MQTTError(ERR_PROTOCOL, "protocol error: topic name not UTF-8") from None
    if "\x00" in topic or "+" in topic or "#" in topic:
        raise MQTTError(ERR_PROTOCOL, "protocol error: invalid topic name")
    pid = (held[pos - 2] << 8) | held[pos - 1] if qos else 0
    if qos and not pid:
        raise MQTTError(ERR_PROTOCOL, "protocol error: packet id 0")
    return topic, pid, pos


class _TLSContext:
    """The caller's ssl.SSLContext as paho sees it, one per connection: wrap_socket() sends SNI
    for, and checks the certificate against, `name` (server_hostname) when given, instead of the
    host paho connects to; and it keeps the socket it made, which paho drops without closing
    when the TLS handshake or the host name check fails. Everything else is the wrapped
    context."""

    def __init__(self, context, name):
        self._context = context
        self._name = name
        self.sock = None

    def wrap_socket(self, sock, server_hostname=None, **kwargs):
        self.sock = self._context.wrap_socket(sock, server_hostname=self._name or server_hostname,
                                              **kwargs)
        return self.sock

    @property
    def check_hostname(self):
        return self._context.check_hostname

    @check_hostname.setter
    def check_hostname(self, value):
        self._context.check_hostname = value

    def __getattr__(self, name):
        return getattr(self._context, name)


class _Handoff:
    """Hand the connected socket from the executor thread to the loop, or close it there when
    connect() was abandoned (timeout, cancellation, close()) before the thread finished."""

    def __init__(self, mqttc, tls):
        self.lock = threading.Lock()
        self.mqttc = mqttc
        self.tls = tls
        self.done = False
        self.abandoned = False

    def run(self, host, port, keepalive):    # in the executor thread
        try:
            self.mqttc.connect(host, port, keepalive)
            # With a window of PUBLISHes in flight, Nagle's algorithm would hold each small one
            # for the ACK of the last, which the broker may delay by 40 ms.
            _no_delay(self.mqttc.socket())
        except BaseException:
            if self.tls is not None and self.tls.sock is not None:
                self.tls.sock.close()    # a failed handshake: paho has not kept the socket
            raise
        with self.lock:
            self.done = True
            if self.abandoned:
                _close_socket(self.mqttc)

    def abandon(self, abort=True):            # in the loop thread
        with self.lock:
            if self.abandoned:
                return
            self.abandoned = True
            if self.done:
                _close_socket(self.mqttc, abort)


def _close_socket(mqttc, abort=True):
    """Close paho's socket underneath it (no DISCONNECT), after detaching paho's callbacks, so
    that it never reports this (nor, at garbage collection, a second close) to anyone.

    abort: with SO_LINGER 0 the close sends an RST. The broker sees the connection fail and
    publishes the will at once, as after a FIN, and no TIME_WAIT is left on this side: paho binds
    every socket to an ephemeral port before connecting, and a port in TIME_WAIT cannot be bound
    again for a minute, so a simulator closing thousands of connections would run out of ports
    (measured here: 3 x 10,000 closes in a row did). Bytes still unsent are dropped, which is
    what closing without DISCONNECT means anyway."""
    for name in ("on_connect", "on_disconnect", "on_publish", "on_message", "on_subscribe",
                 "on_socket_close", "on_socket_register_write", "on_socket_unregister_write"):
        setattr(mqttc, name, None)
    sock = mqttc.socket()
    if sock is None:
        return
    if abort:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


class Client:
    on_puback = None    # fn(pid), in the event loop thread, when a PUBACK arrives
    on_message = None   # fn(topic str, payload bytes, retain bool), in the event loop thread
    on_too_large = None  # fn(topic, size, limit, head, retain): see agent/mqtt.py
    on_close = None     # fn(exc or None), once, when a connection that connect() opened ends

    def __init__(self, client_id, host, port, keepalive_s=60, username=None, password=None,
                 ssl=None, server_hostname=None, will=None, timeout_ms=10000, max_packet=2048):
        check_options(keepalive_s, will, max_packet)
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.username = username
        self.password = password
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.will = will
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet
        self.connected = False
        self._state = _IDLE
        self._mqttc = None        # the paho client of the current connection
        self._loop = None
        self._handoff = None
        self._sock = None
        self._misc_timer = None
        self._connack = None      # future: the CONNACK, while connecting
        self._closed = None       # future: the connection's end (for disconnect())
        self._subacks = {}        # mid -> future of its SUBACK
        self._qos1 = set()        # mids of QoS 1 publishes waiting for their PUBACK

    def __repr__(self):     # no credentials
        return "<paho_client.Client %s %s:%s%s>" % (
            self.client_id, self.host, self.port, " connected" if self.connected else "")

    # --- connecting -------------------------------------------------------------------------

    def _new_paho(self):
        mqttc = _Paho(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                      clean_session=True, protocol=paho.MQTTv311,
                      reconnect_on_failure=False, manual_ack=True)
        mqttc.gate = _Gate(self, mqttc)
        mqttc.max_inflight_messages_set(0)    # no limit; must come before connect()
        mqttc.max_queued_messages_set(0)
        mqttc.connect_timeout = self.timeout_ms / 1000
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")    # [MQTT-3.1.2-22]
        if self.username is not None:
            mqttc.username_pw_set(self.username, self.password)
        if self.will is not None:
            topic, payload, qos, retain = self.will
            mqttc.will_set(topic, bytes(payload), qos, retain)
        tls = None
        if self.ssl is not None:
            tls = _TLSContext(self.ssl, self.server_hostname)
            mqttc.tls_set_context(tls)
            mqttc.tls_insecure_set(False)
        return mqttc, tls

    async def connect(self):
        """TCP (+TLS) connect, CONNECT (MQTT 3.1.1, clean session), CONNACK, all within
        timeout_ms. Raises MQTTError(code) when refused, OSError on network errors, and on a
        timeout OSError(ETIMEDOUT) that is also an asyncio.TimeoutError. A connection this
        client still had is closed first (on_close(None))."""
        if self._mqttc is not None:
            self.close()
        loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms / 1000
        mqttc, tls = self._new_paho()
        self._mqttc = mqttc
        handoff = self._handoff = _Handoff(mqttc, tls)
        self._state = _CONNECTING
        self._subacks = {}
        self._qos1 = set()
        self._connack = loop.create_future()
        self._closed = loop.create_future()
        try:
            try:
                await asyncio.wait_for(
                    loop.run_in_executor(None, handoff.run, self.host, self.port,
                                         self.keepalive_s),
                    self.timeout_ms / 1000)
            except (TimeoutError, asyncio.TimeoutError):     # also socket.timeout
                raise _timeout("no connection to %s:%s within %d ms" % (
                    self.host, self.port, self.timeout_ms)) from None
            if self._mqttc is not mqttc:      # close() was called meanwhile
                raise OSError(errno.ECONNABORTED, "closed while connecting")
            self._attach(mqttc)
            try:
                await asyncio.wait_for(asyncio.shield(self._connack),
                                       max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise _timeout("no CONNACK within %d ms" % self.timeout_ms) from None
        except BaseException:
            if self._mqttc is mqttc:
                self._end(None, report=False)
            else:
                handoff.abandon()
            raise

    def _attach(self, mqttc):
        """Hand paho's socket to the event loop (paho's connect() has returned)."""
        sock = mqttc.socket()
        if sock is None:
            raise OSError(errno.ECONNRESET, "connection lost while sending CONNECT")
        self._sock = sock
        mqttc.on_connect = self._paho_connect
        mqttc.on_disconnect = self._paho_disconnect
        mqttc.on_publish = self._paho_publish
        mqttc.on_message = self._paho_message
        mqttc.on_subscribe = self._paho_subscribe
        mqttc.on_socket_close = self._paho_socket_close
        mqttc.on_socket_register_write = self._paho_want_write
        mqttc.on_socket_unregister_write = self._paho_done_writing
        loop = self._loop
        loop.add_reader(sock, self._readable, mqttc)
        if mqttc.want_write():    # the CONNECT did not all fit into the socket at once
            loop.add_writer(sock, self._writable, mqttc)
        if self.keepalive_s:
            self._misc_timer = loop.call_later(random.uniform(0.05, 1) * self._misc_interval(),
                                               self._misc, mqttc)

    def _misc_interval(self):
        # paho pings once either direction has been quiet for a whole keepalive; checking every
        # 1/8 of it, the PINGREQ leaves by 1.125 keepalives (the broker allows 1.5).
        return max(0.05, self.keepalive_s / 8)

    # --- paho's network loop, driven by the event loop --------------------------------------

    def _readable(self, mqttc):
        if mqttc is not self._mqttc:
            return
        mqttc.loop_read()
        if self.ssl is not None:
            # bytes already decrypted inside the SSL object are invisible to the selector
            while mqttc is self._mqttc and self._sock is not None and self._sock.pending():
                mqttc.loop_read()

    def _writable(self, mqttc):
        if mqttc is self._mqttc:
            mqttc.loop_write()

    def _misc(self, mqttc):
        if mqttc is not self._mqttc:
            return
        mqttc.loop_misc()
        if mqttc is self._mqttc:
            self._misc_timer = self._loop.call_later(self._misc_interval(), self._misc, mqttc)

    def _paho_want_write(self, mqttc, userdata, sock):
        if mqttc is self._mqttc:
            self._loop.add_writer(sock, self._writable, mqttc)

    def _paho_done_writing(self, mqttc, userdata, sock):
        self._loop.remove_writer(sock)

    def _paho_socket_close(self, mqttc, userdata, sock):
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        if sock is self._sock:
            self._sock = None

    # --- paho's callbacks (in the loop thread) -----------------------------------------------

    def _paho_connect(self, mqttc, userdata, flags, reason_code, properties):
        if mqttc is not self._mqttc or self._connack.done():
            return
        if reason_code.is_failure:
            self._connack.set_exception(MQTTError(_CONNACK_RC.get(reason_code.value,
                                                                  reason_code.value)))
        elif flags.session_present:
            self._connack.set_exception(MQTTError(ERR_PROTOCOL, "protocol error: session "
                                                  "present on a clean session"))
        else:
            self._state = _CONNECTED
            self.connected = True
            self._connack.set_result(None)

    def _paho_disconnect(self, mqttc, userdata, flags, reason_code, properties):
        if mqttc is not self._mqttc:
            return
        if self._state == _DISCONNECTING:    # the DISCONNECT is written: a graceful close
            self._end(None, abort=False)
            return
        if reason_code == "Keep alive timeout":
            exc = _timeout("no PINGRESP within %d s" % self.keepalive_s)
        elif reason_code == "Protocol error":
            if self._state == _CONNECTING:
                # paho gives up by itself (reconnect_on_failure=False) on CONNACK 1 (protocol
                # version) and, with an empty client id, 2; it does not say which
                exc = MQTTError(2 if self.client_id in ("", None) else 1)
            else:
                exc = MQTTError(ERR_PROTOCOL, "protocol error")
        else:
            exc = OSError(errno.ECONNRESET, "connection lost")
        self._end(exc)

    def _paho_publish(self, mqttc, userdata, mid, reason_code, properties):
        if mid in self._qos1:     # a PUBACK (paho also reports a QoS 0 message once written)
            self._qos1.discard(mid)
            self._call(self.on_puback, mid)

    def _paho_message(self, mqttc, userdata, message):
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self._end(MQTTError(ERR_PROTOCOL, "protocol error: topic name not UTF-8"))
            return
        self._call(self.on_message, topic, bytes(message.payload), bool(message.retain))
        if message.qos == 1 and mqttc is self._mqttc:
            mqttc.ack(message.mid, 1)

    def _too_large(self, mqttc, topic, pid, size, limit, head, retain):
        # from the _Gate: a PUBLISH larger than max_packet, read past
        if mqttc is not self._mqttc:
            return
        self._call(self.on_too_large, topic, size, limit, head, retain)
        if pid and mqttc is self._mqttc:
            mqttc.ack(pid, 1)

    def _fail(self, mqttc, exc):
        if mqttc is self._mqttc:
            self._end(exc)

    def _paho_subscribe(self, mqttc, userdata, mid, reason_codes, properties):
        future = self._subacks.pop(mid, None)
        if future is None or future.done():
            return
        code = reason_codes[0]
        if code.is_failure:
            future.set_exception(MQTTError(0x80))
        else:
            future.set_result(code.value)

    def _call(self, fn, *args):
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:     # a caller's bug must not leave paho half-way through a packet
            log.exception("exception in the MQTT client's %s callback",
                          getattr(fn, "__name__", "a"))

    # --- the end of a connection ------------------------------------------------------------

    def _end(self, exc, report=True, abort=True):
        """The connection is over: paho has closed the socket, or this closes it underneath
        paho (no DISCONNECT; abort: with an RST, see _close_socket). Fails whatever waits on
        it; reports it once through on_close."""
        mqttc = self._mqttc
        if mqttc is None:
            return
        was_connected = self._state in (_CONNECTED, _DISCONNECTING)
        self._mqttc = None
        self._state = _CLOSED
        self.connected = False
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
            self._sock = None
        self._handoff.abandon(abort)  # closes the socket unless paho has (or, while paho's
        self._handoff = None          # connect() still runs in its thread, has that thread do it)
        lost = exc if exc is not None else OSError(errno.ECONNRESET, "connection closed")
        for future in [self._connack, *self._subacks.values()]:
            if not future.done():
                future.set_exception(lost)
                future.exception()    # retrieved: no "never retrieved" warning
        self._subacks = {}
        self._qos1 = set()
        if not self._closed.done():
            self._closed.set_result(exc)
        if report and was_connected:
            self._call(self.on_close, exc)

    # --- the interface ----------------------------------------------------------------------

    async def publish(self, topic, payload, qos=1, retain=False, dup=False):
        """Hand one PUBLISH to paho; returns its packet id for QoS 1 (None for QoS 0) at once,
        without waiting for the PUBACK, which on_puback(pid) reports. OSError if not connected.
        dup: set the DUP flag (see the module's doc)."""
        if qos != 0 and qos != 1:
            raise ValueError("qos must be 0 or 1")
        if dup and not qos:
            raise ValueError("dup needs qos 1")     # [MQTT-3.3.1-2]
        if self._state != _CONNECTED:
            raise OSError(errno.ENOTCONN, "not connected")
        if not isinstance(payload, bytes):
            payload = bytes(payload)
        info = self._mqttc.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:   # its packet id is still in flight
            raise MQTTError(ERR_NO_ID, "no free packet identifier")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(errno.ENOTCONN, "publish failed: %s" % paho.error_string(info.rc))
        if qos == 0:
            return None
        if dup:
            self._mark_dup(info.mid)
        self._qos1.add(info.mid)
        return info.mid

    def _mark_dup(self, mid):
        """Set DUP on the PUBLISH paho has just queued (its publish() has no DUP argument).
        Writes happen only from the loop's writer callback, so the packet is still unwritten
        at the tail of paho's out queue. This touches paho internals (`_out_packet`, the same
        from 1.x to 2.2): should they change, the message goes without DUP, which no receiver
        may rely on anyway, and tests/test_paho_client.py says so."""
        try:
            packet = self._mqttc._out_packet[-1]
            if packet["mid"] == mid and packet["pos"] == 0 and packet["command"] == 0x30:
                packet["packet"][0] |= 0x08
                self._mqttc._out_messages[mid].dup = True
        except (AttributeError, IndexError, KeyError, TypeError):
            pass

    async def subscribe(self, topic, qos=1):
        """SUBSCRIBE one topic filter and wait for its SUBACK (timeout_ms). Returns the granted
        QoS; MQTTError(0x80) when the broker refuses, OSError on a timeout or a lost connection."""
        if qos != 0 and qos != 1:
            raise ValueError("qos must be 0 or 1")
        if self._state != _CONNECTED:
            raise OSError(errno.ENOTCONN, "not connected")
        rc, mid = self._mqttc.subscribe(topic, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(errno.ENOTCONN, "subscribe failed: %s" % paho.error_string(rc))
        future = self._subacks[mid] = self._loop.create_future()
        try:
            return await asyncio.wait_for(future, self.timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise _timeout("no SUBACK within %d ms" % self.timeout_ms) from None
        finally:
            self._subacks.pop(mid, None)

    async def disconnect(self):
        """DISCONNECT, behind whatever is still unwritten, then close: the broker discards the
        will. Gives up after timeout_ms and closes (then the broker does publish the will)."""
        if self._state != _CONNECTED:
            self.close()
            return
        self._state = _DISCONNECTING
        closed = self._closed
        self._mqttc.disconnect()
        try:
            await asyncio.wait_for(asyncio.shield(closed), self.timeout_ms / 1000)
        except asyncio.TimeoutError:
            self.close()

    def close(self):
        """Close the connection without DISCONNECT: the broker publishes the will."""
        self._end(None)


def _no_delay(sock):
    """TCP_NODELAY on paho's socket (under a TLS wrapper, on the TCP socket inside); a socket
    already gone (a refused handshake) is left alone: the connection is failing anyway."""
    raw = getattr(sock, "_socket", sock)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass
