"""Profile YAML read into a tree of Nodes that remember where each value was written.

YAML is composed (never constructed with arbitrary tags) and turned into plain Python values by
hand, so a profile can only ever produce str, int, float, bool, None, lists and mappings.
This module also does what ESPHome users expect before any rule is checked: `!secret`,
`packages:` (deep-merged under the profile) and `substitutions:` (`${var}` and `$var`).
The rules for what the values mean live in schema.py.
"""
import dataclasses
import os
import re
from types import SimpleNamespace

import yaml
from yaml.constructor import SafeConstructor

from firmware import bounded
from firmware.profile.errors import at, did_you_mean, expected

TAG = "tag:yaml.org,2002:"
MAX_NODES = 100_000  # a few nested aliases can expand to billions of nodes ("billion laughs")
MAX_FILE = 256 * 1024  # a profile is a few KiB; PyYAML composes about 100 KiB a second
MAX_SUBSTITUTED = 1 << 20  # text that substitutions put in, all values together: "$a$a$a..."
# with a long `a` would otherwise grow a small file to gigabytes
KEYED_LISTS = {"sensors": "name", "buses": "id"}  # items merged by this key across packages
SUBSTITUTION = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
UNUSABLE = object()  # ctx.secrets when the secrets file cannot be used
READING = object()   # ctx.secrets while the secrets file is read: a `!secret` there is refused
TYPE_NAMES = {"int": "an integer (of at most 4300 digits)", "float": "a number",
              "bool": "true or false", "null": "nothing"}

_MAX_INT = 10 ** 4300  # what int() and str() take in decimal digits
_constructor = SafeConstructor()
_resolver = yaml.resolver.Resolver()
_TYPED = {
    "int": SafeConstructor.construct_yaml_int,
    "float": SafeConstructor.construct_yaml_float,
    "bool": SafeConstructor.construct_yaml_bool,
    "null": SafeConstructor.construct_yaml_null,
}


@dataclasses.dataclass(eq=False)
class Node:
    """One value of a profile and where it was written.

    value: dict of key -> Node, list of Node, or a str, int, float, bool or None.
    tag: "map", "seq", "str", "int", "float", "bool" or "null".
    text: a scalar's source text, so decimals can be read exactly and shown as written.
    plain: an unquoted scalar, whose type is resolved again after substitution, as ESPHome does.
    keys: for a mapping, key -> Node of the key itself (where unknown keys are reported).
    refused: a scalar whose own problem is noted (a bad tag, an integer too long): a variable
    with such a value stops the check, or each use of it would be reported as missing too.
    absent: an optional mapping the file leaves out, read as empty: a key it requires makes
    the mapping itself the one missing.
    """
    value: object
    file: str
    line: int
    col: int
    path: str = ""
    tag: str = "map"
    text: str = ""
    plain: bool = False
    secret: bool = False
    refused: bool = False
    keys: dict = dataclasses.field(default_factory=dict)
    absent: bool = False    # a mapping the file leaves out, read as empty (its key and its path)
    literal: bool = False   # `!literal '...'`: text no substitution touches (ESPHome's tag)
    quoted_at: object = None  # (name, its Node): text that is one substitution, quoted there


def join(path, key):
    return "%s.%s" % (path, key) if path else key


class TooMuch(Exception):
    """The profile grew past MAX_NODES or MAX_SUBSTITUTED (the problem is noted where)."""


def load(path, allow_outside=()):
    """(root Node or None, problems) of the profile at path, with packages and substitutions.

    Packages are read from the profile's folder tree, and from the trees of allow_outside.
    When a file cannot be used (unreadable, not YAML, an alias bomb), root is None: the rules
    would only report the keys it should have given as missing.
    """
    folder = os.path.dirname(path)
    ctx = SimpleNamespace(problems=[], nodes=0, substituted=0, secrets=None, failed=False,
                          secrets_file=os.path.join(folder, "secrets.yaml"),
                          roots=[os.path.realpath(d) for d in [folder or "."] + list(allow_outside)])
    root = read_file(ctx, path)
    if root is None:
        return None, ctx.problems
    if root.tag != "map":
        ctx.problems.append(at(root, not_a_mapping(root)))
        return None, ctx.problems
    root = with_packages(ctx, root)
    if ctx.failed:
        return None, ctx.problems
    set_paths(root, "")  # the merged tree's paths: a substitution's problem is noted with one
    try:
        substitute_all(ctx, root)
    except TooMuch:  # its problem is noted
        return None, ctx.problems
    if ctx.failed:  # a variable used with a refused value
        return None, ctx.problems
    set_paths(root, "")
    return root, ctx.problems


def not_a_mapping(node):
    # What the file holds is not shown: it may be any file named by mistake, /etc/passwd say.
    kind = {"seq": "a list", "str": "text", "null": "nothing"}.get(node.tag, "a single value")
    return "expected a mapping of top-level keys, got %s" % kind


def read_file(ctx, path, used_at=None):
    """The Node tree of one YAML file, or None (with the problem noted, and ctx.failed set)."""
    root = _read_file(ctx, path, used_at)
    if root is None:
        ctx.failed = True
    return root


def _read_file(ctx, path, used_at):
    try:
        text = bounded.read(path, MAX_FILE, "a profile file").decode("utf-8")
    except (OSError, bounded.TooLarge) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if used_at is None:
            ctx.problems.append((path, None, None, "", "cannot read: %s" % reason))
        else:
            ctx.problems.append(at(used_at, "cannot read '%s': %s" % (path, reason)))
        return None
    except UnicodeDecodeError as exc:
        good = exc.object[:exc.start].decode("utf-8")
        line, col = line_col(good, len(good))
        ctx.problems.append((path, line, col, "", "not UTF-8 text"))
        return None
    try:
        composed = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = "YAML syntax error: " + "; ".join(p for p in (exc.context, exc.problem) if p)
        reason += _hint(exc.problem or "")
        ctx.problems.append((path, mark.line + 1, mark.column + 1, "", reason) if mark
                            else (path, None, None, "", reason))
        return None
    except yaml.reader.ReaderError as exc:
        line, col = line_col(text, exc.position)
        ctx.problems.append((path, line, col, "", "YAML syntax error: character #x%04x: %s"
                             % (exc.character, exc.reason)))
        return None
    except yaml.YAMLError as exc:
        ctx.problems.append((path, None, None, "", "YAML syntax error: %s" % exc))
        return None
    except RecursionError:
        ctx.problems.append(_too_deep(path, text))
        return None
    if composed is None or (isinstance(composed, yaml.ScalarNode) and composed.value == ""
                            and composed.tag == TAG + "null"):
        # an empty file is an empty mapping, so is one of `---` alone: what it lacks is said
        # key by key ("got nothing" said neither what a profile holds nor where it goes)
        return Node({}, path, 1, 1)
    try:
        return build(ctx, composed, path, "", frozenset())
    except RecursionError:
        ctx.problems.append(_too_deep(path, text))
        return None
    except TooMuch:  # its problem is noted; what was built so far is cut short
        return None


def _hint(problem):
    """What PyYAML's words mean for a profile's usual slips."""
    if "'\\t'" in problem or "'\t'" in problem:
        return " (a tab: indent with spaces)"
    if "expected <block end>" in problem or "expected <block mapping start>" in problem:
        return " (is this line indented differently from the keys above it?)"
    if problem == "mapping values are not allowed here":
        return (" (a key indented under a value: check this line's indentation, or quote a "
                "value that holds ': ')")
    if problem in ("expected ',' or '}', but got '{'", "expected ',' or ']', but got '{'"):
        # `{id: printer-{uid}}`: a brace inside braces opens another mapping
        return " (a value that holds '{' needs quotes there: id: 'printer-{uid}')"
    return ""


DEEP = 64   # brackets nested deeper than this: where a too deep value is said to start


def _too_deep(path, text):
    """The problem of a value nested too deeply, at the bracket that opens level DEEP + 1 (flow
    style is how such a file is written; quoted strings and comments are skipped: a quote
    opens one only where a value starts, not inside `Bob's kettle`)."""
    depth = 0
    quote = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"" and (i == 0 or text[i - 1] in " \t\n[{,:"):
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c in "[{":
            depth += 1
            if depth > DEEP:
                line, col = line_col(text, i)
                return (path, line, col, "", "values are nested too deeply: brackets more than "
                        "%d deep from here" % DEEP)
        elif c in "]}":
            depth -= 1
        i += 1
    return (path, None, None, "", "values are nested too deeply")


def line_col(text, index):
    """1-based line and column of text[index], lines broken as YAML breaks them (text[:index]
    is printable, so splitlines breaks at nothing else)."""
    head = text[:index].splitlines(True) or [""]
    if head[-1].endswith(("\n", "\r", "\x85", "\u2028", "\u2029")):
        return len(head) + 1, 1
    return len(head), len(head[-1]) + 1


SECRET_FORM = "the name of a secret in secrets.yaml (`password: !secret broker_password`)"


def build(ctx, y, file, path, active):
    """Our Node for a composed YAML node; `active` holds the nodes being built (alias loops)."""
    line, col = y.start_mark.line + 1, y.start_mark.column + 1
    ctx.nodes += 1
    if ctx.nodes > MAX_NODES:  # files read after this one are cut short too, silently
        if ctx.nodes == MAX_NODES + 1:
            ctx.problems.append((file, line, col, path, "too many values (aliases expand to "
                                                        "more than %d); simplify the file"
                                 % MAX_NODES))
        raise TooMuch()
    if id(y) in active:
        ctx.problems.append((file, line, col, path, "an alias refers to itself"))
        return Node(None, file, line, col, path, tag="null")
    if isinstance(y, yaml.ScalarNode):
        return scalar(ctx, y, file, path)
    active = active | {id(y)}
    if y.tag not in (TAG + "seq", TAG + "map"):
        # the tag is ours, on a list or a mapping: it said "unsupported tag '!secret'"
        ctx.problems.append((file, line, col, path, "!secret takes %s, not a %s" % (
            SECRET_FORM, "list" if isinstance(y, yaml.SequenceNode) else "mapping")
            if y.tag == "!secret" else "unsupported tag '%s'" % y.tag))
        return Node(None, file, line, col, path, tag="null")
    if isinstance(y, yaml.SequenceNode):
        items = [build(ctx, item, file, "%s[%d]" % (path, i), active)
                 for i, item in enumerate(y.value)]
        return Node(items, file, line, col, path, tag="seq")
    node = Node({}, file, line, col, path)
    merged = []  # `<<: *anchor` mappings; explicit keys win over them, earlier ones over later
    for ky, vy in y.value:
        if ky.tag == TAG + "merge":
            sources = vy.value if isinstance(vy, yaml.SequenceNode) else [vy]
            for source in sources:
                built = build(ctx, source, file, path, active)
                if built.tag == "map":
                    merged.append(built)
                else:
                    ctx.problems.append(at(built, expected("a mapping to merge with '<<'", built)))
            continue
        kline, kcol = ky.start_mark.line + 1, ky.start_mark.column + 1
        if not isinstance(ky, yaml.ScalarNode):
            ctx.problems.append((file, kline, kcol, path, "expected a key, got a %s"
                                 % ("list" if isinstance(ky, yaml.SequenceNode) else "mapping")))
            continue
        if ky.tag.startswith("!"):  # `!secret address: 0x40` would pass as the key 'address'
            ctx.problems.append((file, kline, kcol, path,
                                 "unsupported tag '%s' on a key" % ky.tag))
            continue
        key = ky.value
        if not utf8(key):
            ctx.problems.append((file, kline, kcol, path, "expected a key, got a lone UTF-16 "
                                 "surrogate (a \\uD800-\\uDFFF escape), which is no character"))
            continue
        if key in node.value:
            first = node.keys[key]
            ctx.problems.append((file, kline, kcol, path,
                                 "duplicate key '%s' (first at line %d)" % (key, first.line)))
            continue
        node.keys[key] = Node(key, file, kline, kcol, join(path, key), tag="str", text=key)
        node.value[key] = build(ctx, vy, file, join(path, key), active)
    for source in merged:
        for key, value in source.value.items():
            if key not in node.value:
                node.value[key], node.keys[key] = value, source.keys[key]
    return node


def scalar(ctx, y, file, path):
    line, col = y.start_mark.line + 1, y.start_mark.column + 1
    if not utf8(y.value):
        # "\ud800" in double quotes: no board can be given it, and its encoding raised out of
        # the rules that measure a value in bytes (a WiFi name)
        ctx.problems.append((file, line, col, path, "expected text, got a lone UTF-16 "
                             "surrogate (a \\uD800-\\uDFFF escape), which is no character"))
        return Node(None, file, line, col, path, tag="null", refused=True)
    if y.tag == "!secret":
        if not y.value.strip():
            ctx.problems.append((file, line, col, path, "!secret takes %s" % SECRET_FORM))
            return Node(None, file, line, col, path, tag="null", refused=True)
        return secret(ctx, y.value, Node(None, file, line, col, path, tag="null"))
    if y.tag == "!literal":
        return Node(y.value, file, line, col, path, tag="str", text=y.value, literal=True)
    if y.tag == "!include" and (path == "packages" or path.startswith(("packages.",
                                                                        "packages["))):
        # ESPHome's `packages: {wifi: !include wifi.yaml}`: the file is the package
        return Node(y.value, file, line, col, path, tag="str", text=y.value)
    kind = y.tag[len(TAG):] if y.tag.startswith(TAG) else None
    if kind == "timestamp":  # a date is just text to a profile
        kind = "str"
    if kind != "str" and kind not in _TYPED:
        hint = "; share settings between files with 'packages: [FILE, ...]'" \
            if y.tag == "!include" else ""
        ctx.problems.append((file, line, col, path, "unsupported tag '%s'%s" % (y.tag, hint)))
        return Node(None, file, line, col, path, tag="null", refused=True)
    try:
        value = typed(y.value, kind)
        if kind == "int" and not -_MAX_INT < value < _MAX_INT:
            raise ValueError("0x or 0b digits take no limit on the way in, str() has one")
    # `!!float abc`, an integer of more digits than int() takes; PyYAML's constructors raise
    # IndexError for `!!int ""` and KeyError for `!!bool maybe`
    except (ValueError, IndexError, KeyError):
        text = y.value if len(y.value) <= 60 else y.value[:57] + "..."
        ctx.problems.append((file, line, col, path, "expected %s, got '%s'"
                             % (TYPE_NAMES[kind], text)))
        return Node(None, file, line, col, path, tag="null", refused=True)
    return Node(value, file, line, col, path, tag=kind, text=y.value, plain=y.style is None)


def utf8(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def typed(text, kind):
    if kind == "str":
        return text
    return _TYPED[kind](_constructor, yaml.ScalarNode(TAG + kind, text))


def secret(ctx, name, where):
    """The value of `!secret name` from secrets.yaml next to the profile, placed at `where`."""
    if ctx.secrets is READING:
        # it said "'p' is not in secrets.yaml" of a p that is there
        ctx.problems.append(at(where, "!secret '%s' inside '%s': a secret is a value, not a "
                               "reference to another" % (name, ctx.secrets_file)))
        return where
    if ctx.secrets is None:
        ctx.secrets = READING
        if os.path.exists(ctx.secrets_file):
            found = read_file(ctx, ctx.secrets_file)
            if found is None:
                ctx.secrets = UNUSABLE
            elif found.tag != "map":
                ctx.problems.append(at(found, "expected a mapping of secret names to values"))
                ctx.secrets, ctx.failed = UNUSABLE, True
            else:
                ctx.secrets = found.value
        else:
            ctx.secrets = False
    if ctx.secrets is UNUSABLE:  # said once, for the file, not at each `!secret`
        return where
    if ctx.secrets is False:
        ctx.problems.append(at(where, "!secret '%s': there is no secrets file '%s'"
                               % (name, ctx.secrets_file)))
        return where
    value = ctx.secrets.get(name)
    if value is None:
        ctx.problems.append(at(where, "!secret '%s' is not in '%s'%s"
                               % (name, ctx.secrets_file, did_you_mean(name, ctx.secrets))))
        return where
    if value.tag in ("map", "seq"):
        kind = "mapping" if value.tag == "map" else "list"
        ctx.problems.append(at(where, "!secret '%s' in '%s' must be a single value, not a %s"
                               % (name, ctx.secrets_file, kind)))
        return where
    return dataclasses.replace(where, value=value.value, tag=value.tag, text=value.text,
                               secret=True)


def with_packages(ctx, root):
    """The root with the files of its `packages:` list merged under it."""
    packages = root.value.pop("packages", None)
    root.keys.pop("packages", None)
    if packages is None or packages.tag == "null":
        return root
    # ESPHome's mapping form ({name: file}) too: the names say nothing to a profile
    items = packages.value if packages.tag == "seq" else \
        list(packages.value.values()) if packages.tag == "map" else None
    if items is None:
        ctx.problems.append(at(packages, expected("a list of file paths", packages)))
        ctx.failed = True
        return root
    base = None
    for item in items:
        package = package_at(ctx, root, item)
        if package is None:
            ctx.failed = True
        else:
            base = package if base is None else merge(base, package)
    return root if base is None else merge(base, root)


def package_at(ctx, root, item):
    """The Node tree of the package that a `packages:` entry names, or None (problem noted)."""
    # an empty one read the profile's folder: "cannot read '.': Is a directory"
    if item.tag != "str" or item.secret or "\0" in item.value or not item.value.strip():
        ctx.problems.append(at(item, expected("a file path", item)))
        return None
    path = os.path.normpath(os.path.join(os.path.dirname(root.file), item.value))
    real = os.path.realpath(path)
    if not any(os.path.commonpath([real, folder]) == folder for folder in ctx.roots):
        link = " (a link to '%s')" % real if os.path.abspath(path) != real else ""
        ctx.problems.append(at(item, "'%s'%s is outside the profile's folder '%s': packages are "
                               "read from there, or from a folder given with --allow-outside"
                               % (path, link, ctx.roots[0])))
        return None
    package = read_file(ctx, path, used_at=item)
    if package is not None and package.tag != "map":
        ctx.problems.append(at(package, not_a_mapping(package)))
        return None
    if package is not None and "packages" in package.value:
        ctx.problems.append(at(package.keys["packages"], "a package cannot include packages"))
        del package.value["packages"]
    return package


def merge(base, over, key=""):
    """over deep-merged onto base: mappings key by key, sensors by name and buses by id."""
    if base.tag == "map" and over.tag == "map":
        value, keys = dict(base.value), dict(base.keys)
        for k, v in over.value.items():
            value[k] = merge(value[k], v, k) if k in value else v
            keys[k] = over.keys[k]
        return dataclasses.replace(over, value=value, keys=keys)
    if key in KEYED_LISTS and base.tag == "seq" and over.tag == "seq":
        items = list(base.value)
        index = {list_key(n, KEYED_LISTS[key]): i for i, n in enumerate(items)}
        index.pop(None, None)
        for n in over.value:
            i = index.get(list_key(n, KEYED_LISTS[key]))
            if i is None:
                items.append(n)
            else:
                items[i] = merge(items[i], n)
        return dataclasses.replace(over, value=items)
    return over


def list_key(node, key):
    if node.tag == "map" and key in node.value and node.value[key].tag == "str":
        return node.value[key].value
    return None


def substitute_all(ctx, root):
    """Apply the root's `substitutions:` to every text value of the tree."""
    subs = root.value.pop("substitutions", None)
    root.keys.pop("substitutions", None)
    variables = {}
    if subs is not None and subs.tag == "map":
        for name, value in subs.value.items():
            if not VARIABLE.fullmatch(name):
                ctx.problems.append(at(subs.keys[name], "expected a variable name of letters, "
                                       "digits and '_', got '%s'" % name))
            elif value.tag in ("map", "seq"):
                ctx.problems.append(at(value, expected("a single value", value)))
                value.refused = True  # its uses are not 'unknown': it was refused here
                variables[name] = value
            else:
                variables[name] = value
    elif subs is not None and subs.tag != "null":
        ctx.problems.append(at(subs, expected("a mapping of variable names to values", subs)))
    substitute(ctx, root, variables)


def substitute(ctx, node, variables):
    """Replace ${var} and $var in text values.

    A value that is exactly one variable takes the variable's value with its type, quoted or
    not ("${low}" with `low: 15` is the number 15); any other unquoted value has its type
    resolved again from the new text, and a quoted one stays text.
    """
    if node.tag in ("map", "seq"):
        for child in (node.value.values() if node.tag == "map" else node.value):
            substitute(ctx, child, variables)
        return
    if node.tag != "str" or node.secret or node.literal or "$" not in node.text:
        return
    used = []

    def replace(match):
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name not in variables:
            ctx.problems.append(at(node, "unknown substitution variable '%s'%s" % (
                name, did_you_mean(name, variables) or " (text with a '$' of its own: "
                                                         "!literal '...')")))
            return match.group(0)
        if variables[name].refused:  # reported where it is defined
            ctx.failed = True
        used.append(variables[name])
        ctx.substituted += len(variables[name].text)
        if ctx.substituted > MAX_SUBSTITUTED:
            ctx.problems.append(at(node, "substitutions put more than %s of text into the "
                                   "profile; simplify it" % bounded.size_text(MAX_SUBSTITUTED)))
            raise TooMuch()
        return variables[name].text

    text = SUBSTITUTION.sub(replace, node.text)
    if text == node.text:
        return
    if SUBSTITUTION.fullmatch(node.text):
        node.value, node.tag = used[0].value, used[0].tag
        if node.tag == "str" and not used[0].plain:
            # its quotes are the variable's, not the use's: a hint about quotes says where
            node.quoted_at = (next(n for n, v in variables.items() if v is used[0]), used[0])
    else:
        kind = "str"
        if node.plain:
            kind = _resolver.resolve(yaml.ScalarNode, text, (True, False))[len(TAG):]
        node.tag = kind if kind in _TYPED else "str"
        try:
            node.value = typed(text, node.tag)
            if node.tag == "int" and not -_MAX_INT < node.value < _MAX_INT:
                raise ValueError("0x or 0b digits: as in scalar()")
        except ValueError:  # an integer of more digits than int() or str() takes
            node.tag, node.value = "str", text
    node.text = text
    node.secret = any(value.secret for value in used)


def set_paths(node, path):
    """Key paths as in the merged tree (a package's sensors[0] may now be sensors[3])."""
    node.path = path
    if node.tag == "map":
        for key, child in node.value.items():
            node.keys[key].path = join(path, key)
            set_paths(child, join(path, key))
    elif node.tag == "seq":
        for i, child in enumerate(node.value):
            set_paths(child, "%s[%d]" % (path, i))
