"""The INA219 current/power monitor in a profile (driver hal/drivers/ina219.py)."""
from firmware.profile.places import I2C_ADDRESS, bus_ref
from firmware.profile.rules import REQUIRED, number

# Quantities (the first is the default) with their default unit and resolution.
QUANTITIES = {"power": ("W", "0.1"), "bus_voltage": ("V", "0.1"), "current": ("A", "0.1"),
              "shunt_voltage": ("mV", "0.01")}
FIELDS = [("bus", "bus", bus_ref("i2c"), REQUIRED),
          ("address", "address", I2C_ADDRESS, 0x40)]
CALIBRATION = [("shunt_ohms", "shunt_ohms", number(above=0), 0.1),
               ("max_current", "max_current", number(above=0), 3.2)]
