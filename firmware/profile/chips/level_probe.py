"""A level probe in a profile (driver hal/drivers/level_probe.py): on a board ADC pin, or on a
channel of an ADS1115 (`adc:`), with a two-point calibration in raw readings."""
from firmware.profile.chips import ads1115
from firmware.profile.errors import at, expected
from firmware.profile.places import I2C_ADDRESS, bus_ref, pin
from firmware.profile.rules import REQUIRED, find, given, integer, number, sub

QUANTITIES = {"level": ("%", "0.1")}
FIELDS = [("pin", "pin", pin("adc"), None),
          ("adc", "adc", sub([("bus", "bus", bus_ref("i2c"), REQUIRED),
                              ("address", "address", I2C_ADDRESS, ads1115.ADDRESS),
                              ("channel", "channel", integer(0, 3), REQUIRED)]), None)]
CALIBRATION = [("raw_empty", "raw_empty", number(), REQUIRED),
               ("raw_full", "raw_full", number(), REQUIRED)]
# Two sensors of one probe read one ADC input.
SHARED = ("calibration.raw_empty", "calibration.raw_full")


def check(ctx, node, out):
    if given(node, "pin") == given(node, "adc"):
        ctx.problems.append(at(node, "expected exactly one of 'pin' (an ADC pin of the board) "
                                     "or 'adc' (a channel of an ADS1115)"))
    raw = out.get("calibration", {})
    if "raw_full" in raw and raw.get("raw_empty") == raw["raw_full"]:
        raw_full = find(node, "calibration", "raw_full")
        ctx.problems.append(at(raw_full, expected("a value other than raw_empty", raw_full)))
