"""`tether read`: reads every sensor of one or more profiles once (or N times) and prints each
value with its unit, or that sensor's error; exits 1 if any sensor failed.

On a Raspberry Pi it checks the wiring and the calibration with the real drivers on the real
buses; with `--platform sim` the same drivers run against virtual chips.
"""
import os
import sys
import time

from firmware.profile import add_allow_outside
from firmware.profile.compile import compile as compile_profile
from firmware.profile.units import DAY
from agent.sampler import described
from hal.board import drivers


def platform_for(name, profile, faults=(), applied=None, gpiochip=None, doing="read"):
    """applied: None, a fault whose sensor the profile lacks is an error; else a set, such a
    fault is passed over and the others are added to it (several profiles read in turn).
    gpiochip: the Pi's GPIO chip (None: found by its label). doing: what the command does with
    the profile, for its messages ("read", "run")."""
    if name == "sim":
        from hal.sim.platform import SimPlatform
        platform = SimPlatform(profile)
        for spec in faults:
            sensor, eq, kind = spec.partition("=")
            if not eq or not kind:
                raise ValueError("--fault %s: expected SENSOR=KIND, like power=nack" % spec)
            if sensor not in platform.sensors:
                if applied is not None:
                    continue
                raise ValueError("--fault %s: no sensor %r in the profile" % (spec, sensor))
            if applied is not None:
                applied.add(spec)
            platform.fault(sensor, kind)
        return platform
    if faults:
        raise ValueError("--fault needs --platform sim")
    if name == "rpi":
        if profile["platform"] != "rpi":
            # its buses were judged against a Pi's pins: "a Raspberry Pi has this bus on sda
            # 0/scl 1 or sda 2/scl 3" of an ESP32's
            raise ValueError("--platform rpi takes a profile written for a Raspberry Pi "
                             "(platform: rpi); this one is for %s: use --platform sim"
                             % profile["platform"])
        from hal.linux.platform import LinuxPlatform
        return LinuxPlatform(gpiochip=gpiochip)
    raise ValueError("an %s profile is %s on the board itself: copy the agent there (tether "
                     "flash), or use --platform sim" % (name, doing))


def _reason(exc):
    """An OSError without Python's '[Errno N]' prefix, with its file when it names one."""
    text = getattr(exc, "strerror", None)
    if not text:
        return str(exc)
    name = getattr(exc, "filename", None)
    return "%s: %s" % (text, name) if name else text


def shown(value, sensor):
    mantissa, exponent = sensor["resolution"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return "%.*f" % (max(0, -exponent), value)


def read_round(profile, sources, out, ready):
    """One reading of every sensor (one transaction per chip); returns the number that failed.
    ready: the ids of the chips set up, kept across rounds (a chip that failed is set up again,
    as the sampler does)."""
    results = {}
    failed = 0
    width = max(len(s["name"]) for s in profile["sensors"])
    for s, src in zip(profile["sensors"], sources):
        if id(src) not in results:
            try:
                if id(src) not in ready:
                    src.setup()
                    ready.add(id(src))
                results[id(src)] = src.measure()
            except Exception as exc:  # a SensorError, or an OSError from the bus itself
                ready.discard(id(src))
                results[id(src)] = exc
        got = results[id(src)]
        if isinstance(got, Exception):
            failed += 1
            out.write("  %-*s  ERROR %s\n" % (width, s["name"], described(got)))
        elif s["quantity"] not in got:
            failed += 1
            out.write("  %-*s  ERROR %s gave no %s\n" % (width, s["name"], s["driver"],
                                                        s["quantity"]))
        else:
            note = "" if got.get(s["quantity"] + "_confident", True) else "  (uncertain)"
            out.write("  %-*s  %s %s%s\n" % (width, s["name"], shown(got[s["quantity"]], s),
                                             s["unit"], note))
    return failed


def main(args, out=None, err=None):
    """Each profile in turn; the exit status is the worst of theirs."""
    out, err = out or sys.stdout, err or sys.stderr
    status = 0
    gap = ""
    # `tether read examples/*.yaml` names secrets.yaml too
    paths = [p for p in args.profiles if os.path.basename(p) != "secrets.yaml"]
    if not paths:
        err.write("tether read: secrets.yaml holds a profile's secrets, not a profile: name the "
                  "profile that uses them\n")
        return 2
    # With several profiles a fault breaks the sensor where a profile has it.
    applied = set() if len(paths) > 1 else None
    for path in paths:
        result = read_profile(path, args, out, err, gap, applied)
        if result != 2:
            gap = "\n"  # between the readings of one profile and the next
        status = max(status, result)
    for spec in args.fault if applied is not None else ():
        if spec not in applied:
            err.write("tether read: --fault %s: no sensor %r in any of the profiles\n"
                      % (spec, spec.partition("=")[0]))
            status = 2
    return status


def read_profile(path, args, out, err, gap="", applied=None):
    profile, errors = compile_profile(path, args.allow_outside)
    if errors:
        err.write("\n".join(errors) + "\n")
        return 2
    name = args.platform or profile["platform"]
    interval_ms = args.interval
    try:
        platform = platform_for(name, profile, args.fault, applied)
        sources = drivers(profile, platform)
    except ValueError as exc:
        err.write("tether read: %s: %s\n" % (path, exc))
        return 2
    except (ImportError, OSError) as exc:
        err.write("tether read: %s: cannot open the %s platform: %s\n"
                  % (path, name, _reason(exc)))
        return 2
    from hal.unopened import Unopened
    for source in sources:
        # An agent runs on without the bus (its sensors fail); a wiring check says so at once.
        if isinstance(source, Unopened):
            err.write("tether read: %s: cannot open the %s platform: %s\n"
                      % (path, name, source.error))
            return 2
    out.write("%s%s on %s: %d sensor%s\n" % (gap, path, name, len(sources),
                                             "" if len(sources) == 1 else "s"))
    out.flush()
    failed = 0
    ready = set()
    try:
        for n in range(args.count):
            if n:
                time.sleep(interval_ms / 1000)
            if args.count > 1:
                out.write("reading %d of %d\n" % (n + 1, args.count))
            failed += read_round(profile, sources, out, ready)
    finally:
        platform.close()
    if failed:
        out.write("%d of %d readings failed\n" % (failed, args.count * len(sources)))
    return 1 if failed else 0


def add_command(sub):
    from firmware.args import duration, whole
    p = sub.add_parser("read", help="read every sensor of one or more profiles and print the "
                                    "values")
    p.add_argument("profiles", nargs="+", metavar="PROFILE",
                   help="a profile YAML file (several: each in turn)")
    p.add_argument("--platform", choices=("sim", "rpi"),
                   help="where to read (default: the profile's platform)")
    p.add_argument("--count", type=whole(1), default=1, metavar="N", help="read N times")
    p.add_argument("--interval", type=duration(0, DAY), default="1s", metavar="DURATION",
                   help="between readings (default 1s)")
    p.add_argument("--fault", action="append", default=[], metavar="SENSOR=KIND",
                   help="with --platform sim: break the part behind a sensor, its bus (I2C: "
                        "nack, stuck, noise; a UART: timeout, bad_crc, noise, garbage, short) or "
                        "its chip (each chip's faults: docs/drivers.md; a KIND the sensor does "
                        "not take is refused with those it does)")
    add_allow_outside(p)
    p.set_defaults(func=main)
