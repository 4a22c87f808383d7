"""The PZEM-004T v3.0 power meter in a profile (driver hal/drivers/pzem004t.py)."""
from firmware.profile.places import bus_ref
from firmware.profile.rules import REQUIRED, integer

QUANTITIES = {"power": ("W", "0.1"), "voltage": ("V", "0.1"), "current": ("A", "0.1"),
              "energy": ("Wh", "1"), "frequency": ("Hz", "0.1"), "power_factor": ("/", "0.01")}
FIELDS = [("bus", "bus", bus_ref("uart"), REQUIRED),
          ("address", "address", integer(1, 247, "a Modbus address from 1 to 247"), 1)]
CALIBRATION = []
