# A value from outside (a decoded CBOR item, a command's argument) as error text, bounded
# whatever it holds: CPython will not even print an int of over 4300 digits, nor a list that
# holds one, and a board's heap is small. Portable; loaded only where a message is made (the
# decoders, the ingest, the command handling, an insight's refusal).
from agent.cbor import Tag

_BIG = 1 << 64


def shown(x, most=40, depth=0):
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if -_BIG < x < _BIG else "<int of more than 64 bits>"
    if isinstance(x, str):
        return _text(x) if len(x) <= most else _text(x[:most - 3]) + "..."
    if isinstance(x, bytes):
        return repr(x) if len(x) <= most else repr(x[:most - 3]) + "..."
    if isinstance(x, (list, tuple, dict)):
        if len(x) > 8 or depth > 2:
            return "<%s of %d>" % (type(x).__name__, len(x))
        if isinstance(x, dict):
            return "{%s}" % ", ".join(shown(k, most, depth + 1) + ": " + shown(v, most, depth + 1)
                                      for k, v in x.items())
        return "[%s]" % ", ".join(shown(v, most, depth + 1) for v in x)
    if isinstance(x, Tag):
        return "Tag(%d, %s)" % (x.tag, shown(x.value, most, depth + 1))
    return repr(x)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _text(s):
    """s quoted as CPython's ascii(s) writes it, on MicroPython too: its repr escapes every
    character past ASCII and CPython's repr none that prints, so a board's error said 'caf\\xe9'
    where the simulator's said 'café'."""
    for c in s:
        if ord(c) > 0x7E:
            break
    else:
        return repr(s)      # printable ASCII and C0 controls: written alike by both
    q = '"' if "'" in s and '"' not in s else "'"
    out = [q]
    for c in s:
        o = ord(c)
        if c == q:
            out.append("\\" + c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 0x20 <= o < 0x7F:
            out.append(c)
        else:
            out.append("\\x%02x" % o if o < 0x100 else "\\u%04x" % o if o < 0x10000
                       else "\\U%08x" % o)
    out.append(q)
    return "".join(out)
