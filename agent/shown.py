# A decoded CBOR item as error text (the decoders, the ingest, `tether decode`), bounded whatever
# it holds. Portable; not loaded on a board, which only encodes.
from agent.cbor import Tag

_BIG = 1 << 64


def shown(x, most=40, depth=0):
    """A decoded item as error text, bounded whatever it holds: a bignum (CPython will not
    print one of over 4300 digits), a long text, a deep or long array, a tag holding any of
    those."""
    if isinstance(x, int) and not -_BIG < x < _BIG:
        return "an integer beyond 64 bits"
    if isinstance(x, (list, tuple, dict)):
        if len(x) > 8 or depth > 2:
            return "a %s of %d" % (type(x).__name__, len(x))
        if isinstance(x, dict):
            return "{%s}" % ", ".join(shown(k, most, depth + 1) + ": " + shown(v, most, depth + 1)
                                      for k, v in x.items())
        return "[%s]" % ", ".join(shown(v, most, depth + 1) for v in x)
    if isinstance(x, Tag):
        return "Tag(%d, %s)" % (x.tag, shown(x.value, most, depth + 1))
    if isinstance(x, (str, bytes)) and len(x) > most:
        return "a %s of %d" % (type(x).__name__, len(x))
    return repr(x)
