"""`tether logs` against the fake board's pty: the console shown line by line, and followed across
a reset that takes the port away and brings it back."""
import io
import threading
import time

import pytest
import serial

from firmware import cli, logs
from simulator.lab.fakeboard import FakeBoard

WAIT = 10.0    # liveness only: every wait ends as soon as its text is there


class Stream(io.TextIOBase):
    """A text stream a test can wait on."""

    def __init__(self):
        self.text = ""
        self.changed = threading.Condition()

    def write(self, s):
        with self.changed:
            self.text += s
            self.changed.notify_all()
        return len(s)

    def wait_for(self, needle, count=1):
        with self.changed:
            ok = self.changed.wait_for(lambda: self.text.count(needle) >= count, timeout=WAIT)
        assert ok, "never saw %r in %r" % (needle, self.text)


def start_logs(port, **kw):
    out, err = Stream(), Stream()
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "code", logs.follow(port, out, err, stop=stop.is_set, retry=0.02, **kw)), daemon=True)
    thread.start()
    return out, err, stop, thread, result


def test_logs_shows_the_console_and_follows_it_across_a_reset(tmp_path):
    with FakeBoard(tmp_path / "board") as board:
        out, err, stop, thread, result = start_logs(board.port, stamps=False)
        err.wait_for("Ctrl-C to quit")
        board.console(b"I (1234) sampler: 7 channels\nhalf a li")
        out.wait_for("7 channels\n")
        board.console(b"ne\n")
        out.wait_for("half a line\n")
        board.unplug()
        err.wait_for("went away (the board reset?)")
        board.plug()
        err.wait_for("is back")
        board.boot_banner()
        board.console(b"MPY: soft reboot\nafter the reset\n")
        out.wait_for("after the reset\n")
        stop.set()
        thread.join(WAIT)
        assert result["code"] == 0
        assert out.text == ("I (1234) sampler: 7 channels\nhalf a line\n"
                            "ets Jun  8 2016 00:22:57\n\nrst:0x1 (POWERON_RESET),boot:0x13\n"
                            "MicroPython v1.29.0 on 2026-01-01; Fake ESP32 module with ESP32\n"
                            "MPY: soft reboot\nafter the reset\n")
        assert board.bytes_in == 0           # it only listens


def test_ctrl_c_ends_logs_with_exit_0(tmp_path):
    with FakeBoard(tmp_path / "board") as board:
        calls = []

        def stop():
            calls.append(1)
            if len(calls) > 3:
                raise KeyboardInterrupt
            return False

        out = io.StringIO()
        assert logs.follow(board.port, out, io.StringIO(), stop=stop) == 0


def test_logs_no_such_port_and_busy_port(tmp_path, capsys):
    assert cli.main(["logs", "--port", str(tmp_path / "nope")]) == logs.EXIT_NO_PORT == 3
    assert "tether logs: no such port: %s" % (tmp_path / "nope") in capsys.readouterr().err
    with FakeBoard(tmp_path / "board") as board:
        holder = serial.Serial(board.port, 115200, exclusive=True)
        try:
            err = io.StringIO()
            assert logs.follow(board.port, io.StringIO(), err) == logs.EXIT_PORT_BUSY == 4
            assert "is busy" in err.getvalue()
        finally:
            holder.close()


def test_each_line_carries_the_time_its_first_byte_came():
    out = io.StringIO()
    clock = iter([time.struct_time((2026, 12, 3, 8, 30, s, 0, 0, 0)) for s in range(10)])
    console = logs.Console(out, now=lambda: next(clock))
    console.feed(b"boot\r\nsampl")
    console.feed(b"er up\r\n\r\n")
    console.end_line()
    assert out.getvalue() == "[08:30:00] boot\n[08:30:01] sampler up\n[08:30:02] \n"


def test_a_boards_control_characters_are_shown_not_sent_to_the_terminal():
    # An escape sequence from the board retitled the terminal, moved its cursor, hid text.
    import io

    from firmware.logs import Console
    out = io.StringIO()
    Console(out, stamps=False).feed(b"ok\x1b]0;pwned\x07 done\r\nnext\tline\x7f\n")
    assert out.getvalue() == "ok\\x1b]0;pwned\\x07 done\nnext\tline\\x7f\n"


@pytest.mark.parametrize("baud", ["2147483648", "12345678901", "0"])
def test_a_baud_rate_no_port_takes_is_a_usage_error_not_a_traceback(baud, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.build_parser()[0].parse_args(["logs", "--port", "/dev/null", "--baud", baud])
    assert exit.value.code == 2
    assert "expected a whole number from 1 to 12000000" in capsys.readouterr().err
