"""`tether run`: the agent as a Raspberry Pi runs it (here on virtual chips), stopped by SIGTERM,
and started again on the same buffer; what it says about its broker while it runs."""
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from simulator.lab.mosquitto import BlackHole, free_port
from tests.run_process import Run, until, watch

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROFILE = """\
device: {id: pi-1}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
sensors:
  - {name: power, driver: ina219, bus: i2c0, interval: 200ms}
batch: {max_readings: 10, max_age: 1min}
uplink: {broker: "mqtt://127.0.0.1:%d", backoff: {min: 100ms, max: 1s}%s}
"""
def test_run_delivers_readings_and_stops_cleanly_on_sigterm(tmp_path, mosquitto):
    watcher, got = watch(mosquitto.port, "tether/v1/pi-1/#")
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    store = tmp_path / "buffer"
    def batches(seen):
        return [p for t, p in seen if t == "tether/v1/pi-1/up/batch"]

    def status(seen):
        return [p for t, p in seen if t == "tether/v1/pi-1/status"]

    for round_ in (1, 2):
        run = Run(str(profile), "--store", str(store))
        assert run.wait_for("pi-1:").startswith("pi-1: 1 sensor, buffer at %s" % store)
        run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
        before = len(batches(got))
        until(got, lambda seen: len(batches(seen)) >= before + 2, "two batches of the run")
        code, rest = run.stop()
        assert code == 0
        assert rest.startswith("stopped: 0 batches waiting for the broker, 0 readings dropped")
        until(got, lambda seen: len(status(seen)) == 2 * round_, "the run's offline status")
    watcher.loop_stop()
    status = status(got)
    batches = batches(got)
    assert len(batches) >= 4  # 10 readings a batch, 5 a second; a flush at stop
    assert status == [b"online", b"offline", b"online", b"offline"]
    from agent import batch_decode
    seqs = [batch_decode.read_envelope(p).seq for p in batches]
    boots = [batch_decode.read_envelope(p).boot for p in batches]
    assert seqs == list(range(len(seqs))) and set(boots) == {1, 2}


def test_a_broker_that_goes_away_is_reported_as_a_disconnect_and_the_run_reconnects(tmp_path,
                                                                                  mosquitto):
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--quiet")
    where = "127.0.0.1:%d" % mosquitto.port
    run.wait_for("connected to " + where)
    mosquitto.stop()
    line = run.wait_for("disconnected from " + where)
    assert line.rstrip().endswith("; reconnecting"), line
    # It says what it then does: retries that fail while the broker is down, and a connection
    # once it is back.
    run.wait_for("cannot connect to " + where, "retrying")
    mosquitto.start()
    run.wait_for("connected to " + where)
    code, _ = run.stop()
    assert code == 0
    assert sum("disconnected from" in line for line in run.seen) == 1, run.seen


def test_refused_login_is_reported_at_once_and_sampling_goes_on(tmp_path, mosquitto_factory):
    broker = mosquitto_factory(users=True)
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (broker.port, ", username: admin, password: wrong"))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--status-every", "1s")
    line = run.wait_for("cannot connect to 127.0.0.1:%d" % broker.port)
    assert "the broker refused the login" in line
    assert "sampling goes on" in line
    # Sampling goes on: the status lines count readings that wait in the buffer.
    while True:
        status = run.wait_for("status: not connected")
        if int(status.split("; ")[1].split()[0]) >= 20:
            break
    code, rest = run.stop()
    assert code == 0
    assert not rest.startswith("stopped: 0 batches")
    # Said once, not at each retry (the status lines repeat it).
    assert sum("cannot connect" in line for line in run.seen) == 1
    assert "refused the login" in run.seen[-2]


def test_unreachable_broker_is_reported_at_once(tmp_path):
    profile = tmp_path / "pi.yaml"
    port = free_port()  # nothing listens there
    profile.write_text(PROFILE % (port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--quiet")
    line = run.wait_for("cannot connect")
    assert "connection refused: no broker listening on 127.0.0.1:%d" % port in line
    code, rest = run.stop()
    assert code == 0
    assert not any("status:" in line for line in run.seen)


def test_a_sensor_that_fails_is_reported_and_the_broker_still_gets_the_others(tmp_path,
                                                                             mosquitto):
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE.replace(
        "sensors:\n", "sensors:\n  - {name: volts, driver: ads1115, bus: i2c0, interval: 200ms}\n")
        % (mosquitto.port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--fault", "power=nack",
              "--status-every", "1s")
    # with the driver's words, not its kind alone
    line = run.wait_for("sensor power fails (nack: INA219 at i2c0:0x40 did not acknowledge); "
                        "it is tried again")
    assert line.rstrip().endswith("with backoff, the other sensors go on"), line
    while True:  # the other sensor's readings keep coming
        status = run.wait_for("status: connected")
        if int(status.split("; ")[1].split()[0]) >= 10:
            break
    assert " sensor error" in status and not status.endswith(" 0 sensor errors\n")
    code, _ = run.stop()
    assert code == 0
    assert not any("volts fails" in line for line in run.seen)


def test_under_systemd_each_line_carries_its_priority_for_the_journal(tmp_path, mosquitto):
    # journalctl -p warning showed nothing: every line was filed at the unit's default (info).
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--quiet", "--broker",
              "mqtt://127.0.0.1:%d" % mosquitto.port, "--fault", "power=nack", journal=True)
    assert run.wait_for("pi-1: 1 sensor").startswith("<6>pi-1: 1 sensor, buffer at ")
    assert run.wait_for("connected to").startswith("<6>")
    failing = [line for line in run.seen if "sensor power fails" in line]  # before or after
    assert (failing[0] if failing else run.wait_for("sensor power fails")).startswith("<4>")
    mosquitto.stop()
    assert run.wait_for("disconnected from").startswith("<4>")
    assert run.wait_for("cannot connect to").startswith("<4>")
    code, rest = run.stop()
    assert code == 0 and rest.startswith("<5>stopped: ")
    assert all(line[0] == "<" and line[2] == ">" for line in run.seen), run.seen
    # The same run in a terminal (or piped on from one) has no prefixes.
    plain = Run(str(profile), "--store", str(tmp_path / "buffer2"), "--quiet")
    assert plain.wait_for("cannot connect to").startswith("20")
    plain.stop()


def test_under_systemd_a_run_that_cannot_start_says_why_as_an_error(tmp_path):
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE.replace("pi-1", "\"pi-{uid}\"") % (free_port(), ""))
    run = Run(str(profile), journal=True)
    code, rest = run.end()
    assert code == 2 and rest == ("<3>tether run: the device id 'pi-{uid}' is a template: give "
                                  "--device ID\n")


def test_a_broker_that_never_answers_is_reported_when_the_connect_times_out(tmp_path):
    with BlackHole() as hole:
        profile = tmp_path / "pi.yaml"
        profile.write_text(PROFILE % (hole.port, ""))
        run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--quiet")
        line = run.wait_for("cannot connect")
        assert "cannot reach 127.0.0.1:%d: no CONNACK within" % hole.port in line
        code, _ = run.stop()
    assert code == 0


def test_broker_option_runs_an_example_against_a_local_broker_without_tls(tmp_path, mosquitto):
    watcher, got = watch(mosquitto.port, "tether/v1/p1/#")
    run = Run("examples/printer.yaml", "--platform", "sim", "--device", "p1",
              "--store", str(tmp_path / "buffer"), "--broker", "mqtt://127.0.0.1:%d"
              % mosquitto.port)
    first = run.wait_for("p1:")
    assert "broker 127.0.0.1:%d" % mosquitto.port in first and "TLS" not in first
    run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
    code, rest = run.stop()  # the stop flushes what is in RAM as a batch
    watcher.loop_stop()
    assert code == 0 and rest.startswith("stopped: 0 batches waiting")
    topics = {t for t, _ in got}
    assert {"tether/v1/p1/up/batch", "tether/v1/p1/up/schema"} <= topics


def test_broker_option_refuses_a_url_it_cannot_use(tmp_path):
    for url in ("http://127.0.0.1", "mqtt://user:pw@host", "mqtt://host:99999", "127.0.0.1"):
        proc = subprocess.run([sys.executable, "-m", "firmware.cli", "run", "examples/printer.yaml",
                               "--platform", "sim", "--device", "p1", "--store", str(tmp_path),
                               "--broker", url], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith("tether run: --broker: expected a URL like mqtt://")
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_broker_option_without_tls_does_not_send_the_profiles_password(tmp_path,
                                                                      mosquitto_factory):
    # The broker knows the profile's login: it refuses the run only if the login is not sent.
    broker = mosquitto_factory(users=True)
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (1, ", username: admin, password: admin-secret"))
    url = "mqtt://127.0.0.1:%d" % broker.port
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--broker", url)
    note = run.wait_for("tether run: --broker")
    assert note == ("tether run: --broker %s is not TLS: the profile's user name and password "
                    "are not sent (mqtts:// sends them)\n" % url)
    line = run.wait_for("cannot connect to 127.0.0.1:%d" % broker.port)
    assert "the broker refused the login" in line
    code, _ = run.stop()
    assert code == 0


def test_the_status_line_counts_every_acknowledged_message_not_only_batches(tmp_path, mosquitto):
    # The uplink's count holds schema, health and event PUBACKs too, not batches alone.
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--status-every", "1s")
    while True:
        status = run.wait_for("status: connected")
        assert " acknowledged (batches and events, resends included), " in status and " waiting, " in status, \
            status
        if int(status.split("; ")[1].split(", ")[1].split()[0]) >= 1:
            break
    code, _ = run.stop()
    assert code == 0


def test_a_store_that_is_a_file_is_said_so(tmp_path):
    # makedirs said only "File exists"
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(profile), "--platform",
                           "sim", "--store", str(profile)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("tether run: %s is a file, not a folder: the buffer is a folder of its "
                           "own\n" % profile)


def test_a_store_that_fails_stops_the_run_with_the_reason_and_exit_1(tmp_path):
    import shutil
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))  # no broker: nothing but sampling goes on
    store = tmp_path / "buffer"
    run = Run(str(profile), "--store", str(store))
    run.wait_for("pi-1:")
    shutil.rmtree(store)  # the next batch (10 readings at 200ms) has nowhere to go
    try:
        code, err = run.end()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert code == 1, err
    last = err.splitlines()[-1]  # after the lines about the broker it cannot reach
    assert last.startswith("tether run: the agent stopped: %s" % store), err
    assert "No such file or directory" in last and "Traceback" not in err


def run_on_a_full_disk(tmp_path, monkeypatch, names_its_file):
    """(exit code, what tether run said) with every store write failing ENOSPC, the error
    naming the file it was writing or not."""
    import errno
    import io
    import agent.store
    from firmware.cli import build_parser
    from firmware.run import main

    def full(self, name, data):
        if names_its_file:
            raise OSError(errno.ENOSPC, "No space left on device", self._p(name + ".tmp"))
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(agent.store.FileStore, "replace", full)
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    out = io.StringIO()
    args = build_parser()[0].parse_args(["run", str(profile), "--store", str(tmp_path / "b")])
    return main(args, out), out.getvalue()


def test_a_full_disk_at_start_exits_1_which_the_service_restarts_not_2(tmp_path, monkeypatch):
    # exit 2 is for what would fail the same way again (the unit's RestartPreventExitStatus):
    # a Pi whose disk was full for a minute was left stopped for good.
    code, said = run_on_a_full_disk(tmp_path, monkeypatch, True)
    assert code == 1
    # (the first file a new buffer writes: its log's id)
    assert said == "tether run: %s: No space left on device\n" % (tmp_path / "b" / "id.tmp")


def test_a_full_disk_that_names_no_file_is_said_with_the_buffers_folder(tmp_path, monkeypatch):
    # "tether run: No space left on device" said neither where nor which disk.
    code, said = run_on_a_full_disk(tmp_path, monkeypatch, False)
    assert code == 1
    assert said == "tether run: the buffer at %s: No space left on device\n" % (tmp_path / "b")


def test_a_boards_profile_on_virtual_chips_keeps_its_buffer_in_the_working_folder(tmp_path):
    # docs/uplink.md's own example wrote the board's /buffer at the root of the laptop (as
    # root; "Permission denied" otherwise)
    run = Run(str(ROOT / "examples" / "printer.yaml"), "--platform", "sim", "--device", "p1",
              "--broker", "mqtt://127.0.0.1:%d" % free_port(), cwd=str(tmp_path))
    said = run.wait_for("p1:")
    run.wait_for("cannot connect")
    code, _ = run.stop()
    assert said.startswith("p1: 5 sensors, buffer at tether-run/p1"), said
    assert code == 0 and (tmp_path / "tether-run" / "p1").is_dir()


def test_a_profile_compiled_by_an_older_tether_runs(tmp_path):
    # A service's /etc/tether/DEVICE.json from before uplink.ack_timeout (or window, ...):
    # every start stopped with a KeyError once Tether was upgraded, and the service restarted it
    # forever. The batch, buffer and uplink keys it lacks take their defaults.
    import json
    from firmware.profile.compile import compile as compile_profile
    from firmware.profile.compiled import fill_defaults
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    compiled = compile_profile(str(profile))[0]
    added = (("uplink", "ack_timeout_ms", 30000), ("uplink", "window", 4),
             ("uplink", "health_ms", 300000), ("uplink", "backoff_max_ms", 300000),
             ("batch", "max_readings", 420), ("buffer", "flush_ms", 60000))
    older = json.loads(json.dumps(compiled))
    for section, key, _ in added:
        del older[section][key]
    fill_defaults(older)
    assert [older[section][key] for section, key, _ in added] == [v for _, _, v in added]
    for section, key, _ in added[:2]:
        del compiled[section][key]
    del compiled["sensors"][0]["address"]             # the INA219's, 0x40 by default
    del compiled["sensors"][0]["calibration"]
    old = tmp_path / "pi.json"
    old.write_text(json.dumps(compiled))
    run = Run(str(old), "--store", str(tmp_path / "buffer"))
    run.wait_for("cannot connect")      # running: its signal handlers are set by then
    code, err = run.stop()
    assert code == 0 and "Traceback" not in "".join(run.seen), run.seen


@pytest.mark.parametrize("example", ["printer", "pill-bottle", "washer", "fridge"])
def test_a_compiled_sensor_lacking_its_defaulted_keys_gets_their_defaults(example):
    # A newer driver or insight reading a key an older `tether compile` did not write stopped
    # the service at every start. Each sensor's chip keys, calibration and insight settings
    # that have a default, taken out, are back with it.
    import copy
    import json
    from firmware.profile.compile import compile as compile_profile
    from firmware.profile.compiled import fill_defaults, problems
    from firmware.profile.chips import DRIVERS
    from firmware.profile.insights import INSIGHTS
    from firmware.profile.rules import EMPTY, REQUIRED
    older = json.loads(json.dumps(compile_profile("examples/%s.yaml" % example)[0]))
    expected = copy.deepcopy(older)
    taken = 0
    for s, want in zip(older["sensors"], expected["sensors"]):
        ins = s.get("insight")
        for fields, values, wanted in (
                (DRIVERS[s["driver"]]["fields"], s, want),
                (DRIVERS[s["driver"]]["calibration"], s["calibration"], want["calibration"]),
                (INSIGHTS[ins["type"]]["fields"] if ins else [], ins, want.get("insight"))):
            for _key, key, _rule, default in fields:
                if default is not None and default is not REQUIRED and default is not EMPTY \
                        and key in values:
                    del values[key]
                    wanted[key] = default
                    taken += 1
    assert taken >= len(older["sensors"])
    fill_defaults(older)
    assert older == expected
    assert problems(older) == []


def test_a_tls_connection_reset_asks_whether_the_port_is_a_tls_listener():
    # mqtts:// to a plain MQTT port said only "Connection reset by peer"
    import io
    import ssl
    from firmware.run import Reporter
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    wrong.reason = "WRONG_VERSION_NUMBER"     # as the ssl module's own have it
    for tls, exc, hinted in ((True, ConnectionResetError(104, "Connection reset by peer"), True),
                             (True, wrong, True),
                             (False, ConnectionResetError(104, "Connection reset by peer"), False),
                             (True, ConnectionRefusedError(111, "refused"), False)):
        out = io.StringIO()
        Reporter(out, "broker", 1883, tls).refused(exc)
        assert ("is port 1883 a TLS listener? mqtts:// speaks TLS" in out.getvalue()) is hinted, \
            out.getvalue()


def test_connections_lost_right_after_they_are_made_point_at_a_second_client_with_the_id():
    # Two runs of one device (a terminal run left going beside the service) throw each other
    # off the broker every second, and the lines said only "disconnected".
    import io
    import types
    from firmware.run import QUICK_LOSSES, Reporter
    out = io.StringIO()
    r = Reporter(out, "broker", 1883, False)
    client = types.SimpleNamespace(client_id="washer-7")
    for _ in range(QUICK_LOSSES + 2):
        r.connected(client)
        r.lost(ConnectionResetError(104, "Connection reset by peer"))
    hints = [line for line in out.getvalue().splitlines() if "another client" in line]
    assert len(hints) == 1 and "client id washer-7" in hints[0], out.getvalue()
    r.connected(client)
    r.connected_at -= 60                  # a connection that held a minute: not that
    r.lost(None)
    assert r.quick_losses == 0


def test_a_compiled_profile_missing_a_key_is_exit_2_with_one_line_not_a_traceback(tmp_path):
    # An empty uplink (edited by hand): KeyError 'host' and exit 1 at every start, which the
    # service restarted every 10 s for good.
    import io
    import json
    from firmware.cli import build_parser
    from firmware.profile.compile import compile as compile_profile
    from firmware.run import main
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    # (keys with a default take it: a profile compiled by an older Tether)
    for section, key in (("uplink", "host"), ("uplink", "tls"), ("uplink", "port")):
        compiled = compile_profile(str(profile))[0]
        del compiled[section][key]
        bad = tmp_path / ("bad-%s.json" % key)
        bad.write_text(json.dumps(compiled))
        err = io.StringIO()
        args = build_parser()[0].parse_args(["run", str(bad), "--platform", "sim", "--store",
                                             str(tmp_path / ("b-" + key))])
        assert main(args, err) == 2, err.getvalue()
        assert err.getvalue() == ("tether run: %s: not a compiled profile as this Tether's "
                                  "`tether compile` writes it (KeyError: '%s'): compile it "
                                  "again (or tether install-service again)\n" % (bad, key))


def test_a_compiled_profile_with_values_its_yaml_could_not_have_is_refused_at_the_key(tmp_path):
    # Edited by hand: an interval of 0 flooded the broker with 40,000 readings a second, a
    # resolution of 0 and a text interval stopped the agent with exit 1 (restarted for ever
    # under systemd), a negative batch size said only "negative count", format 99 ran.
    import io
    import json
    from firmware.cli import build_parser
    from firmware.profile.compile import compile as compile_profile
    from firmware.run import main
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    cases = [
        (lambda p: p["sensors"][0].update(interval_ms=0),
         "sensors[0].interval_ms: expected a whole number from 100 to 86400000, got 0"),
        (lambda p: p["sensors"][0].update(interval_ms="10s"),
         'sensors[0].interval_ms: expected a whole number from 100 to 86400000, got "10s"'),
        (lambda p: p["sensors"][0].update(resolution=[0, 0]),
         "sensors[0].resolution: expected [mantissa from 1 to 10^19, exponent] of a size from "
         "1e-30 to 1e30, got [0, 0]"),
        # "int too large to convert to float" at the first reading
        (lambda p: p["sensors"][0].update(resolution=[1, -400]),
         "sensors[0].resolution: expected [mantissa from 1 to 10^19, exponent] of a size from "
         "1e-30 to 1e30, got [1, -400]"),
        (lambda p: p.update(platform="esp32", chip=["esp32c3"]),     # the checker's TypeError
         'chip: expected one of esp32, esp32s2, esp32s3, esp32c3, esp32c6, got ["esp32c3"]'),
        # every reading dropped, and a typo taken in silence
        (lambda p: p["sensors"][0].update(filters={"min": 50, "max": 10}),
         "sensors[0].filters: expected min below max, got min 50 and max 10"),
        (lambda p: p["sensors"][0].update(filters={"mdian": 5}),
         'sensors[0].filters: unknown key "mdian" (known: median, deadband, min, max)'),
        (lambda p: p["device"].update(id="pi/#1"),
         "device.id: expected an id of up to 64 letters, digits, '-', '_' and '.' that starts "
         "with a letter or a digit, optionally with '{uid}' (like 'printer-{uid}'), got \"pi/#1\""),
        (lambda p: p["batch"].update(max_readings=-5),
         "batch.max_readings: expected a whole number from 1 to 10000, got -5"),
        (lambda p: p["uplink"].update(encoding="json"),
         'uplink.encoding: expected one of "compact", "senml", got "json"'),
        (lambda p: p["uplink"].update(deflate=1),
         "uplink.deflate: expected true or false, got 1"),
        (lambda p: p.update(sensors=[]), "sensors: expected 1 to 256 sensors, got 0"),
        (lambda p: p.update(v=99), "v: expected 1 (the compiled format of this Tether), got 99"),
        # an `above` of "x" stopped the agent at its first reading; a list for a driver was
        # the checker's own TypeError
        (lambda p: p["sensors"][0].update(thresholds=[{"event": "hot", "above": "x",
                                                       "hysteresis": 0}]),
         'sensors[0].thresholds[0]: expected {event, below or above: a number, hysteresis: 0 or '
         'more, alarm: true or left out}, got {"event": "hot", "above": "x", "hyste...'),
        (lambda p: p["sensors"][0].update(thresholds=[{"event": "hot", "above": 1,
                                                       "hysteresis": 0, "alarm": "yes"}]),
         'sensors[0].thresholds[0]: expected {event, below or above: a number, hysteresis: 0 or '
         'more, alarm: true or left out}, got {"event": "hot", "above": 1, "hystere...'),
        (lambda p: p["sensors"][0].update(driver=["ina219"]),
         'sensors[0]: expected a sensor with a driver (ina219, pzem004t, hx711, ads1115, '
         'level_probe, sht3x), got {"name": "power", "driver": ["ina219"...'),
    ]
    for i, (edit, says) in enumerate(cases):
        compiled = compile_profile(str(profile))[0]
        edit(compiled)
        bad = tmp_path / ("bad-%d.json" % i)
        bad.write_text(json.dumps(compiled))
        err = io.StringIO()
        args = build_parser()[0].parse_args(["run", str(bad), "--platform", "sim", "--store",
                                             str(tmp_path / ("b-%d" % i))])
        assert main(args, err) == 2, err.getvalue()
        assert err.getvalue() == "%s: %s (compile it again, or tether install-service again)\n" % (
            bad, says)


def test_a_resolution_at_the_small_end_of_what_a_profile_takes_passes_the_compiled_check():
    # 1.5e-30 compiles to [15, -31]: refused by an exponent bound, and compiling again gave
    # the same file
    from firmware.profile.compiled import problems
    from firmware.profile.compile import compile as compile_profile
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "r.yaml")
        with open(path, "w") as f:
            f.write(PROFILE.replace("interval: 200ms", "interval: 200ms, resolution: 1.5e-30") % (
                1883, ""))
        compiled, errors = compile_profile(path)
    assert errors == [] and compiled["sensors"][0]["resolution"] == [15, -31]
    assert problems(compiled) == []


def test_every_example_compiles_to_a_profile_its_own_check_takes():
    import glob
    from firmware.profile.compile import compile as compile_profile
    from firmware.profile.compiled import problems
    examples = [f for f in glob.glob(str(ROOT / "examples" / "*.yaml"))
                if not f.endswith("secrets.yaml")]
    examples.append(str(ROOT / "tests" / "data" / "profiles" / "all-drivers.yaml"))
    assert len(examples) > 5
    for path in examples:
        compiled, errors = compile_profile(path)
        assert errors == [] and problems(compiled) == [], path


def test_a_compiled_profile_that_cannot_be_read_is_refused_with_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    cases = [
        (tmp_path / "missing.json", None, "missing.json: cannot read: No such file or directory"),
        (bad, "{not json", "bad.json: not a compiled profile: not JSON (Expecting property name "
                           "enclosed in double quotes: line 1 column 2 (char 1))"),
        (bad, "[1, 2]", "bad.json: not a compiled profile as `tether compile` writes it: no "
                        "'device', 'platform', 'buses', 'sensors', 'buffer', 'batch', 'uplink'"),
        (bad, '{"device": {}, "platform": "sim", "buses": [], "sensors": [], "buffer": {}, '
              '"batch": {}, "uplink": []}',
         "bad.json: not a compiled profile as `tether compile` writes it: no 'uplink'"),
        (bad, '{"device": {}, "platform": "sim", "buses": [], "sensors": [], "buffer": {}, '
              '"batch": {}, "uplink": {}}',
         "bad.json: not a compiled profile as `tether compile` writes it: no device id"),
    ]
    for path, text, message in cases:
        if text is not None:
            path.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(path)],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr == "%s/%s\n" % (tmp_path, message), proc.stderr


def test_gpiochip_must_name_a_gpio_chip(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "run", "examples/washer.yaml",
                           "--gpiochip", "/dev/i2c-1"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.endswith("argument --gpiochip: expected a GPIO chip like /dev/gpiochip0, "
                                "got '/dev/i2c-1'\n")


def test_a_second_run_on_one_buffer_is_refused_while_the_first_holds_it(tmp_path, mosquitto):
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    store = tmp_path / "buffer"
    first = Run(str(profile), "--store", str(store))
    try:
        first.wait_for("connected to")      # its signal handlers are in place
        second = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(profile),
                                 "--store", str(store)], capture_output=True, text=True,
                                cwd=ROOT, timeout=60)
        assert second.returncode == 2
        assert second.stderr == (
            "tether run: the buffer in %s is in use by another tether run (pid %d, device "
            "pi-1): give this one a folder of its own with --store DIR\n" % (store, first.proc.pid))
    finally:
        code, _ = first.stop()
    assert code == 0
    again = Run(str(profile), "--store", str(store))   # free again once the first stopped
    again.wait_for("connected to")
    assert again.stop()[0] == 0


def test_a_buffer_filled_as_one_device_is_not_sent_as_another(tmp_path, mosquitto):
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE.replace("{id: pi-1}", "{id: 'pi-{uid}'}") % (mosquitto.port, ""))
    store = tmp_path / "buffer"
    run = Run(str(profile), "--store", str(store), "--device", "pi-1")
    run.wait_for("connected to")
    assert run.stop()[0] == 0
    other = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(profile),
                            "--store", str(store), "--device", "pi-2"], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
    assert other.returncode == 2
    assert other.stderr == (
        "tether run: the buffer in %s holds the readings of device pi-1, not pi-2: they would go "
        "out as pi-2's; give pi-2 a folder of its own with --store DIR (or, to drop what it "
        "holds, remove %s)\n" % (store, store))


def test_a_buffer_folder_that_cannot_be_made_says_why_not_no_such_file(tmp_path):
    # Not even root may make a folder in /sys: the reason, not "No such file or directory" at
    # the first write into the folder that was never made.
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (free_port(), ""))
    done = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(profile),
                           "--store", "/sys/tether-test/buffer"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    # EPERM as root, EACCES as anyone else, EROFS in a container's read-only /sys
    assert done.stderr in ("tether run: /sys/tether-test: %s\n" % why for why in (
        "Operation not permitted", "Permission denied", "Read-only file system")), done.stderr


def test_a_hangup_stops_the_run_cleanly_saving_what_it_holds(tmp_path, mosquitto):
    import signal
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"))
    run.wait_for("connected to 127.0.0.1:%d" % mosquitto.port)
    code, rest = run.stop(signal.SIGHUP)
    assert code == 0 and rest.startswith("stopped: 0 batches waiting for the broker"), rest


def test_a_bus_that_cannot_be_opened_fails_its_sensors_in_words_and_the_agent_runs(tmp_path):
    # It stopped the agent with exit 2: one unplugged USB adapter took every sensor and the
    # uplink with it, and systemd gave up after five starts.
    if pathlib.Path("/dev/serial0").exists():
        return      # a Pi with its serial port on: nothing fails
    run = Run("examples/washer.yaml", "--device", "w-1", "--store", str(tmp_path / "b"),
              "--platform", "rpi", "--broker", "mqtt://127.0.0.1:%d" % free_port())
    line = run.wait_for("sensor power fails (bus: ")
    assert "cannot open UART /dev/serial0 (No such file or directory): on a Raspberry Pi " \
           "enable the serial port" in line and "[Errno" not in line, line
    # the washer's only sensor: there are no others to go on
    assert line.rstrip().endswith("; it is tried again with backoff"), line
    code, rest = run.stop()
    assert code == 0 and rest.splitlines()[-1].startswith("stopped:"), rest


def test_a_device_marker_cut_short_by_a_crash_is_written_again(tmp_path):
    from firmware.run import hold_buffer, mark_buffer
    store = tmp_path / "buffer"
    store.mkdir()
    (store / "device").write_text("")          # created, the crash came before the id
    held = hold_buffer(str(store), "pi-1")
    mark_buffer(str(store), "pi-1")
    held.close()
    assert (store / "device").read_text() == "pi-1\n"
    with pytest.raises(ValueError, match="holds the readings of device pi-1, not pi-2"):
        hold_buffer(str(store), "pi-2")


def test_a_buffer_from_before_the_device_marker_is_held_for_the_device_its_batches_name(
        tmp_path):
    # Taken as the --device given: its batches went out on that device's topic, the ingest
    # refused them as another device's, and the buffer deleted them as delivered.
    from agent import batch
    from agent.buffer import Buffer
    from agent.log import Log
    from agent.schema import Schema
    from agent.store import FileStore
    from firmware.run import device_in_log, hold_buffer
    store = tmp_path / "buffer"
    log = Log(FileStore(str(store)), 65536, 8192, batch.seq_of)
    buf = Buffer(log, batch.Encoder("pi-1", Schema([("power", "W", 1, -1)]), "compact", False,
                                    2048, 10), 10, 600000, 32, 60000)
    buf.open()
    for i in range(25):
        buf.append(1763856000000 + i * 1000, 0, i)
    buf.poll(1763856000000 + 25 * 1000)
    buf.log.store.close()
    assert not (store / "device").exists() and device_in_log(str(store)) == "pi-1"
    with pytest.raises(ValueError, match="holds the readings of device pi-1, not pi-2"):
        hold_buffer(str(store), "pi-2")
    hold_buffer(str(store), "pi-1").close()
    assert device_in_log(str(tmp_path)) is None     # no segments: nobody's


def test_a_run_that_fails_before_its_agent_is_built_leaves_the_buffer_unclaimed(tmp_path):
    # A CA it cannot load: the folder was marked as pi-1's all the same, and a run as pi-7
    # (the id meant) was refused: "holds the readings of device pi-1", which it did not.
    import json
    from firmware.profile.compile import compile as compile_profile
    source = tmp_path / "pi.yaml"
    source.write_text(PROFILE.replace("{id: pi-1}", "{id: 'pi-{uid}'}") % (free_port(), ""))
    profile, errors = compile_profile(str(source))
    assert not errors
    profile["uplink"].update({"tls": True, "ca": "-----BEGIN CERTIFICATE-----\nnot one\n"
                                                  "-----END CERTIFICATE-----\n"})
    compiled = tmp_path / "pi.json"
    compiled.write_text(json.dumps(profile))
    store = tmp_path / "b"
    for device in ("pi-1", "pi-7"):
        done = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(compiled),
                               "--device", device, "--store", str(store)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "holds the readings" not in done.stderr, done.stderr
    assert not (store / "device").exists()


def test_under_nohup_a_hangup_is_left_ignored(tmp_path, mosquitto):
    import signal
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    run = subprocess.Popen(["nohup", sys.executable, "-m", "firmware.cli", "run", str(profile),
                            "--store", str(tmp_path / "buffer"), "--status-every", "1s"],
                           cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        for line in run.stdout:
            if "connected to" in line:
                break
        run.send_signal(signal.SIGHUP)
        # It runs on: its next status line comes (stopped by the hangup, "stopped:" would).
        for line in run.stdout:
            if " status: " in line or line.startswith("stopped: "):
                break
        assert " status: " in line, line
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()


CHANGED = """\
device: {id: pi-9}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
sensors:
%s  - {name: power, driver: ina219, bus: i2c0, interval: 100ms}
batch: {max_readings: 100, max_age: 1min}
buffer: {ram_readings: 1}
uplink: {broker: "mqtt://127.0.0.1:%d", backoff: {min: 100ms, max: 1s}}
"""


def _readings_by_status(run, at_least):
    """The readings count of the first status line that counts at least this many."""
    while True:
        line = run.wait_for("status: not connected")
        n = int(line.split("; ")[1].split()[0])
        if n >= at_least:
            return n


def test_a_profile_changed_while_readings_wait_sends_them_labelled_by_the_old_one(
        tmp_path, mosquitto):
    """A new profile (a sensor added first) on a buffer that holds readings taken under the old
    one: a batch in the log, rows in the journal. The batch was held at the ingest for good,
    waiting for a schema the device no longer published, and the rows went out numbered by the
    new profile, as the new first sensor's. Now the rows leave as a batch under the old schema,
    and its document goes to the broker before them."""
    import sqlite3
    from ingest import Ingest
    store = tmp_path / "buffer"
    old = tmp_path / "old.yaml"
    old.write_text(CHANGED % ("", free_port()))  # no broker: everything waits
    run = Run(str(old), "--store", str(store), "--status-every", "1s")
    first = _readings_by_status(run, 5)
    code, rest = run.stop()  # a clean stop: the readings in RAM become a batch in the log
    assert code == 0 and rest.startswith("stopped: 1 batch waiting"), rest
    run = Run(str(old), "--store", str(store), "--status-every", "1s")
    second = _readings_by_status(run, 5)  # each in the journal as it comes (ram_readings: 1)
    run.stop(signal.SIGKILL)
    new = tmp_path / "new.yaml"
    new.write_text(CHANGED % ("  - {name: volts, driver: ina219, bus: i2c0, quantity: "
                              "bus_voltage, interval: 100ms}\n", mosquitto.port))
    db = str(tmp_path / "fleet.sqlite")
    ingest = Ingest("127.0.0.1", mosquitto.port, db).start()
    try:
        started = int(time.time() * 1000)
        run = Run(str(new), "--store", str(store), "--quiet")
        run.wait_for("connected to")
        deadline = time.monotonic() + 60
        while True:
            with sqlite3.connect(db) as conn:
                before = dict(conn.execute(
                    "SELECT channel, count(*) FROM readings WHERE t_ms < ? GROUP BY channel",
                    (started,)))
            if before.get("power", 0) >= first + second or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert run.stop()[0] == 0
    finally:
        ingest.stop()
    assert set(before) == {"power"} and before["power"] >= first + second, before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM held").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM schemas").fetchone() == (2,)
        after = dict(conn.execute("SELECT channel, count(*) FROM readings WHERE t_ms >= ? "
                                  "GROUP BY channel", (started,)))
    assert set(after) == {"power", "volts"}, after


def test_a_buffer_inside_another_or_holding_one_is_refused(tmp_path):
    # A second device on --store A/events read the first one's events log as its own batch
    # log: its first batch went out as seq 3.
    from firmware.run import hold_buffer
    held = hold_buffer(str(tmp_path / "a"), "wa")
    try:
        with pytest.raises(ValueError, match="inside the buffer in %s" % (tmp_path / "a")):
            hold_buffer(str(tmp_path / "a" / "events"), "wb")
    finally:
        held.close()
    with pytest.raises(ValueError, match="holds the buffer in %s" % (tmp_path / "a")):
        hold_buffer(str(tmp_path), "wc")
    hold_buffer(str(tmp_path / "b"), "wd").close()        # a folder beside it is fine


def test_a_log_pipe_that_closes_leaves_delivery_going(tmp_path, mosquitto):
    # `tether run ... 2>&1 | head -2`: once head had gone, the next line raised into the
    # uplink, which took each new connection for failed and never delivered again.
    import os
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (mosquitto.port, ""))
    proc = subprocess.Popen([sys.executable, "-m", "firmware.cli", "run", str(profile),
                             "--store", str(tmp_path / "buffer"), "--status-every", "1s"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        for line in proc.stderr:
            if b"connected to 127.0.0.1:%d" % mosquitto.port in line:
                break
        proc.stderr.close()     # the reader is gone: every later line meets a closed pipe
        mosquitto.stop()        # so the next connection made has a line to print
        time.sleep(2)
        mosquitto.start()
        watcher, got = watch(mosquitto.port, "tether/v1/pi-1/up/batch")
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        watcher.loop_stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert len(got) >= 3, "no batch delivered once the log's pipe had closed"


def test_a_refused_command_subscription_is_said_once_and_the_readings_go(tmp_path, mosquitto):
    from simulator.lab.netproxy import Proxy
    proxy = Proxy(mosquitto.port)
    proxy.refuse_subscriptions = True
    watcher, got = watch(mosquitto.port, "tether/v1/pi-1/up/batch")
    profile = tmp_path / "pi.yaml"
    profile.write_text(PROFILE % (proxy.port, ""))
    run = Run(str(profile), "--store", str(tmp_path / "buffer"), "--quiet")
    try:
        line = run.wait_for("refused the subscription to tether/v1/pi-1/down/cmd")
        assert "readings are sent all the same" in line
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        code, rest = run.stop()
    finally:
        watcher.loop_stop()
        proxy.close()
    assert code == 0 and len(got) >= 2
    assert not any("disconnected" in line for line in run.seen), run.seen


def test_gpio_pins_without_the_gpio_bindings_stop_the_run_in_one_line_exit_2(tmp_path):
    # A traceback and exit 1, which the service restarted every 10 s for good.
    import os
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "gpiod.py").write_text("raise ImportError('No module named gpiod')\n")
    profile = tmp_path / "hx.yaml"
    profile.write_text("device: {id: hx-1}\nplatform: rpi\nsensors:\n"
                       "  - {name: weight, driver: hx711, pins: {dout: 23, sck: 24}}\n"
                       "uplink: {broker: \"mqtt://127.0.0.1:1\"}\n")
    done = subprocess.run([sys.executable, "-m", "firmware.cli", "run", str(profile), "--store",
                           str(tmp_path / "buffer"), "--gpiochip", "/dev/gpiochip0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, PYTHONPATH="%s:%s" % (tmp_path / "shadow", ROOT)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tether run: GPIO on Linux needs libgpiod's Python bindings")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("added", ["", "  - {name: volts, driver: ina219, bus: i2c0, "
                                         "quantity: bus_voltage, interval: 100ms}\n"])
def test_compact_batches_left_waiting_by_a_switch_to_senml_go_out_with_their_schema(
        tmp_path, mosquitto, added):
    # A SenML device publishes no schema document: the compact batches its profile's earlier
    # encoding left in the buffer went out undecodable, held at the ingest for good.
    import sqlite3
    from ingest import Ingest
    store = tmp_path / "buffer"
    compact = tmp_path / "compact.yaml"
    compact.write_text(CHANGED % ("", free_port()))  # no broker: everything waits
    run = Run(str(compact), "--store", str(store), "--status-every", "1s")
    first = _readings_by_status(run, 5)
    code, rest = run.stop()
    assert code == 0 and rest.startswith("stopped: 1 batch waiting"), rest
    senml = tmp_path / "senml.yaml"
    senml.write_text((CHANGED % (added, mosquitto.port)).replace(
        "backoff: {min: 100ms, max: 1s}}", "backoff: {min: 100ms, max: 1s}, encoding: senml}"))
    db = str(tmp_path / "fleet.sqlite")
    ingest = Ingest("127.0.0.1", mosquitto.port, db).start()
    try:
        started = int(time.time() * 1000)
        run = Run(str(senml), "--store", str(store), "--quiet")
        run.wait_for("connected to")
        deadline = time.monotonic() + 60
        while True:
            with sqlite3.connect(db) as conn:
                before = conn.execute("SELECT count(*) FROM readings WHERE t_ms < ?",
                                      (started,)).fetchone()[0]
            if before >= first or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert run.stop()[0] == 0
    finally:
        ingest.stop()
    assert before >= first
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM held").fetchone() == (0,)


def test_a_compiled_chip_setting_outside_its_few_values_is_refused_at_the_key():
    # A gain of 3 passed the check and stopped the agent in the driver's constructor, with no
    # key path (HX711's gain; ADS1115's, in its calibration).
    from firmware.profile.compile import compile as compile_profile
    from firmware.profile.compiled import problems
    compiled = compile_profile(str(pathlib.Path(__file__).parent / "data" / "profiles" /
                                   "all-drivers.yaml"))[0]
    names = [s["name"] for s in compiled["sensors"]]
    assert problems(compiled) == []
    compiled["sensors"][names.index("pills")]["gain"] = 3
    compiled["sensors"][names.index("volts")]["calibration"]["gain"] = 3.3
    assert problems(compiled) == [
        "sensors[%d].gain: expected one of 128, 64, 32, got 3" % names.index("pills"),
        "sensors[%d].calibration.gain: expected one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256, "
        "got 3.3" % names.index("volts")]


def test_a_compiled_true_is_no_option_1():
    # True == 1 in Python: a hand-edited `true` passed where the options are numbers.
    from firmware.profile.compiled import _fields
    from firmware.profile.rules import number_choice
    out = []
    _fields([("n", "n", number_choice(("1", "2")), 1)], {"n": True}, "sensors[0]", out)
    assert out == ["sensors[0].n: expected one of 1, 2, got true"]
    _fields([("n", "n", number_choice(("1", "2")), 1)], {"n": 2}, "sensors[0]", out)
    assert len(out) == 1
