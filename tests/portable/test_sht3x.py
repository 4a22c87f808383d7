# SHT3x driver (hal/drivers/sht3x.py) against the datasheet (Sensirion SHT3x-DIS) and against the
# virtual chip (hal/sim/sht3x.py) on the simulated bus, with every error path.
# Runs under CPython and under MicroPython.
from hal.bus import SensorError
from hal.drivers.sht3x import SHT3x, celsius, crc8, humidity
from hal.sim.i2c import SimI2C
from hal.sim.sht3x import SimSHT3x
from i2ckit import Sleeps, close
from support import raises

ADDR = 0x44
WHERE = "i2c0:0x44"


def rig(t=21.0, rh=45.0, repeatability="high", record=False):
    bus = SimI2C("i2c0", record=record)
    chip = bus.attach(ADDR, SimSHT3x(t, rh))
    sleeps = Sleeps()
    sht = SHT3x(bus, WHERE, address=ADDR, repeatability=repeatability, sleep_ms=sleeps)
    return bus, chip, sht, sleeps


class Script:
    """A scripted chip: acknowledges every command, answers each read with the next reply."""

    def __init__(self, replies):
        self.replies = list(replies)

    def write(self, reg, data):
        pass

    def read(self, reg, n):
        return self.replies.pop(0)


# -- the datasheet's numbers ---------------------------------------------------------------------
def test_crc8_of_the_datasheets_example_0xbeef_is_0x92():
    assert crc8(b"\xbe\xef") == 0x92
    assert crc8(b"\x00\x00") == 0x81


def test_codes_to_celsius_and_percent():
    # T = -45 + 175 x S / (2^16 - 1), RH = 100 x S / (2^16 - 1)
    assert celsius(0) == -45.0 and celsius(0xFFFF) == 130.0
    assert close(celsius(0x6666), -45 + 175 * 0.4, 1e-9)
    assert humidity(0) == 0.0 and humidity(0xFFFF) == 100.0
    assert close(humidity(0x8000), 50.0, 0.001)


def test_a_measurement_is_its_command_a_wait_then_six_bytes_with_two_crcs():
    reply = b"\x66\x66" + bytes((crc8(b"\x66\x66"),)) + b"\x80\x00" + bytes((crc8(b"\x80\x00"),))
    bus = SimI2C(record=True)
    bus.attach(ADDR, Script([reply]))
    sleeps = Sleeps()
    got = SHT3x(bus, WHERE, sleep_ms=sleeps).measure()
    assert close(got["temperature"], 25.0, 1e-9) and close(got["humidity"], 50.0, 0.001)
    # single shot, high repeatability, no clock stretching: 0x2400, then at least 15 ms
    assert bus.transfers[0] == ("w", ADDR, None, b"\x24\x00")
    assert bus.transfers[1] == ("r", ADDR, None, reply)
    assert sleeps.calls == [15]
    for rep, cmd, ms in (("medium", b"\x24\x0b", 6), ("low", b"\x24\x16", 4)):
        bus = SimI2C(record=True)
        bus.attach(ADDR, Script([reply]))
        sleeps = Sleeps()
        SHT3x(bus, WHERE, repeatability=rep, sleep_ms=sleeps).measure()
        assert bus.transfers[0][3] == cmd and sleeps.calls == [ms]


def test_setup_resets_the_chip_and_reads_its_status_word():
    bus, chip, sht, sleeps = rig(record=True)
    sht.setup()
    assert [x[3] for x in bus.transfers if x[0] == "w"] == [b"\x30\xa2", b"\xf3\x2d"]
    assert sleeps.calls == [2]      # the soft reset's 1.5 ms


# -- against the virtual chip --------------------------------------------------------------------
def test_the_virtual_chip_reads_back_what_it_was_set_to_at_its_resolution():
    for t, rh in ((21.0, 45.0), (-18.5, 80.0), (4.0, 0.0), (60.25, 100.0)):
        bus, chip, sht, sleeps = rig(t, rh)
        sht.setup()
        got = sht.measure()
        assert close(got["temperature"], t, 175 / 65535.0) and close(got["humidity"], rh,
                                                                     100 / 65535.0)


def test_a_measurement_still_under_way_is_polled_until_its_bytes_come():
    bus, chip, sht, sleeps = rig(4.0, 55.0)
    chip.busy_reads = 3     # three reads not acknowledged
    assert close(sht.measure()["temperature"], 4.0, 0.003)
    assert sleeps.calls == [15, 1, 1, 1]


# -- faults --------------------------------------------------------------------------------------
def test_a_missing_chip_is_a_nack_at_setup_and_at_measure():
    bus = SimI2C()
    sht = SHT3x(bus, WHERE, sleep_ms=Sleeps())
    for call in (sht.setup, sht.measure):
        err = raises(SensorError, call)
        assert err.kind == "nack" and str(err) == "SHT3x at i2c0:0x44 did not acknowledge"


def test_a_measurement_that_never_completes_is_a_timeout():
    bus, chip, sht, sleeps = rig()
    chip.stall = True
    err = raises(SensorError, sht.measure)
    assert err.kind == "timeout"
    assert str(err) == "SHT3x at i2c0:0x44 did not finish a measurement within 25 ms"
    chip.clear()
    assert close(sht.measure()["humidity"], 45.0, 0.002)


def test_a_wrong_crc_is_a_crc_error_never_a_reading():
    bus, chip, sht, sleeps = rig()
    chip.bad_crc = True
    for call in (sht.setup, sht.measure):
        err = raises(SensorError, call)
        assert err.kind == "crc" and "CRC does not match" in str(err)
    # a bus pulled high (0xFF everywhere) is no reading either: 0xFF is not 0xFFFF's CRC
    bus = SimI2C()
    bus.attach(ADDR, Script([b"\xff" * 6]))
    assert raises(SensorError, SHT3x(bus, WHERE, sleep_ms=Sleeps()).measure).kind == "crc"


def test_noise_on_the_bus_is_caught_by_the_crc():
    bus, chip, sht, sleeps = rig()
    bus.fault("noise", rate=1.0)
    err = raises(SensorError, sht.measure)
    assert err.kind == "crc"


def test_a_stuck_bus_and_a_short_reply_are_said_as_such():
    bus, chip, sht, sleeps = rig()
    bus.fault("stuck")
    assert raises(SensorError, sht.measure).kind == "stuck"
    bus = SimI2C()
    bus.attach(ADDR, Script([b"\x66\x66\x93"]))
    err = raises(SensorError, SHT3x(bus, WHERE, sleep_ms=Sleeps()).measure)
    assert err.kind == "reply" and "answered 3 bytes, not 6" in str(err)


def test_a_repeatability_it_does_not_have_is_refused():
    err = raises(ValueError, SHT3x, SimI2C(), WHERE, ADDR, "highest")
    assert "high, medium or low" in str(err)
