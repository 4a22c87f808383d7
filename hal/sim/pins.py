# Simulated GPIO pins with the Pin methods of the bus contract (hal/bus.py): value() -> 0/1 and
# value(v). Like machine.Pin, a pin is also callable: pin() reads, pin(v) writes.
#
# A virtual chip connects to pins in two ways:
#   - an input of the board that the chip drives (HX711 DOUT): connect_source(fn), and every
#     value() read calls fn() for the level, so the chip can answer at the moment of the read;
#   - an output of the board that the chip watches (HX711 PD_SCK): connect_listener(fn), and
#     every change of level written by the driver calls fn(new_level) at once.
# Portable.


class SimPin:
    def __init__(self, number, value=0):
        self.number = number
        self._level = 1 if value else 0
        self._source = None
        self._listeners = []

    def connect_source(self, fn):
        """fn() -> 0/1 gives the level every read sees (a chip driving this pin)."""
        self._source = fn

    def connect_listener(self, fn):
        """fn(level) is called whenever a write changes the level (a chip watching this pin)."""
        self._listeners.append(fn)

    def value(self, v=None):
        if v is None:
            source = self._source
            if source is not None:
                return source()
            return self._level
        v = 1 if v else 0
        if v != self._level:
            self._level = v
            for fn in self._listeners:
                fn(v)
        return None

    __call__ = value  # the HX711 driver clocks 25 pulses a read through calls

    def __repr__(self):
        return "SimPin(%r)" % (self.number,)
