# The power-cut workload shared by the buffer tests (tests/portable/test_buffer.py on a store
# that cuts at a chosen write, test_buffer_littlefs.py on a flash device that does). Portable.
import bufkit as K


class Workload:
    """Appends readings and forms batches while an uplink sends some and acks them (out of
    order too), recording what the caller could rely on each time a call returned:

    - `durable`: readings 0..durable-1 were in flash (journal or a stored batch),
    - `stored`: seq -> (count, bytes) of every batch whose cut() returned,
    - `acked`: seq -> bytes of every batch the broker had (ack() was called for it),
    - `boot`: the boot count that open() committed.

    A power cut can stop it anywhere (the store or the device raises); check() then verifies
    the promises on a buffer freshly opened over what survived."""

    def __init__(self, readings=40, uplink_every=6, sync_at=17, poll_every=9, offline=(0, 0)):
        self.readings = readings
        self.offline = offline  # readings during which the uplink is down: the log fills up
        self.uplink_every = uplink_every
        self.sync_at = sync_at
        self.poll_every = poll_every
        self.appended = 0   # readings 0..appended-1 were handed to the buffer (maybe not kept)
        self.durable = 0
        self.stored = {}
        self.acked = {}
        self.sent = {}
        self.formed = {}    # seq -> bytes of every batch ever given to the log, stored or not
        self.boot = 0
        self.done = False

    def _settle(self, buf):
        for seq, count, data in buf.log.formed:
            self.stored[seq] = (count, data)
        del buf.log.formed[:]
        self.durable = self.appended - (buf.n - buf.flushed)

    def _note_formed(self, buf):
        for seq, count, data in buf.log.formed:
            self.formed[seq] = data

    def run(self, buf):
        try:
            self._run(buf)
        finally:
            self._note_formed(buf)

    def _run(self, buf):
        buf.open()
        self.boot = buf.log.boot
        self._settle(buf)
        for i in range(self.readings):
            self.appended = i + 1
            t, c, v = K.reading(i)
            buf.append(t, c, v)
            self._note_formed(buf)
            self._settle(buf)
            if i == self.sync_at:
                buf.set_synced(True)
                self._note_formed(buf)
                self._settle(buf)
            if i % self.poll_every == self.poll_every - 1:
                buf.poll(t + buf.flush_ms)  # the time window closes with no new reading
                self._note_formed(buf)
                self._settle(buf)
            if i % self.uplink_every == self.uplink_every - 1 and not (
                    self.offline[0] <= i < self.offline[1]):
                self._uplink(buf)
        buf.cut()
        self._note_formed(buf)
        self._settle(buf)
        self.done = True

    def _uplink(self, buf):
        got = []
        for _ in range(3):
            b = buf.next_batch()
            if b is None:
                break
            self.sent[b[0]] = bytes(b[1])
            got.append(b[0])
        # The broker acks the last first; the middle one stays unacked until the next round
        # when there are three, so the cursor must wait for it.
        if len(got) == 3:
            got = [got[2], got[0]]
        else:
            got.reverse()
        for seq in got:
            self.acked[seq] = self.sent[seq]  # the PUBACK came: the consumer has it
            assert buf.ack(seq)
        if len(got) == 2 and len(self.sent) % 4 == 0:
            buf.rewind()

    def check(self, buf):
        """After a power cut: buf is a fresh Buffer over the surviving bytes, not yet opened."""
        # A torn end makes the batches to come a new store, which counts its own drops: the
        # old store's total is what its state file said (the ingest adds the two).
        log = buf.log
        old_id = log._load_id(log.store.names())[0]
        before = log.dropped if log._load_state() else 0
        discarded = buf.open()
        dropped_in_all = buf.log.dropped + (before if buf.log.store_id != old_id else 0)
        assert buf.log.boot > self.boot, (buf.log.boot, self.boot)
        present = K.drain(buf)
        seqs = [s for s, _ in present]
        for a, b in zip(seqs, seqs[1:]):
            assert a < b, seqs
        # The consumer's view: what it surely got before the cut (acked) and what the buffer
        # sends now. A seq seen twice, also one sent before the cut but never acked, must carry
        # the same bytes: that is what makes de-duplication by seq exact.
        consumer = {}
        for seq in self.acked:
            consumer[seq] = self.acked[seq]
        for seq, data in present:
            if seq in self.formed and self.formed[seq] != data:
                # only a batch the cut tore may be formed again (from the journal's rows,
                # without those still in RAM): nobody saw it
                assert seq not in self.stored and seq not in self.sent, (
                    "batch %d changed its bytes" % seq)
            if seq in self.sent:
                assert self.sent[seq] == data, "batch %d re-sent with other bytes" % seq
            consumer[seq] = data
        there = {}
        for seq, _ in present:
            there[seq] = True
        # One byte a reading (a dict would not fit the small heap): 1 = in a dropped batch.
        lost_rows = bytearray(self.appended)
        lost = 0  # readings of stored batches that neither survive nor reached the broker
        had = 0   # ... that the broker had, and are gone
        for seq in self.stored:
            count, data = self.stored[seq]
            if seq in there:
                continue
            if seq in self.acked:
                had += count
                continue
            lost += count
            for r in K.rows(data):
                lost_rows[K.index(r)] = 1
        # Never fewer than were lost. More only by batches the broker had: the acks since the
        # state file was last saved are the cut's, and a full log dropping such a batch at open
        # (the journal's rows become a batch there) counts it.
        assert lost <= dropped_in_all <= lost + had, (dropped_in_all, lost, had)
        dropped = buf.log.dropped   # what the envelopes carry: the store's own
        # Every reading: at most once anywhere; exactly once if it was durable and not counted
        # as dropped.
        seen = bytearray(self.appended)
        for seq in consumer:
            for r in K.rows(consumer[seq]):
                self._found(seen, r, seq)
        for r in K.ram_rows(buf):
            self._found(seen, r, "RAM")
        for i in range(self.durable):
            if lost_rows[i]:
                assert not seen[i], "reading %d counted as dropped but found" % i
            else:
                assert seen[i], "durable reading %d lost (durable: %d)" % (i, self.durable)
        # New readings still go in, and their batch gets a higher seq than anything before.
        # (A batch torn before its cut() returned never existed: its seq may come again.)
        top = -1
        for d in (self.stored, self.sent, consumer):
            for seq in d:
                if seq > top:
                    top = seq
        for i in range(self.appended, self.appended + 3):
            K.append(buf, i)
        buf.cut()
        more = K.drain(buf)
        assert more and more[0][0] > top, (more, top)
        new = []
        for seq, data in more:
            env, got = K.decode(data)
            assert env.seq == seq and env.boot == buf.log.boot
            if seq == more[0][0]:  # encoded before its own append could drop anything more
                assert env.dropped == dropped, (env.dropped, dropped)
            new += [K.index(r) for r in got]
        assert new[-3:] == [self.appended, self.appended + 1, self.appended + 2], new
        return discarded

    def _found(self, seen, r, where):
        i = K.index(r)
        assert 0 <= i < self.appended and r == K.reading(i), (r, where)
        assert not seen[i], "reading %d found twice, again in %s" % (i, where)
        seen[i] = 1
