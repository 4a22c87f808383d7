"""simulator/scores/motors.py: its definitions on hand-made units with known answers, and a short
fast run of washers and fridges against the energy detector (the full scenario is in
bench/insights.py)."""
from firmware.profile.compile import compile as compile_profile
from simulator import insight_run
from simulator.scores import Unit
from simulator.scores.motors import score

DAY = 86400000


def report(t, since):
    return (t, "energy_report", 1.0, "power", {"since": since})


def cycle(start, end):
    return (end + 60000, "cycle", 100.0, "power", {"start": start, "end": end})


def alarm(t):
    return (t, "maintenance_due", 5.0, "power", {})


def by_name(lines):
    return {name.split(" (")[0]: (value, ok) for name, value, target, ok in lines}


def test_definitions_on_hand_made_units():
    healthy_washer = Unit("w1", {
        "programmes": [{"t": 1000, "end": 5000}, {"t": 9000, "end": 12000},
                       {"t": 20000, "end": 30000}, {"t": 60 * DAY, "end": 60 * DAY + 5000}],
        "degrading": False, "degrade_onset_ms": None, "failure_ms": None},
        [cycle(1500, 4800), cycle(15000, 16000), cycle(21000, 29000), alarm(30 * DAY)] +
        [report(d * DAY, 0 if d == 1 else (d - 1) * DAY) for d in range(1, 61)], {})
    failing_fridge = Unit("f1", {
        "compressor_cycles": [(1000, 2000), (3000, 4000)], "defrosts": [(5000, 6000)],
        "degrading": True, "degrade_onset_ms": 15 * DAY, "failure_ms": 45 * DAY},
        [cycle(900, 2100), cycle(5000, 6000), alarm(10 * DAY), alarm(35 * DAY)] +
        [report(d * DAY, 0 if d == 1 else (d - 1) * DAY) for d in range(1, 61)], {})
    not_yet_failed = Unit("f2", {
        "compressor_cycles": [], "degrading": True, "degrade_onset_ms": 20 * DAY,
        "failure_ms": 90 * DAY}, [report(d * DAY, (d - 1) * DAY) for d in range(1, 61)], {})
    got = by_name(score([healthy_washer, failing_fridge, not_yet_failed]))
    # 2 of the 3 programmes that ended by the horizon (day 60); the 4th ends after it
    assert got["washer programmes detected as cycles"] == (2 / 3, False)
    assert got["fridge compressor cycles detected as cycles"] == (0.5, False)
    # 5 cycles: the washer's 15000-16000 overlaps nothing; the fridge's defrost is real
    assert got["cycles that are real"] == (4 / 5, False)
    # the fridge's alarm before its onset is false; the one at day 35 is 10 days early
    assert got["degrading units flagged before failure"] == (1.0, True)
    assert got["median days flagged before failure"] == (10.0, True)
    # 2 false alarms over 60 + 15 + 20 healthy days
    rate, ok = got["false maintenance_due per 100 device-months"]
    assert abs(rate - 100.0 * 2 / (95 / 30.0)) < 1e-9 and not ok
    # worn since day 20, failing after the run, not flagged: said, not scored (a 30-day run
    # showed "no data" for wear while its worn units had raised maintenance_due)
    assert got["degrading units not failed yet, flagged since their wear began"] == (0.0, None)
    flagged = Unit("f3", dict(not_yet_failed.truth), not_yet_failed.insights + [alarm(25 * DAY)],
                   {})
    got = by_name(score([healthy_washer, failing_fridge, flagged]))
    assert got["degrading units not failed yet, flagged since their wear began"] == (1.0, None)
    assert got["degrading units not failed yet"] == (1, None)


def test_two_washes_run_together_as_one_cycle_are_one_found_and_names_are_scored():
    # cycle_end longer than the pause between two washes: one cycle covers both. The overlap
    # alone once called both found.
    def named(start, end, programme):
        c = cycle(start, end)
        c[4]["programme"] = programme
        return c
    truth = {"programmes": [{"t": 1000, "end": 5000, "programme": "quick 30"},
                            {"t": 6000, "end": 9000, "programme": "cotton 40"},
                            {"t": 20000, "end": 30000, "programme": "cotton 60"}],
             "degrading": False, "degrade_onset_ms": None, "failure_ms": None}
    signatures = {"sensors": [{"insight": {"programmes": [{"name": "quick 30"}]}}]}
    unit = Unit("w", truth, [named(1000, 9000, "quick 30"), named(20500, 29000, "cotton 40"),
                             report(DAY, 0)], signatures)
    got = by_name(score([unit]))
    assert got["washer programmes detected as cycles"] == (2 / 3, False)
    assert got["cycles that are real"] == (1.0, True)
    assert got["washes named the programme they ran"] == (0.5, None)
    assert "washes named the programme they ran" not in by_name(score([Unit(
        "w", truth, unit.insights, {"sensors": [{"insight": {"programmes": []}}]})]))


def test_no_failure_in_the_run_leaves_the_lead_unscored():
    unit = Unit("w", {"programmes": [], "degrading": False, "degrade_onset_ms": None,
                      "failure_ms": None}, [report(DAY, 0), report(2 * DAY, DAY)], {})
    got = by_name(score([unit]))
    assert got["median days flagged before failure"] == (None, None)
    # two days: a count, not judged as a rate per 100 device-months (0 read as a pass)
    assert got["false maintenance_due"] == (0, None)


def test_a_short_run_finds_every_cycle_of_washers_and_fridges():
    lines = []
    for name, units, days in (("washer", 3, 6), ("fridge", 2, 3)):
        profile, errors = compile_profile("examples/%s.yaml" % name)
        assert errors == []
        done = insight_run.run(profile, units, days, seed=5, direct=True)
        assert all(any(e[1] == "energy_report" for e in u.insights) for u in done)
        lines += score(done)
    got = by_name(lines)
    value, ok = got["washer programmes detected as cycles"]
    assert value == 1.0
    value, ok = got["fridge compressor cycles detected as cycles"]
    assert value >= 0.99
    assert got["cycles that are real"][0] >= 0.99
    assert got["false maintenance_due"][0] == 0


def test_a_watch_that_measures_no_cycle_misses_its_line():
    # `watch: reversal` on a fridge: 518 of 518 cycles without a figure, maintenance off for
    # good, and neither `tether check` nor the report said so.
    def figured(start, end, feature, gap=False):
        c = cycle(start, end)
        c[4].update({"feature": feature, "gap": gap})
        return c
    truth = {"compressor_cycles": [], "degrading": False, "degrade_onset_ms": None,
             "failure_ms": None}
    blind = Unit("f", truth, [figured(1000, 2000, None), figured(3000, 4000, None),
                              report(DAY, 0)], {})
    got = by_name(score([blind]))
    assert got["whole cycles the watch measured"] == (0.0, False)
    seeing = Unit("f", truth, [figured(1000, 2000, None), figured(3000, 4000, 4.5),
                               figured(5000, 6000, None, gap=True), report(DAY, 0)], {})
    assert by_name(score([seeing]))["whole cycles the watch measured"] == (0.5, True)


def test_energy_reports_are_scored_against_the_meters_count_between_the_models_marks():
    def day_report(d, kwh, missing_s=0, standby=0.05):
        return (d * DAY + 5000, "energy_report", kwh, "power",
                {"since": (d - 1) * DAY + 4000, "until": d * DAY, "kwh": kwh,
                 "standby_kwh": standby, "missing_s": missing_s})
    # marks: the model's energy at each report time (midnight)
    marks = [(d * DAY + 3000, 1000.0 + 1500.0 * d, 100.0 + 50.0 * d) for d in range(0, 5)]
    unit = Unit("w", {"programmes": [], "degrading": False, "degrade_onset_ms": None,
                      "failure_ms": None, "energy_wh": marks},
                [day_report(1, 1.5), day_report(2, 1.53, standby=0.055),   # 2 %, 10 % over
                 day_report(3, 1.2, missing_s=600),            # readings missing: not scored
                 day_report(4, 1.5 * 0.9, standby=0.04)], {})  # 10 % and 20 % under
    got = {name: value for name, value, _, _ in score([unit])}
    assert got["energy_report whole days scored"] == 3
    assert abs(got["energy_report kWh against the model's energy: median relative error"]
               - 0.02) < 1e-9
    assert abs(got["energy_report kWh against the model's energy: 95th percentile relative "
                   "error"] - 0.1) < 1e-9
    # the standby part: 50 Wh a day in the marks
    assert abs(got["energy_report standby_kwh against the model's standby: median relative "
                   "error"] - 0.1) < 1e-9


def test_a_short_run_marks_the_models_energy_at_each_report_time():
    p, errors = compile_profile("examples/washer.yaml")
    assert errors == []
    units = insight_run.run(p, 2, 4, 11, direct=True)
    for u in units:
        marks = u.truth["energy_wh"]
        assert len(marks) >= 3 and all(b[1] > a[1] for a, b in zip(marks, marks[1:]))
    got = {name: value for name, value, _, _ in score(units)}
    assert got["energy_report whole days scored"] >= 4
    assert got["energy_report kWh against the model's energy: median relative error"] < 0.02
