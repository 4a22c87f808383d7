"""`tether check`: a one-screen summary and exit 0, or every error and exit 2."""
import pathlib
import re
import textwrap

from firmware.cli import main

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def test_check_prints_a_summary_of_the_reference_printer(capsys, mocker):
    estimate = mocker.patch("firmware.profile.summary.estimate", return_value={
        "readings_per_day": 60480, "batches_per_day": 144.0, "bytes_per_day": 61234,
        "health_per_day": 288.0, "health_bytes_per_day": 172800})
    path = str(EXAMPLES / "reference-printer.yaml")
    assert main(["check", path]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        path + ": ok",
        '  device    printer-0001 "Tether reference workload" on sim',
        "  broker    localhost:1883, client id printer-0001",
        "  topics    tether/v1/printer-0001/up/..., encoding compact",
        "  batches   up to 420 readings, 8KiB or 10min old",
        "  buffer    flash at buffer, 256KiB + 16KiB for events; RAM holds up to 32 readings for 1min",
        "  bus       i2c0: i2c sda 0 scl 1, 100kHz",
        "  bus       uart0: uart tx 2 rx 3, 9600 baud",
        "  sensors   7 (channel numbers on the wire follow this order)",
        "    #  name    driver       quantity  where      every  resolution  unit   filters; thresholds",
        "    0  energy  pzem004t     energy    uart0 #1   10s    1           Wh     -",
        "    1  ink_c   level_probe  level     pin 4      10s    0.1         %      -",
        "    2  ink_k   level_probe  level     pin 5      10s    0.1         %      -",
        "    3  ink_m   level_probe  level     pin 6      10s    0.1         %      -",
        "    4  ink_y   level_probe  level     pin 7      10s    0.1         %      -",
        "    5  pills   hx711        count     pins 8/9   10s    1           count  -",
        "    6  power   ina219       power     i2c0 0x40  10s    0.1         W      -",
        # the calibration as compiled: a pill count of scale 1 is one never calibrated
        "  calibrate ink_c: raw_empty 0, raw_full 4095",
        "  calibrate ink_k: raw_empty 0, raw_full 4095",
        "  calibrate ink_m: raw_empty 0, raw_full 4095",
        "  calibrate ink_y: raw_empty 0, raw_full 4095",
        "  calibrate pills: tare 0, scale 1, pill_weight 1",
        "  calibrate power: shunt_ohms 0.1, max_current 3.2",
        "  on air    60,480 readings/day, 144.0 batches/day, 61,234 bytes/day",
        "            288 health reports/day (every 5min), about 172,800 bytes/day",
    ]
    assert [s["name"] for s in estimate.call_args.args[0]["sensors"]] == [
        "energy", "ink_c", "ink_k", "ink_m", "ink_y", "pills", "power"]


def test_check_estimates_bytes_on_the_air_with_the_real_encoder(capsys):
    assert main(["check", str(EXAMPLES / "reference-printer.yaml")]) == 0
    air, health = capsys.readouterr().out.splitlines()[-2:]
    assert re.fullmatch(r"  on air    60,480 readings/day, 144\.0 batches/day, [0-9,]+ bytes/day", air)
    # The health reports the agent makes, every 5 min by default: most of the bytes here (a
    # real printer's were 540 B each, 8x its batches, and the line left them out).
    got = re.fullmatch(r"            288 health reports/day \(every 5min\), about ([0-9,]+) "
                       r"bytes/day", health)
    assert got and 400 * 288 < int(got.group(1).replace(",", "")) < 800 * 288, health


def test_check_summary_shows_filters_thresholds_and_tls_but_no_credentials(capsys):
    assert main(["check", str(EXAMPLES / "printer.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("  broker    broker.example.com:8883, TLS with CA file, login ***, "
            "client id printer-{uid}") in out
    assert "median 5, 0..100; ink_low <15 (hyst 2)" in out
    assert "i2c0 0x40" in out and "pin 32" in out
    assert "not-a-real-password" not in out and "example-user" not in out


def test_check_says_a_password_without_tls_goes_in_clear_text(tmp_path, capsys):
    base = ("device: {id: kettle}\nplatform: sim\nsensors:\n  - {name: level, driver: "
            "level_probe, pin: 34, calibration: {raw_empty: 400, raw_full: 3700}}\n")
    (tmp_path / "p.yaml").write_text(base + "uplink: {broker: 'mqtt://broker.lan', username: u, "
                                            "password: secret-pw}\n")
    assert main(["check", str(tmp_path / "p.yaml")]) == 0
    assert ("  broker    broker.lan:1883, login *** sent in clear text (mqtt://; mqtts:// "
            "encrypts it), client id kettle") in capsys.readouterr().out
    (tmp_path / "p.yaml").write_text(base + "uplink: {broker: 'mqtt://broker.lan'}\n")
    assert main(["check", str(tmp_path / "p.yaml")]) == 0
    assert "  broker    broker.lan:1883, client id kettle" in capsys.readouterr().out


def test_check_states_the_events_log_the_agent_keeps_beside_the_buffer(tmp_path, capsys):
    # The events' log is bounded apart from buffer.max_bytes: a maker sizing flash from the
    # summary needs both (a sixteenth, at least 8 KiB), the figures the agent itself uses.
    from agent.clock import SystemClock
    from agent.runtime import Agent
    from agent.store import RamStore
    from firmware.profile.compile import compile as compile_profile
    from hal.sim.platform import SimPlatform
    for size, shown, events in (("64KiB", "64KiB", 8192), ("1MiB", "1MiB", 65536)):
        path = tmp_path / ("p%s.yaml" % size)
        text = (EXAMPLES / "reference-printer.yaml").read_text()
        assert "\nbuffer:" not in text
        path.write_text(text + "\nbuffer:\n  max_bytes: %s\n" % size)
        assert main(["check", str(path)]) == 0
        out = capsys.readouterr().out
        assert "flash at buffer, %s + %s for events;" % (shown, "%dKiB" % (events // 1024)) in out
        profile, errors = compile_profile(str(path))
        assert not errors
        agent = Agent(profile, SimPlatform(profile), SystemClock(), object, store=RamStore(),
                      events_store=RamStore(), reboot=lambda: None)
        assert agent.events.log.max_bytes == events


def test_check_exits_2_with_every_error_of_every_profile(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        device: {id: kettle}
        platform: esp33
        sensors: [{name: power, driver: ina219, bus: i2c0, interval: 5}]
        uplink: {broker: "mqtt://localhost"}
        """))
    good = str(EXAMPLES / "washer.yaml")
    assert main(["check", good, str(bad), str(tmp_path / "missing.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(good + ": ok\n")
    assert err.splitlines() == [
        "%s:2:11: platform: expected one of 'esp32', 'rpi', 'sim', got 'esp33', did you mean 'esp32'?" % bad,
        "%s:3:46: sensors[0].bus: no bus with id 'i2c0' is declared (declared: none)" % bad,
        "%s:3:62: sensors[0].interval: expected a duration like '10s' (ms, s, min, h or d), got 5" % bad,
        "%s: cannot read: No such file or directory" % (tmp_path / "missing.yaml"),
    ]


def test_a_fleet_file_checked_as_a_profile_says_what_it_is(capsys):
    # Five missing-key errors and "did you mean 'device'" for examples/fleets/mixed.yaml.
    fleet = EXAMPLES / "fleets" / "mixed.yaml"
    assert main(["check", str(fleet)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "%s:4:1: a fleet file (its 'devices' list names profiles), not a profile: run it with "
        "tether simulate --fleet FILE" % fleet]


def test_check_skips_the_secrets_file_of_a_glob(capsys):
    assert main(["check", str(EXAMPLES / "secrets.yaml")]) == 0
    assert "secrets.yaml: skipped" in capsys.readouterr().out


def test_check_summary_names_a_buss_device_file_where_the_profile_gives_one(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""\
        device: {id: pi-1}
        platform: rpi
        buses:
          - {id: mains, type: uart, tx: 0, rx: 1, port: /dev/ttyUSB0}
        sensors:
          - {name: energy, driver: pzem004t, bus: mains}
        uplink: {broker: "mqtt://localhost"}
        """))
    assert main(["check", str(tmp_path / "p.yaml")]) == 0
    assert "  bus       mains: uart tx 0 rx 1, 9600 baud, on /dev/ttyUSB0" in \
        capsys.readouterr().out.splitlines()


def test_check_shows_what_each_insight_is_set_to(capsys):
    # A tariff in cents instead of euros, or a dose time an hour off, passed unseen.
    assert main(["check", str(EXAMPLES / "washer.yaml"), str(EXAMPLES / "pill-bottle.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  insight   power: energy, 0.3 EUR/kWh, 250 g CO2/kWh, report at 00:00 UTC; cycles over " \
           "10 W, standby under 5 W; watch reversal, learnt over 8 points; 5 programmes" in out
    assert "  insight   pills: adherence, 1 pill at 08:00, 20:00 UTC, window 30min, late until " \
           "5h after or the next dose's window; refill at 5 days left" in out


def test_check_shows_the_zone_of_dose_times_and_of_the_energy_report(tmp_path, capsys):
    import shutil
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # with its packages and secrets
    for name, offset in (("pill-bottle.yaml", "-05:30"), ("washer.yaml", "+01:00")):
        path = tmp_path / "examples" / name
        path.write_text(path.read_text().replace("device:", "device:\n  utc_offset: \"%s\"" % offset, 1))
    assert main(["check", str(tmp_path / "examples" / "pill-bottle.yaml"),
                 str(tmp_path / "examples" / "washer.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("  insight   pills: adherence, 1 pill at 08:00, 20:00 UTC-05:30,")
               for line in out)
    assert any(line.startswith("  insight   power: energy, 0.3 EUR/kWh, 250 g CO2/kWh, report at "
                               "00:00 UTC+01:00;") for line in out)


def test_a_threshold_marked_as_an_alarm_is_compiled_and_shown_so(tmp_path, capsys):
    from firmware.profile.compile import compile as compile_profile
    path = tmp_path / "f.yaml"
    base = textwrap.dedent("""\
        device: {id: fridge}
        platform: sim
        sensors:
          - name: cabinet
            driver: sht3x
            bus: i2c0
            quantity: temperature
            thresholds:
              - {event: cabinet_warm, above: 8, hysteresis: 1, alarm: %s}
              - {event: cabinet_cold, below: 0}
        buses: [{id: i2c0, type: i2c, sda: 21, scl: 22}]
        uplink: {broker: "mqtt://localhost"}
        """)
    path.write_text(base % "true")
    compiled, errors = compile_profile(str(path))
    assert errors == []
    assert [t.get("alarm") for t in compiled["sensors"][0]["thresholds"]] == [True, None]
    assert main(["check", str(path)]) == 0
    assert "cabinet_warm >8 (hyst 1) alarm, cabinet_cold <0" in capsys.readouterr().out
    path.write_text(base % "false")     # the compiled form says only an alarm
    assert "alarm" not in compile_profile(str(path))[0]["sensors"][0]["thresholds"][0]
    path.write_text(base % "sure")
    assert compile_profile(str(path))[1] == [
        "%s:9:63: sensors[0].thresholds[0].alarm: expected true or false, got 'sure'" % path]


def test_check_takes_a_compiled_profile_as_tether_run_reads_it(tmp_path, capsys):
    # It was read as YAML: "batch: unknown key 'max_age_ms'" for a file `tether run` takes.
    out = tmp_path / "bottle.json"
    assert main(["compile", str(EXAMPLES / "pill-bottle.yaml"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", str(out)]) == 0
    shown, said = capsys.readouterr()
    assert said == "" and shown.startswith("%s: ok\n" % out)
    assert "  insight   pills: adherence, 1 pill at 08:00, 20:00 UTC," in shown
    assert "not-a-real-passphrase" not in shown and "not-a-real-password" not in shown
    out.write_text(out.read_text().replace('"max_readings":420', '"max_readings":"many"'))
    assert main(["check", str(out)]) == 2
    assert "batch.max_readings" in capsys.readouterr().err
