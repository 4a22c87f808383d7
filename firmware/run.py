"""`tether run`: the agent itself on this machine, until Ctrl-C.

On a Raspberry Pi it reads the real sensors (hal/linux) and uplinks over paho-mqtt; with
`--platform sim` the same agent runs on virtual chips. The buffer lives where the profile says
(`buffer.path`), or in `--store DIR`.
"""
import asyncio
import signal
import sys

from firmware.profile import add_allow_outside
from firmware.profile.compile import compile as compile_profile


def main(args, out=sys.stdout, err=sys.stderr):
    profile, errors = compile_profile(args.profile, args.allow_outside)
    if errors:
        err.write("\n".join(errors) + "\n")
        return 2
    if "{uid}" in profile["device"]["id"] and not args.device:
        err.write("tether run: the device id %r is a template: give --device ID\n"
                  % profile["device"]["id"])
        return 2
    if args.store:
        profile["buffer"]["path"] = args.store
        profile["buffer"]["storage"] = "flash"
    from firmware.read import platform_for
    try:
        platform = platform_for(args.platform or profile["platform"], profile)
    except (ValueError, ImportError, OSError) as exc:
        err.write("tether run: %s\n" % exc)
        return 2
    return asyncio.run(_run(profile, platform, args, out))


async def _run(profile, platform, args, out):
    from agent.clock import SystemClock
    from agent.host.paho_client import Client
    from agent.runtime import Agent
    agent = Agent(profile, platform, SystemClock(), Client, device_id=args.device)
    discarded = agent.open()
    u = profile["uplink"]
    out.write("%s: %d sensors, buffer at %s (%d batches waiting%s), broker %s:%d%s\n" % (
        agent.device, len(agent.sampler.channels), profile["buffer"]["path"],
        agent.buffer.log.unacked, ", %d torn bytes discarded" % discarded if discarded else "",
        u["host"], u["port"], " (TLS)" if u["tls"] else ""))
    out.flush()
    stopping = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopping.set_result, sig)
    task = asyncio.create_task(agent.run())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        await agent.stop()
        await task
    out.write("stopped: %d batches waiting for the broker, %d readings dropped in all\n"
              % (agent.buffer.log.unacked, agent.buffer.log.dropped))
    return 0


def add_command(sub):
    p = sub.add_parser("run", help="run the agent on this machine (a Raspberry Pi, or --platform "
                                   "sim) until Ctrl-C")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--platform", choices=("sim", "rpi"), help="default: the profile's")
    p.add_argument("--device", metavar="ID", help="the device id (when the profile's is a "
                                                  "template such as printer-{uid})")
    p.add_argument("--store", metavar="DIR", help="where the buffer lives (default: the "
                                                  "profile's buffer.path)")
    add_allow_outside(p)
    p.set_defaults(func=main)
