"""The `wifi:` section: the access point a board joins at boot (firmware/board.py)."""
import textwrap

from firmware.cli import main
from firmware.profile.compile import compile, compile_with_secrets

PROFILE = """\
device: {id: kettle}
platform: esp32
sensors:
  - {name: level, driver: level_probe, pin: 34, calibration: {raw_empty: 400, raw_full: 3700}}
uplink: {broker: "mqtt://broker.example.com"}
%s"""


def write(tmp_path, wifi, secrets=None):
    (tmp_path / "p.yaml").write_text(PROFILE % textwrap.dedent(wifi))
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(textwrap.dedent(secrets))
    return str(tmp_path / "p.yaml")


def test_wifi_from_secrets_is_compiled_and_its_values_tracked_as_secret(tmp_path):
    path = write(tmp_path, "wifi: {ssid: !secret ssid, password: !secret pw}\n",
                 "ssid: Home Net\npw: correct horse battery\n")
    compiled, errors, secret_fields = compile_with_secrets(path)
    assert errors == []
    assert compiled["wifi"] == {"ssid": "Home Net", "password": "correct horse battery"}
    assert {"wifi.ssid", "wifi.password"} <= set(secret_fields)


def test_check_shows_the_wifi_section_without_its_values(tmp_path, capsys):
    path = write(tmp_path, "wifi: {ssid: !secret ssid, password: !secret pw}\n",
                 "ssid: Home Net\npw: correct horse battery\n")
    assert main(["check", path]) == 0
    out = capsys.readouterr().out
    assert "  wifi      ***, with a password, time from pool.ntp.org (ntptime's own)" in out
    assert "Home Net" not in out and "correct horse" not in out


def test_an_open_network_has_no_password_and_no_wifi_section_is_allowed(tmp_path):
    compiled, errors = compile(write(tmp_path, "wifi: {ssid: cafe}\n"))
    assert errors == [] and compiled["wifi"] == {"ssid": "cafe"}
    (tmp_path / "b").mkdir()
    compiled, errors = compile(write(tmp_path / "b", ""))
    assert errors == [] and "wifi" not in compiled


def test_check_of_a_board_profile_without_wifi_says_build_needs_it(tmp_path, capsys):
    # check said ok and build then refused the profile: "platform esp32 needs a 'wifi:' section"
    assert main(["check", write(tmp_path, "")]) == 0
    assert ("  wifi      none: add 'wifi:' before `tether build` (a board joins a network "
            "with it)") in capsys.readouterr().out


def test_bad_wifi_values_are_reported_where_they_are(tmp_path):
    _, errors = compile(write(tmp_path, "wifi:\n  ssid: %s\n  password: short\n  channel: 6\n"
                              % ("x" * 33)))
    text = "\n".join(errors)
    assert "wifi.ssid: expected a network name (SSID) of 1 to 32 bytes" in text
    assert "wifi.password: expected a WPA passphrase of 8 to 63 characters or 64 hex digits" in text
    assert "wifi: unknown key 'channel'" in text or "wifi.channel" in text, text


def test_a_missing_ssid_is_an_error_and_a_secret_password_is_not_shown_in_it(tmp_path):
    path = write(tmp_path, "wifi: {password: !secret pw}\n", "pw: tiny\n")
    _, errors = compile(path)
    text = "\n".join(errors)
    assert "missing required key 'ssid'" in text
    assert "expected a WPA passphrase" in text and "tiny" not in text


def test_ntp_servers_are_compiled_in_order_and_shown_by_check(tmp_path, capsys):
    path = write(tmp_path, "wifi: {ssid: plant, ntp: [ntp1.plant.lan, 10.0.0.2]}\n")
    compiled, errors = compile(path)
    assert errors == [] and compiled["wifi"] == {"ssid": "plant",
                                                 "ntp": ["ntp1.plant.lan", "10.0.0.2"]}
    assert main(["check", path]) == 0
    assert "  wifi      plant, open network, time from ntp1.plant.lan, 10.0.0.2" in (
        capsys.readouterr().out)


def test_bad_ntp_servers_are_reported_where_they_are(tmp_path):
    _, errors = compile(write(tmp_path, "wifi:\n  ssid: plant\n  ntp: [ok.example, 'udp://x:123']\n"))
    assert errors == ["%s:8:21: wifi.ntp[1]: expected an NTP server's host name or IPv4 address, "
                      "like 'pool.ntp.org', got 'udp://x:123'" % (tmp_path / "p.yaml")], errors
    (tmp_path / "b").mkdir()
    _, errors = compile(write(tmp_path / "b", "wifi: {ssid: plant, ntp: [a, b, c, d]}\n"))
    # its most said once ("1 to 3 ..., at most 3")
    assert len(errors) == 1 and "wifi.ntp: expected a list of NTP servers, 1 to 3, got 4" \
        in errors[0], errors
    (tmp_path / "c").mkdir()
    _, errors = compile(write(tmp_path / "c", "wifi: {ssid: plant, ntp: pool.ntp.org}\n"))
    assert len(errors) == 1 and "wifi.ntp: expected a list of NTP servers, 1 to 3" in errors[0]
