"""A compiled profile (`.json`) checked by the rules its YAML was checked by, for `tether run` of
a file edited by hand or written by something else: an interval of 0 flooded the broker, a
resolution of 0 stopped the agent with a ZeroDivisionError (exit 1, which a service restarts
for ever). Its numbers and choices (what the agent loops, divides and allocates by), names and
ids; not its buses, pins or the insights' own settings. HOST-ONLY (CPython)."""
import json
import re

from agent import ids
from agent.profile import FORMAT
from agent.schema import MAX_CHANNELS
from firmware.profile import schema
from firmware.profile.chips import DRIVERS
from firmware.profile.insights import INSIGHTS
from firmware.profile.rules import EMPTY, MAX_DIGITS, REQUIRED, boolean
from hal.esp32 import CHIPS as ESP32_CHIPS

FILTERS = [f[1] for f in schema.FILTERS]
# the sections whose fields the schema's tables give, with their defaults
SECTIONS = (("batch", schema.BATCH), ("buffer", schema.BUFFER),
            ("uplink", schema.UPLINK + schema.BACKOFF))


def _shown(v):
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _fields(fields, values, path, out):
    for _key, name, rule, _default in fields:
        if name is None or name not in values:
            continue
        v = values[name]
        where = "%s.%s" % (path, name)
        bounds = getattr(rule, "bounds", None)
        options = getattr(rule, "options", None)
        if bounds is not None and (isinstance(v, bool) or not isinstance(v, int)
                                   or not bounds[0] <= v <= bounds[1]):
            out.append("%s: expected a whole number from %d to %d, got %s"
                       % (where, bounds[0], bounds[1], _shown(v)))
        elif options is not None and (v not in options or isinstance(v, bool) and not any(
                isinstance(o, bool) for o in options)):     # true == 1 is no option 1
            out.append("%s: expected one of %s, got %s"
                       % (where, ", ".join(json.dumps(o) for o in options), _shown(v)))
        elif rule is boolean and not isinstance(v, bool):
            out.append("%s: expected true or false, got %s" % (where, _shown(v)))


def _fill(fields, values):
    for _key, key, _rule, default in fields:
        if key is not None and key not in values and default is not None \
                and default is not REQUIRED and default is not EMPTY:
            values[key] = list(default) if isinstance(default, list) else default


def fill_defaults(profile):
    """Gives the keys a compiled profile lacks the defaults their YAML would have given: the
    batch, buffer and uplink keys, and each sensor's chip keys, calibration and insight
    settings (a service's /etc/tether/DEVICE.json compiled by an older Tether, before
    uplink.window or ack_timeout: every start stopped with a KeyError once Tether was upgraded,
    and the unit does not restart an exit 2). Keys without a default stay missing, and what is
    not as `tether compile` writes it is left for problems() to say."""
    for name, fields in SECTIONS:
        _fill(fields, profile[name])
    for s in profile["sensors"]:
        driver = s.get("driver") if isinstance(s, dict) else None
        chip = DRIVERS.get(driver) if isinstance(driver, str) else None
        if chip is None:
            continue
        _fill(chip["fields"], s)
        if isinstance(s.setdefault("calibration", {}), dict):
            _fill(chip["calibration"], s["calibration"])
        ins = s.get("insight")
        kind = ins.get("type") if isinstance(ins, dict) else None
        if isinstance(kind, str) and kind in INSIGHTS:
            _fill(INSIGHTS[kind]["fields"], ins)


def problems(profile):
    """['key.path: expected ..., got ...'] for a compiled profile whose sections are there
    (firmware/run.py checks that first); [] when it is as `tether compile` writes it."""
    out = []
    if profile.get("v") != FORMAT:
        out.append("v: expected %d (the compiled format of this Tether), got %s"
                   % (FORMAT, _shown(profile.get("v"))))
    for name, fields in SECTIONS:
        _fields(fields, profile[name], name, out)
    device = profile["device"]
    for where, value in (("device.id", device.get("id")),
                         ("uplink.client_id", profile["uplink"].get("client_id", device.get("id")))):
        # '/', '+' and '#' in a topic level: a device that publishes where no ingest listens
        if not (isinstance(value, str) and ids.valid(value.replace("{uid}", "0"))):
            out.append("%s: expected %s, got %s" % (where, schema.DEVICE_ID_WHAT, _shown(value)))
    chip = profile.get("chip", "esp32")
    if profile["platform"] == "esp32" and not (isinstance(chip, str) and chip in ESP32_CHIPS):
        out.append("chip: expected one of %s, got %s" % (", ".join(ESP32_CHIPS),
                                                          _shown(profile.get("chip"))))
    names = {}
    sensors = profile["sensors"]
    if not 1 <= len(sensors) <= MAX_CHANNELS:
        out.append("sensors: expected 1 to %d sensors, got %d" % (MAX_CHANNELS, len(sensors)))
    for i, s in enumerate(sensors):
        where = "sensors[%d]" % i
        if not isinstance(s, dict) or not isinstance(s.get("driver"), str) or (
                s["driver"] not in DRIVERS):
            out.append("%s: expected a sensor with a driver (%s), got %s"
                       % (where, ", ".join(DRIVERS), _shown(s)))
            continue
        _fields(schema.sensor_fields(s["driver"]), s, where, out)
        if isinstance(s.get("calibration"), dict):
            _fields(DRIVERS[s["driver"]]["calibration"], s["calibration"], where + ".calibration",
                    out)
        r = s.get("resolution")
        if r is not None and not (isinstance(r, list) and len(r) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in r)
                and 0 < r[0] < 10 ** 19
                and -MAX_DIGITS <= r[1] + len(str(r[0])) - 1 < MAX_DIGITS):
            # an exponent of -400 stopped the agent: "int too large to convert to float"; the
            # YAML's bound is the value's size (1.5e-30 is [15, -31])
            out.append("%s.resolution: expected [mantissa from 1 to 10^19, exponent] of a size "
                       "from 1e-%d to 1e%d, got %s" % (where, MAX_DIGITS, MAX_DIGITS, _shown(r)))
        if not (isinstance(s.get("name"), str) and re.fullmatch(schema.NAME, s["name"])):
            out.append("%s.name: expected %s, got %s" % (where, schema.NAME_WHAT,
                                                          _shown(s.get("name"))))
        elif s["name"] in names:
            out.append("%s.name: %s is also %s's" % (where, _shown(s["name"]), names[s["name"]]))
        else:
            names[s["name"]] = where
        if not (isinstance(s.get("unit"), str) and re.fullmatch(schema.UNIT, s["unit"])):
            out.append("%s.unit: expected 1 to 16 ASCII letters, digits or symbols, got %s"
                       % (where, _shown(s.get("unit"))))
        _judged(s, where, out)
    return out


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _judged(s, where, out):
    """A sensor's filters, thresholds and insight type: what the sampler compares readings
    with (an `above` of "x" stopped the agent at its first reading)."""
    f = s.get("filters", {})
    if not isinstance(f, dict):
        out.append("%s.filters: expected a map, got %s" % (where, _shown(f)))
    else:
        for key in f:
            if key not in FILTERS:
                out.append("%s.filters: unknown key %s (known: %s)"
                           % (where, _shown(key), ", ".join(FILTERS)))
                continue
            ok = (isinstance(f[key], int) and not isinstance(f[key], bool)
                  and f[key] in range(3, 16, 2)) if key == "median" else _number(f[key])
            if not ok:
                out.append("%s.filters.%s: expected %s, got %s" % (
                    where, key, "an odd window from 3 to 15" if key == "median" else "a number",
                    _shown(f[key])))
        if _number(f.get("min")) and _number(f.get("max")) and f["min"] >= f["max"]:
            # every reading dropped
            out.append("%s.filters: expected min below max, got min %s and max %s"
                       % (where, _shown(f["min"]), _shown(f["max"])))
    ths = s.get("thresholds", [])
    if not isinstance(ths, list):
        out.append("%s.thresholds: expected a list, got %s" % (where, _shown(ths)))
        ths = []
    for j, th in enumerate(ths):
        at = "%s.thresholds[%d]" % (where, j)
        sides = [k for k in ("below", "above") if isinstance(th, dict) and k in th]
        if not isinstance(th, dict) or not isinstance(th.get("event"), str) or len(sides) != 1 \
                or not _number(th[sides[0]]) or not _number(th.get("hysteresis", 0)) \
                or th.get("hysteresis", 0) < 0 or th.get("alarm", True) is not True:
            out.append("%s: expected {event, below or above: a number, hysteresis: 0 or more, "
                       "alarm: true or left out}, got %s" % (at, _shown(th)))
    ins = s.get("insight")
    if ins is not None and not (isinstance(ins, dict) and isinstance(ins.get("type"), str)
                                and ins["type"] in INSIGHTS):
        out.append("%s.insight: expected an insight of a type %s, got %s"
                   % (where, " or ".join(sorted(INSIGHTS)), _shown(ins)))
