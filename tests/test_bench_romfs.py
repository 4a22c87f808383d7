"""bench/romfs.py writes images MicroPython's VfsRom mounts: the figures bench/heap.py --romfs
prints rest on the bundle being imported from the image, in place."""
import subprocess

import pytest

from bench import romfs
from firmware.build import find_micropython, find_mpy_cross


def compile_to(folder, name, source):
    path = folder / (name + ".py")
    path.write_text(source)
    subprocess.run([find_mpy_cross(), "-o", str(folder / (name + ".mpy")), str(path)],
                   check=True)
    path.unlink()


@pytest.mark.parametrize("pad", [0, 1, 2])  # sizes of each parity: the padding is exercised
def test_micropython_imports_a_package_from_an_image_of_its_mpy_files(tmp_path, pad):
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    compile_to(code / "pkg", "__init__", "")
    compile_to(code / "pkg", "mod", "TEXT = %r\ndef twice(n):\n    return 2 * n\n"
               % ("x" * (40 + pad)))
    (code / "pkg" / "notes.txt").write_text("not code: left out")
    image = romfs.image(str(code))
    assert len(image) % 2 == 0 and image[:3] == b"\xd2\xcd\x31"
    (tmp_path / "rom.img").write_bytes(image)
    script = ("import vfs, sys, os\n"
              "data = open('rom.img', 'rb').read()\n"
              "vfs.mount(vfs.VfsRom(data), '/rom')\n"
              "sys.path.insert(0, '/rom')\n"
              "import pkg.mod\n"
              "print(pkg.mod.__file__, pkg.mod.twice(21), len(pkg.mod.TEXT), "
              "sorted(os.listdir('/rom/pkg')))\n")
    proc = subprocess.run([find_micropython(), "-c", script], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["/rom/pkg/mod.mpy", "42", str(40 + pad),
                                   "['__init__.mpy',", "'mod.mpy']"]
