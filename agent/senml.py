# The SenML batch body: a standard SenML pack (RFC 8428, CBOR representation, integer labels).
#
# Records are grouped per channel: the first record of a group sets the base name (the channel
# name) and base unit, every record carries its time relative to the pack's base time. Values
# are decimal fractions (tag 4) at the channel's resolution, so 71.4 travels as 714 x 10**-1 and
# reads back exactly, where a float would need 9 bytes and still not be 71.4.

BN = -2
BT = -3
BU = -4
BV = -5
N = 0
U = 1
V = 2
VS = 3
VB = 4
T = 6


def _write_decimal(w, m, exponent):
    if exponent >= 0:
        w.int(m * 10 ** exponent)
    else:
        w.head(6, 4)
        w.head(4, 2)
        w.int(exponent)
        w.int(m)


def _write_time(w, ms, exp):
    if exp == 0:
        w.int(ms // 1000)
    else:
        _write_decimal(w, ms, -3)


def encode(w, schema, base, ts, chs, vals, start, end):
    """Writes rows start..end-1 as a SenML pack to w: times base + ts[i] in ms, channel numbers
    chs[i], values vals[i] as integers scaled by the channel's resolution."""
    exp = 0
    base_ms = base % 1000
    for i in range(start, end):
        if (base_ms + ts[i]) % 1000:
            exp = -3
            break
    t0 = ts[start]
    bt = base + t0
    w.array(end - start)
    first_of_pack = True
    bu = ""  # the base unit in force: a unit carries over to later groups until changed
    for c in range(len(schema.channels)):
        name, unit, mantissa, exponent = schema.channels[c]
        first_of_group = True
        for i in range(start, end):
            if chs[i] != c:
                continue
            if first_of_group:
                # Keys in deterministic order: 2, 6, -2, -3, -4 (0x02 0x06 0x21 0x22 0x23).
                w.map(2 + 1 + first_of_pack + (unit != bu))
            else:
                w.map(2)
            w.head(0, V)
            _write_decimal(w, vals[i] * mantissa, exponent)
            w.head(0, T)
            _write_time(w, ts[i] - t0, exp)
            if first_of_group:
                w.int(BN)
                w.text(name)
                if first_of_pack:
                    w.int(BT)
                    _write_time(w, bt, exp)
                    first_of_pack = False
                if unit != bu:
                    w.int(BU)
                    w.text(unit)
                    bu = unit
                first_of_group = False
    return end - start
