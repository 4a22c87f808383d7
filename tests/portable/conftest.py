import ast
import pathlib
import sys

# Portable tests import their helpers as top-level modules, as they do under MicroPython.
HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))


def _micropython_only(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MICROPYTHON_ONLY" for t in node.targets):
            return bool(ast.literal_eval(node.value))
    return False


# Modules that need MicroPython's own parts (os.VfsLfs2) run only through the MicroPython harness.
collect_ignore = [p.name for p in HERE.glob("test_*.py") if _micropython_only(p)]
