"""Payloads into what the handlers store: pure, no database (docs/ingest.md, docs/wire-format.md).

Each function takes a message's bytes and returns plain values, or raises Bad with the reason a
`malformed` row keeps. Batches are decoded by agent/batch_decode with a schema table (Schemas).
"""
import json
import math

from agent import cbor, cbor_decode, events_decode
from agent.schema import Schema
from agent.shown import shown

from ingest import repair

HEX_PREFIX = 16  # bytes of a malformed payload kept (as hex) in the log and the table
INT64 = 1 << 63
INSIGHT = "insight"  # the state of an insight event (agent/insights)
MAX_FIELDS = 64
MAX_PAYLOAD = 128 * 1024   # bytes of any message: a batch's max_bytes is at most 64 KiB
MAX_ITEMS = 8192    # CBOR items of an event, reply or health report (the printer's report: ~300)
# Bytes of UTF-8 in a channel, unit, event or sensor name: far above any real one, and far below
# what a database can index (PostgreSQL's btree refuses a key past about 2,700 bytes).
MAX_NAME = 255


def text(s):
    """s as both stores keep it: NUL (which PostgreSQL's text and jsonb refuse) as U+FFFD, so a
    message stores the same on either backend, visibly changed, rather than being lost."""
    return s.replace("\x00", "\ufffd") if "\x00" in s else s


def schema(payload):
    """The Schema of a schema document, its names and units as text() has them (its id stays
    the id of the document's bytes, which compact batches carry)."""
    s = Schema.from_cbor(payload)
    if any("\x00" in name or "\x00" in unit for name, unit, _, _ in s.channels):
        sid = s.id
        s = Schema([(text(n), text(u), m, e) for n, u, m, e in s.channels])
        s._id = sid
    names = [name for name, _, _, _ in s.channels]
    if len(set(names)) != len(names):
        # two channels of one name: their readings were stored as one channel, under the last
        # one's unit (a device's profile never has it: sensor names are unique)
        twice = next(n for n in names if names.count(n) > 1)
        raise Bad("channel name %s given twice" % shown(twice))
    return s


class Bad(Exception):
    """A message that is not what its topic promises: stored in `malformed`, acknowledged."""

    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason


class Schemas(dict):
    """schema id -> Schema, noting the id a compact batch asked for and did not find."""

    missing = None

    def __bool__(self):  # the decoder does `schemas or {}`: an empty table must stay this one
        return True

    def get(self, key, default=None):
        found = dict.get(self, key, default)
        if found is None:
            self.missing = key
        return found

def insight_fields(detail):
    """An insight event's fields (a flat CBOR map: text keys, numbers, text, booleans, null or
    short lists of those) as JSON types; Bad for anything else."""
    if not isinstance(detail, dict) or len(detail) > MAX_FIELDS:
        raise Bad("insight event: its detail must be a map of at most %d fields" % MAX_FIELDS)
    out = {}
    for k, v in detail.items():
        if not isinstance(k, str):
            raise Bad("insight event: field name %s is not text" % shown(k))
        k = text(k)
        if isinstance(v, float) and not math.isfinite(v):
            v = None  # as jsonable() stores NaN: the event is kept, the figure is not
        items = v if isinstance(v, list) else [v]
        if len(items) > MAX_FIELDS or not all(
                x is None or isinstance(x, (str, bool)) or
                (isinstance(x, int) and -INT64 <= x < INT64) or
                isinstance(x, float) for x in items):
            raise Bad("insight event: field %r is not a number, text, true/false, null or a "
                      "short list of those" % (k,))
        out[k] = [_field(x) for x in v] if isinstance(v, list) else _field(v)
    return out


def _field(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return text(x) if isinstance(x, str) else x


def jsonable(x, depth=0):
    """A decoded CBOR item as JSON types: bytes as hex, tags as {"tag", "value"}, NaN and the
    infinities as null, keys as text."""
    if depth > 32:
        return None
    if isinstance(x, dict):
        return {text(k) if isinstance(k, str) else _key(k): jsonable(v, depth + 1)
                for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, depth + 1) for v in x]
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, cbor.Tag):
        return {"tag": x.tag, "value": jsonable(x.value, depth + 1)}
    if isinstance(x, str):
        return text(x)
    if isinstance(x, int) and not -INT64 <= x < INT64:
        return hex(x)  # a bignum: str() refuses one of over 4300 digits, hex() takes any
    if x is None or isinstance(x, (int, bool)):
        return x
    return repr(x)


def _key(k):
    if isinstance(k, int) and not -INT64 <= k < INT64:
        return hex(k)
    try:
        return str(k)
    except ValueError:  # an array key holding a bignum
        return shown(k)


def check_int(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or not -INT64 <= v < INT64:
        raise Bad("%s %s is not a 64-bit integer" % (what, shown(v)))
    return v

def check_name(name, what):
    """A name of at most MAX_NAME bytes of UTF-8 as stored (text(): a NUL takes 3); Bad
    otherwise."""
    if isinstance(name, str) and len(name) > MAX_NAME // 4:
        size = len(text(name).encode("utf-8", "surrogatepass"))
        if size > MAX_NAME:
            raise Bad("%s name of %d bytes (%r...): at most %d bytes of UTF-8"
                      % (what, size, name[:16], MAX_NAME))
    return name


def check_names(b):
    """A decoded batch whose channel names and units are each at most MAX_NAME bytes."""
    for name, unit in b.units.items():
        check_name(name, "channel")
        check_name(unit, "unit")


def check_envelope(device, b):
    """A decoded batch (or its envelope) that belongs to the device of its topic, with 64-bit
    numbers; Bad otherwise."""
    if b.device != device:
        raise Bad("a batch of device %r on the topic of %r" % (b.device, device))
    check_int(b.seq, "sequence number")
    check_int(b.boot, "boot count")
    check_int(b.dropped, "dropped count")


class Reply:
    """A reply to a downlink command, as stored in `replies`."""

    def __init__(self, doc):
        reply = doc["reply"]
        if not (reply is None or isinstance(reply, str)
                or (isinstance(reply, int) and -INT64 <= reply < INT64)):
            reply = json.dumps(jsonable(reply))
        elif isinstance(reply, str):
            reply = text(reply)
        self.doc = doc
        self.reply = reply
        self.ok = int(doc["ok"])
        self.body = json.dumps(jsonable(doc))

    def is_repair(self):
        return isinstance(self.reply, str) and self.reply.startswith(repair.ID_PREFIX)


class Event:
    """An event, as stored in `events` (and, for an insight, in `insights`: fields is its dict)."""

    def __init__(self, e, value, detail, fields):
        self.seq, self.boot, self.t, self.synced = e.seq, e.boot, e.t, int(e.synced)
        self.store = e.store
        self.event, self.sensor, self.state = text(e.event), text(e.sensor), text(e.state)
        self.value, self.detail, self.fields = value, detail, fields


def event(device, payload):
    """Reply or Event from an `.../up/event` payload."""
    try:
        doc = cbor_decode.loads(payload, most=MAX_ITEMS)
    except Exception as exc:  # noqa: BLE001
        raise Bad("event: not CBOR: %s" % (exc,))
    if isinstance(doc, dict):
        if "reply" not in doc or not isinstance(doc.get("ok"), bool):
            raise Bad("event: a CBOR map that is not a command reply {reply, ok, ...}")
        return Reply(doc)
    try:
        e = events_decode.decode(payload)
    except Exception as exc:  # noqa: BLE001
        raise Bad("event: %s" % (exc,))
    if e.device != device:
        raise Bad("an event of device %s on the topic of %r" % (shown(e.device), device))
    check_name(e.event, "event")
    check_name(e.sensor, "sensor")
    for v, what in ((e.seq, "event seq"), (e.boot, "boot count"), (e.t, "event time")):
        check_int(v, what)
    value = e.value
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise Bad("event value %s is not a number" % shown(value))
    if isinstance(value, int) and not -INT64 <= value < INT64:
        # SQLite refused it and PostgreSQL stored it as a float: one outcome on both
        raise Bad("event value %s is past 64 bits" % shown(value))
    if isinstance(value, float) and not math.isfinite(value):
        # SQLite stores NaN as NULL and PostgreSQL as 'NaN': NULL on both, as insight fields
        value = None
    fields = None
    if e.state == INSIGHT:
        fields = insight_fields(e.detail)
        detail = json.dumps(fields, sort_keys=True)
    elif e.detail is not None and not isinstance(e.detail, str):
        raise Bad("event detail is not text")
    else:
        detail = e.detail if e.detail is None else text(e.detail)
    return Event(e, value, detail, fields)


def health(device, payload):
    """(t_ms or None, dropped, seq {kind: (oldest, newest)} or None, the report as JSON text)
    from an `.../up/health` payload."""
    try:
        doc = cbor_decode.loads(payload, most=MAX_ITEMS)
    except Exception as exc:  # noqa: BLE001
        raise Bad("health: not CBOR: %s" % (exc,))
    if not isinstance(doc, dict):
        raise Bad("health: not a CBOR map")
    if "device" in doc and doc["device"] != device:
        raise Bad("health of device %s on the topic of %r" % (shown(doc["device"]), device))
    t = doc.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or not -INT64 <= t < INT64:
        t = None
    dropped = doc.get("dropped")
    if not isinstance(dropped, int) or isinstance(dropped, bool) or not 0 <= dropped < INT64:
        dropped = 0
    seq = None
    if "seq" in doc:
        try:
            seq = repair.parse_seq(doc["seq"])
        except ValueError as exc:
            raise Bad("health: %s" % (exc,))
    return t, dropped, seq, json.dumps(jsonable(doc), sort_keys=True)


def status(payload):
    """'online', 'offline', or None for an empty payload (a retained status being cleared)."""
    if not payload:
        return None
    if payload not in (b"online", b"offline"):
        raise Bad("status is neither online nor offline")
    return payload.decode()


def malformed_hex(payload):
    """What of a malformed payload the log and the `malformed` table keep."""
    return payload[:HEX_PREFIX].hex()
