# I2C on Linux through the kernel's i2c-dev character device (/dev/i2c-N), with the method names
# and errors of MicroPython's machine.I2C (the contract in hal/bus.py).
#
# Every transfer is one I2C_RDWR ioctl: a register read is a write of the register number and a
# read, joined by a repeated start, in one combined transaction, as machine.I2C.readfrom_mem
# does it. The structures are those of <linux/i2c.h> and <linux/i2c-dev.h>:
#
#   struct i2c_msg { __u16 addr; __u16 flags; __u16 len; __u8 *buf; };
#   struct i2c_rdwr_ioctl_data { struct i2c_msg *msgs; __u32 nmsgs; };
#   #define I2C_RDWR 0x0707, I2C_M_RD 0x0001, I2C_RDWR_IOCTL_MAX_MSGS 42
#
# Errors (Documentation/i2c/fault-codes.rst): an address nobody acknowledges is ENXIO, or
# EREMOTEIO from the Raspberry Pi's controller (i2c-bcm2835 reports every NACK so); both become
# OSError(ENODEV), as on a board. ETIMEDOUT (a bus held low, a transfer that never finished)
# keeps its code. Anything else (EIO, EAGAIN for lost arbitration, ...) is passed on unchanged.
#
# The bus clock is not settable from user space: on a Pi it is `dtparam=i2c_arm_baudrate=N`
# in config.txt. The profile's frequency is kept as `frequency` for messages only.
import ctypes
import errno
import fcntl
import os

I2C_RDWR = 0x0707
I2C_M_RD = 0x0001


class I2cMsg(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                ("len", ctypes.c_uint16), ("buf", ctypes.c_void_p)]


class I2cRdwrIoctlData(ctypes.Structure):
    _fields_ = [("msgs", ctypes.c_void_p), ("nmsgs", ctypes.c_uint32)]


_NACK_CODES = (errno.ENXIO, errno.EREMOTEIO)


class LinuxI2C:
    """One I2C adapter, /dev/i2c-N, opened read-write until close()."""

    def __init__(self, path, frequency=None):
        self.path = path
        self.frequency = frequency
        try:
            self._fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise OSError(errno.ENOENT, "%s does not exist: enable I2C (raspi-config > Interface "
                          "Options > I2C, or dtparam=i2c_arm=on in config.txt) and load the "
                          "i2c-dev module" % path) from None
        except PermissionError as exc:
            from hal.linux import access_hint
            raise OSError(exc.errno, "%s: %s" % (path, access_hint(exc.errno, "i2c"))) from None

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        """nbytes from register memaddr: write the register number, repeated start, read."""
        data = _buffer(nbytes)
        self._transfer(addr, [(0, _buffer_of(_reg_bytes(memaddr, addrsize))), (I2C_M_RD, data)])
        return bytes(data)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        """buf to registers from memaddr on, in one write."""
        self._transfer(addr, [(0, _buffer_of(_reg_bytes(memaddr, addrsize) + bytes(buf)))])

    def readfrom(self, addr, nbytes, stop=True):
        data = _buffer(nbytes)
        self._transfer(addr, [(I2C_M_RD, data)])
        return bytes(data)

    def writeto(self, addr, buf, stop=True):
        """Writes buf; returns the number of bytes acknowledged (all of them, or it raises)."""
        data = bytes(buf)
        self._transfer(addr, [(0, _buffer_of(data))])
        return len(data)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    deinit = close

    def _transfer(self, addr, parts):
        if not 0 <= addr <= 0x7F:
            raise ValueError("I2C address must be 7-bit (0x00-0x7f), got %r" % (addr,))
        if self._fd is None:
            raise OSError(errno.EBADF, "%s is closed" % self.path)
        msgs = (I2cMsg * len(parts))()
        for i, (flags, buf) in enumerate(parts):
            if len(buf) > 0xFFFF:
                raise ValueError("an I2C message holds at most 65535 bytes")
            msgs[i].addr = addr
            msgs[i].flags = flags
            msgs[i].len = len(buf)
            msgs[i].buf = ctypes.addressof(buf)
        request = I2cRdwrIoctlData(ctypes.addressof(msgs), len(parts))
        try:
            fcntl.ioctl(self._fd, I2C_RDWR, request)
        except OSError as exc:
            raise _contract_error(exc, self.path, addr) from exc


def _contract_error(exc, path, addr):
    code = exc.errno
    if code in _NACK_CODES:
        return OSError(errno.ENODEV, "%s: no acknowledge from 0x%02x (%s)"
                       % (path, addr, errno.errorcode.get(code, code)))
    if code == errno.ETIMEDOUT:
        return OSError(errno.ETIMEDOUT, "%s: transfer with 0x%02x timed out: is SDA or SCL held "
                       "low?" % (path, addr))
    return exc


def _reg_bytes(memaddr, addrsize):
    if addrsize == 8:
        return bytes((memaddr & 0xFF,))
    if addrsize == 16:
        return bytes(((memaddr >> 8) & 0xFF, memaddr & 0xFF))
    raise ValueError("addrsize must be 8 or 16, got %r" % (addrsize,))


def _buffer(n):
    return (ctypes.c_uint8 * n)()


def _buffer_of(data):
    return (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
