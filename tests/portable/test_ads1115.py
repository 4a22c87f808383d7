# ADS1115 driver (hal/drivers/ads1115.py) against the datasheet (TI SBAS444) and against the
# virtual chip (hal/sim/ads1115.py) on the simulated bus, with every error path.
# Runs under CPython and under MicroPython.
from hal.bus import SensorError
from hal.drivers.ads1115 import ADS1115, config_word, volts
from hal.sim.ads1115 import SimADS1115
from hal.sim.i2c import SimI2C
from hal.sim.ina219 import SimINA219
from i2ckit import FlipBus, Regs, Sleeps, close
from support import raises

ADDR = 0x48
WHERE = "i2c0:0x48"


def rig(v=(0.0, 0.0, 0.0, 0.0), channel=0, gain=2.048, record=False):
    bus = SimI2C("i2c0", record=record)
    chip = bus.attach(ADDR, SimADS1115(v))
    adc = ADS1115(bus, WHERE, address=ADDR, channel=channel, gain=gain, sleep_ms=Sleeps())
    return bus, chip, adc


# -- the datasheet's numbers ---------------------------------------------------------------------
def test_config_word_for_channel_2_at_4_096_V_single_shot_is_0xE383():
    # OS 1 | MUX 110 (AIN2-GND) | PGA 001 (+-4.096 V) | MODE 1 | DR 100 (128 SPS) | COMP_QUE 11
    assert config_word(2, 4.096) == 0b1110_0011_1000_0011 == 0xE383
    assert config_word(2, 4.096, start=False) == 0x6383
    # power-on default 0x8583 is AIN0-AIN1 at 2.048 V; ours for AIN0-GND differs only in MUX
    assert config_word(0, 2.048) == 0xC583


def test_driver_writes_the_config_bytes_then_polls_and_reads_the_conversion():
    bus, chip, adc = rig(v=(0, 0, 1.0, 0), channel=2, gain=4.096, record=True)
    adc.measure()
    assert bus.transfers[0] == ("w", ADDR, 0x01, b"\xe3\x83")
    assert [(op, reg) for (op, a, reg, d) in bus.transfers[1:]] == [
        ("r", 0x01), ("r", 0x01), ("r", 0x00), ("r", 0x00)]


def test_codes_to_volts_at_4_096_V():
    # LSB = FSR / 2^15 = 125 uV. 0x7FFF = +FS x (2^15-1)/2^15, 0x0001 = +1 LSB, 0x8000 = -FS,
    # 0xFFFF = -1 LSB.
    assert close(volts(0x7FFF, 4.096), 4.095875, 1e-12)
    assert close(volts(0x0001, 4.096), 0.000125, 1e-15)
    assert close(volts(0x8000 - 0x10000, 4.096), -4.096, 1e-12)
    assert close(volts(0xFFFF - 0x10000, 4.096), -0.000125, 1e-15)


def test_measure_turns_register_codes_into_volts_and_clipped_codes_into_range_errors():
    for code, want in ((0x0001, 0.000125), (0xFFFF, -0.000125), (0x6000, 3.072),
                       (0x7FFE, 4.09575)):
        bus = SimI2C()
        bus.attach(ADDR, Regs({0: code, 1: 0xE383}))
        adc = ADS1115(bus, WHERE, channel=2, gain=4.096, sleep_ms=Sleeps())
        assert close(adc.measure()["voltage"], want, 1e-9)
    for code in (0x7FFF, 0x8000):
        bus = SimI2C()
        bus.attach(ADDR, Regs({0: code, 1: 0xE383}))
        adc = ADS1115(bus, WHERE, channel=2, gain=4.096, sleep_ms=Sleeps())
        err = raises(SensorError, adc.measure)
        assert err.kind == "range"
        assert str(err).startswith("ADS1115 at i2c0:0x48 input 2 is beyond the +-4.096 V")


# -- against the virtual chip --------------------------------------------------------------------
def test_each_channel_reads_its_own_input_at_its_gain():
    v = (0.5, 1.0, 1.5, 3.0)
    for ch in range(4):
        for gain in (6.144, 4.096):
            bus, chip, adc = rig(v=v, channel=ch, gain=gain)
            adc.setup()
            assert close(adc.measure()["voltage"], v[ch], gain / 32768)
    bus, chip, adc = rig(v=v, channel=1, gain=1.024)
    assert close(adc.measure()["voltage"], 1.0, 1.024 / 32768)
    assert chip.conversions == 1


def test_pga_sets_the_resolution_and_the_code():
    bus, chip, adc = rig(v=(0.2, 0, 0, 0))
    for gain, code in ((6.144, 1067), (2.048, 3200), (0.256, 25600)):
        assert adc.read_raw(0, gain) == code


def test_input_beyond_full_scale_saturates_and_is_a_range_error():
    bus, chip, adc = rig(v=(3.0, 0, 0, 0), gain=2.048)
    assert adc.read_raw(0) == 32767
    err = raises(SensorError, adc.measure)
    assert err.kind == "range"
    chip.volts[0] = -0.3  # below GND: negative codes, clipped at -FS for a small range
    assert adc.read_raw(0, 0.256) == -32768
    assert adc.read_raw(0, 4.096) == -2400


def test_driver_polls_until_the_conversion_completes():
    bus, chip, adc = rig(v=(1.0, 0, 0, 0))
    chip.busy_reads = 5
    assert close(adc.measure()["voltage"], 1.0, 0.0001)
    assert adc._sleep.calls == [9, 1, 1, 1, 1, 1]


def test_setup_writes_the_config_without_starting_a_conversion():
    bus, chip, adc = rig(channel=3, gain=0.512, record=True)
    adc.setup()
    assert bus.transfers[0] == ("w", ADDR, 0x01, b"\x79\x83")
    assert chip.conversions == 0


def test_virtual_chip_power_on_registers_and_continuous_mode():
    bus = SimI2C()
    chip = bus.attach(ADDR, SimADS1115((1.2, 0.2, 0, 0)))
    assert bus.readfrom_mem(ADDR, 0x01, 2) == b"\x85\x83"
    assert bus.readfrom_mem(ADDR, 0x00, 2) == b"\x00\x00"
    assert bus.readfrom_mem(ADDR, 0x02, 2) == b"\x80\x00"
    assert bus.readfrom_mem(ADDR, 0x03, 2) == b"\x7f\xff"
    bus.writeto_mem(ADDR, 0x01, b"\x04\x83")  # MODE 0: continuous, AIN0-AIN1 at 2.048 V
    assert bus.readfrom_mem(ADDR, 0x00, 2) == b"\x3e\x80"  # 1.0 V = 16000
    chip.volts[1] = 0.7
    assert bus.readfrom_mem(ADDR, 0x00, 2) == b"\x1f\x40"  # 0.5 V = 8000


# -- errors --------------------------------------------------------------------------------------
def test_nack_at_setup_names_chip_bus_and_address():
    adc = ADS1115(SimI2C(), WHERE, sleep_ms=Sleeps())
    err = raises(SensorError, adc.setup)
    assert str(err) == "ADS1115 at i2c0:0x48 did not acknowledge"
    assert err.kind == "nack"


def test_nack_at_measure_then_recovers():
    bus, chip, adc = rig(v=(1.0, 0, 0, 0))
    adc.setup()
    bus.fault("nack", address=ADDR, times=1)
    err = raises(SensorError, adc.measure)
    assert (str(err), err.kind) == ("ADS1115 at i2c0:0x48 did not acknowledge", "nack")
    assert close(adc.measure()["voltage"], 1.0, 0.0001)


def test_stuck_bus_is_reported_as_stuck():
    bus, chip, adc = rig(v=(1.0, 0, 0, 0))
    bus.fault("stuck")
    err = raises(SensorError, adc.measure)
    assert err.kind == "stuck"
    assert str(err).startswith("ADS1115 at i2c0:0x48 did not answer")


def test_conversion_that_never_completes_is_a_timeout():
    bus, chip, adc = rig(v=(1.0, 0, 0, 0))
    adc.setup()
    chip.stall = True
    err = raises(SensorError, adc.measure)
    assert err.kind == "timeout"
    assert str(err) == ("ADS1115 at i2c0:0x48 did not finish a conversion within 29 ms "
                        "(OS stayed 0)")
    assert adc._sleep.total() == 29


def test_another_chip_at_the_address_fails_setup():
    bus = SimI2C()
    bus.attach(ADDR, SimINA219())  # register 01 is the INA219's read-only shunt voltage
    err = raises(SensorError, ADS1115(bus, WHERE, sleep_ms=Sleeps()).setup)
    assert err.kind == "reply"
    assert str(err).startswith("ADS1115 at i2c0:0x48 did not keep its config")


def test_every_single_bit_flip_on_any_read_is_detected_or_harmless():
    # Reads: 0 and 1 the config (OS poll, twice idle), 2 and 3 the conversion register. A flip
    # in the config is caught (or, on OS, costs one more poll); a flip in either conversion read
    # makes the two differ.
    for nth in range(4):
        for bit in range(16):
            bus, chip, adc = rig(v=(1.5, 0, 0, 0), gain=4.096)
            adc.bus = FlipBus(bus, nth, bit)
            try:
                got = adc.measure()
            except SensorError as exc:
                assert exc.kind == "reply"
                assert str(exc).startswith("ADS1115 at i2c0:0x48 ")
                continue
            assert bit == 15 and nth < 2, (nth, bit)
            assert close(got["voltage"], 1.5, 0)


def noisy_codes(rate, seeds=40, per_seed=20):
    """(codes read, the wrong ones, number of errors) for 2.5 V on AIN0 at 4.096 V (code 20000),
    with a bit flipped in `rate` of the reads. Only the wrong codes are kept: a list of all 800
    would not find a contiguous 8 KB in a 64k heap."""
    n = 0
    wrong = []
    errors = 0
    for seed in range(1, seeds + 1):
        bus = SimI2C(seed=seed)
        bus.attach(ADDR, SimADS1115((2.5, 0, 0, 0)))
        adc = ADS1115(bus, WHERE, gain=4.096, sleep_ms=Sleeps())
        bus.fault("noise", address=ADDR, rate=rate)
        for _ in range(per_seed):
            try:
                code = adc.read_raw(0)
            except SensorError as exc:
                assert exc.kind in ("reply", "timeout")
                errors += 1
                continue
            n += 1
            if code != 20000:
                wrong.append(code)
    return n, wrong, errors


def test_noise_on_5_percent_of_reads_gives_errors_or_the_right_code():
    n, wrong, errors = noisy_codes(0.05)
    assert errors > 0
    assert wrong == [] and n > 3 * errors


def test_noise_gets_through_only_as_the_same_bit_flipped_in_both_conversion_reads():
    # At a flip in half the reads, a wrong code needs both conversion reads flipped at the same
    # bit (1/4 x 1/16, after two clean config reads): rare, and off by exactly one bit.
    n, wrong, errors = noisy_codes(0.5)
    assert len(wrong) <= (n + errors) // 100
    for c in wrong:
        diff = (c ^ 20000) & 0xFFFF
        assert diff & (diff - 1) == 0
