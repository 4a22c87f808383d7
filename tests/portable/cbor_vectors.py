# RFC 8949 Appendix A ("Examples of Encoded CBOR Data Items") as (hex, value) pairs.
#
# Checked against the RFC's table and cbor/test-vectors appendix_a.json. Runs on MicroPython too,
# so values are plain literals; Tag/Simple/UNDEFINED come from agent.cbor. The tables are built
# when asked for, not at import: under a 64k heap the objects would otherwise stay resident.
from agent.cbor import Simple, Tag, UNDEFINED

# What a deterministic encoder writes: dumps(value) must give exactly these bytes, and loads of
# these bytes must give the value back. Map examples are already in bytewise key order.
def preferred():
    NAN, INF = float("nan"), float("inf")
    return [
        ("00", 0),
        ("01", 1),
        ("0a", 10),
        ("17", 23),
        ("1818", 24),
        ("1819", 25),
        ("1864", 100),
        ("1903e8", 1000),
        ("1a000f4240", 1000000),
        ("1b000000e8d4a51000", 1000000000000),
        ("1bffffffffffffffff", 18446744073709551615),
        ("c249010000000000000000", 18446744073709551616),
        ("3bffffffffffffffff", -18446744073709551616),
        ("c349010000000000000000", -18446744073709551617),
        ("20", -1),
        ("29", -10),
        ("3863", -100),
        ("3903e7", -1000),
        ("f90000", 0.0),
        ("f98000", -0.0),
        ("f93c00", 1.0),
        ("fb3ff199999999999a", 1.1),
        ("f93e00", 1.5),
        ("f97bff", 65504.0),
        ("fa47c35000", 100000.0),
        ("fa7f7fffff", 3.4028234663852886e+38),
        ("fb7e37e43c8800759c", 1.0e+300),
        ("f90001", 5.960464477539063e-08),
        ("f90400", 6.103515625e-05),
        ("f9c400", -4.0),
        ("fbc010666666666666", -4.1),
        ("f97c00", INF),
        ("f97e00", NAN),
        ("f9fc00", -INF),
        ("f4", False),
        ("f5", True),
        ("f6", None),
        ("f7", UNDEFINED),
        ("f0", Simple(16)),
        ("f8ff", Simple(255)),
        ("c074323031332d30332d32315432303a30343a30305a", Tag(0, "2013-03-21T20:04:00Z")),
        ("c11a514b67b0", Tag(1, 1363896240)),
        ("c1fb41d452d9ec200000", Tag(1, 1363896240.5)),
        ("d74401020304", Tag(23, b"\x01\x02\x03\x04")),
        ("d818456449455446", Tag(24, b"dIETF")),
        ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", Tag(32, "http://www.example.com")),
        ("40", b""),
        ("4401020304", b"\x01\x02\x03\x04"),
        ("60", ""),
        ("6161", "a"),
        ("6449455446", "IETF"),
        ("62225c", "\"\\"),
        ("62c3bc", "\u00fc"),
        ("63e6b0b4", "\u6c34"),
        ("64f0908591", "\U00010151"),
        ("80", []),
        ("83010203", [1, 2, 3]),
        ("8301820203820405", [1, [2, 3], [4, 5]]),
        ("98190102030405060708090a0b0c0d0e0f101112131415161718181819", list(range(1, 26))),
        ("a0", {}),
        ("a201020304", {1: 2, 3: 4}),
        ("a26161016162820203", {"a": 1, "b": [2, 3]}),
        ("826161a161626163", ["a", {"b": "c"}]),
        ("a56161614161626142616361436164614461656145",
         {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}),
    ]

# Well-formed, but not what a deterministic encoder writes: indefinite lengths and wider NaN and
# infinities. loads must accept them; dumps of the value gives the preferred form instead.
def decode_only():
    NAN, INF = float("nan"), float("inf")
    return [
        ("fa7f800000", INF),
        ("fa7fc00000", NAN),
        ("faff800000", -INF),
        ("fb7ff0000000000000", INF),
        ("fb7ff8000000000000", NAN),
        ("fbfff0000000000000", -INF),
        ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"),
        ("7f657374726561646d696e67ff", "streaming"),
        ("9fff", []),
        ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
        ("9f01820203820405ff", [1, [2, 3], [4, 5]]),
        ("83018202039f0405ff", [1, [2, 3], [4, 5]]),
        ("83019f0203ff820405", [1, [2, 3], [4, 5]]),
        ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", list(range(1, 26))),
        ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}),
        ("826161bf61626163ff", ["a", {"b": "c"}]),
        ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}),
    ]

# In RFC 7049's table as simple(24), but RFC 8949 section 3.3 makes a two-byte simple value
# below 32 not well-formed: loads must refuse it and nothing may encode it.
NOT_WELL_FORMED = "f818"
