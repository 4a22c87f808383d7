"""Durations, sizes, frequencies and resolutions as written in profiles, and back to text.

Parsers take the scalar's text and return an integer (milliseconds, bytes, hertz) or None when
the text is not one; the caller knows what to tell the user.
"""
import re
from decimal import Decimal, InvalidOperation

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
KIB = 1024

DURATION_UNITS = {"ms": 1, "s": SECOND, "sec": SECOND, "min": MINUTE, "h": HOUR, "d": DAY}
SIZE_UNITS = {"b": 1, "kb": 1000, "kib": KIB, "mb": 1000 ** 2, "mib": KIB ** 2}
FREQUENCY_UNITS = {"hz": 1, "khz": 1000, "mhz": 1000 ** 2}

# [0-9], not \d: \d takes any script's digits (Arabic-Indic, fullwidth), and a profile is ASCII
_AMOUNT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]+)\s*")


def _parse(text, units):
    """Whole number of base units in '1.5KiB'-style text, or None."""
    match = _AMOUNT.fullmatch(text)
    if not match or match.group(2).lower() not in units:
        return None
    value = Decimal(match.group(1)) * units[match.group(2).lower()]
    # Fractions of the base unit (0.5ms, 1.5B) cannot be represented on the board.
    return int(value) if value == value.to_integral_value() else None


def unit_of(text):
    """The unit as written in an amount that parsed ('Kb' of '256Kb')."""
    return _AMOUNT.fullmatch(text).group(2)


# Units written for durations elsewhere (ESPHome's 30m among them): told the one meant here
_DURATION_SAID = {"m": "min", "mins": "min", "minute": "min", "minutes": "min", "secs": "s",
                  "second": "s", "seconds": "s", "hr": "h", "hrs": "h", "hour": "h",
                  "hours": "h", "day": "d", "days": "d"}


def why_not(text, units, base):
    """What is wrong with text that _parse refused, where it is close: a sign, or a fraction of
    the base unit ('0.5ms'); None otherwise."""
    text = text.strip()
    if text.startswith("-") and _AMOUNT.fullmatch(text[1:].strip()):
        return "not a negative one"
    match = _AMOUNT.fullmatch(text)
    if match and match.group(2).lower() in units:
        return "a whole number of %s" % base
    return None


def duration_hint(text):
    """' (write 30min)' for a duration's unit spelt as elsewhere ('30m'), '' otherwise."""
    match = _AMOUNT.fullmatch(text)
    if match and match.group(2).lower() in _DURATION_SAID:
        return " (write %s%s)" % (match.group(1), _DURATION_SAID[match.group(2).lower()])
    if text.strip().lower() == "never":
        return " (there is no 'never': leave out what should not run)"
    return ""


def parse_duration(text):
    """Milliseconds in '250ms', '10s', '5min', '24h', '1d'."""
    return _parse(text, DURATION_UNITS)


def parse_size(text):
    """Bytes in '512B', '64KiB', '1MiB', '8KB' (KB and MB are decimal)."""
    return _parse(text, SIZE_UNITS)


def parse_frequency(text):
    """Hertz in '100kHz', '1MHz', '400000Hz'."""
    return _parse(text, FREQUENCY_UNITS)


def parse_decimal(text):
    """The finite Decimal written in text (YAML allows '_' between digits), or None."""
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def resolution_parts(value):
    """[mantissa, exponent] of a positive Decimal, the mantissa without trailing zeros.

    0.5 -> [5, -1], 10 -> [1, 1].
    """
    _, digits, exponent = value.as_tuple()  # not normalize(): it rounds to the context precision
    mantissa = int("".join(map(str, digits)))
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return [mantissa, exponent]


def format_resolution(parts):
    """'0.1' for [1, -1], '10' for [1, 1]."""
    return format(Decimal(parts[0]).scaleb(parts[1]), "f")


def _format(n, units):
    for name, size in units:
        if n and n % size == 0:
            return "%d%s" % (n // size, name)
    return "%d%s" % (n, units[-1][0])


def format_duration(ms):
    """'10s' for 10000, '1500ms' for 1500."""
    return _format(ms, [("d", DAY), ("h", HOUR), ("min", MINUTE), ("s", SECOND), ("ms", 1)])


def format_size(n):
    """'8KiB' for 8192, '1000B' for 1000."""
    return _format(n, [("MiB", KIB ** 2), ("KiB", KIB), ("B", 1)])


def format_frequency(hz):
    """'100kHz' for 100000."""
    return _format(hz, [("MHz", 1000 ** 2), ("kHz", 1000), ("Hz", 1)])
