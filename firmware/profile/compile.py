"""A profile file -> the compiled form the board reads: a dict of JSON types, units resolved.

    from firmware.profile.compile import compile
    compiled, errors = compile("examples/printer.yaml")

The compiled form is described in docs/profiles.md.
"""
import json

from firmware.profile.errors import messages
from firmware.profile.schema import compile_root
from firmware.profile.yamlsource import load


def compile_with_secrets(path, allow_outside=(), warnings=None):
    """(compiled dict or None, error lines, compiled paths of the values that came from secrets).

    Packages are read from the profile's folder tree, and from the trees of allow_outside. The
    lines of a valid profile's warnings (docs/profiles.md, Pins) go to the list `warnings`."""
    root, load_problems = load(path, allow_outside)
    if root is None:
        return None, messages(load_problems), []
    compiled, problems, secret_fields, notes = compile_root(root)
    # A value already reported while loading (a missing secret, an unsupported tag) stands in as
    # an empty value, which its rule would report again: one problem per place is enough.
    reported = {p[:3] for p in load_problems}
    problems = load_problems + [p for p in problems if p[:3] not in reported]
    if warnings is not None:   # with the errors too: the next check would show them
        warnings.extend(messages(notes))
    if problems:
        return None, messages(problems), secret_fields
    return compiled, [], secret_fields


def compile(path, allow_outside=()):
    """(compiled dict, []) for a valid profile, else (None, error lines sorted by file and line)."""
    compiled, errors, _ = compile_with_secrets(path, allow_outside)
    return compiled, errors


def to_json(compiled):
    return json.dumps(compiled, sort_keys=True, separators=(",", ":"))
