"""A virtual UART device served on a pseudo-terminal, so the real pyserial path can talk to it.

HOST-ONLY (CPython, Linux/macOS): os.openpty, termios, threads.

    meter = SimPZEM004T(volts=230.0)
    with PtyDevice(meter) as pty:
        port = serial.Serial(pty.slave_path, 9600, timeout=0.2)
        ...

A thread reads the master side of the pty. Bytes are gathered into one frame until the line has
been silent for `gap_s` (Modbus RTU ends a frame after 3.5 character times of silence: 4 ms at
9600 baud); the frame goes to device.handle(frame), and the reply (after `latency_s`) is written
back, through the same fault injector as hal.sim.uart.SimUART (`pty.faults.inject("noise")`).
Both ends are in raw mode: no echo, no CR/LF translation (0x0D and 0x0A occur in CRCs).
"""
import os
import select
import threading
import time
import tty

from hal.sim.uart import Faults


class PtyDevice:
    def __init__(self, device, gap_s=0.004, latency_s=0.0, seed=1):
        self.device = device
        self.gap_s = gap_s
        self.latency_s = latency_s
        self.faults = Faults(seed)
        self.frames = []           # every frame received, as bytes
        self.lock = threading.Lock()   # held while the device handles a frame
        self.slave_path = None
        self._master = self._slave = None
        self._wake = None
        self._thread = None
        self.error = None          # an exception that stopped the server thread

    def start(self):
        if self._thread is not None:
            raise RuntimeError("PtyDevice already started")
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave   # keeping the slave open: no EIO on the master
        self.slave_path = os.ttyname(slave)
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="pty " + self.slave_path,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops the server thread and closes the pty; safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        os.write(self._wake[1], b"x")
        thread.join(timeout=5)
        if thread.is_alive():
            raise RuntimeError("the pty server thread did not stop")
        for fd in (self._master, self._slave, self._wake[0], self._wake[1]):
            os.close(fd)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _serve(self):
        master, wake = self._master, self._wake[0]
        pending = bytearray()
        try:
            while True:
                ready, _, _ = select.select([master, wake], [], [],
                                            self.gap_s if pending else None)
                if wake in ready:
                    return
                if master in ready:
                    pending += os.read(master, 4096)
                    continue
                frame = bytes(pending)          # silence after some bytes: a whole frame
                pending.clear()
                self.frames.append(frame)
                with self.lock:
                    reply = self.device.handle(frame)
                    reply = self.faults.apply(reply)
                if reply:
                    if self.latency_s:
                        time.sleep(self.latency_s)
                    os.write(master, reply)
        except Exception as exc:  # keep it for the test to see; the thread ends
            self.error = exc
            raise
