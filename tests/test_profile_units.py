"""Durations, sizes, frequencies and resolutions: parsed exactly, printed back the same."""
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from firmware.profile import units


@pytest.mark.parametrize("text, ms", [
    ("250ms", 250), ("10s", 10_000), ("1.5s", 1500), ("5min", 300_000), ("24h", 86_400_000),
    ("1d", 86_400_000), ("10 s", 10_000), ("2sec", 2000), ("10S", 10_000),
])
def test_durations_parse_to_milliseconds(text, ms):
    assert units.parse_duration(text) == ms


@pytest.mark.parametrize("text", ["10", "fast", "0.5ms", "-1s", "10 seconds", "1m", "", "s",
                                  "\u0661\u0660s", "\uff11\uff10s"])  # 10s in Arabic-Indic and fullwidth digits
def test_not_durations(text):
    assert units.parse_duration(text) is None


@pytest.mark.parametrize("text, n", [
    ("512B", 512), ("64KiB", 65_536), ("1MiB", 1_048_576), ("8KB", 8000), ("1MB", 1_000_000),
    ("1.5KiB", 1536), ("16 kib", 16_384),
])
def test_sizes_parse_to_bytes(text, n):
    assert units.parse_size(text) == n


@pytest.mark.parametrize("text, hz", [("100kHz", 100_000), ("1MHz", 1_000_000), ("400000Hz", 400_000)])
def test_frequencies_parse_to_hertz(text, hz):
    assert units.parse_frequency(text) == hz


@given(st.integers(min_value=1, max_value=10 ** 12))
def test_durations_and_sizes_print_back_to_the_same_number(n):
    assert units.parse_duration(units.format_duration(n)) == n
    assert units.parse_size(units.format_size(n)) == n
    assert units.parse_frequency(units.format_frequency(n)) == n


@given(st.integers(min_value=1, max_value=10 ** 18), st.integers(min_value=-20, max_value=20))
def test_resolution_parts_are_exact_and_have_no_trailing_zeros(mantissa, exponent):
    text = format(Decimal(mantissa).scaleb(exponent), "f")
    m, e = units.resolution_parts(units.parse_decimal(text))
    assert m % 10 != 0
    assert Decimal(m).scaleb(e) == Decimal(text)
    written = text.rstrip("0").rstrip(".") if "." in text else text
    assert units.format_resolution([m, e]) == written
