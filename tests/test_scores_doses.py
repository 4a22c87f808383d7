"""simulator/scores/doses.py: its definitions on a hand-made unit, and a short fleet of real pill
bottles (model, provisioned schedule, detector) that meets the targets."""
from firmware.profile.compile import compile
from simulator.insight_run import run
from simulator.scores.doses import score, tally

MIN = 60000
HOUR = 60 * MIN
DAY0 = 1767225600000


class Unit:
    def __init__(self, truth, insights, profile):
        self.truth, self.insights, self.profile = truth, insights, profile


def profile():
    cfg = {"type": "adherence", "times_min": [480, 1200], "window_ms": 30 * MIN,
           "late_ms": 5 * HOUR, "pills": 1, "refill_days": 5, "settle_ms": 5 * MIN,
           "utc_offset_min": 0}
    return {"sensors": [{"name": "pills", "insight": cfg}]}


def test_scores_match_events_to_doses_by_scheduled_time():
    s = [DAY0 + 8 * HOUR + d * 12 * HOUR for d in range(6)]     # 08:00, 20:00, ... 3 days
    truth = {"patient": {"start_ms": DAY0},
             "doses": [(s[0] + MIN, 1, s[0], "on_time"), (s[0] + HOUR, 1, s[0], "double"),
                       (s[1] + 2 * HOUR, 1, s[1], "late"), (s[3] + MIN, 1, s[3], "on_time"),
                       (s[4] + MIN, 1, s[4], "on_time")],
             "missed_doses": [(s[2], "forgot"), (s[5], "forgot")],
             "refills": [(s[5] + 20 * HOUR, 30, 40)],   # the run went on past s[5]'s close
             "handling": [(s[0] + 3 * HOUR, "lift", 30000)]}

    def ev(event, sched, **f):
        return (sched + 2 * HOUR, event, "pills", None, dict(f, scheduled=sched))

    insights = [ev("dose_taken", s[0], status="on_time", pills=1), ev("extra_dose", s[0]),
                ev("dose_taken", s[1], status="on_time", pills=2),   # late, 1 pill
                ev("dose_missed", s[2]),
                ev("dose_missed", s[3]),                        # a false missed ...
                ev("dose_taken", s[5], status="late")]          # ... and a false taken
    c = tally([Unit(truth, insights, profile())])
    assert (c["missed"], c["missed_hit"]) == (2, 1)
    assert (c["taken"], c["taken_flagged_missed"], c["taken_hit"]) == (4, 1, 2)
    assert (c["reported_taken"], c["reported_taken_true"], c["status_agree"]) == (3, 2, 1)
    assert c["pills_agree"] == 1
    assert (c["doubles"], c["doubles_hit"], c["extra"], c["extra_true"]) == (1, 1, 1, 1)
    lines = {name.split(" (")[0]: (value, ok) for name, value, _, ok in
             score([Unit(truth, insights, profile())])}
    assert lines["dose_missed sensitivity"] == (0.5, False)
    assert lines["dose_missed specificity"] == (0.75, False)
    assert lines["dose_taken precision"] == (2 / 3, False)
    assert lines["dose_taken recall"] == (0.5, False)


def test_an_extra_dose_for_a_double_take_the_run_ended_in_is_a_true_one():
    # Its slot closes after the run's end: the double is not scored as found or not, but the
    # extra_dose it caused was right (it counted as false: 0.5 of two true ones).
    s = [DAY0 + 8 * HOUR, DAY0 + 20 * HOUR]
    truth = {"patient": {"start_ms": DAY0},
             "doses": [(s[0] + MIN, 1, s[0], "on_time"), (s[0] + HOUR, 1, s[0], "double"),
                       (s[1] + MIN, 1, s[1], "on_time"), (s[1] + HOUR, 1, s[1], "double")],
             "missed_doses": [], "refills": []}
    insights = [(s[0] + 2 * HOUR, "extra_dose", "pills", 1, {"scheduled": s[0]}),
                (s[1] + 2 * HOUR, "extra_dose", "pills", 1, {"scheduled": s[1]})]
    c = tally([Unit(truth, insights, profile())])         # the run ends at s[1] + 2 h
    assert (c["doubles"], c["doubles_hit"], c["extra"], c["extra_true"]) == (1, 1, 2, 2)


def test_a_short_fleet_of_real_bottles_meets_the_targets():
    p, errors = compile("examples/pill-bottle.yaml")
    assert errors == []
    units = run(p, 6, 5, seed=3, direct=True)
    c = tally(units)
    assert c["taken"] > 40 and c["missed"] > 0 and c["handling"] > 5
    for name, value, target, ok in score(units):
        # every target met; a figure shown for comparison carries no verdict
        assert (ok is None) if target in ("(for comparison)", "") else ok, (name, value, target)


def test_refill_needed_and_dose_incomplete_are_scored_against_the_truths_count():
    # 1 pill at 08:00 and 20:00: 2 a day; refill_below 5 days: low under 10 pills.
    s = [DAY0 + 8 * HOUR + d * 12 * HOUR for d in range(12)]
    doses = [(x + MIN, 1, x, "on_time") for x in s[:11]]
    truth = {"patient": {"start_ms": DAY0, "start_count": 12},
             "doses": doses, "missed_doses": [], "refills": [(s[8] + HOUR, 30, 31)],
             "handling": []}
    # 12 pills: 11 left after s[0], 9 after s[2] (low: 4.5 days); refilled to 31 after s[8]
    # (re-armed), 28 after s[11]'s... the run ends at s[10]: no second low
    insights = [(s[2] + 10 * MIN, "refill_needed", "pills", 4.5, {"count": 9}),
                (s[9] + 10 * MIN, "refill_needed", "pills", 15.0, {"count": 30}),   # false
                (s[10] + 6 * HOUR, "dose_incomplete", "pills", 0, {"scheduled": s[10]})]
    c = tally([Unit(truth, insights, profile())])
    assert (c["low"], c["low_hit"], c["refill_needed"], c["refill_needed_true"]) == (1, 1, 2, 1)
    assert (c["part"], c["incomplete"], c["incomplete_true"]) == (0, 1, 0)
    got = {name: value for name, value, _, _ in score([Unit(truth, insights, profile())])}
    assert got["refill_needed when the supply fell below refill_below (recall)"] == 1.0
    assert got["refill_needed events that were (precision)"] == 0.5
    assert got["supplies that ran low"] == 1


def test_a_unit_whose_model_keeps_no_patient_is_not_scored_for_doses():
    from simulator.scores import Unit, score
    profile = {"sensors": [{"name": "pills", "insight": {"type": "adherence"}}]}
    printer = Unit("printer-1", {"print_jobs": [], "degrading": False}, [], profile)
    assert score([printer]) == {}
