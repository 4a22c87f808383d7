# agent/tz.py: a zone's offset from its POSIX TZ rule at the instants its changes happen, north
# and south of the equator, with the rule's odd forms (a 26:00 change, negative hours, Jn and n
# days, a "standard" time in summer). Both interpreters. Against every zone of CPython's
# zoneinfo: tests/test_zones.py.
from agent.tz import Zone, parse
from support import raises



def at(zone, *instants):
    return [zone.offset_min(t) for t in instants]


def test_berlin_changes_at_one_in_the_morning_utc_on_the_last_sundays_of_march_and_october():
    z = Zone("CET-1CEST,M3.5.0,M10.5.0/3")
    spring, autumn = 1774746000000, 1792890000000       # 2026-03-29, 2026-10-25 01:00 UTC
    assert at(z, spring - 1, spring, autumn - 1, autumn) == [60, 120, 120, 60]
    assert at(z, 1735689600000, 1751328000000) == [60, 120]     # 2025-01-01, 2025-07-01
    assert at(z, 1711846800000 - 1, 1711846800000) == [60, 120]   # 2024-03-31: a leap year


def test_new_york_and_sydney_change_at_their_own_local_times():
    ny = Zone("EST5EDT,M3.2.0,M11.1.0")
    start, end = 1772953200000, 1793512800000           # 2026-03-08 07:00, 11-01 06:00 UTC
    assert at(ny, start - 1, start, end - 1, end) == [-300, -240, -240, -300]
    syd = Zone("AEST-10AEDT,M10.1.0,M4.1.0/3")          # summer over the new year
    end, start = 1775318400000, 1791043200000           # 2026-04-04 16:00, 10-03 16:00 UTC
    assert at(syd, 1767225600000, end - 1, end, start - 1, start) == [660, 660, 600, 600, 660]


def test_odd_rules_from_the_tz_database_are_kept():
    # Israel changes at 26:00 of a Thursday: 02:00 of the Friday after
    il = Zone("IST-2IDT,M3.4.4/26,M10.5.0")
    assert at(il, 1774569600000 - 1, 1774569600000) == [120, 180]   # 2026-03-27 00:00 UTC
    # Greenland at -1:00 local, before its Sunday begins; Dublin's "standard" time is summer's
    nuuk = Zone("<-02>2<-01>,M3.5.0/-1,M10.5.0/0")
    assert at(nuuk, 1774746000000 - 1, 1774746000000) == [-120, -60]
    dublin = Zone("IST-1GMT0,M10.5.0,M3.5.0/1")
    assert at(dublin, 1767225600000, 1782864000000) == [0, 60]     # 2026-01-01, 07-01
    assert at(Zone("<+0530>-5:30"), 0, 1782864000000) == [330, 330]
    assert at(Zone("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45"), 1767225600000) == [825]
    # Jn days never count February 29, n days do
    assert at(Zone("AAA0BBB,J60/0,J300/0"), 1709251200000, 1709251200000 - 1) == [60, 0]
    assert at(Zone("AAA0BBB,59/0,300/0"), 1709164800000, 1709164800000 - 1) == [60, 0]


def test_a_summer_all_year_rule_is_summer_in_the_first_hours_of_a_year_too():
    # RFC 8536's example: summer from January 1st 00:00 to December 31st 25:00; the hours to
    # the year's start rule read winter
    z = Zone("EST5EDT4,0/0,J365/25")
    assert at(z, 1735689600000, 1735707600000 - 1, 1751328000000) == [-240, -240, -240]


def test_a_rule_that_is_not_one_is_refused_saying_where():
    for bad, says in (("", "expected text"), (None, "expected text"),
                      ("CE-1", "a zone name of at least 3 letters at character 1"),
                      ("CET", "a number up to 24 at character 4"),
                      ("CET-1CEST", "',' and the rule of its daylight saving time"),
                      ("CET-1CEST,M3.5.0", "',' and the end of daylight saving time"),
                      ("CET-1CEST,M3.5.7,M10.5.0", "a number up to 6"),
                      ("CET-1CEST,M3.0.0,M10.5.0", "M<month 1-12>.<week 1-5>"),
                      ("CET-1CEST,J0,J300", "J<day 1-365>"),
                      ("CET-1CEST,M3.5.0,M10.5.0/3x", "the end of the rule"),
                      ("<AB>-1", "a zone name of at least 3 characters in <>")):
        e = raises(ValueError, parse, bad)
        assert says in str(e), (bad, str(e))
