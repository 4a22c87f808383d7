# A store that loses power at a chosen write, for the log and buffer tests. Portable.


class PowerCut(Exception):
    """The power went: the write that raised it may be torn, and nothing after it lands."""


class CutStore:
    """Wraps a store whose every write (append, replace, remove) is durable at once, and cuts
    the power at write number `at` (1-based): that write lands torn, i.e. an append keeps only
    its first `keep` bytes (None: all of them), a replace or remove (atomic: write-then-rename)
    lands whole when keep is None or > 0 and not at all when keep == 0; then it, and every
    write or sync after it, raise PowerCut. at=None never cuts; `writes` counts the writes."""

    def __init__(self, inner, at=None, keep=None):
        self.inner = inner
        self.at = at
        self.keep = keep
        self.writes = 0
        self.cut = False
        self.written = 0

    def _write(self):
        """True when this write is the one the power cut tears."""
        if self.cut:
            raise PowerCut()
        self.writes += 1
        if self.at is not None and self.writes >= self.at:
            self.cut = True
            return True
        return False

    def names(self):
        return self.inner.names()

    def size(self, name):
        return self.inner.size(name)

    def read(self, name, offset, n):
        return self.inner.read(name, offset, n)

    def read_all(self, name):
        return self.inner.read_all(name)

    def append(self, name, data):
        if self._write():
            if self.keep is None:
                self.inner.append(name, data)
            elif self.keep:
                self.inner.append(name, bytes(data)[:self.keep])
            raise PowerCut()
        self.inner.append(name, data)

    def replace(self, name, data):
        if self._write():
            if self.keep is None or self.keep:
                self.inner.replace(name, data)
            raise PowerCut()
        self.inner.replace(name, data)

    def remove(self, name):
        if self._write():
            if self.keep is None or self.keep:
                self.inner.remove(name)
            raise PowerCut()
        self.inner.remove(name)

    def sync(self):
        if self.cut:
            raise PowerCut()
        self.inner.sync()

    def close(self):
        self.inner.close()
