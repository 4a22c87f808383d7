"""Product profiles: YAML in, the compiled dict a board reads out (host only, never on a board).

    from firmware.profile.compile import compile
    compiled, errors = compile("examples/printer.yaml")

Modules: yamlsource (YAML with positions, !secret, packages, substitutions), units (durations,
sizes, frequencies, resolutions), rules (generic value rules), schema (the profile's rules),
crosscheck (pins, addresses, buffer room), compile, summary, commands (`tether check|compile`).
"""


def add_allow_outside(parser):
    """The option of each command that reads a profile: packages from more folders' trees."""
    parser.add_argument("--allow-outside", action="append", default=[], metavar="DIR",
                        help="also read packages from DIR and its subfolders (by default only "
                             "the profile's folder tree); may be given more than once")
