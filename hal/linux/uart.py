# A UART on Linux through pyserial, with machine.UART's contract (hal/bus.py):
#
#   write(buf) -> n       all of buf, written to the tty
#   read(n)    -> bytes   up to n bytes: waits at most the timeout the port was opened with for
#                         all n, then returns what came, or None when nothing came at all
#                         (pyserial's read returns b"" there: a board's machine.UART gives None)
#   read()     -> bytes   what is waiting now, or None
#   any()      -> int     bytes waiting (pyserial's in_waiting)
#
# pyserial's timeout bounds the whole read(n) call, not each byte (serialposix.Serial.read),
# which is what machine.UART's timeout does for a read of n bytes.
import errno
import os

from hal.unopened import BusError, bus_error


class LinuxUART:
    """An adapter unplugged while open fails each transfer with a `bus` error (hal/unopened.py)
    until it is back: the next transfer then opens the port again (a by-id name follows the
    adapter to its new ttyUSBn), so no restart is needed."""

    def __init__(self, port, baudrate=9600, timeout_ms=100):
        self.port = port
        self.baudrate = baudrate
        self.timeout_ms = timeout_ms
        self._serial = self._open()

    def _open(self):
        import serial  # pyserial, a dependency of the host package

        port, baudrate, timeout_ms = self.port, self.baudrate, self.timeout_ms
        try:
            # Exclusive (flock): a `tether read` while the service reads the port took some of
            # its answers, and the fleet got sensor_error events for a chip that was fine.
            return serial.Serial(port, baudrate, timeout=timeout_ms / 1000.0, exclusive=True)
        except serial.SerialException as exc:
            code = getattr(exc, "errno", None) or errno.EIO
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise OSError(errno.EBUSY, "cannot open UART %s: another program has it open "
                              "(a tether service on this machine? `systemctl stop` it while "
                              "you use the port)" % port) from exc
            if code in (errno.EACCES, errno.EPERM):
                from hal.linux import access_hint
                raise OSError(code, "cannot open UART %s: %s"
                              % (port, access_hint(code, "dialout"))) from exc
            if "/serial/by-" in port or "/ttyUSB" in port or "/ttyACM" in port:
                hint = "is the USB serial adapter plugged in? `ls /dev/serial/by-id` lists them"
            else:
                hint = ("on a Raspberry Pi enable the serial port (raspi-config > Interface "
                        "Options > Serial Port: no login shell, hardware enabled) and run as a "
                        "member of the 'dialout' group")
            raise OSError(code, "cannot open UART %s (%s): %s"
                          % (port, os.strerror(code), hint)) from exc

    def _port(self):
        if self._serial is None:
            try:
                self._serial = self._open()
            except OSError as exc:
                raise bus_error(exc)
        return self._serial

    def _lost(self, exc):
        """The port failed under a transfer (an adapter unplugged: EIO, or pyserial's "returned
        no data"): closed, to be opened again by the next transfer."""
        try:
            self._serial.close()
        except Exception:   # noqa: BLE001 - it is gone either way
            pass
        self._serial = None
        return BusError("UART %s failed (%s): is the USB serial adapter still plugged in? It is "
                        "opened again at the next try"
                        % (self.port, getattr(exc, "strerror", None) or exc))

    def write(self, buf):
        port = self._port()
        try:
            return port.write(bytes(buf))
        except OSError as exc:      # serial.SerialException is one
            raise self._lost(exc)

    def read(self, nbytes=None):
        port = self._port()
        try:
            if nbytes is None:
                nbytes = port.in_waiting
                if not nbytes:
                    return None
            elif nbytes == 0:
                return b""
            data = port.read(nbytes)
        except OSError as exc:
            raise self._lost(exc)
        return data if data else None

    def any(self):
        port = self._port()
        try:
            return port.in_waiting
        except OSError as exc:
            raise self._lost(exc)

    def close(self):
        if self._serial is not None:
            self._serial.close()

    deinit = close

