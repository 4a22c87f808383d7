# agent/log.py: framed records, batches kept byte-identical across reopen, sequence numbers,
# boot count, the ack cursor, rewind, the byte bound and the drop count.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
# The batches are stand-ins (tests/portable/logkit.py).
MICROPYTHON_HEAP = "96k"  # the power-cut test holds 40 batches twice over in its own lists; at
# 64k it sat at the edge, and a few bytes more of log.py code tipped it over
from agent.log import BATCH, HEAD, MAX_RECORD, READINGS, frame, records
from agent.store import FileStore, RamStore
from cutstore import CutStore, PowerCut
from logkit import REC, add, both_stores, drain, fake, new_log, opened, seqs
from support import raises, tmpdir


def test_framed_records_round_trip_and_reading_stops_at_a_torn_or_corrupt_record():
    store = RamStore()
    payloads = [(BATCH, [b"", b""]), (READINGS, [b"x"]), (BATCH, [b"ab", bytes(range(256)) * 3]),
                (READINGS, [bytes(1000)])]
    for kind, parts in payloads:
        head = frame(kind, parts)
        assert len(head) == HEAD
        store.append("f", head)
        for p in parts:
            store.append("f", p)
    size = store.size("f")
    got = [(k, p, end) for k, p, end in records(store, "f", 0, size)]
    assert [(k, p) for k, p, _ in got] == [(k, b"".join(parts)) for k, parts in payloads]
    assert got[-1][2] == size
    ends = [0] + [end for _, _, end in got]
    # A record cut anywhere (header or payload) ends the reading there; what precedes stays.
    for i in range(len(payloads)):
        for cut in (ends[i] + 1, ends[i] + HEAD - 1, ends[i] + HEAD, ends[i + 1] - 1):
            if ends[i] < cut < ends[i + 1]:
                assert len(list(records(store, "f", 0, cut))) == i
    # A flipped bit in a payload or in a header stops the reading at that record.
    data = bytearray(store.read_all("f"))
    for at in (ends[2] + 2, ends[2] + HEAD + 100, ends[1] + 3):
        bad = RamStore()
        flipped = bytearray(data)
        flipped[at] ^= 0x10
        bad.append("f", flipped)
        n = 1 if at < ends[2] else 2
        assert len(list(records(bad, "f", 0, size))) == n, at
    assert isinstance(raises(ValueError, frame, BATCH, [Sized(MAX_RECORD), b"x"]), ValueError)


class Sized:
    """Stands for a part of n bytes without taking them from a 64k heap (only len() is read
    before the size check)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def test_batch_comes_back_byte_identical_with_its_seq_after_close_and_reopen():
    for store, again in both_stores():
        log = opened(store)
        sent = [add(log, 0, filler=3), add(log, 1, filler=300), add(log, 2, filler=0)]
        log.close()
        log = opened(again())
        assert log.unacked == 3
        assert drain(log) == [(0, sent[0]), (1, sent[1]), (2, sent[2])]
        assert log.next_seq() == 3


def test_boot_count_goes_up_by_one_per_open():
    for store, again in both_stores():
        boots = []
        for _ in range(4):
            log = opened(again())
            boots.append(log.boot)
            log.close()
        assert boots == [1, 2, 3, 4], boots
        # An open that is never closed (a power cut) still counted its boot.
        opened(again())
        assert opened(again()).boot == 6


def test_seq_keeps_increasing_across_reopen_after_every_batch_was_acked():
    for store, again in both_stores():
        log = opened(store, segment_bytes=REC)  # one batch a segment
        for seq in range(5):
            add(log, seq)
        for seq, _ in drain(log):
            assert log.ack(seq)
        # Acked segments stay until their room is needed: the ingest may ask for them again.
        assert [s.number for s in log.segments] == [0, 1, 2, 3, 4]
        log.close()
        log = opened(again(), segment_bytes=REC)
        assert drain(log) == []
        assert log.unacked == 0 and log.next_seq() == 5
        add(log, log.next_seq())
        assert seqs(log) == [5]


def test_seq_keeps_increasing_across_reopen_when_every_segment_was_deleted():
    # One batch a segment and room for two: a batch as big as the whole log drops both, and
    # the power goes before the big one lands. No segment is left to tell the last seq: the
    # state file's floor must.
    for inner, again in both_stores():
        cut = CutStore(inner)
        log = opened(cut, max_bytes=2 * REC, segment_bytes=REC)
        add(log, 0)
        add(log, 1)
        assert log.ack(seqs(log)[0])
        # Writes to come: state + delete for each of the two segments, then the big batch's
        # first bytes, where the power goes.
        cut.at = cut.writes + 5
        cut.keep = 0
        assert isinstance(raises(PowerCut, add, log, 2, 10, 2 * REC - 9 - 5), PowerCut)
        inner.close()
        store = again()
        assert [n for n in store.names() if n.endswith(".seg")] == []
        log = opened(store, max_bytes=2 * REC, segment_bytes=REC)
        assert log.next_seq() == 2
        assert log.dropped == 10  # batch 1 was unacked when it went


def test_acked_batches_are_not_handed_out_after_reopen_and_unacked_ones_are_in_order():
    for store, again in both_stores():
        log = opened(store)
        data = [add(log, seq) for seq in range(6)]
        got = drain(log)
        for seq in (0, 1, 2):
            assert log.ack(got[seq][0])
        log.close()
        log = opened(again())
        assert drain(log) == [(3, data[3]), (4, data[4]), (5, data[5])]
        assert log.unacked == 3


def test_after_a_power_cut_only_batches_acked_since_the_last_save_come_again():
    # How often acks are saved is the log's choice (a cut may only make recent acks go out
    # again, the consumer de-duplicates); what must hold: every unacked batch comes again, in
    # order, with its bytes, and what comes again is a run that ends with the newest.
    store = RamStore()
    log = opened(store, segment_bytes=64 * REC)  # one segment: no deletion saves the state
    data = [add(log, seq, filler=3) for seq in range(40)]
    for seq, _ in drain(log)[:30]:
        assert log.ack(seq)
    log = opened(store, segment_bytes=64 * REC)  # no close: the power went
    again = drain(log)
    first = again[0][0]
    assert first <= 30 and again == [(s, data[s]) for s in range(first, 40)], first
    # Whatever was saved stays saved: acking the rest and closing leaves nothing to send.
    for seq, _ in again:
        assert log.ack(seq)
    log.close()
    log = opened(store, segment_bytes=64 * REC)
    assert drain(log) == [] and log.next_seq() == 40


def test_rewind_hands_out_every_unacked_batch_again_from_the_oldest():
    for store, again in both_stores():
        log = opened(store)
        data = [add(log, seq) for seq in range(5)]
        assert [s for s, _ in [log.next_batch(), log.next_batch(), log.next_batch()]] == [0, 1, 2]
        assert log.ack(0)
        log.rewind()
        assert log.ack(1) is False  # not in flight any more: sent again first
        assert drain(log) == [(s, data[s]) for s in (1, 2, 3, 4)]
        assert log.ack(1) and log.ack(2)
        log.rewind()
        assert seqs(log) == [3, 4]
        log.rewind()
        log.close()
        assert seqs(opened(again())) == [3, 4]


def test_out_of_order_acks_advance_the_cursor_over_the_contiguous_prefix_only():
    for store, again in both_stores():
        log = opened(store, segment_bytes=REC)
        for seq in range(5):
            add(log, seq)
        assert seqs(log) == [0, 1, 2, 3, 4]
        assert log.ack(2) and log.ack(3)
        assert log.acked == -1 and log.unacked == 5
        assert [s.number for s in log.segments] == [0, 1, 2, 3, 4]
        assert log.ack(7) is False
        log.rewind()
        assert seqs(log) == [0, 1, 2, 3, 4]  # nothing was acked in order: all come again
        for seq in (1, 0, 3, 2):
            assert log.ack(seq)
        assert log.acked == 3 and log.unacked == 1
        assert log.ack(0) is False  # already acked
        # Acked segments are kept (for repairs), not deleted by acks.
        assert [s.number for s in log.segments] == [0, 1, 2, 3, 4]
        log.close()
        log = opened(again(), segment_bytes=REC)
        assert seqs(log) == [4]
        assert log.ack(4)
        log.close()
        log = opened(again(), segment_bytes=REC)
        assert seqs(log) == [] and log.next_seq() == 5


def test_log_never_exceeds_its_bound_drops_oldest_segment_first_and_counts_exactly():
    for store, again in both_stores():
        bound = 10 * REC
        log = opened(store, max_bytes=bound, segment_bytes=2 * REC)
        counts = {}
        acked = []
        for seq in range(40):
            counts[seq] = 3 + seq % 5
            before = [s.number for s in log.segments]
            add(log, seq, counts[seq])
            on_disk = 0
            for name in store.names():
                if name.endswith(".seg"):
                    on_disk += store.size(name)
            assert log.size == on_disk <= bound, (log.size, on_disk, bound)
            after = [s.number for s in log.segments]
            # Only the oldest segments went, in order; the newest always stays.
            gone = [n for n in before if n not in after]
            assert gone == before[:len(gone)], (before, after)
            assert after[-1] == max(before + after)
            assert [n for n in store.names() if n.endswith(".seg")] == [
                "%08d.seg" % n for n in after]
            if seq % 7 == 3:  # now and then the uplink gets the oldest batch through
                log.rewind()
                b = log.next_batch()
                assert log.ack(b[0])
                acked.append(b[0])
        present = seqs(opened(again(), max_bytes=bound, segment_bytes=2 * REC))
        # Every batch that is neither acked nor present was dropped, and only those count.
        expected = 0
        for seq in counts:
            if seq not in present and seq not in acked:
                expected += counts[seq]
        assert log.dropped == expected, (log.dropped, expected)
        assert expected > 0
        assert present == list(range(present[0], 40))  # the newest survive, oldest went first
        log.close()
        assert opened(again(), max_bytes=bound, segment_bytes=2 * REC).dropped == expected


def test_a_batch_acked_out_of_order_is_not_counted_as_dropped():
    store = RamStore()
    log = opened(store, max_bytes=4 * REC, segment_bytes=2 * REC)
    for seq in range(4):
        add(log, seq, count=10)
    assert seqs(log) == [0, 1, 2, 3]
    assert log.ack(1)  # the broker has batch 1; batch 0 is still in flight
    add(log, 4, count=10)  # the log is full: segment 0 (batches 0 and 1) goes
    assert log.dropped == 0, log.dropped  # batch 0 may still get its PUBACK
    log.close()           # it did not: a stop (or a power cut) counts it
    log = opened(store, max_bytes=4 * REC, segment_bytes=2 * REC)
    assert log.dropped == 10
    assert seqs(log) == [2, 3, 4]


def test_a_batch_dropped_on_its_way_counts_only_if_its_connection_ends_unacknowledged():
    # A slow link draining a full log: the batches in flight went with the oldest segment and
    # were counted as dropped, delivered or not (2,080 readings counted, 960 of them delivered).
    store = RamStore()
    log = opened(store, max_bytes=4 * REC, segment_bytes=2 * REC)
    for seq in range(4):
        add(log, seq, count=10)
    assert seqs(log) == [0, 1, 2, 3]      # all four in flight
    add(log, 4, count=10)                  # segment 0 (batches 0 and 1) goes
    assert log.dropped == 0
    assert log.ack(0)                      # delivered after all
    log.rewind()                           # the connection ends before batch 1's PUBACK
    # both in the ranges since the drop, in order: a resend asks only for what is missing
    assert log.dropped == 10 and log.dropped_ranges == [[0, 1]]
    assert not log.ack(1)                  # too late: counted
    log.close()
    assert opened(store, max_bytes=4 * REC, segment_bytes=2 * REC).dropped == 10


def test_torn_or_corrupt_tail_is_discarded_reported_and_appends_go_to_a_new_segment():
    for corrupt in (False, True):
        for store, again in both_stores():
            log = opened(store)
            data = [add(log, seq) for seq in range(3)]
            log.close()
            name = "00000000.seg"
            whole = store.read_all(name)
            if corrupt:  # a flipped bit in the middle of the last record
                bad = bytearray(whole)
                bad[len(whole) - REC // 2] ^= 0x01
                keep = bytes(bad)
            else:  # the last record torn
                keep = whole[:len(whole) - 5]
            store.replace(name, keep)
            log = new_log(again())
            discarded = log.open()
            assert discarded == (REC if corrupt else REC - 5), discarded
            assert drain(log) == [(0, data[0]), (1, data[1])]
            # A torn end was being written at the cut, never sent: its number is free. A whole
            # record gone bad was durable, maybe sent: its number is not given again (the
            # ingest would take a new batch under it for a copy with other bytes), and a
            # resend is told it was dropped.
            nxt = 3 if corrupt else 2
            assert log.next_seq() == nxt
            assert log.dropped_ranges == ([[2, 2]] if corrupt else [])
            d = add(log, nxt)
            assert [s.number for s in log.segments] == [0, 1]  # never after the bad bytes
            log.close()
            log = new_log(again())
            assert log.open() == discarded  # the bad bytes stay counted until acked away
            assert drain(log) == [(0, data[0]), (1, data[1]), (nxt, d)]
            assert log.next_seq() == nxt + 1


def test_batches_lost_to_a_corrupt_record_inside_the_log_are_told_as_dropped_not_gone():
    # A flipped byte a third of the way into an older segment: a resend's answer said "gone"
    # (acknowledged, then lost at the broker) for batches never sent. The batches after the bad
    # record in its segment are read on from the next good one: they were lost with it.
    for store, again in both_stores():
        log = opened(store)
        data = [add(log, seq) for seq in range(8)]   # segments of 4 batches: 0-3 and 4-7
        log.close()
        bad = bytearray(store.read_all("00000000.seg"))
        bad[REC + REC // 2] ^= 0x01      # batch 1
        store.replace("00000000.seg", bytes(bad))
        log = new_log(again())
        assert log.open() == REC
        assert drain(log) == [(s, data[s]) for s in (0, 2, 3, 4, 5, 6, 7)]
        assert log.classify(0, 7)[:3] == ([[0, 0], [2, 7]], [], [[1, 1]])
        assert log.next_seq() == 8
        log.close()
        log = new_log(again())
        log.open()                       # remembered once, not again at every start
        assert log.dropped_ranges == [[1, 1]]


def test_a_corrupt_record_in_the_newest_segment_does_not_give_its_numbers_again():
    # The batches after it were sent (the ack cursor is saved only now and then): numbers
    # given again went to new batches the ingest took for copies with other bytes, and lost.
    for store, again in both_stores():
        log = opened(store, segment_bytes=40 * REC)
        data = [add(log, seq) for seq in range(10)]
        log.close()
        bad = bytearray(store.read_all("00000000.seg"))
        for at in (5 * REC + 3, 5 * REC + HEAD + 20, 6 * REC + 2):  # batches 5 (twice), 6
            bad[at] ^= 0x10
        store.replace("00000000.seg", bytes(bad))
        log = new_log(again(), segment_bytes=40 * REC)
        assert log.open() == 2 * REC
        assert drain(log) == [(s, data[s]) for s in (0, 1, 2, 3, 4, 7, 8, 9)]
        assert log.next_seq() == 10
        assert log.dropped_ranges == [[5, 6]]
        d = add(log, 10)
        log.close()
        log = new_log(again(), segment_bytes=40 * REC)
        log.open()
        assert seqs(log)[-2:] == [9, 10] and log.held(10) == d


def test_a_torn_first_record_of_a_segment_marks_nothing_dropped():
    # The common power cut: the first record of a new segment torn. Its seq goes to the next
    # batch, and the batches before it were marked dropped (unacked ones still held too), one
    # range more at every start.
    store = RamStore()
    log = opened(store)
    for seq in range(4):
        add(log, seq)
    assert log.ack(log.next_batch()[0]) and log.ack(log.next_batch()[0])
    log.close()
    store.append("00000001.seg", frame(BATCH, [b"\x0a\x00", fake(4)])[:5])   # torn
    for again in range(3):
        log = new_log(store)
        log.open()
        if again == 0:
            for seq in range(4, 7):
                add(log, seq)
        assert log.dropped_ranges == [], log.dropped_ranges
        log.close()


def test_a_deletion_cut_between_state_and_file_removal_is_finished_at_open():
    for store, again in both_stores():
        log = opened(store, max_bytes=3 * REC, segment_bytes=REC)
        for seq in range(3):
            add(log, seq)
        kept = store.read_all("00000000.seg")
        for s, _ in drain(log)[:2]:
            log.ack(s)
        add(log, 3)  # the log is full: segment 0 (acked) makes room
        log.close()
        assert "00000000.seg" not in store.names()
        # Put segment 0 back as if the power went after the state said it was dead.
        store.append("00000000.seg", kept)
        store.close()
        store = again()
        log = opened(store, max_bytes=3 * REC, segment_bytes=REC)
        assert "00000000.seg" not in store.names()
        assert seqs(log) == [2, 3]


def test_a_store_folder_that_cannot_be_made_says_why_at_once():
    # A file where a folder of the path should be: the folder is not there to write into, and
    # the store says why when it is made, not "no such file" at its first write.
    base = tmpdir()
    with open(base + "/a-file", "w") as f:
        f.write("x")
    exc = raises(OSError, FileStore, base + "/a-file/log")
    assert exc.args[0] == 20, exc.args     # ENOTDIR


def seqs_of_segment(store, name):
    seq_of = new_log(store).seq_of
    return [seq_of(memoryview(p)[2:]) for _, p, _ in records(store, name, 0, store.size(name))]


def lose_segment(store, again, index, how):
    """A log of 12 batches, 4 a segment, whose segment `index` is then emptied or deleted, and
    opened again: (the batches, the lost segment's seqs, the log, the bytes it discarded)."""
    log = opened(store, segment_bytes=4 * REC)
    data = [add(log, seq) for seq in range(12)]
    log.close()
    names = sorted(n for n in store.names() if n.endswith(".seg"))
    assert len(names) >= 3
    lost = seqs_of_segment(again(), names[index])
    if how == "emptied":
        again().replace(names[index], b"")
    else:
        again().remove(names[index])
    log = new_log(again(), segment_bytes=4 * REC)
    discarded = log.open()
    return data, lost, log, discarded


def test_a_segment_emptied_or_gone_in_the_middle_leaves_its_batches_remembered_as_dropped():
    # They were "gone" to a resend, as if never made, and counted nowhere
    for how in ("emptied", "deleted"):
        for store, again in both_stores():
            data, middle, log, _ = lose_segment(store, again, 1, how)
            assert log.dropped_ranges == [[middle[0], middle[-1]]], (how, log.dropped_ranges)
            kept = [s for s in range(12) if s not in middle]
            first = min(n for n in again().names() if n.endswith(".seg"))
            assert drain(log) == [(s, data[s]) for s in kept]
            assert seqs_of_segment(again(), first)[0] == 0
            log.close()
            log = new_log(again(), segment_bytes=4 * REC)
            log.open()
            assert log.dropped_ranges == [[middle[0], middle[-1]]]   # once, not a range a start
            log.close()


def test_the_oldest_segment_emptied_or_gone_leaves_its_unsent_batches_remembered_and_counted():
    # Its batches vanished uncounted: health's discarded said 0, and a resend took them for
    # lost at the broker.
    for how in ("emptied", "deleted"):
        for store, again in both_stores():
            data, oldest, log, discarded = lose_segment(store, again, 0, how)
            assert log.dropped_ranges == [[oldest[0], oldest[-1]]], (how, log.dropped_ranges)
            assert discarded >= HEAD * len(oldest)
            assert drain(log) == [(s, data[s]) for s in range(12) if s not in oldest]
            assert log.next_seq() == 12
            log.close()


def test_a_lost_state_file_does_not_take_the_segments_dropped_before_for_lost_unsent():
    # Without its state the log cannot tell where it began: the batches its full log dropped
    # to make room (delivered long ago) were all remembered as dropped unsent.
    for store, again in both_stores():
        log = opened(store, max_bytes=8 * REC, segment_bytes=4 * REC)
        for seq in range(20):
            add(log, seq)
        drain(log)
        log.close()
        assert min(seqs_of_segment(again(), n)[0] for n in again().names()
                   if n.endswith(".seg")) > 0
        again().remove("state")
        log = new_log(again(), max_bytes=8 * REC, segment_bytes=4 * REC)
        log.open()
        assert log.dropped_ranges == []
        log.close()
