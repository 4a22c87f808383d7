"""`tether report --db PATH`: the report of a simulated fleet from its database, whether it ran
in one process, in workers or in shards on several machines (simulator/parts.py)."""
import sys


def main(args, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    import os
    from firmware.simulate_cmd import (_write_report, exit_status, plots, writable_folder,
                                       writable_report)
    from simulator import parts
    from simulator.report import from_parts
    try:
        if args.report:
            writable_report(os.path.abspath(args.report), "--report")
        if args.plots:
            from simulator import plots as plots_mod
            if not plots_mod.available():
                raise ValueError(plots_mod.NEEDS)
            writable_folder(args.plots, "--plots")
        run, bodies = parts.load(args.db, args.run)
        report = from_parts(args.db, bodies)
    except (parts.PartsError, ValueError) as exc:
        err.write("tether report: %s\n" % exc)
        return 2
    if args.report:
        _write_report(report, os.path.abspath(args.report), out, gap="")
    else:
        from simulator.report import text
        out.write(text(report) + "\n")
    if args.plots:
        plots(args.db, args.plots, out, run)
    return exit_status(report)


def add_command(sub):
    p = sub.add_parser("report", help="the report of a simulated fleet (all its shards) from "
                                      "its database")
    p.add_argument("--db", required=True, metavar="FILE.sqlite|URL",
                   help="the database the fleet's ingest stored into: a SQLite file or a "
                        "postgresql:// URL")
    p.add_argument("--run", metavar="NAME", help="which run, when the database holds several")
    p.add_argument("--report", metavar="report.json", help="also write the report's JSON there")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots there")
    p.set_defaults(func=main)
