# agent/insights/__init__.py: a snooze of an event sent once per supply is that supply's alone, and
# a supply that runs out sends the reorder a snooze held. Driven through the consumable
# detector. Both interpreters.
MICROPYTHON_HEAP = "96k"  # the consumable detector compiled from source beside this module
from agent.insights import Insights

HOUR = 3600000
DAY = 24 * HOUR
DAY0 = 1767225600000          # 2026-01-01 00:00 UTC

INK = {"name": "ink_k", "quantity": "level",
       "insight": {"type": "consumable", "lead_time_ms": 10 * DAY, "window_ms": 56 * DAY,
                   "learn_ms": 2 * DAY, "empty": 0, "swap_jump": 20, "forecast_ms": DAY,
                   "utc_offset_min": 0}}


class Sink:
    def __init__(self):
        self.got = []

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        if event != "forecast":
            self.got.append((t, event, detail))


def cartridge(ins, start, days, top=100.0, per_day=5.0):
    """A cartridge from `top`, used at per_day % a day, read every 30 min, for `days`."""
    feed = ins.feeder("ink_k")
    t = start
    while t < start + days * DAY:
        level = top - per_day * (t - start) / DAY
        feed(t, level if level > 0 else 0.0, True)
        t += 30 * 60000
    return t


def test_a_cartridge_that_runs_out_sends_the_reorder_its_snooze_held_then_empty():
    # empty said reordered: true of a reorder that never left the device
    sink = Sink()
    ins = Insights(sink, [INK])
    ins.command("ink_k", "snooze", "reorder", DAY0 + 100 * DAY)
    cartridge(ins, DAY0, 22)
    events = [e for _, e, _ in sink.got]
    assert events == ["reorder", "empty"], events
    (t_reorder, _, fields), (t_empty, _, empty) = sink.got
    assert t_reorder < t_empty - 5 * DAY     # as judged, not when it ran out
    assert empty["reordered"] is True and ins.waiting == {} and ins.snoozed == {}


def test_a_snooze_of_one_cartridges_reorder_does_not_hold_the_next_ones():
    # The console's "snooze" on a reorder row held the next cartridge's reorder until the
    # snooze ended, 3 days before that one ran dry.
    sink = Sink()
    ins = Insights(sink, [INK])
    t = cartridge(ins, DAY0, 12)                      # its reorder is out
    assert [e for _, e, _ in sink.got] == ["reorder"]
    ins.command("ink_k", "snooze", "reorder", DAY0 + 60 * DAY)
    cartridge(ins, t, 12)                             # a new one, put in at once
    events = [e for _, e, _ in sink.got]
    assert events == ["reorder", "cartridge_replaced", "reorder"], events
    assert ins.snoozed == {} and ins.held == 0


def test_the_event_that_ends_a_supply_cannot_be_snoozed():
    # A snoozed cartridge_replaced was dropped for good: the old reorder row stayed up and the
    # new cartridge's reorder looked like a second one for the same cartridge.
    ins = Insights(Sink(), [INK])
    try:
        ins.command("ink_k", "snooze", "cartridge_replaced", DAY0 + DAY)
    except ValueError as exc:
        assert str(exc) == "cartridge_replaced starts a new supply: it cannot be snoozed", (
            str(exc))
    else:
        raise AssertionError("a snooze of cartridge_replaced was taken")
    assert ins.snoozed == {}
    ins.command("ink_k", "snooze", "cartridge_replaced", None)   # ending one is fine
    try:    # before the clock is synced too, that is what is said (not "not synced")
        ins.command("ink_k", "snooze", "cartridge_replaced", False)
    except ValueError as exc:
        assert str(exc).startswith("cartridge_replaced starts a new supply"), str(exc)
    else:
        raise AssertionError("a snooze of cartridge_replaced was taken")


def test_a_snooze_of_a_new_cartridge_saved_by_an_older_version_is_not_restored():
    from agent.store import RamStore
    ins = Insights(Sink(), [INK])
    ins.snoozed[("ink_k", "cartridge_replaced")] = DAY0 + 60 * DAY   # as an older one took it
    ins.snoozed[("ink_k", "forecast")] = DAY0 + 60 * DAY
    store = RamStore()
    ins.save(store)
    again = Insights(Sink(), [INK])
    again.load(store)
    assert again.snoozed == {("ink_k", "forecast"): DAY0 + 60 * DAY}
