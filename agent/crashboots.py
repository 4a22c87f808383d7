# Boots in a row that ended before they were good, counted in a small file on flash, for safe
# mode (firmware/board.py, docs/esp32.md; ESPHome's safe_mode works the same way).
#
#   boots = CrashBoots("/tether_boots")
#   before, safe = boots.boot(10)   # at every boot, before anything that may crash
#   boots.clear()                   # once the boot is good (a minute with every task alive)
#
# boot() counts this boot as a crash until clear() says otherwise: a reset, a watchdog, a power
# cut within the good-boot time all count. When `limit` boots in a row have crashed, boot()
# says so and clears the count, so that the boot after the safe one tries a normal start again.
# Portable.
import os


class CrashBoots:
    def __init__(self, path):
        self.path = path
        self.failed = False  # a write of the count failed

    def read(self):
        """Crash boots in a row so far (0 if the file is missing or unreadable)."""
        try:
            with open(self.path) as f:
                n = int(f.read())
        except (OSError, ValueError):
            return 0
        return n if n > 0 else 0

    def _put(self, n):
        with open(self.path, "w") as f:
            f.write(str(n))

    def _write(self, n):
        # A full or broken filesystem must not keep the board from starting: the count is lost
        # (so is safe mode's protection, until the filesystem writes again), the boot goes on.
        try:
            self._put(n)
        except OSError:
            self.failed = True
            try:
                # gone, it reads 0: a count left at the limit kept a full flash in safe mode
                # (which frees nothing) at every boot for good
                os.remove(self.path)
            except OSError:
                pass

    def boot(self, limit):
        """(crash boots in a row before this one, whether this boot is to start in safe mode)."""
        n = self.read()
        if n >= limit:
            self._write(0)
            return n, True
        self._write(n + 1)
        return n, False

    def crashed(self, before):
        """This boot ends in a reset it did not ask for, good or not: it counts, after the
        `before` crash boots it started with."""
        self._write(before + 1)

    def clear(self):
        self._write(0)
