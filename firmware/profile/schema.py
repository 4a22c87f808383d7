"""The rules of a Tether profile: every key, its type, range and default, and its compiled name.

Field tables are lists of (key, compiled name, rule, default); see rules.section. Rules that
depend on earlier parts of the profile (pins on the platform, sensors on the declared buses)
read what those parts left in ctx.
"""
import os
import re
from types import SimpleNamespace

from agent import ids
from agent import tz as agent_tz
from agent.compact import MAX_READINGS
from agent.profile import FORMAT
from agent.schema import MAX_CHANNELS
from firmware import bounded
from firmware.profile import crosscheck, zones
from firmware.profile.chips import DRIVERS
from firmware.profile.insights import INSIGHTS
from firmware.profile.errors import Invalid, at, expected, shown
from firmware.profile.places import ESP32_PINS, pin
from hal.esp32 import CHIPS as ESP32_CHIPS
from firmware.profile.rules import (
    EMPTY, REQUIRED, boolean, choice, duration, find, frequency, given, in_quotes, integer,
    label, list_of, mqtt_text, number, pattern, resolution, section, size, sub, unknown_keys)
from firmware.profile.units import (
    DAY, HOUR, KIB, MINUTE, SECOND, format_duration, parse_decimal, resolution_parts)
from ingest.url import BadURL, parse_broker

TOP_KEYS = ["substitutions", "packages", "device", "platform", "chip", "buses", "sensors",
            "buffer", "batch", "uplink", "wifi", "ignore_pin_warnings"]
PLATFORMS = ["esp32", "rpi", "sim"]

NAME = r"[a-z][a-z0-9_]{0,31}"
UNIT = r"[!-~]{1,16}"
NAME_WHAT = "a name of up to 32 lowercase letters, digits and '_' that starts with a letter"
DEVICE_ID_WHAT = ids.WHAT + ", optionally with '{uid}' (like 'printer-{uid}')"
BUS_ID = r"[A-Za-z_][A-Za-z0-9_]{0,31}"
BUFFER_PATHS = {"esp32": "/buffer", "rpi": "/var/lib/tether/buffer", "sim": "buffer"}
MAX_PEM = 1024 * 1024  # room for a system's whole CA bundle


def known(node, key, table):
    """The text of node's key when it names an entry of table, else None (its rule says why)."""
    value = node.value.get(key)
    if value is None or value.tag != "str" or value.value not in table:
        return None
    return value.value


def platform(ctx, node):
    ctx.platform = choice(PLATFORMS)(ctx, node)
    return ctx.platform


def chip(ctx, node):
    """Which ESP32 (its pins, its buses): only with `platform: esp32`, whose default it is."""
    if ctx.platform is None:    # a platform said wrong: said there
        return None
    if ctx.platform != "esp32":
        raise Invalid("'chip' says which ESP32 a board is: it goes with 'platform: esp32'")
    written = node.value.lower().replace("-", "") if node.tag == "str" else None
    if node.tag != "str" or node.value not in ESP32_CHIPS:
        # Its pins cannot be judged by another chip's rules: five errors followed one typo.
        ctx.chip = None
        # no difflib "did you mean": esp8266 and esp32c5 are other chips, not typos of esp32c6
        hint = ", did you mean '%s'?" % written if written in ESP32_CHIPS else ""
        raise Invalid(expected("one of %s" % ", ".join("'%s'" % c for c in ESP32_CHIPS), node)
                      + hint)
    ctx.chip = node.value
    return ctx.chip


def device_id(ctx, node):
    """The device id rule of agent/ids.py; `{uid}` stands for a part made of letters and digits."""
    if (node.tag != "str" or len(node.value) > ids.MAX_LENGTH
            or not ids.valid(node.value.replace("{uid}", "0"))):
        # `id: {uid}` and `{id: printer-{uid}}` are YAML mappings: its braces need quotes
        hint = " (in quotes: id: 'printer-{uid}')" if node.tag == "map" else ""
        raise Invalid(expected(DEVICE_ID_WHAT, node) + hint)
    return node.value


def utc_offset(ctx, node):
    """'+01:00' -> 60: the local time of schedules and daily reports (agent/insights)."""
    m = re.fullmatch(r"([+-])([0-9][0-9]):([0-5][0-9])", node.value) if node.tag == "str" else None
    minutes = m and int(m.group(2)) * 60 + int(m.group(3))
    if not m or minutes > 14 * 60:
        raise Invalid(expected("an offset from UTC like '+01:00' or '-05:00' (at most 14 h)",
                               node))
    return -minutes if m.group(1) == "-" else minutes


def timezone(ctx, node):
    """'Europe/Berlin' (or a POSIX TZ rule) -> its POSIX TZ rule: the device keeps local time
    through daylight saving changes by it (agent/tz.py)."""
    if node.tag != "str":
        raise Invalid(expected("a time zone like 'Europe/Berlin'", node))
    try:
        return zones.rule_of(node.value)
    except zones.Unknown as exc:
        raise Invalid(expected(str(exc), node))


DEVICE = [
    ("id", "id", device_id, REQUIRED),
    ("model", "model", label, None),
    ("utc_offset", "utc_offset_min", utc_offset, None),
    ("timezone", "tz", timezone, None),
]


def device(ctx, node):
    out = section(ctx, node, DEVICE)
    ctx.device_id = out.get("id")
    ctx.tz = out.get("tz")
    if ctx.tz is not None and node.value.get("utc_offset") is not None:
        where = node.value["utc_offset"]
        ctx.problems.append(at(where, expected(
            "no utc_offset beside a timezone (the zone says the offset, summer's too)", where)))
    if ctx.tz is not None:      # its standard offset, for what reads a fixed one
        out["utc_offset_min"] = agent_tz.parse(ctx.tz)[0] // 60
    ctx.utc_offset_min = out.get("utc_offset_min", 0)
    return out


# On a Raspberry Pi a bus on other pins than the header's (an overlay's extra I2C, a USB serial
# adapter) names its device file with `port`.
PORT = ("port", "port", pattern(r"/dev/[A-Za-z0-9_./-]+", "a device path like '/dev/ttyUSB0'"),
        None)
PIN_KEYS = ("sda", "scl", "tx", "rx")
BUS_FIELDS = {
    "i2c": [
        ("sda", "sda", pin("out"), REQUIRED),
        ("scl", "scl", pin("out"), REQUIRED),
        ("frequency", "frequency", frequency(10_000, 1_000_000), 100_000),
        PORT,
    ],
    "uart": [
        ("tx", "tx", pin("out"), REQUIRED),
        ("rx", "rx", pin("in"), REQUIRED),
        ("baud", "baud", integer(300, 5_000_000, "a baud rate from 300 to 5000000"), 9600),
        PORT,
    ],
}


def bus(ctx, node):
    if node.tag != "map":
        raise Invalid(expected("a mapping", node))
    kind = known(node, "type", BUS_FIELDS)
    fields = [("id", "id", pattern(BUS_ID, "an id of letters, digits and '_'"), REQUIRED),
              ("type", "type", choice(list(BUS_FIELDS)), REQUIRED)] + BUS_FIELDS.get(kind, [])
    if ctx.platform == "rpi" and "port" in node.value:
        # A USB serial adapter has no pins of the Pi's: its device file is where the bus is
        # (made-up pins were asked for all the same).
        fields = [(key, name, rule, None if default is REQUIRED and key in PIN_KEYS else default)
                  for key, name, rule, default in fields]
    return section(ctx, node, fields, strict=kind is not None)


def buses(ctx, node):
    out = list_of(bus)(ctx, node)
    uarts = 0
    for b, n in zip(out, node.value or []):
        if ctx.platform == "esp32" and ctx.chip and b and b.get("type") == "uart":
            uarts += 1
            free = len(ESP32_CHIPS[ctx.chip][1])
            if uarts > free:
                # the board stopped at boot: machine.UART(2) on a chip that has no UART2
                ctx.problems.append(at(n, "an %s has %d free UART%s (UART0 is the REPL): this "
                                       "is uart bus %d" % (ESP32_PINS[ctx.chip].name, free,
                                                           "" if free == 1 else "s", uarts)))
        if b and "id" in b:
            if b["id"] in ctx.buses:
                ctx.problems.append(at(n.value["id"], "duplicate bus id %s (also %s)"
                                       % (shown(n.value["id"]), ctx.buses[b["id"]][1])))
            else:
                ctx.buses[b["id"]] = (b.get("type"), n.path)
            if ctx.platform == "esp32" and "port" in n.value:
                # compiled and never read: the board's bus is its pins, whatever the file says
                ctx.problems.append(at(n.value["port"], "a port is a Linux device file (a "
                                       "Raspberry Pi's); an ESP32's bus is its pins: remove it"))
            if (ctx.platform == "rpi" and b.get("type") in BUS_FIELDS
                    and "port" not in n.value       # a port given (even a bad one) decides
                    and all(b.get(key) is not None  # a bad pin is said once, as itself
                            for key, _, _, _ in BUS_FIELDS[b["type"]][:2])):
                # The device file of a bus on the header's pins, or its `port`: what `tether
                # read` and `install-service` open and allow (a bus on GPIO 21/22 passed the
                # check, and both then refused it).
                from hal.linux.platform import device_file
                try:
                    device_file(b)
                except ValueError as exc:
                    ctx.problems.append(at(n, str(exc)))
    return out


def _a(word):
    return ("an " if word[:1] in "aeiou" else "a ") + str(word)


def median(ctx, node):
    if node.tag != "int" or node.value not in range(3, 16, 2):
        raise Invalid(expected("an odd window size from 3 to 15", node) + in_quotes(node))
    return node.value


FILTERS = [
    ("median", "median", median, None),
    ("deadband", "deadband", number(at_least=0), None),
    ("min", "min", number(), None),
    ("max", "max", number(), None),
]


def filters(ctx, node):
    if node.tag == "seq":  # ESPHome's form: a list of one-key mappings
        raise Invalid(expected("a mapping", node) + " (ESPHome's list of filters is one "
                      "mapping here, like filters: {median: 5, deadband: 2})")
    out = section(ctx, node, FILTERS)
    if "min" in out and "max" in out and out["min"] >= out["max"]:
        ctx.problems.append(at(node.value["max"], expected(
            "a number above min (%s)" % shown(node.value["min"]), node.value["max"])))
    return out


THRESHOLD = [
    ("event", "event", pattern(NAME, NAME_WHAT.replace("a name", "an event name", 1), True),
     REQUIRED),
    ("below", "below", number(), None),
    ("above", "above", number(), None),
    ("hysteresis", "hysteresis", number(at_least=0), 0),
    # someone must act while it stands: the console's "Actions needed" (docs/console.md)
    ("alarm", "alarm", boolean, None),
]


def threshold(ctx, node):
    out = section(ctx, node, THRESHOLD)
    if given(node, "below") == given(node, "above"):
        ctx.problems.append(at(node, "expected exactly one of 'below' or 'above'"))
    if out.get("alarm") is False:   # the compiled form says only an alarm
        del out["alarm"]
    return out


def insight(ctx, node):
    if node.tag != "map":
        raise Invalid(expected("a mapping with a 'type' (%s)" % ", ".join(INSIGHTS), node))
    kind = known(node, "type", INSIGHTS)
    fields = [("type", "type", choice(list(INSIGHTS)), REQUIRED)]
    if kind is not None:
        fields += INSIGHTS[kind]["fields"]
    out = section(ctx, node, fields, strict=kind is not None)
    if kind is not None:
        out["utc_offset_min"] = ctx.utc_offset_min
        if ctx.tz is not None:
            out["tz"] = ctx.tz
        if INSIGHTS[kind]["check"] is not None:
            INSIGHTS[kind]["check"](ctx, node, out)
    return out


def sensor_fields(driver):
    fields = [
        ("name", "name", pattern(NAME, NAME_WHAT, True), REQUIRED),
        ("driver", "driver", choice(list(DRIVERS)), REQUIRED),
        ("interval", "interval_ms", duration(100, DAY), MINUTE),
        # Short enough that one reading always fits a batch (a 6000-character unit stopped the
        # agent: no batch could hold it), as SenML's units are (RFC 8428: 'W', '%RH', 'm/s2').
        ("unit", "unit", pattern(UNIT, "a unit of 1 to 16 ASCII letters, digits or "
                                 "symbols without spaces, like 'W', '%RH' or 'ug/m3'"), None),
        ("resolution", "resolution", resolution, None),
        ("filters", "filters", filters, EMPTY),
        ("thresholds", "thresholds", list_of(threshold), []),
        ("insight", "insight", insight, None),
    ]
    if driver in DRIVERS:
        quantities = list(DRIVERS[driver]["quantities"])
        fields += [("quantity", "quantity", choice(quantities), quantities[0]),
                   ("calibration", "calibration", sub(DRIVERS[driver]["calibration"]), EMPTY)]
        fields += DRIVERS[driver]["fields"]
    return fields


ANY_SENSOR_KEYS = list(dict.fromkeys(
    key for d in [None] + list(DRIVERS) for key, _, _, _ in sensor_fields(d)))


def sensor(ctx, node):
    if node.tag != "map":
        raise Invalid(expected("a mapping", node))
    driver = known(node, "driver", DRIVERS)
    # Without a known driver there is no table of its keys: check the common ones only, and
    # say the keys no driver has (ESPHome's `platform:` and `id:` where `driver:` is missing).
    out = section(ctx, node, sensor_fields(driver), strict=driver is not None)
    if driver is None:
        unknown_keys(ctx, node, ANY_SENSOR_KEYS)
        return out
    unit, res = DRIVERS[driver]["quantities"].get(out.get("quantity"), (None, None))
    if unit is not None:
        if out.get("quantity") not in DRIVERS[driver]["scaled"] and \
                other_scale(out.get("unit"), unit):
            ctx.problems.append(at(node.value["unit"], (
                "%s reports %s in %s: the label %r would not convert its values (leave unit "
                "out, or write %s)" % (driver, out["quantity"], unit, out["unit"], unit))))
        out.setdefault("unit", unit)
        out.setdefault("resolution", resolution_parts(parse_decimal(res)))
    check = DRIVERS[driver]["check"]
    if check is not None:
        check(ctx, node, out)
    kind = out.get("insight", {}).get("type")
    # (a quantity in error, None, was told already)
    if kind in INSIGHTS and out.get("quantity") not in INSIGHTS[kind]["quantities"] + (None,):
        ctx.problems.append(at(node.value["insight"].value["type"], "%s insight reads %s, not "
                               "%s" % (_a(kind), " or ".join(_a(q) for q in
                                                             INSIGHTS[kind]["quantities"]),
                                       _a(out.get("quantity")))))
    most = INSIGHTS[kind]["max_interval_ms"] if kind in INSIGHTS else None
    why = "its %s insight counts readings further apart as an outage" % kind
    if kind in INSIGHTS and INSIGHTS[kind]["max_interval"] is not None and "insight" in out:
        most, why = INSIGHTS[kind]["max_interval"](out["insight"])
    if most is not None and out.get("interval_ms", 0) > most:
        ctx.problems.append(at(node.value["interval"], expected(
            "an interval of at most %s: %s" % (format_duration(most), why),
            node.value["interval"])))
    taken_events(ctx, node, out, kind)
    unreachable(ctx, node, out)
    return out


_PREFIXES = ("k", "m", "g", "u", "c")
_NOT_CELSIUS = ("f", "degf", "k", "fahrenheit", "kelvin")


def other_scale(label, unit):
    """Whether the label names another scale of the unit a driver reports in: kWh or MWh for
    Wh, mA for A, V for mV, F for Cel. Another spelling of the same (degC, wh) is a label."""
    if label is None:
        return False
    a, b = label.lower(), unit.lower()
    if a == b:
        return False
    if b == "cel":
        return a in _NOT_CELSIUS

    def bases(u):
        return [u] + [u[len(p):] for p in _PREFIXES if u.startswith(p) and len(u) > len(p)]
    return any(x == y for x in bases(a) for y in bases(b))


def unreachable(ctx, node, out):
    """A threshold past the sensor's own plausibility range never fires: the readings it waits
    for are dropped before it sees them."""
    f = out.get("filters") or {}
    if "min" in f and "max" in f and f["min"] >= f["max"]:
        return          # said at filters.max
    nodes = node.value["thresholds"].value if given(node, "thresholds") and (
        node.value["thresholds"].tag == "seq") else []
    for th, n in zip(out.get("thresholds", []), nodes):
        if not th or ("below" in th) == ("above" in th):    # said at the threshold
            continue
        if "below" in th and "min" in f and th["below"] <= f["min"]:
            ctx.problems.append(at(n.value["below"], "below %s never fires: readings under "
                                   "filters.min (%s) are dropped" % (shown(n.value["below"]),
                                                                     f["min"])))
        if "above" in th and "max" in f and th["above"] >= f["max"]:
            ctx.problems.append(at(n.value["above"], "above %s never fires: readings over "
                                   "filters.max (%s) are dropped" % (shown(n.value["above"]),
                                                                     f["max"])))


def taken_events(ctx, node, out, kind):
    """A threshold's event may not be named as the agent's own events of the sensor (a
    `sensor_error` threshold read as the sensor failing) nor its insight's."""
    from agent.insights import module
    taken = {"sensor_error": "the sampler's, when the sensor fails",
             "uncertain_" + str(out.get("quantity")): "the sampler's, for unsure readings"}
    if kind in INSIGHTS:
        for event in module(kind).EVENTS:
            taken[event] = "its %s insight's" % kind
    for th, n in zip(out.get("thresholds", []), find(node, "thresholds").value
                     if given(node, "thresholds") and node.value["thresholds"].tag == "seq"
                     else []):
        side = th and (th.get("event"), "below" if "below" in th else "above")
        if th and (th.get("event") in taken or side in taken):
            ctx.problems.append(at(n.value["event"], "event %s is taken: %s; name the threshold's "
                                   "event otherwise" % (shown(n.value["event"]),
                                                        taken.get(th["event"]) or taken[side])))
        elif th and "event" in th:
            # two on one side raising and clearing one event: the cloud cannot tell which
            # crossed (one below and one above, a band's two ends, are one alarm: fine)
            side = "below" if "below" in th else "above"
            taken[(th["event"], side)] = "%s raises it too, %s its level" % (n.path, side)


def sensors(ctx, node):
    # at most MAX_CHANNELS: a reading's channel is a byte in the buffer and the batch encoder
    out = list_of(sensor, 1, "a list of at least one sensor", MAX_CHANNELS)(ctx, node)
    first = {}
    for s, n in zip(out, node.value):
        if s and "name" in s:
            if s["name"] in first:
                ctx.problems.append(at(n.value["name"], "duplicate sensor name %s (also %s)"
                                       % (shown(n.value["name"]), first[s["name"]])))
            first.setdefault(s["name"], n.path)
    return out


BUFFER = [
    ("storage", "storage", choice(["flash", "ram"]), "flash"),
    # no control characters: a NUL passed the check and `tether run` said only
    # "embedded null byte"
    ("path", "path", pattern(r"[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?",
                             "a folder path"), None),
    ("max_bytes", "max_bytes", size(16 * KIB, 1024 * KIB * KIB), 256 * KIB),
    ("ram_readings", "ram_readings", integer(1, 100_000), 32),
    ("flush_every", "flush_ms", duration(100, DAY), MINUTE),
]


def buffer(ctx, node):
    out = section(ctx, node, BUFFER)
    if "path" not in out and ctx.platform in BUFFER_PATHS:
        out["path"] = BUFFER_PATHS[ctx.platform]
    return out


BATCH = [
    ("max_readings", "max_readings", integer(1, MAX_READINGS), 420),
    ("max_bytes", "max_bytes", size(256, 64 * KIB), 8 * KIB),
    ("max_age", "max_age_ms", duration(SECOND, DAY), 10 * MINUTE),
]


def batch(ctx, node):
    return section(ctx, node, BATCH)


def broker(ctx, node):
    """A broker URL by the one grammar (ingest/url.py), without credentials: a profile names them
    in 'username' and 'password', where !secret keeps them out of what is shared."""
    try:
        url = parse_broker(node.value) if node.tag == "str" else None
    except BadURL:
        url = None
    if url is None or url.username is not None:
        hint = ("; put credentials in 'username' and 'password'"
                if node.tag == "str" and "@" in node.value else "")
        raise Invalid(expected("a broker URL like 'mqtt://host:1883' or 'mqtts://host:8883'",
                               node) + hint)
    return {"host": url.host, "port": url.port, "tls": url.tls}


def pem_file(ctx, node):
    """The text of a PEM file, found relative to the YAML file that names it."""
    if node.tag != "str":
        raise Invalid(expected("a file path", node))
    path = os.path.join(os.path.dirname(node.file), node.value)
    reason = None
    try:
        content = bounded.read(path, MAX_PEM, "a PEM file").decode("ascii")
    except OSError as exc:
        reason = exc.strerror
    except bounded.TooLarge as exc:
        reason = str(exc)
    except UnicodeDecodeError:
        reason = "not a PEM file"
    if reason:
        raise Invalid("cannot read %s: %s" % (shown(node) if node.secret else "'%s'" % path,
                                             reason))
    if "-----BEGIN " not in content:
        raise Invalid(expected("a PEM file (text with '-----BEGIN ...')", node))
    return content


MAX_PREFIX = 128
PREFIX_LEVELS = 5


def topic_prefix(ctx, node):
    p = node.value if node.tag == "str" else ""
    if (not p or p[0] in "/$" or p.endswith("/") or "//" in p
            or any(c in "+#\0" or c.isspace() for c in p)):
        raise Invalid(expected("a topic prefix like 'tether/v1' (no '+', '#' or spaces, no '/' at "
                               "either end, no '$' at the start)", node))
    if len(p.encode("utf-8")) > MAX_PREFIX or p.count("/") >= PREFIX_LEVELS:
        # The longest topic, PREFIX/ID/down/cmd, then fits AWS IoT Core's 256 bytes and 7
        # slashes, and leaves a command room in the board's 2 KiB packet: a 3,000-byte prefix
        # passed the check and no command could ever reach the board.
        raise Invalid(expected("a topic prefix of at most %d bytes and %d levels"
                               % (MAX_PREFIX, PREFIX_LEVELS), node))
    return p


def written(node, key, out):
    """A backoff bound as the user wrote it, or the default it took."""
    if given(node, key):
        return shown(node.value[key])
    return format_duration(out["backoff_%s_ms" % key])


BACKOFF = [
    ("min", "backoff_min_ms", duration(100, HOUR), SECOND),
    ("max", "backoff_max_ms", duration(SECOND, DAY), 5 * MINUTE),
]


def backoff(ctx, node):
    out = section(ctx, node, BACKOFF, out_path="uplink")
    if out.get("backoff_min_ms", 0) > out.get("backoff_max_ms", DAY):
        ctx.problems.append(at(find(node, "max") if given(node, "max") else find(node, "min"),
                               "expected min <= max, got min %s and max %s"
                               % (written(node, "min", out), written(node, "max", out))))
    return out


# uplink.ack_timeout's default; also what a profile compiled before the key runs with
ACK_TIMEOUT_MS = 30 * SECOND


UPLINK = [
    ("broker", None, broker, REQUIRED),
    ("client_id", "client_id", device_id, None),
    ("username", "username", mqtt_text, None),
    ("password", "password", mqtt_text, None),
    ("ca", "ca", pem_file, None),
    ("cert", "cert", pem_file, None),
    ("key", "key", pem_file, None),
    ("topic_prefix", "prefix", topic_prefix, "tether/v1"),
    ("encoding", "encoding", choice(["compact", "senml"]), "compact"),
    ("deflate", "deflate", boolean, False),
    ("keepalive", "keepalive_ms", duration(5 * SECOND, HOUR, whole_seconds=True), MINUTE),
    # no PUBACK for this long: the connection is made again (a broker that accepts and never
    # acknowledges); longer than a batch takes to send on the slowest link
    ("ack_timeout", "ack_timeout_ms", duration(5 * SECOND, HOUR), ACK_TIMEOUT_MS),
    ("backoff", None, backoff, EMPTY),
    ("health_every", "health_ms", duration(10 * SECOND, DAY), 5 * MINUTE),
    ("window", "window", integer(1, 64, "a number of batches in flight from 1 to 64"), 4),
]


def uplink(ctx, node):
    out = section(ctx, node, UPLINK)
    if not given(node, "client_id") and ctx.device_id is not None:
        out["client_id"] = ctx.device_id
        if "device.id" in ctx.secrets:
            ctx.secrets.add("uplink.client_id")
    for key in ("ca", "cert", "key"):
        if given(node, key) and out.get("tls") is False:
            ctx.problems.append(at(node.value[key], "TLS files need an mqtts:// broker"))
    if given(node, "cert") != given(node, "key"):
        present, missing = ("cert", "key") if given(node, "cert") else ("key", "cert")
        ctx.problems.append(at(node.value[present],
                               "'cert' and 'key' go together: '%s' is missing" % missing))
    if given(node, "password") and not given(node, "username"):
        ctx.problems.append(at(node.value["password"], "a password needs a username"))
    tls_files_parse(ctx, node, out)
    return out


def tls_files_parse(ctx, node, out):
    """A CA, certificate or key that is PEM on the outside but that OpenSSL cannot load would
    only show at the first connection, as a traceback: it is a problem of the profile."""
    import ssl

    def where(key):
        n = node.value[key]
        return shown(n) if n.secret else "'%s'" % os.path.join(os.path.dirname(n.file), n.value)

    def reason(exc):
        text = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else str(exc)
        return re.sub(r"^\[[^]]*\] | \(_ssl\.c:\d+\)$", "", text)

    if isinstance(out.get("ca"), str):
        try:
            ssl.create_default_context(cadata=out["ca"])
        except (ssl.SSLError, ValueError) as exc:
            ctx.problems.append(at(node.value["ca"], "%s holds no CA certificate OpenSSL can "
                                   "load (%s)" % (where("ca"), reason(exc))))
    if isinstance(out.get("cert"), str) and isinstance(out.get("key"), str):
        try:
            # From the files themselves (CPython loads a chain only from files); an encrypted
            # key is refused, not prompted for: the agent has no one to ask.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                os.path.join(os.path.dirname(node.value["cert"].file), node.value["cert"].value),
                os.path.join(os.path.dirname(node.value["key"].file), node.value["key"].value),
                password=lambda: b"")
        except (ssl.SSLError, ValueError, OSError) as exc:
            ctx.problems.append(at(node.value["cert"], "%s and %s are not a certificate and "
                                   "its private key that OpenSSL can load (%s)"
                                   % (where("cert"), where("key"), reason(exc))))


def wifi_ssid(ctx, node):
    if node.tag not in ("str", "int") or not 1 <= len(node.text.encode()) <= 32:
        raise Invalid(expected("a network name (SSID) of 1 to 32 bytes", node))
    return node.text


def wifi_password(ctx, node):
    p = node.text if node.tag in ("str", "int") else ""
    if not (8 <= len(p.encode()) <= 63
            or len(p) == 64 and all(c in "0123456789abcdefABCDEF" for c in p)):
        raise Invalid(expected("a WPA passphrase of 8 to 63 characters or 64 hex digits "
                               "(leave 'password' out for an open network)", node))
    return p


# An NTP server: a DNS name or an IPv4 address, as ntptime's `host` takes it (no port: NTP is 123).
ntp_server = pattern(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*",
                     "an NTP server's host name or IPv4 address, like 'pool.ntp.org'")


WIFI = [
    ("ssid", "ssid", wifi_ssid, REQUIRED),
    ("password", "password", wifi_password, None),
    # Networks that block the public pool (a factory's, a hospital's) have their own servers.
    ("ntp", "ntp", list_of(ntp_server, 1, "a list of NTP servers, 1 to 3", 3), None),
]


def wifi(ctx, node):
    """The access point a board joins (firmware/board.py); a Pi uses the system's network."""
    return section(ctx, node, WIFI, out_path="wifi")


TOP_FIELDS = [  # in this order: later parts depend on the platform, the device id, the buses
    ("platform", "platform", platform, REQUIRED),
    ("chip", "chip", chip, None),
    ("device", "device", device, REQUIRED),
    ("buses", "buses", buses, []),
    ("sensors", "sensors", sensors, REQUIRED),
    ("buffer", "buffer", buffer, EMPTY),
    ("batch", "batch", batch, EMPTY),
    ("uplink", "uplink", uplink, REQUIRED),
    ("wifi", "wifi", wifi, None),
]


# Keys whose name means another thing in another section (a broker's port is in its URL, an
# insight's window is no uplink's): told as unknown where they are, with no home.
SAME_WORD = ("id", "type", "name", "port", "window", "path", "learn", "batch", "empty")


def homes():
    """{key: where it goes ("'device:'", "a uart bus", ...)} for the keys of every section: a
    key written in the wrong one (`utc_offset` in an insight, `interval` at the top, `baud` on an
    i2c bus) is told where it goes (rules.unknown_keys). A key known where it is is never
    unknown, so no place is told its own."""
    places = [("'device:'", DEVICE), ("'wifi:'", WIFI), ("'uplink:'", UPLINK),
              ("'uplink:' under 'backoff:'", BACKOFF), ("'batch:'", BATCH),
              ("'buffer:'", BUFFER), ("a sensor", sensor_fields(None)),
              ("a sensor's 'filters:'", FILTERS), ("a sensor's 'thresholds:'", THRESHOLD),
              ("an i2c bus", BUS_FIELDS["i2c"]), ("a uart bus", BUS_FIELDS["uart"]),
              ("the top level", [(k, None, None, None) for k in TOP_KEYS])]
    places += [("an insight of type %s" % kind, entry["fields"])
               for kind, entry in INSIGHTS.items()]
    # `shunt_ohms: 0.1` written on the sensor itself (a key a driver also has there, as the
    # HX711's gain, is known in a sensor and never told this)
    places += [("a sensor's 'calibration:' (%s)" % name, entry["calibration"])
               for name, entry in DRIVERS.items() if entry["calibration"]]
    found = {}
    for where, fields in places:
        for key, _, _, _ in fields:
            if key not in SAME_WORD and where not in found.setdefault(key, []):
                found[key].append(where)
    return {key: " or ".join(where) for key, where in found.items() if where}


def compile_root(root):
    """(compiled dict, problems, compiled paths of values from secrets, warnings) for a loaded
    profile; warnings are problems that do not stop it (a strapping pin in use)."""
    ctx = SimpleNamespace(problems=[], secrets=set(), platform=None, chip="esp32", buses={},
                          device_id=None, utc_offset_min=0, tz=None, notes=[], homes=homes())
    if root.tag == "map" and "devices" in root.value and "sensors" not in root.value:
        # examples/fleets/*.yaml: five missing keys and a "did you mean 'device'" said less
        return {}, [at(root, "a fleet file (its 'devices' list names profiles), not a profile: "
                             "run it with tether simulate --fleet FILE")], [], []
    if root.tag == "map":
        # Hidden keys (`.probe: &probe {...}`, as openHAB's YAML has them): a place for anchors
        # that the profile's own keys merge or alias; nothing else reads them.
        for key in [k for k in root.value if isinstance(k, str) and k.startswith(".")]:
            del root.value[key], root.keys[key]
    unknown_keys(ctx, root, TOP_KEYS)
    out = section(ctx, root, TOP_FIELDS, strict=False)
    if out.get("platform") == "esp32":
        out.setdefault("chip", "esp32")
    out["v"] = FORMAT
    crosscheck.check(ctx, root, out)
    if ctx.platform == "esp32":
        esp32_needs(ctx, root, out)
    return out, ctx.problems, sorted(ctx.secrets), ignore_pin_warnings(ctx, root)


def ignore_pin_warnings(ctx, root):
    """The warnings left once those of the GPIOs the maker has read are dropped (a product whose
    console is not needed once it ships, a strapping pin its circuit keeps right), as ESPHome's
    `ignore_strapping_warning`. Only the check reads the list: the board has nothing to do with
    it. A GPIO in it with nothing to ignore is a warning itself: a typo (21 for 12) or a pin
    no longer used would leave the real one said, or hide it once it comes back."""
    node = root.value.get("ignore_pin_warnings") if root.tag == "map" else None
    warned = set(gpio for gpio, _ in ctx.notes)
    if node is None:
        return [note for _, note in ctx.notes]
    if ctx.platform != "esp32":
        if ctx.platform is not None:
            ctx.problems.append(at(node, "'ignore_pin_warnings' goes with 'platform: esp32', "
                                         "whose pins are warned of"))
        return []
    p = ESP32_PINS.get(ctx.chip)

    def gpio(ctx, item):
        # 99 too is said with the chip's numbers, not as "a GPIO number"
        if p is not None and item.tag == "int" and item.value not in p.gpios:
            raise Invalid(expected("an %s GPIO number (%s)" % (p.name, p.gpios_text), item))
        return integer(0, 63, "a GPIO number")(ctx, item)

    try:
        ignored = list_of(gpio, 0, "a list of GPIO numbers")(ctx, node)
    except Invalid as exc:
        ctx.problems.append(at(node, str(exc)))
        return []
    for item, n in zip(node.value if node.tag == "seq" else (), ignored):
        if n is not None and n not in warned and p is not None:
            ctx.notes.append((None, at(item, "warning: GPIO%d is not a pin this profile is "
                                             "warned of: nothing to ignore" % n)))
    return [note for gpio_n, note in ctx.notes if gpio_n is None or gpio_n not in ignored]


def esp32_needs(ctx, root, out):
    """What a board cannot do without (`tether check` passed a profile whose board could never
    connect). A missing `wifi:` is only for `tether build` to refuse: check's summary says so."""
    u = out.get("uplink")
    node = root.value.get("uplink") if root.tag == "map" else None
    if isinstance(u, dict) and u.get("tls") and "ca" not in u and node is not None and (
            node.tag == "map" and "ca" not in node.value):
        ctx.problems.append(at(node.value.get("broker", node), "an ESP32 has no certificate "
                               "store: an mqtts:// broker needs 'ca', the PEM file of the CA "
                               "that signed the broker's certificate"))
