# hal/drivers/pzem004t.py against byte sequences from the PZEM-004T v3.0 manual and against the
# virtual meter (hal/sim/pzem004t.py) on a simulated UART with faults (hal/sim/uart.py).
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
#
# The manual's example (section "Read the measurement result"): the master sends
# 01 04 00 00 00 0A + CRC; the slave answers 01 04 14 08 98 03 E8 00 00 08 98 00 00 00 00 00 00
# 01 F4 00 64 00 00 + CRC, which it reads as 220.0 V, 1.000 A, 220.0 W, 0 Wh, 50.0 Hz, power
# factor 1.00, no alarm.
from hal.bus import SensorError
from hal.drivers import modbus
from hal.drivers.pzem004t import PZEM004T
from hal.sim.pzem004t import SimPZEM004T
from hal.sim.uart import SimUART
from support import raises

WHERE = "uart1:1"
MANUAL_REPLY_DATA = ("01 04 14 08 98 03 E8 00 00 08 98 00 00 00 00 00 00 01 F4 00 64 00 00")


def hexbytes(text):
    return bytes(int(h, 16) for h in text.split())


def with_crc(data):
    buf = bytearray(len(data) + 2)
    buf[:len(data)] = data
    modbus.put_crc(buf, len(data))
    return bytes(buf)


class Canned:
    """A device that answers every frame with the same bytes, and keeps what it was sent."""

    def __init__(self, reply):
        self.reply = reply
        self.frames = []

    def handle(self, frame):
        self.frames.append(frame)
        return self.reply


def canned(reply_hex, crc=True, timeout_ms=20):
    data = hexbytes(reply_hex)
    device = Canned(with_crc(data) if crc else data)
    uart = SimUART("uart1", device)
    return PZEM004T(uart, WHERE, timeout_ms=timeout_ms), device


def meter_and_driver(timeout_ms=20, **physics):
    meter = SimPZEM004T(**physics)
    uart = SimUART("uart1", meter, seed=7)
    return meter, uart, PZEM004T(uart, WHERE, timeout_ms=timeout_ms)


def close(a, b, eps=1e-9):
    return abs(a - b) <= eps


# -- byte sequences from the manual --------------------------------------------------------------

def test_manual_example_reply_decodes_to_the_documented_units():
    pzem, device = canned(MANUAL_REPLY_DATA)
    values = pzem.measure()
    assert device.frames == [hexbytes("01 04 00 00 00 0A 70 0D")]
    assert close(values["voltage"], 220.0)
    assert close(values["current"], 1.0)
    assert close(values["power"], 220.0)
    assert values["energy"] == 0
    assert close(values["frequency"], 50.0)
    assert close(values["power_factor"], 1.0)
    assert values["alarm"] is False


def test_32_bit_registers_are_read_low_word_first():
    # current 70.000 A = 0x00011170 mA, power 16100.0 W = 0x000274E8 (0.1 W), energy 74565 Wh
    # = 0x00012345: each sent as low word, then high word.
    pzem, _ = canned("01 04 14 08 FC 11 70 00 01 74 E8 00 02 23 45 00 01 02 58 00 5F FF FF")
    values = pzem.measure()
    assert close(values["voltage"], 230.0)
    assert close(values["current"], 70.0)
    assert close(values["power"], 16100.0)
    assert values["energy"] == 74565
    assert close(values["frequency"], 60.0)
    assert close(values["power_factor"], 0.95)
    assert values["alarm"] is True


def test_virtual_meter_sends_the_manuals_bytes_for_the_manuals_values():
    meter = SimPZEM004T(volts=220.0, amps=1.0, pf=1.0, hz=50.0, wh=0)
    reply = meter.handle(hexbytes("01 04 00 00 00 0A 70 0D"))
    assert reply == with_crc(hexbytes(MANUAL_REPLY_DATA))


# -- the driver against the virtual meter --------------------------------------------------------

def test_driver_reads_the_virtual_meters_values_in_engineering_units():
    meter, uart, pzem = meter_and_driver(volts=231.4, amps=4.321, pf=0.87, hz=49.9, wh=1234)
    pzem.setup()
    values = pzem.measure()
    assert close(values["voltage"], 231.4)
    assert close(values["current"], 4.321)
    assert close(values["power"], 869.9)          # 231.4 * 4.321 * 0.87 = 869.88 W, 0.1 W steps
    assert values["energy"] == 1234
    assert close(values["frequency"], 49.9)
    assert close(values["power_factor"], 0.87)
    assert values["alarm"] is False
    assert uart.written[-1] == hexbytes("01 04 00 00 00 0A 70 0D")


def test_power_set_directly_overrides_volts_times_amps_times_pf():
    meter, _, pzem = meter_and_driver(volts=230.0, amps=1.0)
    meter.watts = 12.3
    assert close(pzem.measure()["power"], 12.3)


def test_energy_accumulates_and_alarm_follows_the_meters_threshold():
    meter, _, pzem = meter_and_driver(volts=230.0, amps=2.0, pf=1.0, alarm_threshold=1000)
    meter.advance(1800)                              # half an hour at 460 W
    values = pzem.measure()
    assert values["energy"] == 230 and values["alarm"] is False
    meter.amps = 5.0                                 # 1150 W
    assert pzem.measure()["alarm"] is True


def test_driver_on_the_general_address_reaches_a_single_meter_at_any_address():
    meter = SimPZEM004T(address=42, volts=120.0, hz=60.0)
    pzem = PZEM004T(SimUART("uart1", meter), "uart1:0xf8", address=0xF8, timeout_ms=20)
    values = pzem.measure()
    assert close(values["voltage"], 120.0) and close(values["frequency"], 60.0)


def test_meter_at_another_address_stays_silent_and_the_driver_times_out():
    meter = SimPZEM004T(address=3)
    pzem = PZEM004T(SimUART("uart1", meter), "uart1:2", address=2, timeout_ms=20)
    err = raises(SensorError, pzem.measure)
    assert err.kind == "timeout"
    assert str(err) == "PZEM-004T at uart1:2 did not answer within 20 ms"
    assert meter.ignored == 1


def test_setup_raises_timeout_when_nothing_is_connected():
    pzem = PZEM004T(SimUART("uart1"), WHERE, timeout_ms=20)
    err = raises(SensorError, pzem.setup)
    assert err.kind == "timeout"
    assert str(err) == "PZEM-004T at uart1:1 did not answer within 20 ms"


class NoSleep:
    """A sleep_ms that returns at once and counts its calls (a list would not fit a 64k heap)."""

    def __init__(self):
        self.calls = 0
        self.total_ms = 0

    def __call__(self, ms):
        self.calls += 1
        self.total_ms += ms


def test_with_a_sleep_that_does_not_wait_the_timeout_counts_polls_instead():
    slept = NoSleep()
    pzem = PZEM004T(SimUART("uart1"), WHERE, timeout_ms=3000, sleep_ms=slept)
    err = raises(SensorError, pzem.measure)
    assert str(err) == "PZEM-004T at uart1:1 did not answer within 3000 ms"
    assert slept.calls == 3000 and slept.total_ms == 3000


def test_stale_bytes_waiting_on_the_uart_are_drained_before_the_request():
    meter, uart, pzem = meter_and_driver(volts=229.0)
    uart.push(with_crc(hexbytes("01 04 14" + " 00" * 20)))   # a late reply: 0 V
    uart.push(b"\xff\x00\x13")                               # and line noise
    assert close(pzem.measure()["voltage"], 229.0)
    assert uart.any() == 0


def test_constructor_refuses_addresses_outside_1_to_247_except_the_general_address():
    uart = SimUART("uart1")
    raises(ValueError, PZEM004T, uart, WHERE, 0)
    raises(ValueError, PZEM004T, uart, WHERE, 249)
    assert PZEM004T(uart, WHERE, 247).address == 247
    assert PZEM004T(uart, WHERE, 0xF8).address == 0xF8


# -- faults: every error kind, each naming the chip and the place ------------------------------

def test_timeout_fault_raises_timeout_and_the_next_read_works():
    meter, uart, pzem = meter_and_driver(volts=230.0)
    uart.inject("timeout")
    err = raises(SensorError, pzem.measure)
    assert err.kind == "timeout"
    assert err.chip == "PZEM-004T" and err.where == WHERE
    assert str(err) == "PZEM-004T at uart1:1 did not answer within 20 ms"
    assert close(pzem.measure()["voltage"], 230.0)


def test_bad_crc_fault_raises_crc():
    meter, uart, pzem = meter_and_driver()
    uart.inject("bad_crc")
    err = raises(SensorError, pzem.measure)
    assert err.kind == "crc"
    assert str(err) == "PZEM-004T at uart1:1 sent a reply with a bad CRC"


def test_a_single_flipped_bit_anywhere_in_the_reply_is_caught_as_crc():
    meter, uart, pzem = meter_and_driver(volts=230.0, amps=1.0)
    for _ in range(40):                  # 40 seeded random bit positions over the 25-byte reply
        uart.inject("noise")
        err = raises(SensorError, pzem.measure)
        assert err.kind == "crc", str(err)
        assert close(pzem.measure()["voltage"], 230.0)    # and the line recovers each time


def test_garbage_instead_of_a_reply_is_refused_and_the_next_read_recovers():
    meter, uart, pzem = meter_and_driver(volts=230.0)
    for _ in range(20):
        uart.inject("garbage")
        err = raises(SensorError, pzem.measure)
        assert err.kind in ("crc", "reply") and str(err).startswith(
            "PZEM-004T at uart1:1 "), str(err)
        assert close(pzem.measure()["voltage"], 230.0)


def test_short_reply_raises_reply_with_the_byte_counts():
    meter, uart, pzem = meter_and_driver()
    uart.inject("short")
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply"
    assert str(err) == "PZEM-004T at uart1:1 sent a short reply (12 of 25 bytes within 20 ms)"


def test_persistent_fault_lasts_until_cleared():
    meter, uart, pzem = meter_and_driver()
    uart.inject("bad_crc", None)
    for _ in range(3):
        assert raises(SensorError, pzem.measure).kind == "crc"
    uart.clear()
    pzem.measure()


def test_reply_from_another_address_raises_reply():
    pzem, _ = canned("02" + MANUAL_REPLY_DATA[2:])
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply"
    assert str(err) == "PZEM-004T at uart1:1 got a reply from address 2"


def test_reply_to_another_function_raises_reply():
    pzem, _ = canned("01 03" + MANUAL_REPLY_DATA[5:])
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply"
    assert str(err) == "PZEM-004T at uart1:1 answered function 0x03 to a 0x04 request"


def test_reply_with_a_wrong_byte_count_raises_reply():
    pzem, _ = canned("01 04 12" + MANUAL_REPLY_DATA[8:])
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply"
    assert "18 data bytes for 10 registers" in str(err)


def test_modbus_exception_reply_names_the_abnormal_code():
    pzem, _ = canned("01 84 02")
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply"
    assert str(err) == ("PZEM-004T at uart1:1 refused function 0x04: "
                        "Modbus exception 2 (illegal address)")


def test_exception_reply_from_a_failing_meter_is_a_slave_error():
    meter, uart, pzem = meter_and_driver()
    meter.failing = True
    err = raises(SensorError, pzem.measure)
    assert err.kind == "reply" and "Modbus exception 4 (slave error)" in str(err)


def test_virtual_meter_answers_unknown_functions_with_illegal_function():
    meter = SimPZEM004T()
    reply = meter.handle(with_crc(hexbytes("01 10 00 00 00 01")))
    assert reply == with_crc(hexbytes("01 90 01"))


def test_virtual_meter_answers_registers_out_of_range_with_illegal_address():
    meter = SimPZEM004T()
    assert meter.handle(with_crc(hexbytes("01 04 00 08 00 03"))) == with_crc(hexbytes("01 84 02"))
    assert meter.handle(with_crc(hexbytes("01 06 00 05 00 01"))) == with_crc(hexbytes("01 86 02"))


def test_virtual_meter_answers_bad_counts_and_values_with_illegal_data():
    meter = SimPZEM004T()
    assert meter.handle(with_crc(hexbytes("01 04 00 00 00 00"))) == with_crc(hexbytes("01 84 03"))
    assert meter.handle(with_crc(hexbytes("01 06 00 02 00 F8"))) == with_crc(hexbytes("01 86 03"))
    assert meter.address == 1


def test_virtual_meter_ignores_requests_with_a_bad_crc():
    meter = SimPZEM004T()
    assert meter.handle(hexbytes("01 04 00 00 00 0A 70 0E")) is None
    assert meter.ignored == 1 and meter.requests == 0


def test_virtual_meter_reads_part_of_the_input_registers():
    meter = SimPZEM004T(volts=230.0, hz=50.0, pf=0.5)
    reply = meter.handle(with_crc(hexbytes("01 04 00 07 00 02")))
    assert reply == with_crc(hexbytes("01 04 04 01 F4 00 32"))


def test_virtual_meter_reads_its_holding_registers():
    meter = SimPZEM004T(address=5, alarm_threshold=1500)
    reply = meter.handle(with_crc(hexbytes("05 03 00 01 00 02")))
    assert reply == with_crc(hexbytes("05 03 04 05 DC 00 05"))


def test_virtual_meter_obeys_a_broadcast_without_replying():
    meter = SimPZEM004T(wh=500)
    assert meter.handle(with_crc(hexbytes("00 42"))) is None
    assert meter.wh == 0 and meter.resets == 1
