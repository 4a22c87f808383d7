"""Product profiles: YAML in, the compiled dict a board reads out (host only, never on a board).

    from firmware.profile.compile import compile
    compiled, errors = compile("examples/printer.yaml")

Modules: yamlsource (YAML with positions, !secret, packages, substitutions), units (durations,
sizes, frequencies, resolutions), rules (generic value rules), schema (the profile's rules),
crosscheck (pins, addresses, buffer room), compile, summary, commands (`tether check|compile`).
"""
