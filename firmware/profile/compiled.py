"""A compiled profile (`.json`) checked by the rules its YAML was checked by, for `tether run` of
a file edited by hand or written by something else: an interval of 0 flooded the broker, a
resolution of 0 stopped the agent with a ZeroDivisionError (exit 1, which a service restarts
for ever). Its numbers and choices only: what the agent loops, divides and allocates by.
HOST-ONLY (CPython)."""
import json

from agent.profile import FORMAT
from agent.schema import MAX_CHANNELS
from firmware.profile import schema
from firmware.profile.chips import DRIVERS
from firmware.profile.insights import INSIGHTS
from firmware.profile.rules import boolean


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
        elif options is not None and v not in options:
            out.append("%s: expected one of %s, got %s"
                       % (where, ", ".join(json.dumps(o) for o in options), _shown(v)))
        elif rule is boolean and not isinstance(v, bool):
            out.append("%s: expected true or false, got %s" % (where, _shown(v)))


def problems(profile):
    """['key.path: expected ..., got ...'] for a compiled profile whose sections are there
    (firmware/run.py checks that first); [] when it is as `tether compile` writes it."""
    out = []
    if profile.get("v") != FORMAT:
        out.append("v: expected %d (the compiled format of this Tether), got %s"
                   % (FORMAT, _shown(profile.get("v"))))
    for name, fields in (("batch", schema.BATCH), ("buffer", schema.BUFFER),
                         ("uplink", schema.UPLINK + schema.BACKOFF)):
        _fields(fields, profile[name], name, out)
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
        r = s.get("resolution")
        if r is not None and not (isinstance(r, list) and len(r) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in r) and r[0] > 0):
            out.append("%s.resolution: expected [mantissa above 0, exponent], got %s"
                       % (where, _shown(r)))
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
            ok = (isinstance(f[key], int) and not isinstance(f[key], bool) and f[key] >= 3
                  and f[key] % 2 == 1) if key == "median" else _number(f[key])
            if not ok:
                out.append("%s.filters.%s: expected %s, got %s" % (
                    where, key, "an odd window of 3 or more" if key == "median" else "a number",
                    _shown(f[key])))
    ths = s.get("thresholds", [])
    if not isinstance(ths, list):
        out.append("%s.thresholds: expected a list, got %s" % (where, _shown(ths)))
        ths = []
    for j, th in enumerate(ths):
        at = "%s.thresholds[%d]" % (where, j)
        sides = [k for k in ("below", "above") if isinstance(th, dict) and k in th]
        if not isinstance(th, dict) or not isinstance(th.get("event"), str) or len(sides) != 1 \
                or not _number(th[sides[0]]) or not _number(th.get("hysteresis", 0)) \
                or th.get("hysteresis", 0) < 0:
            out.append("%s: expected {event, below or above: a number, hysteresis: 0 or more}, "
                       "got %s" % (at, _shown(th)))
    ins = s.get("insight")
    if ins is not None and not (isinstance(ins, dict) and isinstance(ins.get("type"), str)
                                and ins["type"] in INSIGHTS):
        out.append("%s.insight: expected an insight of a type %s, got %s"
                   % (where, " or ".join(sorted(INSIGHTS)), _shown(ins)))
