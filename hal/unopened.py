# A chip whose bus could not be opened (hal/board.py): a USB serial adapter unplugged, I2C not
# enabled on a Pi. Its sensors fail, not the agent. Loaded only when a bus fails to open: a
# board's heap holds its code for good. Portable.


class BusError(Exception):
    """A chip's bus that could not be opened, in the platform's words: a SensorError's kind."""
    kind = "bus"


def bus_error(exc):
    # OSError(code, words): its words (MicroPython has no strerror, and CPython's str() adds
    # "[Errno N]"); otherwise as it says itself.
    a = exc.args
    return BusError(a[1] if len(a) > 1 and isinstance(a[1], str) else str(exc))


class Unopened:
    """The driver of a chip whose bus could not be opened: each reading fails with the reason,
    and each setup (the sampler's retry, with backoff) tries the bus again, so an adapter
    plugged in later is read from then on."""

    def __init__(self, module, sensor, ctx, error):
        self.module = module
        self.sensor = sensor
        self.ctx = ctx
        self.error = error
        self.driver = None

    def setup(self):
        if self.driver is None:
            try:
                self.driver = self.module.build(self.sensor, self.ctx)
            except BusError as exc:
                self.error = exc
                raise
        self.driver.setup()

    def measure(self):
        if self.driver is None:
            raise self.error
        return self.driver.measure()
