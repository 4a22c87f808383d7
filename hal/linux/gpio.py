# GPIO on Linux through the kernel's GPIO character device (uAPI v2), with the libgpiod v2 Python
# bindings (PyPI `gpiod` >= 2, the `rpi` extra). gpiod is imported only when a pin is opened, so
# the rest of the host package works on a laptop without it.
#
# A pin is one line request (one file descriptor) for the Pi's pin controller chip, held until
# close(). BCM GPIO n is line offset n of that chip on every Pi: "pinctrl-bcm2835" (Pi 1-3,
# Zero), "pinctrl-bcm2711" (Pi 4, 400, CM4) and "pinctrl-rp1" (Pi 5, whose header moved from
# gpiochip4 to gpiochip0 in later kernels, hence the search by label rather than a fixed path).
import errno
import glob

CONSUMER = "tether"
PI_CHIP_LABELS = ("pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1")


def load_gpiod():
    try:
        import gpiod
    except ImportError:
        raise ImportError("GPIO on Linux needs libgpiod's Python bindings, version 2: "
                          "pip install 'gpiod>=2' (tether's [rpi] extra)") from None
    if not hasattr(gpiod, "request_lines"):
        raise ImportError("GPIO on Linux needs gpiod>=2 (the v2 API with gpiod.request_lines); "
                          "an older gpiod is installed: pip install 'gpiod>=2'")
    return gpiod


def _chip_number(path):
    digits = path[len(path.rstrip("0123456789")):]
    return int(digits) if digits else -1


def find_chip(gpiod, paths=None):
    """The /dev/gpiochipN of the Pi's pin controller, found by its label."""
    if paths is None:
        paths = sorted(glob.glob("/dev/gpiochip*"), key=_chip_number)
    if not paths:
        raise OSError(errno.ENOENT, "no GPIO character device (/dev/gpiochip*): is this a "
                      "Raspberry Pi with a kernel of 4.8 or later?")
    seen = []
    for path in paths:
        try:
            with gpiod.Chip(path) as chip:
                label = chip.get_info().label
        except OSError as exc:
            seen.append("%s (%s)" % (path, exc.strerror or exc))
            continue
        if label in PI_CHIP_LABELS:
            return path
        seen.append("%s (%s)" % (path, label))
    raise OSError(errno.ENODEV, "no Raspberry Pi pin controller (%s) among %s: give the chip "
                  "to LinuxPlatform(gpiochip=...)" % (", ".join(PI_CHIP_LABELS), ", ".join(seen)))


class LinuxPin:
    """machine.Pin's value()/value(v) on one requested line."""

    def __init__(self, gpiod, chip, n, output, pull=None, value=0, consumer=CONSUMER):
        from gpiod.line import Bias, Direction, Value

        self.chip = chip
        self.n = n
        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        if output:
            settings = gpiod.LineSettings(direction=Direction.OUTPUT,
                                          output_value=Value.ACTIVE if value else Value.INACTIVE)
        elif pull is None:
            settings = gpiod.LineSettings(direction=Direction.INPUT, bias=Bias.AS_IS)
        elif pull == "up":
            settings = gpiod.LineSettings(direction=Direction.INPUT, bias=Bias.PULL_UP)
        elif pull == "down":
            settings = gpiod.LineSettings(direction=Direction.INPUT, bias=Bias.PULL_DOWN)
        else:
            raise ValueError("GPIO %d: pull must be None, 'up' or 'down', not %r" % (n, pull))
        try:
            self._request = gpiod.request_lines(chip, config={n: settings}, consumer=consumer)
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EBUSY:
                hint = ": another program or kernel driver holds this line"
            elif exc.errno in (errno.EACCES, errno.EPERM):
                from hal.linux import access_hint
                hint = ": " + access_hint(exc.errno, "gpio")
            raise OSError(exc.errno, "GPIO %d on %s: %s%s"
                          % (n, chip, exc.strerror or exc, hint)) from exc

    def value(self, v=None):
        if v is None:
            return 1 if self._request.get_value(self.n) == self._active else 0
        self._request.set_value(self.n, self._active if v else self._inactive)
        return None

    __call__ = value  # machine.Pin is callable too

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def close(self):
        if self._request is not None:
            self._request.release()
            self._request = None
