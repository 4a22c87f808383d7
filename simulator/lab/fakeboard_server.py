# Runs under the real `micropython` binary as the interpreter of simulator/lab/fakeboard.py's fake board.
# It reads framed code blocks from stdin, runs each in one persistent namespace (as the raw REPL
# does), and frames what the code printed and any traceback back on stdout.
#
#   in:   "X <n>\n" + n bytes of code     run it
#         "R\n"                           soft reset: a fresh namespace
#   out:  "O <n>\n" + n bytes             printed output
#         "E <n>\n" + n bytes             traceback
#         "D\n"                           the block has ended
#         "W <n> <path>\n"                a file opened for writing was closed after n bytes
#         "C\n"                           the cut point was reached: the board dies here
#
# argv: ROOT NAME MPY PLATFORM MISSING BUDGET CUT_PATH CUT_AFTER CORRUPT_PATH FREE MACHINE
# (MISSING/MPY/BUDGET/CUT_AFTER/CORRUPT_PATH/FREE "-" for none; FREE: bytes os.statvfs reports
# free, in 4 KB blocks as LittleFS on an ESP32; MISSING: modules, comma-separated,
# the board's firmware lacks; CORRUPT_PATH: the first byte written to a file whose path contains it is
# flipped, as a noisy line would)
# The board's "/" is ROOT: paths are mapped by the open() and os stand-ins below (the unix port's
# VfsPosix mounted at "/" mangles os.rename's first path in this version).
import sys
import io

_real_sys = sys
_out = sys.stdout.buffer
_in = sys.stdin.buffer
_args = sys.argv[1:]
ROOT = _args[0].rstrip("/")
NAME = _args[1]
MPY = None if _args[2] == "-" else int(_args[2])
PLATFORM = _args[3]
MISSING = [] if _args[4] == "-" else _args[4].split(",")
budget = None if _args[5] == "-" else int(_args[5])
CUT_PATH = None if _args[6] == "-" else _args[6]
CUT_AFTER = None if _args[7] == "-" else int(_args[7])
CORRUPT = None if _args[8] == "-" else _args[8]
FREE = None if _args[9] == "-" else int(_args[9])
MACHINE = _args[10]     # sys.implementation._machine: the board and the chip it names

import os as _real_os
_real_open = open


def frame(kind, data=b""):
    if kind in "OE":
        _out.write(b"%s %d\n" % (kind.encode(), len(data)))
        _out.write(data)
    else:
        _out.write(kind.encode() + b"\n")
    _out.flush()


def host_path(path):
    if not path.startswith("/"):
        path = cwd + ("" if cwd.endswith("/") else "/") + path
    return ROOT + path


cwd = "/"


def die():
    frame("C")
    while True:          # the fake board kills this process
        _in.read(1)


class WriteFile:
    """A file opened for writing, with the board's byte budget and the test's cut point."""

    def __init__(self, path, f):
        self.path = path
        self.f = f
        self.n = 0

    def write(self, data):
        global budget
        data = bytes(data)
        if CORRUPT is not None and CORRUPT in self.path and self.n == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if CUT_PATH is not None and CUT_PATH in self.path and self.n + len(data) >= CUT_AFTER:
            self.f.write(data[:CUT_AFTER - self.n])
            self.f.close()
            die()
        if budget is not None and len(data) > budget:
            self.f.write(data[:budget])
            self.n += budget
            budget = 0
            raise OSError(28)
        if budget is not None:
            budget -= len(data)
        self.n += len(data)
        return self.f.write(data)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
            _out.write(b"W %d %s\n" % (self.n, self.path.encode()))
            _out.flush()

    def flush(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def board_open(path, mode="r", *args):
    f = _real_open(host_path(path), mode, *args)
    if "w" in mode or "a" in mode:
        return WriteFile(path, f)
    return f


class BoardOs:
    sep = "/"

    def __getattr__(self, name):
        return getattr(_real_os, name)

    def stat(self, p):
        return _real_os.stat(host_path(p))

    def mkdir(self, p):
        return _real_os.mkdir(host_path(p))

    def rmdir(self, p):
        return _real_os.rmdir(host_path(p))

    def remove(self, p):
        return _real_os.remove(host_path(p))

    unlink = remove

    def rename(self, a, b):
        return _real_os.rename(host_path(a), host_path(b))

    def listdir(self, p=""):
        return _real_os.listdir(host_path(p or cwd))

    def ilistdir(self, p=""):
        return _real_os.ilistdir(host_path(p or cwd))

    def statvfs(self, p):
        if FREE is not None:
            return (4096, 4096, 512, FREE // 4096, FREE // 4096, 0, 0, 0, 0, 255)
        return _real_os.statvfs(host_path(p))

    def chdir(self, p):
        global cwd
        _real_os.stat(host_path(p))
        cwd = p if p.startswith("/") else host_path(p)[len(ROOT):]

    def getcwd(self):
        return cwd

    def sync(self):
        pass


class Implementation:
    def __init__(self):
        self.name = NAME
        self.version = _real_sys.implementation.version
        self._mpy = _real_sys.implementation._mpy if MPY is None else MPY
        self._machine = MACHINE


class BoardSys:
    def __init__(self):
        self.implementation = Implementation()
        self.platform = PLATFORM

    def __getattr__(self, name):
        return getattr(_real_sys, name)


class Missing:
    """A module without the names the code wants: `from hashlib import sha256` fails as on
    firmware built without it."""


def board_print(*args, sep=" ", end="\n", file=None):
    frame("O", (sep.join([str(a) for a in args]) + end).encode())


_real_sys.modules["os"] = BoardOs()
_real_sys.modules["sys"] = BoardSys()
for _name in MISSING:
    _real_sys.modules[_name] = Missing()


def fresh():
    return {"__name__": "__main__", "print": board_print, "open": board_open}


def read_exact(n):
    data = b""
    while len(data) < n:
        more = _in.read(n - len(data))
        if not more:
            raise SystemExit(0)
        data += more
    return data


namespace = fresh()
while True:
    line = _in.readline()
    if not line:
        break
    if line.startswith(b"R"):
        namespace = fresh()
        cwd = "/"
        continue
    code = read_exact(int(line.split()[1]))
    try:
        exec(code.decode(), namespace)
    except BaseException as exc:
        buf = io.StringIO()
        _real_sys.print_exception(exc, buf)
        frame("E", buf.getvalue().encode())
    frame("D")
