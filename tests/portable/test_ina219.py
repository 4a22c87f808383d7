# INA219 driver (hal/drivers/ina219.py) against the datasheet (TI SBOS448) and against the virtual
# chip (hal/sim/ina219.py) on the simulated bus (hal/sim/i2c.py), with every error path.
# Runs under CPython and under MicroPython.
import errno

from hal.bus import SensorError
from hal.drivers.ina219 import INA219, calibration
from hal.sim.i2c import SimI2C
from hal.sim.ina219 import SimINA219
from i2ckit import FlipBus, Regs, Sleeps, close
from support import raises

ADDR = 0x40
WHERE = "i2c0:0x40"


def rig(amps=0.0, volts=0.0, shunt_ohms=0.1, max_current=3.2, record=False):
    bus = SimI2C("i2c0", record=record)
    chip = bus.attach(ADDR, SimINA219(shunt_ohms=shunt_ohms, amps=amps, bus_volts=volts))
    ina = INA219(bus, WHERE, address=ADDR, shunt_ohms=shunt_ohms, max_current=max_current,
                 sleep_ms=Sleeps())
    return bus, chip, ina


def writes(bus):
    return [(a, r, d) for (op, a, r, d) in bus.transfers if op == "w"]


# -- the datasheet's numbers ---------------------------------------------------------------------
def test_default_profile_0_1_ohm_3_2_A_writes_cal_4096_and_pga_320mV():
    # Current_LSB = 3.2 A / 2^15 = 97.7 uA, rounded up to 100 uA; Cal = 0.04096 / (100 uA x 0.1)
    # = 4096. Config: 32 V range, PGA /8, 12-bit bus and shunt ADC, shunt+bus triggered.
    bus, chip, ina = rig(record=True)
    ina.setup()
    assert writes(bus) == [(ADDR, 0x00, b"\x39\x9b"), (ADDR, 0x05, b"\x10\x00")]
    assert chip.calibration == 4096
    assert close(ina.current_lsb, 0.0001, 1e-12)
    assert close(ina.power_lsb, 0.002, 1e-12)


def test_exact_minimum_lsb_would_give_cal_4194_so_the_rounding_is_what_makes_4096():
    # The datasheet's minimum Current_LSB without rounding: trunc(0.04096 / (3.2/32768 x 0.1)).
    assert int(0.04096 / (3.2 / 32768 * 0.1)) == 4194
    assert calibration(0.1, 3.2)[0] == 4096


def test_datasheet_example_2_mohm_10_A_gives_cal_0x5000_and_pga_40mV():
    # SBOS448 Table 3 (10 A load, 2 mohm shunt, 40 mV shunt range): Calibration = 5000h = 20480,
    # Current_LSB 1 mA, Power_LSB 20 mW. Our config differs from its 019Fh only in the 32 V bus
    # range (bit 13) and the triggered mode (3, not 7).
    cal, pga, lsb = calibration(0.002, 10)
    assert (cal, pga) == (0x5000, 0)
    assert close(lsb, 0.001, 1e-12)
    bus, chip, ina = rig(shunt_ohms=0.002, max_current=10, record=True)
    ina.setup()
    assert writes(bus) == [(ADDR, 0x00, b"\x21\x9b"), (ADDR, 0x05, b"\x50\x00")]


def test_datasheet_table3_register_contents_give_its_engineering_units():
    # Table 3: shunt 07D0h -> 20 mV, bus 5D98h -> 0BB3h = 2995 x 4 mV = 11.98 V, current 2710h =
    # 10000 x 1 mA = 10.0 A, power 1766h = 5990 x 20 mW = 119.8 W (+ CNVR set: bus 5D9Ah).
    bus = SimI2C()
    regs = bus.attach(ADDR, Regs({0: 0x219B, 1: 0x07D0, 2: 0x5D9A, 3: 0x1766, 4: 0x2710,
                                  5: 0x5000}))
    ina = INA219(bus, WHERE, shunt_ohms=0.002, max_current=10, sleep_ms=Sleeps())
    ina.setup()
    got = ina.measure()
    assert close(got["shunt_voltage"], 20.0, 1e-9)
    assert close(got["bus_voltage"], 11.98, 1e-9)
    assert close(got["current"], 10.0, 1e-9)
    assert close(got["power"], 119.8, 1e-9)
    assert regs.writes[-1] == (0x00, b"\x21\x9b")  # measure() triggered a conversion


def test_virtual_chip_reproduces_datasheet_table3_registers():
    # 10 A through 2 mohm, 12 V common mode: IN- (the bus voltage) is 12 V - 20 mV = 11.98 V.
    bus, chip, ina = rig(amps=10.0, volts=11.98, shunt_ohms=0.002, max_current=10)
    ina.setup()
    ina.measure()
    assert chip.shunt == 0x07D0
    assert chip.bus == 0x5D98
    assert chip.current == 0x2710
    assert chip.power == 0x1766


def test_shunt_register_is_sign_extended_for_negative_current():
    bus, chip, ina = rig(amps=-1.5, volts=12.0)
    ina.setup()
    got = ina.measure()
    assert chip.shunt == -15000
    assert bus.readfrom_mem(ADDR, 0x01, 2) == b"\xc5\x68"  # -15000 in two's complement
    assert close(got["shunt_voltage"], -150.0, 1e-9)
    assert close(got["current"], -1.5, 1e-9)
    assert close(got["power"], 18.0, 1e-9)  # the power register is positive only


def test_pga_is_the_smallest_range_that_holds_max_current():
    assert calibration(0.1, 0.3)[1] == 0     # 30 mV -> 40 mV
    assert calibration(0.1, 0.4)[1] == 0     # exactly 40 mV
    assert calibration(0.1, 0.5)[1] == 1     # 50 mV -> 80 mV
    assert calibration(0.1, 1.6)[1] == 2     # 160 mV
    assert calibration(0.1, 5.0)[1] == 3     # 500 mV: beyond the chip, /8 is the best it has
    assert calibration(0.01, 10)[1] == 2     # 100 mV -> 160 mV


def test_calibration_register_always_fits_and_the_driver_uses_the_lsb_the_chip_applies():
    for ohms, amps in ((0.001, 0.1), (0.015, 2.0), (0.5, 0.2), (0.1, 3.2), (0.002, 10)):
        cal, pga, lsb = calibration(ohms, amps)
        assert 2 <= cal <= 0x7FFE and cal % 2 == 0
        assert close(lsb, 0.04096 / (cal * ohms), 1e-15)
        assert lsb * 32767 >= amps * 0.999  # max_current fits in the current register


# -- against the virtual chip --------------------------------------------------------------------
def test_1_5_A_at_12_V_reads_back_within_the_chip_quantisation():
    bus, chip, ina = rig(amps=1.5, volts=12.0)
    ina.setup()
    got = ina.measure()
    assert close(got["bus_voltage"], 12.0, 0.004)
    assert close(got["current"], 1.5, 0.0001)
    assert close(got["power"], 18.0, 0.002)
    assert close(got["shunt_voltage"], 150.0, 0.01)


def test_readings_follow_the_load_across_its_range():
    bus, chip, ina = rig()
    ina.setup()
    for amps, volts in ((0.0, 5.0), (0.0123, 3.3), (0.5, 24.0), (2.0, 12.0), (3.1, 26.0)):
        chip.amps = amps
        chip.bus_volts = volts
        got = ina.measure()
        assert close(got["current"], amps, 0.0001 + 1e-9)
        assert close(got["bus_voltage"], volts, 0.002 + 1e-9)
        assert close(got["power"], amps * volts, 0.002 + 0.0001 * volts + 0.002)


def test_virtual_chip_gives_zero_current_and_power_until_calibrated():
    # SBOS448: "The Power register and Current register default to 0 because the Calibration
    # register defaults to 0". Continuous mode (power-on config 399Fh) converts without a trigger.
    bus = SimI2C()
    chip = bus.attach(ADDR, SimINA219(amps=1.0, bus_volts=12.0))
    assert bus.readfrom_mem(ADDR, 0x00, 2) == b"\x39\x9f"
    assert bus.readfrom_mem(ADDR, 0x01, 2) == b"\x27\x10"  # 100 mV = 10000 x 10 uV
    assert bus.readfrom_mem(ADDR, 0x04, 2) == b"\x00\x00"
    assert bus.readfrom_mem(ADDR, 0x03, 2) == b"\x00\x00"
    bus.writeto_mem(ADDR, 0x05, b"\x10\x00")
    assert bus.readfrom_mem(ADDR, 0x04, 2) == b"\x27\x10"  # 10000 x 100 uA = 1 A
    assert chip.calibration == 4096


def test_virtual_chip_reset_bit_restores_power_on_values():
    bus, chip, ina = rig(amps=1.0, volts=12.0)
    ina.setup()
    bus.writeto_mem(ADDR, 0x00, b"\x80\x00")
    assert bus.readfrom_mem(ADDR, 0x00, 2) == b"\x39\x9f"  # RST self-clears
    assert bus.readfrom_mem(ADDR, 0x05, 2) == b"\x00\x00"


def test_virtual_chip_calibration_bit0_reads_zero_and_cnvr_clears_on_power_read():
    bus, chip, ina = rig(amps=1.0, volts=12.0)
    bus.writeto_mem(ADDR, 0x05, b"\x10\x01")
    assert bus.readfrom_mem(ADDR, 0x05, 2) == b"\x10\x00"
    bus.writeto_mem(ADDR, 0x00, b"\x39\x9b")  # triggered: one conversion
    assert bus.readfrom_mem(ADDR, 0x02, 2)[1] & 0x02
    bus.readfrom_mem(ADDR, 0x03, 2)
    assert not bus.readfrom_mem(ADDR, 0x02, 2)[1] & 0x02


def test_driver_waits_for_a_slow_conversion():
    bus, chip, ina = rig(amps=1.0, volts=5.0)
    sleeps = ina._sleep
    ina.setup()
    chip.settle_reads = 4  # CNVR shows only on the 4th read of the bus register
    got = ina.measure()
    assert close(got["current"], 1.0, 0.0001)
    assert sleeps.calls[-4:] == [2, 1, 1, 1]


# -- errors --------------------------------------------------------------------------------------
def test_nack_at_setup_names_chip_bus_and_address():
    bus = SimI2C()  # nothing attached at 0x40
    ina = INA219(bus, WHERE, sleep_ms=Sleeps())
    err = raises(SensorError, ina.setup)
    assert str(err) == "INA219 at i2c0:0x40 did not acknowledge"
    assert (err.kind, err.chip, err.where) == ("nack", "INA219", WHERE)


def test_nack_at_measure_then_recovers():
    bus, chip, ina = rig(amps=1.0, volts=12.0)
    ina.setup()
    bus.fault("nack", address=ADDR, times=1)
    err = raises(SensorError, ina.measure)
    assert str(err) == "INA219 at i2c0:0x40 did not acknowledge"
    assert err.kind == "nack"
    assert close(ina.measure()["current"], 1.0, 0.0001)


def test_esp32_eio_nack_is_a_nack_too():
    class EIOBus:
        def writeto_mem(self, addr, reg, buf):
            raise OSError(errno.EIO)

    err = raises(SensorError, INA219(EIOBus(), WHERE).setup)
    assert err.kind == "nack"


def test_stuck_bus_is_reported_as_stuck():
    bus, chip, ina = rig(amps=1.0, volts=12.0)
    ina.setup()
    bus.fault("stuck")
    err = raises(SensorError, ina.measure)
    assert err.kind == "stuck"
    assert str(err).startswith("INA219 at i2c0:0x40 did not answer")
    err = raises(SensorError, ina.setup)
    assert err.kind == "stuck"


def test_math_overflow_flag_is_a_range_error_not_a_number():
    # 0.1 ohm, max_current 0.5 A: 50 mV needs PGA /2 (80 mV), LSB 15.3 uA rounds up to 20 uA,
    # Cal 20480. 0.7 A is within the shunt range (7000 x 10 uV) but computes to a current
    # register of 7000 x 20480 / 4096 = 35000 > 32767: the chip sets OVF.
    bus, chip, ina = rig(amps=0.7, volts=12.0, max_current=0.5)
    ina.setup()
    assert (chip.calibration, ina.pga) == (20480, 1)
    err = raises(SensorError, ina.measure)
    assert err.kind == "range"
    assert chip.ovf == 1
    assert "INA219 at i2c0:0x40" in str(err) and "OVF" in str(err)
    chip.amps = 0.4
    assert close(ina.measure()["current"], 0.4, 0.00002)


def test_shunt_voltage_beyond_the_pga_range_is_a_range_error():
    # 4 A through 0.1 ohm is 400 mV: beyond the 320 mV of PGA /8; the register clips at 32000.
    bus, chip, ina = rig(amps=4.0, volts=12.0)
    ina.setup()
    err = raises(SensorError, ina.measure)
    assert err.kind == "range"
    assert "320 mV" in str(err) and str(err).startswith("INA219 at i2c0:0x40")
    # 0.32 V / 0.1 ohm printed as a person writes it (it read 3.1999999999999997 A)
    assert "more than 3.2 A through 0.1 ohm" in str(err)


def test_conversion_that_never_completes_is_a_timeout():
    bus, chip, ina = rig(amps=1.0, volts=12.0)
    ina.setup()
    chip.stall = True
    err = raises(SensorError, ina.measure)
    assert err.kind == "timeout"
    assert str(err).startswith("INA219 at i2c0:0x40 did not finish a conversion")


def test_lost_calibration_after_a_brownout_is_reported_and_setup_restores_it():
    bus, chip, ina = rig(amps=1.5, volts=12.0)
    ina.setup()
    chip.power_cycle()  # every register back to power-on: calibration 0
    err = raises(SensorError, ina.measure)
    assert err.kind == "reply"
    assert "lost its calibration" in str(err)
    ina.setup()
    assert close(ina.measure()["current"], 1.5, 0.0001)


def test_setup_fails_when_the_chip_does_not_keep_its_settings():
    bus = SimI2C()
    bus.attach(ADDR, Regs({}))
    bus.chips[ADDR].write = lambda reg, data: None  # a chip that ignores writes
    err = raises(SensorError, INA219(bus, WHERE, sleep_ms=Sleeps()).setup)
    assert err.kind == "reply"
    assert str(err).startswith("INA219 at i2c0:0x40 did not keep its settings")


def test_every_single_bit_flip_on_any_read_is_detected_or_harmless():
    # 1.5 A at 12 V, one flipped bit on one register read, for every read and every bit. Reads:
    # 0 bus (CNVR poll), 1 shunt, 2 current, 3 power, 4 bus again. Every flip of the bus register
    # is caught (read twice), except CNVR, which only makes the driver poll once more; a flip in
    # bits 7-15 of shunt, current or power breaks current = shunt x Cal / 4096 or
    # power = current x bus / 5000 and is caught. What escapes, bits 0-6 (within the 2 LSB +
    # 1/128 that the cross-check tolerates), moves one value by less than 1/128 of it.
    truth = {"bus_voltage": 12.0, "shunt_voltage": 150.0, "current": 1.5, "power": 18.0}
    tol = {"bus_voltage": 0.0, "shunt_voltage": 150.0 / 128, "current": 1.5 / 128,
           "power": 18.0 / 128}
    escaped = []
    for nth in range(5):
        for bit in range(16):
            bus, chip, ina = rig(amps=1.5, volts=12.0)
            ina.setup()
            ina.bus = FlipBus(bus, nth, bit)
            try:
                got = ina.measure()
            except SensorError as exc:
                assert exc.kind in ("reply", "range")
                assert str(exc).startswith("INA219 at i2c0:0x40 ")
                continue
            escaped.append((nth, bit))
            for key in truth:
                assert close(got[key], truth[key], tol[key] + 1e-9), (nth, bit, key, got[key])
    assert escaped == [(0, 1)] + [(n, b) for n in (1, 2, 3) for b in range(7)] + [(4, 1)]


def noisy_runs(rate, seeds=40, per_seed=20):
    """(within tolerance, beyond it, errors) for 2 A at 24 V with a bit flipped in `rate` of the
    reads; tolerance: 1/128 of each value + 2 LSB, what a single flip can move it by."""
    good = bad = errors = 0
    for seed in range(1, seeds + 1):
        bus = SimI2C(seed=seed)
        bus.attach(ADDR, SimINA219(amps=2.0, bus_volts=24.0))
        ina = INA219(bus, WHERE, sleep_ms=Sleeps())
        ina.setup()
        bus.fault("noise", address=ADDR, rate=rate)
        for _ in range(per_seed):
            try:
                got = ina.measure()
            except SensorError as exc:
                assert exc.kind in ("reply", "range", "timeout")
                errors += 1
                continue
            if (close(got["current"], 2.0, 2.0 / 128 + 0.0002)
                    and close(got["bus_voltage"], 24.0, 24.0 / 128 + 0.008)
                    and close(got["power"], 48.0, 48.0 / 128 + 0.004)):
                good += 1
            else:
                bad += 1
    return good, bad, errors


def test_noise_on_5_percent_of_reads_gives_errors_or_values_within_tolerance():
    good, bad, errors = noisy_runs(0.05)
    assert bad == 0
    assert errors > 0 and good > 3 * errors


def test_noise_on_half_the_reads_lets_through_a_wrong_value_only_rarely():
    # Several flips in one measure() can cancel out in the cross-checks (the same bit flipped in
    # both bus-register reads, say): rare, and never more than a few percent off.
    good, bad, errors = noisy_runs(0.5)
    assert bad <= (good + bad + errors) // 100
    assert errors > good


def test_sim_bus_faults_per_address_and_whole_bus():
    bus = SimI2C()
    bus.attach(0x40, SimINA219())
    bus.attach(0x41, SimINA219())
    assert bus.scan() == [0x40, 0x41]
    bus.fault("nack", address=0x41)
    assert bus.scan() == [0x40]
    e = raises(OSError, bus.readfrom_mem, 0x41, 0, 2)
    assert e.args[0] == errno.ENODEV
    assert raises(OSError, bus.readfrom_mem, 0x44, 0, 2).args[0] == errno.ENODEV
    bus.clear(0x41)
    bus.fault("stuck")
    assert raises(OSError, bus.writeto_mem, 0x40, 0, b"\x39\x9f").args[0] == errno.ETIMEDOUT
    bus.clear()
    assert bus.scan() == [0x40, 0x41]
    raises(ValueError, bus.fault, "smoke")


def test_sim_bus_passes_a_one_byte_command_to_its_chip():
    # A chip driven by commands (a Sensirion's soft reset, an HTU21D's measure) takes one byte;
    # the bus once kept it as the pointer alone, and such a chip could not be simulated.
    bus = SimI2C()
    chip = bus.attach(0x44, Regs({}))
    bus.writeto(0x44, b"\x94")
    bus.writeto(0x44, b"\x24\x00")
    assert chip.writes == [(0x94, b""), (0x24, b"\x00")]


def test_sim_bus_pointer_reads_and_seeded_noise_repeat():
    bus = SimI2C()
    bus.attach(ADDR, SimINA219())
    bus.writeto(ADDR, b"\x00")
    assert bus.readfrom(ADDR, 2) == b"\x39\x9f"
    bus.writeto(ADDR, b"\x05\x12\x34")
    assert bus.readfrom(ADDR, 2) == b"\x12\x34"
    runs = []
    for _ in range(2):
        noisy = SimI2C(seed=7)
        noisy.attach(ADDR, SimINA219())
        noisy.fault("noise", rate=0.5)
        runs.append([noisy.readfrom_mem(ADDR, 0, 2) for _ in range(20)])
    assert runs[0] == runs[1]
    assert any(r != b"\x39\x9f" for r in runs[0]) and any(r == b"\x39\x9f" for r in runs[0])
    for r in runs[0]:
        diff = ((r[0] << 8) | r[1]) ^ 0x399F
        assert diff & (diff - 1) == 0  # at most one bit flipped per read
