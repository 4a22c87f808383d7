"""Mosquitto fixtures for every uplink test (loaded from tests/conftest.py as a pytest plugin).

- `mosquitto`: a plain anonymous broker on a free loopback port, stopped after the test.
- `mosquitto_factory(**options)`: a started broker with simulator.lab.mosquitto.Mosquitto's options
  (users, anonymous, acl, tls="server"|"mutual", persistence, log_type, extra_conf); TLS
  options pull in the session's certificates.
- `tls_files`: the session's throwaway CA, server and client certificates (simulator.lab.mosquitto.TLSFiles).

A missing mosquitto or openssl fails the test (never a skip). When a test fails, the logs of the
brokers it started are added to its report.
"""
import pytest

from simulator.lab.mosquitto import Mosquitto, ToolMissing, make_tls_files, require_tool


@pytest.fixture(scope="session")
def mosquitto_binary():
    try:
        return require_tool("mosquitto", "mosquitto")
    except ToolMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    try:
        openssl = require_tool("openssl", "openssl")
    except ToolMissing as exc:
        pytest.fail(str(exc))
    return make_tls_files(tmp_path_factory.mktemp("tls"), openssl=openssl)


@pytest.fixture
def mosquitto_factory(request, tmp_path_factory, mosquitto_binary):
    made = []
    request.node._mosquittos = made

    def make(**options):
        if options.get("tls") and "tls_files" not in options:
            options["tls_files"] = request.getfixturevalue("tls_files")
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), binary=mosquitto_binary,
                           **options)
        made.append(broker)
        try:
            broker.start()
        except RuntimeError as exc:
            pytest.fail(str(exc))
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory):
    return mosquitto_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for i, broker in enumerate(getattr(item, "_mosquittos", ())):
            text = broker.log()
            if len(text) > 20000:
                text = "...\n" + text[-20000:]
            report.sections.append(("mosquitto %d log (port %s)" % (i, broker.port), text))
