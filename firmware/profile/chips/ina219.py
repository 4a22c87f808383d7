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


# shunt_ohms x max_current past this many volts is no shunt the chip could read (its full scale
# is 0.32 V; up to ten times that, currents above 0.32 V / R are `range` errors, documented).
IMPLAUSIBLE_V = 3.2


def check_chip(ctx, sensors):
    """The calibration the chip ends up with (its sensors share it): the driver's own
    calibration takes it (hal/drivers/ina219.py), and it is no shunt written in the wrong unit
    (100 for 100 milliohms: currents 1000 times too low; past the driver's range, `tether
    check` stopped with a traceback)."""
    from hal.drivers.ina219 import calibration
    s, n = sensors[0]
    cal = s.get("calibration", {})
    if not (cal.get("shunt_ohms", 0) > 0 and cal.get("max_current", 0) > 0):
        return          # said at the key itself
    volts = cal["shunt_ohms"] * cal["max_current"]
    try:
        calibration(cal["shunt_ohms"], cal["max_current"])
        wrong = volts > IMPLAUSIBLE_V
    except ValueError:
        wrong = True
    if wrong:
        def written(key):
            return next((find(x, "calibration", key) for _, x in sensors
                         if find(x, "calibration", key).path.endswith(key)), None)
        # at the figure written: with the shunt left at its default, max_current is the typo
        where, hint = written("shunt_ohms"), "a shunt in ohms (0.1, not 100 for 100 milliohms)?"
        if where is None:
            where = written("max_current") or find(n, "calibration")
            hint = "a max_current in amperes (3.2, not 3200 for 3.2 A)?"
        ctx.problems.append(at(where, (
            "shunt_ohms x max_current is %s V, more than ten times the INA219's 0.32 V full "
            "scale: %s") % ("%d" % volts if volts == int(volts) and volts < 1e15
                            else "%.4g" % volts, hint)))
