"""MicroPython's raw REPL over pyserial: what `tether flash` speaks to a board.

HOST-ONLY (CPython, pyserial).

    with RawRepl.open("/dev/ttyUSB0") as repl:
        repl.enter()
        out = repl.run("print(1 + 1)")         # b"2\\r\\n"; a traceback raises BoardError
        repl.soft_reset()

The protocol (MicroPython's shared/runtime/pyexec.c): Ctrl-A at the friendly REPL enters the raw
REPL, which answers `raw REPL; CTRL-B to exit\\r\\n>`. Code is then sent either in raw-paste mode
(`\\x05A\\x01` answered `R\\x01`: the board grants a window of bytes and one more window per `\\x01`
it sends, so a slow board is never overrun) or, where the board answers `R\\x00` (understood, not
supported) or with a fresh raw REPL banner (firmware older than raw-paste), as plain bytes ended
by Ctrl-D and acknowledged by `OK`. Either way the board prints the code's output, `\\x04`, any
traceback, `\\x04`, and the next `>` prompt.
"""
import errno
import os
import stat
import struct
import time

import serial

BANNER = b"raw REPL; CTRL-B to exit\r\n"
OLD_FIRMWARE_TAIL = b"w REPL; CTRL-B to exit\r\n>"   # the banner's end, once its first 2 bytes are read
FALLBACK_CHUNK = 256   # the plain raw REPL reads into a line buffer: small chunks, as mpremote sends


class ReplError(Exception):
    """Something went wrong talking to the board; the subclass says what."""


class NoPort(ReplError):
    pass


class PortBusy(ReplError):
    pass


class NotAnswering(ReplError):
    pass


class ConnectionLost(ReplError):
    pass


class BoardError(ReplError):
    """Code sent to the board raised; `traceback` holds what the board printed."""

    def __init__(self, traceback):
        ReplError.__init__(self, traceback.strip().splitlines()[-1] if traceback.strip() else "")
        self.traceback = traceback


NO_SUCH_PORT = ("no such port: %s (is the board plugged in? `ls /dev/ttyUSB* /dev/ttyACM*` lists "
                "the serial ports)")


def lost(exc):
    """The message for a port that failed mid-conversation; the driver's own words last, for
    the rare case they say more."""
    return ("lost the connection to the board: it was unplugged or reset, or another program "
            "took the port (the serial driver said: %s)" % exc)


def check_port(port):
    """NoPort, said plainly, for a name that cannot be a serial port: none, no such file, a
    folder, a plain file. Before a build, so that a mistyped --port is said at once; whether a
    device file is a serial port only opening it tells (open_port)."""
    if not port:
        raise NoPort("no port given: --port names the board's serial port, e.g. /dev/ttyUSB0")
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        raise NoPort(NO_SUCH_PORT % port) from None
    except OSError:
        return          # not ours to look at: the open says why
    if stat.S_ISDIR(mode):
        raise NoPort("%s is a folder, not a serial port (a serial port is a device file such as "
                     "/dev/ttyUSB0)" % port)
    if not stat.S_ISCHR(mode):
        raise NoPort("%s is a file, not a serial port (a serial port is a device file such as "
                     "/dev/ttyUSB0)" % port)


def open_port(port, baudrate=115200, serial_class=serial.Serial):
    """Opens the port for this process alone. A second tether, mpremote or esptool holds a flock
    on it, which makes the open fail; screen, minicom or a plain open() take no lock, so the
    processes that have the port open are looked up too (Linux): either way PortBusy, instead of
    two programs reading one REPL's answers."""
    check_port(port)
    try:
        opened = serial_class(port, baudrate, timeout=0.05, write_timeout=10, exclusive=True)
    except serial.SerialException as exc:
        code = exc.errno
        cause = exc.__context__
        if code is None and isinstance(cause, OSError):
            code = cause.errno
        elif code is None and cause is not None and cause.args and isinstance(cause.args[0], int):
            code = cause.args[0]    # termios.error (errno, text): the port's settings failed
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            raise NoPort(NO_SUCH_PORT % port) from None
        if code == errno.ENOTTY:
            raise NoPort("%s is not a serial port: it takes no serial settings (a serial port "
                         "is a device file such as /dev/ttyUSB0)" % port) from None
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            raise PortBusy("port %s is busy: another program holds it locked (a `tether logs`, "
                           "mpremote or esptool?); close it and try again" % port) from None
        if code == errno.EACCES:
            raise NoPort("permission denied opening %s: add your user to the group that owns it "
                         "(usually `dialout`: sudo usermod -aG dialout $USER, then log in again)"
                         % port) from None
        raise NoPort("cannot open %s: %s" % (port, exc)) from None
    except (ValueError, OverflowError) as exc:    # a baud rate the driver cannot take
        raise NoPort("cannot open %s at %s baud: %s" % (port, baudrate, exc)) from None
    others = holders(port)
    if others:
        opened.close()
        raise PortBusy("port %s is busy: %s %s it open; close it and try again" % (
            port, ", ".join("%s (pid %d)" % (name, pid) for pid, name in others),
            "has" if len(others) == 1 else "have"))
    return opened


def holders(port, proc="/proc"):
    """[(pid, name)] of the other processes that have the port open, from /proc (empty where
    there is none, and for processes this user may not look into). The far end of a pseudo-
    terminal (a process holding its master, as a board simulator does) is not counted: it is
    the board's side, not a program competing for the port."""
    try:
        target = os.path.realpath(port)
        pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []
    index = None
    if target.startswith("/dev/pts/") and target[9:].isdigit():
        index = target[9:]
    out = []
    for pid in pids:
        if pid == os.getpid():
            continue
        fds = "%s/%d/fd" % (proc, pid)
        holds = far_end = False
        try:
            for fd in os.listdir(fds):
                link = os.readlink(fds + "/" + fd)
                if link == target:
                    holds = True
                elif index is not None and link.endswith("ptmx"):
                    with open("%s/%d/fdinfo/%s" % (proc, pid, fd)) as f:
                        far_end = far_end or ("tty-index:\t%s\n" % index) in f.read()
            if holds and not far_end:
                with open("%s/%d/comm" % (proc, pid)) as f:
                    out.append((pid, f.read().strip()))
        except OSError:  # gone meanwhile, or not ours to look into
            continue
    return out


class RawRepl:
    def __init__(self, serial_port, timeout=10.0, fallback_pause=0.01, clock=time.monotonic):
        """timeout: seconds of silence from the board before it counts as not answering.
        fallback_pause: seconds between 256-byte chunks when the board lacks raw-paste (its UART
        buffer would overflow otherwise; raw-paste needs no pause, the board paces it)."""
        self.serial = serial_port
        self.timeout = timeout
        self.fallback_pause = fallback_pause
        self.clock = clock
        self.raw_paste = None      # None: not tried yet; then True or False for this connection
        self.sent = 0              # bytes written to the port, for the progress and the bench
        self.partial = b""
        self._buf = bytearray()    # read ahead of what the protocol has consumed
        self.rebooted = b""        # the console's line that soft_reset() read

    @classmethod
    def open(cls, port, baudrate=115200, **kw):
        return cls(open_port(port, baudrate), **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.serial.close()
        except (OSError, serial.SerialException):
            pass

    # -- bytes -----------------------------------------------------------------------------
    def write(self, data):
        try:
            self.serial.write(data)
        except (OSError, serial.SerialException) as exc:
            raise ConnectionLost(lost(exc)) from None
        self.sent += len(data)

    def _fill(self):
        """Reads what the board has sent (at most 50 ms of waiting) into the look-ahead buffer."""
        try:
            chunk = self.serial.read(max(1, self.serial.in_waiting))
        except (OSError, serial.SerialException) as exc:
            raise ConnectionLost(lost(exc)) from None
        self._buf += chunk
        return len(chunk)

    def read_until(self, ending, timeout=None, overall=None):
        """Bytes up to and including `ending`; None if the board fell silent for `timeout` s
        first, or `overall` s passed (what came is kept in self.partial for the message)."""
        timeout = self.timeout if timeout is None else timeout
        last = began = self.clock()
        start = 0
        while True:
            at = self._buf.find(ending, start)
            if at >= 0:
                data = bytes(self._buf[:at + len(ending)])
                del self._buf[:at + len(ending)]
                return data
            start = max(0, len(self._buf) - len(ending) + 1)
            if self._fill():
                last = self.clock()
            if (self.clock() - last > timeout
                    or (overall is not None and self.clock() - began > overall)):
                self.partial = bytes(self._buf)
                self._buf.clear()
                return None

    def read_exact(self, n):
        last = self.clock()
        while len(self._buf) < n:
            if self._fill():
                last = self.clock()
            elif self.clock() - last > self.timeout:
                raise NotAnswering("the board stopped answering (waited %gs for %d bytes, got %r)"
                                   % (self.timeout, n, bytes(self._buf)))
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def pending(self):
        """True if the board has sent bytes not read yet."""
        if self._buf:
            return True
        try:
            return self.serial.in_waiting > 0
        except (OSError, serial.SerialException) as exc:
            raise ConnectionLost(lost(exc)) from None

    def drain(self, quiet=0.1, limit=1.0):
        """Reads and drops whatever the board prints until it has been quiet for `quiet` s (or
        for `limit` s in all: a program may print without pause)."""
        last = began = self.clock()
        got = bytes(self._buf)
        self._buf.clear()
        while self.clock() - last < quiet and self.clock() - began < limit:
            if self._fill():
                last = self.clock()
        got += bytes(self._buf)
        self._buf.clear()
        return got

    # -- REPL ------------------------------------------------------------------------------
    def enter(self, attempts=2, soft_reset=False):
        """Interrupts whatever runs and enters the raw REPL. soft_reset: then soft-resets the
        board there, which frees the heap the interrupted program held and runs boot.py but not
        main.py (the raw REPL stays)."""
        seen = bytearray()
        for _ in range(attempts):
            # Two Ctrl-C: a program may catch the first KeyboardInterrupt in a retry loop.
            self.write(b"\r\x03\x03")
            seen += self.drain()
            self.write(b"\r\x01")
            data = self.read_until(BANNER + b">", overall=self.timeout)
            if data is not None:
                if soft_reset:
                    self.write(b"\x04")
                    if (self.read_until(b"soft reboot\r\n") is None
                            or self.read_until(BANNER + b">") is None):
                        raise NotAnswering("the board did not come back from a soft reset in the "
                                           "raw REPL (got %r)" % self.partial[-120:])
                return
            seen += self.partial
        if seen:
            tail = bytes(seen[-120:])
            raise NotAnswering(
                "could not enter the raw REPL: the board printed %d bytes but never the raw REPL "
                "prompt (last: %r). Is it a MicroPython board at 115200 baud? A program that "
                "ignores Ctrl-C holds it: press the board's reset button, then run this again"
                % (len(seen), tail))
        raise NotAnswering(
            "could not enter the raw REPL: the board did not answer within %gs. Check the cable "
            "and the port, press the board's reset button and run this again (some USB-serial "
            "adapters need --pause 1 after opening the port)" % self.timeout)

    def run(self, code):
        """Runs code on the board; returns what it printed. A traceback raises BoardError."""
        out, err = self.exec_raw(code)
        if err:
            raise BoardError(err.decode("utf-8", "replace"))
        return out

    def exec_raw(self, code):
        if isinstance(code, str):
            code = code.encode("utf-8")
        if self.raw_paste is not False:
            self.write(b"\x05A\x01")
            answer = self.read_exact(2)
            if answer == b"R\x01":
                self.raw_paste = True
                self._paste(code)
                return self._result()
            self.raw_paste = False
            if answer == b"R\x00":
                ending = b">"        # understood, not supported: the board prompts again
            else:
                ending = OLD_FIRMWARE_TAIL   # old firmware took Ctrl-A as a raw REPL reset
            if self.read_until(ending) is None:
                raise NotAnswering("the board did not answer the raw-paste request (got %r)"
                                   % (answer + self.partial))
        for i in range(0, len(code), FALLBACK_CHUNK):
            self.write(code[i:i + FALLBACK_CHUNK])
            if self.fallback_pause:
                time.sleep(self.fallback_pause)
        self.write(b"\x04")
        answer = self.read_exact(2)
        if answer != b"OK":
            raise ReplError("the board did not accept the code (answered %r)" % answer)
        return self._result()

    def _paste(self, code):
        window = struct.unpack("<H", self.read_exact(2))[0]
        remain = window
        i = 0
        while i < len(code):
            while remain == 0 or self.pending():
                flag = self.read_exact(1)
                if flag == b"\x01":
                    remain += window
                elif flag == b"\x04":        # the board ended the paste early (a syntax error)
                    self.write(b"\x04")
                    return
                else:
                    raise ReplError("unexpected byte %r from the board during raw-paste" % flag)
            piece = code[i:i + remain]
            self.write(piece)
            remain -= len(piece)
            i += len(piece)
        self.write(b"\x04")
        # Window grants still in flight come first; the board's \x04 acknowledges the end.
        if self.read_until(b"\x04") is None:
            raise NotAnswering("the board did not acknowledge the end of the code")

    def _result(self):
        out = self.read_until(b"\x04")
        err = out is not None and self.read_until(b"\x04")
        prompt = err and self.read_exact(1)
        if out is None or not err or prompt != b">":
            raise NotAnswering("the board stopped answering while running code (waited %gs)"
                               % self.timeout)
        return out[:-1], err[:-1]

    def soft_reset(self):
        """Leaves the raw REPL and soft-resets from the friendly REPL, so the board runs main.py.
        Returns False if the board did not confirm the reboot."""
        self.write(b"\r\x02")
        self.write(b"\x04")
        said = self.read_until(b"soft reboot\r\n")
        if said is None:
            return False
        # The console's first line (`MPY: soft reboot`), for whoever follows it from here
        at = said.rfind(b"MPY: soft reboot")    # not the `>>> ` prompt before it
        self.rebooted = said[at if at >= 0 else said.rfind(b"soft reboot"):]
        return True
