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
        if not isinstance(s, dict) or s.get("driver") not in DRIVERS:
            out.append("%s: expected a sensor with a driver (%s), got %s"
                       % (where, ", ".join(DRIVERS), _shown(s)))
            continue
        _fields(schema.sensor_fields(s["driver"]), s, where, out)
        r = s.get("resolution")
        if r is not None and not (isinstance(r, list) and len(r) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) for x in r) and r[0] > 0):
            out.append("%s.resolution: expected [mantissa above 0, exponent], got %s"
                       % (where, _shown(r)))
    return out
