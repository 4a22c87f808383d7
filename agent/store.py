# Where the log's files live: a folder (flash on a board, disk on a Pi) or RAM.
#
# Both stores hold the same bytes under the same names, so the log above them is one piece of
# code whichever the profile picks, and RAM mode is exercised by every log test.
import os

_EEXIST = 17  # errno, the same on every port


def _sync_file(f):
    f.flush()
    fsync = getattr(os, "fsync", None)  # CPython; MicroPython's flush already commits LittleFS
    if fsync is not None:
        fsync(f.fileno())


class FileStore:
    """Files in one folder. Appends go to files kept open; sync() makes them durable."""

    # Each append written through on CPython (a Pi): its buffered write would say ENOSPC only
    # at the sync, past the log's make_room (a full disk stopped tether run). A board's flush
    # commits LittleFS, which it does at the sync alone (MicroPython has no fsync).
    flush_each = hasattr(os, "fsync")

    def __init__(self, path):
        self.path = path
        self.written = 0  # bytes handed to the filesystem, for write-amplification figures
        self._out = {}    # name -> file open for appending (the journal and one segment)
        self._in = None
        self._in_name = None
        _makedirs(path)

    def _p(self, name):
        return self.path + "/" + name

    def names(self):
        return sorted(os.listdir(self.path))

    def size(self, name):
        return os.stat(self._p(name))[6]

    def append(self, name, data):
        if self._in_name == name:
            # On LittleFS a file open for reading does not see what is appended after it was
            # opened (measured: the read comes back empty).
            self._close_in()
        f = self._out.get(name)
        if f is None:
            for other in list(self._out):
                if other.endswith(".seg") and name.endswith(".seg"):
                    # Appends move on to a new segment for good: the old one made durable
                    # first, as a sync() after this would no longer reach it (a cut that
                    # rotates between its batches removes the journal once they are synced).
                    try:
                        _sync_file(self._out[other])
                    finally:
                        self._close_out(other)
            f = self._out[name] = open(self._p(name), "ab")
        f.write(data)
        if self.flush_each:
            f.flush()
        self.written += len(data)

    def sync(self):
        for f in self._out.values():
            _sync_file(f)

    def read(self, name, offset, n):
        if self._in_name != name:
            self._close_in()
            self._in = open(self._p(name), "rb")
            self._in_name = name
        self._in.seek(offset)
        return self._in.read(n)

    def read_all(self, name):
        try:
            with open(self._p(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def replace(self, name, data):
        """Writes a whole file so that a power cut leaves either the old or the new one."""
        self._forget(name)
        tmp = self._p(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            _sync_file(f)
        os.rename(tmp, self._p(name))
        self.written += len(data)
        _sync_dir(self.path)

    def remove(self, name):
        self._forget(name)
        try:
            os.remove(self._p(name))
        except OSError:
            pass

    def _forget(self, name):
        if name in self._out:
            self._close_out(name)
        if self._in_name == name:
            self._close_in()

    def _close_out(self, name):
        self._out.pop(name).close()

    def _close_in(self):
        if self._in is not None:
            self._in.close()
        self._in = None
        self._in_name = None

    def close(self):
        self.sync()
        for name in list(self._out):
            self._close_out(name)
        self._close_in()


class RamStore:
    """The same interface in RAM: for boards without a filesystem to spare, and for tools."""

    def __init__(self):
        self.files = {}
        self.written = 0

    def names(self):
        return sorted(self.files)

    def size(self, name):
        return len(self.files[name])

    def append(self, name, data):
        f = self.files.get(name)
        if f is None:
            f = self.files[name] = bytearray()
        f.extend(data)
        self.written += len(data)

    def sync(self):
        pass

    def read(self, name, offset, n):
        return bytes(self.files[name][offset:offset + n])

    def read_all(self, name):
        f = self.files.get(name)
        return None if f is None else bytes(f)

    def replace(self, name, data):
        self.files[name] = bytearray(data)
        self.written += len(data)

    def remove(self, name):
        self.files.pop(name, None)

    def close(self):
        pass


def _makedirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        at = "/".join(parts[:i])
        if at:
            try:
                os.mkdir(at)
            except OSError as e:
                if e.args[0] != _EEXIST:    # not allowed, read-only, no room: say so now,
                    raise                   # not as "no such file" at the first write


def _sync_dir(path):
    # A rename is durable on Linux only once its folder is synced; MicroPython has no os.open.
    if hasattr(os, "O_RDONLY") and hasattr(os, "fsync"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
