# Reads batches: the envelope, then a SenML or compact body (docs/wire-format.md).
from agent import cbor, cbor_decode, compact_decode, senml_decode
from agent.batch import COMPACT, FLAG_DEFLATED, FLAG_SYNCED, SENML, VERSION, VERSION_STORE
from agent.shown import shown

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_INFLATED = const(1048576)


def inflate(data, offset=0, limit=MAX_INFLATED):
    """Raw deflate data, expanded in chunks to at most limit bytes, so that a small hostile body
    cannot fill RAM."""
    try:
        import deflate
        import io
        stream = deflate.DeflateIO(io.BytesIO(data), deflate.RAW)
        read = stream.read
        done = None
        # an empty or cut body: EOFError here, where CPython's zlib ends short (Truncated)
        errors = (OSError, ValueError, EOFError)
    except ImportError:  # CPython
        try:
            import zlib
        except ImportError:
            raise cbor.DecodeError("the body is deflated, and this interpreter has neither "
                                   "`deflate` nor `zlib` to inflate it", offset)
        stream = zlib.decompressobj(-15)
        pending = [data]

        def read(n):
            chunk = stream.decompress(pending[0], n)
            pending[0] = stream.unconsumed_tail
            return chunk

        def done():
            if not stream.eof:
                raise cbor.Truncated("deflated body ends early", offset)

        errors = (zlib.error,)
    parts = []
    size = 0
    try:
        while size <= limit:
            chunk = read(1024)
            if not chunk:
                break
            size += len(chunk)
            parts.append(chunk)
    except errors:
        raise cbor.Malformed("deflated body is corrupt", offset)
    if size > limit:
        raise cbor.Malformed("deflated body expands past %d bytes" % limit, offset)
    if done is not None:
        done()
    return b"".join(parts)


class Batch:
    """A decoded envelope; `readings` is [(t_ms, name, value)] once the body is decoded."""

    def __init__(self, device, seq, boot, dropped, encoding, flags, body):
        self.device = device
        self.seq = seq
        self.boot = boot
        self.dropped = dropped
        self.encoding = encoding
        self.synced = bool(flags & FLAG_SYNCED)
        self.deflated = bool(flags & FLAG_DEFLATED)
        self.body = body
        self.store = 0                # the device log's store id; 0 in a version 1 envelope
        self.schema_id = None
        self.units = {}               # channel -> unit: the first a SenML pack gave it
        self.readings = None
        self.reading_units = None     # a SenML pack's: each reading's unit, in readings' order


def _uint(v, what, offset):
    # 0 to 2**63 - 1, what a signed 64-bit column holds: a bignum would only burden whoever
    # prints it, and 2**63 was decoded here and refused by the ingest.
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0x7FFFFFFFFFFFFFFF:
        raise cbor.Malformed("envelope %s must be an integer from 0 to 2**63 - 1" % what, offset)
    return v


def _int64(x):
    return -0x8000000000000000 <= x <= 0x7FFFFFFFFFFFFFFF


def _at(exc, base):
    """The same error with its offset moved from the start of a part to the start of the input."""
    return type(exc)(exc.reason, base + (exc.offset or 0))


def read_envelope(data, offset=0):
    """The envelope of one batch (its body still encoded). Errors name the offset in data."""
    try:
        env = cbor_decode.loads(data)
    except cbor.CBORError as exc:
        raise _at(exc, offset)
    if not isinstance(env, list) or not env:
        raise cbor.Malformed("a batch is a CBOR array", offset)
    version = env[0]
    if not isinstance(version, int) or isinstance(version, bool) or version not in (
            VERSION, VERSION_STORE):
        raise cbor.Malformed("batch format version %s is not supported (this decoder reads %d "
                             "and %d)" % (shown(version), VERSION, VERSION_STORE), offset)
    fields = 8 if version == VERSION else 9
    if len(env) != fields:
        raise cbor.Malformed("a version %d batch has %d fields, this one %d"
                             % (version, fields, len(env)), offset)
    store = env.pop(7) if version == VERSION_STORE else 0
    if version == VERSION_STORE and not (isinstance(store, int) and not isinstance(store, bool)
                                         and 0 < store <= 0xFFFFFFFF):
        raise cbor.Malformed("envelope store id must be an integer from 1 to 2**32 - 1", offset)
    _, device, seq, boot, dropped, encoding, flags, body = env
    if not isinstance(device, str):
        raise cbor.Malformed("envelope device id must be text", offset)
    if not isinstance(encoding, int) or isinstance(encoding, bool) or encoding not in (
            SENML, COMPACT):
        raise cbor.Malformed("unknown body encoding %s" % shown(encoding), offset)
    if not isinstance(body, bytes):
        raise cbor.Malformed("envelope body must be a byte string", offset)
    _uint(flags, "flags", offset)
    if flags & ~(FLAG_SYNCED | FLAG_DEFLATED):
        raise cbor.Malformed("unknown envelope flags %#x" % flags, offset)
    b = Batch(device, _uint(seq, "sequence number", offset), _uint(boot, "boot count", offset),
              _uint(dropped, "dropped count", offset), encoding, flags, body)
    b.store = store
    return b


def decode(data, schemas=None, offset=0, max_body=MAX_INFLATED):
    """A whole batch: envelope and readings, [(t_ms, name, value)] in time order.

    schemas maps schema id -> Schema; a compact body cannot be read without its schema. Errors
    in the body name its offset in data (for a deflated body: the offset of the body).
    """
    b = read_envelope(data, offset)
    body = b.body
    body_at = offset + len(data) - len(body)
    if b.deflated:
        body = inflate(body, body_at, max_body)
    try:
        if b.encoding == COMPACT:
            r = cbor_decode.Reader(body)
            if r.head()[0] != 4:
                raise cbor.Malformed("a compact body is an array", 0)
            b.schema_id = r.item()
            if not isinstance(b.schema_id, int) or isinstance(b.schema_id, bool):
                raise cbor.Malformed("a compact body's schema id is an integer, not %s"
                                     % shown(b.schema_id), 0)
            schema = (schemas or {}).get(b.schema_id)
            if schema is None:
                raise cbor.Malformed("compact batch refers to schema %s, which this decoder has not "
                                     "been given (the device publishes it on .../up/schema)"
                                     % shown(b.schema_id), 0)
            names = schema.names
            b.readings = [(t, names[c], schema.value(c, v)) for t, c, v in compact_decode.decode(body, schema)]
            for t, _, v in b.readings:  # a hostile body's, past what 64-bit columns hold
                if not _int64(t) or isinstance(v, int) and not _int64(v):
                    raise cbor.Malformed("a time or value past a signed 64-bit integer", 0)
            for name, unit, _, _ in schema.channels:
                b.units[name] = unit
        else:
            # Ordered as compact bodies are: by time, then channel (in order of first
            # appearance), then pack order; a full key because MicroPython's sort is not stable.
            order = {}
            rows = []
            for name, unit, t, value in senml_decode.decode(cbor_decode.loads(body)):
                if name not in order:
                    order[name] = len(order)
                    b.units[name] = unit
                rows.append((t, order[name], len(rows), name, value, unit))
            rows.sort()
            b.readings = [(r[0], r[3], r[4]) for r in rows]
            b.reading_units = [r[5] for r in rows]
    except cbor.CBORError as exc:
        raise _at(exc, body_at) if not b.deflated else type(exc)(exc.reason, body_at)
    return b
