# Reads event messages (agent/events.py, docs/wire-format.md): the cloud side's half, never
# loaded on a board.
from agent import batch, cbor, cbor_decode
from agent.shown import shown


class Event:
    def __init__(self, fields):
        self.store = fields.pop() if len(fields) == 12 else 0  # the log's store id (agent/log.py)
        (_, self.device, self.seq, self.boot, flags, self.t, self.event, self.sensor, self.state,
         self.value, self.detail) = fields
        self.synced = bool(flags & batch.FLAG_SYNCED)


STATES = ("raised", "cleared", "insight")
_TOP = 0x7FFFFFFFFFFFFFFF  # seq, boot and time: what a signed 64-bit column holds


def decode(data):
    """An event message; cbor.Malformed when it is not one."""
    fields = cbor_decode.loads(data)
    if not isinstance(fields, list) or not fields or not isinstance(fields[0], int) or isinstance(
            fields[0], bool) or (
            fields[0], len(fields)) not in ((batch.VERSION, 11), (batch.VERSION_STORE, 12)):
        raise cbor.Malformed("not a Tether event (version 1 of 11 items, or 2 of 12)", 0)
    if len(fields) == 12 and not (isinstance(fields[11], int) and not isinstance(fields[11], bool)
                                  and 0 < fields[11] <= 0xFFFFFFFF):
        raise cbor.Malformed("event store id must be an integer from 1 to 2**32 - 1", 0)
    for i, kind in ((1, str), (2, int), (3, int), (4, int), (5, int), (6, str), (7, str), (8, str)):
        if not isinstance(fields[i], kind) or isinstance(fields[i], bool):
            raise cbor.Malformed("event field %d has the wrong type" % i, 0)
        if kind is int and not 0 <= fields[i] <= _TOP:
            raise cbor.Malformed("event field %d is outside 0..2**63 - 1" % i, 0)
    if fields[4] & ~batch.FLAG_SYNCED:
        raise cbor.Malformed("unknown event flags %#x" % fields[4], 0)
    if fields[8] not in STATES:
        raise cbor.Malformed("event state is raised, cleared or insight, not %s"
                             % shown(fields[8]), 0)
    return Event(fields)
