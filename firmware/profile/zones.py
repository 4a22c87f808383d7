"""A profile's `device.timezone` (an IANA name like 'Europe/Berlin', or a POSIX TZ rule) as the
POSIX TZ rule a device keeps local time by (agent/tz.py): the rule in the last line of the
zone's tzdata file (RFC 8536's footer), which holds for every year after the zone's last
change of rules. HOST-ONLY."""
import difflib
import importlib.resources
import os
import struct
import time
import zoneinfo

from agent import tz


class Unknown(ValueError):
    """No such zone, or one whose file has no rule for today's years."""


def _zone_file(name):
    for folder in zoneinfo.TZPATH:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    try:    # the tzdata package, where the system has no zone files (Windows)
        package, _, leaf = ("tzdata.zoneinfo/" + name).rpartition("/")
        return importlib.resources.files(package.replace("/", ".")).joinpath(leaf).read_bytes()
    except (ImportError, OSError, ValueError):
        return None


def _parse(data):
    """([(Unix s, offset east in s after it)] of the transitions a TZif file of version 2 or
    later lists, and its footer's rule text, empty when it has none): RFC 8536, the 64-bit
    block after the 32-bit one, then the footer between newlines. ValueError for a file that
    is not one."""
    def counts(at):
        return struct.unpack(">6l", data[at + 20:at + 44])
    isut, isstd, leap, times, types, chars = counts(0)
    at = 44 + times * 5 + types * 6 + chars + leap * 8 + isstd + isut
    isut, isstd, leap, times, types, chars = counts(at)
    at += 44
    when = struct.unpack(">%dq" % times, data[at:at + 8 * times])
    kinds = data[at + 8 * times:at + 9 * times]
    at += 9 * times
    offsets = [struct.unpack(">l", data[at + 6 * k:at + 6 * k + 4])[0] for k in range(types)]
    at += types * 6 + chars + leap * 12 + isstd + isut
    end = data.find(b"\n", at + 1)
    if data[at:at + 1] != b"\n" or end < 0:
        raise ValueError("no footer")
    return [(when[k], offsets[kinds[k]]) for k in range(times)], data[at + 1:end].decode("ascii")


def _follows(changes, rule):
    """The listed transitions from now on that the rule does not make: [(Unix s, offset)]."""
    zone = tz.Zone(rule)
    now = time.time()
    return [(t, off) for t, off in changes if t > now
            and (zone.offset_min(t * 1000) * 60 != off)]


def rule_of(name):
    """The POSIX TZ rule of zone `name`, or `name` itself when it is a rule; Unknown saying why
    for anything else."""
    if not isinstance(name, str) or not name:
        raise Unknown("a time zone like 'Europe/Berlin'")
    data = None
    if "," not in name and ".." not in name.split("/") and not name.startswith("/"):
        data = _zone_file(name)     # a zone's name (also 'EST5EDT', which is a rule too)
    if data is None and "/" in name and "," not in name:
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        raise Unknown("a time zone of the tz database like 'Europe/Berlin' (none is named %r "
                      "here%s)" % (name, ", did you mean %r?" % close[0] if close else ""))
    if data is not None:
        if not data.startswith(b"TZif"):
            raise Unknown("a time zone of the tz database like 'Europe/Berlin' (%r is no "
                          "zone file here)" % name)
        try:
            changes, rule = _parse(data) if data[4:5] >= b"2" else ([], "")
        except (ValueError, struct.error):   # (UnicodeDecodeError is a ValueError)
            changes, rule = [], ""
        if not rule:
            raise Unknown("a time zone whose tzdata file has a rule for today's years (this "
                          "machine's %r has none: give its POSIX TZ rule instead)" % name)
        try:
            odd = _follows(changes, rule)
        except ValueError:  # a rule of no sense: said by its parse, below
            odd = []
        if odd:
            # Morocco's offset moves around Ramadan, on dates no yearly rule says: tzdata
            # lists them (to 2087), and its rule holds only after the last
            raise Unknown("a time zone whose changes follow a yearly rule (%r changes on dates "
                          "no rule says, as on %s: give device.utc_offset, and have the cloud "
                          "set each change)" % (name, time.strftime(
                              "%Y-%m-%d", time.gmtime(odd[0][0]))))
        name = rule
    try:
        tz.parse(name)
    except ValueError as exc:
        raise Unknown("a time zone like 'Europe/Berlin' or a POSIX TZ rule like "
                      "'CET-1CEST,M3.5.0,M10.5.0/3' (%s)" % exc)
    return name
