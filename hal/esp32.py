# The ESP32 platform backend (MicroPython): the bus objects drivers get are machine's own.
#
# machine.I2C already has the contract's method names and errors (hal/bus.py), machine.UART has
# write/read/any with read(n) returning fewer bytes or None after its timeout, machine.Pin has
# value(), machine.ADC has read_u16(). So nothing is wrapped: the platform only opens them from
# the compiled profile's bus dicts and pin numbers.
#
#   I2C   the first two i2c buses get the hardware peripherals I2C(0) and I2C(1), in the order they
#         are opened; any further bus is a machine.SoftI2C (bit-banged, any output pin).
#   UART  UART0 carries the REPL, so uart buses get UART1 then UART2 (UART1 alone on the S2, C3
#         and C6); one more is an error.
#   ADC   ADC(Pin(n), atten=ADC.ATTN_11DB): 11 dB attenuation, the widest input range (full
#         scale about 3.1-3.3 V, linear from about 0.15 to 2.45 V per the ESP32 quick reference),
#         so a probe on the 3.3 V rail stays within read_u16()'s 0-65535.
#
# The profile's `chip` says which ESP32 it is: the ESP32-C3 and -C6 have one hardware I2C and,
# as the S2, one free UART (CHIPS below, from Espressif's datasheets).
#
# Runs only on a board; `machine` is imported in the constructor, so that the module can be
# imported (and type-checked against micropython-esp32-stubs) anywhere.

# chip -> (hardware I2C ids, free UART ids)
CHIPS = {"esp32": ((0, 1), (1, 2)), "esp32s2": ((0, 1), (1,)), "esp32s3": ((0, 1), (1, 2)),
         "esp32c3": ((0,), (1,)), "esp32c6": ((0,), (1,))}


def _name(chip):
    """'ESP32-C3' for esp32c3, as Espressif writes it."""
    return "ESP32" + ("-" + chip[5:].upper() if len(chip) > 5 else "")


class Esp32Platform:
    name = "esp32"

    def __init__(self, chip="esp32"):
        import machine  # noqa: F401  (only a board has it: fail here, not at the first bus)

        self.chip = chip
        self._i2c_ids, self._uart_ids = CHIPS[chip]
        self._i2c = {}  # type: dict
        self._i2c_soft = 0
        self._uart = {}  # type: dict
        self._adc = []  # type: list

    def i2c(self, bus):
        """The I2C bus for a compiled bus dict {id, type: "i2c", sda, scl, frequency}."""
        import machine

        found = self._i2c.get(bus["id"])
        if found is not None:
            return found
        freq = bus["frequency"]  # the schema gives every bus its default
        scl = machine.Pin(bus["scl"])
        sda = machine.Pin(bus["sda"])
        used = len(self._i2c) - self._i2c_soft
        if used < len(self._i2c_ids):
            obj = machine.I2C(self._i2c_ids[used], scl=scl, sda=sda, freq=freq)
        else:
            obj = machine.SoftI2C(scl=scl, sda=sda, freq=freq)
            self._i2c_soft += 1
        self._i2c[bus["id"]] = obj
        return obj

    def uart(self, bus, timeout_ms):
        """The UART for a compiled bus dict {id, type: "uart", tx, rx, baud}.

        read(n) waits at most timeout_ms for the n bytes, then returns what came, or None.
        """
        import machine

        found = self._uart.get(bus["id"])
        if found is not None:
            return found
        used = len(self._uart)
        if used >= len(self._uart_ids):
            raise ValueError("uart bus %s: an %s has %d free UART%s (UART0 is the REPL), and %d "
                             "%s already open" % (bus["id"], _name(self.chip),
                                                  len(self._uart_ids),
                                                  "s" if len(self._uart_ids) > 1 else "",
                                                  used, "is" if used == 1 else "are"))
        obj = machine.UART(self._uart_ids[used], baudrate=bus["baud"],
                           tx=bus["tx"], rx=bus["rx"], timeout=timeout_ms)
        self._uart[bus["id"]] = obj
        return obj

    def pin_in(self, n, pull=None):
        """An input pin; pull is None, "up" or "down"."""
        import machine

        if pull is None:
            return machine.Pin(n, machine.Pin.IN)
        if pull == "up":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)
        if pull == "down":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_DOWN)
        raise ValueError("pin %d: pull must be None, 'up' or 'down', not %r" % (n, pull))

    def pin_out(self, n, value=0):
        """An output pin, driven to value from the start."""
        import machine

        return machine.Pin(n, machine.Pin.OUT, value=value)

    def adc(self, n):
        """The ADC on pin n (an ADC1 pin: ADC2 is not read while Wi-Fi is on), 11 dB attenuation."""
        import machine

        obj = machine.ADC(machine.Pin(n), atten=machine.ADC.ATTN_11DB)
        self._adc.append(obj)
        return obj

    def close(self):
        """Releases the UART and I2C peripherals and ADC channels that this platform opened."""
        for group in (self._uart, self._i2c):
            for obj in group.values():
                _deinit(obj)
            group.clear()
        for obj in self._adc:
            _deinit(obj)
        self._adc = []
        self._i2c_soft = 0


def _deinit(obj):
    # Not every port's I2C has deinit() (SoftI2C's does nothing); a failing one must not stop
    # the others from being released.
    deinit = getattr(obj, "deinit", None)
    if deinit is not None:
        try:
            deinit()
        except OSError:
            pass
