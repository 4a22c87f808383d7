"""Batch files: `tether encode` and `tether decode`.

A batch file is a CBOR sequence (RFC 8742): the schema document that compact batches refer to,
then the batches, each exactly the bytes a device publishes. Readings files are JSON lines
{"t": unix seconds, "n": channel name, "v": value}, as simulator/reference.py writes them.
"""
import json
import math
import sys

from agent import batch_decode, cbor, cbor_decode
from agent import profile as compiled
from agent.log import Log
from agent.buffer import LIMIT, Buffer
from agent.schema import Schema
from agent.store import RamStore
from firmware import bounded
from firmware.args import device_id
from firmware.profile import add_allow_outside

UNBOUNDED = 1 << 40
MAX_READINGS_FILE = 64 << 20  # its batches stay in memory until written: up to 1/4 its size
MAX_LINE = 4096  # a reading is {"t": ..., "n": ..., "v": ...}, a name at most 32 letters
MAX_BATCH_FILE = 64 << 20  # about as many readings as the largest readings file
# A batch's base time, in ms, as its decoders take it: compact_decode up to 2**64 - 1 in its
# time unit, senml_decode a decimal mantissa up to 2**64. Past it encode would write what no
# decoder reads back.
MAX_T_MS = 0x7FFFFFFFFFFFFFFF  # what decoders and 64-bit columns take (docs/wire-format.md)


class InputError(Exception):
    pass


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def encode(profile, lines, device_id=None, notes=None):
    """(schema, [batch bytes], rounded) for JSON-lines readings, cut into batches by the
    profile's batch policy exactly as the agent's buffer cuts them; notes: a list that gets
    what the caller should tell, though the readings were taken."""
    schema = compiled.schema(profile)
    policy = profile["batch"]
    enc = compiled.encoder(profile, device_id, schema)
    log = Log(RamStore(), UNBOUNDED, UNBOUNDED, compiled.batch.seq_of)
    buf = Buffer(log, enc, policy["max_readings"], policy["max_age_ms"],
                 policy["max_readings"], UNBOUNDED)
    buf.open()
    enc.store = 0  # of no device's log: version 1 envelopes (docs/wire-format.md)
    buf.set_synced(True)
    rounded = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            t, name, v = r["t"], r["n"], r["v"]
        except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: [[[[...
            raise InputError("line %d: expected {\"t\": seconds, \"n\": name, \"v\": number}"
                             % number)
        if isinstance(v, (str, bool)):
            raise InputError("line %d: v is %s: tether encode takes numbers (a channel holds "
                             "numbers)" % (number, "text" if isinstance(v, str) else "true or "
                                           "false"))
        if not _number(t) or not _number(v):
            raise InputError("line %d: t and v must be finite numbers (not NaN or Infinity)"
                             % number)
        if not isinstance(name, str):
            raise InputError("line %d: n must be a channel name (text)" % number)
        synced = r.get("synced", True)
        if not isinstance(synced, bool):
            raise InputError("line %d: synced must be true or false" % number)
        # as `tether decode` prints an unsynced batch's readings: batches of their own, flag
        # bit 0 clear (decode | encode made them synced batches dated 1970)
        buf.set_synced(synced)
        if abs(t) >= 1e11 and notes is not None and not notes:
            # seconds: the year 5138; milliseconds: 1973 on. Taken (a batch carries any time a
            # decoder reads back), but said: a millisecond epoch is a common slip
            notes.append("line %d: t %g looks like milliseconds: t is Unix seconds (year %d)"
                         % (number, t, 1970 + int(t / 31557600)))
        t_ms = round(t * 1000)
        if not -MAX_T_MS <= t_ms <= MAX_T_MS:
            raise InputError("line %d: t %g is out of range: a batch carries times within "
                             "+-%.4g seconds" % (number, t, MAX_T_MS / 1000))
        channel = schema.index.get(name)
        if channel is None:
            raise InputError("line %d: channel %r is not in the profile (it has %s)"
                             % (number, name, ", ".join(schema.names)))
        too_large = InputError("line %d: reading %g is too large for a batch (limit +-2**30 at "
                               "the channel's resolution)" % (number, v))
        try:
            scaled = schema.scale(channel, v)
        except OverflowError:  # v / resolution is past the largest float
            raise too_large
        if not -LIMIT < scaled < LIMIT:
            raise too_large
        if schema.value(channel, scaled) != v:
            rounded += 1
        try:
            buf.append(t_ms, channel, scaled)
        except ValueError as exc:
            raise InputError("line %d: %s" % (number, exc))
    buf.cut()
    batches = []
    while True:
        item = buf.next_batch()
        if item is None:
            return schema, batches, rounded
        batches.append(item[1])


def items(data, schemas=None):
    """(offset, kind, item) for each item of a batch file; kind is "schema" or "batch".
    schemas: id -> Schema known before the file (--schema, --db); the file's own are added."""
    schemas = schemas if schemas is not None else {}
    r = cbor_decode.Reader(data)
    while not r.at_end():
        start = r.pos
        major = data[start] >> 5
        if major == 5:
            end = _skip(r)
            try:
                s = Schema.from_cbor(data[start:end])
            except cbor.CBORError as exc:
                raise type(exc)(exc.reason, start)
            schemas[s.id] = s
            yield start, "schema", s
        else:
            end = _skip(r)
            yield start, "batch", batch_decode.decode(data[start:end], schemas, start)


SCHEMA_FILE_MAX = 1 << 20  # a schema of 255 channels takes a few KiB


class Schemas(dict):
    """Schemas by id that remember the first id asked for and missing (for a hint)."""
    missing = None

    def __bool__(self):  # the decoder does `schemas or {}`: an empty one must stay this one
        return True

    def get(self, key, default=None):
        if key not in self and self.missing is None:
            self.missing = key
        return dict.get(self, key, default)


def load_schemas(files=(), db=None):
    """Schemas from schema documents (files of CBOR maps: what a device publishes retained on
    up/schema, or a batch file's leading schema) and from an ingest database's `schemas` table.
    InputError says which source is wrong."""
    schemas = Schemas()
    for path in files:
        try:
            data = bounded.read(path, SCHEMA_FILE_MAX, "a schema document")
        except OSError as exc:
            raise InputError("--schema %s: %s" % (path, exc.strerror))
        except bounded.TooLarge as exc:
            raise InputError("--schema %s: %s" % (path, exc))
        found = 0
        try:
            r = cbor_decode.Reader(data)
            while not r.at_end():  # the maps; a batch file's batches (arrays) are passed over
                start = r.pos
                end = _skip(r)
                if data[start] >> 5 == 5:
                    s = Schema.from_cbor(data[start:end])
                    schemas[s.id] = s
                    found += 1
        except cbor.CBORError as exc:
            raise InputError("--schema %s: not a schema document: %s" % (path, exc))
        if not found:
            raise InputError("--schema %s: holds no schema document (a CBOR map, as a device "
                             "publishes on .../up/schema)" % path)
    if db is not None:
        from ingest import queries
        from ingest.url import hide_password
        shown = hide_password(db)
        from ingest.store import StoreError
        try:
            rows = queries.schemas(db)
        except StoreError as exc:  # unreachable, refused, not there: not a question of its tables
            raise InputError("--db: cannot open it: %s" % " ".join(str(exc).split()))
        except Exception as exc:  # noqa: BLE001 - any backend's error, or not a database at all
            raise InputError("--db %s: not an ingest database with a schemas table (%s)"
                             % (shown, " ".join(str(exc).split())))
        for sid, document in rows:
            if not isinstance(document, bytes):  # bytes(10**15) would fill the memory
                raise InputError("--db %s: schema %s does not decode: its document is not a "
                                 "blob" % (shown, sid))
            try:
                schemas[sid] = Schema.from_cbor(document)
            except cbor.CBORError as exc:
                raise InputError("--db %s: schema %s does not decode: %s" % (shown, sid, exc))
    return schemas


def _skip(r):
    r.item()
    return r.pos


def _seconds(ms):
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _json_value(v):
    """A reading as JSON allows it: NaN and the infinities (a SenML pack may carry them) are
    null, not the NaN that strict parsers refuse."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    return v


def _looks_like_text(data):
    """Whether a file that is not CBOR starts as JSON (or other) text does."""
    head = data[:64].lstrip()
    return head[:1] in (b"{", b"[", b'"') and all(32 <= c < 127 or c in (9, 10, 13)
                                                  for c in head)


def senml_json(b):
    """A decoded batch as a SenML JSON pack (RFC 8428), grouped per channel like its CBOR form:
    a base unit where a group's differs from the one in force (it carries over), a record's own
    unit where it differs from that, text as vs and booleans as vb."""
    pack = []
    first = True
    base = b.readings[0][0] if b.readings else 0
    units = b.reading_units or [b.units.get(n, "") for _, n, _ in b.readings]
    names = []
    for _, name, _ in b.readings:
        if name not in names:
            names.append(name)
    in_force = ""
    for name in names:
        group = True
        for (t, n, v), unit in zip(b.readings, units):
            if n != name:
                continue
            rec = {}
            if group:
                rec["bn"] = name
                if first:
                    rec["bt"] = _seconds(base)
                    first = False
                if unit != in_force:
                    rec["bu"] = in_force = unit
                group = False
            elif unit != in_force:
                rec["u"] = unit
            rec["t"] = _seconds(t - base)
            if isinstance(v, bool):
                rec["vb"] = v
            elif isinstance(v, str):
                rec["vs"] = v
            else:
                rec["v"] = _json_value(v)
            pack.append(rec)
    return pack


def cmd_encode(args):
    from firmware.profile.compile import compile as compile_profile
    profile, errors = compile_profile(args.profile, args.allow_outside)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    if args.encoding:
        profile["uplink"]["encoding"] = args.encoding
    if args.deflate:
        profile["uplink"]["deflate"] = True
    if args.device is None and "{uid}" in profile["device"]["id"]:
        print("tether encode: the profile's device id %r is a template: give --device ID"
              % profile["device"]["id"], file=sys.stderr)
        return 2
    src = args.readings
    try:
        f = sys.stdin.buffer if src == "-" else open(src, "rb")
    except OSError as exc:
        print("tether encode: %s: %s" % (src, exc.strerror), file=sys.stderr)
        return 2
    try:
        with f:
            lines = bounded.lines(f, MAX_READINGS_FILE, MAX_LINE, "a readings file",
                                  "a line of readings")
            notes = []
            schema, batches, rounded = encode(profile, lines, args.device, notes)
    except (InputError, bounded.TooLarge) as exc:
        print("tether encode: %s: %s" % (src, exc), file=sys.stderr)
        return 2
    except OSError as exc:  # a directory, a read error
        print("tether encode: %s: %s" % (src, exc.strerror), file=sys.stderr)
        return 2
    out = bytearray()
    if profile["uplink"]["encoding"] == "compact":
        out += schema.to_cbor()
    for b in batches:
        out += b
    if args.output == "-":
        sys.stdout.buffer.write(out)
    else:
        with open(args.output, "wb") as f:
            f.write(out)
    for note in notes:
        print("tether encode: %s: note: %s" % (src, note), file=sys.stderr)
    print("%d batches, %d bytes%s" % (len(batches), len(out),
          ", %d readings rounded to their resolution" % rounded if rounded else ""), file=sys.stderr)
    return 0


def cmd_decode(args):
    src = args.input
    try:
        if src == "-":
            data = bounded.read_stream(sys.stdin.buffer, MAX_BATCH_FILE, "a batch file")
        else:
            data = bounded.read(src, MAX_BATCH_FILE, "a batch file")
    except (OSError, bounded.TooLarge) as exc:
        print("tether decode: %s: %s" % (src, getattr(exc, "strerror", None) or exc),
              file=sys.stderr)
        return 2
    out = sys.stdout

    try:
        schemas = load_schemas(args.schema, args.db)
    except InputError as exc:
        print("tether decode: %s" % exc, file=sys.stderr)
        return 2
    try:
        for _, kind, item in items(data, schemas):
            if kind != "batch":
                continue
            if args.senml:
                pack = senml_json(item)
                if pack and not item.synced:
                    # must-understand (RFC 8428 section 4.4): a tool that does not know it
                    # refuses the pack rather than read a base time under 2^28 as relative
                    # to now
                    pack[0]["unsynced_"] = True
                out.write(json.dumps(pack, separators=(",", ":")) + "\n")
            else:
                for t, name, v in item.readings:
                    line = {"t": _seconds(t), "n": name, "v": _json_value(v)}
                    if not item.synced:     # t counts from the device's start, not 1970
                        line["synced"] = False
                    out.write(json.dumps(line) + "\n")
    except cbor.CBORError as exc:
        out.flush()
        hint = ("; give its schema with --schema FILE or --db INGEST.sqlite"
                if schemas.missing is not None else "")
        if _looks_like_text(data):
            # alone: read as CBOR, text says nonsense ("ends 2482646927917135386 bytes early")
            print("tether decode: %s: this is text (JSON?), not CBOR: `tether encode` makes a "
                  "batch file of JSON-lines readings" % src, file=sys.stderr)
            return 2
        print("tether decode: %s: %s%s" % (src, exc, hint), file=sys.stderr)
        return 2
    return 0


def add_commands(sub):
    p = sub.add_parser("encode", help="cut JSON-lines readings into batches (a CBOR sequence)")
    p.add_argument("--profile", required=True, metavar="PROFILE",
                   help="the profile whose channels and batch policy to use")
    p.add_argument("--encoding", choices=("senml", "compact"), help="override the profile's")
    p.add_argument("--deflate", action="store_true", help="deflate batch bodies where it helps")
    p.add_argument("--device", type=device_id, metavar="ID", help="device id for the envelope (default: profile's)")
    p.add_argument("readings", metavar="READINGS.jsonl",
                   help='readings as JSON lines {"t": Unix seconds, "n": channel name, '
                        '"v": value}, or - for standard input')
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="batch file, or -")
    add_allow_outside(p)
    p.set_defaults(func=cmd_encode)
    p = sub.add_parser("decode", help="print the readings of a batch file as JSON lines")
    p.add_argument("--senml", action="store_true", help="print each batch as a SenML JSON pack")
    p.add_argument("input", metavar="IN", help="batch file, or - for standard input")
    p.add_argument("--schema", action="append", default=[], metavar="FILE",
                   help="schema document(s) for compact batches: what a device publishes "
                        "retained on {prefix}/{device}/up/schema (may be given more than once)")
    p.add_argument("--db", metavar="INGEST.sqlite|URL",
                   help="take the schemas of compact batches from an ingest database")
    p.set_defaults(func=cmd_decode)
