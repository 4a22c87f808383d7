"""The `tether` command."""
import argparse
import sys

from firmware import (batchfile, build, console_cmd, demo, flash, ingest_cmd, logs, read,
                      report_cmd, run, service, simulate_cmd)
from firmware.profile import add_allow_outside


def cmd_check(args):
    from firmware.profile.commands import check
    return check(args.profiles, allow_outside=args.allow_outside)


def cmd_compile(args):
    from firmware.profile.commands import compile_to
    return compile_to(args.profile, args.output, allow_outside=args.allow_outside)


def add_profile_commands(sub):
    p = sub.add_parser("check", help="validate product profiles and summarize each")
    p.add_argument("profiles", nargs="+", metavar="PROFILE",
                   help="a profile YAML file, or a compiled profile (.json) as `tether run` reads it")
    add_allow_outside(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("compile", help="compile a profile to the JSON that a board reads")
    p.add_argument("profile", metavar="PROFILE", help="a profile YAML file")
    p.add_argument("-o", "--output", metavar="OUT.json", help="write here instead of standard output")
    add_allow_outside(p)
    p.set_defaults(func=cmd_compile)


def build_parser():
    from agent.runtime import VERSION
    parser = argparse.ArgumentParser(prog="tether", description="Tether edge agent tools")
    parser.add_argument("--version", action="version", version="tether " + VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_profile_commands(sub)
    build.add_command(sub)
    batchfile.add_commands(sub)
    demo.add_command(sub)
    read.add_command(sub)
    run.add_command(sub)
    service.add_command(sub)
    ingest_cmd.add_command(sub)
    simulate_cmd.add_command(sub)
    report_cmd.add_command(sub)
    console_cmd.add_command(sub)
    flash.add_command(sub)
    logs.add_command(sub)
    return parser, sub


def main(argv=None):
    parser, sub = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # said by the command's own parser: the top one printed `tether`'s usage for a typo in
        # `tether check`'s options
        sub.choices[args.command].error("unrecognized arguments: %s" % " ".join(extra))
    try:
        return args.func(args)
    except BrokenPipeError:  # `tether decode ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C where a command has no stop of its own: no traceback
        sys.stderr.write("\ntether %s: interrupted\n" % args.command)
        return 130


if __name__ == "__main__":
    sys.exit(main())
