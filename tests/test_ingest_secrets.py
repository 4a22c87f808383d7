"""A database password never shows in what the commands print: ingest/url.py hide_password on
URLs whose password holds '/', '@' or a bad percent escape, and libpq's messages, which repeat
pieces of the URI, scrubbed before they are said (ingest/store/postgres.py)."""
import subprocess
import sys

import pytest

from ingest.url import hide_password

URLS = ["postgresql://tether:pa%zzs3cret@127.0.0.1:1/tether",
        "postgresql://tether:s3cret@[::1/tether",
        "postgresql://tether:s3/cret@127.0.0.1:1/tether",
        "postgresql://tether:s3@cret@127.0.0.1:1/tether",
        "postgresql://tether:s3c/r@et@[::1/tether"]


@pytest.mark.parametrize("url, shown", [
    ("postgresql://tether:s3/cret@db:5432/fleet", "postgresql://tether:***@db:5432/fleet"),
    ("postgresql://tether:s3@cret@db/fleet", "postgresql://tether:***@db/fleet"),
    ("postgresql://tether@s3cret@db/fleet", "postgresql://***@db/fleet"),
    ("postgresql://tether@db/fleet", "postgresql://tether@db/fleet"),
    ("postgresql://db/fleet?password=s3cret&x=1", "postgresql://db/fleet?password=***&x=1"),
    ("fleet.db", "fleet.db"),
])
def test_hide_password_hides_all_up_to_the_last_at_sign(url, shown):
    assert hide_password(url) == shown


@pytest.mark.parametrize("command", [["report"],
                                     ["ingest", "--broker", "mqtt://127.0.0.1:1"],
                                     ["simulate", "--devices", "1", "--duration", "1h"]])
def test_a_database_url_libpq_refuses_is_said_without_its_password(command):
    for url in URLS:
        proc = subprocess.run([sys.executable, "-m", "firmware.cli"] + command + ["--db", url],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode in (1, 2)
        [line] = proc.stderr.splitlines()
        assert line.startswith("tether %s: postgresql://" % command[0]), line
        out = proc.stdout + proc.stderr
        for piece in ("s3", "cret", "zz", "r@et"):
            assert piece not in out, (url, out)
