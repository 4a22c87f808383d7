# agent/insights/energy.py's snapshots refused when bent, and restored into a detector made from
# a changed profile: a new `watch`, new settings, another report time. Both interpreters.
from agent import cbor, cbor_decode
from agent.insights.energy import SETTINGS, Detector
from energykit import DAY, HOUR, MIN, T0, Run, config, cycles as _cycles, through_flash
from support import raises

# Dozens of bent snapshots decoded, refused and dropped, beside detectors made from changed
# profiles, fragment a 64k heap until a detector's attribute table (944 bytes in one piece) no
# longer fits, as in test_insight_energy_reboot.py; a board restores once, at boot
# (test_insights.py and test_insight_command.py restore within their heaps).
MICROPYTHON_HEAP = "96k"


def _garbage(snap):
    """Snapshots bent one way each: every one must be refused."""
    def bent(where, value):
        s = cbor_decode.loads(cbor.dumps(snap))
        node = s
        for k in where[:-1]:
            node = node[k]
        if value is _DROP:
            del node[where[-1]]
        else:
            node[where[-1]] = value
        return s
    yield bent((9, 1), [1.0] * 65)              # more points than a batch can hold
    yield None
    yield "snapshot"
    yield {}
    yield []
    yield snap[:-1]
    yield snap + [0]
    for where, value in (
            ((0,), 2), ((0,), True), ((0,), 1.0), ((1,), "torque"), ((1,), ["energy"]),
            ((1,), None), ((2,), "0"), ((3,), []), ((3, "tarif"), [0.3, 1]),
            ((3, "tariff"), [0.3]),
            ((4,), 1.5), ((4,), True), ((5,), -1), ((5,), None), ((6,), "x"),
            ((7,), [1, 2, 3]), ((7, 2), float("nan")), ((7, 3), -1.0), ((7, 4), None),
            ((7, 5), 0.5), ((7, 6), -1.0), ((7, 6), None), ((7, 7), 1e12), ((7, 9), 1e12),
            ((7, 8), None), ((3, "utc_offset_min"), [0]), ((8,), [1] * 14), ((8, 4), 1), ((8, 5), 3), ((8, 0), None),
            ((8, 2), float("inf")), ((8,), _DROP), ((9,), None), ((9,), [[], [], None]),
            ((9, 0), "points"), ((9, 1), [None]), ((9, 2), None),
            ((9, 3), 0.0), ((9, 4), -1.0), ((9, 7), None), ((9, 6), 2.5)):
        yield bent(where, value)
    yield bent((9, 0), [100.0])                 # learning points beside a baseline


_DROP = object()


def test_garbage_snapshots_are_refused_with_a_reason_and_change_nothing():
    r = Run(learn=3)
    r.d.set({"tariff": 0.5})
    _cycles(r, [100.0] * 4)
    r.feed(100.0, 10 * MIN)                     # in a cycle, learnt, a setting changed
    good = r.d.snapshot()
    assert good[8] is not None and good[9][2] == 100.0 and good[3]
    n = 0
    d = Detector(config(learn=3), r._emit)
    fresh = d.snapshot()
    for bad in _garbage(good):
        e = raises(ValueError, d.restore, bad)
        assert "snapshot" in str(e), (str(e), bad)
        assert d.snapshot() == fresh, bad
        n += 1
    assert n == 49
    r.events = []
    r.d = d                                     # refused, and as good as new
    r.cycle(100.0, 60)
    (_, _, wh, f), = r.of("cycle")
    assert abs(wh - 100.0) < 0.1 and f["gap"] is False
    r.d = d = None
    d = Detector(config(learn=3), r._emit)
    d.restore(cbor_decode.loads(cbor.dumps(good)))
    assert d.snapshot() == good


def test_a_snapshot_from_before_the_days_cost_or_co2_was_kept_weighs_its_day_as_now():
    for kept in (6, 8):                         # as detectors of earlier releases saved it
        r = Run()
        r.d.set({"tariff": 0.5, "grid_intensity": 400})
        r.feed(1000.0, 2 * HOUR, step=5000)
        old = through_flash(r.d)
        del old[7][kept:]
        r.d = None
        r.d = Detector(config(), r._emit)
        r.d.restore(old)
        r.feed(1000.0, DAY - 2 * HOUR + 5000, step=5000)
        (_, _, _, f), = r.of("energy_report")
        assert abs(f["cost"] - f["kwh"] * 0.5) < 1e-3 and f["kwh"] > 23
        assert abs(f["co2_g"] - f["kwh"] * 400) < 1


def test_a_summer_offset_set_by_the_cloud_outlives_a_reboot_unless_the_profile_moved_it():
    r = Run(utc_offset_min=60)
    r.d.set({"utc_offset_min": 120})
    r.feed(100.0, 12 * HOUR)
    snap = through_flash(r.d)
    r.d = None
    r.d = Detector(config(utc_offset_min=60), r._emit)
    r.d.restore(snap)                           # the day goes on, its report at +02:00's
    assert r.d.settings()["utc_offset_min"] == 120
    r.feed(100.0, 10 * HOUR + 5000)
    (_, _, _, f), = r.of("energy_report")
    assert f["since"] == T0 and f["until"] == T0 + 22 * HOUR
    r.d = None
    r.d = Detector(config(utc_offset_min=180), r._emit)     # a profile of its own since
    r.d.restore(snap)
    assert r.d.settings()["utc_offset_min"] == 180


def test_a_new_watch_drops_the_chart_but_keeps_the_days_report_and_settings():
    r, same = Run(learn=3), Run(learn=3)
    for x in (r, same):
        x.d.set({"tariff": 0.5})
        _cycles(x, [100.0] * 3 + [130.0] * 4)
        x.feed(100.0, 10 * MIN)                 # in a cycle
    assert r.d.state()["learned"] and r.d.state()["cusum"] > 0
    cfg = config(learn=3, watch="peak")
    r.d = None
    r.d = Detector(cfg, r._emit)
    r.d.restore(through_flash(same.d))
    st = r.d.state()
    assert st["watch"] == "peak" and not st["learned"] and st["cusum"] == 0
    assert st["learning"] == 0 and st["cycles"] == 7 and st["in_cycle"]
    assert r.d.settings()["tariff"] == 0.5
    for x in (r, same):
        x.feed(100.0, 50 * MIN)
        x.feed(1.0, DAY - x.t + T0 + 5000)
    c, c_same = r.of("cycle")[-1][3], same.of("cycle")[-1][3]
    assert c["feature"] is None and c["watch"] == "peak" and c_same["feature"] is not None
    assert c["energy_wh"] == c_same["energy_wh"] and c["start"] == c_same["start"]
    assert r.of("energy_report")[-1][2:] == same.of("energy_report")[-1][2:]


def test_a_setting_outlives_a_reboot_unless_the_profile_changed_it():
    r = Run()
    r.d.set({"tariff": 0.5, "currency": "GBP", "cycle_above": 50})
    r.feed(1.0, HOUR)
    snap = through_flash(r.d)
    for changes, settings in (
            ({}, (0.5, "GBP", 50)),
            ({"tariff": 0.2, "currency": "CHF", "off_w": 60, "on_w": 80}, (0.2, "CHF", 80)),
            ({"report_min": 6 * 60}, (0.5, "GBP", 50))):
        r.d = None                               # the old one gone first: a 64k heap
        r.d = Detector(config(**changes), r._emit)
        r.d.restore(snap)                        # set() values stay unless the profile moved
        got = r.d.settings()
        assert (got["tariff"], got["currency"], got["cycle_above"]) == settings, changes
    # the last one's report time changed: its day started again, the energy before kept
    r.feed(1.0, 6 * HOUR)
    (t, _, kwh, f), = r.of("energy_report")
    assert t == T0 + 6 * HOUR and f["since"] == T0 and abs(kwh - 6 * 0.001) < 1e-4


def test_cycles_a_profile_of_more_per_point_left_make_the_next_point_of_one_of_fewer():
    # From a fridge's batch of 24 to 1: the two cycles waiting stayed in every snapshot, and
    # were never charted.
    r = Run(batch=4, learn=2)
    for _ in range(2):
        r.cycle(100.0, 30)
    snap = through_flash(r.d)
    assert len(snap[9][1]) == 2, snap[9]
    r.d = None
    r.d = Detector(config(batch=1, learn=2), r._emit)
    r.d.restore(snap)
    r.cycle(100.0, 30)
    assert through_flash(r.d)[9][1] == [], "the waiting cycles were charted with this one"
    assert r.d.state()["learning"] == 1


def test_a_setting_todays_rules_refuse_is_dropped_and_what_was_learnt_stays():
    # grid_intensity 0.4 (kg for g), which set() took before it was refused: the whole
    # snapshot was thrown away with it, baseline and day totals too.
    r = Run(learn=3)
    _cycles(r, [100.0] * 4)
    snap = through_flash(r.d)
    for key, value in (("grid_intensity", 0.4), ("currency", "\u202eRUE"), ("tariff", -1)):
        bent = list(snap)
        bent[3] = dict(snap[3])
        bent[3][key] = [config()[dict(SETTINGS)[key]], value]
        d = Detector(config(learn=3), r._emit)
        d.restore(bent)
        assert d.settings()[key] == config()[dict(SETTINGS)[key]], key   # the profile's
        assert d.state()["learned"] and d.state()["cycles"] == 4, key
