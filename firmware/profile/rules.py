"""Generic rules for profile values.

A rule is a function (ctx, node) -> compiled value that raises Invalid when the value breaks it.
`section` reads a mapping by a table of fields, collecting every problem in ctx.problems and the
compiled names of values that came from `!secret` in ctx.secrets.
"""
import re

from firmware.profile import units
from firmware.profile.errors import Invalid, at, did_you_mean, expected, printable
from firmware.profile.yamlsource import Node, join

REQUIRED = object()  # default of a field that must be given
EMPTY = object()     # default of a sub-mapping: read as an empty mapping, so its own defaults apply
EXPONENT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
MAX_DIGITS = 30  # numbers from 1e-30 to 1e30 in size: more is a typo, and costly to work with


def section(ctx, node, fields, out_path=None, strict=True):
    """Compiled dict of a mapping read by fields: [(key, compiled name, rule, default)].

    A default of None leaves the compiled key out. A compiled name of None means the rule returns
    several compiled keys as a dict. out_path is where the result sits in the compiled form (to
    name secret fields); strict reports keys that are not in the table.
    """
    if node.tag == "null":
        node = Node({}, node.file, node.line, node.col, node.path, secret=node.secret)
    if node.tag != "map":
        raise Invalid(expected("a mapping", node))
    if strict:
        unknown_keys(ctx, node, [field[0] for field in fields])
    if node.absent:
        # one line, at the mapping that lacks it: "sensors[2].calibration: missing required key
        # 'raw_empty'" pointed into a mapping that is not in the file (a key typed 'calibraton')
        need = [f[0] for f in fields if f[3] is REQUIRED]
        if need:
            parent, _, key = node.path.rpartition(".")
            ctx.problems.append((node.file, node.line, node.col, parent,
                                 "missing required key '%s' (with %s)"
                                 % (key, " and ".join(need))))
    out = {}
    for key, name, rule, default in fields:
        child = node.value.get(key)
        if child is None and default is REQUIRED:
            if not node.absent:     # else said above, once
                ctx.problems.append(at(node, "missing required key '%s'" % key))
            continue
        if child is None and default is not EMPTY:
            if default is not None:
                out[name] = default
            continue
        if child is None:
            child = Node({}, node.file, node.line, node.col, join(node.path, key), absent=True)
        try:
            value = rule(ctx, child)
        except Invalid as exc:
            ctx.problems.append(at(child, str(exc)))
            continue
        produced = value if name is None else {name: value}
        out.update(produced)
        if child.secret:
            where = node.path if out_path is None else out_path
            ctx.secrets.update(join(where, n) for n in produced)
    return out


# ESPHome's names for what a profile calls otherwise: its users type them first
ESPHOME = {"mqtt": "uplink", "i2c": "buses", "uart": "buses", "spi": "buses",
           "esphome": "device", "esp32": "platform", "unit_of_measurement": "unit",
           "tx_pin": "tx", "rx_pin": "rx", "sda_pin": "sda", "scl_pin": "scl",
           "update_interval": "interval", "baud_rate": "baud"}
# ESPHome's keys whose meaning is written another way here, or not at all, by where ESPHome
# writes them: said there before a guess at a close key (`internal` was "did you mean
# 'interval'?"); elsewhere the key is a profile's own word out of place (`platform` in
# 'device:' goes at the top level)
ESPHOME_SAID = {
    "sensor": {
        "platform": "ESPHome's sensor 'platform:' is 'driver:' here",
        "id": "a sensor's 'id:' in ESPHome is its 'name:' here",
        "accuracy_decimals": "ESPHome's 'accuracy_decimals: 2' is 'resolution: 0.01' here",
        "internal": "ESPHome's 'internal:' has no equivalent: every sensor is sent; leave it "
                    "out",
        "device_class": "Home Assistant's; no equivalent here: leave it out",
        "state_class": "Home Assistant's; no equivalent here: leave it out",
        "icon": "Home Assistant's; no equivalent here: leave it out",
        "on_value": "no automations here: a threshold ('thresholds:') raises an event",
        "on_value_range": "no automations here: a threshold ('thresholds:') raises an event",
        "dout_pin": "write 'pins: {dout: N, sck: N}'",
        "clk_pin": "write 'pins: {dout: N, sck: N}'",
        "temperature": "one sensor per quantity here: 'quantity: temperature' on a sensor of "
                       "its own",
        "humidity": "one sensor per quantity here: 'quantity: humidity' on a sensor of its own",
    },
    "top": {
        "logger": "the board's console is read with 'tether logs'; leave it out",
        "api": "the device speaks MQTT only ('uplink:'); leave it out",
        "ota": "a board is updated with 'tether flash'; leave it out",
        "web_server": "no web server on the device; leave it out",
        "captive_portal": "no captive portal on the device; leave it out",
    },
    "filters": {
        "delta": "ESPHome's 'delta:' is 'deadband:' here",
        "sliding_window_moving_average": "the window filter here is 'median: N' (odd, 3-15)",
        "throttle": "set the sensor's 'interval:' instead",
        "lambda": "no code in a profile",
        "multiply": "the driver reports in its unit; an HX711's 'calibration: {scale: ...}' "
                    "sets its own",
        "offset": "no offset filter; an HX711's 'calibration: {tare: ...}' sets its zero",
        "calibrate_linear": "an HX711's 'calibration: {tare, scale}' is its two-point "
                            "calibration (docs/profiles.md)",
    },
}


def _esphome_place(path):
    if path == "":
        return "top"
    if path.endswith(".filters"):
        return "filters"
    return "sensor" if re.fullmatch(r"sensors\[[0-9]+\]", path) else None


def unknown_keys(ctx, node, known):
    """A problem at each key of node that is not in known, placed at the key itself."""
    for key, key_node in node.keys.items():
        if key not in known:
            alias = ESPHOME.get(key) if isinstance(key, str) else None
            home = getattr(ctx, "homes", {}).get(key)
            # a key of another section, written as it is there, before one close to a key here
            said = ESPHOME_SAID.get(_esphome_place(node.path), {}).get(key)
            hint = (" (%s)" % said if said else "") or (
                ": it goes in %s" % home if home else "") or did_you_mean(key, known) or (
                ", did you mean '%s'? (ESPHome's '%s:' is '%s:' here)" % (alias, key, alias)
                if alias in known else "") or (
                " (expected one of: %s)" % ", ".join(known) if known
                else " (nothing can be set here)")
            ctx.problems.append((key_node.file, key_node.line, key_node.col, node.path,
                                 "unknown key '%s'%s" % (key, hint)))


def find(node, *keys):
    """The deepest node along keys that exists: where to report a problem about a default."""
    for key in keys:
        if node.tag != "map" or key not in node.value:
            break
        node = node.value[key]
    return node


def list_of(rule, at_least=0, what="a list", at_most=None):
    """A list whose items follow rule; an invalid item compiles to None (its problem is noted)."""
    def read(ctx, node):
        if node.tag == "null" and not at_least:
            return []
        if node.tag != "seq" or len(node.value) < at_least:
            raise Invalid(expected(what, node))
        if at_most is not None and len(node.value) > at_most:
            # "a list of NTP servers, 1 to 3" says its most already: not twice
            most = "" if what.endswith(" %d" % at_most) else ", at most %d" % at_most
            raise Invalid("expected %s%s, got %d" % (what, most, len(node.value)))
        out = []
        for item in node.value:
            try:
                out.append(rule(ctx, item))
            except Invalid as exc:
                ctx.problems.append(at(item, str(exc)))
                out.append(None)
        return out
    return read


def choice(options):
    def read(ctx, node):
        if node.tag == "str" and node.value in options:
            return node.value
        hint = "" if node.secret or node.tag != "str" else did_you_mean(node.value, options)
        raise Invalid(expected("one of %s" % ", ".join("'%s'" % o for o in options), node) + hint)
    read.options = options     # firmware/profile/compiled.py checks a compiled profile by them
    return read


def text(ctx, node):
    """Any text; numbers are taken as written (a username of 1234 is the text '1234')."""
    if node.tag not in ("str", "int", "float"):
        raise Invalid(expected("text", node))
    return node.text


def label(ctx, node):
    """Text a person reads (a product's model): printable characters only; it is shown in
    terminals and consoles, and sent."""
    value = text(ctx, node)
    if printable(value) != value:     # control characters (a no-break space is fine)
        raise Invalid(expected("text without control characters (a newline, a tab, an escape)",
                               node))
    return value


def mqtt_text(ctx, node):
    """Text an MQTT packet carries: its length is 2 bytes (a longer user name passed the check
    and the board retried its connect for ever)."""
    value = text(ctx, node)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > 65535:
        raise Invalid("expected at most MQTT's 65535 bytes, got %d" % size)
    return value


def pattern(regex, what, slug=False):
    """Text that regex matches; slug: a name, told the one its words make ('Pill Weight' is
    pill_weight: ESPHome's names are titles)."""
    def read(ctx, node):
        if node.tag != "str" or not re.fullmatch(regex, node.value):
            hint = ""
            if slug and node.tag == "str":
                made = re.sub(r"[^a-z0-9]+", "_", node.value.lower()).strip("_")
                if made != node.value and re.fullmatch(regex, made):
                    hint = " (write %s)" % made
            raise Invalid(expected(what, node) + hint)
        return node.value
    return read


def boolean(ctx, node):
    if node.tag != "bool":
        raise Invalid(expected("true or false", node))
    return node.value


QUOTED_NUMBER = re.compile(r"\s*[-+]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9_]+"
                           r"(\.[0-9_]*)?([eE][-+]?[0-9]+)?)\s*")


def in_quotes(node):
    """The hint for a number written in quotes where a number is wanted ('' for anything else)."""
    if node.tag != "str" or not QUOTED_NUMBER.fullmatch(node.value):
        return ""
    quoted_at = getattr(node, "quoted_at", None)
    if quoted_at is not None:
        name, var = quoted_at
        return (" (text: the substitution '%s' is quoted at %s:%d:%d; write it without quotes)"
                % (name, var.file, var.line, var.col))
    if not node.plain:
        return " (in quotes it is text: write the number without them)"
    return ""


def integer(lo, hi, what=None):
    def read(ctx, node):
        if node.tag != "int" or not lo <= node.value <= hi:
            raise Invalid(expected(what or "an integer from %d to %d" % (lo, hi), node)
                          + in_quotes(node))
        return node.value
    read.bounds = (lo, hi)     # firmware/profile/compiled.py checks a compiled profile by them
    return read


def clock_time(ctx, node):
    """'08:00' -> minutes after local midnight. YAML reads an unquoted 20:00 as the base-60
    integer 1200: its text is taken as written."""
    text = node.text if node.tag in ("str", "int") else None
    m = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text) if text is not None else None
    if m is None:
        raise Invalid(expected("a time of day like '08:00'", node))
    return int(m.group(1)) * 60 + int(m.group(2))


def decimal(node, what="a number"):
    """The exact Decimal of a number node (floats are read from their text, never via float)."""
    value = None
    if node.tag == "int":
        value = units.parse_decimal(str(node.value))
    elif node.tag == "float":
        value = units.parse_decimal(node.text)
    elif node.tag == "str" and node.plain and EXPONENT.fullmatch(node.value):
        # Unquoted 1e3 or 6.02e23: YAML 1.1 reads them as text (it wants a dot and a sign:
        # 1.0e+3), YAML 1.2 and whoever wrote them as numbers.
        value = units.parse_decimal(node.value)
    if value is None:
        message = expected(what, node) + in_quotes(node)
        raise Invalid(message)
    if value and not -MAX_DIGITS <= value.adjusted() < MAX_DIGITS:  # int(1e99999999) takes ages
        raise Invalid(expected("%s (in size from 1e-%d to 1e%d)" % (what, MAX_DIGITS, MAX_DIGITS),
                               node))
    return value


def nonzero(ctx, node):
    value = decimal(node)
    if value == 0:
        raise Invalid(expected("a number other than 0", node))
    return json_number(value)


def json_number(value):
    """A Decimal as an int when whole, else the nearest float."""
    return int(value) if value == value.to_integral_value() else float(value)


def number(at_least=None, above=None, at_most=None, below=None):
    def read(ctx, node):
        value = decimal(node)
        if at_least is not None and value < at_least:
            raise Invalid(expected("a number >= %s" % at_least, node))
        if above is not None and value <= above:
            raise Invalid(expected("a number > %s" % above, node))
        if at_most is not None and value > at_most:
            raise Invalid(expected("a number <= %s" % at_most, node))
        if below is not None and value >= below:
            raise Invalid(expected("a number < %g" % below, node))
        return json_number(value)
    return read


def number_choice(options):
    """One of a few numbers, given as text so decimals compare exactly: ("6.144", "4.096")."""
    allowed = [units.parse_decimal(o) for o in options]

    def read(ctx, node):
        what = "one of %s" % ", ".join(options)
        value = decimal(node, what)
        if value not in allowed:
            raise Invalid(expected(what, node))
        return json_number(value)
    read.options = [json_number(a) for a in allowed]   # as choice's: compiled.py checks by them
    return read


def duration(lo, hi, whole_seconds=False):
    """Milliseconds; bare numbers are refused because '10' could mean seconds or milliseconds."""
    def read(ctx, node):
        ms = units.parse_duration(node.value) if node.tag == "str" else None
        if ms is None:
            why = units.why_not(node.value, units.DURATION_UNITS, "milliseconds") \
                if node.tag == "str" else None
            raise Invalid(expected("a duration like '10s' (ms, s, min, h or d)%s"
                                   % (", " + why if why else ""), node)
                          + (units.duration_hint(node.value) if node.tag == "str" else ""))
        if not lo <= ms <= hi:
            raise Invalid(expected("a duration from %s to %s" % (units.format_duration(lo),
                                                                 units.format_duration(hi)), node))
        if whole_seconds and ms % units.SECOND:
            raise Invalid(expected("a whole number of seconds", node))
        return ms
    read.bounds = (lo, hi)     # firmware/profile/compiled.py checks a compiled profile by them
    return read


def size(lo, hi):
    """Bytes; bare numbers are refused like durations, so every size in a profile reads alike."""
    def read(ctx, node):
        n = units.parse_size(node.value) if node.tag == "str" else None
        if n is None:
            why = units.why_not(node.value, units.SIZE_UNITS, "bytes") if node.tag == "str" \
                else None
            raise Invalid(expected("a size like '64KiB'%s" % (", " + why if why else ""), node))
        if not lo <= n <= hi:
            raise Invalid(expected("a size from %s to %s" % (units.format_size(lo),
                                                             units.format_size(hi)), node))
        unit = units.unit_of(node.value)
        if unit in ("b", "kb", "Kb", "mb", "Mb"):
            # '256Kb' is 256,000 bytes here; a maker who wrote it likely meant 256 KiB, or bits
            # (kib and mib are bytes, whatever their case)
            prefix = unit[:-1].upper()
            ctx.notes.append((None, at(node, "warning: '%s' is read as %s bytes; a lower-case "
                                             "b is usually bits: write %s" % (
                                                 node.value.strip(), format(n, ","),
                                                 "%sB or %siB" % (prefix, prefix) if prefix
                                                 else "B"))))
        return n
    read.bounds = (lo, hi)     # firmware/profile/compiled.py checks a compiled profile by them
    return read


def frequency(lo, hi):
    """Hertz: '100kHz' or a bare number of hertz, as ESPHome accepts."""
    def read(ctx, node):
        hz = node.value if node.tag == "int" else None
        if node.tag == "str":
            hz = units.parse_frequency(node.value)
        if hz is None:
            raise Invalid(expected("a frequency like '100kHz' or 400000", node) + in_quotes(node))
        if not lo <= hz <= hi:
            raise Invalid(expected("a frequency from %s to %s" % (
                units.format_frequency(lo), units.format_frequency(hi)), node))
        return hz
    return read


def resolution(ctx, node):
    """[mantissa, exponent], read exactly from the text: 0.1 -> [1, -1]."""
    what = "a positive decimal like 0.1"
    value = decimal(node, what)
    if value <= 0:
        raise Invalid(expected(what, node))
    parts = units.resolution_parts(value)
    if parts[0] >= 10 ** 19:  # a 64-bit integer, as the batch decoder reads it
        raise Invalid(expected(what + " with at most 19 significant digits", node))
    return parts


def given(node, key):
    """Whether node is a mapping that has key (given in the YAML, not a default)."""
    return node.tag == "map" and key in node.value


def sub(fields):
    """A rule for a nested mapping read by its own field table."""
    return lambda ctx, node: section(ctx, node, fields)
