"""argparse types for the numbers and durations the `tether` commands take: a value out of range
is refused with a message that says what was expected, before anything runs.

    p.add_argument("--count", type=whole(1), default=1)
    p.add_argument("--hold", type=seconds(0), default=60.0)
    p.add_argument("--interval", type=duration(0, DAY), default="1s")   # milliseconds
    p.add_argument("--device", type=device_id)
    p.add_argument("--gpiochip", type=gpiochip_path)
"""
import argparse
import math
import re

from agent import ids
from firmware.profile.units import format_duration, parse_duration


def whole(low, high=None):
    """A whole number from low (to high)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                "expected a whole number %s, got %r" % (_range(low, high), text))
        return value
    return parse


def seconds(low):
    """A number of seconds, at least low."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(
                "expected a number of seconds of at least %g, got %r" % (low, text))
        return value
    return parse


def duration(low_ms, high_ms=None):
    """Milliseconds from a duration like '10s' or '2d', from low_ms (to high_ms)."""
    def parse(text):
        value = parse_duration(text)
        if value is None or value < low_ms or (high_ms is not None and value > high_ms):
            bounds = []
            if low_ms == 1:
                bounds.append("more than 0")
            elif low_ms > 0:  # "at least 0ms" says nothing
                bounds.append("at least %s" % format_duration(low_ms))
            if high_ms is not None:
                bounds.append("at most %s" % format_duration(high_ms))
            least = " and ".join(bounds)
            raise argparse.ArgumentTypeError(
                "expected a duration like '10s', '5min' or '2d', %sgot %r"
                % (least + ", " if least else "", text))
        return value
    return parse


def device_id(text):
    """A device id, by the rule every party checks (agent/ids.py)."""
    if not ids.valid(text):
        raise argparse.ArgumentTypeError("expected %s, got %r" % (ids.WHAT, text))
    return text


def gpiochip_path(text):
    """A GPIO character device, /dev/gpiochipN."""
    if not re.fullmatch(r"/dev/gpiochip[0-9]+", text):
        raise argparse.ArgumentTypeError("expected a GPIO chip like /dev/gpiochip0, got %r"
                                         % text)
    return text


def _range(low, high):
    if high is None:
        return "of %d or more" % low
    return "from %d to %d" % (low, high)
