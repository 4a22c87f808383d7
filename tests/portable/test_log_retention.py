# agent/log.py's retention, for end-to-end repair (docs/uplink.md, "Repair"): acknowledged
# batches stay until their room is needed, the oldest going first; unsent ones are dropped only
# when nothing acknowledged is left, counted and remembered (the newest four ranges, in the
# state file); batches are looked up by seq, and a requested range is classified.
# A module of its own: test_log.py alone fills MicroPython's 64k heap. Both interpreters.
import struct

from agent.store import RamStore

# The retention logic, not the heap budget (bench/heap.py and the agent's tests hold that): at 64k
# the real batches' test failed to allocate 368 bytes when the checkout's path was long (file
# names are on the heap too) and passed when it was short.
MICROPYTHON_HEAP = "96k"
from cutstore import CutStore, PowerCut
from support import raises
from logkit import REC, add, both_stores, drain, fake, opened, seqs


def ack_all(log):
    log.rewind()
    for seq, _ in drain(log):
        assert log.ack(seq)


def seg_numbers(log):
    return [s.number for s in log.segments]


def test_acked_batches_stay_until_their_room_is_needed_and_the_oldest_goes_first():
    for store, again in both_stores():
        log = opened(store, max_bytes=6 * REC, segment_bytes=2 * REC)
        data = [add(log, seq) for seq in range(6)]
        ack_all(log)
        # Full of acked batches: every one still held, byte-identical, across a reopen too.
        assert seg_numbers(log) == [0, 1, 2] and log.unacked == 0
        log.close()
        log = opened(again(), max_bytes=6 * REC, segment_bytes=2 * REC)
        assert [log.held(s) for s in range(6)] == data and log.oldest() == 0
        assert drain(log) == []  # held, but not sent again
        # New batches take the room of the oldest acked ones, which go uncounted.
        data += [add(log, 6), add(log, 7)]
        assert seg_numbers(log) == [1, 2, 3] and log.oldest() == 2
        assert log.held(0) is None and log.held(1) is None and log.held(2) == data[2]
        assert log.dropped == 0 and log.dropped_ranges == []
        assert seqs(log) == [6, 7]


def test_unsent_batches_are_dropped_only_when_nothing_acked_is_left_and_are_counted():
    store = RamStore()
    log = opened(store, max_bytes=6 * REC, segment_bytes=2 * REC)
    for seq in range(2):
        add(log, seq, count=5)
    ack_all(log)
    for seq in range(2, 6):
        add(log, seq, count=7)
    add(log, 6, count=7)  # segment 0 (acked) makes room
    assert log.dropped == 0 and log.oldest() == 2
    add(log, 7, count=7)
    add(log, 8, count=7)  # nothing acked is left: segment 1 (2 and 3, unsent) goes
    assert log.dropped == 14 and log.dropped_ranges == [[2, 3]] and log.oldest() == 4
    assert seqs(log) == [4, 5, 6, 7, 8]


def test_dropped_ranges_are_the_newest_four_and_survive_a_reopen():
    for store, again in both_stores():
        log = opened(store, max_bytes=2 * REC, segment_bytes=REC)
        for seq in range(12):
            add(log, seq)
            if seq % 2:  # every other batch gets through
                log.rewind()
                assert log.ack(log.next_batch()[0])
        # Each new batch pushes the oldest out. Every other one, the uplink got the oldest unsent
        # batch (an even one) acked; the odd ones never were, and were dropped.
        assert log.dropped_ranges == [[3, 3], [5, 5], [7, 7], [9, 9]], log.dropped_ranges
        log.close()
        log = opened(again(), max_bytes=2 * REC, segment_bytes=REC)
        assert log.dropped_ranges == [[3, 3], [5, 5], [7, 7], [9, 9]]
        assert log.dropped == 50  # 1, 3, 5, 7, 9: 1's range is forgotten, not its count
        assert log.classify(0, 11) == ([[10, 11]], [[0, 2], [4, 4], [6, 6], [8, 8]],
                                       [[3, 3], [5, 5], [7, 7], [9, 9]], [])


def test_a_requested_range_is_classified_held_gone_dropped_or_unknown():
    log = opened(RamStore(), max_bytes=6 * REC, segment_bytes=2 * REC)
    for seq in range(4):
        add(log, seq)
    ack_all(log)
    for seq in range(4, 12):
        add(log, seq)
    # 0..3 were acked and overwritten; 4..5 dropped unsent; 6..11 held; 12 on not formed yet.
    assert log.oldest() == 6 and log.dropped_ranges == [[4, 5]]
    assert log.classify(0, 20) == ([[6, 11]], [[0, 3]], [[4, 5]], [[12, 20]])
    assert log.classify(5, 6) == ([[6, 6]], [], [[5, 5]], [])
    assert log.classify(2, 2) == ([], [[2, 2]], [], [])
    assert log.classify(13, 14) == ([], [], [], [[13, 14]])
    assert log.classify(7, 9) == ([[7, 9]], [], [], [])
    assert log.held(9) == fake(9) and log.held(12) is None
    # Lookups in any order give the right batch (the log reads on from the last one).
    assert [log.held(s) for s in (11, 6, 10, 7, 7, 8)] == [fake(s) for s in (11, 6, 10, 7, 7, 8)]


def test_an_empty_log_classifies_everything_formed_as_gone_and_the_rest_as_unknown():
    store = RamStore()
    log = opened(store, max_bytes=2 * REC, segment_bytes=REC)
    assert log.classify(0, 3) == ([], [], [], [[0, 3]]) and log.oldest() is None
    add(log, 0)
    add(log, 1)
    ack_all(log)
    add(log, 2, 10, 2 * REC - 9 - 5)  # as big as the log: both acked segments go
    assert log.classify(0, 3) == ([[2, 2]], [[0, 1]], [], [[3, 3]])


def test_a_state_file_of_version_1_still_opens():
    import binascii
    store = RamStore()
    log = opened(store)
    for seq in range(3):
        add(log, seq)
    log.close()
    # boot 7, acked 0, 25 dropped, no dead segment, no floor: as the log wrote it before repair.
    body = struct.pack("<4sIIQII", b"TSB1", 7, 0 + 1, 25, 0, 0)
    store.replace("state", body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF))
    log = opened(store)
    assert (log.boot, log.acked, log.dropped, log.dropped_ranges) == (8, 0, 25, [])
    assert seqs(log) == [1, 2]
    log.close()
    assert opened(store).boot == 9  # written back as version 2, read as such


def test_a_dropped_range_is_committed_with_the_deletion_that_made_it():
    # The power goes right after the state file said segment 0 is gone and before the file is
    # removed: the count and the range are both there, once.
    for inner, again in both_stores():
        cut = CutStore(inner)
        log = opened(cut, max_bytes=2 * REC, segment_bytes=REC)
        add(log, 0, count=4)
        add(log, 1, count=4)
        cut.at = cut.writes + 2  # the state file's replace goes through, the removal does not
        cut.keep = 0
        assert isinstance(raises(PowerCut, add, log, 2), PowerCut)
        inner.close()
        log = opened(again(), max_bytes=2 * REC, segment_bytes=REC)
        assert log.dropped == 4 and log.dropped_ranges == [[0, 0]] and log.oldest() == 1


def test_real_batches_are_found_by_seq_whatever_the_length_of_the_device_id():
    # held() steps over batches by reading only their first bytes; a device id longer than
    # that peek still finds its batch.
    from agent import batch
    from agent.buffer import Buffer
    from agent.log import Log
    from agent.schema import Schema
    for device in ("d", "a-device-id-much-longer-than-the-peek-" + "x" * 40):
        log = Log(RamStore(), 1 << 16, 1 << 12, batch.seq_of)
        enc = batch.Encoder(device, Schema([("a", "", 1, 0)]), "compact", False, 256, 4)
        buf = Buffer(log, enc, 4, 600000, 4, 600000)
        buf.open()
        for i in range(40):
            buf.append(1000 * i, 0, i)
        sent = drain(log)
        assert [s for s, _ in sent] == list(range(10))
        for seq, data in sent[3:] + sent[:3]:
            assert log.held(seq) == data, (device, seq)
