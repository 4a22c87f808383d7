# The store-and-forward log: append-only segment files of batch records, and a state file.
#
# Record: length (u16) | type (u8) | CRC-32 (u32) of length, type and payload | payload.
# A power cut can tear only the record being written; on open each segment is read up to its
# first bad record and appends continue in a fresh segment, so the torn bytes are never
# followed by good ones and no truncate is needed (MicroPython files have none).
#
# The state file (replaced whole: write, then rename) holds the boot count, the acknowledged
# sequence number, the dropped-readings total, the number of the newest dead segment and the
# newest few sequence ranges dropped unsent. Every deletion commits there first, so a cut between
# the two leaves nothing half done.
#
# The id file, written once when the log is made, holds its store id, a random number that
# batches and events carry, and the first sequence number under it (0 but after an id file that
# failed its check): the ingest tells a log made afresh (an erased board, a new SD card), whose
# numbers start at 0 again, from the one before it (docs/wire-format.md).
#
# Acknowledged batches stay until the space is needed (docs/uplink.md, "Repair"): the broker may
# lose what it acknowledged, and the ingest can then ask for them again. A full log drops its
# oldest segment, so acknowledged data goes first; a segment is deleted only to make room, about
# as often as acks used to delete them, and no batch is ever written twice.
import binascii
import os
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

READINGS = const(1)  # rows not yet in a batch (the buffer's journal, agent/buffer.py)
BATCH = const(2)     # a whole encoded batch, after its reading count (u16)
HEAD = const(7)
MAX_RECORD = const(0xFFFF)
_STATE = "state"
_ID = "id"
_STATE_V1 = b"TSB1"
_STATE_MAGIC = b"TSB2"
# magic, boot, acked + 1, dropped, dead + 1, seq floor + 1; version 2 adds the number of dropped
# ranges that follow (u8), each as from, to (u32, u32); the CRC-32 of it all ends the file.
_STATE_FMT = "<4sIIQII"
_STATE_BYTES = const(32)  # the fixed part, with its CRC
_PEEK = const(80)  # bytes of a batch read to find its seq while stepping over it: the envelope
# up to the seq with a 64-character device id (agent/ids.py)
DROPPED_RANGES = const(4)  # dropped-unsent ranges remembered; an older one reads as gone


def frame(kind, parts):
    """The 7-byte header of a record whose payload is the parts one after the other."""
    length = 0
    for p in parts:
        length += len(p)
    if length > MAX_RECORD:
        raise ValueError("a %d-byte record is larger than the log allows" % length)
    h = struct.pack("<HB", length, kind)
    crc = binascii.crc32(h)
    for p in parts:
        crc = binascii.crc32(p, crc)
    return h + struct.pack("<I", crc & 0xFFFFFFFF)


def seal(body):
    """body and its CRC-32 after it: a small file replaced whole (the state, the id)."""
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


def unseal(data):
    """The body of a sealed file; None when it fails its check (flash gone bad)."""
    if data is None or len(data) < 4:
        return None
    body = data[:-4]
    if struct.unpack("<I", data[-4:])[0] != binascii.crc32(body) & 0xFFFFFFFF:
        return None
    return body


def records(store, name, start, size):
    """(type, payload, end offset) of each good record of a file from offset start; stops at the
    first record that is torn (runs past size) or corrupt (CRC)."""
    off = start
    while off + HEAD <= size:
        head = store.read(name, off, HEAD)
        length, kind, crc = struct.unpack("<HBI", head)
        if off + HEAD + length > size:
            return
        payload = store.read(name, off + HEAD, length)
        if binascii.crc32(payload, binascii.crc32(head[:3])) & 0xFFFFFFFF != crc:
            return
        off += HEAD + length
        yield kind, payload, off


def no_room(exc):
    """A write refused for want of room (ENOSPC: 28 on every port)."""
    return isinstance(exc, OSError) and exc.args and exc.args[0] == 28


def count_of(payload):
    """The reading count of a BATCH record's payload."""
    return payload[0] | (payload[1] << 8)


class Segment:
    def __init__(self, number):
        self.number = number
        self.name = "%08d.seg" % number
        self.size = 0
        self.first_seq = -1  # of its first good batch: a lookup by seq reads one segment only
        self.last_seq = -1
        self.sealed = False  # holds a torn or corrupt record: never appended to again
        self.skips = None    # [(bad record's offset, next good one's)] found at open, if any


class Log:
    """Batch records in segments in a store (agent/store.py), bounded to max_bytes.

    open() replays every good batch to a callback. Batches are then handed out in order by
    next_batch() until ack() is called for them. Acked or not, they leave the log only when it
    is full and drops its oldest segment; the readings of the unacked ones there are added to
    `dropped`, and their sequence numbers to `dropped_ranges`. held() and classify() answer the
    ingest's requests for batches again.
    """

    def __init__(self, store, max_bytes, segment_bytes, seq_of, save_after=100 * _STATE_BYTES):
        self.store = store
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        # encoded batch -> its sequence number; given a memoryview past the record's 2-byte
        # head, so that no batch is copied just to read its number
        self.seq_of = seq_of
        # Acks are saved once this many bytes of batches were acked: the state file then costs
        # at most 1 % of what the log writes.
        self.save_after = save_after
        self.segments = []
        self.size = 0
        self.boot = 0
        self.store_id = 0      # 0: a log made before store ids (the ingest's store 0)
        self.store_first = 0   # the first sequence number under store_id
        self.acked = -1        # every batch with a sequence number <= this is acked or dropped
        self.dropped = 0       # readings dropped because the log was full, since it was created
        self.dead = -1         # segments numbered <= this are gone or about to be
        self.seq_floor = -1    # highest sequence number in a dead segment
        self.dropped_ranges = []  # [from, to] of batches dropped unsent, newest last
        self.last_seq = -1
        self.unacked = 0       # batches waiting for an ack
        self.unacked_readings = 0  # the readings in them
        self.discarded = 0     # bytes of torn or corrupt records found at open
        self.torn = False      # the newest segment ends in part of a record (open)
        self.inflight = []     # [seq, segment number, end offset, acked, bytes, readings]
        # [seq, readings] of batches dropped while in flight: delivered if their PUBACK comes,
        # dropped if their connection ends first (saved as dropped: a power cut counts them)
        self.fate = []
        self.ack_pos = None    # (segment number, offset) of the first unacked record
        self.send_pos = None
        self._acked_unsaved = 0  # bytes of batches acked since the state was last saved
        self._look = None      # (seq, segment number, end offset) of the last batch looked up

    # -- state ---------------------------------------------------------------------------

    def _load_state(self):
        body = unseal(self.store.read_all(_STATE))
        fixed = struct.calcsize(_STATE_FMT)
        if body is None or len(body) < fixed:
            return False
        magic = bytes(body[:4])
        ranges = []
        if magic == _STATE_MAGIC and len(body) > fixed:
            n = body[fixed]
            if len(body) != fixed + 1 + 8 * n:
                return False
            for i in range(n):
                a, b = struct.unpack_from("<II", body, fixed + 1 + 8 * i)
                ranges.append([a, b])
        elif magic != _STATE_V1 or len(body) != fixed:  # version 1: the fixed part alone
            return False
        _, self.boot, acked, dropped, dead, floor = struct.unpack_from(_STATE_FMT, body, 0)
        # The unsigned fields hold value + 1, so that "none yet" (-1) is 0.
        self.acked = acked - 1
        self.dropped = dropped
        self.dead = dead - 1
        self.seq_floor = floor - 1
        self.dropped_ranges = ranges
        return True

    def save_state(self):
        ranges = self.dropped_ranges
        # Without dropped ranges, version 1: what firmware from before them reads too (after a
        # downgrade it would take any other file for none, and send its whole log again).
        dropped = self.dropped
        for f in self.fate:
            dropped += f[1]
        body = struct.pack(_STATE_FMT, _STATE_MAGIC if ranges else _STATE_V1, self.boot,
                           self.acked + 1, dropped, self.dead + 1, self.seq_floor + 1)
        if ranges:
            body += bytes([len(ranges)])
            for r in ranges:
                body += struct.pack("<II", r[0], r[1])
        self.store.replace(_STATE, seal(body))
        self._acked_unsaved = 0

    def _load_id(self, names):
        """(store id, the first sequence number under it) from the id file; (0, 0) for a log
        made before store ids; (None, 0) when one is to be drawn (open)."""
        if _ID in names:
            data = self.store.read_all(_ID)
            if data is None:  # there, and not read: taken for none, the id would change
                raise OSError(5, "%s: cannot be read" % _ID)
            body = unseal(data)
            if body is not None and len(body) == 8:
                n, first = struct.unpack("<II", body)
                if n:
                    return n, first
        else:
            for name in names:
                if name == _STATE or name.endswith(".seg"):
                    return 0, 0  # made before store ids: it keeps the numbers the ingest has
        return None, 0

    def _draw_id(self):
        # A new log, or an id file that fails its check: then the batches to come are a new
        # store from next_seq() on (those in the log keep the id they carry; health says where
        # this one starts). At least 2^16: every envelope of a device has the same size.
        self.store_id = struct.unpack("<I", os.urandom(4))[0] % 0xFFFF0000 + 0x10000
        self.store_first = self.next_seq()
        self.dropped = 0  # a new store counts its own drops (the ingest adds the ones before)
        self.store.replace(_ID, seal(struct.pack("<II", self.store_id, self.store_first)))

    # -- open --------------------------------------------------------------------------------

    def open(self, replay=None, boot=True):
        """Reads the state and every segment, calling replay(seq, count) for each good batch in
        order, and counts a new boot (boot=False: the caller's new_boot() does, once it has
        stored what the boot before left). Returns the number of bytes discarded as torn or
        corrupt."""
        names = self.store.names()  # once: a flash folder's listing is slow on a board
        self.store_id, self.store_first = self._load_id(names)
        state = self._load_state()
        if not state:
            self.acked = -1  # no usable state: resend all that is here; the consumer de-duplicates
            # One that fails its check, or one gone (emptied, deleted) while segments are
            # there (every open writes one): its counts and boot number are lost, at least its
            # fixed part counted.
            if _STATE in names or any(name.endswith(".seg") for name in names):
                size = self.store.size(_STATE) if _STATE in names else 0
                self.discarded += max(size, _STATE_BYTES)
        numbers = []
        for name in names:
            if name.endswith(".seg") and len(name) == 12 and name[:8].isdigit():
                n = int(name[:8])
                if n <= self.dead:
                    self.store.remove(name)  # a deletion that a power cut interrupted
                else:
                    numbers.append(n)
            elif name.endswith(".tmp"):
                self.store.remove(name)
        numbers.sort()
        for n in numbers:
            seg = Segment(n)
            # The newest good batch before this segment; before the first, what the state says
            # every deletion left (the oldest segment emptied or gone loses batches too). A
            # state that is lost leaves that unknown: the batches dropped to make room before
            # would all read as lost unsent.
            last = self.last_seq
            if last < 0 and state:
                last = max(self.acked, self.seq_floor, self.store_first - 1)
            self._scan(seg, replay)
            if (last >= 0 or state) and last + 1 < seg.first_seq:
                # A corrupt record inside the log, or a segment emptied or gone (not a torn
                # end, whose seq the next batch takes): the batches between are gone unsent as
                # far as anyone can tell, so a resend says dropped, not lost at the broker.
                # Remembered once, not again at every start; acknowledged ones are not.
                from agent import salvage
                # whose bytes are not known: each record's header at least, so that health's
                # `discarded` shows the log was damaged
                self.discarded += HEAD * salvage.gone(self, last, seg.first_seq)
        if self.segments:
            self.dead = max(self.dead, self.segments[0].number - 1)
        if self.ack_pos is None:  # _scan found no acked batch
            self.ack_pos = (self.segments[0].number if self.segments else self.dead + 1, 0)
        self.send_pos = self.ack_pos
        if self.torn:
            # A torn end takes the number of the record it cut, which a power cut's tear never
            # sent; but a log cut further back (a file cut short) lost batches that were sent,
            # and a number given again would be refused at the ingest, the batch with it. The
            # two cannot be told apart: the batches to come are a new store (from next_seq()).
            # Until a batch goes into a fresh segment each start finds the end again, and draws
            # again: a store no batch has used is nothing to the ingest.
            self.store_id = None
        if self.store_id is None:
            self._draw_id()
        if boot:
            self.new_boot()
        return self.discarded

    def new_boot(self):
        self.boot += 1
        self.save_state()

    def _scan(self, seg, replay):
        self.torn = False          # of the newest segment only, once all are read
        seg.size = self.store.size(seg.name)
        self.segments.append(seg)
        self.size += seg.size
        good = self._read(seg, 0, replay)
        if good < seg.size:
            from agent import salvage  # a bad record: rare, so loaded only then
            salvage.scan_on(self, seg, good, replay)

    def _read(self, seg, start, replay):
        """Takes in the good batches of a segment from start; returns where they end."""
        good = start
        for kind, payload, end in records(self.store, seg.name, start, seg.size):
            if kind != BATCH:
                break
            seq = self.seq_of(memoryview(payload)[2:])
            good = end
            if seg.first_seq < 0:
                seg.first_seq = seq
            seg.last_seq = seq
            if seq > self.last_seq:
                self.last_seq = seq
            if seq > self.acked:
                self.unacked += 1
                self.unacked_readings += count_of(payload)
            else:
                # The log is read once at open: the first unacked batch is found on the way.
                self.ack_pos = (seg.number, end)
            if replay is not None:
                replay(seq, count_of(payload))
        return good

    def next_seq(self):
        return max(self.last_seq, self.seq_floor, self.acked) + 1

    # -- appending --------------------------------------------------------------------------

    def append_batch(self, seq, count, data, again=False):
        """Stores one encoded batch of count readings; drops the oldest segments to make room
        (again: the retry after a full filesystem, which is not retried once more)."""
        parts = (struct.pack("<H", count), data)
        head = frame(BATCH, parts)
        need = HEAD + 2 + len(data)
        while self.size + need > self.max_bytes and self.segments:
            self._drop(self.segments[0])
        seg = self.segments[-1] if self.segments else None
        if seg is not None and seg.sealed and seg.first_seq < 0 and not seg.size:
            # Its first write failed (nothing whole in it, and what part of it landed is
            # unknown): begun again, not followed by another, so a write that keeps failing (a
            # full flash) leaves one such segment, not one more at every try.
            self.segments.pop()
            try:
                self.store.remove(seg.name)
            except Exception:  # the close flushing what a failed write left may fail too
                pass
            seg = Segment(seg.number)
            self.segments.append(seg)
        elif seg is None or seg.sealed or (seg.size and seg.size + need > self.segment_bytes):
            seg = Segment(seg.number + 1 if seg is not None else self.dead + 1)
            self.segments.append(seg)
        try:
            self.store.append(seg.name, head)
            for p in parts:
                self.store.append(seg.name, p)
        except Exception as exc:
            # Some of the record may be written (LittleFS keeps what it took and writes it at
            # the next flush): nothing may follow it, or the next open stops there and loses
            # what came after. The batch goes again, whole, into a fresh segment.
            seg.sealed = True
            # Once: a disk full of other files would have every segment dropped in turn.
            if again or not (no_room(exc) and self.make_room()):
                raise
            self.append_batch(seq, count, data, True)
            return
        seg.size += need
        self.size += need
        if seg.first_seq < 0:
            seg.first_seq = seq
        seg.last_seq = seq
        self.last_seq = seq
        self.unacked += 1
        self.unacked_readings += count

    def sync(self):
        self.store.sync()

    def make_room(self):
        """The filesystem is full (smaller than max_bytes, or shared): the oldest segment goes,
        as when the log itself is full (acked batches first; unsent ones counted as dropped).
        False when only the newest is left."""
        if len(self.segments) < 2:
            return False
        self._drop(self.segments[0])
        return True

    def _drop(self, seg):
        """Drops the oldest segment: its unacked batches' readings are counted as dropped, and
        their sequence numbers remembered."""
        if seg.last_seq > self.acked:  # a wholly acked segment goes unread
            # A batch acked out of order (still waiting for an older one) reached the broker: it
            # leaves the log uncounted.
            acked = [f[0] for f in self.inflight if f[3] and f[1] == seg.number]
            # One in flight may still get its PUBACK (a slow link draining a full log): counted
            # over 80 % too high there, delivered batches and all.
            sent = [f[0] for f in self.inflight if not f[3] and f[1] == seg.number]
            for kind, payload, _ in self._records(seg, 0):
                if kind == BATCH:
                    seq = self.seq_of(memoryview(payload)[2:])
                    if seq > self.acked:
                        if seq in sent:
                            self.fate.append([seq, count_of(payload)])
                            # a resend asks: dropped unsent, or delivered and not missing
                            self._remember_dropped(seq)
                        elif seq not in acked:
                            self.dropped += count_of(payload)
                            self._remember_dropped(seq)
                        self.unacked -= 1
                        self.unacked_readings -= count_of(payload)
        self._kill(seg)
        self.inflight = [f for f in self.inflight if f[1] != seg.number]
        nxt = (seg.number + 1, 0)
        if self.ack_pos[0] <= seg.number:
            self.ack_pos = nxt
        if self.send_pos[0] <= seg.number:
            self.send_pos = nxt

    def _remember_dropped(self, seq):
        ranges = self.dropped_ranges
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
            if len(ranges) > DROPPED_RANGES:
                ranges.pop(0)

    def _kill(self, seg):
        """Deletes the oldest segment, committing the deletion in the state file first."""
        self.dead = seg.number
        if seg.last_seq > self.seq_floor:
            self.seq_floor = seg.last_seq
        if seg.last_seq > self.acked:
            self.acked = seg.last_seq
        try:
            self.save_state()
        except OSError as exc:
            if not no_room(exc):
                raise
            # No room even for the state file: the segment goes first, then the state says
            # so (a cut in between loses the count of what it held, not the rest).
            self.store.remove(seg.name)
            self.save_state()
        self.store.remove(seg.name)
        self.segments.pop(0)
        self.size -= seg.size

    # -- reading and acknowledging ---------------------------------------------------------

    def _records(self, seg, off):
        """records() of a segment from off, stepping over the bad ones open() stepped over."""
        while True:
            for kind, payload, end in records(self.store, seg.name, off, seg.size):
                yield kind, payload, end
                off = end
            for bad, good in seg.skips or ():
                if bad == off:
                    off = good
                    break
            else:
                return

    def _find_batch(self, pos):
        """(seq, payload, end position) of the first batch at or after pos, or None."""
        number, off = pos
        for seg in self.segments:
            if seg.number < number:
                continue
            for kind, payload, end in self._records(seg, off if seg.number == number else 0):
                if kind == BATCH:
                    return self.seq_of(memoryview(payload)[2:]), payload, (seg.number, end)
        return None

    def next_batch(self):
        """(seq, batch bytes) of the next batch not yet handed out since the last rewind()."""
        found = self._find_batch(self.send_pos)
        if found is None:
            return None
        seq, payload, end = found
        self.send_pos = end
        self.inflight.append([seq, end[0], end[1], False, len(payload), count_of(payload)])
        return seq, payload[2:]

    def ack(self, seq):
        """The broker has the batch seq. Returns False for a seq that is not in flight."""
        for f in self.fate:
            if f[0] == seq:     # dropped from the log on its way, and delivered
                self.fate.remove(f)
                self.save_state()
                return True
        for f in self.inflight:
            if f[0] == seq:
                f[3] = True
                break
        else:
            return False
        while self.inflight and self.inflight[0][3]:
            f = self.inflight.pop(0)
            self.acked = f[0]
            self.ack_pos = (f[1], f[2])
            self.unacked -= 1
            self.unacked_readings -= f[5]
            self._acked_unsaved += f[4]
        # Acked segments stay until append_batch needs their room: the ingest may ask for them.
        # Saving the cursor after every ack would double the writes of small batches. A power
        # cut can only make the batches acked since the last save go out again, and the
        # consumer de-duplicates them by sequence number.
        if self._acked_unsaved >= self.save_after:
            self.save_state()
        return True

    def rewind(self):
        """Hand out the unacked batches again from the oldest (after a reconnect)."""
        self.inflight = []
        self.send_pos = self.ack_pos
        if self.fate:   # their connection ended without their PUBACK: dropped
            for f in self.fate:
                self.dropped += f[1]
            self.fate = []

    # -- repair: looking batches up by sequence number ---------------------------------------

    def oldest_of_store(self):
        """The lowest sequence number the log holds under its store id, or None (health)."""
        n = self.oldest()
        if n is not None and n < self.store_first:  # the batches before are another store's
            n = self.store_first if self.store_first <= self.last_seq else None
        return n

    def span(self, sent):
        """[oldest held, newest published, store id] for health (docs/uplink.md); sent: the
        newest this boot published."""
        newest = max(sent, self.acked)
        # a log whose id was drawn again (its id file failed its check) numbers this store from
        # store_first: the numbers below are the store before's, not missing from this one
        span = [self.oldest_of_store(), newest if newest >= self.store_first else -1]
        if self.store_id:
            span.append(self.store_id)
        return span

    def oldest(self):
        """The lowest sequence number the log holds, or None."""
        for seg in self.segments:
            if seg.first_seq >= 0:
                return seg.first_seq
        return None

    def held(self, seq):
        """The bytes of batch seq, exactly as next_batch() hands them out, or None if the log
        does not hold it. Asked for in order, each lookup reads on from the one before."""
        for seg in self.segments:
            if seg.first_seq <= seq <= seg.last_seq and seg.first_seq >= 0:
                break
        else:
            return None
        store = self.store
        name = seg.name
        off = 0
        look = self._look
        if look is not None and look[1] == seg.number and look[0] < seq:
            off = look[2]
        # The batches on the way are stepped over by their headers and the first bytes that
        # hold their seq: a lookup allocates one batch, the one it returns.
        while off + HEAD <= seg.size:
            for bad, good in seg.skips or ():
                if bad == off:
                    off = good
            head = store.read(name, off, HEAD)
            length, kind, crc = struct.unpack("<HBI", head)
            end = off + HEAD + length
            if end > seg.size:
                return None
            if kind == BATCH and length > 2:
                try:
                    s = self.seq_of(memoryview(store.read(name, off + HEAD + 2,
                                                          min(length - 2, _PEEK))))
                except IndexError:  # a device id too long for the peek
                    s = self.seq_of(memoryview(store.read(name, off + HEAD + 2, length - 2)))
                if s == seq:
                    count = store.read(name, off + HEAD, 2)
                    data = store.read(name, off + HEAD + 2, length - 2)
                    if binascii.crc32(data, binascii.crc32(count, binascii.crc32(head[:3]))) \
                            & 0xFFFFFFFF != crc:
                        return None
                    self._look = (seq, seg.number, end)
                    return data
                if s > seq:
                    return None
            off = end
        return None

    def classify(self, first, last, into=None):
        """Splits the inclusive range first..last into what the log holds and what it does not:
        (held, gone, dropped, unknown), each a list of [from, to]. held: in a segment; dropped:
        in a remembered range dropped unsent; unknown: above the newest sequence number formed;
        gone: the rest (acknowledged and overwritten, or dropped too long ago to remember).
        into: the four lists of an earlier call, to add to (ranges asked for in increasing
        order then come out joined where they touch)."""
        if into is None:
            into = ([], [], [], [])
        held, gone, dropped, unknown = into
        newest = self.next_seq() - 1
        if last > newest:
            add_range(unknown, max(first, newest + 1), last)
            last = newest
        spans = []  # (from, to, the list it goes to), in order
        for seg in self.segments:
            if seg.first_seq >= 0:
                a = seg.first_seq
                for r in sorted(self.dropped_ranges, key=first_of):
                    if a <= r[1] and r[0] <= seg.last_seq:   # lost to a corrupt record in it
                        if a < r[0]:
                            spans.append((a, r[0] - 1, held))
                        a = r[1] + 1
                if a <= seg.last_seq:
                    spans.append((a, seg.last_seq, held))
        for r in self.dropped_ranges:
            spans.append((r[0], r[1], dropped))
        spans.sort(key=first_of)
        at = first
        for a, b, out in spans:
            if at > last:
                break
            if b < at:
                continue
            if a > at:
                add_range(gone, at, min(a - 1, last))
                at = a
            if at <= last:
                add_range(out, at, min(b, last))
                at = min(b, last) + 1
        if at <= last:
            add_range(gone, at, last)
        return into

    def close(self):
        if self._acked_unsaved:
            self.save_state()
        self.store.close()


def first_of(span):
    return span[0]


def add_range(ranges, a, b):
    """Appends [a, b] to a list of ranges, joining it to the last one if they touch."""
    if ranges and ranges[-1][0] <= a <= ranges[-1][1] + 1:
        if b > ranges[-1][1]:
            ranges[-1][1] = b
    else:
        ranges.append([a, b])
