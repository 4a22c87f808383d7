"""The adherence insight's profile keys (firmware/profile/insights/adherence.py): compiled
defaults, and each mistake as `file:line:col: key.path: expected ..., got ...`."""
import textwrap

from firmware.profile.compile import compile

BASE = """\
device: {id: bottle}
platform: esp32
uplink: {broker: "mqtt://localhost"}
sensors:
  - name: pills
    driver: hx711
    pins: {dout: 4, sck: 5}
    quantity: count
    calibration: {tare: 100, pill_weight: 0.45}
"""


def compiled(tmp_path, insight):
    (tmp_path / "p.yaml").write_text(BASE + "    insight: " + textwrap.dedent(insight))
    return compile(str(tmp_path / "p.yaml"))


def errors_of(tmp_path, insight):
    profile, errors = compiled(tmp_path, insight)
    assert profile is None
    return [e.split("p.yaml:", 1)[1] for e in errors]


def test_the_example_compiles_with_every_setting_the_detector_reads():
    profile, errors = compile("examples/pill-bottle.yaml")
    assert errors == []
    assert profile["sensors"][0]["insight"] == {
        "type": "adherence", "times_min": [480, 1200], "window_ms": 1800000,
        "late_ms": 18000000, "pills": 1, "refill_days": 5, "settle_ms": 300000,
        "early_ms": 1800000, "utc_offset_min": 0}


def test_refill_below_is_days_of_supply(tmp_path):
    profile, errors = compiled(tmp_path, """\
        {type: adherence, schedule: ["20:00", "08:30"], refill_below: 36h, settle: 0s}
        """)
    assert errors == []
    cfg = profile["sensors"][0]["insight"]
    assert (cfg["times_min"], cfg["refill_days"], cfg["settle_ms"]) == ([510, 1200], 1.5, 0)


def test_dose_times_may_be_written_unquoted(tmp_path):
    # YAML 1.1 reads an unquoted 20:00 as the base-60 integer 1200 and 08:00 as text.
    profile, errors = compiled(tmp_path, "{type: adherence, schedule: [08:00, 20:00, 6:45]}\n")
    assert errors == []
    assert profile["sensors"][0]["insight"]["times_min"] == [405, 480, 1200]


def test_adherence_mistakes_are_reported(tmp_path):
    assert errors_of(tmp_path, "{type: adherence}\n") == [
        "10:14: sensors[0].insight: missing required key 'schedule'"]
    assert errors_of(tmp_path, "{type: adherence, schedule: ['8am']}\n") == [
        "10:43: sensors[0].insight.schedule[0]: expected a time of day like '08:00', "
        "got '8am'"]
    assert errors_of(tmp_path, "{type: adherence, schedule: ['08:00', '08:00']}\n") == [
        "10:42: sensors[0].insight.schedule: expected each time once, got 08:00 twice"]
    assert errors_of(tmp_path, "{type: adherence, schedule: ['08:00', '09:00'], window: 1h}\n"
                     ) == ["10:70: sensors[0].insight.window: dose times 08:00 and 09:00 are "
                           "closer than twice the window (120 min): their windows would "
                           "overlap"]
    assert errors_of(tmp_path, "{type: adherence, schedule: ['08:00'], refill_below: 5}\n") == [
        "10:67: sensors[0].insight.refill_below: expected a duration like '10s' (ms, s, min, h or d), got 5"]
    assert errors_of(tmp_path, "{type: adherence, schedule: ['08:00'], pills: 0}\n") == [
        "10:60: sensors[0].insight.pills: expected an integer from 1 to 20, or a list of them (one per dose time), got 0"]


def test_a_schedule_is_one_to_24_times_as_the_device_takes_them(tmp_path):
    assert errors_of(tmp_path, "{type: adherence, schedule: []}\n") == [
        "10:42: sensors[0].insight.schedule: expected a list of times of day like "
        "['08:00', '20:00'], got an empty list"]
    times = ", ".join("'%02d:%02d'" % (m // 60, m % 60) for m in range(0, 25 * 50, 50))
    assert errors_of(tmp_path, "{type: adherence, schedule: [%s], window: 5min}\n" % times) == [
        "10:42: sensors[0].insight.schedule: expected a list of times of day like "
        "['08:00', '20:00'], at most 24, got 25"]
    times = ", ".join("'%02d:%02d'" % (m // 60, m % 60) for m in range(0, 24 * 50, 50))
    profile, errors = compiled(tmp_path, "{type: adherence, schedule: [%s], window: 5min}\n"
                               % times)
    assert errors == [] and len(profile["sensors"][0]["insight"]["times_min"]) == 24


def test_late_shorter_than_the_window_is_reported(tmp_path):
    # window 3h, late 2h: a dose taken at 10:30 for 08:00, on time by the window, was missed.
    assert errors_of(tmp_path, "{type: adherence, schedule: ['08:00', '20:00'], window: 3h, "
                               "late: 2h}\n") == [
        "10:80: sensors[0].insight.late: late (120 min) must be at least the window (180 min): "
        "a dose taken within its window is on time"]


def test_readings_further_apart_than_a_quarter_of_the_window_are_refused(tmp_path):
    # At 1 h a take at 08:05 was seen at 09:00: late for its 30 min window, every time.
    for interval, window, ok in (("7min", "30min", True), ("8min", "30min", False),
                                 ("1h", "30min", False), ("1h", "4h", True)):
        text = BASE.replace("    quantity: count\n", "    quantity: count\n    interval: %s\n"
                            % interval)
        (tmp_path / "p.yaml").write_text(
            text + '    insight: {type: adherence, schedule: ["08:00"], window: %s}\n' % window)
        profile, errors = compile(str(tmp_path / "p.yaml"))
        if ok:
            assert errors == [], errors
        else:
            assert len(errors) == 1 and "sensors[0].interval: expected an interval of at most " \
                "450s: a dose is dated by the first reading that shows it" in errors[0], errors
            assert errors[0].endswith("got '%s'" % interval), errors


def test_early_is_compiled_shown_and_must_leave_room_between_doses(tmp_path, capsys):
    from firmware.cli import main
    profile, errors = compiled(tmp_path, '{type: adherence, schedule: ["08:00"], early: 1h}\n')
    assert errors == [] and profile["sensors"][0]["insight"]["early_ms"] == 3600000
    assert main(["check", str(tmp_path / "p.yaml")]) == 0
    assert "window 30min, early from 1h before, late until" in capsys.readouterr().out
    assert errors_of(tmp_path, '{type: adherence, schedule: ["08:00", "09:00"], early: 1h}\n') \
        == ["10:69: sensors[0].insight.early: dose times 08:00 and 09:00 are closer than the "
            "window and early (90 min): their windows would overlap"]


def test_pills_per_dose_time_follow_their_times_and_must_be_one_each(tmp_path):
    profile, errors = compiled(tmp_path, '{type: adherence, schedule: ["20:00", "08:00"], '
                                         'pills: [1, 2]}\n')
    assert errors == []
    cfg = profile["sensors"][0]["insight"]
    assert (cfg["times_min"], cfg["pills"]) == ([480, 1200], [2, 1])   # 2 at 08:00
    assert errors_of(tmp_path, '{type: adherence, schedule: ["08:00", "20:00"], '
                               'pills: [2, 1, 1]}\n') == [
        "10:69: sensors[0].insight.pills: expected one count of pills per dose time (2), got 3"]
    assert "pills[1]: expected an integer from 1 to 20, got 0" in errors_of(
        tmp_path, '{type: adherence, schedule: ["08:00", "20:00"], pills: [2, 0]}\n')[0]
    # A dose time in error is the one problem told: the pills, one per time, are not blamed.
    assert errors_of(tmp_path, '{type: adherence, schedule: ["24:00", "21:00"], '
                               'pills: [2, 1]}\n') == [
        "10:43: sensors[0].insight.schedule[0]: expected a time of day like '08:00', "
        "got '24:00'"]


def test_a_device_timezone_compiles_to_its_rule_beside_its_standard_offset(tmp_path):
    # A fixed utc_offset judged every dose an hour off half the year: the zone's rule lets the
    # device follow summer time by itself (agent/tz.py)
    (tmp_path / "p.yaml").write_text(BASE.replace("{id: bottle}",
                                                  "{id: bottle, timezone: America/New_York}")
                                     + '    insight: {type: adherence, schedule: ["08:00"]}\n')
    profile, errors = compile(str(tmp_path / "p.yaml"))
    assert errors == []
    assert profile["device"]["tz"] == "EST5EDT,M3.2.0,M11.1.0"
    insight = profile["sensors"][0]["insight"]
    assert (insight["tz"], insight["utc_offset_min"]) == ("EST5EDT,M3.2.0,M11.1.0", -300)


def test_a_timezone_that_is_none_or_beside_an_offset_is_said_where_it_is(tmp_path):
    for device, says in (
            ("{id: bottle, timezone: Europe/Berlln}", "1:32: device.timezone: expected a time "
             "zone of the tz database like 'Europe/Berlin' (none is named 'Europe/Berlln' "
             "here, did you mean 'Europe/Berlin'?), got 'Europe/Berlln'"),
            ("{id: bottle, timezone: Europe/Berlin, utc_offset: '+01:00'}",
             "1:59: device.utc_offset: expected no utc_offset beside a timezone (the zone says "
             "the offset, summer's too), got '+01:00'"),
            ("{id: bottle, timezone: Africa/Casablanca}", "changes on dates no rule says"),
            ("{id: bottle, timezone: 'CET-1CEST,M3.5.0'}", "expected ',' and the end of "
             "daylight saving time at character 17")):
        (tmp_path / "p.yaml").write_text(BASE.replace("{id: bottle}", device))
        profile, errors = compile(str(tmp_path / "p.yaml"))
        assert profile is None and len(errors) == 1 and says in errors[0], errors
