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


def test_the_pill_count_drawn_is_the_one_that_stood_not_each_touch_of_the_bottle():
    from ingest.queries import steady
    m = 60000
    pts = [(0, 30.0), (30000, 30.0),
           (10 * m, 0.0), (10 * m + 40000, 30.0),      # lifted for 40 s
           (60 * m, 29.0),                              # a dose: it stands
           (61 * m, 23.0), (66 * m, 29.0),              # the cap beside it for 5 minutes
           (120 * m, 0.0), (150 * m, 29.0),             # carried off for half an hour
           (300 * m, 28.0), (400 * m, 0.0), (700 * m, 0.0)]   # the last pill, then empty
    assert steady(pts) == [(0, 30.0), (60 * m, 29.0), (300 * m, 28.0), (400 * m, 0.0)]
    assert steady([]) == [] and steady([(5, 3.0)]) == [(5, 3.0)]
