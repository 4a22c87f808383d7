# The `insight` command (docs/uplink.md, "Commands") through the whole agent: its arguments are
# checked, its reply says what was done, and a profile without insights does not take it. The
# insights' own behaviour is in test_insights.py. Both interpreters.
MICROPYTHON_HEAP = "200k"  # the whole agent from .mpy (as test_repair.py), plus an insight;
# 160k until the snoozed once-only events that wait (agent/insights: 1.2 KB more bytecode here);
# 164k until a dose could come in parts and the buffer kept the schema across a profile change
# (at 164k the reboot test restored, or ran out and started fresh, by the heap's layout); 176k
# until December's alarms and discard counts left it under 8k of room (the reboot test, which
# holds two agents' worth at once, ran out in a checkout whose code was 1.6 KB larger): 16k of
# room now, so that a few hundred bytes more code is not a failed run

import asyncio
import gc

from agent.store import RamStore
from commandkit import agent, command

MIN = 60000
PILLS = {"calibration": {"pill_weight": 0.5, "scale": 412.5, "tare": 8421}, "driver": "hx711",
         "filters": {}, "gain": 128, "interval_ms": 30000, "name": "pills",
         "pins": {"dout": 16, "sck": 17}, "quantity": "count", "resolution": [1, 0],
         "thresholds": [], "unit": "count",
         "insight": {"type": "adherence", "times_min": [480, 1200], "window_ms": 30 * MIN,
                     "late_ms": 300 * MIN, "pills": 1, "refill_days": 5, "settle_ms": 5 * MIN,
                     "utc_offset_min": 0}}


def test_a_pill_bottles_interval_and_window_keep_the_profiles_quarter_through_commands():
    # set_interval took 1 h for a 30-min window (the profile check refuses over 450 s), and a
    # window set under 4 x the interval was taken: doses taken on time were dated late.
    a = agent(PILLS)
    r = command(a, {"id": 1, "cmd": "set_interval", "sensor": "pills", "interval_ms": 3600000})
    assert r["ok"] is False and r["error"] == (
        "pills: at most 450000 ms: its adherence insight dates a dose by the first reading "
        "that shows it: a quarter of its window"), r
    r = command(a, {"id": 3, "cmd": "set_interval", "sensor": "pills", "interval_ms": 100000})
    assert r["ok"] is True, r
    r = command(a, {"id": 4, "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {"window_ms": 5 * MIN}})
    assert r["ok"] is False and r["error"] == (
        "window_ms must be at least 4 x the sensor's interval (100000 ms): a dose is dated by "
        "the first reading that shows it"), r
    assert a.insights.detectors["pills"].settings()["window_ms"] == 30 * MIN  # unchanged
    r = command(a, {"id": 5, "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {"window_ms": 400000}})
    assert r["ok"] is True, r
    r = command(a, {"id": 6, "cmd": "set_interval", "sensor": "pills", "interval_ms": 100001})
    assert r["ok"] is False and "at most 100000 ms" in r["error"], r


def test_insight_commands_ack_snooze_and_set_with_a_reply_that_says_what_was_done():
    a = agent(PILLS)
    r = command(a, {"id": 1, "cmd": "insight", "sensor": "pills", "action": "snooze",
                    "event": "dose_missed", "for_ms": 3600000})
    assert r["ok"] and r["result"] == {"sensor": "pills", "event": "dose_missed",
                                       "until": 1767225600000 + 3600000}, r
    r = command(a, {"id": 2, "cmd": "insight", "sensor": "pills", "action": "snooze",
                    "event": "dose_missed", "for_ms": 0})
    assert r["ok"] and r["result"]["until"] is None and a.insights.snoozed == {}, r
    r = command(a, {"id": 3, "cmd": "insight", "sensor": "pills", "action": "ack",
                    "event": "dose_taken"})
    assert r["ok"] and r["result"]["acked"] is True, r
    r = command(a, {"id": 4, "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {"pills": 2}})
    assert r["ok"] and r["result"]["settings"]["pills"] == 2, r
    r = command(a, {"id": 5, "cmd": "diag"})
    assert "pills" in r["result"]["insights"], r


INK = {"calibration": {"raw_empty": 410, "raw_full": 3720}, "driver": "level_probe",
       "filters": {}, "interval_ms": 60000, "name": "ink_c", "pin": 34, "quantity": "level",
       "resolution": [1, -1], "thresholds": [], "unit": "%",
       "insight": {"type": "consumable", "lead_time_ms": 10 * 86400000,
                   "window_ms": 28 * 86400000, "learn_ms": 2 * 86400000, "empty": 0,
                   "swap_jump": 20, "forecast_ms": 86400000, "utc_offset_min": 0}}


def test_a_lead_time_changes_through_the_command_channel():
    a = agent(INK)
    r = command(a, {"id": 1, "cmd": "insight", "sensor": "ink_c", "action": "set",
                    "settings": {"lead_time_ms": 8 * 86400000}})
    assert r["ok"] and r["result"]["settings"]["lead_time_ms"] == 8 * 86400000, r
    assert a.insights.detectors["ink_c"].lead_ms == 8 * 86400000
    assert a.insights.dirty  # saved with the next round: it outlives a power cut


def test_an_insights_settings_are_read_through_the_command_channel():
    # A set() the profile changed since is dropped at boot: the cloud could not see what held
    # without sending a set of its own.
    a = agent(INK)
    r = command(a, {"id": 1, "cmd": "insight", "sensor": "ink_c", "action": "settings"})
    assert r["ok"] and r["result"] == {"sensor": "ink_c", "settings": a.insights.detectors[
        "ink_c"].settings()}, r
    assert r["result"]["settings"]["lead_time_ms"] == 10 * 86400000
    command(a, {"id": 2, "cmd": "insight", "sensor": "ink_c", "action": "set",
                "settings": {"lead_time_ms": 8 * 86400000}})
    r = command(a, {"id": 3, "cmd": "insight", "sensor": "ink_c", "action": "settings"})
    assert r["result"]["settings"]["lead_time_ms"] == 8 * 86400000, r


def test_a_schedule_changes_through_the_command_channel():
    a = agent(PILLS)
    r = command(a, {"id": 2, "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {"schedule": ["07:30", "20:30"]}})
    assert r["ok"] and r["result"]["settings"]["times_min"] == [450, 1230], r
    assert a.insights.detectors["pills"].times == [450, 1230]
    assert a.insights.dirty  # saved with the next round: it outlives a power cut


def test_bad_insight_commands_get_a_clear_error_and_change_nothing():
    a = agent(PILLS)
    bad = [
        ({"sensor": "pills", "action": "ack"}, "missing argument 'event'"),
        ({"sensor": "pills", "action": "nap", "event": "x"}, "'action' must be \"ack\", "
                                                              "\"snooze\", \"set\" or "
                                                              "\"settings\""),
        ({"sensor": "ink", "action": "settings"}, "no insight on sensor 'ink'"),
        ({"sensor": "ink", "action": "ack", "event": "reorder"}, "no insight on sensor 'ink'"),
        ({"sensor": "pills", "action": "ack", "event": "reorder"}, "sends no 'reorder'"),
        ({"sensor": "pills", "action": "snooze", "event": "dose_missed", "for_ms": -1},
         "'for_ms' must be from 0 to"),
        ({"sensor": "pills", "action": "snooze", "event": "dose_missed",
          "for_ms": 91 * 86400000}, "'for_ms' must be from 0 to"),
        ({"sensor": "pills", "action": "set", "settings": [1]}, "'settings' must be a map"),
        ({"sensor": "pills", "action": "set", "settings": {"pills": 0}}, "pills"),
        ({"sensor": "pills", "action": "ack", "event": "dose_taken", "why": 1},
         "unknown argument 'why'"),
        ({"sensor": 7, "action": "ack", "event": "dose_taken"}, "'sensor' must be text"),
    ]
    for i, (args, error) in enumerate(bad):
        fields = {"id": i, "cmd": "insight"}
        fields.update(args)
        r = command(a, fields)
        assert r["reply"] == i and r["ok"] is False and error in r["error"], (args, r)
    assert a.insights.snoozed == {}
    # nothing to set is refused, as ink's and energy's are (the `settings` action reads them)
    r = command(a, {"id": "s", "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {}})
    assert r["ok"] is False and "expected a map of settings to change" in r["error"], r


def test_of_several_bad_settings_the_error_names_the_same_one_on_a_board_as_on_a_host():
    # MicroPython's dicts keep no order: its reply named window_ms where CPython's named
    # refill_days, and of a schedule and a times_min sent together either one could win
    a = agent(PILLS)
    for i, order in enumerate((("window_ms", "refill_days", "pills"),
                               ("pills", "refill_days", "window_ms"))):
        settings = {}
        for key in order:
            settings[key] = -1
        r = command(a, {"id": 10 + i, "cmd": "insight", "sensor": "pills", "action": "set",
                        "settings": settings})
        assert r["ok"] is False and r["error"].startswith("pills"), r
    r = command(a, {"id": 2, "cmd": "insight", "sensor": "pills", "action": "set",
                    "settings": {"schedule": ["09:00"], "times_min": [600]}})
    assert r["ok"] is False and "schedule and times_min are one setting" in r["error"], r
    assert command(a, {"id": 3, "cmd": "insight", "sensor": "pills", "action": "settings"})[
        "result"]["settings"]["times_min"] == [480, 1200]


def test_errors_show_a_long_text_or_a_bignum_from_a_command_short():
    # Echoing what a sender sent in full made 1.8 KB replies; a bignum of 4,400 digits made
    # CPython's "Exceeds the limit (4300 digits)" the reply instead of the mistake.
    import sys
    a = agent(PILLS)
    long_name = "x" * 200
    # CPython refuses to print an int of over 4300 digits; MicroPython prints any, but one that
    # size is heap the agent's 160k here does not spare: past 64 bits, shown() says the same
    big = 10 ** 4400 if sys.implementation.name == "cpython" else 1 << 300
    cases = [
        ({"sensor": long_name, "action": "ack", "event": "dose_taken"},
         "no insight on sensor '%s'..." % ("x" * 13)),
        ({"sensor": "pills", "action": "ack", "event": long_name},
         "sends no '%s'..." % ("x" * 13)),
        ({"sensor": "pills", "action": "set", "settings": {long_name: 1}},
         "unknown setting '%s'..." % ("x" * 13)),
        ({"sensor": "pills", "action": "set", "settings": {big: 1}},
         "a map key past 64 bits"),
        ({"sensor": "pills", "action": "set", "settings": {"pills": big}},
         "got <int of more than 64 bits>"),
    ]
    for i, (args, error) in enumerate(cases):
        fields = {"id": i, "cmd": "insight"}
        fields.update(args)
        r = command(a, fields)
        assert r["ok"] is False and error in r["error"] and len(r["error"]) < 200, (i, r)
    r = command(a, {"id": "s", "cmd": "set_interval", "sensor": long_name, "interval_ms": 1000})
    assert r["error"] == "no sensor '%s'..." % ("x" * 37)
    assert command(a, {"id": "t", "cmd": "set_interval", "sensor": "pills",
                       "interval_ms": 450000})["ok"] is True  # a quarter of its window
    assert command(a, {"id": "c"})["error"].startswith("missing argument 'cmd' (known: ")


def test_a_profile_without_insights_has_no_insight_command():
    plain = dict(PILLS)
    del plain["insight"]
    a = agent(plain)
    assert a.insights is None
    r = command(a, {"id": 1, "cmd": "insight", "sensor": "pills", "action": "ack",
                    "event": "dose_taken"})
    assert r["ok"] is False and "unknown command 'insight'" in r["error"], r


def test_the_agent_saves_insights_after_an_event_and_the_next_boot_goes_on_from_them():
    store = RamStore()
    a = agent(PILLS, store)
    feed = a.insights.feeder("pills")
    t = 1767225600000 + 7 * 60 * MIN
    while t < 1767225600000 + 15 * 60 * MIN:     # nobody takes the 08:00 dose
        feed(t, 40.0, True)
        t += 30000
    assert a.insights.sent == 1 and a.insights.dirty

    def one_round(now):
        a.running = False
    a.on_tick = one_round
    a.running = True
    asyncio.run(a.sampling())                     # a round of readings, then the save
    assert not a.insights.dirty and store.read_all("insights") is not None
    before = a.insights.detectors["pills"].snapshot()
    # The next boot, on the same flash: the first agent gone, as it is after a reset (two whole
    # agents and a snapshot's decoding do not fit this heap together, depending on how long
    # the checkout's paths are)
    a = feed = None
    gc.collect()
    b = agent(PILLS, store)
    assert (b.insights.restored, b.insights.fresh) == (1, 0)
    assert b.insights.detectors["pills"].snapshot() == before


def test_a_snooze_before_the_clock_is_synced_is_refused_and_an_unsnooze_is_not():
    a = agent(PILLS, synced=False)
    r = command(a, {"id": 1, "cmd": "insight", "sensor": "pills", "action": "snooze",
                    "event": "dose_missed", "for_ms": 3600000})
    assert r["ok"] is False and "not synced" in r["error"] and a.insights.snoozed == {}, r
    r = command(a, {"id": 2, "cmd": "insight", "sensor": "pills", "action": "snooze",
                    "event": "dose_missed", "for_ms": 0})
    assert r["ok"] is True and r["result"]["until"] is None, r
    # what else is wrong is said first: it said only "not synced"
    r = command(a, {"id": 3, "cmd": "insight", "sensor": "pill", "action": "snooze",
                    "event": "dose_missed", "for_ms": 3600000})
    assert r["ok"] is False and "no insight on sensor 'pill'" in r["error"], r
    r = command(a, {"id": 4, "cmd": "insight", "sensor": "pills", "action": "snooze",
                    "event": "dose_mised", "for_ms": 3600000})
    assert r["ok"] is False and "sends no 'dose_mised'" in r["error"], r
