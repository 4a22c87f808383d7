# A segment with a bad record, read at open (agent/log.py): loaded only when one is found, so a
# board's heap holds this code only after a power cut or a flipped bit.
#
# A torn end (the record being written when the power went) has nothing good after it, and its
# number was never sent: the next batch takes it. A corrupt record inside (a flipped bit) may be
# followed by good ones, whose numbers were handed out and maybe sent: the scan goes on from the
# next record whose header and CRC-32 hold, the batches lost on the way are remembered as
# dropped, and no number at or below the newest one seen is given again. Portable.
import struct

from agent.log import BATCH, HEAD, records


def scan_on(log, seg, good, replay):
    """The rest of a segment whose records stop being good at offset `good`."""
    seg.sealed = True      # never appended to again
    while True:
        start = _next_good(log.store, seg, good)
        if start is None:
            break
        seg.skips = (seg.skips or []) + [(good, start)]
        log.discarded += start - good
        for kind, payload, end in records(log.store, seg.name, start, seg.size):
            prev = seg.last_seq if seg.last_seq >= 0 else log.last_seq
            seq = log.seq_of(memoryview(payload)[2:])
            if prev + 1 < seq:
                gone(log, prev, seq)
            break
        good = log._read(seg, start, replay)
        if good >= seg.size:
            return
    if good + HEAD <= seg.size and good + HEAD + struct.unpack(
            "<H", log.store.read(seg.name, good, 2))[0] <= seg.size:
        # A whole record failing its CRC is durable data gone bad, not a torn end: it held a
        # batch whose number may be out, which a new batch must not take.
        taken = (seg.last_seq if seg.last_seq >= 0 else log.last_seq) + 1
        gone(log, taken - 1, taken + 1)
        if taken > log.last_seq:
            log.last_seq = taken
        if seg.first_seq >= 0:
            seg.last_seq = taken    # the floor when the segment goes
    elif good < seg.size:
        log.torn = True             # a part of a record: a torn write, or the log cut there
    log.discarded += seg.size - good


def _next_good(store, seg, bad):
    """The offset of the first good batch record after the bad one at `bad`, or None."""
    off = bad + 1
    while off + HEAD <= seg.size:
        chunk = store.read(seg.name, off, 512)
        if len(chunk) < HEAD:
            return None
        for i in range(len(chunk) - HEAD + 1):
            if chunk[i + 2] == BATCH:
                for _ in records(store, seg.name, off + i, seg.size):
                    return off + i
        off += len(chunk) - HEAD + 1
    return None


def gone(log, last, seq):
    """Batches last+1 .. seq-1 were lost to a corrupt record or a segment emptied or gone: a
    resend says dropped (how many readings they held is gone with them). Returns how many were
    not remembered before."""
    n = 0
    for s in range(max(last, log.acked) + 1, seq):
        if not [r for r in log.dropped_ranges if r[0] <= s <= r[1]]:
            log._remember_dropped(s)
            n += 1
    return n
