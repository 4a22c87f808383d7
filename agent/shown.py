# A value from outside (a decoded CBOR item, a command's argument) as error text, bounded
# whatever it holds: CPython will not even print an int of over 4300 digits, nor a list that
# holds one, and a board's heap is small. Portable; loaded only where a message is made (the
# decoders, the ingest, the command handling, an insight's refusal).
from agent.cbor import Tag

_BIG = 1 << 64


def shown(x, most=40, depth=0):
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if -_BIG < x < _BIG else "<int of more than 64 bits>"
    if isinstance(x, (str, bytes)):
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
