"""The ADS1115 16-bit ADC in a profile (driver hal/drivers/ads1115.py): one channel's voltage."""
from firmware.profile.places import I2C_ADDRESS, bus_ref
from firmware.profile.rules import REQUIRED, integer, number_choice

ADDRESS = 0x48  # ADDR to GND; also where other chips' `adc:` look for it by default
GAINS = ("6.144", "4.096", "2.048", "1.024", "0.512", "0.256")  # full scale, volts

QUANTITIES = {"voltage": ("V", "0.1")}
FIELDS = [("bus", "bus", bus_ref("i2c"), REQUIRED),
          ("address", "address", I2C_ADDRESS, ADDRESS),
          ("channel", "channel", integer(0, 3), 0)]
CALIBRATION = [("gain", "gain", number_choice(GAINS), 2.048)]
