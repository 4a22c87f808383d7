"""The consumable insight's profile keys (firmware/profile/insights/consumable.py): defaults, and
each bad value as `file:line:col: key.path: expected ..., got ...`."""
import textwrap

from firmware.profile.compile import compile

BASE = """\
device: {id: printer}
platform: esp32
uplink: {broker: "mqtt://localhost"}
sensors:
"""


def compiled(tmp_path, insight):
    (tmp_path / "p.yaml").write_text(BASE + textwrap.dedent("""\
          - name: ink_k
            driver: level_probe
            pin: 35
            calibration: {raw_empty: 398, raw_full: 3702}
            insight: %s
        """ % insight))
    return compile(str(tmp_path / "p.yaml"))


def test_the_defaults_are_compiled_into_the_sensors_insight(tmp_path):
    p, errors = compiled(tmp_path, "{type: consumable}")
    assert errors == []
    assert p["sensors"][0]["insight"] == {
        "type": "consumable", "lead_time_ms": 10 * 86400000, "window_ms": 56 * 86400000,
        "learn_ms": 2 * 86400000, "empty": 0, "swap_jump": 20, "forecast_ms": 86400000,
        "utc_offset_min": 0}


def test_check_says_the_forecast_a_reorder_comes_at_not_only_the_lead_time(tmp_path):
    # "reorder 5d before empty" read as a reorder at a forecast of 5 days; it comes at 8-9.5
    from firmware.profile.summary import insight
    p, errors = compiled(tmp_path, "{type: consumable, lead_time: 5d, window: 28d}")
    assert errors == []
    assert insight(p["sensors"][0]) == (
        "ink_k: consumable, lead time 5d: a reorder once the forecast is under 9.5d (8d while its "
        "points span under 3 weeks; in its first week, once the forecast and the slow end of its "
        "band, multiplied, are under the lead time squared), a fit over 28d")


def test_bad_values_say_what_was_expected(tmp_path):
    for insight, message in (
            ("{type: consumable, empty: 60}",
             "sensors[0].insight.empty: expected a percentage from 0 to 50, got 60"),
            ("{type: consumable, swap_jump: 0.5}",
             "sensors[0].insight.swap_jump: expected a percentage from 1 to 100, got 0.5"),
            ("{type: consumable, window: 3d}",
             "sensors[0].insight.window: expected a duration from 8d to 56d, got '3d'"),
            ("{type: consumable, lead_time: 10}",
             "sensors[0].insight.lead_time: expected a duration like '10s' (ms, s, min, h or d), got 10")):
        p, errors = compiled(tmp_path, insight)
        assert p is None and len(errors) == 1, errors
        assert errors[0].split(": ", 1)[1] == message, errors
        assert errors[0].startswith(str(tmp_path / "p.yaml") + ":9:")
