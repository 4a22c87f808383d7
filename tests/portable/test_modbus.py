# hal/drivers/modbus.py: CRC-16/MODBUS and the Modbus-RTU request frames of the PZEM-004T.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
#
# Vectors: the CRC-16/MODBUS check value (CRC of "123456789") is 0x4B37 (the CRC catalogue's
# parameters: poly 0x8005 reflected, init 0xFFFF, no final XOR). The frames are the ones that
# PZEM-004T code in the wild sends byte for byte: read 10 input registers from slave 1
# `01 04 00 00 00 0A 70 0D`, the same from the general address `F8 04 00 00 00 0A 64 64`, and
# reset energy on slave 1 `01 42 80 11`.
from hal.drivers import modbus


def hexbytes(text):
    return bytes(int(h, 16) for h in text.split())


def test_crc16_check_value_of_123456789_is_0x4b37():
    assert modbus.crc16(b"123456789") == 0x4B37


def test_crc16_of_nothing_is_the_initial_value():
    assert modbus.crc16(b"") == 0xFFFF


def test_crc16_covers_only_the_first_n_bytes():
    assert modbus.crc16(b"123456789XYZ", 9) == 0x4B37


def test_read_input_registers_request_for_slave_1_is_the_published_frame():
    buf = bytearray(8)
    assert modbus.request(buf, 0x01, modbus.READ_INPUT, 0x0000, 0x000A) == 8
    assert bytes(buf) == hexbytes("01 04 00 00 00 0A 70 0D")


def test_read_request_to_the_general_address_is_the_published_frame():
    buf = bytearray(8)
    modbus.request(buf, 0xF8, modbus.READ_INPUT, 0x0000, 0x000A)
    assert bytes(buf) == hexbytes("F8 04 00 00 00 0A 64 64")


def test_crc_is_sent_low_byte_first():
    buf = bytearray(8)
    modbus.request(buf, 0x01, modbus.READ_INPUT, 0x0000, 0x000A)
    crc = modbus.crc16(buf, 6)
    assert crc == 0x0D70
    assert buf[6] == crc & 0xFF and buf[7] == crc >> 8


def test_write_single_register_request_puts_register_and_value_big_endian():
    buf = bytearray(8)
    modbus.request(buf, 0x01, modbus.WRITE_SINGLE, 0x0002, 0x0005)
    assert bytes(buf[:6]) == hexbytes("01 06 00 02 00 05")
    assert modbus.crc_ok(buf, 8)


def test_crc_ok_accepts_a_good_frame_and_rejects_every_single_bit_flip():
    frame = bytearray(hexbytes("01 04 00 00 00 0A 70 0D"))
    assert modbus.crc_ok(frame, 8)
    for bit in range(8 * len(frame)):
        frame[bit >> 3] ^= 1 << (bit & 7)
        assert not modbus.crc_ok(frame, 8), "bit %d flipped went unnoticed" % bit
        frame[bit >> 3] ^= 1 << (bit & 7)


def test_crc_ok_rejects_frames_too_short_to_carry_a_crc():
    assert not modbus.crc_ok(b"\x01\x04\xff", 3)
    assert not modbus.crc_ok(b"", 0)


def test_put_crc_then_crc_ok_round_trips_an_exception_reply():
    buf = bytearray(5)
    buf[0], buf[1], buf[2] = 0x01, 0x84, 0x02
    assert modbus.put_crc(buf, 3) == 5
    assert modbus.crc_ok(buf, 5)


def test_word_reads_big_endian():
    assert modbus.word(b"\x00\x08\x98", 1) == 0x0898


def test_exception_names_follow_the_pzem_manual():
    assert modbus.exception_name(1) == "illegal function"
    assert modbus.exception_name(2) == "illegal address"
    assert modbus.exception_name(3) == "illegal data"
    assert modbus.exception_name(4) == "slave error"
    assert modbus.exception_name(0x0B) == "exception 0x0b"
