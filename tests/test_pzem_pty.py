"""The PZEM-004T driver over real pyserial, on a pseudo-terminal served by the virtual meter.

This is the path a Raspberry Pi takes (pyserial on /dev/ttyAMA0 or a USB adapter), down to the
termios settings and the kernel's tty buffers: only the meter at the other end is virtual
(simulator/lab/ptydevice.py serving hal/sim/pzem004t.py).
"""
import os
import time

import pytest
import serial

from hal.bus import SensorError
from hal.drivers.pzem004t import PZEM004T
from hal.sim.pzem004t import SimPZEM004T
from simulator.lab.ptydevice import PtyDevice


class PySerialUART:
    """pyserial's Serial wrapped to the UART contract of hal/bus.py (write, read, any)."""

    def __init__(self, port):
        self.port = port

    def write(self, buf):
        return self.port.write(bytes(buf))

    def read(self, n):
        return self.port.read(n) or None

    def any(self):
        return self.port.in_waiting


@pytest.fixture
def rig():
    meter = SimPZEM004T(volts=229.7, amps=3.456, pf=0.92, hz=50.1, wh=4321)
    with PtyDevice(meter) as pty:
        port = serial.Serial(pty.slave_path, 9600, timeout=0.05)
        try:
            yield meter, pty, PZEM004T(PySerialUART(port), "uart1:1", timeout_ms=300)
        finally:
            port.close()
        assert pty.error is None


def test_driver_reads_the_virtual_meter_through_pyserial_on_a_pty(rig):
    meter, pty, pzem = rig
    pzem.setup()
    values = pzem.measure()
    assert values["voltage"] == pytest.approx(229.7)
    assert values["current"] == pytest.approx(3.456)
    assert values["power"] == pytest.approx(730.3)      # 229.7 * 3.456 * 0.92 = 730.33
    assert values["energy"] == 4321
    assert values["frequency"] == pytest.approx(50.1)
    assert values["power_factor"] == pytest.approx(0.92)
    assert values["alarm"] is False
    assert pty.frames[-1] == bytes.fromhex("01 04 00 00 00 0A 70 0D")


def test_bytes_that_a_tty_would_translate_pass_unchanged(rig):
    # 0x0D (CR), 0x0A (LF), 0x11/0x13 (XON/XOFF) and 0x7F in the reply: raw mode must keep them.
    meter, pty, pzem = rig
    meter.volts = 0x0D0A / 10
    meter.amps = 0x11130 / 1000
    meter.hz = 0x7F03 / 10
    values = pzem.measure()
    assert values["voltage"] == pytest.approx(0x0D0A / 10)
    assert values["current"] == pytest.approx(0x11130 / 1000)
    assert values["frequency"] == pytest.approx(0x7F03 / 10)


def test_a_silent_meter_times_out_after_the_drivers_timeout(rig):
    meter, pty, pzem = rig
    pty.faults.inject("timeout")
    started = time.monotonic()
    with pytest.raises(SensorError) as caught:
        pzem.measure()
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert str(caught.value) == "PZEM-004T at uart1:1 did not answer within 300 ms"
    assert elapsed >= 0.29  # it waited its timeout
    assert pzem.measure()["energy"] == 4321


def test_a_late_reply_is_drained_and_not_taken_for_the_next_one(rig):
    meter, pty, pzem = rig
    pty.latency_s = 0.4                 # longer than the driver's 300 ms
    with pytest.raises(SensorError) as caught:
        pzem.measure()
    assert caught.value.kind == "timeout"
    time.sleep(0.2)                     # the late reply arrives now, for a request given up
    pty.latency_s = 0.0
    meter.volts = 120.0
    assert pzem.measure()["voltage"] == pytest.approx(120.0)


def test_corrupted_replies_over_the_pty_raise_crc_or_reply(rig):
    meter, pty, pzem = rig
    for fault, kind in (("bad_crc", "crc"), ("noise", "crc"), ("short", "reply")):
        pty.faults.inject(fault)
        with pytest.raises(SensorError) as caught:
            pzem.measure()
        assert caught.value.kind == kind, (fault, str(caught.value))
        assert pzem.measure()["voltage"] == pytest.approx(229.7)


def test_stop_ends_the_thread_and_closes_the_pty():
    pty = PtyDevice(SimPZEM004T()).start()
    thread, master = pty._thread, pty._master
    assert thread.is_alive()
    pty.stop()
    pty.stop()                          # a second stop is harmless
    assert not thread.is_alive()
    with pytest.raises(OSError):
        os.fstat(master)                # (the pty's number may be reused at once by anyone)
