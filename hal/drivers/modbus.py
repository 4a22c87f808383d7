# Modbus-RTU framing: CRC-16/MODBUS and the few request frames the PZEM-004T understands.
#
# A frame is: slave address, function code, data, CRC. The CRC is CRC-16/MODBUS (polynomial
# 0x8005 reflected = 0xA001, initial value 0xFFFF, no final XOR) over every byte before it, sent
# low byte first. Its check value (the CRC of b"123456789") is 0x4B37. A reply to a request that
# the slave refuses carries the function code with its top bit set (function | 0x80) and one
# exception ("abnormal") code byte.
#
# Functions work in preallocated buffers and return lengths, so that a driver that polls every
# few seconds allocates nothing per request. Portable: CPython 3.10+ and MicroPython.
from array import array

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

READ_HOLDING = const(0x03)
READ_INPUT = const(0x04)
WRITE_SINGLE = const(0x06)
EXCEPTION_BIT = const(0x80)
EXCEPTION_LENGTH = const(5)      # address, function | 0x80, code, CRC low, CRC high

# Exception codes as the PZEM-004T manual names them (they are the standard Modbus codes 1-4).
_EXCEPTION_NAMES = ("illegal function", "illegal address", "illegal data", "slave error")


def _crc_table():
    # The CRC of each possible low byte, shifted out 8 bits at a time: one lookup per byte
    # instead of 8 shift-and-xor steps (a PZEM poll checks four 8-25 byte frames). 512 bytes.
    table = array("H", bytes(512))
    for b in range(256):
        crc = b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table[b] = crc
    return table


_TABLE = _crc_table()


def crc16(buf, n=-1):
    """CRC-16/MODBUS of the first n bytes of buf (all of it when n < 0)."""
    if n < 0:
        n = len(buf)
    crc = 0xFFFF
    table = _TABLE
    for i in range(n):
        crc = (crc >> 8) ^ table[(crc ^ buf[i]) & 0xFF]
    return crc


def put_crc(buf, n):
    """Appends the CRC of buf[:n] at buf[n], buf[n + 1] (low byte first); returns n + 2."""
    crc = crc16(buf, n)
    buf[n] = crc & 0xFF
    buf[n + 1] = crc >> 8
    return n + 2


def crc_ok(buf, n):
    """True when the n-byte frame in buf ends with the right CRC of the bytes before it."""
    if n < 4:
        return False
    crc = crc16(buf, n - 2)
    return buf[n - 2] == (crc & 0xFF) and buf[n - 1] == (crc >> 8)


def request(buf, slave, function, word1, word2):
    """Writes the common 8-byte request `slave, function, word1 (big-endian), word2, CRC` into buf.

    Read input/holding registers: word1 = first register, word2 = how many.
    Write single register: word1 = register, word2 = value. Returns 8.
    """
    buf[0] = slave
    buf[1] = function
    buf[2] = (word1 >> 8) & 0xFF
    buf[3] = word1 & 0xFF
    buf[4] = (word2 >> 8) & 0xFF
    buf[5] = word2 & 0xFF
    return put_crc(buf, 6)


def word(buf, offset):
    """The big-endian 16-bit word at buf[offset]."""
    return (buf[offset] << 8) | buf[offset + 1]


def exception_name(code):
    """'illegal address' for 2; 'exception 0x0b' for codes the manual does not name."""
    if 1 <= code <= len(_EXCEPTION_NAMES):
        return _EXCEPTION_NAMES[code - 1]
    return "exception 0x%02x" % code
