"""`tether flash`: copies a bundle (see `tether build`) onto a MicroPython board through its raw
REPL, and optionally writes the MicroPython firmware image first with esptool.

HOST-ONLY. What happens, in order (docs/flash.md says it for users):
1. (--firmware) esptool erases the flash and writes the image;
2. the port is opened for this process alone, the running program interrupted, the raw REPL
   entered and the board soft-reset in it (main.py does not run; the heap is free);
3. the board says what it is: implementation, sys.implementation._mpy, whether it has
   hashlib.sha256 and binascii. A board that is not MicroPython, or cannot load the bundle's
   .mpy files, is refused here, before anything is written;
4. the board hashes the files it has (and drops a PATH.part a cut copy left); the changed
   files must fit in the free space statvfs reports, or nothing is written; each file whose
   SHA-256 differs is written to PATH.part, checked on the board (SHA-256, or the size where
   the board has no sha256) and renamed over PATH, so a copy cut mid-file leaves the old file
   whole;
5. files the previous bundle had and this one lacks (the board's /manifest.json, read when it
   differs from the new one) are deleted; /manifest.json goes last;
6. a soft reset from the friendly REPL starts main.py.
"""
import ast
import base64
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import zlib

from firmware import build, logs, ports, rawrepl
from firmware.args import seconds

# Exit codes (docs/flash.md)
EXIT_OK = 0
EXIT_FAILED = 1          # the board raised something unexpected, or a file failed its check
EXIT_BAD_INPUT = 2       # arguments, profile or bundle
EXIT_NO_PORT = 3
EXIT_PORT_BUSY = 4
EXIT_NOT_ANSWERING = 5
EXIT_NOT_MICROPYTHON = 6
EXIT_INCOMPATIBLE = 7
EXIT_FS_FULL = 8
EXIT_CONNECTION_LOST = 9
EXIT_ESPTOOL = 10
EXIT_INTERRUPTED = 130   # Ctrl-C, as a shell counts it

# What the bits 10 and up of a board's sys.implementation._mpy name (0: no native code).
MPY_ARCH_BY_CODE = ("none",) + build.ARCH_CODES
FIRMWARE_OFFSETS = {"esp32": "0x1000", "esp32s2": "0x1000", "esp32s3": "0x0", "esp32c3": "0x0",
                    "esp32c6": "0x0"}
IMAGE_MAGIC = 0xE9
IMAGE_HEADER = 24      # the common header (8 bytes) and its extension (16), chip id at 12-13
# An application image (micropython.org's .app-bin, what an OTA update writes) starts its first
# segment, right after the headers, with esp_app_desc_t's magic word: a bootloader does not
APP_DESC_AT, APP_DESC_MAGIC = 32, b"\x32\x54\xcd\xab"     # 0xABCD5432, little-endian
IMAGE_CHIPS = {0: "esp32", 2: "esp32s2", 9: "esp32s3", 5: "esp32c3", 13: "esp32c6"}
TEMP_SUFFIX = ".part"
MANIFEST = "manifest.json"
UNIX_PORTS = ("linux", "darwin")  # sys.platform where a sim bundle may run (the unix port)
ENTRY = "main.py"
ASIDE_SUFFIX = ".off"   # the entry point while a flash is under way (_off and _on below)
DEFLATE_WBITS = 10   # the window the board's _d() decompresses with (1 KB)
ENOSPC = re.compile(r"OSError: (\[Errno 28\]|28\b|ENOSPC)")

# Defined on the board once per flash. Paths are absolute: the board's cwd may not be "/".
BOARD_HELPERS = r"""
import os,sys
try:
 from hashlib import sha256 as _S
except ImportError:
 _S=None
try:
 from binascii import a2b_base64 as _B
except ImportError:
 _B=None
try:
 from deflate import DeflateIO as _X,RAW as _R
 from io import BytesIO as _Y
except ImportError:
 _X=None
# A board Tether runs on has its watchdog started by /main.py, and a soft reset does not stop
# it: feed it while flashing (a board without one gets one, which the next main.py feeds).
_g=None
try:
 os.stat('/manifest.json')
 import machine
 _g=machine.WDT(timeout=30000)
except Exception:
 pass
# A flash interrupts the agent on purpose: not a crash boot (firmware/board.py's count).
try:os.remove('/tether_boots')
except OSError:pass
def _k():
 if _g:_g.feed()
def _d(b):
 return _X(_Y(b),_R,10).read()
def _h(p):
 try:f=open(p,'rb')
 except OSError:return ''
 h=_S();b=bytearray(512);m=memoryview(b)
 while 1:
  n=f.readinto(b)
  if not n:break
  h.update(m[:n])
 f.close()
 return '%02x'*32%tuple(h.digest())
def _z(p):
 try:return os.stat(p)[6]
 except OSError:return -1
def _hs(ps):
 r=[]
 for p in ps:
  _k()
  try:os.remove(p+'.part')
  except OSError:pass
  r.append((_h(p) if _S else None,_z(p)))
 print(repr(r))
def _fr():
 try:
  v=os.statvfs('/');return (v[1] or v[0],v[4])
 except Exception:return None
def _md(p):
 i=p.find('/',1)
 while i>0:
  try:os.mkdir(p[:i])
  except OSError:pass
  i=p.find('/',i+1)
def _o(p):
 global _f
 _md(p);_f=open(p,'wb')
def _w(d):
 _k();_f.write(d)
def _c(t,p,h,n):
 _f.close()
 g=_h(t) if _S and h else _z(t)
 if g!=(h if _S and h else n):
  os.remove(t);print(repr(g));return
 try:os.rename(t,p)
 except OSError:
  os.remove(p);os.rename(t,p)
 print("'ok'")
def _x(t):
 try:_f.close()
 except Exception:pass
 try:os.remove(t)
 except OSError:pass
def _off():
 try:os.stat('/main.py')
 except OSError:return
 try:os.remove('/main.py.off')
 except OSError:pass
 os.rename('/main.py','/main.py.off')
def _on():
 try:os.stat('/main.py')
 except OSError:
  try:os.rename('/main.py.off','/main.py')
  except OSError:pass
 try:os.remove('/main.py.off')
 except OSError:pass
def _rm(p):
 _k()
 try:os.remove(p+'.part')
 except OSError:pass
 try:os.remove(p)
 except OSError:return
 i=p.rfind('/')
 while i>0:
  try:os.rmdir(p[:i])
  except OSError:return
  i=p.rfind('/',0,i)
def _m():
 try:
  f=open('/manifest.json','rb');t=f.read();f.close()
 except Exception:t=None
 return t
def _fz(ms):
 # Tether frozen into the firmware: its version, profile format, and which of ms it lacks,
 # looked up past the filesystem (whose modules come first on sys.path); None if not frozen.
 p=sys.path;s=list(p)
 for x in s:
  if x=='' or x[:1]=='/':p.remove(x)
 try:
  try:
   import agent.runtime as r,agent.profile as q
  except ImportError:return None
  o=[]
  for m in ms:
   try:__import__(m)
   except ImportError:o.append(m)
  return (r.VERSION,q.FORMAT,o)
 finally:
  p.clear();p.extend(s)
def _hp():
 # the heap free for a program (the REPL's own few KB aside), and the word size
 try:
  import gc
  gc.collect()
  return (gc.mem_free(),64 if sys.maxsize>2**32 else 32)
 except Exception:
  return None
i=sys.implementation
print(repr((i.name,getattr(i,'_mpy',None),'.'.join(str(v) for v in i.version[:3]),sys.platform,_S is not None,_B is not None,_X is not None,_fr(),_hp(),getattr(i,'_machine',''))))
"""


class FlashError(Exception):
    def __init__(self, message, code):
        Exception.__init__(self, message)
        self.code = code


class Refused(FlashError):
    """A flash given up while the board still answers. whole: nothing of its bundle is set
    aside, so it may run."""
    def __init__(self, message, code, whole=True):
        FlashError.__init__(self, message, code)
        self.whole = whole


class BundleError(FlashError):
    def __init__(self, message):
        FlashError.__init__(self, message, EXIT_BAD_INPUT)


ASIDE = (". /main.py is set aside (as /main.py.off) until a flash completes, so that a mix of "
         "old and new modules does not run")


def mid_copy(board):
    """What a flash cut during the copy left on the board (None: the board is not known yet)."""
    return (". No file was left half written: files not yet renamed on the board are as they "
            "were%s. Flash again (files already copied are not sent again)"
            % ("; once the copy had begun," + ASIDE[1:] if board is None else
               ", and" + ASIDE[1:] if board.is_aside else ""))
REPL_CODES = ((rawrepl.NoPort, EXIT_NO_PORT), (rawrepl.PortBusy, EXIT_PORT_BUSY),
              (rawrepl.NotAnswering, EXIT_NOT_ANSWERING),
              (rawrepl.ConnectionLost, EXIT_CONNECTION_LOST))


# -- the bundle ----------------------------------------------------------------------------------
def _safe_path(path):
    return (isinstance(path, str) and path and not path.startswith("/") and "\\" not in path
            and all(part not in ("", ".", "..") for part in path.split("/")))


def load_bundle(folder):
    """The bundle's manifest, with each file checked against it (size and SHA-256)."""
    folder = pathlib.Path(folder)
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError("%s: cannot read the bundle's manifest (%s); make one with "
                          "`tether build PROFILE -o %s`" % (path, exc.strerror or exc, folder))
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise BundleError("%s: not JSON (%s)" % (path, exc))
    problem = _manifest_problem(manifest)
    if problem:
        raise BundleError("%s: %s" % (path, problem))
    for entry in manifest["files"]:
        file = folder / entry["path"]
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError("%s: listed in the manifest but cannot be read (%s)"
                              % (file, exc.strerror or exc))
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError("%s: differs from the manifest (size or SHA-256): the bundle was "
                              "changed after `tether build`; build it again" % file)
    return manifest


def _manifest_problem(m):
    if not isinstance(m, dict) or m.get("format") != 1:
        return "expected a bundle manifest with \"format\": 1"
    mpy = m.get("mpy")
    frozen = m.get("frozen")
    if frozen is not None:
        if (mpy is not None or not isinstance(frozen, dict)
                or not isinstance(frozen.get("needs"), list)
                or not all(isinstance(n, str) and re.fullmatch(r"[a-z_][a-z0-9_.]*", n)
                           for n in frozen["needs"])):
            return "expected \"frozen\": {\"needs\": [module names]} and \"mpy\": null"
    elif (not isinstance(mpy, dict) or not isinstance(mpy.get("version"), int)
            or not isinstance(mpy.get("sub"), int)
            or not (mpy.get("arch") is None or mpy.get("arch") in build.ARCH_CODES)):
        return ("expected \"mpy\": {\"version\": int, \"sub\": int, \"arch\": null or one of %s}"
                % ", ".join(build.ARCH_CODES))
    files = m.get("files")
    if not isinstance(files, list):
        return "expected \"files\": a list"
    for entry in files:
        if (not isinstance(entry, dict) or not _safe_path(entry.get("path"))
                or entry.get("path") == MANIFEST
                or not isinstance(entry.get("size"), int)
                or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256")))):
            return ("expected each file as {\"path\": a relative path, \"size\": int, "
                    "\"sha256\": 64 hex digits}, got %.100r" % (entry,))
    return None


def frozen_problem(manifest, found):
    """None if the board's firmware holds the frozen Tether a --frozen bundle needs (found:
    what the board's _fz() answered), else why not."""
    from agent.profile import FORMAT
    if found is None:
        return ("it was built --frozen, and this board's firmware has no Tether frozen in: "
                "build MicroPython with firmware/manifest.py (docs/esp32.md, Freezing), or "
                "flash without --frozen")
    if not (isinstance(found, tuple) and len(found) == 3 and isinstance(found[2], list)):
        return "unexpected answer from the board about its frozen modules: %.100r" % (found,)
    version, fmt, missing = found
    if fmt != FORMAT:
        return ("the Tether frozen into the board's firmware (%s) reads profiles of format %s, "
                "this one is format %s: freeze this Tether (%s), or build the profile with "
                "that one" % (version, fmt, FORMAT, manifest.get("tether")))
    if missing:
        return ("the board's firmware (Tether %s frozen in) lacks %s, which this profile uses: "
                "freeze them too (firmware/manifest.py's drivers)" % (version, ", ".join(missing)))
    return None


# The oldest MicroPython the board code runs on: `import asyncio` (uasyncio before 1.21) and
# ssl.SSLContext.load_verify_locations(cadata=) (1.22). 1.20 loads the same .mpy version, so
# the .mpy check alone let a bundle onto a board that then failed at boot.
MIN_MICROPYTHON = (1, 22)


def check_compatible(manifest, board_mpy, board_version=None):
    """None if the board can load and run the bundle, else why not (MicroPython's loader rule
    in py/persistentcode.c: the version must match; the sub-version and arch only matter for
    native code, i.e. a bundle built with --arch); board_version: its MicroPython's "1.22.0"."""
    try:
        running = tuple(int(x) for x in str(board_version).split(".")[:2])
    except ValueError:
        running = None
    if board_version is not None and running is not None and running < MIN_MICROPYTHON:
        return ("the board runs MicroPython %s; Tether's board code needs %d.%d or later "
                "(asyncio, ssl.SSLContext): flash a newer MicroPython (--firmware)"
                % ((board_version,) + MIN_MICROPYTHON))
    mpy = manifest["mpy"]
    if mpy is None:      # a bundle for frozen Tether: no .mpy to load (frozen_problem below)
        return None
    wanted = "%d.%d%s" % (mpy["version"], mpy["sub"],
                          " (%s)" % mpy["arch"] if mpy["arch"] else "")
    if board_mpy is None:
        return ("the board does not report sys.implementation._mpy (MicroPython before 1.19): "
                "it cannot load .mpy %s files; flash a newer MicroPython (--firmware)" % wanted)
    version, sub, arch = board_mpy_parts(board_mpy)
    has = mpy_text(version, sub, arch)
    if version != mpy["version"]:
        return ("the board loads .mpy version %s, the bundle is .mpy %s: flash a MicroPython "
                "whose mpy-cross matches (or build with a matching mpy-cross)" % (has, wanted))
    if mpy["arch"] is not None:
        if sub != mpy["sub"]:
            return ("the board loads .mpy %s, the bundle's native code is .mpy %s: native code "
                    "needs the same sub-version" % (has, wanted))
        if not _arch_fits(mpy["arch"], arch):
            if arch == "none":
                return ("the bundle holds native code for %s, the board's MicroPython runs "
                        "bytecode only: build without --arch" % mpy["arch"])
            return ("the bundle holds native code for %s, the board is %s: build with "
                    "--arch %s, or without --arch" % (mpy["arch"], arch, arch))
    return None


def board_mpy_parts(board_mpy):
    """(version, sub-version, arch name) of a board's sys.implementation._mpy."""
    code = board_mpy >> 10
    arch = MPY_ARCH_BY_CODE[code] if code < len(MPY_ARCH_BY_CODE) else "arch %d" % code
    return board_mpy & 0xFF, (board_mpy >> 8) & 3, arch


def mpy_text(version, sub, arch):
    """'6.3 (xtensawin)', or '6.3 (bytecode only)' for a port without native code."""
    return "%d.%d (%s)" % (version, sub, "bytecode only" if arch == "none" else arch)


def _arch_fits(bundle, board):
    if bundle == board:
        return True
    codes = build.ARCH_CODES
    arm = codes[codes.index("armv6m"):codes.index("armv7emdp") + 1]
    return bundle in arm and board in arm and arm.index(bundle) <= arm.index(board)


# The heap a bundle's modules take at a 32-bit word size (an ESP32's) against the 64-bit unix
# port's, where `tether build` measures it: bytecode and strings take the same bytes, pointers
# and object headers half (docs/esp32.md, "Heap": 110 KB against 153 KB).
WORD32 = 0.72
# The agent's data (the batch buffer, MQTT's, TLS, the sampler's channels, insights) on top of
# its modules, at the printer's live peak: 217.6 KiB against 157.7 KiB imported.
DATA = 1.4


def heap_problem(measured, board):
    """What to warn of when the bundle's modules (measured: bytes on the 64-bit unix port, or
    None) would not leave the board's heap (board: (free bytes, word bits), or None) room to
    run; else None. A warning, not a refusal: the figures are estimates."""
    if not measured or not board:
        return None
    free, bits = board
    need = measured * (WORD32 if bits == 32 else 1.0)
    if need >= free:
        return ("the bundle's modules alone take about %d KiB of heap here, and the board has "
                "%d KiB free: it will stop at boot (\"the heap is too small for this "
                "profile\"). Use a board with PSRAM (the SPIRAM firmware), or Tether frozen "
                "into the firmware (--frozen): docs/esp32.md, Heap" % (need // 1024,
                                                                        free // 1024))
    if need * DATA > free:
        return ("the bundle's modules take about %d KiB of the board's %d KiB of free heap, "
                "and the agent's data needs some %d%% more: it may run out of heap while it "
                "runs (docs/esp32.md, Heap)" % (need // 1024, free // 1024,
                                               round((DATA - 1) * 100)))
    return None


def space_problem(plan, space):
    """None if the copies fit, else how much is missing. plan: (new size, size on the board or
    -1) of each file to send, in order; space: (block size, free blocks) from statvfs, or None
    (not known: the copy is tried). Each file is counted in whole blocks; while it is written
    its old version is still there, and is freed by the rename."""
    if not plan or not space:
        return None
    block, free = space
    if not block:
        return None

    def blocks(size):
        return -(-max(size, 0) // block)

    grown = peak = 0
    for new, was in plan:
        peak = max(peak, grown + blocks(new))
        grown += blocks(new) - blocks(was)
    if peak <= free:
        return None
    return ("the copy needs %d KB free at its peak, the board has %d KB"
            % (peak * block // 1024, free * block // 1024))


# -- the board -----------------------------------------------------------------------------------
def board_chip(machine):
    """The chip a MicroPython board names in sys.implementation._machine ('Generic ESP32C3
    module with ESP32C3' -> 'esp32c3'; a part number, 'LOLIN_C3_MINI with ESP32-C3FH4', too),
    or None (another board, one of a chip tether flash does not write, or none named)."""
    m = re.search(r"with (ESP32[-\w]*)\s*$", machine or "")
    if not m:
        return None
    name = m.group(1).lower().replace("-", "")
    for chip in ("esp32s2", "esp32s3", "esp32c3", "esp32c6"):
        if name.startswith(chip):
            return chip
    # ESP32-D0WD or -PICO-D4 is the classic ESP32; -H2, -C5, -P4 are others
    return "esp32" if not re.match(r"esp32[a-z]\d", name) else None


class Board:
    """What the board said about itself, and the operations on it (through the raw REPL)."""

    def __init__(self, repl):
        self.repl = repl
        self.entry_aside = False    # /main.py.off there when this flash began (hashes)
        self.had_entry = False      # a /main.py there, in place or aside
        self.is_aside = False       # /main.py is aside now
        out = repl.run(BOARD_HELPERS)
        try:
            info = ast.literal_eval(out.decode("utf-8", "replace").strip())
            (self.name, self.mpy, self.version, self.platform, self.has_sha256,
             self.has_base64, self.has_deflate, self.space, self.heap, self.machine) = info
        except (ValueError, SyntaxError, TypeError):
            raise FlashError("the board answered the probe with %.200r: not a MicroPython board "
                             "Tether can flash" % out, EXIT_NOT_MICROPYTHON)

    def describe(self):
        if self.mpy is None:
            mpy = "no .mpy version"
        else:
            mpy = ".mpy " + mpy_text(*board_mpy_parts(self.mpy))
        return "%s %s on %s, %s" % (self.name, self.version, self.platform, mpy)

    def ask(self, code):
        """The value the board prints as a Python literal for code."""
        out = self.repl.run(code)
        try:
            return ast.literal_eval(out.decode("utf-8", "replace").strip())
        except (ValueError, SyntaxError):
            raise FlashError("unexpected answer from the board: %.200r" % out, EXIT_FAILED)

    def old_manifest(self):
        """The files of the bundle flashed before, or None (none there, or unreadable)."""
        text = self.ask("print(repr(_m()))")
        if text is None:
            return None
        try:
            old = json.loads(text)
            return [e["path"] for e in old["files"] if _safe_path(e.get("path"))]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def hashes(self, paths):
        """(SHA-256 or None, size or -1 when missing) of each path on the board. The entry
        point set aside by a flash cut before it ended (below) is taken for /main.py, and
        stays aside until this flash completes: one refused before it writes must not let a
        mix of old and new modules boot."""
        names = ["/" + p for p in paths]
        # the entry point and its aside name, whatever the bundle holds: aside() moves it
        hashes = self.ask("_hs(%r)" % (names + ["/" + ENTRY, "/" + ENTRY + ASIDE_SUFFIX],))
        if not isinstance(hashes, list) or len(hashes) != len(paths) + 2:
            raise FlashError("unexpected answer from the board: %.200r" % (hashes,), EXIT_FAILED)
        aside = hashes.pop()
        entry = hashes.pop()
        self.entry_aside = aside[1] >= 0
        if self.entry_aside and ENTRY in paths and entry[1] < 0:
            hashes[paths.index(ENTRY)] = aside
        self.had_entry = self.entry_aside or entry[1] >= 0
        self.is_aside = self.entry_aside and entry[1] < 0
        return hashes

    def write(self, path, data, digest, chunk, progress):
        """Writes data to path.part, checks it, renames it over path."""
        target = "/" + path
        temp = target + TEMP_SUFFIX
        pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
        try:
            for i, piece in enumerate(pieces):
                code = "_o(%r)\n" % temp if i == 0 else ""
                if piece:
                    code += "_w(%s)\n" % self._literal(piece)
                if i == len(pieces) - 1:
                    code += "_c(%r,%r,%r,%d)\n" % (temp, target, digest, len(data))
                    answer = self.ask(code)
                else:
                    self.repl.run(code)
                progress.advance(len(piece))
        except rawrepl.BoardError as exc:
            if ENOSPC.search(exc.traceback):
                self.repl.run("_x(%r)" % temp)
                raise FlashError("the board's filesystem is full: %s did not fit (%d bytes); "
                                 "the old file is kept, the partial copy removed. Free space on "
                                 "the board or make the bundle smaller" % (path, len(data)),
                                 EXIT_FS_FULL)
            raise FlashError("the board failed writing %s: %s" % (path, exc.traceback.strip()),
                             EXIT_FAILED)
        if answer != "ok":
            raise FlashError("%s: the copy on the board does not match (got %r): the serial line "
                             "lost bytes; the old file is kept. Flash again" % (path, answer),
                             EXIT_FAILED)

    def _literal(self, piece):
        """The chunk as the board's code carries it: deflated where that saves a tenth (a 2 KB
        chunk of .mpy takes ~25 % fewer bytes on the line; a 1 KB window, little RAM), base64
        where the board has binascii (bytes literals escape most of a .mpy's bytes as \\xNN)."""
        if not self.has_base64:
            return repr(piece)
        if self.has_deflate:
            packer = zlib.compressobj(9, zlib.DEFLATED, -DEFLATE_WBITS)
            packed = packer.compress(piece) + packer.flush()
            if len(packed) < 0.9 * len(piece):
                return "_d(_B(%r))" % base64.b64encode(packed).decode()
        return "_B(%r)" % base64.b64encode(piece).decode()

    def aside(self):
        """Keeps /main.py from running until the flash ends: a copy cut between two files
        leaves old and new modules side by side, which must not boot (the next flash or
        `_on()` puts it back)."""
        self.repl.run("_off()")
        self.is_aside = self.had_entry

    def restore(self):
        self.repl.run("_on()")
        self.is_aside = False

    def remove(self, paths):
        if ENTRY in paths:
            # the old bundle's entry point, set aside by this flash or a cut one: gone too,
            # or restore() would put it back, listed in no manifest
            paths = paths + [ENTRY + ASIDE_SUFFIX]
            self.had_entry = self.is_aside = False
        for i in range(0, len(paths), 20):
            self.repl.run("".join("_rm(%r)\n" % ("/" + p) for p in paths[i:i + 20]))


# -- progress ----------------------------------------------------------------------------------
class _Quiet:
    def advance(self, n):
        pass


class PlainProgress:
    """One line per file: what a log or a CI job keeps."""

    def __init__(self, out):
        self.out = out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin(self, files, size):
        pass

    def start(self, path, size):
        self.path, self.size = path, size

    def advance(self, n):
        pass

    def done(self):
        self.out.write("  sent %s (%d bytes)\n" % (self.path, self.size))
        self.out.flush()

    def line(self, text):
        self.out.write(text + "\n")
        self.out.flush()


class RichProgress:
    """On a terminal: a bar for the whole copy and one for the file being sent, and a line for
    each file sent."""

    def __init__(self, out):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
        self.console = Console(file=out)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 console=self.console, transient=True)
        self.task = self.all = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False

    def begin(self, files, size):
        if files:
            self.all = self.progress.add_task("%d file%s" % (files, "s" if files != 1 else ""),
                                              total=max(size, 1))

    def start(self, path, size):
        self.path, self.size = path, size
        self.task = self.progress.add_task("  " + path, total=max(size, 1))

    def advance(self, n):
        self.progress.advance(self.task, n)
        if self.all is not None:
            self.progress.advance(self.all, n)

    def done(self):
        self.progress.remove_task(self.task)
        self.line("  sent %s (%d bytes)" % (self.path, self.size))

    def line(self, text):
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


def progress_for(out):
    isatty = getattr(out, "isatty", None)
    return RichProgress(out) if isatty is not None and isatty() else PlainProgress(out)


# -- flashing ----------------------------------------------------------------------------------
def flash_bundle(folder, port, out=None, timeout=10.0, fallback_pause=0.01, chunk=None,
                 reset=True, pause=0.0, attempts=2, then=None):
    """Copies the bundle in folder onto the board at port. Returns a summary dict; raises
    FlashError with the exit code. then(serial link, bytes already read): called once the
    flash ended, on the port still open, so that nothing the board prints is missed."""
    out = sys.stdout if out is None else out
    manifest = load_bundle(folder)
    folder = pathlib.Path(folder)
    started = time.monotonic()
    try:
        repl = rawrepl.RawRepl.open(port, timeout=timeout, fallback_pause=fallback_pause)
    except rawrepl.ReplError as exc:
        raise _as_flash_error(exc)
    seen = {}       # what _flash learnt of the board, for the messages here
    with repl:
        try:
            if pause:
                time.sleep(pause)
            repl.enter(attempts=attempts, soft_reset=True)
            summary = _flash(repl, manifest, folder, port, out, chunk, reset, started, seen)
        except Refused as exc:
            # The probe interrupted the board's program and left it in the raw REPL: a
            # refusal must leave it running as it was (or as far as it can: main.py aside).
            try:
                if repl.soft_reset():
                    exc.args = (exc.args[0] + ". The board was soft-reset%s" % (
                        " and runs its program again" if exc.whole else ""),)
            except rawrepl.ReplError:
                pass
            raise
        except rawrepl.ReplError as exc:
            raise _as_flash_error(exc)
        except KeyboardInterrupt:
            raise FlashError("interrupted" + mid_copy(seen.get("board")), EXIT_INTERRUPTED)
        if then is not None:
            then(repl.serial, repl.rebooted + bytes(repl._buf))
        return summary


def _as_flash_error(exc):
    for cls, code in REPL_CODES:
        if isinstance(exc, cls):
            return FlashError(str(exc), code)
    if isinstance(exc, rawrepl.BoardError):
        return FlashError("the board raised: %s" % exc.traceback.strip(), EXIT_FAILED)
    return FlashError(str(exc), EXIT_FAILED)


def _flash(repl, manifest, folder, port, out, chunk, reset, started, seen):
    try:
        board = Board(repl)
    except rawrepl.BoardError as exc:
        raise Refused("the board on %s runs something that is not MicroPython (the probe "
                         "failed: %s)" % (port, exc), EXIT_NOT_MICROPYTHON)
    seen["board"] = board
    if board.name != "micropython":
        raise Refused("the board on %s runs %s, not MicroPython: Tether's bundle needs "
                         "MicroPython (flash it with --firmware)" % (port, board.name),
                         EXIT_NOT_MICROPYTHON)
    why = check_compatible(manifest, board.mpy, board.version)
    if not why and manifest.get("frozen"):
        why = frozen_problem(manifest, board.ask("print(repr(_fz(%r)))"
                                                 % (manifest["frozen"]["needs"],)))
    if not why and manifest.get("platform") == "sim" and board.platform not in UNIX_PORTS:
        why = ("it was built for platform: sim (virtual chips, no WiFi), and this board is %s: "
               "build it from a profile with platform: esp32" % (board.platform,))
    found = board_chip(board.machine)
    if not why and manifest.get("chip") and found and found != manifest["chip"]:
        # its pins are another chip's: a C3's I2C on GPIO8/9 is a classic ESP32's flash
        why = ("it was built for chip: %s, and this board is an %s (%r): set the profile's "
               "chip" % (manifest["chip"], found, board.machine))
    if why:
        raise Refused("refusing to flash %s: %s. Nothing was written" % (folder, why),
                      EXIT_INCOMPATIBLE)
    low = heap_problem(manifest.get("heap"), board.heap)
    if chunk is None:
        chunk = 2048 if repl.raw_paste else 1024
    files = manifest["files"]
    manifest_bytes = (folder / MANIFEST).read_bytes()
    wanted = [(e["path"], e["sha256"]) for e in files]
    wanted.append((MANIFEST, hashlib.sha256(manifest_bytes).hexdigest()))
    on_board = board.hashes([p for p, _ in wanted])
    # The board's manifest is read only when it differs from this one (it is kilobytes).
    old = (board.old_manifest() if on_board[-1][0] != wanted[-1][1]
           else [e["path"] for e in files])
    new_paths = set(p for p, _ in wanted)
    stale = sorted(p for p in (old or ()) if p not in new_paths)
    changed = [(p, h, got[1]) for (p, h), got in zip(wanted, on_board) if got[0] != h]
    sizes = dict((e["path"], e["size"]) for e in files)
    sizes[MANIFEST] = len(manifest_bytes)
    short = space_problem([(sizes[p], was) for p, _, was in changed], board.space)
    if short:
        raise Refused("the board's filesystem is full: %s. Nothing was written: remove files "
                      "of your own from the board, or flash a smaller profile%s"
                      % (short, ASIDE if board.is_aside else ""), EXIT_FS_FULL,
                      whole=not board.is_aside)
    to_send = [(p, h) for p, h, _ in changed]
    manifest_changed = to_send and to_send[-1][0] == MANIFEST
    if manifest_changed:
        to_send.pop()
    to_send.sort(key=lambda e: e[0] == ENTRY)  # the entry point last, once the rest is there
    # Files this bundle adds are listed on the board before they are written, so that a flash
    # cut midway leaves none that a later flash would not know to remove.
    adding = sorted(p for p, _ in to_send if p not in (old or ()))
    interim = None
    if adding and to_send:
        interim = json.dumps({"format": 1, "files": [
            {"path": p} for p in sorted(set(old or ()) | set(adding))]}).encode()
    mode = "raw-paste" if repl.raw_paste else "raw REPL without raw-paste"
    sent_bytes = 0
    with progress_for(out) as progress:
        progress.line("board on %s: %s (%s)" % (port, board.describe(), mode))
        if low:
            progress.line("warning: " + low)
        if not board.has_sha256:
            progress.line("the board has no hashlib.sha256: every file is sent, and checked by "
                          "its size")
        writes = bool(manifest_changed or to_send or stale)   # the manifest goes too
        progress.line("bundle %s: %d files, %d bytes, %d to send%s"
                      % (folder, len(files), manifest["bytes"] if isinstance(
                          manifest.get("bytes"), int) else 0, len(to_send),
                         " and %s" % MANIFEST if writes else ""))
        progress.begin(len(to_send) + writes,
                       sum(sizes[p] for p, _ in to_send) + len(manifest_bytes) * writes)
        try:
            # Before main.py goes aside: an interim manifest that does not fit changes nothing.
            if interim is not None:
                board.write(MANIFEST, interim, hashlib.sha256(interim).hexdigest()
                            if board.has_sha256 else None, chunk, _Quiet())
            if to_send or stale:
                board.aside()
            written = 0
            for path, digest in to_send:
                data = (folder / path).read_bytes()
                progress.start(path, len(data))
                try:
                    board.write(path, data, digest if board.has_sha256 else None, chunk,
                                progress)
                except FlashError as exc:
                    # The board still answers. With no file replaced yet (by this flash or a
                    # cut one) it holds the old bundle whole, which may run; otherwise main.py
                    # stays aside until a flash completes.
                    if written == 0 and not board.entry_aside:
                        board.restore()
                    raise
                written += 1
                progress.done()
                sent_bytes += len(data)
            if stale:
                board.remove(stale)
                for path in stale:
                    progress.line("  removed %s (not in this bundle)" % path)
            if to_send or stale or board.entry_aside:
                board.restore()
            if writes:
                progress.start(MANIFEST, len(manifest_bytes))
                board.write(MANIFEST, manifest_bytes,
                            wanted[-1][1] if board.has_sha256 else None, chunk, progress)
                progress.done()
                sent_bytes += len(manifest_bytes)
        except (rawrepl.NotAnswering, rawrepl.ConnectionLost) as exc:
            raise FlashError(str(exc) + mid_copy(board), dict(REPL_CODES)[type(exc)])
        except FlashError as exc:
            raise Refused(exc.args[0] + (ASIDE if board.is_aside else ""), exc.code,
                          whole=not board.is_aside)
        reset_ok = repl.soft_reset() if reset else None
        elapsed = time.monotonic() - started
        progress.line("%s %d of %d files%s (%d bytes), removed %d, in %.1f s%s" % (
            "flashed" if writes else "up to date:",
            len(to_send), len(files),
            " and %s" % MANIFEST if writes else "",
            sent_bytes, len(stale), elapsed,
            "; soft reset: the board runs main.py" if reset_ok else
            "; the board did not confirm the soft reset: press its reset button"
            if reset_ok is False else ""))
    return {"sent": [p for p, _ in to_send], "removed": stale, "bytes": sent_bytes,
            "serial_bytes": repl.sent, "seconds": elapsed, "raw_paste": repl.raw_paste}


# -- esptool -----------------------------------------------------------------------------------
def esptool_command():
    """The esptool tether depends on (v5: `write-flash`), run by this interpreter: one found
    on PATH first was ESP-IDF's 4.x, which refused v5's commands, said as a board not in its
    bootloader. On PATH only where this interpreter has none; $TETHER_ESPTOOL names another."""
    import importlib.util
    if os.environ.get("TETHER_ESPTOOL"):
        return [os.environ["TETHER_ESPTOOL"]]
    if importlib.util.find_spec("esptool") is not None:
        return [sys.executable, "-m", "esptool"]
    found = build.find_tool("esptool")
    return [found] if found else [sys.executable, "-m", "esptool"]


def firmware_chip(path, chip=None):
    """The chip a MicroPython image is for, from its header (the ESP image format: magic byte
    0xE9, chip id in bytes 12-13, esptool's IMAGE_CHIP_ID). FlashError (exit 2) for a file that
    is no such image, or one for another chip than `chip` (--chip): esptool erases the board
    before it could tell, and the filesystem, buffer included, would go for nothing."""
    if os.path.isdir(path):
        raise FlashError("--firmware %s is a folder: give the image file (.bin) in it" % path,
                         EXIT_BAD_INPUT)
    try:
        with open(path, "rb") as f:
            head = f.read(APP_DESC_AT + len(APP_DESC_MAGIC))
    except FileNotFoundError:
        raise FlashError("--firmware %s: no such file (download the .bin for your board from "
                         "https://micropython.org/download/)" % path, EXIT_BAD_INPUT)
    except OSError as exc:
        raise FlashError("--firmware %s: cannot read it: %s" % (path, exc.strerror or exc),
                         EXIT_BAD_INPUT)
    what = None
    if head.startswith(b"UF2\n"):
        what = "a UF2 file (for copying onto a board that shows up as a USB drive)"
    elif head.startswith(b"\x7fELF"):
        what = "an ELF file (a build's intermediate)"
    elif head.startswith(b"PK\x03\x04"):
        what = "a zip archive: unpack it"
    elif head.lstrip()[:1] == b"<":
        what = "a web page, not an image (a download that went wrong?)"
    elif len(head) < IMAGE_HEADER:
        what = "%d bytes, too short for an image" % len(head)
    elif head[0] != IMAGE_MAGIC:
        what = "not an ESP32 firmware image (its first byte is 0x%02x, an image's is 0x%02x)" % (
            head[0], IMAGE_MAGIC)
    elif head[APP_DESC_AT:] == APP_DESC_MAGIC:
        what = ("an application image alone (an .app-bin, for an update over the air): a board "
                "flashed from blank needs the bootloader and partition table before it, which "
                "the .bin has")
    if what is not None:
        raise FlashError("--firmware %s is %s. Nothing was written: download the .bin for your "
                         "board from https://micropython.org/download/" % (path, what),
                         EXIT_BAD_INPUT)
    ident = head[12] | head[13] << 8
    found = IMAGE_CHIPS.get(ident)
    if found is None:
        raise FlashError("--firmware %s is an image for a chip tether flash does not write (chip "
                         "id %d; it writes %s). Nothing was written" % (
                             path, ident, ", ".join(sorted(FIRMWARE_OFFSETS))), EXIT_BAD_INPUT)
    if chip is not None and chip != found:
        raise FlashError("--firmware %s is an image for the %s (its header says so), not the %s "
                         "--chip names. Nothing was written: download the image for your board, "
                         "or give --chip %s" % (path, found, chip, found), EXIT_BAD_INPUT)
    return found


def write_firmware(image, port, chip="esp32", out=None, command=None):
    """Writes the MicroPython image (a file firmware_chip() read) with esptool (v5 command
    names), the whole flash erased first: with --erase-all esptool checks the image against the
    chip it finds (and the flash's size) before it erases anything."""
    out = sys.stdout if out is None else out
    try:  # no such port, a busy one: the answers a copy gets, not esptool's failure
        rawrepl.open_port(port).close()
    except (rawrepl.NoPort, rawrepl.PortBusy) as exc:
        raise FlashError(str(exc), dict(REPL_CODES)[type(exc)])
    args = ["write-flash", "--erase-all", "-z", FIRMWARE_OFFSETS[chip], image]
    out.write("esptool %s\n" % " ".join(args))
    out.flush()
    try:
        proc = subprocess.run((command or esptool_command()) + ["--chip", chip, "--port", port]
                              + args)
    except OSError as exc:
        raise FlashError("cannot run esptool (%s): pip install esptool" % exc, EXIT_ESPTOOL)
    if proc.returncode != 0:
        raise FlashError("esptool write-flash failed (exit %d): see its output above; hold the "
                         "board's BOOT button while it connects if it cannot"
                         % proc.returncode, EXIT_ESPTOOL)


# -- the command -------------------------------------------------------------------------------
def add_command(sub):
    from firmware.profile import add_allow_outside
    p = sub.add_parser("flash", help="copy a profile's bundle onto a MicroPython board over serial",
                       description="Builds the profile's bundle (or takes --bundle DIR) and copies "
                       "it onto the board through the raw REPL; only changed files are sent. "
                       "Exit codes: docs/flash.md.")
    p.add_argument("profile", nargs="?", metavar="PROFILE", help="a profile YAML file")
    p.add_argument("--bundle", metavar="DIR", help="flash this bundle (from `tether build`) "
                   "instead of building PROFILE")
    p.add_argument("--port", metavar="PORT", help="the board's serial port, e.g. /dev/ttyUSB0 "
                   "(default: the only USB serial port there is)")
    p.add_argument("--arch", choices=build.ARCHS, metavar="ARCH",
                   help="build native code for this arch (xtensawin, rv32imc...); default: bytecode any board with the same .mpy version loads")
    p.add_argument("--build-dir", metavar="DIR", help="where PROFILE's bundle is built "
                   "(default: .tether/build/<profile name> beside the profile)")
    p.add_argument("--firmware", metavar="FILE.bin", help="first erase the board and write this "
                   "MicroPython image with esptool")
    p.add_argument("--chip", choices=sorted(FIRMWARE_OFFSETS),
                   help="the chip --firmware writes (default: the one its image is for, from the "
                        "image's header)")
    p.add_argument("--timeout", type=seconds(0.1), default=10.0, metavar="SECONDS",
                   help="how long a silent board is waited for at each try to reach its raw "
                        "REPL (two tries, five after --firmware; default 10)")
    p.add_argument("--pause", type=seconds(0), default=0.0, metavar="SECONDS",
                   help="wait this long after opening the port (some USB-serial adapters need 1)")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board at the end")
    build.add_frozen(p)
    p.add_argument("--logs", action="store_true",
                   help="then show the board's console as `tether logs` does, from the first "
                        "line of its boot, until Ctrl-C")
    add_allow_outside(p)
    p.set_defaults(func=main)


def build_bundle(profile, out_dir, arch, allow_outside, frozen=False):
    """`tether build PROFILE -o out_dir`; its errors become one FlashError (exit 2)."""
    try:
        return build.build(profile, out_dir, arch=arch, allow_outside=tuple(allow_outside),
                           frozen=frozen)
    except build.BuildError as exc:
        raise FlashError("cannot build %s:\n%s" % (profile, "\n".join(exc.lines)),
                         EXIT_BAD_INPUT)


def main(args, out=None, err=None, stop=None):
    """stop: for --logs, as logs.follow takes it (tests); Ctrl-C otherwise."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    writing = False
    try:
        if args.profile is not None and args.bundle is not None:
            raise FlashError("give a PROFILE to build and flash, or --bundle DIR, not both",
                             EXIT_BAD_INPUT)
        if args.profile is None and args.bundle is None:
            raise FlashError("give a PROFILE to build and flash, or --bundle DIR", EXIT_BAD_INPUT)
        if args.bundle is not None and (args.arch or args.build_dir or args.frozen):
            raise FlashError("--arch, --build-dir and --frozen are for building a PROFILE; a "
                             "--bundle is flashed as it was built", EXIT_BAD_INPUT)
        if args.logs and args.no_reset:
            raise FlashError("--logs follows the board as it boots: not with --no-reset",
                             EXIT_BAD_INPUT)
        if args.chip is not None and not args.firmware:
            raise FlashError("--chip says which chip --firmware writes: give --firmware too",
                             EXIT_BAD_INPUT)
        chip = None
        if args.firmware:       # before a build and esptool
            chip = firmware_chip(args.firmware, args.chip)
        port = args.port
        try:                     # before a build: a wrong port is said at once
            if port is None:
                port, how = ports.board_port()
                out.write("port %s, %s\n" % (port, how))
            else:
                rawrepl.check_port(port)
        except rawrepl.NoPort as exc:
            raise FlashError(str(exc), EXIT_NO_PORT)
        folder = args.bundle
        if folder is None:
            profile = pathlib.Path(args.profile)
            if not profile.is_file():
                raise FlashError("%s: no such profile" % profile, EXIT_BAD_INPUT)
            if args.build_dir is None:
                folder = str(profile.parent / ".tether" / "build" / profile.stem)
                try:
                    ignore_builds(profile.parent / ".tether")
                except OSError as exc:
                    raise FlashError("cannot make the build folder %s beside the profile (%s): "
                                     "give --build-dir DIR, a folder you may write"
                                     % (folder, exc.strerror or exc), EXIT_BAD_INPUT)
            else:
                folder = args.build_dir
            built = build_bundle(str(profile), folder, args.arch, args.allow_outside,
                                 args.frozen)
            out.write("built %s into %s: %d files, %d bytes\n"
                      % (profile, folder, len(built["files"]), built["bytes"]))
        else:
            built = load_bundle(folder)  # a bad bundle is refused before esptool erases anything
        if args.firmware:
            meant = built.get("chip")   # None: a bundle built before profiles named their chip
            if meant is not None and meant != chip:
                raise FlashError("--firmware %s is an image for %s, and the profile's chip is %s: "
                                 "nothing was written (download the image for your board, or "
                                 "set the profile's chip)" % (args.firmware, chip, meant),
                                 EXIT_BAD_INPUT)
            writing = True
            write_firmware(args.firmware, port, chip, out)
            writing = False
        then = None
        if args.logs:
            def then(link, pending):
                out.flush()
                logs.follow(port, out, err, link=link, pending=pending, stop=stop)
        flash_bundle(folder, port, out=out, timeout=args.timeout, pause=args.pause,
                     reset=not args.no_reset, attempts=5 if args.firmware else 2, then=then)
    except FlashError as exc:
        err.write("tether flash: %s\n" % exc)
        return exc.code
    except KeyboardInterrupt:  # building, or esptool writing MicroPython
        err.write("\ntether flash: interrupted%s\n" % (
            " while esptool wrote MicroPython: the image may be half written, run the flash "
            "with --firmware again" if writing else ": nothing was written to the board"))
        return EXIT_INTERRUPTED
    return EXIT_OK


def ignore_builds(folder):
    """The build folder beside a profile holds secrets.json (WiFi passphrase, broker
    password): a .gitignore of its own keeps `git add -A` in the product's repository off it."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# tether flash's builds: they hold secrets.json\n*\n")
