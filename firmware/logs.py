"""`tether logs --port P`: the board's serial console, as `esphome logs` shows it: each line with
the time it arrived, following the board across resets (a USB board that resets takes its port
away and brings it back; the port is opened again as soon as it is there). Ctrl-C ends it.

HOST-ONLY (pyserial).
"""
import sys
import time

import serial

from firmware import rawrepl
from firmware.args import whole

EXIT_OK = 0
EXIT_NO_PORT = 3
EXIT_PORT_BUSY = 4


# Control characters but tab and newline, shown as \x.. escapes: a board's output must not drive
# the terminal it is shown in (escape sequences can retitle it, move the cursor, hide text).
_VISIBLE = {c: "\\x%02x" % c for c in list(range(32)) + [127] if c not in (9, 10)}


class Console:
    """Writes the board's bytes as lines, each prefixed with the time its first byte came."""

    def __init__(self, out, now=time.localtime, stamps=True):
        self.out = out
        self.now = now
        self.stamps = stamps
        self.at_line_start = True

    def feed(self, data):
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
        text = text.translate(_VISIBLE)
        pieces = []
        for part in text.splitlines(True):
            if self.at_line_start and self.stamps:
                pieces.append(time.strftime("[%H:%M:%S] ", self.now()))
            pieces.append(part)
            self.at_line_start = part.endswith("\n")
        self.out.write("".join(pieces))
        self.out.flush()

    def end_line(self):
        if not self.at_line_start:
            self.out.write("\n")
            self.at_line_start = True


def follow(port, out=None, err=None, baudrate=115200, retry=0.5, stop=None,
           opener=rawrepl.open_port, sleep=time.sleep, stamps=True, link=None, pending=b""):
    """Shows the console until stop() is true or Ctrl-C; returns the exit code. link: a port
    already open (tether flash --logs hands over its own, with the bytes it read ahead)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    console = Console(out, stamps=stamps)
    stop = stop or (lambda: False)
    if link is None:
        try:
            link = opener(port, baudrate)
        except rawrepl.NoPort as exc:
            err.write("tether logs: %s\n" % exc)
            return EXIT_NO_PORT
        except rawrepl.PortBusy as exc:
            err.write("tether logs: %s\n" % exc)
            return EXIT_PORT_BUSY
    err.write("--- %s at %d baud: Ctrl-C to quit ---\n" % (port, baudrate))
    err.flush()
    if pending:
        console.feed(pending)
    try:
        while not stop():
            if link is None:
                link = _reopen(port, baudrate, opener, err)
                if link is None:
                    sleep(retry)
                continue
            try:
                data = link.read(max(1, link.in_waiting))
            except (OSError, serial.SerialException):
                console.end_line()
                err.write("--- %s went away (the board reset?): waiting for it ---\n" % port)
                err.flush()
                _close(link)
                link = None
                continue
            if data:
                console.feed(data)
    except KeyboardInterrupt:
        pass
    finally:
        console.end_line()
        if link is not None:
            _close(link)
    return EXIT_OK


def _reopen(port, baudrate, opener, err):
    try:
        link = opener(port, baudrate)
    except rawrepl.ReplError:
        return None
    err.write("--- %s is back ---\n" % port)
    err.flush()
    return link


def _close(link):
    try:
        link.close()
    except (OSError, serial.SerialException):
        pass


def add_command(sub):
    p = sub.add_parser("logs", help="show a board's serial console, following it across resets",
                       description="Shows what the board prints on its serial console, each "
                       "line with the time it arrived; the port is opened again whenever the "
                       "board resets. Ctrl-C ends it (exit 0). Exit 3: no such port; 4: busy.")
    p.add_argument("--port", metavar="PORT", help="e.g. /dev/ttyUSB0 (default: the only USB "
                   "serial port there is)")
    # 12 Mbaud: the fastest USB-serial bridges (pyserial overflows past 2**31)
    p.add_argument("--baud", type=whole(1, 12000000), default=115200,
                   help="baud rate (default 115200)")
    p.add_argument("--no-time", action="store_true", help="do not prefix lines with the time")
    p.set_defaults(func=main)


def main(args, out=None, err=None):
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    port = args.port
    if port is None:
        from firmware import ports
        try:
            port, how = ports.board_port()
        except rawrepl.NoPort as exc:
            err.write("tether logs: %s\n" % exc)
            return EXIT_NO_PORT
        err.write("port %s, %s\n" % (port, how))
    return follow(port, out, err, baudrate=args.baud, stamps=not args.no_time)
