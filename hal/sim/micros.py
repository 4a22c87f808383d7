# Virtual microseconds, shared by the virtual chips of one platform: the HX711's pulse timing
# and the drivers' timeouts run on it (hal/sim/platform.py), never on the wall clock. Portable.


class Micros:
    def __init__(self):
        self.now = 0

    def ticks_us(self):
        return self.now
