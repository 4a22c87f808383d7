"""The profile schema entries of the chips, one module per chip (hal/chips.py lists them).

A chip's module holds QUANTITIES {quantity: (default unit, default resolution)}, the first being
the default; optionally SCALED, the quantities whose unit its calibration sets (any other's
unit is a label, which must not name another scale of the default: kWh for Wh); FIELDS, the keys that say where the chip is; CALIBRATION, its calibration keys (both
field tables as in rules.section, with their defaults: the compiled profile carries every one,
and drivers read them from there); optionally check(ctx, node, compiled sensor), its checks
across keys; and optionally SHARED, the settings ("gain", "calibration.tare") of the one chip
that sensors reading it (one driver key: hal/drivers) must agree on, where both give them; and
optionally check_chip(ctx, [(compiled sensor, node)]), its checks of the settings the sensors of
one chip end up with, those shared included.
DRIVERS is their table, in the registry's order.
"""
from importlib import import_module

from hal.chips import CHIPS


def entry(name):
    try:
        chip = import_module("firmware.profile.chips." + name)
    except ModuleNotFoundError as exc:
        if exc.name != "firmware.profile.chips." + name:
            raise       # the entry is there and imports something missing: its own traceback
        raise ImportError("hal/chips.py lists the chip %r, which has no schema entry "
                          "firmware/profile/chips/%s.py (docs/drivers.md, \"Adding a chip\")"
                          % (name, name)) from None
    return {"quantities": chip.QUANTITIES, "fields": chip.FIELDS,
            "calibration": chip.CALIBRATION, "check": getattr(chip, "check", None),
            "shared": getattr(chip, "SHARED", ()), "scaled": getattr(chip, "SCALED", ()),
            "check_chip": getattr(chip, "check_chip", None)}


DRIVERS = {name: entry(name) for name in CHIPS}
