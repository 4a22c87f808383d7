"""Rules for where a chip sits: a pin the platform can use, a declared bus, an I2C address.

The chips' schema entries (firmware/profile/chips) and the buses' fields (schema.py) share them.
"""
from firmware.profile.errors import Invalid, did_you_mean, expected, shown
from firmware.profile.rules import integer

BUS_NAMES = {"i2c": "an I2C bus", "uart": "a UART bus"}
I2C_ADDRESS = integer(0x08, 0x77, "an I2C address from 0x08 to 0x77")

ESP32_ABSENT = {20, 24, 28, 29, 30, 31}
ESP32_FLASH = range(6, 12)
ESP32_INPUT_ONLY = range(34, 40)
ESP32_ADC1 = range(32, 40)


def pin(use):
    """A GPIO number that the platform can use for `use`: "out" (drives the line), "in" or "adc"."""
    def read(ctx, node):
        if node.tag != "int" or node.value < 0:
            raise Invalid(expected("a pin number", node))
        n = node.value
        if ctx.platform == "esp32":
            if n > 39 or n in ESP32_ABSENT:
                raise Invalid(expected("an ESP32 GPIO number (0-39; there is no GPIO20, 24 or "
                                       "28-31)", node))
            if n in ESP32_FLASH:
                raise Invalid(expected("a GPIO that is not wired to the ESP32's flash chip (6-11)",
                                       node))
            if use == "out" and n in ESP32_INPUT_ONLY:
                raise Invalid(expected("a GPIO that can drive a line (GPIO34-39 are input only)",
                                       node))
            if use == "adc" and n not in ESP32_ADC1:
                raise Invalid(expected("an ADC1 pin, 32-39 (ADC2 pins cannot be read while Wi-Fi "
                                       "is on)", node))
        elif ctx.platform == "rpi":
            if use == "adc":
                raise Invalid("the Raspberry Pi has no ADC: use 'adc:' with an ADS1115 instead of "
                              "'pin:'")
            if n > 27:
                raise Invalid(expected("a BCM GPIO number from 0 to 27", node))
        return n
    return read


def bus_ref(kind):
    """The id of a bus of this kind declared under `buses:`."""
    def read(ctx, node):
        if node.tag != "str":
            raise Invalid(expected("the id of %s" % BUS_NAMES[kind], node))
        if node.value not in ctx.buses:
            hint = did_you_mean(node.value, ctx.buses) if not node.secret else ""
            hint = hint or " (declared: %s)" % (", ".join(ctx.buses) or "none")
            raise Invalid("no bus with id %s is declared%s" % (shown(node), hint))
        declared = ctx.buses[node.value][0]
        if declared not in (None, kind):
            raise Invalid(expected(BUS_NAMES[kind], node) + ", which is " + BUS_NAMES[declared])
        return node.value
    return read
