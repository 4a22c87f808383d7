# After a profile change (docs/buffer.md, "A new profile"): the rows the journal gave back are
# numbered by the old profile's sensors, so they become a batch under the old schema; and the
# old schema document is kept, for the uplink to publish before the batches made under it, until
# the broker has acknowledged them all, and before any of them sent again on request (a repair)
# while the log holds them. Loaded only when there is such a change to handle: a
# board's heap holds the buffer's code for good.
#
# The file `schemas` in the buffer's store: per document, the last batch made under it ("<q"),
# the document's length ("<H"), the document.
import struct

from agent.buffer import EARLIER


def use(buf, old):
    """buf's encoder numbers channels by the schema document old (the journal's rows become
    batches under it); returns the schema it used, to go back to."""
    from agent.schema import Schema
    now = buf.encoder.schema
    buf.encoder.use(Schema.from_cbor(old))
    return now


def retire(buf, old):
    """buf (an agent.buffer.Buffer just opened: the journal's rows batched under old, by use())
    holds batches made under the schema document old, not under its encoder's. A power cut
    anywhere in here: the next start finds the same old document (the buffer replaces it last)
    and no rows, and records the same."""
    last = buf.seq - 1  # the last batch made under old
    oldest = buf.log.oldest()
    # kept while the log holds one made under it, acknowledged or not: a resend may ask. Also
    # under a SenML profile: the batches before may be compact ones (the uplink sends the
    # document before the first of them)
    if oldest is not None and last >= oldest:
        kept = [(s, d) for s, d in _read(buf.store) if d != old]
        kept.append((last, old))
        _write(buf.store, kept)


def _held(buf):
    """[(last seq, document)] kept that a batch the log holds was made under; forgets the
    others."""
    kept = _read(buf.store)
    oldest = buf.log.oldest()
    held = [(s, d) for s, d in kept if oldest is not None and s >= oldest]
    if len(held) != len(kept):
        _write(buf.store, held)
    return held


def needed(buf):
    """The documents kept that batches not yet acknowledged need."""
    return [d for s, d in _held(buf) if s > buf.log.acked]


def kept(buf):
    """Every document kept: the uplink publishes them before a batch sent again on request.
    Which one a batch needs only its schema id says, and an earlier profile's range is known
    only while it is kept: so all, a few hundred bytes."""
    return [d for _, d in _held(buf)]


def _read(store):
    out = []
    data = store.read_all(EARLIER) if EARLIER in store.names() else None
    at = 0
    while data is not None and at + 10 <= len(data):
        last, n = struct.unpack_from("<qH", data, at)
        out.append((last, data[at + 10:at + 10 + n]))
        at += 10 + n
    return out


def _write(store, kept):
    if kept:
        store.replace(EARLIER, b"".join([struct.pack("<qH", s, len(d)) + d for s, d in kept]))
    elif EARLIER in store.names():
        store.remove(EARLIER)
