"""A schema id is a CRC-32 of its document: it names a schema, it does not vouch for it. A
device could forge a document with another product's id (a security review did, with invisible
characters in a unit); the ingest keeps the schema stored first and refuses a different one of
the same id, said in `malformed`, so a forgery never replaces a schema in use (docs/ingest.md)."""
from agent.schema import Schema
from ingest import decode
from ingest.store import open_store
from ingest.subscriber import Ingest
from tests import test_ingest_groups
from tests.test_ingest_groups import msg

db_url = test_ingest_groups.db_url  # the fixture: a SQLite file, and a PostgreSQL database

REAL = Schema([("ink_c", "%", 1, -1), ("power", "W", 1, -1)])
FORGED = Schema([("power", "W", 1, 0), ("ink_c", "%", 1, -1)])


def test_a_different_schema_with_a_known_id_is_refused_and_changes_nothing(db_url, monkeypatch):
    url = db_url("collision")
    i = Ingest("127.0.0.1", 1, url, repair=False)
    i.client_id = "collision"
    i._db = open_store(url)
    real = decode.schema

    def same_id(payload):  # a CRC-32 collision, without the hours of forging one here
        s = real(payload)
        s._id = REAL.id
        return s
    monkeypatch.setattr(decode, "schema", same_id)
    try:
        i._commit([msg("printer-1", "schema", REAL.to_cbor(), 0)], False)
        i._commit([msg("evil-1", "schema", FORGED.to_cbor(), 1)], False)
        reasons = [r for (r,) in i._db.execute("SELECT reason FROM malformed").fetchall()]
        stored = i._db.execute("SELECT schema_id, channels FROM schemas").fetchall()
        bound = dict(i._db.execute("SELECT device, schema_id FROM devices").fetchall())
    finally:
        i._db.close()
    assert len(reasons) == 1 and reasons[0].startswith(
        "schema: its id %d is a different schema's, stored first" % REAL.id), reasons
    assert [row[0] for row in stored] == [REAL.id] and '"ink_c"' in stored[0][1].split(",")[0]
    assert i._schemas[REAL.id].channels == REAL.channels
    assert bound.get("printer-1") == REAL.id and bound.get("evil-1") is None
