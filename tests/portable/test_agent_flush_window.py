# The whole agent's sampling loop and the buffer's flush window: the loop wakes when the window
# closes, not at the next reading, so a power cut takes at most flush_every of readings. Both
# interpreters.
MICROPYTHON_HEAP = "160k"

import asyncio

from agent.clock import FakeClock
from agent.runtime import Agent
from agent.store import RamStore
from commandkit import NoClient, profile
from hal.sim.platform import SimPlatform

INK = {"calibration": {"raw_empty": 410, "raw_full": 3720}, "driver": "level_probe",
       "filters": {}, "interval_ms": 10000, "name": "ink_c", "pin": 34, "quantity": "level",
       "resolution": [1, -1], "thresholds": [], "unit": "%"}


def test_the_sampler_wakes_to_flush_a_window_shorter_than_its_sensors_interval():
    # It slept to the next reading, 10 s on: a power cut took readings 12 s old with a
    # flush_every of 2 s (a board's loop wakes every second at most: 3 s).
    p = profile(INK)
    p["buffer"]["flush_ms"] = 2000
    p["buffer"]["ram_readings"] = 100
    p["batch"]["max_readings"] = 100
    clock = FakeClock(0, 1767225600000)
    a = Agent(p, SimPlatform(p), clock, NoClient, store=RamStore(), events_store=RamStore())
    a.open()
    sleeps = []
    flushed = []

    async def sleep(ms):
        sleeps.append(ms)
        flushed.append((a.buffer.n, a.buffer.flushed))
        clock.advance(ms)
        if len(sleeps) == 4:
            a.running = False
    clock.sleep = sleep
    a.running = True
    asyncio.run(a.sampling())
    assert sleeps == [2000, 8000, 2000, 8000]
    # a reading waits in RAM for the flush, then it is in the journal before the next one
    assert flushed == [(1, 0), (1, 1), (2, 1), (2, 2)]
