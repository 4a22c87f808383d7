"""The profile schema entries of the insights (agent/insights), one module per kind.

A kind's module holds QUANTITIES, the sensor quantities it reads (the first one in its error
message), FIELDS, its keys as a field table (rules.section) with their defaults: the compiled
`insight` mapping carries every one, and the detector reads them from there; and optionally
check(ctx, node, compiled insight), its checks across keys, and MAX_INTERVAL_MS, the longest
`interval` its sensor may have, or max_interval(compiled insight) -> (ms, why) where that
depends on its settings. Every compiled insight also gets
`type` and `utc_offset_min` (the device's, for kinds that keep local time).
"""
from importlib import import_module

from agent.insights import KINDS


def entry(kind):
    m = import_module("firmware.profile.insights." + kind)
    return {"quantities": m.QUANTITIES, "fields": m.FIELDS, "check": getattr(m, "check", None),
            "max_interval_ms": getattr(m, "MAX_INTERVAL_MS", None),
            "max_interval": getattr(m, "max_interval", None)}


INSIGHTS = {kind: entry(kind) for kind in KINDS}
