"""Flash time of examples/printer.yaml's bundle over the fake board (simulator/lab/fakeboard.py), first
run (every file sent) and second run (nothing changed: nothing sent).

    python3 bench/flash.py [--quick]

The bundle is what `tether build examples/printer.yaml` writes (bytecode, no --arch).
Two lines: the fake board at pty speed (what the host side and the protocol cost), and the fake
board pacing every byte as a 115200-baud line does (what a USB-serial ESP32 costs, less the
board's own compile time). Baselines in the same run, on the same bundle and line:
- tether over the plain raw REPL (a board without raw-paste: 256-byte chunks 10 ms apart, as
  mpremote paces them);
- mpremote's chunking: 256-byte chunks as bytes literals (the fake board reports no binascii
  and no deflate), one exec each.
tether itself sends 2 KB chunks, deflated (1 KB window) where that saves a tenth, in base64.
Target: a second run under 2 s at 115200 baud (it sends no file). Every run is checked: the
board's files equal the bundle's. --quick skips the 115200-baud baselines.
"""
import io
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from firmware import flash  # noqa: E402
from simulator.lab.bundles import printer_files, write_bundle  # noqa: E402
from simulator.lab.fakeboard import FakeBoard  # noqa: E402

TARGET_SECOND_S = 2.0
MPREMOTE = ("binascii", "deflate")    # a board without them gets bytes literals, as mpremote sends


def run(bundle, files, root, variant="raw-paste", baud=None, missing=(), **kw):
    """Seconds and serial bytes of a first and a second flash onto an empty board."""
    results = []
    with FakeBoard(root, variant=variant, baud=baud, missing=missing) as board:
        pause = 0.01 if baud else 0.0      # mpremote's pacing only matters on a real line
        for _ in range(2):
            t = time.monotonic()
            summary = flash.flash_bundle(bundle, board.port, out=io.StringIO(),
                                         fallback_pause=pause, **kw)
            results.append((time.monotonic() - t, summary["serial_bytes"], len(summary["sent"])))
        for path, data in files.items():
            if board.file(path) != data:
                raise SystemExit("FAILED: %s differs on the board after flashing" % path)
        if board.overruns:
            raise SystemExit("FAILED: %d bytes sent past the raw-paste window" % board.overruns)
    return results


def main():
    quick = "--quick" in sys.argv[1:]
    files = printer_files()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_bundle(tmp / "bundle", files)
        total = sum(len(d) for d in files.values())
        print("printer bundle (tether build examples/printer.yaml): %d files, %d bytes"
              % (len(files), total))
        print("%-44s %10s %12s %10s %12s" % ("", "1st run s", "1st serial B", "2nd run s",
                                             "2nd serial B"))
        cases = [("tether, raw-paste, pty speed", dict()),
                 ("  baseline: plain raw REPL, pty speed", dict(variant="no-raw-paste")),
                 ("  baseline: mpremote chunking, pty speed", dict(chunk=256, missing=MPREMOTE)),
                 ("tether, raw-paste, 115200 baud", dict(baud=115200))]
        if not quick:
            cases += [("  baseline: plain raw REPL, 115200 baud",
                       dict(variant="no-raw-paste", baud=115200)),
                      ("  baseline: mpremote chunking, 115200 baud",
                       dict(baud=115200, chunk=256, missing=MPREMOTE))]
        for i, (name, kw) in enumerate(cases):
            (t1, b1, n1), (t2, b2, n2) = run(tmp / "bundle", files, tmp / ("board%d" % i), **kw)
            if n1 != len(files) or n2 != 0:
                raise SystemExit("FAILED: %s sent %d then %d files" % (name, n1, n2))
            miss = ""
            if kw.get("baud") and name.startswith("tether"):
                miss = "  %s (2nd run <= %g s)" % ("MISSES TARGET" if t2 > TARGET_SECOND_S
                                                  else "meets target", TARGET_SECOND_S)
            print("%-44s %10.2f %12d %10.2f %12d%s" % (name, t1, b1, t2, b2, miss))
        print("each run: open the port, interrupt, enter the raw REPL and soft-reset there, probe, "
              "hash the board's files, send, soft-reset; the fake board compiles at PC speed")


if __name__ == "__main__":
    main()
