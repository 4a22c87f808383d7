# The whole agent (agent/runtime.py) on the simulated platform, for the end-to-end uplink tests:
# sensors, sampler, buffer, events, uplink, commands. Runs under CPython (paho-mqtt) and
# MicroPython (agent/mqtt.py):
#
#   python3 -u tests/portable/agent_main.py   PROFILE.json SECONDS
#   micropython -m agent_main                 PROFILE.json SECONDS
#
# Prints "ready" once the buffer is open, "rebooting" when a reboot command asks for it (then it
# stops, as a board would restart), and "stopped N" at the end (N: batches not acknowledged).
import asyncio
import json
import sys

from agent.clock import SystemClock
from agent.runtime import Agent
from agent.store import RamStore
from hal.sim.platform import SimPlatform


async def main(path, seconds):
    with open(path) as f:
        profile = json.load(f)
    if sys.implementation.name == "micropython":
        from agent.mqtt import Client
    else:
        from agent.host.paho_client import Client
    box = []

    def reboot():
        print("rebooting")
        asyncio.create_task(box[0].stop())

    agent = Agent(profile, SimPlatform(profile), SystemClock(), Client, store=RamStore(),
                  events_store=RamStore(), reboot=reboot)
    box.append(agent)
    agent.open()
    print("ready")
    task = asyncio.create_task(agent.run())
    for _ in range(seconds * 10):
        await asyncio.sleep(0.1)
        if not agent.running:  # a reboot command stopped it
            break
    if agent.running:
        await agent.stop()
    await task
    print("stopped", agent.buffer.log.unacked)


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
