# The profile's chips on a platform (hal/esp32.py, hal/linux, hal/sim/platform.py): one driver
# per chip, shared by the sensors that read quantities of the same chip, so that the sampler
# reads a PZEM-004T's power, energy and voltage with one Modbus request.
#
# Drivers are imported only when the profile uses them, and nothing is set up here: the
# sampler calls setup() before a chip's first reading and again after a fault.

UART_TIMEOUT_MS = 50  # per read() call; the PZEM-004T driver keeps its own deadline


def where(sensor):
    """The profile's name for a sensor's place, as drivers put it in their errors."""
    d = sensor["driver"]
    if "bus" in sensor:
        return "%s:%s" % (sensor["bus"], ("0x%02x" % sensor["address"]) if d != "pzem004t"
                          else sensor["address"])
    if "pins" in sensor:
        return "pins %d/%d" % (sensor["pins"]["dout"], sensor["pins"]["sck"])
    if "pin" in sensor:
        return "pin %d" % sensor["pin"]
    adc = sensor["adc"]
    return "%s:0x%02x AIN%d" % (adc["bus"], adc["address"], adc["channel"])


def drivers(profile, platform):
    """[driver of sensor i] for the profile's sensors, on platform."""
    specs = {}
    for b in profile["buses"]:
        specs[b["id"]] = b
    opened = {}
    chips = {}
    sleep_ms = getattr(platform, "sleep_ms", None)
    ticks_ms = getattr(platform, "ticks_ms", None)  # a platform's own time (the simulated one)
    ticks_us = getattr(platform, "ticks_us", None)

    def bus(name):
        if name not in opened:
            spec = specs[name]
            opened[name] = (platform.i2c(spec) if spec["type"] == "i2c"
                            else platform.uart(spec, UART_TIMEOUT_MS))
        return opened[name]

    def ads1115(bus_name, address):
        key = ("ads1115", bus_name, address)
        if key not in chips:
            from hal.drivers.ads1115 import ADS1115
            chips[key] = ADS1115(bus(bus_name), "%s:0x%02x" % (bus_name, address),
                                 address=address, sleep_ms=sleep_ms)
        return chips[key]

    out = []
    for s in profile["sensors"]:
        d = s["driver"]
        cal = s.get("calibration", {})
        at = where(s)
        if d == "ina219":
            key = (d, s["bus"], s["address"])
            if key not in chips:
                from hal.drivers.ina219 import INA219
                chips[key] = INA219(bus(s["bus"]), at, address=s["address"],
                                    shunt_ohms=cal.get("shunt_ohms", 0.1),
                                    max_current=cal.get("max_current", 3.2), sleep_ms=sleep_ms)
        elif d == "pzem004t":
            key = (d, s["bus"], s["address"])
            if key not in chips:
                from hal.drivers.pzem004t import PZEM004T
                chips[key] = PZEM004T(bus(s["bus"]), at, address=s["address"], sleep_ms=sleep_ms,
                                      ticks_ms=ticks_ms)
        elif d == "hx711":
            key = (d, s["pins"]["dout"], s["pins"]["sck"])
            if key not in chips:
                from hal.drivers.hx711 import HX711
                chips[key] = HX711(platform.pin_in(s["pins"]["dout"]),
                                   platform.pin_out(s["pins"]["sck"]), at, gain=s.get("gain", 128),
                                   tare=cal.get("tare", 0), scale=cal.get("scale", 1),
                                   pill_weight=cal.get("pill_weight"), sleep_ms=sleep_ms,
                                   ticks_us=ticks_us, ticks_ms=ticks_ms)
        elif d == "ads1115":
            # One driver per channel: each sensor keeps its own channel and gain.
            key = (d, s["bus"], s["address"], s.get("channel", 0))
            if key not in chips:
                from hal.drivers.ads1115 import ADS1115
                chips[key] = ADS1115(bus(s["bus"]), at, address=s["address"],
                                     channel=s.get("channel", 0), gain=cal.get("gain", 2.048),
                                     sleep_ms=sleep_ms)
        elif d == "level_probe":
            from hal.drivers.level_probe import LevelProbe
            if "pin" in s:
                key = (d, s["pin"])
                if key not in chips:
                    chips[key] = LevelProbe(platform.adc(s["pin"]), at, cal["raw_empty"],
                                            cal["raw_full"])
            else:
                adc = s["adc"]
                key = (d, adc["bus"], adc["address"], adc["channel"])
                if key not in chips:
                    chips[key] = LevelProbe(ads1115(adc["bus"], adc["address"]), at,
                                            cal["raw_empty"], cal["raw_full"],
                                            channel=adc["channel"])
        else:
            raise ValueError("no driver %r" % d)
        out.append(chips[key])
    return out
