"""`tether decode` of compact batches whose schema is not in the file: the schema document a
device publishes (--schema FILE) or the schemas an ingest stored (--db)."""
import json
import subprocess
import sys
import time

import pytest

from agent import cbor_decode
from agent.schema import Schema
from simulator import reference
from ingest import connect_db

PROFILE = "examples/reference-printer.yaml"


def tether(*args):
    return subprocess.run([sys.executable, "-m", "firmware.cli"] + list(args),
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A compact batch file, split into the schema document and the batches as they travel."""
    folder = tmp_path_factory.mktemp("decode")
    readings = folder / "readings.jsonl"
    reference.write(str(readings), hours=1)
    whole = folder / "whole.cbor"
    proc = tether("encode", "--profile", PROFILE, "--encoding", "compact", str(readings),
                  "-o", str(whole))
    assert proc.returncode == 0, proc.stderr
    data = whole.read_bytes()
    r = cbor_decode.Reader(data)
    r.item()
    (folder / "schema.cbor").write_bytes(data[:r.pos])  # what .../up/schema carries
    (folder / "batches.cbor").write_bytes(data[r.pos:])
    expected = tether("decode", str(whole)).stdout
    assert len(expected.splitlines()) == 360 * 7
    return folder, expected


def test_without_its_schema_a_compact_batch_is_refused_with_a_hint(files):
    folder, _ = files
    proc = tether("decode", str(folder / "batches.cbor"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("tether decode: %s: at byte " % (folder / "batches.cbor"))
    assert proc.stderr.endswith("give its schema with --schema FILE or --db INGEST.sqlite\n")


def test_schema_option_decodes_batches_with_the_published_schema_document(files):
    folder, expected = files
    proc = tether("decode", "--schema", str(folder / "schema.cbor"), str(folder / "batches.cbor"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
    # A batch file that starts with its schema serves as well.
    proc = tether("decode", "--schema", str(folder / "whole.cbor"), str(folder / "batches.cbor"))
    assert proc.stdout == expected


def test_db_option_takes_the_schemas_an_ingest_stored(files, tmp_path):
    folder, expected = files
    doc = (folder / "schema.cbor").read_bytes()
    schema = Schema.from_cbor(doc)
    path = tmp_path / "fleet.sqlite"
    db = connect_db(str(path))
    db.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) VALUES "
               "(?, ?, ?, ?)", (schema.id, doc, "[]", time.time()))
    db.close()
    proc = tether("decode", "--db", str(path), str(folder / "batches.cbor"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
    assert [json.loads(line)["n"] for line in proc.stdout.splitlines()[:2]] == ["energy", "ink_c"]


@pytest.mark.parametrize("option, content, says", [
    ("--schema", None, "--schema %(path)s: No such file or directory"),
    ("--schema", b"", "--schema %(path)s: holds no schema document"),
    ("--schema", b"\xa1\x01", "--schema %(path)s: not a schema document: "),
    ("--schema", b"\x82\x01\x02", "--schema %(path)s: holds no schema document"),
    ("--db", None, "--db: cannot open it: %(path)s: no such file"),
    ("--db", b"not a database", "--db %(path)s: not an ingest database with a schemas table"),
])
def test_a_bad_schema_source_is_a_clear_error(files, tmp_path, option, content, says):
    folder, _ = files
    path = tmp_path / "source"
    if content is not None:
        path.write_bytes(content)
    proc = tether("decode", option, str(path), str(folder / "batches.cbor"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("tether decode: " + says % {"path": path}), proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.exists() == (content is not None)  # a missing database is not made by reading


def test_a_schema_source_larger_than_a_schema_can_be_is_refused_unread(files):
    folder, _ = files
    proc = tether("decode", "--schema", "/dev/zero", str(folder / "batches.cbor"))
    assert proc.returncode == 2
    assert proc.stderr == ("tether decode: --schema /dev/zero: larger than 1 MiB, the limit for a "
                           "schema document\n")


@pytest.mark.parametrize("document", [10 ** 15, -1, "text"])
def test_a_db_schema_document_that_is_not_a_blob_is_a_clear_error(files, tmp_path, document):
    folder, _ = files
    path = tmp_path / "fleet.sqlite"
    db = connect_db(str(path))
    db.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) VALUES "
               "(?, ?, ?, ?)", (7, document, "[]", time.time()))
    db.close()
    proc = tether("decode", "--db", str(path), str(folder / "batches.cbor"))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("tether decode: --db %s: schema 7 does not decode: its document is "
                           "not a blob\n" % path)


@pytest.mark.parametrize("name", ["100%25.sqlite", "a%3f.sqlite", "what?.sqlite", "#1.sqlite"])
def test_db_option_opens_a_file_whose_name_looks_like_uri_escapes(files, tmp_path, name):
    folder, expected = files
    doc = (folder / "schema.cbor").read_bytes()
    path = tmp_path / name
    db = connect_db(str(path))
    db.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) VALUES "
               "(?, ?, ?, ?)", (Schema.from_cbor(doc).id, doc, "[]", time.time()))
    db.close()
    proc = tether("decode", "--db", str(path), str(folder / "batches.cbor"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
