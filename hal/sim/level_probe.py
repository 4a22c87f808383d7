# A level probe on the sim platform: on a board ADC pin it is that pin's SimADC (hal/sim/adc.py);
# on an ADS1115 (`adc:`) a channel of the SimADS1115 at that address, shared with other sensors
# that read the chip. set_quantity() turns a level in % into the raw reading between the profile's
# raw_empty and raw_full. Faults: "disconnected" (a probe on a pin: the input pulled low; on an
# ADS1115: its channel floating, read as full scale), "stall" (a probe on an ADS1115: its
# conversion never completes). Portable.

DEFAULTS = {"level": 50.0}
FAULT = "disconnected"  # the fault a simulation's `sensor` fault injects (simulator/faults.py)
ADS1115_VOLTS_PER_CODE = 4.096 / 32768  # a probe on an ADS1115 reads it at +-4.096 V


def key(s):
    if "pin" in s:
        return ("adc", s["pin"])
    return _ads1115().chip_key(s["adc"]["bus"], s["adc"]["address"])


def build(s, world):
    if "pin" in s:
        return world.adc(s["pin"])
    return _ads1115().make(world, s["adc"]["bus"], s["adc"]["address"])


def _ads1115():
    # Through the registry: only a probe on an ADS1115 loads that chip's module.
    from hal.chips import virtual
    return virtual("ads1115")


def state(s):
    # A channel of an ADS1115 is a state of its own: two probes on one chip each get a level.
    return ("level", s["adc"]["channel"]) if "adc" in s else s["quantity"]


def set_quantity(s, chip, value):
    cal = s["calibration"]
    raw = cal["raw_empty"] + (cal["raw_full"] - cal["raw_empty"]) * value / 100.0
    if "adc" in s:
        chip.volts[s["adc"]["channel"]] = raw * ADS1115_VOLTS_PER_CODE
    else:
        chip.raw12 = int(raw + 0.5)


def faults(s):
    """A probe can come loose; one on an ADS1115 channel also has that chip's faults (and its
    I2C bus's, hal/sim/i2c.py)."""
    return ("disconnected",) if "pin" in s else ("disconnected", "stall")


def fault(s, chip, kind):
    if kind == "disconnected":
        if "pin" in s:
            chip.disconnected = "low"
        else:
            chip.floating.add(s["adc"]["channel"])
        return True
    if kind == "stall" and "adc" in s:
        chip.stall = True
        return True
    return False
