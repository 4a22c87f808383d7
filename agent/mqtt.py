# A small asyncio MQTT 3.1.1 client for the uplink: CONNECT, PUBLISH QoS 0/1, PUBACK, SUBSCRIBE,
# PINGREQ, DISCONNECT, over TCP or TLS. Portable: runs unchanged on CPython 3.10+ asyncio and on
# MicroPython asyncio (open_connection, create_task, sleep, wait_for, Event; no Queue, no Lock).
#
# What it does not do, on purpose: it never re-sends, never reconnects and never waits for a
# PUBACK. publish() returns once the PUBLISH is written; on_puback(pid) fires from the reader task
# when the broker acknowledges it; on_close(exc) fires once when a connection that connect()
# opened ends. Reconnecting, backoff and re-sending with DUP set are the uplink's job.
#
# Errors: MQTTError(code) for what the broker said or did wrong (a refused CONNECT: its CONNACK
# return code 1..5; a refused SUBSCRIBE: 0x80; a malformed or unexpected packet: ERR_PROTOCOL;
# a packet other than a PUBLISH larger than max_packet: ERR_TOO_LARGE); OSError for everything
# on the network, timeouts included: OSError(errno.ETIMEDOUT) on both interpreters (asyncio.TimeoutError is an
# OSError on CPython 3.11+ but not on 3.10 nor on MicroPython, so it never leaves this module).
# `except (OSError, MQTTError)` covers every failure of the connection.
#
# Small heaps: one receive buffer of max_packet bytes holds each incoming packet whole. A larger
# PUBLISH is never held whole: its first max_packet bytes give its topic, packet id and the start
# of its payload, the rest is read past in max_packet pieces, on_too_large() reports it, and it is
# acknowledged like any other, so the broker does not send it again and the connection stays up
# (a command too large must not knock a device off, nor loop it through reconnects when
# retained). Any other packet larger than max_packet closes the connection with ERR_TOO_LARGE.
# One send buffer, max_packet bytes at first and
# grown to the largest PUBLISH sent, takes a message's header and payload, so that it leaves in
# one write: one TCP segment, one TLS record, and no stall between a header and its payload
# (Nagle's algorithm holds the second write until the broker ACKs the first, which it delays:
# 44 ms a message measured under MicroPython on loopback). On MicroPython the socket is read and
# written without blocking first (stream readinto(buf, n) / write(buf, n): no slices, no
# copies), and a task waits on the asyncio stream only when the socket has nothing to give or
# take; a PUBLISH and its PUBACK allocate only the coroutine frames of publish() and of the wait.
import asyncio
import errno
import sys

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from hal.ticks import ticks_diff, ticks_ms

_MPY = sys.implementation.name == "micropython"
_SEND_POLL_MS = const(20)  # a send the socket could not take whole is tried again this often

ERR_PROTOCOL = const(-1)   # malformed or unexpected packet from the broker
ERR_TOO_LARGE = const(-2)  # incoming packet (not a PUBLISH) larger than max_packet
ERR_NO_ID = const(-3)      # all 65535 packet ids are waiting for their PUBACK

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)   # reserved flags 0010 [MQTT-3.8.1-1]
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_PINGREQ_PACKET = b"\xc0\x00"
_DISCONNECT_PACKET = b"\xe0\x00"
_MAX_LENGTH = const(268435455)  # the largest remaining length in four bytes (2.2.3)
_HEAD = const(64)  # bytes of an oversized message's payload kept for on_too_large (its id)

_REFUSED = ("unacceptable protocol version", "identifier rejected", "server unavailable",
            "bad user name or password", "not authorized")


_reserved = []  # (rx, tx) set aside for the next client that connects
_passed_on = 0  # reserve()'s max_packet: a client done with buffers of that size leaves them


def reserve(max_packet=2048):
    """Sets aside the receive and send buffers of the next client that connects (with this
    max_packet), allocated now; from then on a client whose connection ends, or never got made,
    leaves its buffers for the next one. A board calls it before its tasks start: later, a small
    heap may still have the bytes free, but no longer in one piece, and its uplink makes a new
    client for every connection attempt (agent/uplink.py), for as long as the broker is away."""
    global _passed_on
    _passed_on = max_packet
    if not _reserved:
        _reserved.append((bytearray(max_packet), bytearray(max_packet)))


class MQTTError(Exception):
    """The broker refused something or broke the protocol. `code`: a CONNACK return code (1-5),
    0x80 (SUBACK failure), ERR_PROTOCOL, ERR_TOO_LARGE or ERR_NO_ID."""

    def __init__(self, code, msg=None):
        if msg is None:
            if 1 <= code <= 5:
                msg = "connection refused: " + _REFUSED[code - 1]
            elif code == 0x80:
                msg = "subscription refused"
            else:
                msg = "error %d" % code
        super().__init__(msg)  # said as its words, not as a (code, text) tuple
        self.code = code


def _sleep_ms(ms):
    if _MPY:
        return asyncio.sleep_ms(ms)  # no allocation: a singleton generator
    return asyncio.sleep(ms / 1000)


def _wait_for_ms(aw, ms):
    if _MPY:
        return asyncio.wait_for_ms(aw, ms)
    return asyncio.wait_for(aw, ms / 1000)


class Unresolved(OSError):
    """The broker's host name did not resolve (no DNS server, no such name)."""
    unresolved = True

    def __init__(self, host, why):
        super().__init__("cannot resolve %s (%s)" % (host, why))


def _timeout(what):
    return OSError(errno.ETIMEDOUT, what)


def _bad(what):
    return MQTTError(ERR_PROTOCOL, "protocol error: " + what)


def _put_length(buf, pos, n):
    # Remaining length, 7 bits a byte, least significant first, bit 7 = more follows (2.2.3).
    while n > 0x7F:
        buf[pos] = (n & 0x7F) | 0x80
        n >>= 7
        pos += 1
    buf[pos] = n
    return pos + 1


def _put_str(buf, pos, b):
    # A UTF-8 string or binary field: two-byte big-endian length, then the bytes (1.5.3).
    n = len(b)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = b
    return pos + 2 + n


def _utf8(s, what):
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError(what + " longer than 65535 bytes")
    if b"\x00" in b:
        raise ValueError(what + " contains U+0000")  # [MQTT-1.5.3-2]
    return b


def _topic_name(topic):
    b = _utf8(topic, "topic")
    if not b:
        raise ValueError("empty topic")  # [MQTT-4.7.3-1]
    if b"+" in b or b"#" in b:
        raise ValueError("wildcard in a topic name")  # [MQTT-3.3.2-2]
    return b


def check_options(keepalive_s, will, max_packet):
    """ValueError for a client option MQTT 3.1.1 cannot carry (this client and paho_client)."""
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive_s out of 0..65535")
    if will is not None and not 0 <= will[2] <= 2:
        raise ValueError("will qos out of 0..2")
    if max_packet < 16:
        raise ValueError("max_packet below 16")


class Client:
    on_puback = None    # fn(pid), called in the event loop when a PUBACK arrives
    on_message = None   # fn(topic str, payload bytes, retain bool)
    # fn(topic, size, limit, head, retain) for a PUBLISH larger than max_packet, read past and
    # acknowledged: size, the length of its payload; limit, the largest payload it could have
    # had; head, the payload's first bytes (at most 64); retain, as in on_message.
    on_too_large = None
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
        self.connected = False
        self.max_packet = max_packet
        self._rx = None            # the buffers, taken by the first connect()
        self._tx = None
        self._hdr = bytearray(1)   # one byte of an incoming fixed header
        self._zero = bytearray(0)  # MicroPython: a read of nothing, to wait until readable
        self._ack = bytearray(4)   # the reader's PUBACK
        self._reader = None
        self._writer = None
        self._sock = None          # MicroPython: the socket (or TLS socket) under the stream
        self._got = 0              # bytes of a partial read so far
        self._tasks = ()
        self._busy = False         # a task is writing (and maybe draining): others wait
        self._pending = False      # bytes written that the socket did not take yet
        self._idle = None          # set when _busy goes False
        self._inflight = set()     # packet ids sent and not yet acknowledged
        self._pid = 0
        self._topic_str = None     # the last topic published to, and its bytes
        self._topic_b = None
        self._sub_done = None      # set by the SUBACK (or the end of the connection)
        self._sub_free = None      # set when no SUBSCRIBE is waiting for its SUBACK
        self._sub_pid = 0
        self._sub_rc = -1
        self._last_tx = 0
        self._last_rx = 0
        self._pinging = False
        self._ping_at = 0
        self._closing = False      # disconnect() under way

    # ---- connection ----

    async def connect(self):
        """TCP (+TLS) connect, CONNECT (MQTT 3.1.1, clean session), CONNACK within timeout_ms.
        Raises MQTTError(code) when refused, OSError on network errors and on timeout
        (OSError(errno.ETIMEDOUT)). Starts the reader and keepalive tasks."""
        if self._writer is not None:
            self._close(None)
        packet = self._connect_packet()  # a ValueError for bad arguments comes from here only
        if self._rx is None:
            # Here, not in __init__: a client whose connect() is never called (a board's while
            # WiFi is down) leaves no garbage of 2 x max_packet behind.
            n = self.max_packet
            if _reserved and len(_reserved[0][0]) == n:
                self._rx, self._tx = _reserved.pop()
            else:
                self._rx = bytearray(n)
                self._tx = bytearray(n)
        self._inflight = set()
        self._busy = False
        self._pending = False
        self._idle = asyncio.Event()
        self._sub_done = asyncio.Event()
        self._sub_free = asyncio.Event()
        self._sub_pid = 0
        self._pinging = False
        self._closing = False
        self._got = 0
        try:
            await self._resolve()
        except BaseException:
            self._drop()
            raise
        try:
            await _wait_for_ms(self._handshake(packet), self.timeout_ms)
        except asyncio.TimeoutError:
            self._drop()
            raise _timeout("no CONNACK within %d ms" % self.timeout_ms)
        except ValueError as exc:
            # MicroPython's ssl reports a certificate that does not verify as ValueError.
            self._drop()
            raise OSError(errno.ECONNABORTED, "TLS: " + str(exc).strip())
        except BaseException:
            self._drop()
            raise
        self.connected = True
        self._last_tx = self._last_rx = ticks_ms()
        reader = asyncio.create_task(self._read_loop())
        if self.keepalive_s:
            self._tasks = (reader, asyncio.create_task(self._keepalive()))
        else:
            self._tasks = (reader,)

    async def _resolve(self):
        # The name looked up apart from the connection, and before the CONNACK's time starts,
        # so that its failure says what failed (a slow one read "no CONNACK"), and the uplink
        # waits longer before the next one: on a board the lookup blocks the event loop,
        # sampling included, until lwIP gives up (about 14 s with no DNS server). The
        # connection's own lookup then finds the name in lwIP's cache.
        try:
            if _MPY:
                import socket
                socket.getaddrinfo(self.host, self.port)
            else:  # off the event loop, as open_connection looks names up on CPython
                await _wait_for_ms(asyncio.get_running_loop().getaddrinfo(
                    self.host, self.port), self.timeout_ms)
        except asyncio.TimeoutError:
            raise Unresolved(self.host, "no answer within %d ms" % self.timeout_ms)
        except OSError as exc:
            raise Unresolved(self.host, "DNS error %s" % (exc.args[0] if exc.args else exc))

    async def _handshake(self, packet):
        if self.ssl is None:
            r, w = await asyncio.open_connection(self.host, self.port)
        else:
            r, w = await asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                                 server_hostname=self.server_hostname)
        self._reader = r
        self._writer = w
        if _MPY:
            self._sock = w.s
        _no_delay(w)
        self._send(packet, len(packet))
        if self._pending:
            await self._flush()
        first, n = await self._read_head()
        rx = self._rx
        if first != _CONNACK or n != 2:
            raise _bad("expected CONNACK, got 0x%02x length %d" % (first, n))
        await self._read_body(n)
        if rx[0] & 0xFE:
            raise _bad("reserved CONNACK flags set")  # 3.2.2.1
        if rx[1]:
            raise MQTTError(rx[1])
        if rx[0]:
            raise _bad("session present on a clean session")  # [MQTT-3.2.2-1]

    def _connect_packet(self):
        # 3.1: protocol name "MQTT", level 4, connect flags, keep alive; then the payload fields
        # in the order client id, will topic, will message, user name, password.
        flags = 0x02  # clean session
        fields = [_utf8(self.client_id, "client_id")]
        if self.will is not None:
            topic, msg, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            fields.append(_topic_name(topic))
            fields.append(bytes(msg))
        if self.username is not None:
            flags |= 0x80
            fields.append(_utf8(self.username, "username"))
        if self.password is not None:
            if self.username is None:
                raise ValueError("a password needs a username")  # [MQTT-3.1.2-22]
            flags |= 0x40
            fields.append(self.password.encode() if isinstance(self.password, str)
                          else bytes(self.password))
        n = 10
        for f in fields:
            if len(f) > 0xFFFF:
                raise ValueError("CONNECT field longer than 65535 bytes")
            n += 2 + len(f)
        buf = bytearray(5 + n)
        buf[0] = _CONNECT
        pos = _put_length(buf, 1, n)
        pos = _put_str(buf, pos, b"MQTT")
        buf[pos] = 4
        buf[pos + 1] = flags
        buf[pos + 2] = self.keepalive_s >> 8
        buf[pos + 3] = self.keepalive_s & 0xFF
        pos += 4
        for f in fields:
            pos = _put_str(buf, pos, f)
        return memoryview(buf)[:pos]

    async def disconnect(self):
        """DISCONNECT, then close: the broker discards the will."""
        if self.connected:
            self._closing = True  # the broker's EOF after our DISCONNECT is no error
            try:
                await self._write(_DISCONNECT_PACKET, 2)
            except OSError:
                pass
        self._close(None)

    def close(self):
        """Close the connection without DISCONNECT: the broker publishes the will."""
        self._close(None)

    def _drop(self):
        # Close the socket of a connection that never got to `connected`, or is ending.
        w = self._writer
        self._writer = self._reader = self._sock = None
        if _passed_on and self._rx is not None and len(self._rx) == _passed_on and not _reserved:
            # Nothing reads into them or sends from them any more: the reader task is cancelled
            # or ending, and publish() checks `connected` first.
            _reserved.append((self._rx, self._tx))
            self._rx = self._tx = None
        if w is not None:
            try:
                w.close()
                if _MPY:
                    w.s.close()  # MicroPython's Stream.close() does nothing; the socket must go
            except Exception:
                pass

    def _close(self, exc):
        if self._writer is None:
            return
        was = self.connected
        self.connected = False
        if self._closing:
            exc = None
        try:
            current = asyncio.current_task()
        except RuntimeError:  # called outside the event loop
            current = None
        for t in self._tasks:
            if t is not current:  # a task cannot cancel itself on MicroPython
                t.cancel()
        self._tasks = ()
        self._drop()
        self._sub_done.set()  # a subscribe() waiting for its SUBACK sees the end
        self._sub_free.set()
        self._release()       # so does a task waiting to write
        if was and self.on_close is not None:
            self.on_close(exc)

    # ---- sending ----
    # One task writes at a time (_busy): MicroPython's Stream.drain() loses data written by another
    # task while it runs, and the send buffer is shared. The writer fills the buffer, hands it to
    # the socket without blocking and only waits (drains) if the socket did not take it all.

    async def _acquire(self):
        while self._busy:
            self._idle.clear()
            await self._idle.wait()
            if not self.connected:
                raise OSError(errno.ENOTCONN, "not connected")
        self._busy = True

    def _release(self):
        self._busy = False
        if self._idle is not None:
            self._idle.set()

    def _send(self, buf, n):
        # Hand buf[0:n] over; self._pending: something is left for _flush() to drain.
        w = self._writer
        self._last_tx = ticks_ms()
        if not _MPY:
            # CPython's transports may keep a reference to what they could not send at once,
            # and the buffers here are reused: hand over a copy.
            w.write(bytes(memoryview(buf)[:n]))
            self._pending = True
            return
        if not w.out_buf:
            k = self._sock.write(buf, n)
            if k == n:
                return
            buf = memoryview(buf)[k or 0:n]
        else:
            buf = memoryview(buf)[:n]
        w.out_buf += buf  # the stream's own pending bytes (a copy), drained by _flush()
        self._pending = True

    async def _flush(self):
        # Wait until the socket took everything, giving up after timeout_ms without progress: a
        # broker that stopped reading must not hold the writer (and the keepalive waiting
        # behind it) forever, and a slow link (a 8 KiB batch at a few hundred bytes a second)
        # must not be cut in the middle of a message that is going through, then sent again
        # whole, for good.
        self._pending = False
        w = self._writer
        try:
            if _MPY:
                await self._drain(w)
            else:
                # drain() waits, once past the high-water mark, down to the low one: until it
                # returns, each timeout_ms must have seen some of the buffer go. Below it the
                # transport is not paused, and drain() returns at once (no timer a publish).
                t = w.transport
                if t.get_write_buffer_size() <= t.get_write_buffer_limits()[1]:
                    await w.drain()  # only reports a lost connection
                else:
                    while True:
                        left = t.get_write_buffer_size()
                        try:
                            await asyncio.wait_for(w.drain(), self.timeout_ms / 1000)
                            break
                        except asyncio.TimeoutError:
                            if t.get_write_buffer_size() >= left:
                                raise
                            self._last_tx = ticks_ms()
        except asyncio.TimeoutError:
            exc = _timeout("send stalled for %d ms" % self.timeout_ms)
            self._close(exc)
            raise exc
        except OSError as exc:
            self._close(exc)
            raise

    async def _drain(self, w):
        # MicroPython: the stream's drain() loses what it wrote if cancelled (it keeps its
        # offset to itself), so it cannot be timed out and resumed; this one keeps its place.
        # A socket closed under it raises here, where a drain waiting on the poller may never
        # wake. Each byte taken counts as sent for the keepalive: a slow batch is traffic.
        mv = memoryview(w.out_buf)
        off = 0
        s = self._sock
        try:
            while off < len(mv):
                if self._sock is not s or s is None:    # closed (or made again) meanwhile
                    raise OSError(errno.ENOTCONN, "not connected")
                k = s.write(mv, off, len(mv) - off)    # no slice: no allocation a poll
                if k:
                    off += k
                    self._last_tx = ticks_ms()
                elif ticks_diff(ticks_ms(), self._last_tx) > self.timeout_ms:
                    raise asyncio.TimeoutError
                else:
                    await asyncio.sleep_ms(_SEND_POLL_MS)
        finally:
            # whole or given up: a cancel, a stall, an error each end the connection (its
            # close or the task's), and half a packet must not lead the next one
            w.out_buf = b""

    async def _write(self, buf, n):
        # One packet, buf[0:n].
        if self._busy:
            await self._acquire()
        else:
            self._busy = True
        try:
            if not self.connected:
                raise OSError(errno.ENOTCONN, "not connected")
            try:
                self._send(buf, n)
            except OSError as exc:
                self._close(exc)
                raise
            if self._pending:
                await self._flush()
        finally:
            self._release()
        await _sleep_ms(0)  # let the reader run: a loop of publishes must not starve it

    def _new_pid(self):
        inflight = self._inflight
        if len(inflight) >= 0xFFFF:
            raise MQTTError(ERR_NO_ID, "no free packet identifier")
        pid = self._pid
        while True:
            pid = pid + 1 if pid < 0xFFFF else 1  # non-zero [MQTT-2.3.1-1]
            if pid not in inflight:
                break
        self._pid = pid
        return pid

    async def publish(self, topic, payload, qos=1, retain=False, dup=False):
        """Write one PUBLISH. Returns its packet id for QoS 1 (None for QoS 0) once written; the
        PUBACK comes later through on_puback. OSError if not connected or the write fails."""
        # The work is in _put_publish (a plain function: its frame is not on the heap); this
        # coroutine's frame is the only allocation of a publish that the socket takes at once.
        if self._busy:
            await self._acquire()
        else:
            self._busy = True
        try:
            pid = self._put_publish(topic, payload, qos, retain, dup)
            if self._pending:
                await self._flush()
        finally:
            self._release()
        await _sleep_ms(0)  # let the reader run: a loop of publishes must not starve it
        return pid

    def _put_publish(self, topic, payload, qos, retain, dup):
        # 3.3: fixed header (DUP, QoS, RETAIN flags), topic name, packet id if QoS 1, payload,
        # all in the send buffer and written at once.
        if qos != 0 and qos != 1:
            raise ValueError("qos must be 0 or 1")
        if dup and not qos:
            raise ValueError("dup needs qos 1")  # [MQTT-3.3.1-2]
        if topic != self._topic_str:
            self._topic_b = _topic_name(topic)
            self._topic_str = topic
        tb = self._topic_b
        plen = len(payload)
        n = 2 + len(tb) + plen + (2 if qos else 0)
        if n > _MAX_LENGTH:
            raise ValueError("message too large")
        if not self.connected:
            raise OSError(errno.ENOTCONN, "not connected")
        total = n + (2 if n < 0x80 else 3 if n < 0x4000 else 4 if n < 0x200000 else 5)
        tx = self._tx
        if total > len(tx):
            # Grown once to the largest message: a header and its payload in two writes meet
            # Nagle's algorithm and the broker's delayed ACK (40 ms a message, measured).
            tx = self._tx = bytearray(total)
        tx[0] = _PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
        pos = _put_str(tx, _put_length(tx, 1, n), tb)
        pid = None
        if qos:
            pid = self._new_pid()
            tx[pos] = pid >> 8
            tx[pos + 1] = pid & 0xFF
            pos += 2
            self._inflight.add(pid)
        tx[pos:total] = payload
        try:
            self._send(tx, total)
        except OSError as exc:
            self._close(exc)
            raise
        return pid

    async def subscribe(self, topic, qos=1):
        """SUBSCRIBE one topic filter and wait for its SUBACK (timeout_ms). Returns the granted
        QoS; MQTTError(0x80) when the broker refuses, OSError on timeout or a lost connection."""
        if qos != 0 and qos != 1:
            raise ValueError("qos must be 0 or 1")
        tb = _utf8(topic, "topic filter")
        if not tb:
            raise ValueError("empty topic filter")  # [MQTT-4.7.3-1]
        if not self.connected:
            raise OSError(errno.ENOTCONN, "not connected")
        while self._sub_pid:  # one SUBSCRIBE at a time
            self._sub_free.clear()
            await self._sub_free.wait()
            if not self.connected:
                raise OSError(errno.ENOTCONN, "not connected")
        n = 2 + 2 + len(tb) + 1
        buf = bytearray(n + 5)
        buf[0] = _SUBSCRIBE
        pos = _put_length(buf, 1, n)
        pid = self._new_pid()
        buf[pos] = pid >> 8
        buf[pos + 1] = pid & 0xFF
        pos = _put_str(buf, pos + 2, tb)
        buf[pos] = qos
        self._sub_pid = pid
        self._sub_rc = -1
        self._sub_done.clear()
        self._inflight.add(pid)
        try:
            await self._write(buf, pos + 1)
            try:
                await _wait_for_ms(self._sub_done.wait(), self.timeout_ms)
            except asyncio.TimeoutError:
                raise _timeout("no SUBACK within %d ms" % self.timeout_ms)
        finally:
            self._sub_pid = 0
            self._inflight.discard(pid)
            self._sub_free.set()
        rc = self._sub_rc
        if rc < 0:
            raise OSError(errno.ECONNRESET, "connection lost before SUBACK")
        if rc == 0x80:
            raise MQTTError(0x80)
        return rc

    # ---- receiving ----

    def _fill(self, buf, n):
        # MicroPython: read without blocking until buf[0:n] is full. True when it is; False when
        # the socket has nothing more now (the bytes so far are kept in self._got).
        if not _MPY:
            return False
        s = self._sock
        got = self._got
        while got < n:
            if got:
                k = s.readinto(memoryview(buf)[got:n])
            else:
                k = s.readinto(buf, n)
            if k is None:  # nothing to read now (or half a TLS record)
                self._got = got
                return False
            if not k:
                raise OSError(errno.ECONNRESET, "connection closed by the broker")
            got += k
        self._got = 0
        return True

    async def _more(self, buf, n):
        # Wait for the rest of buf[0:n].
        if _MPY:
            while not self._fill(buf, n):
                await self._reader.readinto(self._zero)  # wake when readable; _fill reads
        else:
            try:
                data = await self._reader.readexactly(n)
            except asyncio.IncompleteReadError:
                raise OSError(errno.ECONNRESET, "connection closed by the broker")
            buf[:n] = data

    async def _read_head(self):
        # Fixed header (2.2): type and flags, remaining length in 1 to 4 bytes.
        h = self._hdr
        if not self._fill(h, 1):
            await self._more(h, 1)
        first = h[0]
        n = 0
        shift = 0
        while True:
            if not self._fill(h, 1):
                await self._more(h, 1)
            n |= (h[0] & 0x7F) << shift
            if not h[0] & 0x80:
                break
            shift += 7
            if shift > 21:
                raise _bad("remaining length longer than 4 bytes")
        if n > len(self._rx):
            raise MQTTError(ERR_TOO_LARGE, "incoming packet of %d bytes, max_packet %d"
                            % (n, len(self._rx)))
        return first, n

    async def _read_body(self, n):
        if n and not self._fill(self._rx, n):
            await self._more(self._rx, n)

    async def _read_loop(self):
        # The reader task. The fixed header and body are read inline (no coroutine per packet
        # unless the socket runs dry in the middle of one).
        rx = self._rx
        h = self._hdr
        r = self._reader
        zero = self._zero
        try:
            while True:
                if _MPY:
                    while not self._fill(h, 1):  # the wait for the next packet
                        await r.readinto(zero)
                else:
                    await self._more(h, 1)
                first = h[0]
                n = 0
                shift = 0
                while True:
                    if not self._fill(h, 1):
                        await self._more(h, 1)
                    n |= (h[0] & 0x7F) << shift
                    if not h[0] & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise _bad("remaining length longer than 4 bytes")
                ack = 0  # the packet id of a PUBLISH to acknowledge
                if n > len(rx):
                    if first & 0xF0 != _PUBLISH:
                        raise MQTTError(ERR_TOO_LARGE, "incoming packet of %d bytes, max_packet %d"
                                        % (n, len(rx)))
                    ack = await self._oversized(first, n)
                else:
                    if n and not self._fill(rx, n):
                        await self._more(rx, n)
                    if first == _PUBACK:
                        if n != 2:
                            raise _bad("PUBACK length %d" % n)
                        pid = (rx[0] << 8) | rx[1]
                        if pid in self._inflight and pid != self._sub_pid:
                            self._inflight.discard(pid)
                            if self.on_puback is not None:
                                self.on_puback(pid)
                        # a PUBACK for an id not in flight is ignored: nothing waits for it
                    elif first & 0xF0 == _PUBLISH:
                        topic, ack, pos = self._publish_head(first, n, n)
                        if self.on_message is not None:
                            self.on_message(topic, bytes(rx[pos:n]), (first & 1) == 1)
                    elif first == _SUBACK:
                        if n != 3:
                            raise _bad("SUBACK length %d" % n)
                        pid = (rx[0] << 8) | rx[1]
                        if rx[2] > 2 and rx[2] != 0x80:
                            raise _bad("SUBACK return code 0x%02x" % rx[2])  # [MQTT-3.9.3-2]
                        if pid and pid == self._sub_pid:  # a late SUBACK (after a timeout): ignored
                            self._sub_rc = rx[2]
                            self._sub_done.set()
                    elif first == _PINGRESP:
                        if n:
                            raise _bad("PINGRESP length %d" % n)
                    else:
                        raise _bad("unexpected packet 0x%02x" % first)
                self._last_rx = ticks_ms()
                self._pinging = False  # any packet shows the broker alive
                if ack:
                    buf = self._ack
                    buf[0] = _PUBACK
                    buf[1] = 2
                    buf[2] = ack >> 8
                    buf[3] = ack & 0xFF
                    await self._write(buf, 4)
        except Exception as exc:  # CancelledError is a BaseException: close() cancels us
            self._close(exc)

    def _publish_head(self, first, n, held):
        # 3.3: topic name, packet id if QoS > 0, payload; the packet is n bytes long, of which
        # rx holds the first `held`. QoS 2 is never asked for here. Returns (topic, the packet id
        # to acknowledge or 0, where the payload starts).
        rx = self._rx
        qos = (first >> 1) & 3
        if qos > 1:
            raise _bad("PUBLISH QoS %d" % qos)
        if qos == 0 and first & 0x08:
            raise _bad("DUP set on QoS 0")  # [MQTT-3.3.1-2]
        if n < 2:
            raise _bad("PUBLISH too short")
        tlen = (rx[0] << 8) | rx[1]
        pos = 2 + tlen + (2 if qos else 0)
        if tlen == 0 or pos > n:
            raise _bad("PUBLISH topic length %d in %d bytes" % (tlen, n))
        if pos > held:  # only a broken broker sends a topic we did not subscribe to
            raise MQTTError(ERR_TOO_LARGE, "incoming topic of %d bytes, max_packet %d"
                            % (tlen, held))
        raw = bytes(rx[2:2 + tlen])
        if b"\x00" in raw or b"+" in raw or b"#" in raw:
            raise _bad("invalid topic name")  # [MQTT-1.5.3-2], [MQTT-3.3.2-2]
        try:
            topic = raw.decode()
        except UnicodeError:
            raise _bad("topic name not UTF-8")  # [MQTT-1.5.3-1]
        pid = 0
        if qos:
            pid = (rx[pos - 2] << 8) | rx[pos - 1]
            if not pid:
                raise _bad("packet id 0")  # [MQTT-2.3.1-1]
        return topic, pid, pos

    async def _oversized(self, first, n):
        # A PUBLISH of n > max_packet bytes: the first max_packet bytes are read (topic, packet
        # id, the payload's start), the rest is read past in max_packet pieces into the same
        # buffer, and on_too_large reports it. Returns the packet id to acknowledge, or 0.
        rx = self._rx
        held = len(rx)
        if not self._fill(rx, held):
            await self._more(rx, held)
        topic, pid, pos = self._publish_head(first, n, held)
        head = bytes(rx[pos:min(held, pos + _HEAD)])
        left = n - held
        while left:
            k = held if left > held else left
            if not self._fill(rx, k):
                await self._more(rx, k)
            left -= k
            self._last_rx = ticks_ms()  # a long message is no silent broker
            self._pinging = False
        if self.on_too_large is not None:
            self.on_too_large(topic, n - pos, held - pos, head, (first & 1) == 1)
        return pid

    # ---- keepalive ----

    async def _keepalive(self):
        # PINGREQ when either direction has been quiet for 3/4 of the keep alive (the broker
        # allows 1.5x [MQTT-3.1.2-24]); no packet at all within min(keep alive, timeout_ms)
        # after a PINGREQ closes the connection (3.1.2.10).
        period = self.keepalive_s * 750
        wait = min(self.keepalive_s * 1000, self.timeout_ms)
        try:
            while self.connected:
                now = ticks_ms()
                if self._pinging:
                    left = wait - ticks_diff(now, self._ping_at)
                    if left <= 0:
                        self._close(_timeout("no PINGRESP within %d ms" % wait))
                        return
                    # not past the next ping's time: slept whole, with the PINGRESP in, it
                    # pinged at once, a keep alive apart instead of 3/4
                    await _sleep_ms(min(left, period))
                    continue
                quiet = max(ticks_diff(now, self._last_tx), ticks_diff(now, self._last_rx))
                if quiet < period:
                    await _sleep_ms(period - quiet)
                    continue
                self._pinging = True
                await self._write(_PINGREQ_PACKET, 2)
                # timed from when it left: a slow batch before it may have held the writer
                self._ping_at = ticks_ms()
        except OSError:
            pass  # the connection is closed already


def _no_delay(stream):
    """TCP_NODELAY where the platform has it: with several PUBLISHes in flight, Nagle's algorithm
    would hold each small one until the previous one's ACK, which the broker may delay 40 ms."""
    try:
        import socket
        sock = stream.s if _MPY else stream.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError, ImportError):
        pass  # MicroPython's socket module may not have the constants: Nagle stays on
