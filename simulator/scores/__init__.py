"""Every insight scored against the models' truth (issue scores, docs/insights.md), one module per
area: consumables.py (ink: reorder in time, no false reorders, the forecast, swaps), doses.py
(pill bottles: missed and taken doses), motors.py (washers and fridges: cycles, maintenance
due before failure, false alarms). HOST-ONLY (CPython).

A unit is anything with .device, .truth (its model's), .insights [(t, event, sensor, value,
fields)] in time order and .profile (the compiled profile it ran, as provisioned):
simulator/insight_run.py makes them from a fast run, simulator/report.py's units_of from a
`tether simulate` run's parts and its ingest database. An area's score(units) returns lines
(name, value, target text, ok), value None (ok None) when the run held nothing to score it on,
ok None for a figure shown for comparison or as a count (its target text then a note in
parentheses, or empty).
"""
from importlib import import_module

# (insight kind, area, the truth key its model keeps): a unit is scored in an area when it has
# the insight and its model the truth (a printer profile may carry a pill count's insight).
AREAS = (("consumable", "consumables", "ink_empty"), ("adherence", "doses", "patient"),
         ("energy", "motors", "degrade_onset_ms"))


class Unit:
    def __init__(self, device, truth, insights, profile):
        self.device = device
        self.truth = truth
        self.insights = insights
        self.profile = profile


def kinds(profile):
    return {s["insight"]["type"] for s in profile["sensors"] if "insight" in s}


def _modelled(u):
    """u without the sensors its model left to made-up signals (truth `made_up`): their insights
    have no truth (a made-up level's refills were scored as false cartridge swaps)."""
    made = set(u.truth.get("made_up", ()))
    if not made:
        return u
    return Unit(u.device, u.truth, [i for i in u.insights if i[2] not in made],
                dict(u.profile, sensors=[s for s in u.profile["sensors"]
                                         if s["name"] not in made]))


def score(units):
    """{area: lines} for every area some unit has an insight of."""
    out = {}
    units = [_modelled(u) for u in units]
    for kind, area, truth in AREAS:
        mine = [u for u in units if kind in kinds(u.profile) and truth in u.truth]
        if mine:
            # A figure the run held nothing for is not a miss.
            out[area] = [(name, value, target, None if value is None else ok)
                         for name, value, target, ok in
                         import_module("simulator.scores." + area).score(mine)]
    return out


def shown(value):
    """A figure as printed: floats to 3 decimals, trailing zeros dropped (1.003 beside a target of
    <= 1 must not print as 1)."""
    if isinstance(value, float):
        if 0 < abs(value) < 0.001:
            return "%.3g" % value
        text = "%.3f" % value
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def lines_text(scores):
    """The scores as lines a person reads: each figure next to its target, or next to the note
    in parentheses that a figure without one carries ("(for comparison)"); first, per area, one
    line naming the figures the run held nothing to score."""
    out = []
    for area in scores:
        # the figures the run held nothing for, on one line per area: a 2-day run's 16 lines
        # of "no data in this run" buried the ones it had
        empty = [name for name, value, _, _ in scores[area] if value is None]
        if empty:
            out.append("  %s: no data in this run for %d figure%s: %s" % (
                area, len(empty), "" if len(empty) == 1 else "s", "; ".join(empty)))
        for name, value, target, ok in scores[area]:
            if value is None:
                continue
            text = shown(value)
            if not target:
                beside = ""
            elif target.startswith("("):
                beside = " " + target
            else:
                beside = " (target %s)" % target
            out.append("  %s: %s: %s%s%s" % (
                area, name, text, beside, "" if ok in (True, None) else "  MISSES TARGET"))
    return out
