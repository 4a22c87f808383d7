"""Whatever a profile holds, compile() answers with a compiled dict or with errors: it never
raises, and a secret never shows in an error."""
import pathlib
import shutil
import tempfile

from hypothesis import given, settings, strategies as st

from firmware.profile.compile import compile

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
SECRETS = ("not-a-real-password", "example-user")
VALUES = ["", "x", "0", "-1", "1.5", "[]", "{}", "~", "!secret mqtt_password", "!secret nope",
          "${x}", "$", "'a'", "[1, 2]", "{a: 1}", "0x40", "10s", "yes", "*a", "&a b", "<<: {}",
          ":", "- ", "\t", "#", "1e400", ".inf", "!include x.yaml", "[[[", "'", "%"]
EDIT = st.tuples(st.sampled_from(["delete", "set", "copy"]), st.integers(0, 10 ** 6),
                 st.integers(0, 10 ** 6), st.sampled_from(VALUES))


def edited(text, edits):
    lines = text.splitlines()
    for op, i, j, value in edits:
        i %= len(lines)
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "set" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + value
        else:
            lines.insert(i, lines[j % len(lines)])
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["printer.yaml", "washer.yaml", "pill-bottle.yaml", "common/base.yaml"]),
       st.lists(EDIT, min_size=1, max_size=4))
def test_edited_examples_compile_or_give_errors_without_secrets(name, edits):
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "examples"
        shutil.copytree(EXAMPLES, folder)
        (folder / name).write_text(edited((EXAMPLES / name).read_text(), edits))
        profile = "printer.yaml" if name.startswith("common/") else name
        compiled, errors = compile(str(folder / profile))
    assert (compiled is None) == bool(errors)
    assert not any(secret in error for error in errors for secret in SECRETS)
