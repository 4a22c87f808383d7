"""The `tether` command."""
import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(prog="tether", description="Tether edge agent tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    return parser, sub


def main(argv=None):
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
