"""The Linux I2C backend against a fake /dev/i2c-N that plays the kernel's part.

hal.linux.i2c's `os` and `fcntl` are replaced (for that module only) by a fake i2c-dev. Its
ioctl reads the I2C_RDWR request the way the kernel does: from the bytes of
struct i2c_rdwr_ioctl_data, then the struct i2c_msg array and the data buffers at the addresses
in them, decoded with struct formats written here from <linux/i2c.h> (not from the code under
test), and it writes read data back into the caller's buffers. Devices are register files with an
auto-incrementing register pointer. Faults are the errno values adapters give (i2c-bcm2835:
EREMOTEIO for a NACK, ETIMEDOUT for a bus that never finishes; other adapters: ENXIO).
"""
import ctypes
import errno
import os
import struct
import types

import pytest

import hal.linux.i2c as linux_i2c
from hal.bus import i2c_error
from hal.linux import LinuxPlatform
from hal.linux.i2c import LinuxI2C

# <linux/i2c.h>, <linux/i2c-dev.h>
I2C_RDWR = 0x0707
I2C_M_RD = 0x0001
I2C_RDWR_IOCTL_MAX_MSGS = 42
MSG_FORMAT = "@HHHP"        # struct i2c_msg { __u16 addr, flags, len; __u8 *buf; }
RDWR_FORMAT = "@PI0P"       # struct i2c_rdwr_ioctl_data { struct i2c_msg *msgs; __u32 nmsgs; }
MSG_SIZE = struct.calcsize(MSG_FORMAT)


class FakeI2cDev:
    """The kernel side of /dev/i2c-N for one adapter: open/close and the I2C_RDWR ioctl."""

    O_RDWR = os.O_RDWR

    def __init__(self, paths=("/dev/i2c-1",), nack_errno=errno.EREMOTEIO):
        self.paths = set(paths)
        self.nack_errno = nack_errno
        self.fault = None            # an errno every transfer fails with (ETIMEDOUT, EIO, ...)
        self.chips = {}              # address -> bytearray register file
        self.pointers = {}           # address -> register pointer
        self.transactions = []       # one list of (addr, flags, bytes written | bytes read) each
        self.open_fds = {}
        self.denied = {}             # path -> the errno its open fails with (EACCES, EPERM)
        self.opened = []
        self.raw_requests = []
        self._next_fd = 100

    def add_chip(self, addr, registers=b""):
        regs = bytearray(256)
        regs[:len(registers)] = registers
        self.chips[addr] = regs
        self.pointers[addr] = 0
        return regs

    # os.open / os.close as seen by hal.linux.i2c
    def open(self, path, flags):
        if path not in self.paths:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if path in self.denied:
            raise PermissionError(self.denied[path], os.strerror(self.denied[path]), path)
        assert flags & os.O_ACCMODE == os.O_RDWR, "i2c-dev needs the file opened read-write"
        self._next_fd += 1
        self.open_fds[self._next_fd] = path
        self.opened.append(path)
        return self._next_fd

    def close(self, fd):
        del self.open_fds[fd]

    # fcntl.ioctl as seen by hal.linux.i2c
    def ioctl(self, fd, request, arg=0, mutate_flag=True):
        if fd not in self.open_fds:
            raise OSError(errno.EBADF, "Bad file descriptor")
        assert request == I2C_RDWR, "unexpected ioctl 0x%x" % request
        assert not isinstance(arg, int), "I2C_RDWR takes a pointer to i2c_rdwr_ioctl_data"
        raw = bytes(memoryview(arg).cast("B"))
        self.raw_requests.append(raw)
        assert len(raw) == struct.calcsize(RDWR_FORMAT), "struct i2c_rdwr_ioctl_data size"
        msgs_ptr, nmsgs = struct.unpack_from("@PI", raw)
        if nmsgs > I2C_RDWR_IOCTL_MAX_MSGS:
            raise OSError(errno.EINVAL, "Invalid argument")
        table = ctypes.string_at(msgs_ptr, nmsgs * MSG_SIZE)
        msgs = [struct.unpack_from(MSG_FORMAT, table, i * MSG_SIZE) for i in range(nmsgs)]
        for addr, flags, length, _ in msgs:
            if length > 8192 or flags & ~I2C_M_RD:
                raise OSError(errno.EINVAL, "Invalid argument")
        if any(flags & I2C_M_RD for _, flags, _, _ in msgs[:-1]):
            # i2c-bcm2835: "only one read message supported, has to be last"
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if self.fault is not None:
            raise OSError(self.fault, os.strerror(self.fault))
        done = []
        for addr, flags, length, buf_ptr in msgs:
            if addr not in self.chips:
                raise OSError(self.nack_errno, os.strerror(self.nack_errno))
            regs = self.chips[addr]
            if flags & I2C_M_RD:
                start = self.pointers[addr]
                data = bytes(regs[(start + i) % 256] for i in range(length))
                ctypes.memmove(buf_ptr, data, length)
                self.pointers[addr] = (start + length) % 256
            else:
                data = ctypes.string_at(buf_ptr, length)
                if data:
                    self.pointers[addr] = data[0]
                    for value in data[1:]:
                        regs[self.pointers[addr]] = value
                        self.pointers[addr] = (self.pointers[addr] + 1) % 256
            done.append((addr, flags, data))
        self.transactions.append(done)
        return nmsgs


@pytest.fixture
def dev(monkeypatch):
    fake = FakeI2cDev()
    monkeypatch.setattr(linux_i2c, "os", types.SimpleNamespace(
        open=fake.open, close=fake.close, O_RDWR=fake.O_RDWR))
    monkeypatch.setattr(linux_i2c, "fcntl", types.SimpleNamespace(ioctl=fake.ioctl))
    return fake


def test_linux_i2c_structures_have_the_kernel_layout():
    msg, rdwr = linux_i2c.I2cMsg, linux_i2c.I2cRdwrIoctlData
    assert ctypes.sizeof(msg) == struct.calcsize(MSG_FORMAT)
    pointer = struct.calcsize("@P")
    assert [(f.offset, f.size) for f in (msg.addr, msg.flags, msg.len, msg.buf)] == [
        (0, 2), (2, 2), (4, 2), (struct.calcsize("@HHH0P"), pointer)]
    assert ctypes.sizeof(rdwr) == struct.calcsize(RDWR_FORMAT)
    assert [(f.offset, f.size) for f in (rdwr.msgs, rdwr.nmsgs)] == [(0, pointer), (pointer, 4)]
    assert (linux_i2c.I2C_RDWR, linux_i2c.I2C_M_RD) == (0x0707, 0x0001)


def test_linux_i2c_readfrom_mem_is_one_write_then_read_transaction(dev):
    dev.add_chip(0x40, bytes(range(0x10, 0x20)))
    bus = LinuxI2C("/dev/i2c-1")
    assert bus.readfrom_mem(0x40, 0x02, 2) == b"\x12\x13"
    assert dev.transactions == [[(0x40, 0, b"\x02"), (0x40, I2C_M_RD, b"\x12\x13")]]
    msgs_ptr, nmsgs = struct.unpack_from("@PI", dev.raw_requests[0])
    assert nmsgs == 2 and msgs_ptr != 0


def test_linux_i2c_writeto_mem_writes_register_and_data_in_one_message(dev):
    regs = dev.add_chip(0x48)
    bus = LinuxI2C("/dev/i2c-1")
    assert bus.writeto_mem(0x48, 0x01, b"\x84\x83") is None
    assert dev.transactions == [[(0x48, 0, b"\x01\x84\x83")]]
    assert regs[1:3] == b"\x84\x83"
    assert bus.readfrom_mem(0x48, 0x01, 2) == b"\x84\x83"


def test_linux_i2c_plain_readfrom_and_writeto(dev):
    dev.add_chip(0x50, b"\xaa\xbb\xcc")
    bus = LinuxI2C("/dev/i2c-1")
    assert bus.writeto(0x50, bytearray(b"\x01")) == 1
    assert bus.readfrom(0x50, 2) == b"\xbb\xcc"
    assert dev.transactions == [[(0x50, 0, b"\x01")], [(0x50, I2C_M_RD, b"\xbb\xcc")]]


def test_linux_i2c_sixteen_bit_register_addresses_go_high_byte_first(dev):
    dev.add_chip(0x50)
    bus = LinuxI2C("/dev/i2c-1")
    bus.readfrom_mem(0x50, 0x0102, 1, addrsize=16)
    assert dev.transactions[0][0] == (0x50, 0, b"\x01\x02")


def test_linux_i2c_nack_from_the_pi_controller_is_enodev(dev):
    bus = LinuxI2C("/dev/i2c-1")
    with pytest.raises(OSError) as info:
        bus.readfrom_mem(0x41, 0x00, 2)
    assert info.value.args[0] == errno.ENODEV
    assert "0x41" in str(info.value) and "/dev/i2c-1" in str(info.value)
    err = i2c_error("INA219", "i2c0:0x41", info.value)
    assert err.kind == "nack"
    assert str(err) == "INA219 at i2c0:0x41 did not acknowledge"


def test_linux_i2c_nack_as_enxio_is_enodev_too(dev):
    dev.nack_errno = errno.ENXIO
    bus = LinuxI2C("/dev/i2c-1")
    with pytest.raises(OSError) as info:
        bus.writeto_mem(0x41, 0x00, b"\x00")
    assert info.value.args[0] == errno.ENODEV


def test_linux_i2c_timeout_stays_etimedout_and_reads_as_stuck(dev):
    dev.add_chip(0x40)
    dev.fault = errno.ETIMEDOUT
    bus = LinuxI2C("/dev/i2c-1")
    with pytest.raises(OSError) as info:
        bus.readfrom_mem(0x40, 0x00, 2)
    assert info.value.args[0] == errno.ETIMEDOUT
    assert i2c_error("INA219", "i2c0:0x40", info.value).kind == "stuck"


def test_linux_i2c_other_errors_pass_through_unchanged(dev):
    dev.add_chip(0x40)
    dev.fault = errno.EIO
    bus = LinuxI2C("/dev/i2c-1")
    with pytest.raises(OSError) as info:
        bus.readfrom(0x40, 1)
    assert info.value.errno == errno.EIO


def test_an_error_that_is_no_nack_is_said_as_it_is_not_blamed_on_the_chip(dev):
    # Lost arbitration (EAGAIN), or a port that is no I2C adapter (ENOTTY): "did not
    # acknowledge" sent a user to the chip's wiring.
    dev.add_chip(0x40)
    for code, name in ((errno.EAGAIN, "EAGAIN"), (errno.ENOTTY, "ENOTTY")):
        dev.fault = code
        with pytest.raises(OSError) as info:
            LinuxI2C("/dev/i2c-1").readfrom(0x40, 1)
        err = i2c_error("INA219", "i2c0:0x40", info.value)
        assert (str(err), err.kind) == (
            "INA219 at i2c0:0x40 could not be reached: the I2C transfer failed (%s)" % name,
            "bus")


def test_linux_i2c_refuses_addresses_beyond_seven_bits_before_any_transfer(dev):
    bus = LinuxI2C("/dev/i2c-1")
    with pytest.raises(ValueError):
        bus.readfrom(0x80, 1)
    assert dev.raw_requests == []


def test_linux_i2c_missing_device_file_says_how_to_enable_i2c(dev):
    with pytest.raises(OSError) as info:
        LinuxI2C("/dev/i2c-7")
    assert info.value.errno == errno.ENOENT
    assert "/dev/i2c-7" in str(info.value) and "enable I2C" in str(info.value)


def test_linux_i2c_a_file_mode_that_denies_says_which_group_a_unit_that_denies_says_so(dev):
    dev.denied["/dev/i2c-1"] = errno.EACCES
    with pytest.raises(OSError) as info:
        LinuxI2C("/dev/i2c-1")
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith("/dev/i2c-1: permission denied: run as a member of the "
                                    "'i2c' group")
    dev.denied["/dev/i2c-1"] = errno.EPERM  # a device cgroup: a systemd unit's DevicePolicy
    with pytest.raises(OSError) as info:
        LinuxI2C("/dev/i2c-1")
    assert info.value.errno == errno.EPERM
    assert "/dev/i2c-1: not permitted: a systemd service may open only the device files its " \
           "unit allows (DeviceAllow=)" in str(info.value)
    assert "tether install-service again" in str(info.value)


def test_linux_platform_opens_the_header_i2c_once_per_bus_and_closes_it(dev):
    dev.paths.add("/dev/i2c-3")
    dev.add_chip(0x40, b"\x39\x9f")
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    bus = platform.i2c({"id": "i2c0", "type": "i2c", "sda": 2, "scl": 3, "frequency": 400000})
    assert platform.i2c({"id": "i2c0", "type": "i2c", "sda": 2, "scl": 3,
                         "frequency": 400000}) is bus
    extra = platform.i2c({"id": "aux", "type": "i2c", "sda": 4, "scl": 5, "frequency": 100000,
                          "port": "/dev/i2c-3"})
    assert dev.opened == ["/dev/i2c-1", "/dev/i2c-3"]
    assert bus.readfrom_mem(0x40, 0x00, 2) == b"\x39\x9f"
    assert extra is not bus and extra.frequency == 100000
    platform.close()
    assert dev.open_fds == {}


def test_linux_platform_i2c_on_other_pins_without_port_is_a_clear_error(dev):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    with pytest.raises(ValueError) as info:
        platform.i2c({"id": "aux", "type": "i2c", "sda": 4, "scl": 5, "frequency": 100000})
    assert "port" in str(info.value) and "sda 2/scl 3" in str(info.value)
    assert dev.opened == []
