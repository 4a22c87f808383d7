# agent/insights/adherence.py across a reboot: snapshot() -> CBOR (as the manager writes it to
# flash) -> restore() into a new detector made from the profile. Restored at any reading it sends
# what a detector that never stopped sends; a dose before a reboot is not judged again; gaps;
# bad snapshots refused; settings from a downlink kept, a profile's new schedule taken.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness); apart from
# test_insight_adherence.py so that each fits the 64k heap.
from agent import cbor, cbor_decode
from agent.insights import Insights
from agent.insights.adherence import Detector
from agent.store import RamStore
from pillkit import DAY0, HOUR, MIN, STEP, Bottle, config
from support import raises

# Three detectors live at once here (the rebooting one, the one restored into, the one that never
# stopped, with its log of events to compare): at 64k the test passed with under 4k to spare, and
# failed in a full run on a heap fragmented otherwise. A board holds one detector a sensor.
# The unsynced boots (three managers, each with early.py's ring) pass at 96k here and failed at
# 96k in a fresh clone's CI run; they fail at 92k here.
MICROPYTHON_HEAP = "112k"

DAY = 24 * HOUR
# Three days of a bottle, as (day, minute of the day, count read from then on[, synced]); None:
# no readings (the board off). Schedule 08:00 and 20:00, 1 pill, refill below 5 days.
DAYS = (
    (0, 360, 14, False),      # the board's first minutes, before NTP
    (0, 380, 14),
    (0, 485, 13),             # 08:00 taken at 08:05
    (0, 570, -66), (0, 571, 13),                  # lifted and put back
    (0, 720, 13 - 5.4), (0, 723, 13),             # opened, the cap beside it for 3 min
    (0, 840, 3.2), (0, 840.5, 31.0), (0, 841, -40.5), (0, 841.5, 13),   # shaken
    (0, 960, float("nan")), (0, 960.5, 13),
    (0, 1300, 12),            # 20:00 taken at 21:40: late
    (1, 470, -66), (1, 471, 11 - 5), (1, 483, 11),   # 08:00 taken at 07:51, the cap off 12 min
    (1, 900, 10),             # 15:00: in no window
    (2, 460, 9),              # 20:00 missed; 08:00 taken at 07:40 (refill_needed: 4.5 days)
    (2, 475, 8),              # 07:55: taken again
    (2, 720, 68),             # refilled at noon
    (2, 1190, 65),            # three pills at 19:50: waits an hour for a cap, then one taken
                              # and two more than the dose
    (2, 1380, None),          # the board off for 8 h, back before 08:00's window opens
    (3, 420, 65), (3, 490, 64),
    (3, 540, None))
EVERY_EVENT = ["dose_taken", "dose_taken", "dose_taken", "extra_dose", "dose_missed",
               "dose_taken", "refill_needed", "extra_dose", "refilled", "dose_taken", "extra_dose",
               "dose_taken"]


def readings():
    """(t, value, synced) every 30 s through DAYS, made as needed (a list would not fit a
    board's heap)."""
    for i in range(len(DAYS) - 1):
        entry = DAYS[i]
        t = DAY0 + entry[0] * DAY + int(entry[1] * MIN)
        end = DAY0 + DAYS[i + 1][0] * DAY + int(DAYS[i + 1][1] * MIN)
        synced = len(entry) < 4
        while entry[2] is not None and t < end:
            yield t, entry[2], synced
            t += STEP


def rebooted(det, emit, cfg=None):
    """A new detector from the profile, restored from det's snapshot gone through flash."""
    new = Detector(cfg or config(), emit)
    new.restore(cbor_decode.loads(cbor.dumps(det.snapshot())))
    return new


def run_days(every, expected=None):
    """DAYS through one detector, restored into a new one before every `every`-th reading (0:
    never); the events (checked one by one against `expected` as they come, and then only
    named: a board's heap holds one log of them), the last detector and the largest snapshot
    in CBOR bytes."""
    events = []

    def emit(t, event, value, fields):
        if expected is None:
            events.append((t, event, value, fields))
        else:
            assert (t, event, value, fields) == expected[len(events)], (every, t, event)
            events.append(event)
    det = Detector(config(), emit)
    biggest = 0
    i = 0
    for t, v, synced in readings():
        if every and i % every == 0:
            biggest = max(biggest, len(cbor.dumps(det.snapshot())))
            det = rebooted(det, emit)
        det.feed(t, v, synced)
        i += 1
    return events, det, biggest


def test_a_detector_restored_at_any_reading_sends_what_one_never_stopped_sends():
    expected, never, _ = run_days(0)
    assert [e[1] for e in expected] == EVERY_EVENT
    for every in (20, 13):
        events, det, biggest = run_days(every, expected)
        assert events == EVERY_EVENT, every
        assert det.snapshot() == never.snapshot() and det.state() == never.state()
        assert biggest <= 100, biggest


def test_a_dose_then_a_reboot_is_no_missed_dose():
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    b.until(19, 8.25)                     # 08:00 taken at 08:05, reported at 08:10
    flash = cbor.dumps(b.det.snapshot())  # the manager's 08:15 snapshot
    b.until(19, 8.5)                      # power cut at 08:30, back at 08:32
    b.t += 2 * MIN
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(19, 19.5)
    assert b.names() == ["dose_taken"]
    assert b.det.state()["taken"] == 1


def test_a_reboot_before_the_snapshot_after_a_dose_sends_it_again_but_never_missed():
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    flash = cbor.dumps(b.det.snapshot())  # 08:05, just before the count changed
    b.until(19, 8.2)                      # dose_taken at 08:10; power cut at 08:12
    b.t += 2 * MIN
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(19, 19.5)
    assert b.names() == ["dose_taken", "dose_taken"]
    assert [e[3]["scheduled"] for e in b.events] == [DAY0 + 8 * HOUR] * 2


def test_a_reboot_of_two_hours_in_a_dose_window_still_judges_the_dose():
    for taken in (True, False):
        b = Bottle(20)
        b.until(20, 8.25)
        flash = cbor.dumps(b.det.snapshot())
        b.until(20, 8 + 20 / 60.0)        # off from 08:20 to 10:20: the pill taken meanwhile
        b.t += 2 * HOUR
        b.det = Detector(config(), b._emit)
        b.det.restore(cbor_decode.loads(flash))
        b.until(19 if taken else 20, 19.5)
        if taken:                         # seen when the board is back
            f = b.one("dose_taken")[3]
            assert (f["status"], f["late_min"], f["taken"]) == ("late", 140,
                                                                 DAY0 + 10 * HOUR + 20 * MIN)
            assert b.names() == ["dose_taken"]
        else:
            assert b.names() == ["dose_missed"]
            assert b.events[0][3]["scheduled"] == DAY0 + 8 * HOUR


def test_a_reboot_of_seven_hours_judges_again_from_the_next_dose():
    b = Bottle(20)
    b.until(20, 8.25)
    flash = cbor.dumps(b.det.snapshot())
    b.t += 7 * HOUR                       # back at 15:15: 08:00 is not judged
    b.det = Detector(config(), b._emit)
    b.det.restore(cbor_decode.loads(flash))
    b.until(20, 21)
    b.until(20, 13.5, day=1)              # 20:00 is, and 08:00 of the next day
    assert [e[3]["scheduled"] for e in b.events] == [DAY0 + 20 * HOUR, DAY0 + 32 * HOUR]


def test_a_clock_set_back_after_a_reboot_still_follows_the_count():
    b = Bottle(20)
    b.until(20, 8.25)
    b.det = rebooted(b.det, b._emit)
    b.t = 1000                            # the board's time from boot, not yet synced
    b.hold(19, 20 * MIN, synced=False)
    assert b.det.state()["count"] == 19 and b.names() == []


def test_a_bad_snapshot_is_refused_and_changes_nothing():
    b = Bottle(20)
    b.until(20, 8.25)
    good = b.det.snapshot()
    assert good[16] == DAY0 + 8 * HOUR    # the 08:00 slot: index 16 of the layout

    def but(i, v):
        s = list(good)
        s[i] = v
        return s

    def refused(snap):
        exc = raises(ValueError, b.det.restore, snap)
        assert "snapshot" in str(exc), (snap, str(exc))
        assert b.det.snapshot() == good, snap
    for snap in (None, "snapshot", {}, [], good[:-1], good + [0], [good]):
        refused(snap)
    for i, v in ((0, 3), (0, 1), (0, True), (0, 2.0), (20, "x"), (20, -1), (21, 1), (21, None), (1, []), (1, [480, 480]), (1, [1200, 480]),
                 (1, [1440]), (1, ["08:00"]), (1, None), (1, list(range(25))), (2, 1),
                 (2, 1800000.0),
                 (3, True), (4, 0), (5, "5"), (5, float("nan")), (5, 1e300), (6, -1), (7, 128),
                 (7, None), (8, 5000), (9, -3), (9, 10 ** 30), (9, 20.0), (10, "x"),
                 (11, None), (11, 10 ** 20), (12, 5), (13, -1), (14, 1), (14, None), (15, 1.5),
                 (15, -(10 ** 40)), (16, DAY0 + 8 * HOUR + 1), (16, 2 ** 60), (17, "no"),
                 (18, None), (19, [1, 2, 3]), (19, [0, 0, 0, -1]), (19, None),
                 (19, [0, 0, 0, 10 ** 40]), (19, (0, 0, 0, 0))):
        refused(but(i, v))
    before_away = good[:-2]               # a snapshot of the layout before `away`: restores
    before_away[0] = 1
    again = Detector(config(), b._emit)
    again.restore(before_away)
    assert again.snapshot() == good
    no_count = but(9, None)
    no_count[12] = 5                      # a drop pending from 5 with no count to drop to
    assert "pending" in str(raises(ValueError, b.det.restore, no_count))
    b.until(19, 19.5)                     # still judging: the 08:00 dose
    assert b.names() == ["dose_taken"]


def test_a_schedule_set_by_downlink_survives_a_reboot_and_a_profile_one_does_not():
    b = Bottle(20)
    b.det.set({"schedule": ["09:30", "21:00"], "refill_days": 2.5})
    b.until(20, 9.6)
    b.det = rebooted(b.det, b._emit, config(times_min=[9 * 60, 21 * 60]))
    assert b.det.settings()["times_min"] == [570, 1260]          # the downlink's, not the profile's
    assert b.det.settings()["refill_days"] == 2.5
    assert b.det.state()["scheduled"] == DAY0 + 9 * HOUR + 30 * MIN
    b.until(19, 12)
    f = b.one("dose_taken")[3]
    assert (f["scheduled"], f["status"]) == (DAY0 + 9 * HOUR + 30 * MIN, "on_time")
    b.det = rebooted(b.det, b._emit)      # after another reboot too
    assert b.det.settings()["times_min"] == [570, 1260]

    b = Bottle(20)                        # no downlink: a new profile's schedule wins
    b.det.set({"refill_days": 2.5})
    b.until(20, 8.25)
    b.det = rebooted(b.det, b._emit, config(times_min=[9 * 60, 21 * 60], late_ms=2 * HOUR))
    s = b.det.settings()
    assert (s["times_min"], s["late_ms"], s["refill_days"]) == ([540, 1260], 2 * HOUR, 2.5)
    assert b.det.state()["scheduled"] is None                    # judged from its next slot
    b.until(20, 9.1)
    b.until(19, 12)
    assert b.one("dose_taken")[3]["scheduled"] == DAY0 + 9 * HOUR

    b = Bottle(20)                        # a downlinked window the new profile cannot take
    b.det.set({"window_ms": 4 * HOUR})
    b.until(20, 8.25)
    exc = raises(ValueError, rebooted, b.det, b._emit, config(times_min=[8 * 60, 14 * 60]))
    assert "clash" in str(exc) and "closer than twice the window" in str(exc)

    # The pharmacy's times against a new profile's wider window: they stay, with the window
    # they were set under (the snapshot was refused, and the patient judged at 08:00/20:00).
    b = Bottle(20)
    b.det.set({"schedule": ["08:00", "09:30", "21:00"]})
    b.until(20, 8.25)
    b.det = rebooted(b.det, b._emit, config(window_ms=60 * MIN))
    s = b.det.settings()
    assert (s["times_min"], s["window_ms"]) == ([480, 570, 1260], 30 * MIN)
    b.det = rebooted(b.det, b._emit, config(window_ms=60 * MIN))  # and at the next boot
    assert b.det.settings()["window_ms"] == 30 * MIN


def test_through_the_manager_a_dose_before_a_power_cut_is_judged_once():
    got = []

    class Sink:
        def emit(self, t, synced, event, sensor, state, value=None, detail=None):
            got.append(event)

    sensors = [{"name": "pills", "quantity": "count", "insight": config()}]
    store = RamStore()
    ins = Insights(Sink(), sensors)
    ins.load(store)                       # the very first boot: nothing saved yet
    t = DAY0 + 7 * HOUR
    for v, until in ((20, 8 + 5 / 60.0), (19, 8.25)):
        while t < DAY0 + int(until * HOUR):
            ins.feeder("pills")(t, v, True)
            t += STEP
    ins.save(store)                       # 08:15; the power is cut at 08:20
    ins = Insights(Sink(), sensors)
    ins.load(store)
    assert (ins.restored, ins.fresh) == (1, 0)
    t = DAY0 + 8 * HOUR + 22 * MIN
    while t < DAY0 + 19 * HOUR:
        ins.feeder("pills")(t, 19, True)
        t += STEP
    assert got == ["dose_taken"]


def unsynced_boot(sync_at_hour, pills, noise=0.0):
    """A board that rebooted at 07:50 with its network down too: the manager, restored from
    the snapshot of 07:45, fed readings dated in ms since start until NTP answers at
    sync_at_hour; `pills` [(hour, count)] from 07:50 on, each reading off by up to `noise`
    (a load cell's). The events as (name, fields), and the manager."""
    from agent.clock import FakeClock
    got = []

    class Sink:
        def emit(self, t, synced, event, sensor, state, value=None, detail=None):
            got.append((event, detail, t))

    sensors = [{"name": "pills", "quantity": "count", "insight": config()}]
    store = RamStore()
    ins = Insights(Sink(), sensors)
    t = DAY0 + 7 * HOUR
    while t < DAY0 + 7 * HOUR + 45 * MIN:
        ins.feeder("pills")(t, 20, True)
        t += STEP
    ins.save(store)
    clock = FakeClock(start_ms=1000)               # the board's boot: ms since start
    boot = DAY0 + 7 * HOUR + 50 * MIN              # Unix ms at clock.t == 1000
    ins = Insights(Sink(), sensors, clock)
    ins.load(store)
    feed = ins.feeder("pills")
    k = 0
    while clock.t - 1000 + boot < DAY0 + 15 * HOUR:
        unix = clock.t - 1000 + boot
        while k + 1 < len(pills) and unix >= DAY0 + int(pills[k + 1][0] * HOUR):
            k += 1
        if not clock.synced and unix >= DAY0 + int(sync_at_hour * HOUR):
            clock.sync(unix)                        # NTP answers
        t, synced = clock.now()
        feed(t, pills[k][1] + noise * ((clock.t // STEP * 7) % 5 - 2) / 2, synced)
        clock.advance(STEP)
    return [(e, f) for e, f, _ in got], ins


def test_a_dose_taken_before_the_clock_is_synced_after_a_reboot_is_that_dose_on_time():
    # Fed nothing until the sync, the manager saw the pill only then: dose_taken dated at the
    # sync (08:24), 90 min late (09:30), or dose_missed and an extra_dose "outside" (13:30).
    for sync_at in (8.4, 9.5, 13.5):
        got, ins = unsynced_boot(sync_at, [(7 + 50 / 60.0, 20), (8 + 5 / 60.0, 19)])
        assert [e for e, _ in got] == ["dose_taken"], (sync_at, got)
        f = got[0][1]
        assert (f["status"], f["taken"]) == ("on_time", DAY0 + 8 * HOUR + 5 * MIN), (sync_at, f)
        assert ins.unsynced > 0 and not ins.early


def test_a_dose_taken_before_the_sync_on_a_noisy_load_cell_is_that_dose_on_time():
    # Held as read, every reading a thousandth of a pill off was a run of its own: the runs
    # kept held the last minutes before the sync, and the 08:05 dose was missed and extra
    got, ins = unsynced_boot(13.5, [(7 + 50 / 60.0, 20), (8 + 5 / 60.0, 19)], noise=0.005)
    assert [e for e, _ in got] == ["dose_taken"], got
    f = got[0][1]
    assert (f["status"], f["taken"]) == ("on_time", DAY0 + 8 * HOUR + 5 * MIN), f


def test_readings_held_before_a_sync_are_runs_bounded_in_number():
    from agent.clock import FakeClock
    from agent.insights import early
    ins = Insights(None, [{"name": "pills", "quantity": "count", "insight": config()}],
                   FakeClock())
    feed = ins.feeder("pills")
    for i in range(10):
        feed(i * STEP, 20, False)                   # one run: its first and last times
    feed(10 * STEP, float("nan"), False)            # lifted: NaN runs like any value
    feed(11 * STEP, float("nan"), False)
    held = _runs(ins.early["pills"])
    assert held[0] == (0, 9 * STEP, 20) and held[1][:2] == (10 * STEP, 11 * STEP)
    for i in range(200):                            # a count that changes at every reading
        feed((12 + i) * STEP, i % 2, False)
    held = _runs(ins.early["pills"])
    assert len(held) == early.RUNS
    first = 212 - early.RUNS                        # the oldest kept
    assert held[0] == (first * STEP, first * STEP, first % 2) and held[-1] == (
        211 * STEP, 211 * STEP, 1)
    assert ins.unsynced == 212
    t = 211 * STEP + early.RUN_MS                   # RUN_MS on: a new run, though the same
    feed(t - 1, 1, False)
    feed(t, 1, False)
    assert _runs(ins.early["pills"])[-2:] == [(211 * STEP, t - 1, 1), (t, t, 1)]


def _runs(ring):
    """[(first t, last t, value)] of an early ring (agent/insights/early.py), oldest first."""
    from agent.insights import early
    out = []
    for k in range(ring[1]):
        i = 2 + 3 * ((ring[0] + k) % early.RUNS)
        out.append((ring[i], ring[i + 1], ring[i + 2]))
    return out


def test_a_utc_offset_set_by_downlink_survives_a_reboot_and_a_profile_one_does_not():
    b = Bottle(20, times_min=[8 * 60], utc_offset_min=120)
    b.det.set({"utc_offset_min": 60})
    again = rebooted(b.det, b._emit, config(times_min=[8 * 60], utc_offset_min=120))
    assert again.settings()["utc_offset_min"] == 60
    plain = Bottle(20, times_min=[8 * 60], utc_offset_min=120)
    moved = rebooted(plain.det, plain._emit, config(times_min=[8 * 60], utc_offset_min=180))
    assert moved.settings()["utc_offset_min"] == 180          # the profile's own, changed


def test_pills_per_dose_time_set_by_downlink_survive_a_reboot():
    b = Bottle(30, times_min=[8 * 60, 20 * 60])
    b.det.set({"schedule": ["08:00", "20:00"], "pills": [2, 1]})
    again = rebooted(b.det, b._emit)
    assert again.settings()["pills"] == [2, 1] and again.settings()["times_min"] == [480, 1200]
    snap = b.det.snapshot()
    snap[4] = [2, 1, 1]                      # counts for three times on a schedule of two
    fresh = Detector(config(), b._emit)
    assert "2 dose times and 3 counts" in str(raises(ValueError, fresh.restore, snap))


def test_doses_held_while_the_bottle_is_away_are_judged_after_a_reboot_too():
    b = Bottle(20)
    b.until(20, 8 + 5 / 60.0)
    b.until(19, 21)
    b.until(-66, 22, day=1)                          # away: 20:00 of day 0 and 08:00 of day 1
    assert b.det.snapshot()[20:] == [DAY0 + 20 * HOUR, False]
    b.det = rebooted(b.det, b._emit)
    b.until(17, 23, day=1)                           # back with two fewer
    assert [(e[1], e[3]["scheduled"], e[3].get("status")) for e in b.events[1:]] == [
        ("dose_taken", DAY0 + 20 * HOUR, "away"), ("dose_taken", DAY0 + 32 * HOUR, "away")]


def test_a_dose_missed_before_a_reboot_is_not_missed_again_after_a_schedule_change():
    # The dose judged before the reboot is not in the snapshot: restore takes the one before
    # the slot for judged, and removing the dose after it does not reopen it.
    b = Bottle(30, start=DAY0 + 10 * HOUR, times_min=[4 * 60 + 15, 13 * 60, 16 * 60])
    b.until(30, 16 + 10 / 60.0)
    assert b.names() == ["dose_missed"]
    b.det = rebooted(b.det, b._emit, config(times_min=[4 * 60 + 15, 13 * 60, 16 * 60]))
    b.until(30, 16.5)
    b.det.set({"schedule": ["04:15", "13:00"]})
    b.until(30, 20)
    assert b.names() == ["dose_missed"], b.events
