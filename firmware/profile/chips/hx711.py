"""The HX711 load-cell ADC in a profile (driver hal/drivers/hx711.py): a weight, or a count of
pills of a known weight."""
from firmware.profile.errors import at
from firmware.profile.places import pin
from firmware.profile.rules import REQUIRED, nonzero, number, number_choice, sub

QUANTITIES = {"weight": ("g", "0.1"), "count": ("count", "1")}
# The weight's unit is what `scale` counts per: a label of kg with a scale in counts per kg.
SCALED = ("weight",)
FIELDS = [("pins", "pins", sub([("dout", "dout", pin("in"), REQUIRED),
                                ("sck", "sck", pin("out"), REQUIRED)]), REQUIRED),
          ("gain", "gain", number_choice(("128", "64", "32")), 128)]
CALIBRATION = [("tare", "tare", number(), 0), ("scale", "scale", nonzero, 1),
               ("pill_weight", "pill_weight", number(above=0), None)]
# A weight and a pill count read one load cell: one gain, one tare and scale.
SHARED = ("gain", "calibration.tare", "calibration.scale", "calibration.pill_weight")


def check_chip(ctx, sensors):
    """A pill count divides the weight by pill_weight: given on it or on another sensor of the
    same load cell (they share it)."""
    for s, n in sensors:
        if s.get("quantity") == "count" and s.get("calibration", {}).get("pill_weight") is None:
            calibration = n.value.get("calibration")
            if calibration is not None and calibration.tag == "map" and \
                    "pill_weight" in calibration.value:
                continue  # given, and refused: its own error says why
            ctx.problems.append(at(n if calibration is None else calibration, (
                "calibration.pill_weight is required with quantity 'count' (the weight is "
                "divided by it): give it on this sensor or another of the same load cell")))
