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


class LinuxUART:
    def __init__(self, port, baudrate=9600, timeout_ms=100):
        import serial  # pyserial, a dependency of the host package

        self.port = port
        try:
            # Exclusive (flock): a `tether read` while the service reads the port took some of
            # its answers, and the fleet got sensor_error events for a chip that was fine.
            self._serial = serial.Serial(port, baudrate, timeout=timeout_ms / 1000.0,
                                         exclusive=True)
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

    def write(self, buf):
        return self._serial.write(bytes(buf))

    def read(self, nbytes=None):
        if nbytes is None:
            nbytes = self._serial.in_waiting
            if not nbytes:
                return None
        elif nbytes == 0:
            return b""
        data = self._serial.read(nbytes)
        return data if data else None

    def any(self):
        return self._serial.in_waiting

    def close(self):
        self._serial.close()

    deinit = close
