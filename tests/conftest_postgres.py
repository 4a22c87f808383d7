"""PostgreSQL fixtures (loaded from tests/conftest.py as a pytest plugin).

- `postgres`: one server for the whole session (starting one costs about a second).
- `postgres_url`: a fresh, empty database on that server for one test; its URL.
- `postgres_factory()`: a server of the test's own, stopped after it, for tests that restart or
  stop the server under their clients.

A missing server fails the test (never a skip: a green suite must mean PostgreSQL really ran).
When a test fails, the logs of the servers it used are added to its report.
"""
import uuid

import pytest

from simulator.lab.postgres import Postgres, PostgresMissing


def _server(**options):
    try:
        return Postgres(**options).start()
    except PostgresMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def postgres():
    server = _server()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(request, postgres):
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    request.node._postgres = [postgres]
    yield "postgresql://%s@%s:%d/%s" % (postgres.user, postgres.host, postgres.port, name)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


@pytest.fixture
def postgres_factory(request):
    made = []
    request.node._postgres = made

    def make(**options):
        server = _server(**options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for i, server in enumerate(getattr(item, "_postgres", ())):
            text = server.log()
            if len(text) > 20000:
                text = "...\n" + text[-20000:]
            report.sections.append(("postgres %d log (port %s)" % (i, server.port), text))
