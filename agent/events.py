# Events: threshold crossings and sensor faults, kept like batches until the broker has them.
#
# An event is a CBOR array (docs/wire-format.md):
#   [1, device id, seq, boot, flags, time ms, event, sensor, state, value, detail]
#   [2, ... the same ..., store]    from a log with a store id (agent/log.py)
# with its own sequence numbers. The first four items are laid out as a batch's, so the same
# log (agent/log.py, in its own folder) stores, bounds, drops and replays events, and
# batch.seq_of reads their sequence numbers.
from agent import batch, cbor


def log_bytes(buffer_bytes):
    """The bound of the events' log: a sixteenth of the buffer's, at least 8 KiB (apart from it:
    events are rare and small, and a full readings log must not push them out)."""
    return max(8192, buffer_bytes // 16)


class Events:
    """Appends events to their own Log, durably, one at a time (they are rare)."""

    def __init__(self, log, device):
        self.log = log
        self.device = device
        self.seq = 0
        self.w = cbor.Writer()
        self.notify = None  # called after each event is stored: the uplink's wake-up

    def open(self):
        discarded = self.log.open()
        self.seq = self.log.next_seq()
        return discarded

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        w = self.w
        w.reset()
        store = self.log.store_id
        w.array(12 if store else 11)
        w.int(batch.VERSION_STORE if store else batch.VERSION)
        w.text(self.device)
        w.int(self.seq)
        w.int(self.log.boot)
        w.int(batch.FLAG_SYNCED if synced else 0)
        w.int(t)
        w.text(event)
        w.text(sensor)
        w.text(state)
        w.value(value)
        w.value(detail)
        if store:
            w.int(store)
        self.log.append_batch(self.seq, 1, w.getvalue())
        # Taken once stored, before the sync: an event whose sync failed may still reach the
        # flash and the broker, and the next one must not go out under its number.
        self.seq += 1
        self.log.sync()
        if self.notify is not None:
            self.notify()

    def next_event(self):
        """(seq, bytes) of the next event to send, or None."""
        return self.log.next_batch()

    def ack(self, seq):
        return self.log.ack(seq)

    def rewind(self):
        self.log.rewind()

    def close(self):
        self.log.close()
