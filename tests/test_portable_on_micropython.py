"""Runs every portable test (tests/portable) under the real MicroPython binary.

The same functions also run under CPython, collected by pytest directly from tests/portable.
"""
import pytest

from tests.conftest import portable_tests


@pytest.mark.parametrize("module,function,heap", portable_tests())
def test_portable_under_micropython(micropython, tmp_path, module, function, heap):
    proc = micropython.run(["-m", "mprun", module, function], heap=heap,
                           env={"TETHER_TEST_TMP": str(tmp_path)})
    if proc.returncode != 0 or "PASS" not in proc.stdout:
        pytest.fail("under micropython -X heapsize=%s:\n%s%s" % (heap, proc.stdout, proc.stderr),
                    pytrace=False)
