"""Options of every `tether` command: a number or a duration out of range is refused with a clear
message before anything runs; `--version`; what `tether compile` writes is private."""
import os
import stat
import subprocess
import sys

import pytest

from firmware.cli import main
from simulator.fleet import DEFAULT_FLEET, load_fleet

SIM_PROFILE = "tests/data/profiles/all-drivers.yaml"


@pytest.mark.parametrize("argv, says", [
    (["read", "x.yaml", "--count", "-1"],
     "argument --count: expected a whole number of 1 or more, got '-1'"),
    (["read", "x.yaml", "--count", "0"], "argument --count: expected a whole number of 1 or more"),
    (["read", "x.yaml", "--count", "two"], "argument --count: expected a whole number"),
    (["read", "x.yaml", "--interval", "2d"], "at most 1d, got '2d'"),
    (["read", "x.yaml", "--interval=-1s"], "expected a duration like '10s', '5min' or '2d', "
                                           "at most 1d, got '-1s'"),
    (["simulate", "--devices", "0"],
     "argument --devices: expected a whole number from 1 to 100000, got '0'"),
    (["simulate", "--devices", "-5"], "argument --devices: expected a whole number from 1"),
    (["simulate", "--duration", "0s"], "argument --duration: expected a duration like '10s', "
                                       "'5min' or '2d', at least 1s and at most 3650d, "
                                       "got '0s'"),
    (["simulate", "--duration", "a week"], "argument --duration: expected a duration like"),
    (["simulate", "--duration", "3651d"], "at least 1s and at most 3650d, got '3651d'"),
    (["simulate", "--seed", "x"], "argument --seed: invalid int value"),
    (["ingest", "--broker", "mqtt://h", "--db", "d", "--hold", "-1"],
     "argument --hold: expected a number of seconds of at least 0"),
    (["ingest", "--broker", "mqtt://h", "--db", "d", "--hold", "inf"],
     "argument --hold: expected a number of seconds"),
    (["run", "x.yaml", "--status-every", "0s"],
     "argument --status-every: expected a duration like"),
])
def test_numbers_out_of_range_are_refused_before_anything_runs(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("every", ["0", "0.01", "-1", "nan", "inf"])
def test_an_ingest_progress_interval_under_a_tenth_of_a_second_is_refused(every, tmp_path):
    db = tmp_path / "d.sqlite"
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker",
                           "mqtt://127.0.0.1:1", "--db", str(db), "--every=" + every],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.endswith("tether ingest: error: argument --every: expected a number of "
                                "seconds of at least 0.1, got %r\n" % every), proc.stderr
    assert not db.exists()


@pytest.mark.parametrize("speed", ["nan", "inf", "0", "-3x", "1e-9x"])
def test_a_speed_that_is_not_a_positive_finite_factor_is_refused(speed, tmp_path, capsys):
    assert main(["simulate", "--speed=" + speed, "--workdir", str(tmp_path / "w")]) == 2
    assert "--speed: expected a factor of at least 0.01 like '3600x', or 'max', got %r" % speed \
        in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_fewer_devices_than_kinds_in_the_fleet_takes_one_of_the_first_kinds():
    kinds = load_fleet(DEFAULT_FLEET)
    assert len(kinds) > 2
    lines = load_fleet(DEFAULT_FLEET, 2)
    assert [(p["device"]["model"], n) for p, n, _ in lines] == [
        (p["device"]["model"], 1) for p, _, _ in kinds[:2]]
    for n in range(len(kinds), 40):
        assert sum(count for _, count, _ in load_fleet(DEFAULT_FLEET, n)) == n


def test_the_report_of_a_run_that_delivered_nothing_says_so():
    from simulator.report import text
    class Zeros(dict):  # every count of the fleet 0
        def __missing__(self, key):
            return 0
    fleet = Zeros(bytes_per_reading=None)
    out = text({"fleet": fleet, "device_time_ms": 1000, "wall_s": 1, "speed": None,
                "broker_restarts": 0, "devices": [], "insight_scores": {}})
    assert "None" not in out and "no reading delivered, so no bytes on the air per reading" in out


@pytest.mark.parametrize("ms, says", [(6 * 3600000, "6 hours"), (3 * 3600000, "3 hours"),
                                       (7 * 86400000, "7.00 days"), (60000, "0.02 hours")])
def test_the_reports_device_time_is_not_rounded_away(ms, says):
    from simulator.report import text
    class Zeros(dict):
        def __missing__(self, key):
            return 0
    out = text({"fleet": Zeros(bytes_per_reading=1.0), "device_time_ms": ms, "wall_s": 1,
                "speed": None, "broker_restarts": 0, "devices": [], "insight_scores": {}})
    assert out.startswith("0 devices, %s of device time in 1 s" % says), out


def test_read_takes_several_profiles_and_skips_their_secrets(capsys):
    assert main(["read", SIM_PROFILE, "examples/secrets.yaml", "examples/printer.yaml",
                 "--platform", "sim"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(SIM_PROFILE + " on sim: 10 sensors\n")
    assert "\n\nexamples/printer.yaml on sim: 5 sensors\n  ink_c  50.0 %\n" in out
    assert "secrets" not in out


def test_read_of_the_secrets_file_alone_says_it_is_no_profile(capsys):
    # It printed nothing and exited 0: a wiring check that checked nothing.
    assert main(["read", "examples/secrets.yaml", "--platform", "sim"]) == 2
    assert "secrets.yaml holds a profile's secrets, not a profile" in capsys.readouterr().err


def test_read_of_several_profiles_exits_with_the_worst_status(capsys):
    assert main(["read", SIM_PROFILE, "examples/printer.yaml"]) == 2  # esp32, no --platform
    captured = capsys.readouterr()
    assert captured.out.startswith(SIM_PROFILE + " on sim")
    assert captured.err == ("tether read: examples/printer.yaml: an esp32 profile is read on the "
                            "board itself: copy the agent there (tether flash), or use --platform sim\n")


def test_version():
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "--version"],
                          capture_output=True, text=True)
    from agent.runtime import VERSION
    assert proc.returncode == 0 and proc.stdout == "tether %s\n" % VERSION


def test_the_compiled_profile_is_written_readable_by_its_owner_alone(tmp_path, capsys):
    out = tmp_path / "printer.json"
    out.write_text("old")
    os.chmod(out, 0o644)  # an earlier file, made before: its mode is fixed too
    assert main(["compile", "examples/printer.yaml", "-o", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert '"password":"not-a-real-password"' in out.read_text()
    fresh = tmp_path / "fresh.json"
    assert main(["compile", "examples/printer.yaml", "-o", str(fresh)]) == 0
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


def test_tether_sim_is_ignored_by_git():
    lines = open(".gitignore").read().split()
    assert "tether-sim/" in lines and "tether-demo/" in lines


@pytest.mark.parametrize("command", [["run", SIM_PROFILE],
                                     ["encode", "--profile", SIM_PROFILE, "-", "-o", os.devnull],
                                     # the id names the unit and /etc/tether/ID.json
                                     ["install-service", "examples/washer.yaml", "--dry-run"]])
@pytest.mark.parametrize("device", ["../../etc", "-x", "a/b", "x" * 65, ""])
def test_a_device_id_that_breaks_the_id_rule_is_refused_before_anything_runs(command, device):
    proc = subprocess.run([sys.executable, "-m", "firmware.cli"] + command
                          + ["--device=" + device], capture_output=True, text=True, input="",
                          timeout=60)  # unchecked, run would start sampling
    assert proc.returncode == 2
    assert ("argument --device: expected an id of up to 64 letters, digits, '-', '_' and '.' "
            "that starts with a letter or a digit, got %r" % device) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:0", "mqtts://127.0.0.1:0", "mqtt://h:70000"])
def test_an_ingest_broker_port_outside_1_to_65535_is_refused(url, tmp_path):
    db = tmp_path / "d.sqlite"
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", "--broker", url,
                           "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "tether ingest: the port in %r is not a number from 1 to 65535\n" % url
    assert not db.exists()


def read_cli(*args):
    return subprocess.run([sys.executable, "-m", "firmware.cli", "read", "--platform", "sim"]
                          + list(args), capture_output=True, text=True, timeout=120)


def test_read_of_several_profiles_applies_a_fault_where_its_sensor_is():
    proc = read_cli("examples/fridge.yaml", "examples/printer.yaml", "--fault",
                    "ink_c=disconnected")
    assert proc.stderr == ""
    assert proc.returncode == 1  # the broken sensor's reading failed, nothing else did
    assert "examples/fridge.yaml on sim: 4 sensors" in proc.stdout
    errors = [line.split()[0] for line in proc.stdout.splitlines() if " ERROR " in line]
    assert errors == ["ink_c"]


def test_read_of_several_profiles_refuses_a_fault_no_profile_has_a_sensor_for():
    proc = read_cli("examples/fridge.yaml", "examples/printer.yaml", "--fault", "toner=stuck")
    assert proc.returncode == 2
    assert proc.stderr == ("tether read: --fault toner=stuck: no sensor 'toner' in any of the "
                           "profiles\n")


def test_an_unknown_option_of_a_command_is_said_with_that_commands_usage():
    # `tether check p.yaml --bogus` printed the top-level `tether` usage
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "check",
                           "examples/printer.yaml", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: tether check "), proc.stderr
    assert proc.stderr.endswith("tether check: error: unrecognized arguments: --bogus\n")


def test_board_commands_load_neither_the_simulator_nor_the_console():
    # README, Layout: `tether check`, `build` and `flash` run on a maker's laptop without the
    # simulator's models or the console's web stack loaded.
    code = ("import sys\n"
            "sys.argv = ['tether', 'check', 'examples/printer.yaml']\n"
            "from firmware import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'simulator', 'console', 'starlette', 'uvicorn'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:] + out.stderr[-500:]
