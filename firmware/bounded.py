"""Reading the files and streams a user names, each kind with a size limit.

Without one, `tether check /dev/zero` or `cat /dev/zero | tether decode -` fills the memory and
dies with a MemoryError. With one, at most limit + 1 bytes are read and the error states the
limit, whatever the input is: a file, a device, a pipe.
"""
import errno
import os
import stat


class TooLarge(Exception):
    """str() reads like "larger than 256 KiB, the limit for a profile file", or
    "line 7: longer than 4 KiB, the limit for a line of readings"."""

    def __init__(self, limit, what, line=None):
        text = "larger than %s, the limit for %s" % (size_text(limit), what)
        if line is not None:
            text = "line %d: longer than %s, the limit for %s" % (line, size_text(limit), what)
        Exception.__init__(self, text)


def size_text(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return "%d %s" % (n // size, unit)
    return "%d bytes" % n


def read(path, limit, what):
    """The bytes of the file at path: OSError as open() raises it, TooLarge past limit."""
    if "\0" in path:  # open() raises ValueError for it
        raise OSError(errno.EINVAL, "a file name cannot hold a NUL character")
    # A named pipe's open() waits for a writer for ever (`tether check fifo` hung): opened without
    # waiting, then read as it comes; a pipe being written (`<(cat p.yaml)`, /dev/stdin) reads
    # whole, one nobody writes is said so. A device such as /dev/zero reads to the limit below.
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0        # open() says why
    if stat.S_ISSOCK(mode):
        raise OSError(errno.EINVAL, "a socket, not a file")
    if stat.S_ISFIFO(mode):
        import fcntl
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = read_stream(f, limit, what)
        if not data:
            raise OSError(errno.EINVAL, "a named pipe that nobody writes to")
        return data
    with open(path, "rb") as f:
        return read_stream(f, limit, what)


def read_stream(f, limit, what):
    data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(limit, what)
    return data


def lines(f, limit, line_limit, what, line_what):
    """Each line (bytes) of the binary stream f: TooLarge once the stream passes limit bytes,
    or a line passes line_limit (its number in the message)."""
    total = 0
    number = 0
    while True:
        line = f.readline(line_limit + 1)
        if not line:
            return
        number += 1
        total += len(line)
        if total > limit:
            raise TooLarge(limit, what)
        if len(line) > line_limit and not (len(line) == line_limit + 1 and line.endswith(b"\n")):
            raise TooLarge(line_limit, line_what, number)
        yield line
