# The buffer: every reading goes here first, and leaves only inside an acknowledged batch.
#
# Readings wait in RAM (three arrays allocated once, 9 bytes a reading) for at most the flush
# window (a count or a time); then they are appended to the journal, a small file of framed
# records that holds only the readings not yet in a batch. When the batch policy says so (max
# readings, max age, a change of clock sync) they are encoded into one batch, stored whole in
# the log with its sequence number (so a re-send after a reboot is byte-identical), and the
# journal starts again. Keeping raw rows out of the log means its bytes all hold batches.
#
# Rows and compact batches number channels by the schema (the profile's sensors). The buffer
# keeps the schema document they were made under: after a profile change the rows left in the
# journal are batched under that schema, and its document is kept, and published by the uplink
# before the batches, until the broker has acknowledged every batch made under it.
import array
import struct

from agent import cbor
from agent.log import HEAD, READINGS, frame, no_room, records

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

LIMIT = const(0x40000000)  # 2**30: times and values stay small ints on a 32-bit board
_JOURNAL = "journal"
_SCHEMA = "schema"          # the schema document the journal's rows and the newest batches use
EARLIER = "schemas"        # earlier ones still needed (agent/schema_change.py)
_ROWS_HEAD = "<BqIH"        # clock synced, base time (ms), batch sequence number, row count
_ROW_BYTES = const(9)


def journal_bytes(max_readings, ram_readings):
    """The journal's bound, taken from buffer.max_bytes: it never holds more than one batch's
    readings, the log gets the rest (the profile check shares it)."""
    return _ROW_BYTES * max_readings + (HEAD + 15) * (max_readings // max(1, ram_readings) + 2)


def _schema_doc(data):
    """data is a schema document. The schema file has no CRC of its own, so that a Tether of
    before reads it (a downgrade): a bit flipped in a channel's name still decodes, and is
    taken for an earlier profile's schema."""
    from agent.schema import Schema
    try:
        Schema.from_cbor(data)
        return True
    except cbor.CBORError:
        return False


class Buffer:
    """Readings in, batches out. `log` is an agent.log.Log, `encoder` an agent.batch.Encoder."""

    def __init__(self, log, encoder, max_readings=420, max_age_ms=600000, ram_readings=32,
                 flush_ms=60000):
        self.log = log
        self.store = log.store
        self.encoder = encoder
        self.max_readings = max_readings
        self.max_age_ms = max_age_ms
        self.ram_readings = ram_readings
        self.flush_ms = flush_ms
        self.journal_bytes = journal_bytes(max_readings, ram_readings)
        log.max_bytes -= self.journal_bytes
        if log.max_bytes < 4 * len(encoder.w.buf):
            raise ValueError("a buffer of %d bytes is too small: it needs room for four batches "
                             "of %d bytes and %d bytes of journal"
                             % (log.max_bytes + self.journal_bytes, len(encoder.w.buf),
                                self.journal_bytes))
        # Row i: time base + ts[i] (ms), channel chs[i], value vals[i] scaled by its resolution.
        zeros = bytes(4 * max_readings)  # one temporary for all three: fewer holes in the heap
        self.ts = array.array("i", zeros)
        self.chs = array.array("B", memoryview(zeros)[:max_readings])
        self.vals = array.array("i", zeros)
        self.base = 0
        self.n = 0
        self.flushed = 0      # rows 0..flushed-1 are in the journal already
        self.synced = False   # the clock state of the rows in RAM
        self.seq = 0          # of the next batch
        self.batches = 0      # formed since open()
        self.journaled = False  # a journal file exists (cut() removes it once it holds nothing)
        self.torn = False       # a write to it failed part way: it is written whole next time
        self.notify = None    # called when batches were stored: the uplink's wake-up

    # -- open ------------------------------------------------------------------------------

    def open(self, doc=None):
        """Reads the log and the journal back. Batches stay queued for the uplink; readings
        that were journaled but not yet batched become batches of their own (doc: the schema
        document the agent made, else the encoder's). Returns the bytes found torn or corrupt
        (the tail that a power cut interrupted), which are discarded."""
        journal = []
        tag = None
        # Its size only: records() reads it piece by piece, and a whole copy would be a large
        # allocation at boot, when the heap matters most.
        size = self.store.size(_JOURNAL) if _JOURNAL in self.store.names() else 0
        good = 0
        for kind, payload, end in records(self.store, _JOURNAL, 0, size):
            if kind != READINGS:
                break
            good = end
            journal.append(payload)
            if tag is None:
                tag = struct.unpack_from(_ROWS_HEAD, payload, 0)[2]
        counts = {}

        def replay(seq, count):
            if tag is not None and seq >= tag:
                counts[seq] = count

        # a bad journal record and the rows after it: counted where health and diag read it
        self.log.discarded += size - good
        # The boot is counted once the last one's rows are stored: under its number (a start
        # that fails before, a full disk, say, must not make them a later boot's)
        discarded = self.log.open(replay, False)
        self.encoder.store = self.log.store_id
        self.seq = self.log.next_seq()
        if doc is None:  # the encoder's schema document (the agent passes the one it made)
            doc = self.encoder.schema.to_cbor()
        raw = self.store.read_all(_SCHEMA) if _SCHEMA in self.store.names() else None
        old = raw if raw is None or raw == doc or _schema_doc(raw) else None
        if raw is not None and old is None:
            # Flash gone bad: which profile numbered the journal's rows went with it, and the
            # running one almost always did. Counted as discarded, as a state file that fails
            # its check is; every boot stopped here before.
            # An emptied one counts a byte: health shows it.
            self.log.discarded += max(len(raw), 1)
            discarded += max(len(raw), 1)
        changed = old is not None and old != doc
        if size:
            # The journal's rows are the last boot's: they become batches now, of their own
            # (times not synced count from that boot's start, so under its number), under the
            # schema they were numbered by, and as many as batch.max_readings asks (a smaller
            # one than theirs wrote past the arrays at every start). A power cut in here: the
            # journal is still there (removed once the last batch is stored), and the rows a
            # stored batch holds are skipped.
            skip = 0
            for seq in counts:
                skip += counts[seq]
            now = None
            if changed and journal:
                from agent import schema_change  # a board loads it only after a profile change
                now = schema_change.use(self, old)
            try:
                for payload in journal:
                    skip = self._replay_rows(payload, skip)
                self.cut()
            finally:
                if now is not None:
                    self.encoder.use(now)
            self.store.remove(_JOURNAL)
        self.log.new_boot()
        if changed:
            from agent import schema_change
            schema_change.retire(self, old)
        if raw != doc:
            self.store.replace(_SCHEMA, doc)
        return discarded

    def earlier_schemas(self):
        """The schema documents of earlier profiles that batches not yet acknowledged were made
        under (the uplink publishes them before the batches); forgets those no longer needed."""
        if EARLIER not in self.store.names():
            return ()
        from agent import schema_change
        return schema_change.needed(self)

    def kept_schemas(self):
        """The earlier profiles' schema documents that batches the log holds were made under:
        the uplink publishes them before a batch it sends again on request."""
        if EARLIER not in self.store.names():
            return ()
        from agent import schema_change
        return schema_change.kept(self)

    def _replay_rows(self, payload, skip):
        synced, base, _, count = struct.unpack_from(_ROWS_HEAD, payload, 0)
        at = struct.calcsize(_ROWS_HEAD)
        ts = array.array("i", payload[at:at + 4 * count])
        chs = payload[at + 4 * count:at + 5 * count]
        vals = array.array("i", payload[at + 5 * count:at + 9 * count])
        for i in range(count):
            if skip:
                skip -= 1
                continue
            # One batch window's rows (append cuts at a clock step, set_synced at a change),
            # maybe more than a smaller max_readings takes.
            if self.n == self.max_readings:
                self.cut()
            if self.n == 0:
                self.synced = bool(synced)
            self._put(base + ts[i], chs[i], vals[i])
        return skip

    # -- readings in ---------------------------------------------------------------------

    def _put(self, t, channel, value):
        n = self.n
        if n == 0:
            self.base = t
        self.ts[n] = t - self.base
        self.chs[n] = channel
        self.vals[n] = value
        self.n = n + 1

    def append(self, t, channel, value):
        """One reading: time t in ms, channel number, value as an integer at the channel's
        resolution. Forms a batch, or writes the journal, when a window closes."""
        if not -LIMIT < value < LIMIT:
            raise ValueError("reading %d is too large for a batch (limit +-2**30 at the "
                             "channel's resolution)" % value)
        back = False
        if self.n:
            # ts[0] is 0: the base is the first row's time. A clock stepped back by a batch's
            # age starts a new batch too, which keeps every time step of a batch small.
            off = t - self.base
            if not -self.max_age_ms < off < self.max_age_ms or not -LIMIT < off < LIMIT:
                self.cut()
            elif self.n == self.max_readings:
                self.cut()      # the cut that filled the window failed (a write error)
            else:
                # A clock stepped back by less: the flush window is timed on readings' times
                # and would stay open until the clock passed the old ones again.
                back = off < self.ts[self.n - 1]
        self._put(t, channel, value)
        if self.n == self.max_readings:
            self.cut()
        elif back or self.n - self.flushed >= self.ram_readings or (
                t - self.base - self.ts[self.flushed] >= self.flush_ms):
            self.flush()

    def set_synced(self, synced):
        """The clock became synced (or lost sync): readings before and after go in separate
        batches, because a batch has one time base."""
        synced = bool(synced)
        if synced != self.synced:
            if self.n:
                self.cut()
            self.synced = synced

    def poll(self, now):
        """Closes the windows that time alone closes; call it now and then with the clock.
        A clock stepped back (NTP setting a fast one right) closes them as a reading then
        would: timed on readings' times, they stayed open until the clock passed the old
        readings again, readings in RAM for as long as the step."""
        if not self.n:
            return
        off = now - self.base
        if not -self.max_age_ms < off < self.max_age_ms:
            self.cut()
        elif self.flushed < self.n and (off - self.ts[self.flushed] >= self.flush_ms
                                        or off < self.ts[self.n - 1]):
            self.flush()

    def due_in(self, now):
        """Ms until poll() has a window to close; None while nothing waits in RAM."""
        if not self.n:
            return None
        left = self.base + self.max_age_ms - now
        if self.flushed < self.n:
            left = min(left, self.base + self.ts[self.flushed] + self.flush_ms - now)
        return left

    def flush(self):
        """Writes the readings that are only in RAM to the journal, durably."""
        if self.flushed >= self.n:
            return
        if not self.torn:
            parts = self._rows(self.flushed, self.n)
            head = frame(READINGS, parts)
            self.journaled = True
            try:
                self.store.append(_JOURNAL, head)
                for p in parts:
                    self.store.append(_JOURNAL, p)
            except Exception as exc:
                # Part of the record may be in the file: rows appended after it would be lost
                # at the next open, which stops at the first bad record.
                self.torn = True
                if not (no_room(exc) and self.log.make_room()):
                    raise
        if self.torn:
            self._rewrite_journal(self.n)   # whole, in place of what a failed write left
            self.flushed = self.n
        else:
            self.flushed = self.n
            self.store.sync()

    def _rows(self, a, b):
        # bytes(), because len() of a memoryview of an int array counts items, and MicroPython's
        # memoryview cannot tell its size in bytes.
        return (struct.pack(_ROWS_HEAD, self.synced, self.base, self.seq, b - a),
                bytes(memoryview(self.ts)[a:b]), bytes(memoryview(self.chs)[a:b]),
                bytes(memoryview(self.vals)[a:b]))

    def _rewrite_journal(self, end):
        parts = self._rows(0, end)
        self.store.replace(_JOURNAL, frame(READINGS, parts) + b"".join(parts))
        self.journaled = True
        self.torn = False

    # -- batches ---------------------------------------------------------------------------

    def cut(self):
        """Encodes every reading in RAM into batches (more than one if they do not fit in the
        batch byte limit) and stores them in the log."""
        if not self.n:
            return
        while self.n:
            k = self.n
            while True:
                try:
                    data = self.encoder.encode(self.base, self.ts, self.chs, self.vals, 0, k,
                                               self.seq, self.log.boot, self.log.dropped,
                                               self.synced)
                    break
                except cbor.BufferFull:
                    if k == 1:
                        raise
                    k //= 2
            self.log.append_batch(self.seq, k, data)
            self.seq += 1
            self.batches += 1
            self._shift(k)
        self.log.sync()
        # The batches are durable: the journal now holds only what they left.
        if self.flushed:
            self._rewrite_journal(self.flushed)
        elif self.journaled:
            self.store.remove(_JOURNAL)
            self.journaled = self.torn = False
        if self.notify is not None:
            self.notify()

    def _shift(self, k):
        """Removes rows 0..k-1 and moves the rest to the front."""
        left = self.n - k
        if left:
            ts = self.ts
            chs = self.chs
            vals = self.vals
            shift = ts[k]
            for i in range(k, self.n):
                ts[i - k] = ts[i] - shift
                chs[i - k] = chs[i]
                vals[i - k] = vals[i]
            self.base += shift
        self.n = left
        self.flushed = self.flushed - k if self.flushed > k else 0

    # -- the uplink's side -----------------------------------------------------------------

    def next_batch(self):
        """(seq, bytes) of the next batch to send, or None; see agent.log.Log.next_batch."""
        return self.log.next_batch()

    def ack(self, seq):
        return self.log.ack(seq)

    def rewind(self):
        self.log.rewind()

    def close(self):
        self.flush()
        self.log.close()
