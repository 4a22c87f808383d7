# The buffer on LittleFS, as an ESP32 has it, with the power cut at every block write.
#
# os.VfsLfs2 is mounted at /flash on a RAM block device (ramflash.RamFlash) that stops
# accepting writes after the n-th one, the n-th itself torn. For every n from 1 to the number
# of block writes the whole workload makes, and for several torn lengths, the workload runs
# until the cut; then the surviving bytes are mounted fresh and a new buffer is opened on them,
# and workload.Workload.check verifies every promise (see there): stored batches present with
# their bytes and seq (or acked, or counted as dropped, exactly), no seq with two contents,
# durable readings exactly once, new appends work with higher seqs, the boot count went up.
MICROPYTHON_ONLY = True  # os.VfsLfs2
MICROPYTHON_HEAP = "256k"  # the block devices (2 x 32 KB) live in the heap

import gc
import os

import bufkit as K
from agent.store import FileStore
from ramflash import EIO, RamFlash
from workload import Workload

MOUNT = "/flash"
PATH = MOUNT + "/buf"
KEEPS = (0, 1, 16, 100, 4096)  # bytes of the cut write that land (4096: all of it)


class Bench:
    """Three devices made once: a blank formatted image, the one the workload runs on, and
    the one that gets the surviving bytes after the cut."""

    def __init__(self):
        self.blank = RamFlash()
        os.VfsLfs2.mkfs(self.blank)
        self.dev = RamFlash()
        self.after = RamFlash()

    def mount(self, dev):
        unmount()
        os.mount(os.VfsLfs2(dev), MOUNT)

    def fresh(self):
        self.dev.restore(self.blank)
        self.mount(self.dev)
        return self.dev

    def reboot(self):
        """The surviving bytes, mounted fresh as after a power cycle."""
        self.after.restore(self.dev)
        self.mount(self.after)


def unmount():
    try:
        os.umount(MOUNT)
    except OSError:
        pass


def run_until_cut(w, store, kw, dev):
    """Runs the workload; a failed write (the cut) ends it. Returns True if it finished."""
    try:
        w.run(K.make(store, **kw))
    except OSError as exc:
        if not dev.dead:
            raise  # a real failure, not the power cut
        assert exc.args[0] == EIO, exc
    # Close the abandoned files now: later, in a finalizer, they would run LittleFS code with
    # the heap locked. Their writes fail (the device is dead), so nothing changes on it.
    try:
        store.close()
    except OSError:
        pass
    gc.collect()
    return w.done


def sweep(make_workload, kw):
    """Cuts the power at every block write of the workload, for every torn length in KEEPS.
    Returns (block writes of the whole workload, runs checked)."""
    bench = Bench()
    dev = bench.fresh()
    store = FileStore(PATH)
    start = dev.writes
    w = make_workload()
    w.run(K.make(store, **kw))
    store.close()
    total = dev.writes - start
    runs = 0
    for n in range(1, total + 1):
        for keep in KEEPS:
            dev = bench.fresh()
            store = FileStore(PATH)
            dev.cut_at(n, keep)
            w = make_workload()
            run_until_cut(w, store, kw, dev)
            assert dev.dead, (n, keep)
            bench.reboot()
            try:
                w.check(K.make(FileStore(PATH), **kw))
            except AssertionError as exc:
                raise AssertionError("power cut at block write %d of %d, %d bytes of it kept: %s"
                                     % (n, total, keep, exc))
            runs += 1
            gc.collect()
    unmount()
    return total, runs


def test_ram_flash_cuts_power_at_the_nth_write_and_remounts_what_survived():
    bench = Bench()
    dev = bench.fresh()
    with open(MOUNT + "/f", "wb") as f:
        f.write(b"old" * 100)
    dev.cut_at(1, 10)
    try:
        with open(MOUNT + "/f", "wb") as f:
            f.write(b"new" * 100)
        raise AssertionError("the write after the cut did not fail")
    except OSError as exc:
        assert exc.args[0] == EIO
    assert dev.dead and dev.writes == dev.at
    try:
        with open(MOUNT + "/g", "wb") as f:
            f.write(b"x")
        raise AssertionError("a write after the cut landed")
    except OSError:
        pass
    bench.reboot()
    with open(MOUNT + "/f", "rb") as f:
        assert f.read() == b"old" * 100  # LittleFS: the last committed version
    assert "g" not in os.listdir(MOUNT)
    unmount()


def test_file_store_on_littlefs_reads_what_was_appended_after_it_last_read():
    # A LittleFS file open for reading does not see appends made through another handle (the
    # log reads a segment, then appends the next batch to it, then reads that).
    bench = Bench()
    bench.fresh()
    store = FileStore(PATH)
    at = 0
    for n in (3, 200, 20, 300, 5):
        store.append("00000000.seg", bytes([n & 0xFF]) * n)
        store.sync()
        assert store.read("00000000.seg", at, n) == bytes([n & 0xFF]) * n, (n, at)
        at += n
    store.close()
    unmount()


def test_a_power_cut_at_every_block_write_of_a_workload_on_littlefs_keeps_every_promise():
    # The workload of test_buffer.py's store-level sweep: 100 readings, a journal flushed every
    # 4, batches of 8, the uplink acking (out of order, with rewinds) except during an outage
    # that fills the log so it drops segments.
    kw = {"max_bytes": 730, "segment_bytes": 140, "max_readings": 8, "ram_readings": 4,
          "batch_bytes": 128}
    total, runs = sweep(lambda: Workload(readings=100, uplink_every=6, offline=(20, 90)), kw)
    assert total > 100 and runs == total * len(KEEPS), (total, runs)


def test_a_power_cut_at_every_block_write_with_every_reading_journaled_keeps_every_promise():
    # Every reading flushed on its own (ram_readings 1), small batches, an uplink that keeps
    # up: the journal is rewritten all the time, and the log, full of acknowledged batches
    # (kept for repairs), deletes its oldest segment to make room.
    kw = {"max_bytes": 500, "segment_bytes": 100, "max_readings": 5, "ram_readings": 1,
          "batch_bytes": 64}
    total, runs = sweep(lambda: Workload(readings=40, uplink_every=3, sync_at=13, poll_every=7),
                        kw)
    assert total > 100 and runs == total * len(KEEPS), (total, runs)


def test_the_state_file_is_old_or_new_after_a_cut_anywhere_in_its_replacement():
    from agent import batch
    from agent.log import Log
    bench = Bench()
    dev = bench.fresh()
    log = Log(FileStore(PATH), 4096, 1024, batch.seq_of)
    log.open()
    log.close()
    start = dev.writes
    log = Log(FileStore(PATH), 4096, 1024, batch.seq_of)
    log.open()  # boot 2: writes the state once
    log.store.close()
    total = dev.writes - start
    assert total > 0
    seen = {}
    for n in range(1, total + 1):
        for keep in KEEPS:
            dev = bench.fresh()
            store = FileStore(PATH)
            Log(store, 4096, 1024, batch.seq_of).open()
            store.close()
            dev.cut_at(n, keep)
            store = FileStore(PATH)
            try:
                Log(store, 4096, 1024, batch.seq_of).open()
            except OSError:
                assert dev.dead
            try:
                store.close()
            except OSError:
                pass
            gc.collect()
            bench.reboot()
            log = Log(FileStore(PATH), 4096, 1024, batch.seq_of)
            log.open()
            # A whole state file, old (boot 1) or new (boot 2): a broken one would restart
            # the count at 1.
            assert log.boot in (2, 3), (n, keep, log.boot)
            seen[log.boot - 1] = True
            log.close()
    assert seen == {1: True, 2: True}, seen  # the cut fell both before and after the rename
    unmount()
