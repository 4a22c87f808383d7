# agent/ids.py: the device id rule the profile checker and the ingest share.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
from agent import ids


def test_ids_of_letters_digits_and_separators_are_valid():
    for good in ("printer-0001", "p", "0", "Washer_2.b", "a" * 64, "a..b", "x-"):
        assert ids.valid(good), good


def test_path_markup_overlong_and_odd_ids_are_refused():
    bad = ["", "..", ".", ".hidden", "-rf", "_x", "a" * 65, "a" * 5000, "<script>",
           "a/b", "a+b", "a#b", "a b", "caf\u00e9", "a\x00b", "p{uid}", None, 5, b"abc"]
    for value in bad:
        assert not ids.valid(value), value
