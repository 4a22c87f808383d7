"""`tether flash` against a fake board on a pseudo-terminal (simulator/lab/fakeboard.py): the real
pyserial path and the raw REPL protocol, with the code the board receives run by the real
`micropython` binary on a temp folder that stands for the board's filesystem."""
import io
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest
import serial

from firmware import cli, flash
from simulator.lab.bundles import mpy_of, write_bundle
from simulator.lab.fakeboard import FakeBoard

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
MPY_6_3_XTENSAWIN = 6 | 3 << 8 | 10 << 10
MPY_6_3_RV32IMC = 6 | 3 << 8 | 11 << 10
MPY_5_0_XTENSAWIN = 5 | 0 << 8 | 10 << 10


@pytest.fixture(scope="module")
def v1():
    return {
        "main.py": b"import firmware.board\nfirmware.board.main()\n",
        "agent/__init__.mpy": mpy_of(""),
        "agent/log.mpy": mpy_of("def f(x):\n    return x * 2\n" * 40),
        "hal/drivers/old.mpy": mpy_of("OLD = 1\n"),
        "profile.json": json.dumps({"device": {"id": "printer-0001"}}).encode(),
        "secrets.json": b"{}",
        # every byte value, and what a REPL would take for control characters
        "data.bin": bytes(range(256)) * 12 + b"\x04\x03\x01\x02\r\n'\"\\",
    }


def run_flash(*args):
    out, err = io.StringIO(), io.StringIO()
    parser, _ = cli.build_parser()
    parsed = parser.parse_args(["flash"] + list(args))
    code = flash.main(parsed, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def flash_ok(bundle, board, *extra):
    code, out, err = run_flash("--bundle", str(bundle), "--port", board.port, *extra)
    assert (code, err) == (0, ""), out
    assert board.error is None and board.overruns == 0
    return out


def board_has(board, files):
    for path, data in files.items():
        assert board.file(path) == data, path


# The fake board's three ways to speak the raw REPL: raw-paste (flow control), a firmware that
# answers raw-paste with "not supported", and one that predates it (both: plain 256-byte chunks).
VARIANTS = ["raw-paste", "no-raw-paste", "old"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_first_flash_copies_the_bundle_in_each_repl_variant(tmp_path, v1, variant):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        out = flash_ok(tmp_path / "b1", board)
        board_has(board, v1)
        assert board.file("manifest.json") == (tmp_path / "b1" / "manifest.json").read_bytes()
        assert board.files() == sorted(list(v1) + ["manifest.json"])     # no .part left over
        assert board.writes[-1][0] == "/manifest.json.part"            # the manifest goes last
        assert board.modes_used == ({"raw-paste"} if variant == "raw-paste" else {"plain"})
        assert board.soft_resets == 2          # entering the raw REPL, and at the end
        assert "flashed 7 of 7 files" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_second_flash_sends_nothing(tmp_path, v1, variant):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        flash_ok(tmp_path / "b1", board)
        writes, first_bytes = len(board.writes), board.bytes_in
        out = flash_ok(tmp_path / "b1", board)
        assert len(board.writes) == writes
        second_bytes = board.bytes_in - first_bytes
        assert second_bytes < first_bytes / 2        # the probe and the hash request
        assert "up to date: 0 of 7 files" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_changed_file_is_the_only_one_sent(tmp_path, v1, variant):
    write_bundle(tmp_path / "b1", v1)
    v2 = dict(v1, **{"agent/log.mpy": mpy_of("def f(x):\n    return x * 3\n" * 40)})
    write_bundle(tmp_path / "b2", v2)
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        flash_ok(tmp_path / "b1", board)
        before = len(board.writes)
        flash_ok(tmp_path / "b2", board)
        assert [p for p, _ in board.writes[before:]] == ["/agent/log.mpy.part",
                                                         "/manifest.json.part"]
        board_has(board, v2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_files_of_the_previous_bundle_only_are_removed(tmp_path, v1, variant):
    write_bundle(tmp_path / "b1", v1)
    v2 = {p: d for p, d in v1.items() if p != "hal/drivers/old.mpy"}
    write_bundle(tmp_path / "b2", v2)
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        flash_ok(tmp_path / "b1", board)
        (tmp_path / "board" / "notes.txt").write_text("the user's own file")
        out = flash_ok(tmp_path / "b2", board)
        assert board.files() == sorted(list(v2) + ["manifest.json", "notes.txt"])
        assert not (tmp_path / "board" / "hal").exists()       # emptied folders go too
        assert "removed hal/drivers/old.mpy" in out
        manifest = json.loads(board.file("manifest.json"))
        assert "hal/drivers/old.mpy" not in [e["path"] for e in manifest["files"]]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("how, code", [("close", flash.EXIT_CONNECTION_LOST),
                                       ("mute", flash.EXIT_NOT_ANSWERING)])
def test_a_transfer_cut_mid_file_leaves_the_old_file_intact(tmp_path, v1, how, code, variant):
    big_old = bytes(range(256)) * 40
    big_new = bytes(reversed(range(256))) * 40
    write_bundle(tmp_path / "b1", dict(v1, **{"agent/big.mpy": big_old}))
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/big.mpy": big_new}))
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        flash_ok(tmp_path / "b1", board)
    old_manifest = (tmp_path / "b1" / "manifest.json").read_bytes()
    with FakeBoard(tmp_path / "board", variant=variant, cut=("agent/big.mpy", 5000, how)) as board:
        got, out, err = run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port,
                                  "--timeout", "0.5")
        assert got == code, err
        assert "No file was left half written" in err
        assert board.dead
        assert (tmp_path / "board" / "agent" / "big.mpy.part").stat().st_size == 5000
        assert board.file("agent/big.mpy") == big_old
        assert board.file("manifest.json") == old_manifest
        # Other files may be new already: the entry point is set aside until a flash ends.
        assert "main.py" not in board.files() and "main.py.off" in board.files()
    with FakeBoard(tmp_path / "board", variant=variant) as board:           # plugged in again: the flash ends
        flash_ok(tmp_path / "b2", board)
        assert board.file("agent/big.mpy") == big_new
        assert board.files() == sorted(list(v1) + ["agent/big.mpy", "manifest.json"])


def test_a_file_added_by_a_cut_flash_is_removed_by_the_next_flash_of_a_bundle_without_it(
        tmp_path, v1):
    big_old = bytes(range(256)) * 40
    write_bundle(tmp_path / "b1", dict(v1, **{"agent/zz.mpy": big_old}))
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/aa_new.mpy": b"new module",
                                              "agent/zz.mpy": big_old[::-1]}))
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", cut=("agent/zz.mpy", 1000, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)[0] == 9
        assert board.file("agent/aa_new.mpy") == b"new module"   # written before the cut
    with FakeBoard(tmp_path / "board") as board:           # the old bundle again
        flash_ok(tmp_path / "b1", board)
        assert board.files() == sorted(list(v1) + ["agent/zz.mpy", "manifest.json"])
        assert board.file("main.py") == v1["main.py"]


def test_a_partial_copy_left_by_a_cut_is_removed_by_the_next_flash_even_unsent(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    v2 = dict(v1, **{"agent/log.mpy": mpy_of("def f(x):\n    return x * 3\n" * 40)})
    write_bundle(tmp_path / "b2", v2)
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", cut=("agent/log.mpy", 100, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)[0] == 9
        assert "agent/log.mpy.part" in board.files()
    with FakeBoard(tmp_path / "board") as board:           # the old bundle again: nothing sent
        out = flash_ok(tmp_path / "b1", board)
        assert "up to date" in out
        assert board.files() == sorted(list(v1) + ["manifest.json"])


def test_a_partial_copy_of_a_file_the_bundle_no_longer_has_is_removed_with_it(tmp_path, v1):
    # The next bundle lacks the file: its .part stayed on the board for good.
    big = dict(v1, **{"agent/big.mpy": bytes(range(256)) * 20})
    write_bundle(tmp_path / "small", v1)
    write_bundle(tmp_path / "big", big)
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "small", board)
    with FakeBoard(tmp_path / "board", cut=("agent/big.mpy", 1500, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "big"), "--port", board.port)[0] == 9
        assert "agent/big.mpy.part" in board.files()
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "small", board)
        assert board.files() == sorted(list(v1) + ["manifest.json"])


def test_a_board_manifest_that_is_not_one_counts_as_none(tmp_path, v1):
    # Garbage in /manifest.json (not UTF-8) made every flash fail with the board's traceback.
    write_bundle(tmp_path / "b1", v1)
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "manifest.json").write_bytes(bytes(range(128, 256)) * 20)
    (tmp_path / "board" / "keep.txt").write_text("the user's own")
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
        board_has(board, v1)
        assert "keep.txt" in board.files()      # nothing deleted on a manifest it cannot read


def test_a_flash_starts_the_crash_boot_count_again(tmp_path, v1):
    # Flashing within a minute of boot counted as a crash: ten quick flashes put the board in
    # safe mode, running no sensor, and the developer took the new profile for broken.
    write_bundle(tmp_path / "b1", v1)
    (tmp_path / "board").mkdir()
    (tmp_path / "board" / "tether_boots").write_text("9")
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
        assert "tether_boots" not in board.files()


def test_a_sim_bundle_is_refused_on_a_real_board_and_taken_by_the_unix_port(tmp_path, v1):
    write_bundle(tmp_path / "sim", v1, platform="sim")
    with FakeBoard(tmp_path / "board") as board:                  # says it is an esp32
        code, out, err = run_flash("--bundle", str(tmp_path / "sim"), "--port", board.port)
        assert code == flash.EXIT_INCOMPATIBLE
        assert "platform: sim" in err and "esp32" in err and "Nothing was written" in err
        assert board.writes == []
    with FakeBoard(tmp_path / "unix", platform="linux") as board:
        flash_ok(tmp_path / "sim", board)


def test_ctrl_c_mid_flash_says_what_the_board_holds_and_exits_130(tmp_path, v1, monkeypatch):
    write_bundle(tmp_path / "b1", v1)
    write = flash.Board.write
    sent = []

    def interrupted(self, path, *args):
        if sent:
            raise KeyboardInterrupt
        sent.append(path)
        return write(self, path, *args)
    monkeypatch.setattr(flash.Board, "write", interrupted)
    with FakeBoard(tmp_path / "board") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_INTERRUPTED == 130
        assert "interrupted. No file was left half written" in err and "Flash again" in err
        assert "main.py.off" in board.files() or "main.py" not in board.files()
    # Before the copy (building, or esptool writing MicroPython) it says what that means.
    monkeypatch.setattr(flash, "flash_bundle", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", "/dev/null")
    assert code == 130 and "nothing was written to the board" in err


def test_the_default_build_folder_is_kept_out_of_git(tmp_path, monkeypatch):
    # It holds secrets.json (the WiFi passphrase, the broker password): `git add -A` in the
    # product's repository staged it.
    import shutil
    shutil.copytree(EXAMPLES, tmp_path / "product")
    profile = tmp_path / "product" / "printer.yaml"
    monkeypatch.setattr(flash, "flash_bundle", lambda *a, **k: None)
    code, out, err = run_flash(str(profile), "--port", "/dev/null")
    assert code == 0, err
    assert (profile.parent / ".tether" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (profile.parent / ".tether" / "build" / "printer" / "secrets.json").exists()
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q"], cwd=profile.parent, check=True)
        subprocess.run(["git", "add", "-A"], cwd=profile.parent, check=True)
        staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=profile.parent,
                                check=True, capture_output=True, text=True).stdout.split()
        assert staged and not [n for n in staged if n.startswith(".tether")], staged


@pytest.mark.parametrize("board_mpy, arch, words", [
    (MPY_5_0_XTENSAWIN, None, "loads .mpy version 5.0 (xtensawin), the bundle is .mpy 6.3"),
    (MPY_6_3_RV32IMC, "xtensawin", "native code for xtensawin, the board is rv32imc"),
    (6 | 2 << 8 | 10 << 10, "xtensawin", "native code is .mpy 6.3 (xtensawin)"),
    (5, None, "loads .mpy version 5.0 (bytecode only), the bundle is .mpy 6.3"),  # no native
    (6 | 3 << 8, "xtensawin", "the board's MicroPython runs bytecode only: build without --arch"),
])
def test_a_bundle_the_board_cannot_load_is_refused_before_anything_is_written(
        tmp_path, v1, board_mpy, arch, words):
    write_bundle(tmp_path / "b1", v1, mpy=(6, 3, arch))
    with FakeBoard(tmp_path / "board", mpy=board_mpy) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_INCOMPATIBLE == 7
        assert words in err and "Nothing was written" in err
        assert board.writes == [] and board.files() == []


def test_a_board_whose_micropython_is_too_old_for_the_board_code_is_refused():
    # 1.20 loads .mpy 6 as 1.22 does: the bundle went on and failed at boot (no `asyncio`
    # module before 1.21, no SSLContext.load_verify_locations before 1.22)
    manifest = {"mpy": {"version": 6, "sub": 1, "arch": None}}
    why = flash.check_compatible(manifest, 6 | 1 << 8, "1.21.0")
    assert why == ("the board runs MicroPython 1.21.0; Tether's board code needs 1.22 or later "
                   "(asyncio, ssl.SSLContext): flash a newer MicroPython (--firmware)")
    assert flash.check_compatible(manifest, 6 | 1 << 8, "1.22.0") is None
    assert flash.check_compatible(manifest, 6 | 1 << 8, "1.29.0") is None


@pytest.mark.parametrize("board_mpy, arch", [
    (MPY_6_3_XTENSAWIN, "xtensawin"),
    (6 | 1 << 8 | 10 << 10, None),     # bytecode: the loader checks only the version
])
def test_a_bundle_the_board_can_load_is_flashed(tmp_path, v1, board_mpy, arch):
    write_bundle(tmp_path / "b1", v1, mpy=(6, 3, arch))
    with FakeBoard(tmp_path / "board", mpy=board_mpy) as board:
        flash_ok(tmp_path / "b1", board)
        board_has(board, v1)


def test_a_bundle_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", free=7 * 4096) as board:     # 8 files: 8 blocks at least
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_FS_FULL
        assert "needs 32 KB free at its peak, the board has 28 KB. Nothing was written" in err
        assert board.writes == [] and board.files() == []


def test_the_space_check_counts_whole_blocks_and_the_old_copy_until_the_rename():
    kb4 = (4096, 3)
    assert flash.space_problem([(3 * 4096, 3 * 4096)], kb4) is None      # old freed after
    assert flash.space_problem([(3 * 4096 + 1, 0)], kb4) is not None     # 4 blocks
    assert flash.space_problem([(2 * 4096, 4096), (4096, 4096), (1, -1)], kb4) is None
    assert flash.space_problem([(2 * 4096, 4096), (3 * 4096, 4096)], kb4) is not None
    assert flash.space_problem([(10 ** 9, -1)], None) is None            # no statvfs: tried


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_full_filesystem_is_a_clear_error_and_the_old_file_stays(tmp_path, v1, variant):
    write_bundle(tmp_path / "b1", v1)
    bigger = mpy_of("def g(x):\n    return x - 1\n" * 200)
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/log.mpy": bigger}))
    with FakeBoard(tmp_path / "board", variant=variant) as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", variant=variant, budget=len(bigger) // 2) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)
        assert code == flash.EXIT_FS_FULL == 8
        assert "filesystem is full: agent/log.mpy did not fit" in err
        assert "Traceback" not in err
        assert board.file("agent/log.mpy") == v1["agent/log.mpy"]
        assert board.files() == sorted(list(v1) + ["manifest.json"])   # the .part is gone
        assert board.file("manifest.json") == (tmp_path / "b1" / "manifest.json").read_bytes()


def test_a_flash_refused_after_a_cut_one_keeps_the_mixed_modules_from_booting(tmp_path, v1):
    # The next flash put /main.py back as it compared hashes, before the space check refused
    # it ("Nothing was written"): the board booted half the old bundle and half the new.
    big_new = bytes(reversed(range(256))) * 40
    write_bundle(tmp_path / "b1", dict(v1, **{"agent/big.mpy": bytes(range(256)) * 40}))
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/big.mpy": big_new,
                                              "agent/log.mpy": mpy_of("X = 3\n")}))
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", cut=("agent/big.mpy", 5000, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)[0] == 9
    assert "main.py.off" in os.listdir(tmp_path / "board")
    with FakeBoard(tmp_path / "board", free=4096) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)
        assert code == flash.EXIT_FS_FULL, err
        assert "Nothing was written" in err and "/main.py is set aside" in err
        assert "main.py" not in board.files() and "main.py.off" in board.files()
    with FakeBoard(tmp_path / "board") as board:     # the flash ends: main.py is not resent
        before = len(board.writes)
        flash_ok(tmp_path / "b2", board)
        assert "/main.py.part" not in [p for p, _ in board.writes[before:]]
        assert board.file("main.py") == v1["main.py"] and "main.py.off" not in board.files()
        assert board.file("agent/big.mpy") == big_new


def test_an_entry_point_the_next_bundle_lacks_is_removed_also_when_a_cut_left_it_aside(
        tmp_path, v1):
    # Removed as stale while aside, it was put back by the flash's end: on the board, running,
    # and in no manifest, so no later flash would remove it.
    big = bytes(range(256)) * 40
    write_bundle(tmp_path / "b1", dict(v1, **{"agent/big.mpy": big}))
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/big.mpy": big[::-1]}))
    bare = {p: d for p, d in v1.items() if p != "main.py"}
    write_bundle(tmp_path / "b3", bare)
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", cut=("agent/big.mpy", 5000, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)[0] == 9
    with FakeBoard(tmp_path / "board") as board:
        out = flash_ok(tmp_path / "b3", board)
        assert "removed main.py" in out
        assert board.files() == sorted(list(bare) + ["manifest.json"])


def test_a_main_py_beside_a_stale_aside_copy_is_set_aside_all_the_same(tmp_path, v1):
    # A flash cut after writing the new main.py left both: the next one's _off() saw the .off
    # there and renamed nothing, so a second cut booted a mix of modules.
    big = bytes(range(256)) * 40
    write_bundle(tmp_path / "b1", dict(v1, **{"agent/big.mpy": big}))
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/big.mpy": big[::-1]}))
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    (tmp_path / "board" / "main.py.off").write_bytes(b"an older main.py\n")
    with FakeBoard(tmp_path / "board", cut=("agent/big.mpy", 5000, "close")) as board:
        assert run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)[0] == 9
        assert "main.py" not in board.files()
        assert board.file("main.py.off") == v1["main.py"]


def test_an_interim_manifest_that_does_not_fit_leaves_the_old_bundle_running(tmp_path, v1):
    # It was written after /main.py went aside, outside the handler that puts it back: the
    # old bundle, untouched, no longer booted.
    write_bundle(tmp_path / "b1", v1)
    write_bundle(tmp_path / "b2", dict(v1, **{"agent/added.mpy": mpy_of("Y = 1\n")}))
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", budget=100) as board:
        resets = board.soft_resets
        code, out, err = run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)
        assert code == flash.EXIT_FS_FULL and "manifest.json did not fit" in err
        assert "set aside" not in err and "runs its program again" in err
        assert board.file("main.py") == v1["main.py"] and "main.py.off" not in board.files()
        assert board.file("manifest.json") == (tmp_path / "b1" / "manifest.json").read_bytes()
        assert board.soft_resets == resets + 2 and board.state != "raw"


def test_a_refused_flash_leaves_the_board_running_instead_of_halted_in_the_raw_repl(tmp_path,
                                                                                    v1):
    write_bundle(tmp_path / "b1", v1, mpy=(6, 3, "xtensawin"))
    with FakeBoard(tmp_path / "board", mpy=MPY_5_0_XTENSAWIN) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_INCOMPATIBLE and "Nothing was written" in err
        assert "soft-reset and runs its program again" in err
        assert board.state != "raw" and board.writes == []


def test_the_summary_counts_the_manifest_it_sent(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    v2 = dict(v1, **{"agent/log.mpy": mpy_of("def f(x):\n    return x * 3\n" * 40)})
    write_bundle(tmp_path / "b2", v2)
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
        out = flash_ok(tmp_path / "b2", board)
    sent = len(v2["agent/log.mpy"]) + (tmp_path / "b2" / "manifest.json").stat().st_size
    assert "1 to send and manifest.json" in out
    assert "flashed 1 of 7 files and manifest.json (%d bytes)" % sent in out


def test_a_copy_that_arrives_damaged_is_not_renamed_over_the_old_file(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    v2 = dict(v1, **{"agent/log.mpy": mpy_of("def f(x):\n    return x * 3\n" * 40)})
    write_bundle(tmp_path / "b2", v2)
    with FakeBoard(tmp_path / "board") as board:
        flash_ok(tmp_path / "b1", board)
    with FakeBoard(tmp_path / "board", corrupt="agent/log.mpy") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b2"), "--port", board.port)
        assert code == flash.EXIT_FAILED == 1
        assert "agent/log.mpy: the copy on the board does not match" in err
        assert board.file("agent/log.mpy") == v1["agent/log.mpy"]
        assert board.files() == sorted(list(v1) + ["manifest.json"])     # the .part removed


def test_a_board_without_sha256_gets_every_file_checked_by_size(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", missing=("hashlib",)) as board:
        out = flash_ok(tmp_path / "b1", board)
        assert "no hashlib.sha256" in out
        board_has(board, v1)
        writes = len(board.writes)
        flash_ok(tmp_path / "b1", board)
        assert len(board.writes) == writes + len(v1) + 1     # nothing to compare: all sent again


@pytest.mark.parametrize("missing", [(), ("deflate",), ("binascii",), ("binascii", "deflate")])
def test_file_data_travels_deflated_where_the_board_can_inflate_it(tmp_path, v1, missing):
    files = dict(v1, **{"zeros.bin": bytes(20000)})
    write_bundle(tmp_path / "b1", files)
    with FakeBoard(tmp_path / "board", missing=missing) as board:
        flash_ok(tmp_path / "b1", board)
        board_has(board, files)
        if missing:       # base64 (4/3 of the bytes) or bytes literals (4 characters a zero)
            assert board.bytes_in > 20000 * 4 / 3
        else:
            assert board.bytes_in < 20000 / 2


def test_no_such_port(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", str(tmp_path / "nope"))
    assert code == flash.EXIT_NO_PORT == 3
    assert "no such port: %s" % (tmp_path / "nope") in err


@pytest.mark.parametrize("port, says, built", [
    ("{tmp}/ttyUSB9", "no such port: {tmp}/ttyUSB9 (is the board plugged in?", False),
    ("{tmp}", "{tmp} is a folder, not a serial port", False),
    ("{tmp}/notes.txt", "{tmp}/notes.txt is a file, not a serial port", False),
    ("", "no port given: --port names the board's serial port", False),
    # a device file: only opening it tells, after the build
    ("/dev/null", "/dev/null is not a serial port: it takes no serial settings", True),
])
def test_a_port_that_is_no_serial_port_is_said_plainly_and_a_missing_one_before_the_build(
        tmp_path, port, says, built):
    # pyserial's own words were "Could not configure port: (25, 'Inappropriate ioctl for
    # device')", and a mistyped --port was found only after the build
    (tmp_path / "notes.txt").write_text("not a port")
    port, says = port.format(tmp=tmp_path), says.format(tmp=tmp_path)
    code, out, err = run_flash(str(EXAMPLES / "printer.yaml"), "--port", port,
                               "--build-dir", str(tmp_path / "build"))
    assert code == flash.EXIT_NO_PORT == 3
    assert err.startswith("tether flash: " + says), err
    assert (tmp_path / "build").exists() == built and (out == "") != built


def test_a_profile_folder_where_the_build_folder_cannot_be_made_is_an_error_not_a_traceback(
        tmp_path):
    profile = tmp_path / "printer.yaml"
    profile.write_text((EXAMPLES / "printer.yaml").read_text())
    (tmp_path / ".tether").write_text("a file where the build folder goes")
    code, out, err = run_flash(str(profile), "--port", "/dev/null")
    assert code == flash.EXIT_BAD_INPUT == 2
    assert err.startswith("tether flash: cannot make the build folder %s beside the profile ("
                          % (tmp_path / ".tether" / "build" / "printer")), err
    assert "give --build-dir DIR" in err and "Traceback" not in err


def test_a_board_left_mid_paste_by_an_interrupted_flash_takes_the_next_flash(tmp_path, v1):
    # Ctrl-C on a flash leaves the board reading a raw paste; the next flash's Ctrl-C ends it
    # (a KeyboardInterrupt, as pyexec.c's stdin reader raises) and it goes on.
    from firmware import rawrepl
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board") as board:
        repl = rawrepl.RawRepl.open(board.port, timeout=2)
        with repl:
            repl.enter()
            repl.write(b"\x05A\x01")
            assert repl.read_exact(2) == b"R\x01"
            repl.write(b"_w(b'half a chunk")          # and the host goes
        assert board.state == "paste"
        flash_ok(tmp_path / "b1", board)
        board_has(board, v1)


def test_a_port_another_program_holds_is_busy(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board") as board:
        holder = serial.Serial(board.port, 115200, exclusive=True)
        try:
            code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        finally:
            holder.close()
        assert code == flash.EXIT_PORT_BUSY == 4
        assert "is busy" in err
        assert board.bytes_in == 0


def test_a_port_a_program_holds_open_without_a_lock_is_busy_and_named(tmp_path, v1):
    # screen and minicom take no flock: the processes that have the port open are looked up.
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board") as board:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY); "
             "print('open', flush=True); sys.stdin.read()", board.port],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "open\n"
            code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        finally:
            holder.stdin.close()
            holder.wait(10)
        assert code == flash.EXIT_PORT_BUSY == 4
        assert "is busy: %s (pid %d) has it open" % (
            os.path.basename(sys.executable)[:15], holder.pid) in err
        assert board.bytes_in == 0
        # once it is closed, the same flash goes through (the board simulator's own end of the
        # pseudo-terminal does not count as a holder)
        flash_ok(tmp_path / "b1", board)


def test_a_board_that_does_not_answer(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", mute=True) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                   "--timeout", "0.3")
        assert code == flash.EXIT_NOT_ANSWERING == 5
        assert "could not enter the raw REPL" in err and "reset button" in err


def test_a_board_whose_program_ignores_ctrl_c_and_prints_without_pause(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", chatty=True) as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                   "--timeout", "0.3")
        assert code == flash.EXIT_NOT_ANSWERING
        assert "but never the raw REPL prompt" in err and "still sampling" in err


def test_a_board_that_is_not_micropython_is_refused(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board", name="circuitpython") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_NOT_MICROPYTHON == 6
        assert "runs circuitpython, not MicroPython" in err
        assert board.writes == []


@pytest.mark.parametrize("spoil, words", [
    (lambda b: (b / "manifest.json").unlink(), "cannot read the bundle's manifest"),
    (lambda b: (b / "agent" / "log.mpy").write_bytes(b"changed"), "differs from the manifest"),
    (lambda b: (b / "manifest.json").write_text('{"format": 1, "mpy": {"version": 6, "sub": 3, '
                                                '"arch": null}, "files": [{"path": "../x", '
                                                '"size": 1, "sha256": "00"}]}'),
     "expected each file as"),
])
def test_a_bad_bundle_is_refused_before_the_port_is_opened(tmp_path, v1, spoil, words):
    write_bundle(tmp_path / "b1", v1)
    spoil(tmp_path / "b1")
    with FakeBoard(tmp_path / "board") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port)
        assert code == flash.EXIT_BAD_INPUT == 2
        assert words in err and "Traceback" not in err
        assert board.bytes_in == 0


def test_progress_is_a_line_per_file_off_a_terminal_and_a_bar_on_one(tmp_path, v1):
    write_bundle(tmp_path / "b1", v1)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    with FakeBoard(tmp_path / "board") as board:
        out = io.StringIO()
        flash.flash_bundle(tmp_path / "b1", board.port, out=out, fallback_pause=0)
        lines = out.getvalue().splitlines()
        assert "  sent agent/log.mpy (%d bytes)" % len(v1["agent/log.mpy"]) in lines
        assert not any("\x1b[" in line for line in lines)
        write_bundle(tmp_path / "b2", dict(v1, **{"data.bin": b"changed"}))
        tty = Terminal()
        flash.flash_bundle(tmp_path / "b2", board.port, out=tty, fallback_pause=0)
        shown = tty.getvalue()
        assert "━" in shown and "\x1b[" in shown      # a bar, redrawn in place
        assert "  sent data.bin (7 bytes)" in shown
        assert "2 files" in shown                      # the whole copy's bar: data.bin, manifest


def make_stub_esptool(folder, exit_code=0):
    """An `esptool` (for $TETHER_ESPTOOL) that records its argv, one JSON list a line."""
    folder.mkdir()
    log = folder / "calls.jsonl"
    stub = folder / "esptool"
    stub.write_text("#!%s\nimport json, sys\nopen(%r, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                    "sys.exit(%d)\n" % (sys.executable, str(log), exit_code))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return log


def esp_image(chip_id=0, size=4096):
    """The start of an ESP32 firmware image as esptool's format has it: magic 0xE9, segments,
    flash mode, size/frequency, entry point, then the extended header with the chip id at
    bytes 12-13 (ESP32 0, ESP32-S3 9, ESP32-C3 5...)."""
    head = bytes([0xE9, 3, 2, 0x20]) + (0x400805F0).to_bytes(4, "little")
    ext = bytes([0xEE, 0, 0, 0]) + chip_id.to_bytes(2, "little") + bytes(10)
    return (head + ext).ljust(size, b"\xff")


def test_firmware_is_written_with_esptool_v5_commands_first(tmp_path, v1, monkeypatch):
    write_bundle(tmp_path / "b1", v1)
    log = make_stub_esptool(tmp_path / "bin")
    monkeypatch.setenv("TETHER_ESPTOOL", str(tmp_path / "bin" / "esptool"))
    (tmp_path / "fw.bin").write_bytes(esp_image(0))
    (tmp_path / "s3.bin").write_bytes(esp_image(9))
    with FakeBoard(tmp_path / "board") as board:
        out = flash_ok(tmp_path / "b1", board, "--firmware", str(tmp_path / "fw.bin"))
        assert "esptool write-flash --erase-all -z 0x1000" in out
        # No --chip: the image's header names it, and its offset follows
        flash_ok(tmp_path / "b1", board, "--firmware", str(tmp_path / "s3.bin"))
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert calls == [
            ["--chip", "esp32", "--port", board.port, "write-flash", "--erase-all", "-z",
             "0x1000", str(tmp_path / "fw.bin")],
            ["--chip", "esp32s3", "--port", board.port, "write-flash", "--erase-all", "-z",
             "0x0", str(tmp_path / "s3.bin")],
        ]
        board_has(board, v1)
    # The real esptool (v5, installed with tether) takes these command lines: it gets as far as
    # opening the port (none here), where a name or an option it lacks stops it at its usage.
    for call in calls:
        call[call.index("--port") + 1] = str(tmp_path / "no-port")
        real = subprocess.run([sys.executable, "-m", "esptool"] + call, capture_output=True,
                              text=True, timeout=120)
        said = real.stdout + real.stderr
        assert "Could not open %s" % (tmp_path / "no-port") in said, said
        assert "Usage:" not in said and "No such option" not in said \
            and "No such command" not in said, said


def test_the_esptool_tether_depends_on_runs_not_an_older_one_first_on_path(tmp_path,
                                                                           monkeypatch):
    # ESP-IDF's shell puts its esptool 4.x first on PATH: it refused write-flash, said as a
    # board not in its bootloader
    make_stub_esptool(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("TETHER_ESPTOOL", raising=False)
    assert flash.esptool_command() == [sys.executable, "-m", "esptool"]


def test_a_failing_esptool_stops_the_flash(tmp_path, v1, monkeypatch):
    write_bundle(tmp_path / "b1", v1)
    make_stub_esptool(tmp_path / "bin", exit_code=2)
    monkeypatch.setenv("TETHER_ESPTOOL", str(tmp_path / "bin" / "esptool"))
    (tmp_path / "fw.bin").write_bytes(esp_image(5))
    with FakeBoard(tmp_path / "board") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                   "--firmware", str(tmp_path / "fw.bin"), "--chip", "esp32c3")
        assert code == flash.EXIT_ESPTOOL == 10
        assert "esptool write-flash failed (exit 2)" in err
        assert board.bytes_in == 0


def test_flash_profile_builds_the_bundle_with_tether_build_then_copies_it(tmp_path):
    from firmware.build import read_manifest
    profile = pathlib.Path(__file__).resolve().parent.parent / "examples" / "printer.yaml"
    with FakeBoard(tmp_path / "board") as board:
        code, out, err = run_flash(str(profile), "--port", board.port,
                                   "--build-dir", str(tmp_path / "build"))
        assert (code, err) == (0, "")
        manifest = read_manifest(tmp_path / "build")
        assert "built %s into %s: %d files" % (profile, tmp_path / "build",
                                               len(manifest["files"])) in out
        for entry in manifest["files"]:
            assert board.file(entry["path"]) == (tmp_path / "build" / entry["path"]).read_bytes()
        assert board.file("manifest.json") == (tmp_path / "build" / "manifest.json").read_bytes()


def test_a_profile_that_does_not_build_is_refused_with_the_builds_lines(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("device: {id: printer-0001}\n")
    code, out, err = run_flash(str(profile), "--port", "/dev/null")
    assert code == flash.EXIT_BAD_INPUT
    assert err.startswith("tether flash: cannot build %s:\n" % profile)
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, says", [
    (["x.yaml", "--bundle", "b"], "not both"),
    ([], "give a PROFILE to build and flash, or --bundle DIR"),
    (["--bundle", "b", "--arch", "xtensawin"], "a --bundle is flashed as it was built"),
])
def test_what_to_flash_must_be_one_profile_or_one_bundle(argv, says):
    code, out, err = run_flash(*(argv + ["--port", "/dev/null"]))
    assert code == 2 and says in err


def test_firmware_to_a_busy_port_is_exit_4_before_esptool_runs(tmp_path, v1, monkeypatch):
    write_bundle(tmp_path / "b1", v1)
    log = make_stub_esptool(tmp_path / "bin")
    monkeypatch.setenv("TETHER_ESPTOOL", str(tmp_path / "bin" / "esptool"))
    (tmp_path / "fw.bin").write_bytes(esp_image(0))
    with FakeBoard(tmp_path / "board") as board:
        holder = serial.Serial(board.port, 115200, exclusive=True)
        try:
            code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                       "--firmware", str(tmp_path / "fw.bin"))
        finally:
            holder.close()
    assert code == flash.EXIT_PORT_BUSY == 4 and "is busy" in err
    assert not log.exists() or log.read_text() == ""
    code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port",
                               str(tmp_path / "ttyUSB9"), "--firmware", str(tmp_path / "fw.bin"))
    assert code == flash.EXIT_NO_PORT == 3 and "ls /dev/ttyUSB*" in err


@pytest.mark.parametrize("content, says", [
    (b"<!DOCTYPE html><html><head><title>MicroPython - Python for microcontrollers</title>",
     "is a web page, not an image (a download that went wrong?)"),
    (b"UF2\nWQ]\x9e" + bytes(500), "is a UF2 file"),
    (b"\x7fELF\x01\x01\x01" + bytes(500), "is an ELF file"),
    (b"PK\x03\x04" + bytes(500), "is a zip archive: unpack it"),
    (bytes(range(256)) * 16, "is not an ESP32 firmware image (its first byte is 0x00, an "
                             "image's is 0xe9)"),
    (b"\xe9\x03", "is 2 bytes, too short for an image"),
    # an app image: its first segment starts with esp_app_desc_t's magic word 0xABCD5432
    (esp_image(0)[:32] + b"\x32\x54\xcd\xab" + bytes(200),
     "is an application image alone (an .app-bin, for an update over the air)"),
    (esp_image(18), "is an image for a chip tether flash does not write (chip id 18"),
    (esp_image(9), "is an image for the esp32s3 (its header says so), not the esp32 --chip "
                   "names. Nothing was written: download the image for your board, or give "
                   "--chip esp32s3"),
])
def test_a_file_that_is_not_an_image_for_the_chip_is_refused_before_esptool_erases_the_board(
        tmp_path, v1, monkeypatch, content, says):
    # esptool's erase ran on whatever --firmware named: the buffer's undelivered readings went,
    # then it wrote the garbage.
    write_bundle(tmp_path / "b1", v1)
    log = make_stub_esptool(tmp_path / "bin")
    monkeypatch.setenv("TETHER_ESPTOOL", str(tmp_path / "bin" / "esptool"))
    (tmp_path / "fw.bin").write_bytes(content)
    with FakeBoard(tmp_path / "board") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                   "--firmware", str(tmp_path / "fw.bin"), "--chip", "esp32")
        assert code == flash.EXIT_BAD_INPUT == 2
        assert err.startswith("tether flash: --firmware %s " % (tmp_path / "fw.bin")), err
        assert says in err and "Nothing was written" in err
        assert not log.exists() and board.bytes_in == 0
    code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", str(tmp_path),
                               "--firmware", str(tmp_path))
    assert code == 2 and "--firmware %s is a folder: give the image file (.bin) in it" % tmp_path \
        in err


def test_an_image_for_another_chip_than_the_profiles_is_refused_before_esptool_runs(
        tmp_path, v1, monkeypatch):
    # A C3 profile with the classic ESP32's image: esptool would have found no ESP32 on the
    # port only after the bundle was built, or written the wrong image to a board that took it.
    write_bundle(tmp_path / "b1", v1, chip="esp32c3")
    log = make_stub_esptool(tmp_path / "bin")
    monkeypatch.setenv("TETHER_ESPTOOL", str(tmp_path / "bin" / "esptool"))
    (tmp_path / "fw.bin").write_bytes(esp_image(0))
    (tmp_path / "c3.bin").write_bytes(esp_image(5))
    with FakeBoard(tmp_path / "board", machine="ESP32C3 module with ESP32C3") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", board.port,
                                   "--firmware", str(tmp_path / "fw.bin"))
        assert code == flash.EXIT_BAD_INPUT
        assert err == ("tether flash: --firmware %s is an image for esp32, and the profile's chip "
                       "is esp32c3: nothing was written (download the image for your board, or "
                       "set the profile's chip)\n" % (tmp_path / "fw.bin"))
        assert not log.exists() and board.bytes_in == 0
        out = flash_ok(tmp_path / "b1", board, "--firmware", str(tmp_path / "c3.bin"))
        assert "esptool write-flash --erase-all -z 0x0" in out


C3_PROFILE = """\
device: {id: "tank-{uid}"}
platform: esp32
chip: esp32c3
wifi: {ssid: lab, password: secret123}
buses: [{id: i2c0, type: i2c, sda: 8, scl: 9}]
sensors:
  - {name: air, driver: sht3x, bus: i2c0}
uplink: {broker: "mqtt://10.0.0.2"}
"""


def test_a_bundle_for_one_chip_is_refused_by_a_board_of_another(tmp_path):
    # A C3's I2C on GPIO8/9 are a classic ESP32's flash pins: it copied everything, exit 0.
    from firmware.build import summary
    profile = tmp_path / "tank.yaml"
    profile.write_text(C3_PROFILE)
    with FakeBoard(tmp_path / "board") as board:        # says "... module with ESP32"
        code, out, err = run_flash(str(profile), "--port", board.port,
                                   "--build-dir", str(tmp_path / "build"))
        assert code == flash.EXIT_INCOMPATIBLE, err
        assert ("it was built for chip: esp32c3, and this board is an esp32 ('Fake ESP32 module "
                "with ESP32'): set the profile's chip" in err), err
        assert board.writes == []
    manifest = json.loads((tmp_path / "build" / "manifest.json").read_text())
    assert manifest["chip"] == "esp32c3"
    assert " for esp32c3, " in summary(tmp_path / "build", manifest)
    with FakeBoard(tmp_path / "c3", machine="ESP32C3 module with ESP32C3") as board:
        code, out, err = run_flash("--bundle", str(tmp_path / "build"), "--port", board.port)
        assert (code, err) == (0, "")
    # native code for another CPU is refused at the build
    code, out, err = run_flash(str(profile), "--port", "/dev/null", "--arch", "xtensawin",
                               "--build-dir", str(tmp_path / "build2"))
    assert code == 2 and "--arch xtensawin is not the esp32c3's (rv32imc is)" in err, err


def test_the_chip_a_board_names_is_read_from_its_machine_string():
    assert flash.board_chip("Generic ESP32 module with ESP32") == "esp32"
    assert flash.board_chip("ESP32C3 module with ESP32C3") == "esp32c3"
    assert flash.board_chip("Generic ESP32S3 module with Octal-SPIRAM with ESP32S3") == "esp32s3"
    assert flash.board_chip("linux [GCC 12.2.0] version") is None
    # part numbers, as some boards name them
    assert flash.board_chip("LOLIN_C3_MINI with ESP32-C3FH4") == "esp32c3"
    assert flash.board_chip("LOLIN_S2_MINI with ESP32-S2FN4R2") == "esp32s2"
    assert flash.board_chip("TinyPICO with ESP32-PICO-D4") == "esp32"
    assert flash.board_chip("ESP32H2 module with ESP32-H2") is None   # not one flash writes
    assert flash.board_chip("Raspberry Pi Pico with RP2040") is None


def test_firmware_options_are_checked_before_a_profile_is_built(tmp_path):
    profile = pathlib.Path(__file__).resolve().parent.parent / "examples" / "printer.yaml"
    code, out, err = run_flash(str(profile), "--port", str(tmp_path / "ttyUSB9"),
                               "--build-dir", str(tmp_path / "build"),
                               "--firmware", str(tmp_path / "missing.bin"))
    assert code == flash.EXIT_BAD_INPUT == 2 and "missing.bin: no such file" in err
    code, out, err = run_flash(str(profile), "--port", str(tmp_path / "ttyUSB9"),
                               "--build-dir", str(tmp_path / "build"), "--chip", "esp32c3")
    assert code == 2 and "--chip says which chip --firmware writes: give --firmware too" in err
    assert not (tmp_path / "build").exists()


def test_flash_with_logs_follows_the_board_on_the_same_port_from_its_first_line(tmp_path, v1):
    # `tether logs` started after a flash missed the boot's first lines (esphome run shows
    # them): --logs keeps the port the flash had and shows what the board said after the reset.
    write_bundle(tmp_path / "b1", v1)
    with FakeBoard(tmp_path / "board") as board:
        out, err = io.StringIO(), io.StringIO()
        parser, _ = cli.build_parser()
        args = parser.parse_args(["flash", "--bundle", str(tmp_path / "b1"), "--port",
                                  board.port, "--logs"])
        code = flash.main(args, out=out, err=err, stop=lambda: ">>>" in out.getvalue())
        assert code == 0, err.getvalue()
        text = out.getvalue()
        assert "flashed 7 of 7 files" in text
        assert "--- %s at 115200 baud: Ctrl-C to quit ---" % board.port in err.getvalue()
        after = text.split("flashed 7 of 7 files")[1]
        assert 'Type "help()" for more information.' in after
        # the reboot's own line, which the flash read to know the board restarted, is shown
        # (not the prompt before it)
        assert "soft reboot" in after.split('Type "help()"')[0] and ">>>" not in \
            after.split("soft reboot")[0]
    code, out, err = run_flash("--bundle", str(tmp_path / "b1"), "--port", "/dev/null", "--logs",
                               "--no-reset")
    assert code == 2 and "not with --no-reset" in err


def _frozen_tree(tmp_path, drop=(), format_=None):
    """A folder standing for Tether frozen into a board's firmware: the repository's board
    packages, less the modules in drop; FORMAT changed when format_ is given."""
    import shutil
    root = pathlib.Path(__file__).resolve().parent.parent
    tree = tmp_path / "frozen"
    for package in ("agent", "hal", "firmware"):
        shutil.copytree(root / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "profile"))
    for rel in drop:
        (tree / rel).unlink()
    if format_ is not None:
        path = tree / "agent" / "profile.py"
        text = path.read_text()
        assert "\nFORMAT = 1 " in text
        path.write_text(text.replace("\nFORMAT = 1 ", "\nFORMAT = %d " % format_))
    return tree


def test_a_frozen_bundle_replaces_the_modules_on_a_board_whose_firmware_holds_tether(tmp_path):
    # A board without PSRAM runs the printer only frozen (docs/esp32.md, Heap), and its
    # filesystem's .mpy files come first on sys.path: tether flash had no way to send only the
    # profile, nor to take away the modules of an earlier flash.
    profile = EXAMPLES / "reference-printer.yaml"                  # platform: sim, unix port
    tree = _frozen_tree(tmp_path)
    with FakeBoard(tmp_path / "board", platform="linux", frozen=tree) as board:
        code, out, err = run_flash(str(profile), "--port", board.port,
                                   "--build-dir", str(tmp_path / "full"))
        assert code == 0, err
        assert "agent/runtime.mpy" in board.files()
        code, out, err = run_flash(str(profile), "--port", board.port, "--frozen",
                                   "--build-dir", str(tmp_path / "frozen-build"))
        assert code == 0, err
        assert board.files() == ["main.py", "manifest.json", "profile.json", "secrets.json"]
        assert "removed agent/runtime.mpy (not in this bundle)" in out
        manifest = json.loads(board.file("manifest.json"))
        assert manifest["mpy"] is None and "hal.drivers.ina219" in manifest["frozen"]["needs"]


@pytest.mark.parametrize("frozen, words", [
    (None, "has no Tether frozen in: build MicroPython with firmware/manifest.py"),
    ("drop", "lacks hal.drivers.ina219, hal.sim.ina219, which this profile uses"),
    ("format", "reads profiles of format 2, this one is format 1"),
])
def test_a_frozen_bundle_is_refused_by_firmware_that_cannot_run_it(tmp_path, frozen, words):
    tree = None
    if frozen == "drop":
        tree = _frozen_tree(tmp_path, drop=("hal/drivers/ina219.py", "hal/sim/ina219.py"))
    elif frozen == "format":
        tree = _frozen_tree(tmp_path, format_=2)
    with FakeBoard(tmp_path / "board", platform="linux", frozen=tree) as board:
        code, out, err = run_flash(str(EXAMPLES / "reference-printer.yaml"), "--port",
                                   board.port, "--frozen", "--build-dir", str(tmp_path / "b"))
        assert code == flash.EXIT_INCOMPATIBLE, err
        assert words in err and "Nothing was written" in err, err
        assert board.writes == []


def test_build_frozen_writes_the_profile_only_and_names_what_the_firmware_must_hold(tmp_path):
    from firmware import build
    manifest = build.build(str(EXAMPLES / "printer.yaml"), tmp_path / "b", frozen=True)
    assert sorted(f["path"] for f in manifest["files"]) == ["main.py", "profile.json",
                                                            "secrets.json"]
    assert manifest["frozen"] == {"needs": ["agent.insights.consumable", "hal.drivers.ina219",
                                            "hal.drivers.level_probe", "hal.esp32"]}
    assert manifest["mpy"] is None and manifest["heap"] is None
    with pytest.raises(build.BuildError, match="a --frozen bundle has none"):
        build.build(str(EXAMPLES / "printer.yaml"), tmp_path / "c", arch="xtensawin",
                    frozen=True)


def test_a_bundle_whose_modules_would_not_fit_the_boards_heap_is_warned_of(tmp_path, v1):
    # An ESP32 without PSRAM took the printer's bundle and stopped at every boot; the flash
    # knew the heap the modules take and could ask the board what it has.
    from firmware.flash import heap_problem
    with FakeBoard(tmp_path / "board") as board:
        for heap, says in ((None, None), (1000, None),
                           (1 << 30, "warning: the bundle's modules alone take about 1048576 "
                                     "KiB of heap here, and the board has ")):
            manifest = write_bundle(tmp_path / "b1", v1)
            manifest["heap"] = heap
            (tmp_path / "b1" / "manifest.json").write_text(json.dumps(manifest))
            out = flash_ok(tmp_path / "b1", board)
            warned = [line for line in out.splitlines() if line.startswith("warning:")]
            assert warned == ([] if says is None else [warned[0]]), out
            if says:
                assert warned[0].startswith(says) and "it will stop at boot" in warned[0]
    # At an ESP32's word size, the 64-bit figure x 0.72; and the data on top of the modules.
    assert heap_problem(150000, (100000, 32)).startswith(
        "the bundle's modules alone take about 105 KiB of heap here, and the board has 97 KiB")
    assert heap_problem(150000, (120000, 32)).startswith(
        "the bundle's modules take about 105 KiB of the board's 117 KiB of free heap, and the "
        "agent's data needs some 40% more: it may run out of heap")
    assert heap_problem(150000, (400000, 32)) is None
    assert heap_problem(150000, None) is None and heap_problem(None, (1, 32)) is None
