"""The store's shared dialect (ingest/store/__init__.py): the SQL that the handlers, repair and the
queries run is written once for every backend, so none of it may be SQLite's alone."""
import ast
import pathlib

import pytest

from ingest.store import open_store

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ["ingest/handlers.py", "ingest/repair.py", "ingest/queries.py", "ingest/subscriber.py"]
SQLITE_ONLY = ["INSERT OR", "BEGIN IMMEDIATE", "PRAGMA", "WITHOUT ROWID", "json_extract",
               "executescript", "sqlite_master", "AUTOINCREMENT"]


def strings(path):
    return [node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def scalar_max_or_min(sql):
    """max(a, b) or min(a, b) calls (SQLite's scalar forms; aggregates take one argument)."""
    found = []
    low = sql.lower()
    for name in ("max(", "min("):
        start = low.find(name)
        while start != -1:
            depth, i = 1, start + len(name)
            while i < len(low) and depth:
                if low[i] == "(":
                    depth += 1
                elif low[i] == ")":
                    depth -= 1
                elif low[i] == "," and depth == 1:
                    found.append(sql[start:i + 1])
                    break
                i += 1
            start = low.find(name, start + 1)
    return found


@pytest.mark.parametrize("module", SHARED)
def test_the_shared_sql_has_nothing_of_sqlite_alone(module):
    wrong = [(s, bad) for s in strings(ROOT / module) for bad in SQLITE_ONLY if bad in s]
    wrong += [(s, call) for s in strings(ROOT / module) for call in scalar_max_or_min(s)
              if "SELECT" in s or "UPDATE" in s or "INSERT" in s]
    assert wrong == []


def test_the_shared_sql_is_translated_to_sqlite():
    store = open_store(":memory:")
    try:
        assert store.execute("SELECT greatest(2, 5), least(2, 5), max(x) FROM "
                             "(SELECT 1 AS x)").fetchone() == (5, 2, 1)
    finally:
        store.close()



def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused_naming_the_folder(tmp_path):
    from ingest.store import StoreError
    folder = tmp_path / "not-made"
    path = folder / "fleet.sqlite"
    with pytest.raises(StoreError) as info:
        open_store(str(path))
    assert str(info.value) == "%s: there is no folder %s to make it in" % (path, folder)
    assert not folder.exists()


def _open_when_all_are_ready(path, barrier, results):
    from ingest.store import sqlite
    barrier.wait()
    try:
        sqlite.connect(path).close()
        results.put("opened")
    except Exception as exc:  # noqa: BLE001 - said to the test
        results.put("%s: %s" % (type(exc).__name__, exc))


def test_ingests_opening_a_new_sqlite_file_together_all_open_it(tmp_path):
    """Processes of one group started at once on a new file: SQLite refuses the switch to WAL
    at once while another holds the file (no busy timeout); each waits its turn instead."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")  # each process ready to open, then all at once
    for round_ in range(6):
        path = str(tmp_path / ("fleet-%d.sqlite" % round_))
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_when_all_are_ready, args=(path, barrier, results))
                 for _ in range(3)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(60)
        assert outcomes == ["opened"] * 3, outcomes
