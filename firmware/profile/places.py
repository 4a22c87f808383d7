"""Rules for where a chip sits: a pin the platform can use, a declared bus, an I2C address.

The chips' schema entries (firmware/profile/chips) and the buses' fields (schema.py) share them.
"""
import re

from firmware.profile.errors import Invalid, at, did_you_mean, expected, shown
from firmware.profile.rules import in_quotes, integer

BUS_NAMES = {"i2c": "an I2C bus", "uart": "a UART bus"}
I2C_ADDRESS = integer(0x08, 0x77, "an I2C address from 0x08 to 0x77")


class Pins:
    """An ESP32's GPIOs, from Espressif's datasheets and ESP-IDF's GPIO tables: which exist
    (`gpios`, and as written for a message), which the flash chip takes on every module (an
    ESP32-S3 module with octal flash or PSRAM also takes 33-37: not refused, as others have
    them free), which only read, which are ADC1's (ADC2 cannot be read while Wi-Fi is on), and
    which work but are warned of (`warned`: a GPIO -> why, as ESPHome warns of strapping pins)."""

    def __init__(self, name, gpios, gpios_text, flash, flash_text, input_only, input_only_text,
                 adc1, adc1_text, warned, adc_note="ADC2 pins cannot be read while Wi-Fi is on"):
        self.name = name
        self.gpios = set(gpios)
        self.gpios_text = gpios_text
        self.flash = set(flash)
        self.flash_text = flash_text
        self.input_only = set(input_only)
        self.input_only_text = input_only_text
        self.adc1 = set(adc1)
        self.adc1_text = adc1_text
        self.adc_note = adc_note
        self.warned = warned


def _span(*ranges):
    return [n for r in ranges for n in r]


STRAP = ("is a strapping pin, read at reset to choose how the chip boots: a pull-up or pull-down "
         "on it (an I2C bus's, a sensor module's) can keep the board from booting or from being "
         "flashed")
CONSOLE = ("is UART0's %s, the console that `tether flash` and `tether logs` reach through a "
           "board's USB-serial chip: once the agent opens its bus there, neither reaches the board")
USB = ("is the chip's own USB (%s): on a board whose USB port is wired to it, once the agent opens "
       "its bus there, `tether flash` and `tether logs` no longer reach the board")


def _warned(strapping, tx, rx, usb=None, more=()):
    warned = dict.fromkeys(strapping, STRAP)
    warned.update({tx: CONSOLE % "TX", rx: CONSOLE % "RX"})
    if usb:
        warned.update({usb[0]: USB % "D-", usb[1]: USB % "D+"})
    warned.update(more)
    return warned


WROVER = ("is wired to the PSRAM of ESP32-WROVER modules (and to the flash of ESP32-PICO-D4 "
          "packages): choose another GPIO for those")
OCTAL = ("is wired to the flash or PSRAM on ESP32-S3 modules with octal PSRAM or flash (N8R8, "
         "N16R8, ...): choose another GPIO for those")

# Espressif's datasheets: strapping pins, UART0's pins and USB's (D-, D+) of each chip
ESP32_PINS = {
    "esp32": Pins("ESP32", _span(range(0, 20), range(21, 24), range(25, 28), range(32, 40)),
                  "0-39; there is no GPIO20, 24 or 28-31", range(6, 12), "6-11", range(34, 40),
                  "GPIO34-39 are", range(32, 40), "32-39",
                  _warned((0, 2, 5, 15), 1, 3, None, {
                      12: "is a strapping pin that sets the flash's voltage: pulled up at reset "
                          "(an I2C bus's pull-up), a module with 3.3 V flash does not boot",
                      16: WROVER, 17: WROVER})),
    "esp32s2": Pins("ESP32-S2", _span(range(0, 22), range(26, 47)), "0-21 and 26-46",
                    range(26, 33), "26-32", (46,), "GPIO46 is", range(1, 11), "1-10",
                    _warned((0, 45, 46), 43, 44, (19, 20))),
    "esp32s3": Pins("ESP32-S3", _span(range(0, 22), range(26, 49)), "0-21 and 26-48",
                    range(26, 33), "26-32", (), None, range(1, 11), "1-10",
                    _warned((0, 3, 45, 46), 43, 44, (19, 20),
                            dict.fromkeys(range(33, 38), OCTAL))),
    # GPIO11 is the flash's supply (VDD_SPI) until an eFuse is burnt
    "esp32c3": Pins("ESP32-C3", range(0, 22), "0-21", range(11, 18), "11-17", (), None,
                    range(0, 5), "0-4", _warned((2, 8, 9), 21, 20, (18, 19))),
    "esp32c6": Pins("ESP32-C6", range(0, 31), "0-30", range(24, 31), "24-30", (), None,
                    range(0, 7), "0-6", _warned((4, 5, 8, 9, 15), 16, 17, (12, 13)),
                    "the ESP32-C6's only ADC"),
}


GPIO_NAME = re.compile(r"(?i)gpio\s*([0-9]{1,2})")


def pin(use):
    """A GPIO number that the platform can use for `use`: "out" (drives the line), "in" or "adc"."""
    def read(ctx, node):
        gpio = GPIO_NAME.fullmatch(node.value) if node.tag == "str" else None
        if gpio is not None:
            n = int(gpio.group(1))  # ESPHome's and the pinout's `GPIO17`
        elif node.tag != "int" or node.value < 0:
            hint = " (write the pin's number)" if node.tag == "map" else in_quotes(node)
            raise Invalid(expected("a pin number", node) + hint)
        else:
            n = node.value
        chip = getattr(ctx, "chip", "esp32")
        if ctx.platform == "esp32" and chip is not None:    # None: a chip said wrong, said there
            p = ESP32_PINS[chip]
            if n not in p.gpios:
                raise Invalid(expected("an %s GPIO number (%s)" % (p.name, p.gpios_text), node))
            if n in p.flash:
                raise Invalid(expected("a GPIO that is not wired to the %s's flash chip (%s)"
                                       % (p.name, p.flash_text), node))
            if use == "out" and n in p.input_only:
                raise Invalid(expected("a GPIO that can drive a line (%s input only)"
                                       % p.input_only_text, node))
            if use == "adc" and n not in p.adc1:
                raise Invalid(expected("an ADC1 pin, %s (%s)" % (p.adc1_text, p.adc_note), node))
            if n in p.warned and not node.secret:  # what it says would tell the pin
                # kept apart: `ignore_pin_warnings` (schema.py) drops those the maker has read
                ctx.notes.append((n, at(node, "warning: GPIO%d %s" % (n, p.warned[n]))))
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
