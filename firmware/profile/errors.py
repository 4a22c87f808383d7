"""Problems found in a profile, and how they are written for the user.

A problem is a tuple (file, line, column, key path, message); line and column are 1-based, or
None when the problem concerns a whole file. Written out it reads
`many-errors.yaml:19:14: sensors[2].address: expected an I2C address from 0x08 to 0x77, got 0x80`
(tests/data/profiles).
"""
import difflib
import unicodedata

SECRET_SHOWN = "***"
# Comparing each word with thousands of choices (substitution variables, say) took minutes.
MAX_CHOICES = 100


class Invalid(Exception):
    """A value breaks its rule; the message says what was expected and what was got."""


def at(node, message):
    return (node.file, node.line, node.col, node.path, message)


def shown(node):
    """How a value appears in a message. A secret never does."""
    if node.secret:
        return SECRET_SHOWN
    if node.tag == "map":
        return "a mapping"
    if node.tag == "seq":
        return "a list" if node.value else "an empty list"
    if node.tag == "null":
        return "nothing"
    if node.tag == "str":
        text = node.text if len(node.text) <= 60 else node.text[:57] + "..."
        return "'%s'" % printable(text)
    return node.text


# The marks and overrides that set the direction of the text around them: shown as they are they
# turned an error's line around them backwards (U+202E in a programme's name)
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def printable(text):
    """text with its control characters (Unicode's Cc) and direction marks escaped as Python
    writes them: a newline split an error in two, and an ESC sequence in a value was sent to
    the terminal as it was."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" or c in BIDI else c
                   for c in text)


YAML_BOOLS = ("on", "off", "yes", "no", "y", "n")


def expected(what, node):
    said = "expected %s, got %s" % (what, shown(node))
    text = getattr(node, "text", "")
    if getattr(node, "tag", None) == "bool" and text.lower() in YAML_BOOLS:
        # `event: on` read as true, and shown as written it looked right
        said += " (YAML reads an unquoted %s as %s: write '%s' in quotes)" % (
            text, "true" if node.value else "false", text)
    return said


def did_you_mean(word, choices):
    """", did you mean 'x'?" when one of choices is close to word, else ""."""
    if len(choices) > MAX_CHOICES:
        return ""
    choices = [str(c) for c in choices]
    # case first: `driver: INA219` (as its datasheet and every error message spell it)
    close = [c for c in choices if c.lower() == str(word).lower()] or difflib.get_close_matches(
        word, choices, n=1, cutoff=0.6)
    return ", did you mean '%s'?" % close[0] if close else ""


def format_problem(problem):
    file, line, col, path, message = problem
    where = file if line is None else "%s:%d:%d" % (file, line, col)
    return "%s: %s: %s" % (where, path, message) if path else "%s: %s" % (where, message)


def messages(problems):
    """Problems as text lines, by file and position, each once: one mistake in a block that
    several places share (a YAML anchor's `*ink_filters`, a package) is one line naming every
    place that uses it, not a line each (four sensors gave four lines at one position)."""
    order = sorted(set(problems), key=lambda p: (p[0], p[1] or 0, p[2] or 0, p[3], p[4]))
    kept, shared = [], {}
    for p in order:
        key = (p[0], p[1], p[2], p[4])
        placed = p[1] is not None and p[3]     # a place in a file, reached by a key path
        if placed and key in shared:
            shared[key].append(p[3])
            continue
        more = None
        if placed:
            more = shared[key] = []
        kept.append((p, more))
    return [format_problem(p[:3] + ("%s (and %s, which use the same lines)"
                                    % (p[3], ", ".join(more)), p[4]) if more else p)
            for p, more in kept]
