# The chips a profile can name, one line each. A chip is one predictable set of files, named by
# its driver name in profiles:
#
#   hal/drivers/<name>.py             its driver, and how it is built from a compiled sensor
#   hal/sim/<name>.py                 its virtual chip, its faults, how a quantity sets it
#   firmware/profile/chips/<name>.py  its profile schema entry, the only owner of its defaults
#   tests/portable/test_<name>.py     its tests
#
# Adding a chip is those files and a line here (docs/drivers.md). A line's value maps a key of
# the sensor to the chip found there: a level probe's `adc:` is a channel of an ADS1115, so the
# probe needs that chip's driver, and its address is that chip's. The order is the one profiles'
# errors list the drivers in.
#
# Portable. A chip's modules are imported only when asked for: a board loads the drivers its
# profile names and no others.
CHIPS = {
    "ina219": {},
    "pzem004t": {},
    "hx711": {},
    "ads1115": {},
    "level_probe": {"adc": "ads1115"},
    "sht3x": {},
}


def _module(package, name):
    if name not in CHIPS:
        raise ValueError("no driver %r" % (name,))
    return __import__(package + "." + name, None, None, (name,))


def driver(name):
    """hal.drivers.<name>: key(sensor), where(sensor), build(sensor, ctx) (hal/board.py)."""
    return _module("hal.drivers", name)


def virtual(name):
    """hal.sim.<name>: key, build, DEFAULTS, state, set_quantity, faults, fault, FAULT
    (hal/sim/platform.py)."""
    return _module("hal.sim", name)


def needs(sensor):
    """The chips a sensor reads through: its own, then those its place is on."""
    name = sensor["driver"]
    if name not in CHIPS:
        raise ValueError("no driver %r" % (name,))
    out = [name]
    for key in CHIPS[name]:
        if key in sensor:
            out.append(CHIPS[name][key])
    return out


def place(sensor):
    """The mapping that holds the bus and address of the chip a sensor reads: the sensor itself,
    or its key that names another chip (a level probe's `adc:`)."""
    for key in CHIPS.get(sensor["driver"], ()):
        if key in sensor:
            return sensor[key]
    return sensor


def modules(profile, sim=False):
    """Sorted dotted names of the driver modules a compiled profile uses (with sim=True also
    their virtual chips): the chips themselves, not the helpers they import."""
    names = []
    for s in profile["sensors"]:
        for name in needs(s):
            if name not in names:
                names.append(name)
    out = ["hal.drivers." + n for n in names]
    if sim:
        out += ["hal.sim." + n for n in names]
    return sorted(out)
