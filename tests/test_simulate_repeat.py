"""A run of `tether simulate` with a fixed seed repeats at any speed: what the devices generate
depends on the seed alone, never on how busy the machine is or how fast device time runs."""
import asyncio
import random

from simulator import faults
from simulator.fleet import DEFAULT_FLEET, Fleet, IngestPace, load_fleet

FAULTS = "outage:every=3h,for=1h,share=0.5;power:every=90min,share=1"


def generated(tmp_path, speed):
    """Per device: readings generated, events raised, power cuts, boots."""
    fleet = Fleet(load_fleet(DEFAULT_FLEET, 4), str(tmp_path), 12 * 3600000, speed=speed, seed=7,
                  faults=faults.parse(FAULTS))
    report = asyncio.run(fleet.run())
    return {d["device"]: (d["generated"], d["events_raised"], d["power_cuts"], d["boots"])
            for d in report["devices"]}


def test_two_runs_of_one_seed_generate_the_same_readings_however_the_machine_runs(
        tmp_path, monkeypatch):
    first = generated(tmp_path / "a", None)
    assert sum(cuts for _, _, cuts, _ in first.values()) >= 8
    assert {name.split("-")[0] for name in first} == {"printer", "pillbottle", "washer", "fridge"}

    # The second run: paced instead of as fast as it goes; the event loop takes a different
    # number of turns at every instant (as pace holds and a busy network make it do); and every
    # look at the real clock finds a second gone (a machine stalled between any two statements),
    # which a driver timing its pulses or timeouts on the wall would take for a fault.
    turns = random.Random(3)

    async def hold():
        for _ in range(turns.randrange(5)):
            await asyncio.sleep(0)

    monkeypatch.setattr(IngestPace, "check", lambda self: hold())
    wall = [0]

    def stalled():
        wall[0] += 1000000
        return wall[0]
    from hal import ticks
    from hal.drivers import hx711, pzem004t
    for module in (ticks, hx711, pzem004t):
        for name in ("ticks_us", "_ticks_us", "ticks_ms", "_ticks_ms"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, stalled)
    second = generated(tmp_path / "b", 200000.0)
    assert second == first


def test_a_power_cut_at_the_last_instant_counts_the_same_however_the_event_loop_turns(
        tmp_path, monkeypatch):
    # The device booted by the cut samples at that instant, before the run ends, in both runs:
    # not only when the loop happened to take enough turns before device time stopped.
    due = faults.Schedule.due

    def and_a_cut_at_the_end(self, t):
        out = due(self, t)
        if t == 12 * 3600000:
            out.append((t, "cut", 0, None))
        return out
    monkeypatch.setattr(faults.Schedule, "due", and_a_cut_at_the_end)
    results = []
    for n, turns in enumerate((0, 4)):
        async def hold(turns=turns):
            for _ in range(turns):
                await asyncio.sleep(0)
        monkeypatch.setattr(IngestPace, "check", lambda self: hold())
        results.append(generated(tmp_path / str(n), None))
    assert results[0] == results[1]
