"""The power-safe buffer against real faults on CPython files, and the reference profile's buffer
on a 64k MicroPython heap.

(a) Files with the last record cut at every byte offset (segment, journal, state.tmp), and a
    corrupt byte in the middle of the last record: what precedes survives byte-identical, the
    bad bytes are discarded and reported, durable readings come back exactly once.
(b) SIGKILL: a child appends readings to a FileStore buffer and reports on stdout each time a
    flush or cut returned and each batch it handed to the broker; it is killed at random
    moments, round after round on the same folder; then every reading it reported durable is
    found exactly once, and sequence numbers never repeat with other bytes.
"""
import binascii
import json
import os
import pathlib
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

PORTABLE = pathlib.Path(__file__).parent / "portable"
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PORTABLE))

import bufkit as K  # noqa: E402
from agent import batch_decode  # noqa: E402
from agent.store import FileStore  # noqa: E402


def snapshot(path):
    return {name: (pathlib.Path(path) / name).read_bytes() for name in os.listdir(path)}


def lay_out(path, files):
    """A folder holding exactly these files (name -> bytes)."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for name, data in files.items():
        (pathlib.Path(path) / name).write_bytes(data)


def reopen(path, **kw):
    buf = K.make(FileStore(str(path)), **kw)
    discarded = buf.open()
    return buf, discarded


def indices_of(batches, buf):
    """Reading numbers in the batches and in RAM, in that order."""
    out = []
    for _, data in batches:
        out += [K.index(r) for r in K.rows(data)]
    return out + [K.index(r) for r in K.ram_rows(buf)]


# -- (a) every byte offset ------------------------------------------------------------------


@pytest.mark.parametrize("new_segment", [False, True], ids=["same-segment", "new-segment"])
def test_a_batch_record_cut_at_every_byte_offset_loses_nothing_durable(tmp_path, new_segment):
    # Two batches stored, then 6 readings journaled and 2 more in RAM; cut() writes a third
    # batch. The power goes while its record is being written: the segment ends with any
    # prefix of the record, and the journal still holds the 6 readings.
    kw = {"ram_readings": 3, "segment_bytes": 130 if new_segment else 4096}
    work = tmp_path / "work"
    buf, _ = reopen(work, **kw)
    for i in range(22):
        K.append(buf, i)
        if i in (6, 13):
            buf.cut()
    assert (buf.n, buf.flushed) == (8, 6)
    before = snapshot(work)
    old = K.drain(buf)
    assert [s for s, _ in old] == [0, 1]
    buf.cut()
    after = snapshot(work)
    seg = "00000001.seg" if new_segment else "00000000.seg"
    assert (seg in before) != new_segment
    record = after[seg][len(before.get(seg, b"")):]
    assert 7 + 2 + 40 < len(record) < 200
    new = K.drain(buf)[-1]
    for k in range(len(record) + 1):
        files = dict(before)
        files[seg] = before.get(seg, b"") + record[:k]
        lay_out(tmp_path / "t", files)
        buf, discarded = reopen(tmp_path / "t", **kw)
        assert discarded == (k if 0 < k < len(record) else 0), k
        got = K.drain(buf)
        # Readings 14..19 were journaled: once, in the batch, or in a batch of their own made
        # at open. 20 and 21 were in RAM only: in the batch if it landed whole, else gone (the
        # flush window).
        assert got[:2] == old and len(got) == 3 and (got[2] == new) == (k == len(record)), k
        expected = list(range(20)) if k < len(record) else list(range(22))
        assert indices_of(got, buf) == expected and K.ram_rows(buf) == [], k
        # And it goes on: a new batch lands after the torn bytes, never behind them.
        K.append(buf, 30)
        buf.close()
        buf, _ = reopen(tmp_path / "t", **kw)
        assert buf.seq == 4   # reading 30, journaled at the close, is batch 3
        buf.cut()
        buf.close()
        buf, again = reopen(tmp_path / "t", **kw)
        assert again == discarded
        assert indices_of(K.drain(buf), buf) == expected + [30], k
        buf.close()


def test_a_journal_record_cut_at_every_byte_offset_gives_back_exactly_the_whole_records(tmp_path):
    kw = {"ram_readings": 4}
    work = tmp_path / "work"
    buf, _ = reopen(work, **kw)
    for i in range(10):
        K.append(buf, i)
    buf.cut()
    for i in range(10, 21):
        K.append(buf, i)
    assert buf.flushed == 8  # two journal records of 4; 18..20 are in RAM
    before = snapshot(work)
    buf.flush()  # the third record: 18, 19, 20
    after = snapshot(work)
    record = after["journal"][len(before["journal"]):]
    assert len(record) == 7 + 15 + 3 * 9
    stored = K.drain(buf)
    for k in range(len(record) + 1):
        files = dict(after)
        files["journal"] = before["journal"] + record[:k]
        lay_out(tmp_path / "t", files)
        buf, discarded = reopen(tmp_path / "t", **kw)
        assert discarded == (k if 0 < k < len(record) else 0), k
        got = K.drain(buf)
        assert got[:len(stored)] == stored and len(got) == len(stored) + 1
        whole = 21 if k == len(record) else 18
        # the journal's whole records: a batch of their own, made at open
        assert indices_of(got[len(stored):], buf) == list(range(10, whole)), k
        # The journal is gone: the next reopen finds nothing to discard, and the readings are
        # still there exactly once.
        buf.close()
        buf, again = reopen(tmp_path / "t", **kw)
        assert again == 0 and K.drain(buf) == got, k
        buf.close()


def test_a_torn_state_tmp_at_every_byte_offset_is_ignored(tmp_path):
    # state is replaced by writing state.tmp and renaming it: a cut before the rename leaves
    # the old state and some prefix (or all) of the new one in state.tmp.
    work = tmp_path / "work"
    buf, _ = reopen(work)
    for i in range(30):
        K.append(buf, i)
    buf.cut()
    sent = K.drain(buf)
    assert buf.ack(sent[0][0])
    buf.close()  # saves the ack
    old = snapshot(work)
    buf, _ = reopen(work)  # boot 2: writes a new state
    new_state = snapshot(work)["state"]
    buf.close()
    assert new_state != old["state"]
    for k in range(len(new_state) + 1):
        files = dict(old)
        files["state.tmp"] = new_state[:k]
        files["journal.tmp"] = b"\x07" * k  # a torn journal rewrite, for good measure
        lay_out(tmp_path / "t", files)
        buf, discarded = reopen(tmp_path / "t")
        assert discarded == 0
        assert buf.log.boot == 2, (k, buf.log.boot)  # the old state said boot 1
        assert K.drain(buf) == sent[1:]  # the old state's ack holds
        assert "state.tmp" not in os.listdir(tmp_path / "t")
        assert "journal.tmp" not in os.listdir(tmp_path / "t")
        buf.close()


class Torn(Exception):
    """The power went in the middle of a write."""


def tear_replace(monkeypatch, nth, keep):
    """Makes the nth FileStore.replace() from now write only `keep` bytes of its file, then
    fail: the real replace code path (its temporary file, its rename) meets the cut."""
    import agent.store
    real_open = open
    calls = [0]

    class TornFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[:keep])
            self.f.flush()
            raise Torn()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args):
        f = real_open(path, mode, *args)
        if mode == "wb":  # only replace() opens for writing from the start
            calls[0] += 1
            if calls[0] == nth:
                return TornFile(f)
        return f

    monkeypatch.setattr(agent.store, "open", fake_open, raising=False)


def test_a_replace_torn_at_every_byte_leaves_the_old_file_whole(tmp_path, monkeypatch):
    # open() replaces the state (the boot count) before it makes the journal's rows a batch: a
    # cut anywhere inside it must leave the old file whole, and the rows for the next start.
    kw = {"ram_readings": 2}
    work = tmp_path / "work"
    buf, _ = reopen(work, **kw)
    for i in range(7):
        K.append(buf, i)
    buf.cut()
    for i in range(7, 12):
        K.append(buf, i)
    stored = K.drain(buf)
    buf.close()  # boot 1; readings 7..11 in the journal
    files = snapshot(work)
    for k in range(len(files["state"]) + 1):
        lay_out(tmp_path / "t", files)
        with monkeypatch.context() as m:
            tear_replace(m, 1, k)
            with pytest.raises(Torn):
                reopen(tmp_path / "t", **kw)
        buf, discarded = reopen(tmp_path / "t", **kw)
        assert discarded == 0, k
        assert buf.log.boot == 2, (k, buf.log.boot)   # boot 2 was torn: the old state holds
        got = K.drain(buf)
        assert got[:len(stored)] == stored and len(got) == len(stored) + 1, k
        assert indices_of(got[len(stored):], buf) == list(range(7, 12)), k
        assert K.decode(got[-1][1])[0].boot == 1    # the boot that took them
        buf.close()


def test_a_corrupt_byte_in_the_middle_of_the_last_record_is_discarded_and_reported(tmp_path):
    kw = {"ram_readings": 4}
    work = tmp_path / "work"
    buf, _ = reopen(work, **kw)
    for i in range(12):
        K.append(buf, i)
        if i in (3, 7):
            buf.cut()
    buf.cut()
    for i in range(12, 20):
        K.append(buf, i)  # two journal records
    buf.close()
    files = snapshot(work)
    stored = K.drain(reopen(work, **kw)[0])[:-1]  # the last: the journal's rows, batched at open
    seg = files["00000000.seg"]
    last = len(stored[-1][1]) + 7 + 2
    journal = files["journal"]
    jrec = 7 + 15 + 4 * 9
    assert len(journal) == 2 * jrec
    # The segment's last record: that batch (readings 8..11) is lost, and open() says so.
    bad = dict(files)
    b = bytearray(seg)
    b[len(seg) - last // 2] ^= 0x40
    bad["00000000.seg"] = bytes(b)
    lay_out(tmp_path / "s", bad)
    buf, discarded = reopen(tmp_path / "s", **kw)
    assert discarded == last
    got = K.drain(buf)
    assert got[:-1] == stored[:-1] and indices_of(got[-1:], buf) == list(range(12, 20))
    buf.close()
    # The journal's last record: its readings (16..19) are lost, and open() says so.
    bad = dict(files)
    b = bytearray(journal)
    b[jrec + jrec // 2] ^= 0x40
    bad["journal"] = bytes(b)
    lay_out(tmp_path / "j", bad)
    buf, discarded = reopen(tmp_path / "j", **kw)
    assert discarded == jrec
    got = K.drain(buf)
    assert got[:-1] == stored and indices_of(got[-1:], buf) == list(range(12, 16))
    buf.close()


def test_every_segment_a_cut_wrote_is_fsynced_before_the_journal_goes(tmp_path, monkeypatch):
    # A cut whose batches spill into a new segment closed the old one without an fsync, and a
    # sync() after reaches only open files: a power cut before writeback lost batches whose
    # rows the journal no longer held, uncounted.
    order = []
    fsync = os.fsync

    def spy(fd):
        order.append(("fsync", os.path.basename(os.readlink("/proc/self/fd/%d" % fd))))
        fsync(fd)
    monkeypatch.setattr(os, "fsync", spy)
    store = FileStore(str(tmp_path / "b"))
    buf = K.make(store, segment_bytes=100, batch_bytes=48, ram_readings=4)
    buf.open()
    for i in range(20):
        K.append(buf, i)
    assert "journal" in store.names()
    written = []
    append, remove = store.append, store.remove
    monkeypatch.setattr(store, "append", lambda name, data: (written.append(name),
                                                             append(name, data)))
    monkeypatch.setattr(store, "remove", lambda name: (order.append(("remove", name)),
                                                       remove(name)))
    del order[:]
    buf.cut()
    segments = sorted(set(n for n in written if n.endswith(".seg")))
    assert len(segments) >= 2, segments              # the cut rotated
    gone = order.index(("remove", "journal"))
    for name in segments:
        assert ("fsync", name) in order[:gone], (name, order)


def test_a_corrupt_state_file_makes_everything_go_out_again_and_seqs_go_on(tmp_path):
    work = tmp_path / "work"
    buf, _ = reopen(work)
    for i in range(30):
        K.append(buf, i)
    buf.cut()
    sent = K.drain(buf)
    assert buf.ack(sent[0][0])
    buf.close()
    state = bytearray((work / "state").read_bytes())
    state[6] ^= 1
    (work / "state").write_bytes(bytes(state))
    buf, discarded = reopen(work)
    assert discarded == len(state)  # said: the dropped total it held is gone (it reset unsaid)
    assert K.drain(buf) == sent  # resent: the consumer de-duplicates by seq
    assert buf.seq == sent[-1][0] + 1
    buf.close()


# -- (b) SIGKILL ----------------------------------------------------------------------------

CHILD = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import bufkit as K
from agent.store import FileStore
path, first, seed = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import random
rnd = random.Random(seed)
out = sys.stdout
buf = K.make(FileStore(path), max_bytes=1 << 20, segment_bytes=2048, max_readings=24,
             ram_readings=3, batch_bytes=512)
buf.open()
out.write("R %d\n" % buf.log.boot)
out.flush()
durable = 0
for j in range(4000):
    i = first + j
    K.append(buf, i)
    if rnd.random() < 0.05:
        buf.flush()
    d = j + 1 - (buf.n - buf.flushed)
    if d != durable:
        durable = d
        out.write("D %d\n" % durable)
        out.flush()
    if j % 10 == 9:
        got = []
        for _ in range(rnd.randrange(4)):
            b = buf.next_batch()
            if b is None:
                break
            got.append(b[0])
            out.write("S %d %s\n" % (b[0], bytes(b[1]).hex()))
            out.flush()
        rnd.shuffle(got)
        for seq in got:
            buf.ack(seq)
        if rnd.random() < 0.2:
            buf.rewind()
buf.close()
out.write("END\n")
out.flush()
"""


def test_sigkill_at_random_moments_loses_no_reading_reported_durable(tmp_path):
    rnd = random.Random(20240607)
    path = str(tmp_path / "buf")
    durable = []      # reading numbers the child said were in flash
    consumer = {}     # seq -> bytes the broker got (printed before the ack)
    boots = []
    rounds = 12
    for r in range(rounds):
        first = r * 100000
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(PORTABLE), str(ROOT), path, str(first),
             str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r % 4 == 3:
            # Now and then the kill comes early: during start-up or inside open().
            time.sleep(rnd.uniform(0.0, 0.15))
        else:
            ready = child.stdout.readline()
            assert ready.startswith(b"R "), ready + child.stderr.read()
            boots.append(int(ready.split()[1]))
            time.sleep(rnd.uniform(0.01, 0.25))
        child.send_signal(signal.SIGKILL)
        # Read through child.stdout, not communicate(): readline() above may have buffered
        # lines after the ready one, which communicate() (reading the pipe itself) would lose,
        # batches acked with them among them.
        out = child.stdout.read()
        err = child.stderr.read()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, err
        lines = out.split(b"\n")[:-1]  # a line cut by the kill has no newline: not reported
        seen_d = 0
        for line in lines:
            kind, _, rest = line.decode().partition(" ")
            if kind == "R" and r % 4 == 3:
                boots.append(int(rest))
            elif kind == "D":
                seen_d = int(rest)
            elif kind == "S":
                seq, hexdata = rest.split()
                data = bytes.fromhex(hexdata)
                assert consumer.setdefault(int(seq), data) == data, "seq %s re-sent changed" % seq
        durable += range(first, first + seen_d)
    # A boot is counted once its open() returned, and the count only goes up.
    assert boots == sorted(set(boots)) and len(boots) >= rounds - rounds // 4, boots
    buf = K.make(FileStore(path), max_bytes=1 << 20, segment_bytes=2048, max_readings=24,
                 ram_readings=3, batch_bytes=512)
    buf.open()
    assert buf.log.dropped == 0
    present = K.drain(buf)
    seqs = [s for s, _ in present]
    assert seqs == sorted(set(seqs)), seqs
    for seq, data in present:
        assert consumer.setdefault(seq, data) == data, "seq %d: two contents" % seq
    found = {}
    for seq in sorted(consumer):
        env, rows = K.decode(consumer[seq])
        assert env.seq == seq
        for row in rows:
            i = K.index(row)
            assert row == K.reading(i)
            assert i not in found, "reading %d in batch %d and in %r" % (i, seq, found[i])
            found[i] = seq
    for row in K.ram_rows(buf):
        i = K.index(row)
        assert i not in found, "reading %d in RAM and in batch %r" % (i, found[i])
        found[i] = "RAM"
    missing = [i for i in durable if i not in found]
    assert not missing, "%d readings reported durable are gone, first %r" % (
        len(missing), missing[:5])
    assert len(durable) > 200 and len(consumer) > 10, (len(durable), len(consumer))
    buf.close()


# -- the reference profile ------------------------------------------------------------------


def compiled_reference():
    from firmware.profile.compile import compile
    p, errors = compile(str(ROOT / "examples" / "reference-printer.yaml"))
    assert errors == []
    return p


def test_the_reference_profile_embedded_in_the_portable_test_is_what_the_yaml_compiles_to():
    import test_buffer
    p = compiled_reference()
    embedded = test_buffer.reference_printer()
    assert embedded["device"]["id"] == p["device"]["id"]
    assert embedded["sensors"] == [{k: s[k] for k in ("name", "unit", "resolution")}
                                   for s in p["sensors"]]
    assert embedded["buffer"] == p["buffer"]
    assert embedded["batch"] == p["batch"]
    assert embedded["uplink"] == {k: p["uplink"][k] for k in ("encoding", "deflate")}


STORE_ID = 0x5A17E5E1
STORE_ID_FILE = struct.pack("<III", STORE_ID, 0, binascii.crc32(struct.pack("<II", STORE_ID, 0)))

REFERENCE_SCRIPT = r"""
import sys
from agent import profile
from agent.store import FileStore
p = profile.load(sys.argv[1])
sch = profile.schema(p)
buf = profile.buffer(p, FileStore(sys.argv[2]))
buf.open()
t0 = 1700000000000
for k in range(61):
    for c in range(7):
        value = 1000 + k if c in (0, 5) else 50 + (k % 7) / 10
        buf.append(t0 + 10000 * k, c, sch.scale(c, value))
buf.close()
buf = None
import gc
gc.collect()
buf = profile.buffer(p, FileStore(sys.argv[2]))
buf.open()
seq, data = buf.next_batch()
print(seq, buf.n, buf.log.boot)
print(bytes(data).hex())
"""


def test_the_reference_profile_buffer_makes_the_same_batch_on_micropython_and_it_decodes(
        micropython, tmp_path):
    # Heap: the reference buffer does NOT fit a 64k heap on the 64-bit unix port. Measured live
    # after building it: the agent's modules 35 KB, the compiled profile (json.load) 12 KB, the
    # buffer 24 KB (8 KB batch buffer, 5 KB encoder scratch, 4 KB of rows, objects), 72 KB in
    # all; the script below needs 96k (it fails at 88k). So it runs at 128k here.
    p = compiled_reference()
    (tmp_path / "profile.json").write_text(json.dumps(p))
    (tmp_path / "ref.py").write_text(REFERENCE_SCRIPT)
    from simulator.lab.micropython import find_tool
    subprocess.run([find_tool("mpy-cross"), "-o", str(tmp_path / "ref.mpy"),
                    str(tmp_path / "ref.py")], check=True)
    outputs = []
    # One store id for both buffers (each log draws its own): the rest must be the same bytes.
    for folder in ("mp-buffer", "py-buffer"):
        FileStore(str(tmp_path / folder)).replace("id", STORE_ID_FILE)
    # cwd is the temporary folder: MicroPython looks in the current folder first, and there it
    # finds ref.mpy, not the agent's sources (which it would import from the repository root).
    proc = micropython.run(["-m", "ref", "profile.json", "mp-buffer"], heap="128k",
                           cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs.append(proc.stdout.split())
    proc = subprocess.run([sys.executable, str(tmp_path / "ref.py"), str(tmp_path / "profile.json"),
                           str(tmp_path / "py-buffer")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout.split())
    assert outputs[0] == outputs[1]  # the same batch, byte for byte, on both interpreters
    seq, n, boot, hexdata = outputs[0]
    assert (seq, n, boot) == ("0", "0", "2")  # the 7 left in the journal: batch 1, at open
    from agent import profile
    sch = profile.schema(p)
    b = batch_decode.decode(bytes.fromhex(hexdata), {sch.id: sch})
    assert (b.device, b.seq, b.boot, b.dropped, b.synced) == ("printer-0001", 0, 1, 0, False)
    assert b.store == STORE_ID
    assert len(b.readings) == 420
    t0 = 1700000000000
    expected = []
    for k in range(60):
        for c, name in enumerate(sch.names):
            expected.append((t0 + 10000 * k, name, 1000 + k if c in (0, 5) else
                             round(50 + (k % 7) / 10, 1)))
    assert b.readings == expected


def test_a_pi_store_writes_each_append_through_so_a_full_disk_is_seen_at_the_append(tmp_path):
    # Buffered, a full disk said ENOSPC only at the sync, past the log's make_room, and a full
    # disk stopped tether run after all (a review, on a 64 KiB tmpfs).
    store = FileStore(str(tmp_path / "b"))
    store.append("00000000.seg", b"x" * 100)
    assert os.path.getsize(tmp_path / "b" / "00000000.seg") == 100    # before any sync
    store.close()
