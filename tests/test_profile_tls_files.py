"""`tether check` loads the CA, certificate and key a profile names, as the agent will: a file
that is PEM on the outside but that OpenSSL cannot load is an error of the profile, with the
file and the key, not a traceback at the first connection."""
import shutil

from firmware.cli import main

PROFILE = """\
device: {id: d1}
platform: sim
sensors:
  - {name: p, driver: ina219, bus: i2c0}
buses:
  - {id: i2c0, type: i2c, sda: 2, scl: 3}
uplink:
  broker: mqtts://broker.example:8883
%s"""
NOT_A_CERTIFICATE = ("-----BEGIN CERTIFICATE-----\nVGhpcyBpcyBub3QgYSByZWFsIGNlcnRpZmljYXRlLg==\n"
                     "-----END CERTIFICATE-----\n")


def write(tmp_path, uplink_lines, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE % uplink_lines)
    return str(path)


def test_a_ca_file_that_does_not_load_is_reported_with_its_file_and_key(tmp_path, capsys):
    path = write(tmp_path, "  ca: ca.pem\n", {"ca.pem": NOT_A_CERTIFICATE})
    assert main(["check", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("%s:9:7: uplink.ca: '%s' holds no CA certificate OpenSSL can load ("
                          % (path, tmp_path / "ca.pem"))
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_certificate_and_key_that_do_not_load_are_reported(tmp_path, capsys, tls_files):
    client = tls_files.client("device-A")
    other = tls_files.client("device-B")
    shutil.copy(tls_files.ca_pem, tmp_path / "ca.pem")
    lines = "  ca: ca.pem\n  cert: cert.pem\n  key: key.pem\n"
    good = {"cert.pem": open(client["cert_pem"]).read(), "key.pem": open(client["key_pem"]).read()}
    assert main(["check", write(tmp_path, lines, good)]) == 0
    capsys.readouterr()
    for files in ({"cert.pem": NOT_A_CERTIFICATE},
                  {"key.pem": open(other["key_pem"]).read()}):  # another certificate's key
        path = write(tmp_path, lines, dict(good, **files))
        assert main(["check", path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("%s:10:9: uplink.cert: '%s' and '%s' are not a certificate and its "
                              "private key that OpenSSL can load ("
                              % (path, tmp_path / "cert.pem", tmp_path / "key.pem")), err


def test_the_example_profiles_pass_check_and_compile(capsys):
    import glob
    assert main(["check"] + sorted(glob.glob("examples/*.yaml"))) == 0


def test_run_of_a_profile_whose_ca_does_not_load_exits_with_the_message(tmp_path):
    import subprocess
    import sys
    path = write(tmp_path, "  ca: ca.pem\n", {"ca.pem": NOT_A_CERTIFICATE})
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "run", path, "--store",
                           str(tmp_path / "buffer")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("%s:9:7: uplink.ca: '%s' holds no CA certificate OpenSSL can "
                                  "load (" % (path, tmp_path / "ca.pem"))
    assert proc.stderr.count("\n") == 1
