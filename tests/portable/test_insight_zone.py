# The insights of a device with a time zone (device.timezone: its POSIX TZ rule, agent/tz.py):
# a pill bottle's doses and an appliance's daily report keep local time through the change to
# summer time by themselves, and across a reboot in summer. With a fixed offset, every dose
# after the change was an extra dose an hour early and a dose missed, until the cloud sent the
# new offset. Both interpreters.
from agent import cbor, cbor_decode
from agent.insights import adherence, energy
from energykit import Run, config as energy_config
from pillkit import HOUR, MIN, Bottle, config
from support import raises

# Both detectors and the zone compiled from source in RAM beside this module (a board loads
# each kind it has as .mpy, one of them on most)
MICROPYTHON_HEAP = "128k"
BERLIN = "CET-1CEST,M3.5.0,M10.5.0/3"     # to summer time on 2026-03-29 at 01:00 UTC
MAR27 = 1774569600000                    # 2026-03-27 00:00 UTC
DAY = 24 * HOUR


def _take(b, takes):
    """Takes one pill at each Unix ms of takes, the scale read every 30 s, until 6 h after."""
    count = 40
    for t in takes + [takes[-1] + 6 * HOUR]:
        b.hold(count, t - b.t)
        count -= 1


def test_doses_at_8_and_20_local_are_on_time_before_and_after_the_clocks_go_forward():
    b = Bottle(40, start=MAR27 + 6 * HOUR, tz=BERLIN, utc_offset_min=60)
    takes = []
    for day in range(4):                        # 08:05 and 20:05 local, Friday to Monday
        off = 1 if day < 2 else 2               # hours ahead of UTC
        takes += [MAR27 + day * DAY + (8 - off) * HOUR + 5 * MIN,
                  MAR27 + day * DAY + (20 - off) * HOUR + 5 * MIN]
    _take(b, takes)
    got = [(f["scheduled"], f["status"], f["utc_offset_min"]) for _, e, _, f in b.events
           if e == "dose_taken"]
    assert b.names() == ["dose_taken"] * 8, b.events
    assert got[3:6] == [(MAR27 + DAY + 19 * HOUR, "on_time", 60),
                        (MAR27 + 2 * DAY + 6 * HOUR, "on_time", 120),
                        (MAR27 + 2 * DAY + 18 * HOUR, "on_time", 120)], got
    e = raises(ValueError, b.det.set, {"utc_offset_min": 60})
    assert "keeps its zone's time (%s)" % BERLIN in str(e), str(e)


def test_doses_held_while_the_bottle_is_off_the_scale_across_the_change_stay_held():
    # Judged missed at the change, the pills it came back without answered none of them
    b = Bottle(40, start=MAR27 + DAY + 6 * HOUR, tz=BERLIN, utc_offset_min=60)
    b.hold(40, 35 * MIN)                        # Saturday 07:35 local
    b.hold(39, 2 * HOUR)                        # the 08:00 dose taken at 08:05, to 10:05
    b.hold(-30.0, 25 * HOUR)                    # lifted until Sunday 12:05 summer time
    b.hold(37, 8 * HOUR)                        # back with two pills gone
    assert "dose_missed" not in b.names() and "extra_dose" not in b.names(), b.events
    taken = [f for _, e, _, f in b.events if e == "dose_taken"]
    assert [f["scheduled"] for f in taken] == [MAR27 + DAY + 7 * HOUR, MAR27 + DAY + 19 * HOUR,
                                               MAR27 + 2 * DAY + 6 * HOUR], b.events


def test_a_settings_reply_sent_back_whole_is_taken_and_only_another_offset_refused():
    b = Bottle(40, start=MAR27 + 3 * DAY + 5 * HOUR, tz=BERLIN, utc_offset_min=60)
    whole = b.det.settings()
    assert whole["utc_offset_min"] == 120
    whole["late_ms"] = 3 * HOUR
    assert b.det.set(whole)["late_ms"] == 3 * HOUR
    r = Run(tz=BERLIN, utc_offset_min=60)
    r.feed(100.0, HOUR)
    assert r.d.set(dict(r.d.settings(), tariff=0.5))["tariff"] == 0.5


def test_a_reboot_in_summer_goes_on_judging_the_dose_under_way():
    b = Bottle(40, start=MAR27 + 3 * DAY + 5 * HOUR, tz=BERLIN, utc_offset_min=60)
    b.hold(40, 25 * MIN)                        # to 07:55 summer time: the 08:00 dose open
    snap = cbor_decode.loads(cbor.dumps(b.det.snapshot()))
    b.det = None
    b.det = adherence.Detector(config(tz=BERLIN, utc_offset_min=60), b._emit)
    b.det.restore(snap)
    assert b.det.state()["scheduled"] == MAR27 + 3 * DAY + 6 * HOUR
    b.hold(40, 10 * MIN)
    b.hold(39, 6 * HOUR)
    assert b.names() == ["dose_taken"], b.events
    assert b.events[0][3]["status"] == "on_time"


def test_the_daily_report_closes_at_local_midnight_a_23_hour_day_at_the_change():
    r = Run(tz=BERLIN, utc_offset_min=60)
    r.t = MAR27 + DAY                           # Saturday 00:00 UTC, 01:00 local
    r.feed(100.0, 3 * DAY, step=60000)
    reports = [f for _, e, _, f in r.events if e == "energy_report"]
    assert [f["until"] for f in reports] == [MAR27 + 23 * HOUR + DAY, MAR27 + 2 * DAY + 22 * HOUR,
                                             MAR27 + 3 * DAY + 22 * HOUR]
    assert abs(reports[1]["kwh"] - 2.3) < 0.01 and abs(reports[2]["kwh"] - 2.4) < 0.01
    assert r.d.settings()["utc_offset_min"] == 120
    e = raises(ValueError, r.d.set, {"utc_offset_min": 60})
    assert "keeps its zone's time" in str(e), str(e)
    # a reboot in summer: the day goes on to the same local midnight
    snap = cbor_decode.loads(cbor.dumps(r.d.snapshot()))
    r.d = None
    r.d = energy.Detector(energy_config(tz=BERLIN, utc_offset_min=60), r._emit)
    r.d.restore(snap)
    r.feed(100.0, DAY, step=60000)
    assert r.events[-1][3]["until"] == MAR27 + 4 * DAY + 22 * HOUR
