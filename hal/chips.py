# The chip registry: a driver name -> its modules (driver in hal/drivers, virtual chip in
# hal/sim). `tether build` ships only the modules of the chips a compiled profile uses. Portable.

NAMES = ("ads1115", "hx711", "ina219", "level_probe", "pzem004t")
NO_VIRTUAL_CHIP = ("level_probe",)  # reads a board ADC pin (hal/sim/adc.py) or an ADS1115


def _chips(sensor):
    if sensor["driver"] == "level_probe" and "adc" in sensor:
        return ("level_probe", "ads1115")
    return (sensor["driver"],)


def modules(profile, sim=False):
    """Sorted dotted names of the chip modules the profile's sensors use; with sim, their
    virtual chips too. Helper modules the chips import are not listed."""
    out = set()
    for sensor in profile["sensors"]:
        for name in _chips(sensor):
            out.add("hal.drivers." + name)
            if sim and name not in NO_VIRTUAL_CHIP:
                out.add("hal.sim." + name)
    return sorted(out)
