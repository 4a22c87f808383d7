"""A ROMFS image of a bundle's .mpy files, for bench/heap.py --romfs: the read-only filesystem
MicroPython (1.25 on) mounts at /rom from a flash partition and imports .mpy files from in
place, their bytecode and constants read where they lie instead of copied to the heap.

The format is MicroPython's extmod/vfs_rom.c: records of (kind, length, payload), kinds and
lengths as big-endian base-128 numbers with the high bit set on all bytes but the last; the
image is one record of kind 0x14a6b1 (bytes d2 cd 31) holding directories (4: name, then their
records) and files (5: name, then a data record, 2, of the file's bytes).
"""
import os

FILESYSTEM, PADDING, DATA, DIRECTORY, FILE = 0x14A6B1, 1, 2, 4, 5


def varuint(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def record(kind, payload):
    return varuint(kind) + varuint(len(payload)) + payload


def _name(name):
    raw = name.encode()
    return varuint(len(raw)) + raw


def _folder(path):
    out = b""
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            out += record(DIRECTORY, _name(entry) + _folder(full))
        elif entry.endswith(".mpy"):
            with open(full, "rb") as f:
                out += record(FILE, _name(entry) + record(DATA, f.read()))
    return out


def image(folder):
    """The ROMFS image of every .mpy file under folder, in its folders."""
    body = _folder(folder)
    # vfs_rom.c: an image's size is even; a padding record of 0 or 1 byte makes it so
    for pad in (None, b"", b"\0"):
        whole = record(FILESYSTEM, body + (b"" if pad is None else record(PADDING, pad)))
        if len(whole) % 2 == 0:
            return whole
    raise AssertionError("no padding makes the image even")
