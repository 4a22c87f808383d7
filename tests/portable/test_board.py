# hal/board.py over hal/sim/platform.py: a compiled profile's sensors become the real drivers on
# virtual chips, one driver per chip, reading back what the virtual world holds; faults reach
# the right sensor only. Both interpreters.
#
# All five drivers and five virtual chips (a board loads only its own drivers, never hal/sim)
# and the compiled profile do not fit together in 64k on the 64-bit unix port: 128k.
MICROPYTHON_HEAP = "136k"
from all_drivers import PROFILE
from hal import chips
from hal.board import drivers
from hal.bus import SensorError
from hal.sim.platform import SimPlatform, fault_kinds
from support import raises


def built():
    platform = SimPlatform(PROFILE)
    return platform, drivers(PROFILE, platform)


def value(src, sensor):
    src.setup()
    return src.measure()[sensor["quantity"]]


def test_sensors_of_one_chip_share_one_driver_and_others_do_not():
    _, ds = built()
    names = [s["name"] for s in PROFILE["sensors"]]
    d = dict(zip(names, ds))
    assert d["mains"] is d["energy"]       # one PZEM-004T
    assert d["pills"] is d["weight"]       # one HX711
    assert d["power"] is not d["mains"]
    # one driver per chip, whatever chips the shared profile holds
    assert len(set(id(x) for x in ds)) == len(set(chips.driver(s["driver"]).key(s)
                                                  for s in PROFILE["sensors"]))


def test_every_driver_reads_back_the_virtual_worlds_quantities():
    platform, ds = built()
    world = {"power": 18.0, "mains": 1150.0, "energy": 20000, "pills": 42, "weight": 21.0,
             "volts": 2.5, "ink_c": 14.0, "ink_k": 80.0}
    for s in PROFILE["sensors"]:
        # weight and pills are the same grams: set pills; a chip added since reads its DEFAULTS
        # (tests/test_chips.py)
        if s["name"] in world and s["name"] != "weight":
            platform.set(s["name"], world[s["name"]])
    got = {}
    for s, src in zip(PROFILE["sensors"], ds):
        got[s["name"]] = value(src, s)
    assert abs(got["power"] - 18.0) < 0.05
    assert abs(got["mains"] - 1150.0) < 0.05 and got["energy"] == 20000
    assert got["pills"] == 42 and abs(got["weight"] - 42 * 0.45) < 0.01
    assert abs(got["volts"] - 2.5) < 0.001
    assert abs(got["ink_c"] - 14.0) < 0.1 and abs(got["ink_k"] - 80.0) < 0.1


def test_a_fault_breaks_only_the_sensor_behind_it_with_a_message_naming_the_place():
    platform, ds = built()
    platform.fault("power", "nack")
    platform.fault("mains", "timeout")
    sensors = PROFILE["sensors"]
    exc = raises(SensorError, value, ds[0], sensors[0])
    assert str(exc) == "INA219 at i2c0:0x40 did not acknowledge" and exc.kind == "nack"
    exc = raises(SensorError, value, ds[1], sensors[1])
    assert exc.kind == "timeout" and str(exc).startswith("PZEM-004T at uart1:1 ")
    assert value(ds[5], sensors[5]) == 1.0   # the ADS1115 on the same I2C bus still answers
    platform.clear("power")
    assert abs(value(ds[0], sensors[0]) - 3.5) < 0.05


def test_chip_faults_of_the_load_cell_and_the_probes():
    platform, ds = built()
    sensors = PROFILE["sensors"]
    platform.fault("pills", "no_chip")
    assert raises(SensorError, value, ds[3], sensors[3]).kind == "timeout"
    platform.fault("ink_c", "disconnected")
    assert raises(SensorError, value, ds[6], sensors[6]).kind == "disconnected"
    platform.fault("ink_k", "stall")
    assert raises(SensorError, value, ds[7], sensors[7]).kind == "timeout"
    raises(ValueError, platform.fault, "power", "no_chip")
    for i, name in ((3, "pills"), (6, "ink_c"), (7, "ink_k")):  # each chip ends its own fault
        platform.clear(name)
        assert isinstance(value(ds[i], sensors[i]), (int, float)), name


def test_every_chips_own_simulated_failure_is_a_sensor_error_of_its_driver():
    # The fault a simulation's `sensor` fault injects (its virtual chip's FAULT): a driver that
    # swallowed it and returned a number would pass every read-back test.
    for i, s in enumerate(PROFILE["sensors"]):
        platform, ds = built()
        platform.fault(s["name"], chips.virtual(s["driver"]).FAULT)
        exc = raises(SensorError, value, ds[i], s)
        assert exc.kind, s["name"]


def test_each_fault_a_sensor_lists_is_taken_and_ends_at_clear():
    for i, s in enumerate(PROFILE["sensors"]):
        kinds = fault_kinds(PROFILE, s)
        assert kinds, s["name"]
        for kind in kinds:
            platform, ds = built()
            platform.fault(s["name"], kind)
            try:
                value(ds[i], s)     # a fault may let a read through (noise), or fail it
            except SensorError:     # as a sensor's failure: anything else is a driver's bug
                pass
            except Exception as exc:
                raise AssertionError("%s %s: %r, not a SensorError" % (s["name"], kind, exc))
            platform.clear(s["name"])
            assert isinstance(value(ds[i], s), (int, float)), (s["name"], kind)
    platform, _ = built()
    exc = raises(ValueError, platform.fault, "power", "no_chip")
    assert str(exc) == "no fault 'no_chip' for power (ina219): its faults are nack, stuck, noise"
    assert fault_kinds(PROFILE, PROFILE["sensors"][1]) == (
        "timeout", "bad_crc", "noise", "garbage", "short")


def test_where_names_each_kind_of_place_as_errors_do():
    assert [chips.driver(s["driver"]).where(s) for s in PROFILE["sensors"]] == [
        "i2c0:0x40", "uart1:1", "uart1:1", "pins 4/5", "pins 4/5", "i2c0:0x48", "pin 34",
        "i2c0:0x48 AIN2", "i2c0:0x44", "i2c0:0x44"]


def test_a_bus_that_cannot_be_opened_fails_its_sensors_until_it_can_be():
    # One unplugged USB serial adapter stopped the whole agent; now its sensors fail with the
    # platform's words and each retry tries the bus again.
    from hal.unopened import BusError

    class Unplugged(SimPlatform):
        uart_ok = False

        def uart(self, spec, timeout_ms=None):
            if not self.uart_ok:
                raise OSError(2, "cannot open UART /dev/ttyUSB0: unplugged")
            return SimPlatform.uart(self, spec, timeout_ms)

    platform = Unplugged(PROFILE)
    ds = drivers(PROFILE, platform)
    sensors = PROFILE["sensors"]
    mains = [i for i in range(len(sensors)) if sensors[i]["name"] == "mains"][0]
    exc = raises(BusError, value, ds[mains], sensors[mains])
    assert (str(exc), exc.kind) == ("cannot open UART /dev/ttyUSB0: unplugged", "bus")
    platform.set("power", 18.0)
    assert abs(value(ds[0], sensors[0]) - 18.0) < 0.05  # the INA219, on I2C, reads
    platform.uart_ok = True                # plugged in: the next setup opens it
    platform.set("mains", 1150.0)
    assert abs(value(ds[mains], sensors[mains]) - 1150.0) < 0.05
