# The MicroPython half of bench/sampler.py: micropython -X heapsize=64k -m mp_sampler PROFILE.json
#
# The sampler with the profile's real drivers on virtual chips (hal/sim), on a FakeClock, for six
# hours of device time; the buffer behind it is a counter (bench/buffer.py measures the buffer).
# Prints `key value` lines: heap after each step of the build, readings, wall time.
import gc
import sys
import time

gc.collect()
m0 = gc.mem_alloc()
import json  # noqa: E402

from agent.clock import FakeClock  # noqa: E402
from agent.sampler import Sampler, channels  # noqa: E402
from agent.schema import Schema  # noqa: E402
from hal.board import drivers  # noqa: E402
from hal.sim.platform import SimPlatform  # noqa: E402

HOURS = 6


class Count:
    """Takes readings as the buffer does, and only counts them."""

    def __init__(self):
        self.n = 0

    def append(self, t, channel, value):
        self.n += 1

    def set_synced(self, synced):
        pass


def main():
    gc.collect()
    print("imports_core", gc.mem_alloc() - m0)
    with open(sys.argv[1]) as f:
        profile = json.load(f)
    for s in profile["sensors"]:
        __import__("hal.drivers." + s["driver"])
    gc.collect()
    m1 = gc.mem_alloc()
    platform = SimPlatform(profile)
    gc.collect()
    m2 = gc.mem_alloc()
    sources = drivers(profile, platform)
    schema = Schema.from_profile(profile)
    gc.collect()
    m3 = gc.mem_alloc()
    chans = channels(profile, schema, sources)
    gc.collect()
    m4 = gc.mem_alloc()
    print("profile_and_drivers_code", m1 - m0)
    print("virtual_world", m2 - m1)
    print("drivers", m3 - m2)
    print("channels", m4 - m3)
    print("sensors", len(chans))
    sink = Count()
    clock = FakeClock(unix_ms=1763856000000)
    sampler = Sampler(clock, sink, None, chans)
    t0 = time.ticks_us()
    while clock.monotonic() < HOURS * 3600000:
        clock.advance(sampler.step())
    us = time.ticks_diff(time.ticks_us(), t0)
    values = 0
    for c in chans:
        values += c.readings + c.suppressed
    print("values", values)
    print("buffered", sink.n)
    print("us", us)
    gc.collect()
    print("heap_free_after", gc.mem_free())
    print("faults", sum(sum(c.errors.values()) for c in chans))
    print("memory_faults", sum(c.errors.get("memory", 0) for c in chans))


main()
