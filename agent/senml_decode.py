# Reads SenML packs (RFC 8428, CBOR representation), ours or any other device's.
from agent import cbor
from agent.compact import MAX_READINGS
from agent.schema import scaled_value
from agent.senml import BN, BT, BU, BV, N, T, U, V, VB, VS

# Integers (and decimal mantissas, and integer values made of them) a signed 64-bit integer
# holds, as a database column does: a bignum of thousands of digits would overflow a float it
# is added to, and cannot even be printed on CPython; 2**64 was decoded and then refused by the
# ingest.
_LIMIT = 1 << 63
_MAX_SECONDS = 1e15  # a float time beyond this (31 million years) is not a time


def _int(x):
    return isinstance(x, int) and not isinstance(x, bool) and -_LIMIT <= x < _LIMIT


def _decimal(x):
    """(mantissa, exponent) of a decimal fraction (tag 4), else None."""
    if isinstance(x, cbor.Tag) and x.tag == 4 and isinstance(x.value, list) and len(x.value) == 2:
        exponent, m = x.value
        if _int(exponent) and _int(m) and -64 <= exponent <= 64:
            return m, exponent
    return None


def _text(x, what, offset):
    if not isinstance(x, str):
        raise cbor.Malformed("SenML %s is not text" % what, offset)
    return x


def _number(x, what, offset):
    if isinstance(x, float) or _int(x):
        return x
    d = _decimal(x)
    v = None if d is None else scaled_value(d[0], d[1])
    if v is None or isinstance(v, int) and not _int(v):  # 4([64, 1]) is 10**64
        raise cbor.Malformed("SenML %s is not a number, or too large" % what, offset)
    return v


def _ms(x, what, offset):
    """A SenML time in whole milliseconds, with integer arithmetic where the input allows it."""
    if _int(x):
        return x * 1000
    d = _decimal(x)
    if d is not None:
        m, exponent = d
        if exponent >= -3:
            return m * 10 ** (exponent + 3)
        return (m + 10 ** (-exponent - 3) // 2) // 10 ** (-exponent - 3)
    if isinstance(x, float) and -_MAX_SECONDS < x < _MAX_SECONDS:  # not NaN or infinite
        return round(x * 1000)
    raise cbor.Malformed("SenML %s is not a number, or too large" % what, offset)


def decode(pack, offset=0):
    """(name, unit, t_ms, value) for each record of a SenML pack (already CBOR-decoded).

    Base fields carry over from record to record as RFC 8428 says; a label this decoder does not
    know is ignored, unless it is a must-understand label (a text label ending in '_').
    """
    if not isinstance(pack, list):
        raise cbor.Malformed("a SenML pack is an array of records", offset)
    if len(pack) > MAX_READINGS:
        raise cbor.Malformed("%d SenML records: a batch holds at most %d readings"
                             % (len(pack), MAX_READINGS), offset)
    bn = ""
    bt = 0
    bu = ""
    bv = 0
    out = []
    for rec in pack:
        if not isinstance(rec, dict):
            raise cbor.Malformed("a SenML record is a map", offset)
        for key in rec:
            if isinstance(key, str) and key.endswith("_"):
                raise cbor.Malformed("SenML must-understand field %r is not supported" % key, offset)
        if BN in rec:
            bn = _text(rec[BN], "base name", offset)
        if BT in rec:
            bt = _ms(rec[BT], "base time", offset)
        if BU in rec:
            bu = _text(rec[BU], "base unit", offset)
        if BV in rec:
            bv = _number(rec[BV], "base value", offset)
        name = bn + _text(rec.get(N, ""), "name", offset)
        if not name:
            raise cbor.Malformed("SenML record without a name", offset)
        if V in rec:
            value = bv + _number(rec[V], "value", offset)
            if isinstance(value, int) and not _int(value):  # the base value and the value
                raise cbor.Malformed("SenML value is too large", offset)
        elif VS in rec:
            value = _text(rec[VS], "string value", offset)
        elif VB in rec:
            value = rec[VB]
            if value is not True and value is not False:
                raise cbor.Malformed("SenML boolean value is not a boolean", offset)
        elif BV in rec:
            value = bv
        else:
            continue  # a record that only sets base fields
        t = bt + _ms(rec.get(T, 0), "time", offset)
        if not -_LIMIT <= t < _LIMIT:  # in ms: 2**62 seconds as an integer are 4.6e21 ms
            raise cbor.Malformed("SenML time is too large", offset)
        out.append((name, _text(rec.get(U, bu), "unit", offset), t, value))
    return out
