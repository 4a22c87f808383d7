"""The one broker URL grammar (ingest/url.py) and the database URL, as the parser, the profile and
`tether ingest` take them; and the ingest package's dependencies running one way."""
import ast
import pathlib
import subprocess
import sys

import pytest

from ingest.url import BadURL, db_url, parse_broker

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("url, parsed", [
    ("mqtt://localhost", ("localhost", 1883, False, None, None)),
    ("mqtts://broker.example/", ("broker.example", 8883, True, None, None)),
    ("mqtt://[::1]:1884", ("::1", 1884, False, None, None)),
    ("mqtts://u:p%40ss@broker.example:8884", ("broker.example", 8884, True, "u", "p@ss")),
    ("mqtt://ingest@10.0.0.2:65535", ("10.0.0.2", 65535, False, "ingest", None)),
])
def test_a_broker_url_gives_host_port_tls_and_credentials(url, parsed):
    assert parse_broker(url) == parsed


@pytest.mark.parametrize("url, says", [
    ("http://example.com", "expected a broker URL like mqtt://host:1883 or mqtts://host:8883"),
    ("mqtt://", "expected a broker URL like"),
    ("localhost:1883", "expected a broker URL like"),
    ("mqtt://host:0", "the port in 'mqtt://host:0' is not a number from 1 to 65535"),
    ("mqtt://host:99999", "is not a number from 1 to 65535"),
    ("mqtt://host:x", "is not a number from 1 to 65535"),
    ("mqtt://host:\u00b2", "is not a number from 1 to 65535"),      # int() refuses a superscript
    ("mqtt://host:\u0661\u0668\u0668\u0663", "is not a number from 1 to 65535"),  # Arabic-Indic 1883
    ("mqtt://host/topic", "a broker URL has no path, query or fragment"),
    ("mqtt://host?x=1", "a broker URL has no path, query or fragment"),
    ("mqtt://:secret@host", "needs a user name before '@': 'mqtt://:***@host'"),
    ("mqtt://%s.com" % ("a" * 300), "is longer than DNS allows (253 characters, 63 between dots)"),
    ("mqtt://%s.example.com" % ("b" * 64), "is longer than DNS allows"),
])
def test_a_bad_broker_url_says_what_is_wrong(url, says):
    with pytest.raises(BadURL, match=None) as info:
        parse_broker(url)
    assert says in str(info.value)
    assert "secret" not in str(info.value)


def test_a_database_is_a_sqlite_path_or_a_postgresql_url(tmp_path):
    assert db_url("fleet.sqlite") == ("sqlite", "fleet.sqlite")
    assert db_url(":memory:") == ("sqlite", ":memory:")
    assert db_url("postgresql://u@db/fleet") == ("postgresql", "postgresql://u@db/fleet")
    with pytest.raises(BadURL, match="not a mysql:// URL: 'mysql://u:\\*\\*\\*@db/x'"):
        db_url("mysql://u:pw@db/x")
    with pytest.raises(BadURL, match="is a folder, not a SQLite file"):
        db_url(str(tmp_path))
    with pytest.raises(BadURL, match="expected a SQLite file or a postgresql:// URL"):
        db_url("")
    # A URL a slash short is not a file named after it, password and all.
    for typo, start in (("postgresql:/ingest:s3cr3t@db:5432/fleet", "postgresql:/"),
                        ("postgres:fleet", "postgres:"), ("POSTGRESQL:ingest:s3cr3t@db", "POSTGRESQL:"),
                        ("sqlite:/fleet.db", "sqlite:/")):
        with pytest.raises(BadURL) as info:
            db_url(typo)
        assert str(info.value) == (
            "expected a SQLite file or a postgresql:// URL, got one starting %r: a mistyped "
            "URL? (postgresql://user@host[:port]/database)" % start)
    assert db_url("fleet:2025.sqlite") == ("sqlite", "fleet:2025.sqlite")


def tether_ingest(*args):
    return subprocess.run([sys.executable, "-m", "firmware.cli", "ingest", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_postgresql_url_names_its_database_alike_with_or_without_its_password():
    # The ingest's default client id (its broker session) is made from it.
    from ingest.store.postgres import identity
    assert identity("postgresql://ingest:s3cr3t@127.0.0.1:5432/fleet") == identity(
        "postgresql://ingest@127.0.0.1:5432/fleet") == identity(
        "postgres://ingest@127.0.0.1:5432/fleet?password=x")
    assert "s3cr3t" not in identity("postgresql://ingest:s3cr3t@127.0.0.1:5432/fleet")
    assert identity("postgresql://ingest@127.0.0.1:5432/fleet") != identity(
        "postgresql://ingest@127.0.0.1:5432/other")
    # how to reach it is not which it is: sslmode (which the docs advise) or a timeout added
    # gave another client id, and the session the broker kept queuing for was stranded
    assert identity("postgresql://ingest@127.0.0.1:5432/fleet?sslmode=require&"
                    "connect_timeout=10&application_name=x") == identity(
        "postgresql://ingest@127.0.0.1:5432/fleet")
    assert identity("postgresql://ingest@127.0.0.1:5432/fleet?options=-csearch_path%3Dt") != (
        identity("postgresql://ingest@127.0.0.1:5432/fleet"))


@pytest.mark.parametrize("broker, db, says", [
    ("mqtt://:pw@127.0.0.1:1", "x.sqlite",
     "tether ingest: a broker URL with credentials needs a user name before '@': "
     "'mqtt://:***@127.0.0.1:1'\n"),
    ("mqtt://127.0.0.1:1", "mysql://db/x",
     "tether ingest: --db: expected a SQLite file or a postgresql:// URL, not a mysql:// URL: "
     "'mysql://db/x'\n"),
    ("mqtt://127.0.0.1:1", "{tmp}", "tether ingest: --db: {tmp} is a folder, not a SQLite file\n"),
    ("mqtt://127.0.0.1:1", "{tmp}/no/x.sqlite",
     "tether ingest: --db: there is no folder {tmp}/no to make x.sqlite in\n"),
])
def test_tether_ingest_refuses_a_bad_url_in_one_line(tmp_path, broker, db, says):
    proc = tether_ingest("--broker", broker, "--db", db.format(tmp=tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == says.format(tmp=tmp_path)


@pytest.mark.parametrize("option, value, says", [
    ("--client-id", "", "tether ingest: --client-id: empty (leave it out for a fixed id per "
     "process slot, or give --clean-session)\n"),
    ("--client-id", "x" * 70000, "tether ingest: --client-id: longer than MQTT's 65535 bytes\n"),
    ("--username", "u" * 70000, "tether ingest: --username: longer than MQTT's 65535 bytes\n"),
])
def test_tether_ingest_refuses_an_id_or_name_mqtt_cannot_carry_in_one_line(tmp_path, option,
                                                                           value, says):
    # paho's ValueError and struct.error came out as tracebacks
    proc = tether_ingest("--broker", "mqtt://127.0.0.1:1", "--db", str(tmp_path / "x.sqlite"),
                         option, value)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == says


def test_an_empty_client_id_with_a_clean_session_is_left_to_the_broker(tmp_path):
    # the broker makes one up for a clean session: only a persistent one needs the ingest's own
    proc = tether_ingest("--broker", "mqtt://127.0.0.1:1", "--db", str(tmp_path / "x.sqlite"),
                         "--client-id", "", "--clean-session")
    assert "--client-id" not in proc.stderr and "cannot connect" in proc.stderr, proc.stderr


def test_tether_ingest_refuses_a_db_or_ca_file_that_is_not_one_with_exit_2(tmp_path):
    # Both exited 1, as a broker that cannot be reached does: a service retried them for ever.
    text = tmp_path / "notes.txt"
    text.write_text("not a database, not a certificate\n")
    proc = tether_ingest("--broker", "mqtt://127.0.0.1:1", "--db", str(text))
    assert proc.returncode == 2
    assert proc.stderr == "tether ingest: --db: %s is not a SQLite database\n" % text
    proc = tether_ingest("--broker", "mqtts://127.0.0.1:1", "--ca", str(text), "--db",
                         str(tmp_path / "x.sqlite"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("tether ingest: TLS: cannot load the CA certificates %s: "
                                  % text), proc.stderr


def test_a_profile_refuses_credentials_in_its_broker_url(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("device: {id: p1}\nplatform: sim\nbuses: [{name: i2c0, type: i2c}]\n"
                       "sensors: [{name: power, driver: ina219, bus: i2c0}]\n"
                       "uplink: {broker: 'mqtt://user:pw@localhost'}\n")
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "check", str(profile)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert ("uplink.broker: expected a broker URL like 'mqtt://host:1883' or "
            "'mqtts://host:8883', got 'mqtt://user:pw@localhost'; put credentials in 'username' "
            "and 'password'") in proc.stdout + proc.stderr


def imported(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


@pytest.mark.parametrize("package, refused", [
    ("ingest", ("simulator", "firmware", "tests", "bench")),
    ("simulator", ("tests", "bench")),
    ("firmware", ("tests", "bench")),
    ("bench", ("tests",)),
])
def test_dependencies_run_one_way(package, refused):
    wrong = ["%s imports %s" % (path.relative_to(ROOT), name)
             for path in sorted((ROOT / package).rglob("*.py"))
             for name in imported(path) if name.split(".")[0] in refused]
    assert wrong == []
