"""The Linux UART backend: real pyserial on a real pseudo-terminal (os.openpty()).

The backend opens the pty's slave end as its serial port; the test plays the device on the
master end. Timing bounds are loose (a shared 2-core machine), but a read that returned before
its timeout or hung far past it would fail.
"""
import errno
import os
import select
import time

import pytest

import hal.linux.platform as linux_platform
from hal.linux import LinuxPlatform
from hal.linux.uart import LinuxUART

TIMEOUT_MS = 200


@pytest.fixture
def pty():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def device_reads(master, n, timeout=2.0):
    """What the device on the master end received: n bytes, or fail."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        got += os.read(master, n - len(got))
    return got


def wait_for_any(uart, n, timeout=2.0):
    deadline = time.monotonic() + timeout
    while uart.any() < n and time.monotonic() < deadline:
        time.sleep(0.005)
    return uart.any()


def test_linux_uart_write_sends_every_byte_unchanged(pty):
    master, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    frame = bytes([0x01, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x70, 0x0D]) + b"\n\r\x00\xff"
    assert uart.write(frame) == len(frame)
    assert device_reads(master, len(frame)) == frame
    uart.close()


def test_linux_uart_read_returns_n_bytes_as_soon_as_they_are_there(pty):
    master, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=20000)
    os.write(master, b"\x01\x04\x14" + bytes(20) + b"\xab\xcd")
    start = time.monotonic()
    assert uart.read(25) == b"\x01\x04\x14" + bytes(20) + b"\xab\xcd"
    assert time.monotonic() - start < 10  # did not wait for the 20 s timeout
    uart.close()


def test_linux_uart_short_read_returns_what_came_after_the_timeout(pty):
    master, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    os.write(master, b"\x01\x84\x02")
    start = time.monotonic()
    assert uart.read(5) == b"\x01\x84\x02"
    elapsed = time.monotonic() - start
    assert TIMEOUT_MS / 1000 * 0.9 <= elapsed  # it waited for the missing bytes
    uart.close()


def test_linux_uart_read_with_nothing_coming_is_none_after_the_timeout(pty):
    _, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    start = time.monotonic()
    assert uart.read(8) is None
    elapsed = time.monotonic() - start
    assert TIMEOUT_MS / 1000 * 0.9 <= elapsed  # it waited its timeout
    uart.close()


def test_linux_uart_any_counts_waiting_bytes_and_read_all_takes_them(pty):
    master, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    assert uart.any() == 0
    assert uart.read() is None
    os.write(master, b"hello")
    assert wait_for_any(uart, 5) == 5
    assert uart.read() == b"hello"
    assert uart.any() == 0
    assert uart.read(0) == b""
    uart.close()


def test_linux_uart_round_trip_request_then_reply(pty):
    master, path = pty
    uart = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    request = b"\x01\x04\x00\x00\x00\x0a\x70\x0d"
    uart.write(request)
    assert device_reads(master, len(request)) == request
    os.write(master, b"\x01\x04\x02\x00\x7b\xf9\x13")
    assert uart.read(7) == b"\x01\x04\x02\x00\x7b\xf9\x13"
    uart.close()


def test_linux_uart_missing_port_is_an_oserror_that_says_what_to_enable():
    with pytest.raises(OSError) as info:
        LinuxUART("/dev/tether-no-such-tty", 9600)
    assert info.value.errno == errno.ENOENT
    assert "/dev/tether-no-such-tty" in str(info.value) and "serial" in str(info.value)


def test_linux_uart_denied_says_which_group_or_that_the_service_unit_denies_it(monkeypatch):
    import serial

    def refuse(code):
        def open_port(port, *args, **kwargs):
            # pyserial's words for an open(2) that failed (serialposix.Serial.open)
            raise serial.SerialException(code, "could not open port %s: [Errno %d] %s"
                                         % (port, code, os.strerror(code)))
        return open_port

    monkeypatch.setattr(serial, "Serial", refuse(errno.EACCES))
    with pytest.raises(OSError) as info:
        LinuxUART("/dev/ttyAMA0", 9600)
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith("cannot open UART /dev/ttyAMA0: permission denied: run as a "
                                    "member of the 'dialout' group")
    monkeypatch.setattr(serial, "Serial", refuse(errno.EPERM))
    with pytest.raises(OSError) as info:
        LinuxUART("/dev/ttyAMA0", 9600)
    assert info.value.errno == errno.EPERM
    assert "only the device files its unit allows (DeviceAllow=)" in str(info.value)


def test_linux_platform_uart_uses_the_bus_port_baud_and_timeout(pty):
    master, path = pty
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    bus = {"id": "mains", "type": "uart", "tx": 14, "rx": 15, "baud": 9600, "port": path}
    uart = platform.uart(bus, timeout_ms=250)
    assert platform.uart(bus, timeout_ms=250) is uart
    assert uart.port == path
    assert uart._serial.baudrate == 9600 and uart._serial.timeout == 0.25
    uart.write(b"\x42")
    assert device_reads(master, 1) == b"\x42"
    platform.close()
    assert not uart._serial.is_open


def test_linux_platform_uart_on_the_header_pins_is_serial0(monkeypatch):
    opened = []

    def fake_uart(port, baudrate, timeout_ms):
        opened.append((port, baudrate, timeout_ms))
        return object()

    monkeypatch.setattr(linux_platform, "LinuxUART", fake_uart)
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    platform.uart({"id": "mains", "type": "uart", "tx": 14, "rx": 15, "baud": 9600},
                  timeout_ms=300)
    assert opened == [("/dev/serial0", 9600, 300)]
    with pytest.raises(ValueError) as info:
        platform.uart({"id": "aux", "type": "uart", "tx": 4, "rx": 5, "baud": 115200}, 50)
    assert "port" in str(info.value) and "tx 14/rx 15" in str(info.value)
    assert len(opened) == 1


def test_a_missing_uart_hints_at_the_pis_serial_port_or_at_a_usb_adapter(monkeypatch):
    import serial

    def missing(port, *args, **kwargs):
        raise serial.SerialException(errno.ENOENT, "could not open port %s: [Errno 2] No such "
                                     "file or directory: %r" % (port, port))
    monkeypatch.setattr(serial, "Serial", missing)
    with pytest.raises(OSError) as info:
        LinuxUART("/dev/serial0", 9600)
    assert "raspi-config > Interface Options > Serial Port" in str(info.value)
    for port in ("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "/dev/ttyUSB0", "/dev/ttyACM0"):
        with pytest.raises(OSError) as info:
            LinuxUART(port, 9600)
        assert str(info.value).endswith("cannot open UART %s (No such file or directory): is the "
                                        "USB serial adapter plugged in? `ls /dev/serial/by-id` "
                                        "lists them" % port)


def test_a_uart_another_program_has_open_is_busy_and_said_so(pty):
    # tether read beside the running service took some of the service's Modbus answers: the
    # fleet got sensor_error events for a chip that was fine.
    master, path = pty
    first = LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
    try:
        with pytest.raises(OSError) as err:
            LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS)
        assert err.value.errno == errno.EBUSY
        assert "another program has it open" in str(err.value) and "systemctl stop" in \
            str(err.value)
    finally:
        first.close()
    LinuxUART(path, 9600, timeout_ms=TIMEOUT_MS).close()      # free again once it is closed


def test_an_adapter_unplugged_and_plugged_back_is_read_again_without_a_restart(tmp_path):
    # The port opened at start stayed broken for good: the sensors on it failed with
    # "OSError: [Errno 5]" until someone restarted the service.
    link = tmp_path / "ttyUSB9"              # as /dev/serial/by-id/... names an adapter
    master, slave = os.openpty()
    link.symlink_to(os.ttyname(slave))
    uart = LinuxUART(str(link), 9600, timeout_ms=TIMEOUT_MS)
    try:
        uart.write(b"ping")
        assert device_reads(master, 4) == b"ping"
        os.close(master)                     # unplugged
        os.close(slave)
        with pytest.raises(Exception) as err:
            uart.read(4)
        assert err.value.kind == "bus"
        assert "is the USB serial adapter still plugged in?" in str(err.value)
        assert "[Errno" not in str(err.value)
        link.unlink()
        with pytest.raises(Exception) as err:   # still away: the open's own words
            uart.write(b"x")
        assert err.value.kind == "bus" and "is the USB serial adapter plugged in?" in \
            str(err.value)
        master, slave = os.openpty()         # back, as another ttyUSBn
        link.symlink_to(os.ttyname(slave))
        uart.write(b"pong")
        assert device_reads(master, 4) == b"pong"
        os.write(master, b"ok")
        assert uart.read(2) == b"ok"
    finally:
        uart.close()
        os.close(master)
        os.close(slave)
