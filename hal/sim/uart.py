# A simulated UART wired to a virtual device, with injectable faults.
#
# It has the methods of the UART bus contract (hal/bus.py): write(buf) -> n, read(n) -> bytes or
# None, any() -> bytes waiting. Each write() is one request frame: it goes to the device's
# handle(frame), which returns the reply bytes (or None for no reply), and the reply is readable
# at once, as if the line were infinitely fast. read() never waits: it returns what is there or
# None, as machine.UART does once its timeout has passed.
#
# Faults apply to the device's next replies (inject(kind, times)):
#   "timeout"  the reply is lost: nothing arrives
#   "bad_crc"  the last byte (CRC high) is corrupted
#   "noise"    one random bit of the reply is flipped
#   "garbage"  random bytes of random length arrive instead of the reply
#   "short"    only the first half of the reply arrives
# Random choices come from a seeded xorshift generator: a seed gives the same faults on CPython
# and MicroPython. Portable.

FAULTS = ("timeout", "bad_crc", "noise", "garbage", "short")


class Faults:
    """Which fault to apply to the next replies, and how to apply it (shared with the pty server)."""

    def __init__(self, seed=1):
        self._state = (seed & 0xFFFFFFFF) or 1
        self.kind = None
        self._left = 0

    def inject(self, kind, times=1):
        """Corrupts the next `times` replies with `kind` (times=None: until clear())."""
        if kind not in FAULTS:
            raise ValueError("unknown UART fault %r, expected one of %s" % (kind, ", ".join(FAULTS)))
        self.kind = kind
        self._left = times

    def clear(self):
        self.kind = None
        self._left = 0

    def random(self, bound):
        """A pseudo-random integer in [0, bound)."""
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._state = x
        return x % bound

    def apply(self, reply):
        """The bytes that reach the reader instead of reply (None or b"" when nothing does)."""
        kind = self.kind
        if kind is None or not reply:
            return reply
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self.clear()
        if kind == "timeout":
            return None
        out = bytearray(reply)
        if kind == "bad_crc":
            out[-1] ^= 0xA5
        elif kind == "noise":
            bit = self.random(8 * len(out))
            out[bit >> 3] ^= 1 << (bit & 7)
        elif kind == "garbage":
            out = bytearray(1 + self.random(2 * len(reply)))
            for i in range(len(out)):
                out[i] = self.random(256)
        elif kind == "short":
            out = out[:len(out) // 2]
        return bytes(out)


class SimUART:
    """A UART named `name` (e.g. "uart1") whose other end is `device` (anything with handle(frame))."""

    def __init__(self, name, device=None, seed=1):
        self.name = name
        self.device = device
        self.faults = Faults(seed)
        self.written = []          # the last frames written, as bytes, oldest first
        self._rx = bytearray()
        self._pos = 0

    def inject(self, kind, times=1):
        """Corrupts the device's next `times` replies with fault `kind` (times=None: until clear())."""
        self.faults.inject(kind, times)

    def clear(self):
        self.faults.clear()

    def push(self, data):
        """Puts bytes in the receive buffer, as a late reply or line noise would."""
        self._rx.extend(data)

    # -- the UART contract --------------------------------------------------------------------
    def write(self, buf):
        frame = bytes(buf)
        self.written.append(frame)
        if len(self.written) > 8:  # a simulated day writes thousands: keep a few for tests
            del self.written[0]
        device = self.device
        reply = device.handle(frame) if device is not None else None
        reply = self.faults.apply(reply)
        if reply:
            self._rx.extend(reply)
        return len(frame)

    def any(self):
        return len(self._rx) - self._pos

    def read(self, n=-1):
        waiting = len(self._rx) - self._pos
        if waiting <= 0:
            return None
        if n < 0 or n > waiting:
            n = waiting
        out = bytes(self._rx[self._pos:self._pos + n])
        self._pos += n
        if self._pos == len(self._rx):
            self._rx = bytearray()
            self._pos = 0
        return out

    def __repr__(self):
        return "SimUART(%r)" % (self.name,)
