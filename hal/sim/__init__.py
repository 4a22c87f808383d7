# Virtual hardware for the sim platform and the tests: register-level emulations of the chips,
# driven by physical quantities, so that the real drivers (hal/drivers) run against them. Each
# module's header says what it emulates and which faults it can inject; for the I2C side:
#
#   i2c.py      SimI2C: a simulated I2C bus (chips attached by address; nack/stuck/noise faults)
#   ina219.py   SimINA219: current/power monitor (amps, bus_volts)
#   ads1115.py  SimADS1115: 4-channel 16-bit ADC (volts[0..3])
#   adc.py      SimADC: a board ADC pin (raw12 or volts; read_u16)
#
# Portable (CPython and MicroPython). Nothing is imported here, so a board that never uses the
# simulation never loads it.
