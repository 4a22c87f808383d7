"""The Sensirion SHT3x (SHT30, SHT31, SHT35) in a profile (driver hal/drivers/sht3x.py): a
temperature and a relative humidity, one measurement of one chip."""
from firmware.profile.places import bus_ref
from firmware.profile.rules import REQUIRED, choice, integer

# Units as SenML writes them (RFC 8428): Cel, %RH.
QUANTITIES = {"temperature": ("Cel", "0.1"), "humidity": ("%RH", "0.1")}
FIELDS = [("bus", "bus", bus_ref("i2c"), REQUIRED),
          # its ADDR pin: low 0x44, high 0x45; the chip answers at no other
          ("address", "address", integer(0x44, 0x45, "an SHT3x address, 0x44 (ADDR low) or 0x45 "
                                         "(ADDR high)"), 0x44),
          # the datasheet's trade of noise against time: 15, 6 or 4 ms a measurement
          ("repeatability", "repeatability", choice(["high", "medium", "low"]), "high")]
CALIBRATION = []
# One measurement gives both quantities: one command for the two.
SHARED = ("repeatability",)
