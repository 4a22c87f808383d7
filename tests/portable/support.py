# Helpers that portable tests share under CPython and MicroPython.
import os

_count = [0]

# An ESP32's MicroPython computes in single precision (its MICROPY_FLOAT_IMPL_FLOAT), as a unix
# build made so does (docs/esp32.md, Floats); the venv's binary and CPython in double.
FLOAT32 = float(16777217) == 16777216.0


def tmpdir():
    """A new empty folder: under TETHER_TEST_TMP (set by the MicroPython harness) or tempfile's."""
    base = os.getenv("TETHER_TEST_TMP")
    if base is None:
        import tempfile
        return tempfile.mkdtemp(prefix="tether-")
    _count[0] += 1
    path = "%s/t%d" % (base, _count[0])
    os.mkdir(path)
    return path


def raises(exc_type, fn, *args):
    """Calls fn(*args), asserts it raises exc_type, returns the exception."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%s was not raised" % exc_type.__name__)
