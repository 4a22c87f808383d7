"""`!secret name` reads secrets.yaml next to the profile; a secret never shows in any output."""
import json
import pathlib
import textwrap

from firmware.cli import main
from firmware.profile.compile import compile, compile_with_secrets

DATA = pathlib.Path(__file__).parent / "data" / "profiles"
PASSWORD = "s3cr3t/Pa55 word!"

PROFILE = """\
device: {id: kettle}
platform: sim
buses:
  - {id: i2c0, type: i2c, sda: 1, scl: 2}
sensors:
  - {name: power, driver: ina219, bus: i2c0}
uplink:
  broker: !secret broker
  username: !secret user
  password: !secret password
"""


def write(tmp_path, profile=PROFILE, secrets=None):
    (tmp_path / "p.yaml").write_text(textwrap.dedent(profile))
    if secrets is not None:
        (tmp_path / "secrets.yaml").write_text(textwrap.dedent(secrets))
    return str(tmp_path / "p.yaml")


SECRETS = """\
broker: mqtts://private-broker.example.com:8884
user: kettle-7
password: %s
""" % PASSWORD


def test_secret_values_are_compiled_in_and_their_fields_tracked(tmp_path):
    compiled, errors, secret_fields = compile_with_secrets(write(tmp_path, secrets=SECRETS))
    assert errors == []
    uplink = compiled["uplink"]
    assert (uplink["host"], uplink["port"], uplink["tls"]) == ("private-broker.example.com", 8884, True)
    assert (uplink["username"], uplink["password"]) == ("kettle-7", PASSWORD)
    assert secret_fields == ["uplink.host", "uplink.password", "uplink.port", "uplink.tls",
                             "uplink.username"]


def test_secrets_never_appear_in_check_output(tmp_path, capsys):
    assert main(["check", write(tmp_path, secrets=SECRETS)]) == 0
    out, err = capsys.readouterr()
    for secret in (PASSWORD, "kettle-7", "private-broker", "8884"):
        assert secret not in out + err
    assert "  broker    ***:***" in out
    assert "login ***" in out


def test_secrets_never_appear_in_errors(tmp_path, capsys):
    profile = PROFILE.replace("device: {id: kettle}", "device: {id: !secret password}")
    path = write(tmp_path, profile, secrets=SECRETS.replace("mqtts://", "wss://"))
    assert main(["check", path]) == 2
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err and "private-broker" not in out + err
    assert err.splitlines() == [
        path + ":1:14: device.id: expected an id of up to 64 letters, digits, '-', '_' and '.' "
        "that starts with a letter or a digit, optionally with '{uid}' (like 'printer-{uid}'), "
        "got ***",
        path + ":8:11: uplink.broker: expected a broker URL like 'mqtt://host:1883' or "
        "'mqtts://host:8883', got ***",
    ]


def test_secret_substituted_into_a_value_stays_secret(tmp_path):
    profile = "substitutions:\n  pw: !secret password\n" + PROFILE.replace(
        "password: !secret password", "password: x-${pw}").replace("device: {id: kettle}", "device: {id: 'k/${pw}'}")
    compiled, errors, secret_fields = compile_with_secrets(write(tmp_path, profile, secrets=SECRETS))
    assert PASSWORD not in "".join(errors)
    assert errors[0].endswith("device.id: expected an id of up to 64 letters, digits, '-', '_' and "
                              "'.' that starts with a letter or a digit, optionally with '{uid}' "
                              "(like 'printer-{uid}'), got ***")


def test_missing_secrets_file_is_an_error_that_names_it(monkeypatch):
    monkeypatch.chdir(DATA)
    assert compile("nosecrets/profile.yaml") == (None, [
        "nosecrets/profile.yaml:10:13: uplink.password: !secret 'mqtt_password': there is no "
        "secrets file 'nosecrets/secrets.yaml'"])


def test_missing_secret_key_is_an_error_that_names_key_and_file(tmp_path):
    path = write(tmp_path, secrets="broker: mqtt://localhost\nuser: u\npasword: %s\n" % PASSWORD)
    compiled, errors = compile(path)
    assert errors == ["%s:10:13: uplink.password: !secret 'password' is not in '%s', did you mean "
                      "'pasword'?" % (path, tmp_path / "secrets.yaml")]
    assert PASSWORD not in errors[0]


def test_a_secret_that_names_another_is_said_to_be_one(tmp_path):
    # It said "!secret 'p' is not in 'secrets.yaml'" of a p that is there.
    path = write(tmp_path, secrets="broker: mqtt://localhost\nuser: !secret p\np: u\n"
                 "password: %s\n" % PASSWORD)
    compiled, errors = compile(path)
    assert compiled is None
    assert "%s:2:7: user: !secret 'p' inside '%s': a secret is a value, not a reference to " \
        "another" % (tmp_path / "secrets.yaml", tmp_path / "secrets.yaml") in errors, errors
    assert not any("is not in" in e for e in errors)


def test_compile_output_holds_the_secret_for_the_board(tmp_path, capsys):
    assert main(["compile", write(tmp_path, secrets=SECRETS)]) == 0
    assert json.loads(capsys.readouterr().out)["uplink"]["password"] == PASSWORD


def test_a_secret_without_a_name_or_with_a_list_says_what_it_takes(tmp_path):
    # "unsupported tag '!secret'" of a tag that is supported, and "!secret '' is not in
    # 'secrets.yaml'" of one with no name
    takes = ("uplink.password: !secret takes the name of a secret in secrets.yaml "
             "(`password: !secret broker_password`)")
    for value, said in (("!secret [a, b]", takes + ", not a list"),
                        ("!secret {a: b}", takes + ", not a mapping"),
                        ("!secret ''", takes)):
        path = write(tmp_path, PROFILE.replace("!secret password", value), SECRETS)
        assert compile(path)[1] == ["%s:10:13: %s" % (path, said)], value
