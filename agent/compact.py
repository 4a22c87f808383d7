# The compact batch body: columnar, delta-coded, bit-packed (docs/wire-format.md has every rule).
#
# A metered link pays for each byte, and at 420 readings a batch the channel names alone would
# cost more than the data, so channels are numbered by a schema (agent/schema.py) that travels
# separately. Integers are Rice-coded, with runs of zeros coded as run lengths: steady channels
# cost a few bits a batch and noisy ones a few bits a reading. Deflate cannot shrink the result,
# which is already entropy-coded.
#
# All choices are made with integers, so both interpreters give the same bytes. The bit
# accumulator is flushed a byte at a time and fed at most 16 bits a call, which keeps it a
# small int (no heap) on a 32-bit MicroPython board.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# A batch's readings at most, the largest batch.max_readings a profile takes: decoders refuse
# more (a body of a few hundred bytes can say "a reading at every slot" for millions of slots).
MAX_READINGS = const(10000)
MAX_UNARY = const(20)  # longer Rice quotients are escaped, so one outlier cannot cost 1000 bits

try:
    _bitlen = int.bit_length
except AttributeError:  # MicroPython
    def _bitlen(x):
        n = 0
        while x >= 0x10000:
            x >>= 16
            n += 16
        while x:
            x >>= 1
            n += 1
        return n


class _Bits:
    """MSB-first bit writer into buf[pos:]; running past the end of buf raises IndexError."""

    def __init__(self, buf, pos):
        self.buf = buf
        self.pos = pos
        self.acc = 0
        self.nb = 0

    def put(self, v, n):
        while n > 16:
            n -= 16
            self.put((v >> n) & 0xFFFF, 16)
        acc = (self.acc << n) | (v & ((1 << n) - 1))
        nb = self.nb + n
        buf = self.buf
        pos = self.pos
        while nb >= 8:
            nb -= 8
            buf[pos] = (acc >> nb) & 0xFF
            pos += 1
        self.acc = acc & ((1 << nb) - 1)
        self.nb = nb
        self.pos = pos

    def gamma(self, x):
        """Elias gamma code of x >= 1: (L - 1) zero bits, then x in L bits."""
        n = _bitlen(x)
        self.put(0, n - 1)
        self.put(x, n)

    def rice(self, u, k):
        q = u >> k
        if q < MAX_UNARY:
            self.put((1 << (q + 1)) - 2, q + 1)
        else:
            self.put((1 << MAX_UNARY) - 1, MAX_UNARY)
            self.gamma(q - MAX_UNARY + 1)
        if k:
            self.put(u, k)

    def seq(self, us, lo, hi, total, zeros):
        """us[lo:hi], unsigned, whose sum is total and of which `zeros` are 0: a mode bit (zero
        runs or not), the Rice parameter k in 4 bits, then the codes."""
        n = hi - lo
        if n == 0:
            return
        runs = 2 * zeros > n
        if runs:
            nonzero = n - zeros
            mean = (total - nonzero) // nonzero if nonzero else 0
        else:
            mean = total // n
        k = _bitlen(mean) - 1 if mean > 1 else 0
        if k > 15:
            k = 15
        self.put(16 * runs + k, 5)
        if not runs:
            # rice() and put() inlined: this loop is the encoder's hot path.
            acc = self.acc
            nb = self.nb
            buf = self.buf
            pos = self.pos
            mask = (1 << k) - 1
            for i in range(lo, hi):
                u = us[i]
                q = u >> k
                if q + k < 16:
                    acc = (acc << (q + 1 + k)) | ((((1 << (q + 1)) - 2) << k) | (u & mask))
                    nb += q + 1 + k
                    while nb >= 8:
                        nb -= 8
                        buf[pos] = (acc >> nb) & 0xFF
                        pos += 1
                    acc &= (1 << nb) - 1
                else:
                    self.acc = acc
                    self.nb = nb
                    self.pos = pos
                    self.rice(u, k)
                    acc = self.acc
                    nb = self.nb
                    pos = self.pos
            self.acc = acc
            self.nb = nb
            self.pos = pos
            return
        i = lo
        while i < hi:
            if us[i]:
                self.put(1, 1)
                self.rice(us[i] - 1, k)
                i += 1
            else:
                j = i + 1
                while j < hi and us[j] == 0:
                    j += 1
                self.put(0, 1)
                self.gamma(j - i)
                i = j

    def end(self):
        if self.nb:
            self.buf[self.pos] = (self.acc << (8 - self.nb)) & 0xFF
            self.pos += 1
            self.acc = 0
            self.nb = 0
        return self.pos


class Encoder:
    """Encodes compact bodies; owns scratch arrays sized for max_readings, allocated once."""

    def __init__(self, schema, max_readings):
        import array
        n = max_readings
        nch = len(schema.channels)
        self.schema = schema
        # 32-bit items: MicroPython makes a heap object of every 64-bit item it reads.
        zeros = bytes(4 * n)  # one temporary for both: fewer holes in a small heap
        self.us = array.array("I", zeros)                    # timeline codes, then value codes
        self.gaps = array.array("H", memoryview(zeros)[:2 * n])  # slot gaps, channel after channel
        self.lo = [0] * (nch + 1)                    # where each channel starts in us and gaps
        self.state = [0] * (6 * nch)                 # per channel: see encode()

    def encode(self, w, base, ts, chs, vals, start, end):
        """Writes the body of rows start..end-1 to w: times base + ts[i] in ms, channel numbers
        chs[i], values vals[i] as integers scaled by the channel's resolution."""
        nch = len(self.schema.channels)
        us = self.us
        gaps = self.gaps
        lo = self.lo
        for c in range(nch + 1):
            lo[c] = 0
        # The timeline: one slot per run of rows with the same time, in row order.
        t_prev = ts[start]
        base_ms = base % 1000
        whole = (base_ms + t_prev) % 1000 == 0
        slots = 1
        for i in range(start, end):
            t = ts[i]
            if t != t_prev:
                if (base_ms + t) % 1000:
                    whole = False
                t_prev = t
                slots += 1
            lo[chs[i] + 1] += 1
        unit = 1000 if whole else 1
        for c in range(nch):
            lo[c + 1] += lo[c]
        w.array(4)
        w.int(self.schema.id)
        w.int(0 if whole else -3)
        w.int((base + ts[start]) // unit)
        at = w.open_bytes()
        bits = _Bits(w.buf, at)
        bits.gamma(slots)
        # The timeline's codes: second differences of the slot times, in the time unit.
        zeros = 0
        total = 0
        d_prev = 0
        j = 0
        t_prev = ts[start]
        for i in range(start + 1, end):
            t = ts[i]
            if t != t_prev:
                d = (t - t_prev) // unit
                dd = d - d_prev
                u = dd << 1 if dd >= 0 else (~dd << 1) | 1
                us[j] = u
                j += 1
                total += u
                zeros += u == 0
                d_prev = d
                t_prev = t
        bits.seq(us, 0, slots - 1, total, zeros)
        # Each row's value delta and slot gap, into its channel's region of us and gaps.
        # state[6c:6c+6] = next index, previous value, previous slot, sum of codes, zero codes,
        # and whether the channel is in every slot once.
        st = self.state
        for c in range(nch):
            b = 6 * c
            st[b] = lo[c]
            st[b + 1] = 0
            st[b + 2] = -1
            st[b + 3] = 0
            st[b + 4] = 0
            st[b + 5] = 1
        s = 0
        t_prev = ts[start]
        for i in range(start, end):
            t = ts[i]
            if t != t_prev:
                s += 1
                t_prev = t
            b = 6 * chs[i]
            j = st[b]
            v = vals[i]
            g = s - st[b + 2]
            if g != 1:
                st[b + 5] = 0
            gaps[j] = g
            d = v - st[b + 1]
            u = d << 1 if d >= 0 else (~d << 1) | 1
            us[j] = u
            if u:
                st[b + 3] += u
            else:
                st[b + 4] += 1
            st[b] = j + 1
            st[b + 1] = v
            st[b + 2] = s
        for c in range(nch):
            a = lo[c]
            count = lo[c + 1] - a
            bits.put(count > 0, 1)
            if not count:
                continue
            b = 6 * c
            full = count == slots and st[b + 5]
            bits.put(full, 1)
            # The first entry of each region is relative to slot -1 and value 0: take it out.
            if not full:
                gaps[a] -= 1
                total = 0
                zeros = 0
                for j in range(a, a + count):
                    g = gaps[j]
                    total += g
                    zeros += g == 0
                bits.gamma(count)
                bits.seq(gaps, a, a + count, total, zeros)
            u = us[a]
            bits.gamma(u + 1)
            bits.seq(us, a + 1, a + count, st[b + 3] - u, st[b + 4] - (u == 0))
        w.pos = bits.end()
        w.close_bytes(at)
        return end - start
