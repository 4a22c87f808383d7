# A RAM block device for os.VfsLfs2 (MicroPython) that can lose power, for the LittleFS tests.
#
# It speaks the extended block protocol LittleFS uses (readblocks/writeblocks with a byte
# offset, ioctl 6 to erase). cut_at(n, keep) models a power cut at the n-th block write from
# now: only the first `keep` bytes of that write land, and that write and every write or erase
# after it fail. restore(other) puts the surviving bytes on a device that does not cut, to mount
# fresh, as the board would after the reboot.
#
# A failed write returns -EIO, as a flash driver does; LittleFS turns it into OSError(EIO) for
# the workload, which stops there. Raising a Python exception from the device instead unwinds
# through LittleFS's C code in the middle of a commit and leaves the old mount's state broken:
# the abandoned files' finalizers then crashed the interpreter (seen: a segfault).
#
# An erase changes no bytes here (LittleFS never relies on erased contents, it checks CRCs), so
# a cut during an erase is the same as a cut before the next write with keep = 0.
#
# Tests make their devices once and reuse them: a 32 KB bytearray made again and again soon
# finds no room in a fragmented heap.

EIO = 5


class RamFlash:
    def __init__(self, block_size=512, blocks=64):
        self.block_size = block_size
        self.data = bytearray(block_size * blocks)
        self.writes = 0      # block writes so far
        self.at = None       # the write the power cut tears (counted like writes), if armed
        self.keep = 0
        self.dead = False    # the power is gone: writes fail

    def cut_at(self, n, keep=0):
        """Cuts the power at the n-th block write from now, keeping `keep` bytes of it."""
        self.at = self.writes + n
        self.keep = keep

    def restore(self, other=None):
        """Takes other's bytes (None: all zero) and forgets any cut: a fresh, powered device."""
        if other is None:
            for i in range(len(self.data)):
                self.data[i] = 0
        else:
            self.data[:] = other.data
        self.writes = 0
        self.at = None
        self.dead = False

    def readblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        buf[:] = memoryview(self.data)[a:a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple protocol: whole blocks, erased first
            for i in range(len(buf) // self.block_size):
                if self.ioctl(6, block + i):
                    return -EIO
            offset = 0
        if self.dead:
            return -EIO
        self.writes += 1
        a = block * self.block_size + offset
        if self.writes == self.at:
            n = min(self.keep, len(buf))
            self.data[a:a + n] = memoryview(buf)[:n]
            self.dead = True
            return -EIO
        self.data[a:a + len(buf)] = buf
        return 0

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.data) // self.block_size
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase
            return -EIO if self.dead else 0
        return 0  # init, deinit, sync
