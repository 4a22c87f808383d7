"""`tether check` and `tether compile`: exit status 0 when every profile is valid, 2 otherwise."""
import os
import stat
import sys

from firmware.profile.compile import compile_with_secrets, to_json
from firmware.profile.summary import summary


def check(paths, out=None, err=None, allow_outside=()):
    """Print a summary of each valid profile and every error of the others."""
    out, err = out or sys.stdout, err or sys.stderr
    status = 0
    for path in paths:
        if os.path.basename(path) == "secrets.yaml":  # `tether check examples/*.yaml` names it too
            print("%s: skipped, the secrets of the profiles next to it" % path, file=out)
            continue
        warnings = []
        if path.endswith(".json"):
            compiled, errors, secret_fields = _compiled(path)
        else:
            compiled, errors, secret_fields = compile_with_secrets(path, allow_outside, warnings)
        if errors:
            status = 2
            print("\n".join(errors), file=err)
        else:
            print(summary(path, compiled, secret_fields), file=out)
        _warn(warnings, err)
    return status


def _compiled(path):
    """A compiled profile, as `tether run` and install-service read it (its YAML's keys made it
    fail as YAML: `batch: unknown key 'max_age_ms'`); its credentials shown as ***."""
    from firmware.build import CREDENTIALS
    from firmware.run import load_compiled
    compiled, errors = load_compiled(path)
    hidden = [p for p in CREDENTIALS if compiled is not None
              and p.split(".")[1] in (compiled.get(p.split(".")[0]) or {})]
    return compiled, errors, hidden


def _warn(warnings, err):
    if warnings:
        print("\n".join(warnings), file=err)


def compile_to(path, output=None, out=None, err=None, allow_outside=()):
    """Write the compiled profile as JSON to the file `output`, or to standard output."""
    out, err = out or sys.stdout, err or sys.stderr
    warnings = []
    compiled, errors, _ = compile_with_secrets(path, allow_outside, warnings)
    if errors:
        print("\n".join(errors), file=err)
        return 2
    _warn(warnings, err)
    text = to_json(compiled) + "\n"
    if output is None:
        out.write(text)
        return 0
    try:
        _write_private(output, text)
    except OSError as exc:
        print("%s: cannot write: %s" % (output, exc.strerror), file=err)
        return 2
    return 0


def _write_private(path, text):
    """Writes text readable by this user alone: a compiled profile holds the broker password and
    the client key. An existing file is made 0600 before anything is written to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not a terminal or a pipe (-o /dev/stdout)
            os.fchmod(fd, 0o600)
        f.write(text)
