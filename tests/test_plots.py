"""What simulator/plots.py works out before it draws: the truth the ink forecast is set against,
and the backlog's point after the end-of-run drain."""
from simulator.plots import DAY_MS, days_left, split_drained

DAY = int(DAY_MS)


def test_a_forecast_is_set_against_the_days_its_cartridge_really_had_left():
    dry = [10 * DAY, 30 * DAY]
    assert days_left(4 * DAY, dry, swaps=[]) == 6.0
    assert days_left(10 * DAY, dry, swaps=[]) == 0.0
    # dry at 10 d, replaced at 12 d: a forecast at 15 d is for the new cartridge, dry at 30 d
    assert days_left(15 * DAY, dry, swaps=[12 * DAY]) == 15.0


def test_a_cartridge_changed_before_it_ran_dry_or_never_dry_has_no_truth():
    assert days_left(4 * DAY, [10 * DAY], swaps=[8 * DAY]) is None
    assert days_left(4 * DAY, [], swaps=[]) is None
    assert days_left(11 * DAY, [10 * DAY], swaps=[]) is None


def test_the_backlog_after_the_drain_is_its_own_point_not_a_drop_on_the_edge():
    history = [(0, 0, 0), (100, 20, 1), (200, 20, 0), (200, 0, 0)]
    assert split_drained(history) == ([(0, 0, 0), (100, 20, 1), (200, 20, 0)], (200, 0, 0))
    assert split_drained(history[:3]) == (history[:3], None)
