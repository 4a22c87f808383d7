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
#
# Each chip's virtual part, its default state, its faults and how a quantity sets it live in its
# own module, hal/sim/<driver>.py (hal/chips.py says which).
from hal import chips
from hal.sim.adc import SimADC
from hal.sim.micros import Micros
from hal.sim.pins import SimPin


def fault_kinds(profile, s):
    """The faults SimPlatform.fault() takes for sensor s of a compiled profile: its bus's, then
    its chip's own."""
    place = chips.place(s)
    out = ()
    if "bus" in place:
        kind = [b["type"] for b in profile.get("buses") or () if b["id"] == place["bus"]]
        if kind == ["i2c"]:
            from hal.sim.i2c import FAULTS
        else:
            from hal.sim.uart import FAULTS
        out = FAULTS
    return out + tuple(chips.virtual(s["driver"]).faults(s))


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
        self.sensors = {}    # sensor name -> (sensor dict, its chip's module, virtual chip)
        self.micros = Micros()  # the virtual chips' time: drivers time their pulses on it
        self.ticks_us = self.micros.ticks_us
        # Drivers' timeouts on the same virtual time, which a poll (sleep_ms, a no-op here) does
        # not move: they end by their poll counts, never by how busy the machine is.
        self.ticks_ms = lambda: self.micros.now // 1000
        for s in profile["sensors"]:
            sim = chips.virtual(s["driver"])
            self.sensors[s["name"]] = (s, sim, self._shared(sim.key(s), s, sim))
        done = []
        for s in profile["sensors"]:
            # Two sensors that set the same state of one chip (a pill count and a weight on one
            # load cell): the first one's default wins.
            _, sim, chip = self.sensors[s["name"]]
            key = (id(chip), sim.state(s))
            if key not in done:
                done.append(key)
                self.set(s["name"], sim.DEFAULTS[s["quantity"]])

    # -- the platform interface (hal/board.py) -------------------------------------------------

    def i2c(self, spec):
        return self._bus(spec["id"], "i2c")

    def uart(self, spec, timeout_ms=None):
        return self._bus(spec["id"], "uart")

    def pin_in(self, n, pull=None):
        return self.pin(n)

    def pin_out(self, n, value=0):
        p = self.pin(n)
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

    def pin(self, n):
        """The simulated GPIO n, made on first use (a chip's build() wires its pins so)."""
        if n not in self.pins:
            self.pins[n] = SimPin(n)
        return self.pins[n]

    def _shared(self, key, s, sim):
        if key not in self.chips:
            self.chips[key] = sim.build(s, self)
        return self.chips[key]

    # -- what a chip's build() (hal/sim/<driver>.py) asks of the platform ----------------------

    def attach_i2c(self, bus, address, chip):
        self._bus(bus, "i2c").attach(address, chip)

    def attach_uart(self, bus, device):
        """One more Modbus device on the line, answering its own address."""
        self._bus(bus, "uart").device.devices.append(device)

    # -- faults -------------------------------------------------------------------------------

    def fault(self, sensor, kind):
        """Breaks the part behind a sensor until clear(): a fault of the bus its chip is on
        (hal/sim/i2c.py's or hal/sim/uart.py's FAULTS) or one of the chip itself (its module's
        faults(s)); fault_kinds() lists them."""
        s, sim, chip = self.sensors[sensor]
        place = chips.place(s)
        if "bus" in place and self._bus_fault(self.buses[place["bus"]], place["address"], kind):
            return
        if not sim.fault(s, chip, kind):
            raise ValueError("no fault %r for %s (%s): its faults are %s" % (
                kind, sensor, s["driver"], ", ".join(fault_kinds(self.profile, s))))

    def _bus_fault(self, bus, address, kind):
        # Each bus's own list of faults, imported here: only fault injection needs them.
        if hasattr(bus, "inject"):
            from hal.sim.uart import FAULTS
            if kind in FAULTS:
                bus.inject(kind, None)
                return True
            return False
        from hal.sim.i2c import FAULTS
        if kind in FAULTS:
            bus.fault(kind, address)
            return True
        return False

    def clear(self, sensor):
        s, _, chip = self.sensors[sensor]
        place = chips.place(s)
        if "bus" in place:
            self.buses[place["bus"]].clear()
        clear = getattr(chip, "clear", None)  # a virtual chip ends its own faults
        if clear is not None:
            clear()

    # -- physical quantities ------------------------------------------------------------------

    def set(self, sensor, value):
        """Makes the sensor's chip see the quantity `value`, in the sensor's unit."""
        s, sim, chip = self.sensors[sensor]
        sim.set_quantity(s, chip, value)
