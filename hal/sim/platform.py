# The simulated platform: the buses, pins and ADCs a profile asks for, wired to virtual chips
# (this folder) at the addresses and pins the profile gives, so the real drivers run on them.
#
#   platform = SimPlatform(profile)
#   platform.set("power", 28.4)          # a physical quantity, in the sensor's unit
#   platform.fault("power", "nack")      # a fault, on the sensor's virtual chip
#
# set() turns a sensor's quantity into the chip's physical state through the profile's own
# calibration (a level in % becomes the raw ADC reading between raw_empty and raw_full), so a
# driver reading the chip gives the value back. Portable.
from hal.sim.adc import SimADC
from hal.sim.pins import SimPin

# What a chip holds until someone sets it: a running appliance, half-full cartridges.
INA219_BUS_VOLTS = 12.0
DEFAULTS = {"power": 3.5, "bus_voltage": INA219_BUS_VOLTS, "current": 0.29, "voltage": 230.0,
            "energy": 15230, "frequency": 50.0, "power_factor": 0.95, "weight": 100.0,
            "count": 30, "level": 50.0, "ads1115 voltage": 1.0}
ADS1115_VOLTS_PER_CODE = 4.096 / 32768  # a level probe on an ADS1115 reads it at +-4.096 V


class _Multidrop:
    """Several Modbus devices on one UART line: each answers only its own address."""

    def __init__(self):
        self.devices = []

    def handle(self, frame):
        for d in self.devices:
            reply = d.handle(frame)
            if reply is not None:
                return reply
        return None


class SimPlatform:
    def __init__(self, profile, seed=1):
        self.profile = profile
        self.seed = seed
        self.buses = {}      # bus id -> SimI2C or SimUART
        self.pins = {}       # GPIO number -> SimPin
        self.adcs = {}       # GPIO number -> SimADC
        self.chips = {}      # (kind, place...) -> virtual chip
        self.sensors = {}    # sensor name -> (sensor dict, chip)
        from hal.sim.hx711 import Micros
        self.micros = Micros()  # the virtual chips' time: drivers time their pulses on it
        self.ticks_us = self.micros.ticks_us
        # Drivers' timeouts on the same virtual time, which a poll (sleep_ms, a no-op here) does
        # not move: they end by their poll counts, never by how busy the machine is.
        self.ticks_ms = lambda: self.micros.now // 1000
        specs = {}
        for b in profile["buses"]:
            specs[b["id"]] = b
        for s in profile["sensors"]:
            self.sensors[s["name"]] = (s, self._chip(s, specs))
        done = []
        for s in profile["sensors"]:
            # A pill count and a weight are the same grams on one load cell: the first wins.
            key = (id(self.sensors[s["name"]][1]), "grams" if s["driver"] == "hx711"
                   else s["quantity"])
            if key not in done:
                done.append(key)
                q = s["quantity"]
                self.set(s["name"], DEFAULTS.get(s["driver"] + " " + q, DEFAULTS.get(q, 0)))

    # -- the platform interface (hal/board.py) -------------------------------------------------

    def i2c(self, spec):
        return self._bus(spec["id"], "i2c")

    def uart(self, spec, timeout_ms=None):
        return self._bus(spec["id"], "uart")

    def pin_in(self, n, pull=None):
        return self._pin(n)

    def pin_out(self, n, value=0):
        p = self._pin(n)
        p.value(value)
        return p

    def adc(self, n):
        if n not in self.adcs:
            self.adcs[n] = SimADC()
        return self.adcs[n]

    def sleep_ms(self, ms):
        pass  # conversions are instant here; the simulator's clock is not the wall clock

    def close(self):
        pass

    # -- making the virtual parts -----------------------------------------------------------

    def _bus(self, name, kind):
        if name not in self.buses:
            if kind == "i2c":
                from hal.sim.i2c import SimI2C
                self.buses[name] = SimI2C(name, seed=self.seed)
            else:
                from hal.sim.uart import SimUART
                self.buses[name] = SimUART(name, _Multidrop(), seed=self.seed)
        return self.buses[name]

    def _pin(self, n):
        if n not in self.pins:
            self.pins[n] = SimPin(n)
        return self.pins[n]

    def _shared(self, key, make):
        if key not in self.chips:
            self.chips[key] = make()
        return self.chips[key]

    def _chip(self, s, specs):
        d = s["driver"]
        cal = s.get("calibration", {})
        if d == "ina219":
            def make():
                from hal.sim.ina219 import SimINA219
                chip = SimINA219(shunt_ohms=cal.get("shunt_ohms", 0.1), bus_volts=INA219_BUS_VOLTS)
                self._bus(s["bus"], "i2c").attach(s["address"], chip)
                return chip
            return self._shared((d, s["bus"], s["address"]), make)
        if d == "pzem004t":
            def make():
                from hal.sim.pzem004t import SimPZEM004T
                chip = SimPZEM004T(address=s["address"])
                self._bus(s["bus"], "uart").device.devices.append(chip)
                return chip
            return self._shared((d, s["bus"], s["address"]), make)
        if d == "hx711":
            def make():
                from hal.sim.hx711 import SimHX711
                # The profile calibrates at its gain; the chip gives half the counts at 64.
                k = 2 if s.get("gain", 128) == 64 else 1
                return SimHX711(self._pin(s["pins"]["dout"]), self._pin(s["pins"]["sck"]),
                                tare_raw=k * cal.get("tare", 0),
                                counts_per_gram=k * cal.get("scale", 1), seed=self.seed,
                                micros=self.micros)
            return self._shared((d, s["pins"]["dout"], s["pins"]["sck"]), make)
        if d == "ads1115" or (d == "level_probe" and "adc" in s):
            place = s if d == "ads1115" else s["adc"]

            def make():
                from hal.sim.ads1115 import SimADS1115
                chip = SimADS1115()
                self._bus(place["bus"], "i2c").attach(place["address"], chip)
                return chip
            return self._shared(("ads1115", place["bus"], place["address"]), make)
        if d == "level_probe":
            return self.adc(s["pin"])
        raise ValueError("no virtual chip for driver %r" % d)

    # -- faults -------------------------------------------------------------------------------

    def fault(self, sensor, kind):
        """Breaks the part behind a sensor until clear(): a bus fault at its address ("nack",
        "stuck", "noise" on I2C; "timeout", "bad_crc", "noise", "garbage", "short" on a UART)
        or a chip fault ("disconnected", "no_chip", "dout_low" for an HX711; "disconnected"
        for a level probe on a board ADC; "stall" for an ADS1115 conversion)."""
        # Each part's own list of faults, imported here: only fault injection needs them.
        from hal.sim import hx711, i2c, uart
        s, chip = self.sensors[sensor]
        d = s["driver"]
        place = s.get("adc", s)
        if kind in i2c.FAULTS and "address" in place and d != "pzem004t":
            self.buses[place["bus"]].fault(kind, place["address"])
        elif kind in uart.FAULTS and d == "pzem004t":
            self.buses[s["bus"]].inject(kind, None)
        elif kind in hx711.FAULTS and d == "hx711":
            chip.fault = kind
        elif kind == "disconnected" and d == "level_probe" and "pin" in s:
            chip.disconnected = "low"
        elif kind == "stall" and (d == "ads1115" or "adc" in s):
            chip.stall = True
        else:
            raise ValueError("no fault %r for %s (%s)" % (kind, sensor, d))

    def clear(self, sensor):
        s, chip = self.sensors[sensor]
        place = s.get("adc", s)
        if "bus" in place:
            self.buses[place["bus"]].clear()
        for attr, none in (("fault", None), ("disconnected", None), ("stall", False)):
            if hasattr(chip, attr):
                setattr(chip, attr, none)

    # -- physical quantities ------------------------------------------------------------------

    def set(self, sensor, value):
        """Makes the sensor's chip see the quantity `value`, in the sensor's unit."""
        s, chip = self.sensors[sensor]
        d = s["driver"]
        q = s["quantity"]
        cal = s.get("calibration", {})
        if d == "ina219":
            if q == "power":
                chip.amps = value / chip.bus_volts if chip.bus_volts else 0.0
            elif q == "current":
                chip.amps = value
            elif q == "bus_voltage":
                chip.bus_volts = value
            else:  # shunt_voltage, mV
                chip.amps = value / 1000.0 / chip.shunt_ohms
        elif d == "pzem004t":
            if q == "power":
                chip.watts = value
            elif q == "voltage":
                chip.volts = value
            elif q == "current":
                chip.amps = value
            elif q == "energy":
                chip.wh = value
            elif q == "frequency":
                chip.hz = value
            elif q == "power_factor":
                chip.pf = value
        elif d == "hx711":
            chip.grams = value * cal["pill_weight"] if q == "count" else value
        elif d == "ads1115":
            chip.volts[s.get("channel", 0)] = value
        else:  # level_probe: the raw reading between the calibration points
            raw = cal["raw_empty"] + (cal["raw_full"] - cal["raw_empty"]) * value / 100.0
            if "adc" in s:
                chip.volts[s["adc"]["channel"]] = raw * ADS1115_VOLTS_PER_CODE
            else:
                chip.raw12 = int(raw + 0.5)
