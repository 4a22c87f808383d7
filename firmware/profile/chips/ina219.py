"""The INA219 current/power monitor in a profile (driver hal/drivers/ina219.py)."""
from firmware.profile.errors import at
from firmware.profile.places import I2C_ADDRESS, bus_ref
from firmware.profile.rules import REQUIRED, find, number

# Quantities (the first is the default) with their default unit and resolution.
QUANTITIES = {"power": ("W", "0.1"), "bus_voltage": ("V", "0.1"), "current": ("A", "0.1"),
              "shunt_voltage": ("mV", "0.01")}
FIELDS = [("bus", "bus", bus_ref("i2c"), REQUIRED),
          ("address", "address", I2C_ADDRESS, 0x40)]
CALIBRATION = [("shunt_ohms", "shunt_ohms", number(above=0), 0.1),
               ("max_current", "max_current", number(above=0), 3.2)]
# One calibration register for every quantity the chip gives.
SHARED = ("calibration.shunt_ohms", "calibration.max_current")


def check(ctx, node, out):
    """The driver's own calibration (hal/drivers/ina219.py) takes these values: a shunt in ohms
    written for milliohms stopped `tether check` with a traceback and `tether run` at start."""
    from hal.drivers.ina219 import calibration
    cal = out.get("calibration", {})
    if not (cal.get("shunt_ohms", 0) > 0 and cal.get("max_current", 0) > 0):
        return          # said at the key itself
    try:
        calibration(cal["shunt_ohms"], cal["max_current"])
    except ValueError:
        ctx.problems.append(at(find(node, "calibration", "shunt_ohms"), (
            "shunt_ohms x max_current is %.4g V, far beyond the INA219's 0.32 V full scale: a "
            "shunt in ohms (0.1, not 100 for 100 milliohms)?") % (
                cal["shunt_ohms"] * cal["max_current"])))
