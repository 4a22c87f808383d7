# A simulated I2C bus: virtual chips attached by address, and faults injected on demand.
#
# SimI2C has the method names of MicroPython's machine.I2C (the bus contract, hal/bus.py), so
# the real drivers run on it unchanged:
#
#   readfrom_mem(addr, reg, n) -> bytes    writeto_mem(addr, reg, buf)
#   readfrom(addr, n) -> bytes             writeto(addr, buf)      scan() -> [addresses]
#
# A chip is any object with two methods, registers addressed by the pointer byte:
#
#   chip.write(reg, data)   data: the bytes after the pointer byte (MSB first for 16-bit ones)
#   chip.read(reg, n)       -> n bytes starting at register reg
#
# writeto(addr, buf) sets the chip's register pointer to buf[0] and passes it with the rest,
# which may be empty: a register chip only moves its pointer then, a chip driven by commands
# (one or two bytes, Sensirion's) takes the command; readfrom(addr, n) reads from the last
# pointer, as INA219 and ADS1115 do. A chip not ready to be read (a conversion under way) raises
# OSError(errno.ENODEV) from read(): the read header is not acknowledged, as on the wire.
#
# Faults, for one address or (address None) for the whole bus, until cleared or for `times`
# transfers:
#   "nack"   the chip does not acknowledge: OSError(ENODEV), as machine.I2C raises
#   "stuck"  a chip holds SDA low: OSError(ETIMEDOUT), for every address
#   "noise"  one random bit of what is read is flipped, with probability `rate` per read
# An address with no chip attached does not acknowledge either. The noise generator is an
# xorshift32 seeded by `seed`, so a run repeats exactly on CPython and on MicroPython.
#
# With record=True every transfer is kept in .transfers as (op, addr, reg, bytes), op "w"/"r"
# (reg None for readfrom/writeto without a pointer): what a logic analyser would show.
import errno

FAULTS = ("nack", "stuck", "noise")


class SimI2C:
    def __init__(self, name="i2c0", seed=1, record=False):
        self.name = name
        self.chips = {}
        self.transfers = [] if record else None
        self._faults = []  # [kind, address or None, rate, remaining transfers or None]
        self._pointer = {}
        self._rng = (seed & 0xFFFFFFFF) or 0x9E3779B9

    # -- wiring and faults ------------------------------------------------------------------------
    def attach(self, address, chip):
        self.chips[address] = chip
        return chip

    def fault(self, kind, address=None, rate=1.0, times=None):
        """Injects a fault: "nack", "stuck" or "noise" (rate: probability per read)."""
        if kind not in FAULTS:
            raise ValueError("unknown I2C fault %r (one of %s)" % (kind, ", ".join(FAULTS)))
        self._faults.append([kind, address, rate, times])

    def clear(self, address=None):
        """Removes the faults of one address, or every fault when address is None."""
        if address is None:
            self._faults = []
        else:
            self._faults = [f for f in self._faults if f[1] != address]

    def scan(self):
        found = []
        for addr in sorted(self.chips):
            try:
                self._check(addr)
            except OSError:
                continue
            found.append(addr)
        return found

    # -- the machine.I2C methods ------------------------------------------------------------------
    def readfrom_mem(self, addr, reg, n, addrsize=8):
        chip = self._check(addr)
        data = self._noisy(addr, bytes(chip.read(reg, n)))
        self._pointer[addr] = reg
        self._record("r", addr, reg, data)
        return data

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        chip = self._check(addr)
        data = bytes(buf)
        self._record("w", addr, reg, data)
        self._pointer[addr] = reg
        chip.write(reg, data)

    def readfrom(self, addr, n, stop=True):
        chip = self._check(addr)
        data = self._noisy(addr, bytes(chip.read(self._pointer.get(addr, 0), n)))
        self._record("r", addr, None, data)
        return data

    def writeto(self, addr, buf, stop=True):
        chip = self._check(addr)
        data = bytes(buf)
        self._record("w", addr, None, data)
        if data:
            self._pointer[addr] = data[0]
            chip.write(data[0], data[1:])
        return len(data)

    # -- inside -----------------------------------------------------------------------------------
    def _active(self, kind, addr):
        for f in self._faults:
            if f[0] == kind and (f[1] is None or f[1] == addr) and f[3] != 0:
                return f
        return None

    def _spend(self, f):
        if f[3] is not None:
            f[3] -= 1

    def _check(self, addr):
        if self._faults:  # none on a healthy bus: a fleet's every transfer goes by here
            f = self._active("stuck", addr)
            if f is not None:
                self._spend(f)
                raise OSError(errno.ETIMEDOUT)
            f = self._active("nack", addr)
            if f is not None:
                self._spend(f)
                raise OSError(errno.ENODEV)
        chip = self.chips.get(addr)
        if chip is None:
            raise OSError(errno.ENODEV)
        return chip

    def _next(self):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    def _noisy(self, addr, data):
        if not self._faults:
            return data
        f = self._active("noise", addr)
        if f is None or not data:
            return data
        self._spend(f)
        if f[2] < 1.0 and (self._next() % 1000000) >= f[2] * 1000000:
            return data
        bit = self._next() % (8 * len(data))
        out = bytearray(data)
        out[bit >> 3] ^= 0x80 >> (bit & 7)
        return bytes(out)

    def _record(self, op, addr, reg, data):
        if self.transfers is not None:
            self.transfers.append((op, addr, reg, data))
