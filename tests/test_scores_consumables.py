"""simulator/scores/consumables.py on hand-made units (the truth and events known), and on a short
fast run of the printer model against the detector (every line present, swaps all seen)."""
from firmware.profile.compile import compile as compile_profile
from simulator.insight_run import run
from simulator.scores.consumables import score

DAY = 86400000
T0 = 1767225600000


class Unit:
    def __init__(self, truth, insights, profile):
        self.truth, self.insights, self.profile = truth, insights, profile


def profile():
    p, errors = compile_profile("examples/printer.yaml")
    assert errors == []
    return p


def lines(units):
    return {name: (value, ok) for name, value, target, ok in score(units)}


def test_a_reorder_in_time_a_late_one_a_second_one_and_a_forecast_are_scored_as_defined():
    p = profile()
    d = lambda days: T0 + int(days * DAY)
    truth = {"ink_start": [(T0, "ink_k", 90.0), (T0, "ink_c", 90.0), (T0, "ink_m", 90.0),
                           (T0, "ink_y", 90.0)],
             "cartridge_changes": [(d(30), "ink_k")],
             "ink_empty": [(d(25), "ink_k"), (d(40), "ink_c"), (d(40), "ink_m"), (d(50), "ink_y")],
             "ink_low": []}
    insights = [
        (d(13), "reorder", "ink_k", 12.0, {}),                  # 12 days before dry: in time
        (d(18), "forecast", "ink_k", 8.0, {}),                  # true 7 days: 1 day off
        (d(31), "cartridge_replaced", "ink_k", 98.0, {}),       # a day late: not within a reading
        (d(2), "reorder", "ink_c", 30.0, {}),                   # 38 days before dry: too early
        (d(35), "reorder", "ink_c", 5.0, {}),                   # a second one: false
        (d(33.5), "forecast", "ink_c", 6.0, {}),                # true 6.5: 0.5 off
        (d(35), "reorder", "ink_m", 5.0, {}),                   # 5 days before dry: late
        (d(25), "reorder", "ink_y", 25.0, {}),                  # 25 days ahead: early, needed
    ]
    got = lines([Unit(truth, insights, p)])
    # ink_c had a reorder 38 days ahead: in time, though false (nowhere near low: more than
    # 3 x the lead time); ink_y's, 25 days ahead, is only early (its ink was needed).
    assert got["reorder at least the lead time before dry"] == (3 / 4.0, False)
    assert got["false reorders"] == (2, False)
    assert got["early reorders (more than 2 x lead time + 3 days before dry)"] == (2, None)
    assert got["median abs error of the forecast 7 days before dry, days"] == (0.75, True)
    assert got["swaps detected within one reading"] == (0.0, False)
    assert got["false swaps"] == (1, False)
    assert got["cartridges that ran dry"][0] == 4
    # ink_c's second and ink_m's, 5 days ahead by their own forecast against 10 days of lead
    assert got["of them sent with less than the lead time left by their own forecast"] == (2, None)


def test_a_cartridge_dry_before_a_week_plus_the_lead_time_has_a_line_of_its_own():
    p = profile()
    truth = {"ink_start": [(T0, "ink_k", 40.0), (T0, "ink_c", 60.0)], "cartridge_changes": [],
             "ink_empty": [(T0 + 15 * DAY, "ink_k"), (T0 + 19 * DAY, "ink_c")], "ink_low": []}
    insights = [(T0 + 3 * DAY, "reorder", "ink_k", 9.0, {}),      # 12 days ahead: in time
                (T0 + 9 * DAY + 3600000, "reorder", "ink_c", 9.0, {})]  # an hour late
    got = lines([Unit(truth, insights, p)])
    assert got["of them scored for the lead time"][0] == 1        # ink_c: lead time from day 9
    assert got["reorder at least the lead time before dry"] == (0.0, False)
    assert got["reorder in time where the lead time began in the first week"] == (1.0, None)
    assert lines([Unit({"ink_start": []}, [], p)])["false reorders"] == (None, None)
    # A first cartridge that ran dry on day 3 ends that stretch: the week starts again at the
    # swap on day 5, so a cartridge dry on day 20 (lead time from day 10) is not scored.
    truth = {"ink_start": [(T0, "ink_k", 10.0)], "cartridge_changes": [(T0 + 5 * DAY, "ink_k")],
             "ink_empty": [(T0 + 3 * DAY, "ink_k"), (T0 + 20 * DAY, "ink_k")], "ink_low": []}
    got = lines([Unit(truth, [], p)])
    assert got["cartridges that ran dry"][0] == 2
    assert got["of them scored for the lead time"][0] == 0
    assert got["reorder in time where the lead time began in the first week"] == (0.0, None)


def test_a_short_run_of_printers_sees_every_swap_on_its_reading():
    units = run(profile(), devices=3, days=21, seed=5, direct=True)
    got = lines(units)
    assert got["swaps detected within one reading"] == (1.0, True)
    assert got["false swaps"] == (0, True)
    assert sum(len(u.truth["ink_empty"]) for u in units) == got["cartridges that ran dry"][0]


def test_a_sensor_the_printer_model_leaves_to_made_up_signals_is_not_scored():
    # A waste-ink level beside the cartridges, with a consumable insight: each refill of its
    # made-up level was scored as a false cartridge swap.
    import copy
    p = profile()
    waste = copy.deepcopy(next(s for s in p["sensors"] if s["name"] == "ink_k"))
    waste["name"] = "waste"
    p["sensors"].append(waste)
    units = run(p, devices=3, days=21, seed=5, direct=True)
    assert all(u.truth["made_up"] == ["waste"] for u in units)
    assert any(i[2] == "waste" for u in units for i in u.insights)  # it ran, and sent events
    from simulator import scores
    assert lines(units)["false swaps"][0] > 0     # by the area alone: its refills as swaps
    got = {name: (value, ok) for name, value, target, ok in scores.score(units)["consumables"]}
    assert got["false swaps"] == (0, True)
    assert got["swaps detected within one reading"] == (1.0, True)


def test_a_cartridge_changed_at_ink_low_is_judged_against_its_low_crossing():
    p = profile()
    d = lambda days: T0 + int(days * DAY)
    truth = {"ink_start": [(T0, "ink_k", 90.0), (T0, "ink_c", 90.0)],
             "cartridge_changes": [(d(45), "ink_k"), (d(45), "ink_c")],
             "ink_low": [(d(40), "ink_k"), (d(40), "ink_c")], "ink_empty": []}
    insights = [(d(15), "reorder", "ink_k", 25.0, {}),     # 25 days before low: needed
                (d(9), "reorder", "ink_c", 31.0, {})]      # 31 days before low: nowhere near
    got = lines([Unit(truth, insights, p)])
    assert got["false reorders"] == (1, False)


def test_the_report_prints_each_score_beside_its_target_and_flags_only_the_missed_ones():
    from simulator.scores import lines_text
    out = lines_text({"consumables": [
        ("reorder at least the lead time before dry", 0.954, ">= 0.97", False),
        ("false reorders", 0, "0", True),
        ("median abs error of the forecast 7 days before dry, days", None, "<= 1", None),
        ("of them scored for the lead time", 0, "", None),
        ("early reorders", 3, "(no target: the ink was needed)", None)],
        "doses": [("taken doses reported missed", 0.02, "(for comparison)", None)]})
    assert out == [
        # what the run had nothing for, on one line: a 2-day run had 16 of them among the rest
        "  consumables: no data in this run for 1 figure: median abs error of the forecast 7 "
        "days before dry, days",
        "  consumables: reorder at least the lead time before dry: 0.954 (target >= 0.97)"
        "  MISSES TARGET",
        "  consumables: false reorders: 0 (target 0)",
        "  consumables: of them scored for the lead time: 0",
        "  consumables: early reorders: 3 (no target: the ink was needed)",
        "  doses: taken doses reported missed: 0.02 (for comparison)"]


def test_empty_is_scored_from_a_day_before_running_dry_to_ten_readings_after():
    p = profile()
    d = lambda days: T0 + int(days * DAY)
    every = next(s["interval_ms"] for s in p["sensors"] if s["name"] == "ink_k")
    truth = {"ink_start": [(T0, n, 50.0) for n in ("ink_k", "ink_c", "ink_m", "ink_y")],
             "cartridge_changes": [],
             "ink_empty": [(d(10), "ink_k"), (d(12), "ink_c"), (d(14), "ink_m")],
             "ink_low": []}
    insights = [
        (d(10) + 4 * every, "empty", "ink_k", 0.0, {}),     # the filters' few readings late
        (d(11.5), "empty", "ink_c", 0.0, {}),               # 0 % at the probe's resolution
        (d(14) + 11 * every, "empty", "ink_m", 0.0, {}),    # too late: missed, and false
        (d(3), "empty", "ink_y", 0.0, {}),                  # ink_y never ran dry: false
    ]
    got = lines([Unit(truth, insights, p)])
    assert got["empty told from a day before running dry to 10 readings after"] == (2 / 3.0, None)
    assert got["false empties"] == (2, None)
