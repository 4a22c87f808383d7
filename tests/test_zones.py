"""A profile's `device.timezone` as the POSIX TZ rule a device keeps local time by
(firmware/profile/zones.py, agent/tz.py), against CPython's zoneinfo: every zone of this
machine's tz database, at instants from now to 2060, and the hours around every change of a
few zones whose rules are odd (southern summers, a 26:00 change, negative hours, 30-minute and
45-minute offsets, a "standard" time in summer)."""
import datetime
import random
import zoneinfo

import pytest

from agent.tz import Zone
from firmware.profile.zones import Unknown, rule_of


def offset_min(name, t_s):
    moment = datetime.datetime.fromtimestamp(t_s, datetime.timezone.utc)
    return int(moment.astimezone(zoneinfo.ZoneInfo(name)).utcoffset().total_seconds()) // 60


def test_every_zone_with_a_yearly_rule_keeps_the_offset_zoneinfo_gives():
    rng = random.Random(8)
    start, end = 1798761600, 2871763200          # 2027-01-01 to 2061-01-01
    checked = 0
    for name in sorted(zoneinfo.available_timezones()):
        try:
            zone = Zone(rule_of(name))
        except Unknown:
            continue
        for _ in range(60):
            t = rng.randrange(start, end)
            assert zone.offset_min(t * 1000) == offset_min(name, t), (name, t, zone.text)
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("name", ["Europe/Berlin", "America/New_York", "Australia/Sydney",
                                  "Asia/Jerusalem", "America/Nuuk", "America/Santiago",
                                  "Pacific/Chatham", "Australia/Lord_Howe", "Europe/Dublin",
                                  "Asia/Kolkata"])
def test_the_hours_around_each_change_of_odd_rules_are_as_zoneinfo_says(name):
    zone = Zone(rule_of(name))
    changes = 0
    before = None
    for hour in range(1798761600 // 3600, 1861920000 // 3600, 1):   # 2027 and 2028
        t = hour * 3600
        for s in (t - 1, t):
            got = zone.offset_min(s * 1000)
            assert got == offset_min(name, s), (name, s)
            changes += before is not None and got != before
            before = got
    assert changes == (0 if name == "Asia/Kolkata" else 4), changes


@pytest.mark.parametrize("given, says", [
    ("Mars/Olympus", "a time zone of the tz database like 'Europe/Berlin' (none is named"),
    ("../etc/passwd", "(none is named '../etc/passwd' here)"),     # not read
    ("CET-1CEST,M3.5.0", "expected ',' and the end of daylight saving time at character 17"),
    ("CET-1CEST", "expected ',' and the rule of its daylight saving time"),
    ("CET-1CEST,M13.5.0,M10.5.0", "expected a number up to 12 at character 12"),
    ("CE-1", "a zone name of at least 3 letters"),
    ("CET-25", "a number up to 24"),
    # Morocco's offset moves around Ramadan: no yearly rule says when
    ("Africa/Casablanca", "changes on dates no rule says"),
])
def test_a_zone_no_rule_can_keep_is_refused_saying_why(given, says):
    with pytest.raises(Unknown) as info:
        rule_of(given)
    assert says in str(info.value), str(info.value)


def test_a_machine_without_zone_files_reads_the_tzdata_package(monkeypatch):
    # Windows and slim containers have no /usr/share/zoneinfo: zoneinfo's own fallback
    monkeypatch.setattr(zoneinfo, "TZPATH", ())
    assert rule_of("Europe/Berlin") == "CET-1CEST,M3.5.0,M10.5.0/3"
    assert rule_of("Asia/Kolkata") == "IST-5:30"


def test_a_zone_file_with_no_rule_in_its_footer_is_said_so(tmp_path, monkeypatch):
    # RFC 8536 allows an empty footer: the rule was looked for in the binary data before it,
    # and compile stopped with a UnicodeDecodeError
    from firmware.profile import zones
    data = zones._zone_file("Europe/Berlin")
    cut = data.rstrip(b"\n").rindex(b"\n")
    (tmp_path / "Europe").mkdir()
    (tmp_path / "Europe" / "Berlin").write_bytes(data[:cut] + b"\n\n")
    monkeypatch.setattr(zoneinfo, "TZPATH", (str(tmp_path),))
    with pytest.raises(Unknown) as info:
        rule_of("Europe/Berlin")
    assert "has a rule for today's years" in str(info.value), str(info.value)
