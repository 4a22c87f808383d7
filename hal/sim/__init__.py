# Virtual hardware for the sim platform and the tests: register-level emulations of the chips,
# driven by physical quantities, so that the real drivers (hal/drivers) run against them.
#
# One module per chip, named by its driver name (hal/chips.py lists them): its virtual chip,
# its faults, its default state and how a sensor's quantity sets it. The parts they share:
#
#   i2c.py       SimI2C: a simulated I2C bus (chips attached by address; nack/stuck/noise faults)
#   uart.py      SimUART: a simulated UART wired to a device (timeout/bad_crc/... faults)
#   adc.py       SimADC: a board ADC pin (raw12 or volts; read_u16)
#   pins.py      SimPin: a GPIO line
#   micros.py    Micros: the virtual microseconds the chips and the drivers' timeouts run on
#   platform.py  SimPlatform: a profile's buses, pins and chips, for hal/board.py
#
# Portable (CPython and MicroPython). Nothing is imported here, so a board that never uses the
# simulation never loads it.
