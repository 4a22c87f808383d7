"""Which portable test modules run near the edge of their MICROPYTHON_HEAP.

    .venv/bin/python tests/heap_margins.py [module ...]

Runs each test function under micropython at its module's heap less 4k, 8k and 12k, and prints
those that fail at one of them: a module should pass at all three (tests/conftest.py says why).
Not a test: how small a heap passes is a figure of this machine's layout, not a behaviour.
"""
import ast
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from simulator.lab.micropython import compile_tree, find_tool  # noqa: E402

PORTABLE = ROOT / "tests" / "portable"
STEPS = (4, 8, 12)


def heap_of(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MICROPYTHON_HEAP" for t in node.targets):
            return int(ast.literal_eval(node.value).rstrip("k"))
    return 64


def main(names):
    built = tempfile.TemporaryDirectory()
    lib = str(compile_tree(pathlib.Path(built.name), extra_dirs=[PORTABLE]))
    binary = find_tool("micropython")
    jobs = []
    for path in sorted(PORTABLE.glob("test_*.py")):
        if names and path.stem not in names:
            continue
        tree = ast.parse(path.read_text())
        heap = heap_of(tree)
        jobs += [(path.stem, node.name, heap) for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]

    def passes(module, function, k):
        with tempfile.TemporaryDirectory() as scratch:
            env = dict(os.environ, MICROPYPATH=lib + ":.frozen", TETHER_TEST_TMP=scratch)
            proc = subprocess.run([binary, "-X", "heapsize=%dk" % k, "-m", "mprun", module,
                                   function], capture_output=True, text=True, cwd=lib, env=env)
        return "PASS" in proc.stdout

    def first_failure(job):
        module, function, heap = job
        for step in STEPS:
            if not passes(module, function, heap - step):
                return step
        return None

    thin = 0
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for (module, function, heap), step in zip(jobs, pool.map(first_failure, jobs)):
            if step is not None:
                thin += 1
                print("%s::%s at %dk fails at %dk" % (module, function, heap, heap - step))
    print("%d of %d test functions fail within %dk of their heap" % (thin, len(jobs), STEPS[-1]))


if __name__ == "__main__":
    main(sys.argv[1:])
