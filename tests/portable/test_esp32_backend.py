# hal/esp32.py wired to a fake `machine` (machine_fake): which machine classes it builds for a
# compiled profile's buses and pins, with which ids, pins, frequency, baud rate, timeout and
# attenuation. Runs under CPython (pytest) and the real MicroPython, as the board would run it.
import sys

import machine_fake as M
from hal.esp32 import Esp32Platform
from support import raises

I2C0 = {"id": "i2c0", "type": "i2c", "sda": 21, "scl": 22, "frequency": 400000}
I2C1 = {"id": "sens", "type": "i2c", "sda": 25, "scl": 26, "frequency": 100000}
I2C2 = {"id": "aux", "type": "i2c", "sda": 18, "scl": 19, "frequency": 50000}
MAINS = {"id": "mains", "type": "uart", "tx": 17, "rx": 16, "baud": 9600}
GPS = {"id": "gps", "type": "uart", "tx": 4, "rx": 5, "baud": 115200}
THIRD = {"id": "third", "type": "uart", "tx": 12, "rx": 13, "baud": 9600}


def with_fake(check, chip="esp32"):
    M.install()
    try:
        platform = Esp32Platform(chip)
        check(platform)
    finally:
        M.uninstall()
    assert sys.modules.get("machine") is not M


def test_esp32_first_two_i2c_buses_are_hardware_0_and_1_then_softi2c():
    def check(p):
        a = p.i2c(I2C0)
        b = p.i2c(I2C1)
        c = p.i2c(I2C2)
        assert type(a) is M.I2C and type(b) is M.I2C and type(c) is M.SoftI2C
        assert (a.args, b.args, c.args) == ((0,), (1,), ())
        for bus, obj in ((I2C0, a), (I2C1, b), (I2C2, c)):
            assert sorted(obj.kwargs) == ["freq", "scl", "sda"]
            assert obj.kwargs["freq"] == bus["frequency"]
            assert (obj.kwargs["scl"].id, obj.kwargs["sda"].id) == (bus["scl"], bus["sda"])
            assert obj.kwargs["scl"].mode is None  # the peripheral configures its own pins
        assert p.i2c(I2C0) is a  # the same bus again: no second peripheral
        assert [c[0] for c in M.calls if c[0] != "Pin"] == ["I2C", "I2C", "SoftI2C"]
    with_fake(check)


def test_esp32_uarts_are_uart1_and_uart2_with_baud_pins_and_timeout():
    def check(p):
        mains = p.uart(MAINS, timeout_ms=250)
        gps = p.uart(GPS, 50)
        assert type(mains) is M.UART and p.uart(MAINS, timeout_ms=250) is mains
        assert mains.args == (1,)
        assert sorted(mains.kwargs.items()) == [("baudrate", 9600), ("rx", 16), ("timeout", 250),
                                                ("tx", 17)]
        assert gps.args == (2,) and gps.kwargs["baudrate"] == 115200
        assert gps.kwargs["timeout"] == 50
        err = raises(ValueError, p.uart, THIRD, 50)
        assert "UART0" in str(err) and "third" in str(err)
        assert len([c for c in M.calls if c[0] == "UART"]) == 2
    with_fake(check)


def test_an_esp32_c3_has_one_hardware_i2c_and_one_free_uart():
    # I2C(1) and UART2 raised machine's own ValueError at boot on a C3
    def check(p):
        a = p.i2c(I2C0)
        b = p.i2c(I2C1)
        assert type(a) is M.I2C and a.args == (0,) and type(b) is M.SoftI2C
        assert p.uart(MAINS, 50).args == (1,)
        err = raises(ValueError, p.uart, GPS, 50)
        assert str(err) == ("uart bus gps: an ESP32-C3 has 1 free UART (UART0 is the REPL), and 1 "
                            "is already open")
    with_fake(check, "esp32c3")


def test_esp32_pins_in_and_out_with_pull_and_start_value():
    def check(p):
        dout = p.pin_in(34)
        up = p.pin_in(4, pull="up")
        down = p.pin_in(5, pull="down")
        sck = p.pin_out(18, value=1)
        low = p.pin_out(19)
        assert M.calls == [("Pin", (34, M.Pin.IN), []),
                           ("Pin", (4, M.Pin.IN, M.Pin.PULL_UP), []),
                           ("Pin", (5, M.Pin.IN, M.Pin.PULL_DOWN), []),
                           ("Pin", (18, M.Pin.OUT), [("value", 1)]),
                           ("Pin", (19, M.Pin.OUT), [("value", 0)])]
        assert type(dout) is M.Pin and up.pull == M.Pin.PULL_UP and down.pull == M.Pin.PULL_DOWN
        assert sck.value() == 1 and low.value() == 0
        raises(ValueError, p.pin_in, 4, "sideways")
    with_fake(check)


def test_esp32_adc_uses_the_pin_with_11db_attenuation():
    def check(p):
        adc = p.adc(32)
        assert type(adc) is M.ADC
        assert len(adc.args) == 1 and adc.args[0].id == 32
        assert sorted(adc.kwargs.items()) == [("atten", M.ADC.ATTN_11DB)]
        assert adc.read_u16() == 32768
    with_fake(check)


def test_esp32_close_deinits_uarts_i2c_and_adcs():
    def check(p):
        objs = [p.i2c(I2C0), p.i2c(I2C2), p.uart(MAINS, 50), p.adc(33)]
        p.close()
        assert [o.deinits for o in objs] == [1, 1, 1, 1]
        again = p.i2c(I2C0)  # after close, buses open afresh from hardware I2C 0
        assert again is not objs[0] and again.args == (0,)
    with_fake(check)


def test_esp32_fake_machine_does_not_outlive_the_test():
    before = sys.modules.get("machine")
    with_fake(lambda p: None)
    assert sys.modules.get("machine") is before
