# The Raspberry Pi (Linux) platform: opens buses and pins from the compiled profile.
#
# Pins are BCM GPIO numbers. The Pi's buses sit on fixed pins, so a compiled bus names its
# device file by its pins, unless it carries a `port` key (a device file path):
#
#   i2c   sda 2, scl 3 -> /dev/i2c-1 (the header's I2C), sda 0, scl 1 -> /dev/i2c-0 (ID EEPROM bus)
#   uart  tx 14, rx 15 -> /dev/serial0 (the header's primary UART, whichever UART that is)
#
# Anything else (an overlay's extra I2C or UART, a USB serial adapter) needs `port`.
# A Pi has no ADC: an analog probe goes through an ADS1115 on I2C.
from hal.linux.i2c import LinuxI2C
from hal.linux.uart import LinuxUART

I2C_PORTS = {(2, 3): "/dev/i2c-1", (0, 1): "/dev/i2c-0"}
UART_PORTS = {(14, 15): "/dev/serial0"}


class LinuxPlatform:
    name = "rpi"

    def __init__(self, gpiochip=None, consumer="tether"):
        """gpiochip: the GPIO chip's device path; by default the Pi's pin controller, found by
        its label the first time a pin is opened."""
        self._gpiochip = gpiochip
        self._consumer = consumer
        self._i2c = {}
        self._uart = {}
        self._lines = {}  # BCM n -> (output, its pin): a chip built again asks again

    def i2c(self, bus):
        """The I2C bus for a compiled bus dict {id, type: "i2c", sda, scl, frequency[, port]}."""
        found = self._i2c.get(bus["id"])
        if found is None:
            found = LinuxI2C(device_file(bus), frequency=bus.get("frequency"))
            self._i2c[bus["id"]] = found
        return found

    def uart(self, bus, timeout_ms):
        """The UART for a compiled bus dict {id, type: "uart", tx, rx, baud[, port]}."""
        found = self._uart.get(bus["id"])
        if found is None:
            found = LinuxUART(device_file(bus), bus["baud"], timeout_ms=timeout_ms)
            self._uart[bus["id"]] = found
        return found

    def pin_in(self, n, pull=None):
        """An input pin (BCM n); pull is None (as the pin is), "up" or "down"."""
        return self._pin(n, False, pull=pull)

    def pin_out(self, n, value=0):
        """An output pin (BCM n), driven to value from the start."""
        return self._pin(n, True, value=value)

    def adc(self, n):
        raise ValueError("pin %s: a Raspberry Pi has no ADC; wire the analog signal to an "
                         "ADS1115 on I2C and give the sensor `adc: {bus, address, channel}` "
                         "instead of `pin:`" % (n,))

    def close(self):
        """Releases every pin, bus and port this platform opened."""
        for _, pin in self._lines.values():
            pin.close()
        self._lines = {}
        for group in (self._uart, self._i2c):
            for obj in group.values():
                obj.close()
            group.clear()

    def _pin(self, n, output, pull=None, value=0):
        from hal.linux.gpio import LinuxPin, find_chip, load_gpiod

        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("a GPIO number is a whole number >= 0, got %r" % (n,))
        held = self._lines.get(n)
        if held is not None and held[0] == output:  # an HX711 whose other pin failed
            return held[1]
        gpiod = load_gpiod()
        if self._gpiochip is None:
            self._gpiochip = find_chip(gpiod)
        pin = LinuxPin(gpiod, self._gpiochip, n, output, pull=pull, value=value,
                       consumer=self._consumer)
        self._lines[n] = (output, pin)
        return pin


def device_file(bus):
    """The device file of a compiled i2c or uart bus: its `port`, else the one on its pins.
    `tether install-service` allows the service these files and no others."""
    if bus.get("type") == "i2c":
        return _port(bus, I2C_PORTS, "sda", "scl", "/dev/i2c-N")
    return _port(bus, UART_PORTS, "tx", "rx", "/dev/ttyUSB0")


def _port(bus, known, first, second, example):
    port = bus.get("port")
    if port:
        return port
    pins = (bus.get(first), bus.get(second))
    port = known.get(pins)
    if port is None:
        raise ValueError(
            "%s bus %s on %s %s, %s %s: a Raspberry Pi has this bus on %s; for another device "
            "give its file as `port` (e.g. %s)"
            % (bus.get("type"), bus.get("id"), first, pins[0], second, pins[1],
               " or ".join("%s %d/%s %d" % (first, a, second, b) for a, b in sorted(known)),
               example))
    return port
