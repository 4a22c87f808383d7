# The profile's chips on a platform (hal/esp32.py, hal/linux, hal/sim/platform.py): one driver
# per chip, shared by the sensors that read quantities of the same chip, so that the sampler
# reads a PZEM-004T's power, energy and voltage with one Modbus request.
#
# Each chip's driver module builds its driver from a compiled sensor (hal/chips.py says which
# module that is). Drivers are imported only when the profile uses them, and nothing is set up
# here: the sampler calls setup() before a chip's first reading and again after a fault.
#
# A bus or GPIO chip that cannot be opened (a USB serial adapter unplugged, I2C not enabled on
# a Pi) fails the sensors on it, not the agent: the others are read and the uplink reports it.
from hal import chips

UART_TIMEOUT_MS = 50  # per read() call; the PZEM-004T driver keeps its own deadline


class Wiring:
    """What a driver module's build(sensor, ctx) gets: the platform's buses (each opened once),
    pins and ADCs, its clock, and the drivers already built (chips, by key)."""

    def __init__(self, profile, platform):
        self.platform = platform
        self.specs = {}
        for b in profile["buses"]:
            self.specs[b["id"]] = b
        self.opened = {}
        self.chips = {}
        self.sleep_ms = getattr(platform, "sleep_ms", None)
        self.ticks_ms = getattr(platform, "ticks_ms", None)  # a platform's own time (the sim's)
        self.ticks_us = getattr(platform, "ticks_us", None)

    def bus(self, name):
        if name not in self.opened:
            spec = self.specs[name]
            try:
                self.opened[name] = (self.platform.i2c(spec) if spec["type"] == "i2c"
                                     else self.platform.uart(spec, UART_TIMEOUT_MS))
            except OSError as exc:
                from hal.unopened import bus_error  # only then: a board's heap keeps code
                raise bus_error(exc)
        return self.opened[name]

    def pin_in(self, n):
        return self._pin(self.platform.pin_in, n)

    def pin_out(self, n):
        return self._pin(self.platform.pin_out, n)

    def _pin(self, open_pin, n):
        # A GPIO chip that cannot be opened (a Pi's not there yet at boot, a line another
        # program holds) fails the chip's sensors, retried, as a bus does: it stopped the agent.
        try:
            return open_pin(n)
        except OSError as exc:
            from hal.unopened import bus_error
            raise bus_error(exc)

    def adc(self, n):
        return self.platform.adc(n)


def drivers(profile, platform):
    """[driver of sensor i] for the profile's sensors, on platform."""
    ctx = Wiring(profile, platform)
    out = []
    for s in profile["sensors"]:
        module = chips.driver(s["driver"])
        key = module.key(s)
        if key not in ctx.chips:
            try:
                ctx.chips[key] = module.build(s, ctx)
            except Exception as exc:
                if getattr(exc, "kind", None) != "bus":  # only a bus or GPIO chip (Wiring):
                    raise                                # an ADC or a bad pin stops the build
                from hal.unopened import Unopened
                ctx.chips[key] = Unopened(module, s, ctx, exc)
        out.append(ctx.chips[key])
    return out
