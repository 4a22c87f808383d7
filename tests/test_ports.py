"""`tether flash` and `tether logs` without --port: the one USB serial port there is, or a clear
refusal that lists them (a wrong guess would flash another board)."""
import io
import json
import pathlib

import pytest
from serial.tools.list_ports_common import ListPortInfo

from firmware import cli, flash, logs, ports
from simulator.lab.bundles import write_bundle
from simulator.lab.fakeboard import FakeBoard


def usb(device, description="CP2102 USB to UART Bridge Controller", manufacturer="Silicon Labs"):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid = 0x10C4, 0xEA60
    p.description, p.manufacturer = description, manufacturer
    return p


def builtin(device):
    return ListPortInfo(device, skip_link_detection=True)   # a UART of the machine's own: no vid


@pytest.fixture
def listed(monkeypatch):
    found = []
    monkeypatch.setattr(ports.list_ports, "comports", lambda: list(found))
    return found


def run(command, *args, **kw):
    out, err = io.StringIO(), io.StringIO()
    parser, _ = cli.build_parser()
    code = command.main(parser.parse_args(list(args)), out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_the_only_usb_serial_port_is_the_boards_and_the_machines_own_uarts_are_not(listed):
    listed += [builtin("/dev/ttyS0"), usb("/dev/ttyUSB0"), builtin("/dev/ttyAMA0")]
    assert ports.board_port() == (
        "/dev/ttyUSB0", "the only USB serial port (CP2102 USB to UART Bridge Controller, "
                        "Silicon Labs)")


def test_several_usb_serial_ports_are_listed_and_none_is_guessed(listed):
    listed += [usb("/dev/ttyUSB1"), usb("/dev/ttyACM0", "USB JTAG/serial debug unit", "Espressif")]
    with pytest.raises(ports.NoPort) as e:
        ports.board_port()
    assert str(e.value) == (
        "2 USB serial ports: /dev/ttyACM0 (USB JTAG/serial debug unit, Espressif), /dev/ttyUSB1 "
        "(CP2102 USB to UART Bridge Controller, Silicon Labs); give the board's with --port")


def test_flash_without_port_copies_onto_the_only_usb_serial_port(tmp_path, listed):
    files = {"main.py": b"print('hi')\n", "profile.json": json.dumps({"v": 1}).encode(),
             "secrets.json": b"{}"}
    write_bundle(tmp_path / "b", files)
    with FakeBoard(tmp_path / "board") as board:
        listed.append(usb(board.port, "USB Single Serial", "QinHeng Electronics"))
        code, out, err = run(flash, "flash", "--bundle", str(tmp_path / "b"))
        assert (code, err) == (0, ""), out
        assert out.startswith("port %s, the only USB serial port (USB Single Serial, QinHeng "
                              "Electronics)\n" % board.port)
        assert board.file("main.py") == files["main.py"]


def test_flash_without_port_and_no_board_is_exit_3_before_anything_is_built(tmp_path, listed):
    listed.append(builtin("/dev/ttyS0"))
    printer = pathlib.Path(__file__).resolve().parent.parent / "examples" / "printer.yaml"
    code, out, err = run(flash, "flash", str(printer), "--build-dir", str(tmp_path / "build"))
    assert code == flash.EXIT_NO_PORT == 3
    assert err == ("tether flash: no USB serial port found: is the board plugged in, with a "
                   "data cable (some only charge)? Give its port with --port\n")
    assert not (tmp_path / "build").exists()


def test_logs_without_port_and_two_boards_is_exit_3_naming_both(listed):
    listed += [usb("/dev/ttyUSB0"), usb("/dev/ttyUSB1")]
    code, out, err = run(logs, "logs")
    assert code == logs.EXIT_NO_PORT == 3 and out == ""
    assert err.startswith("tether logs: 2 USB serial ports: /dev/ttyUSB0 (") and (
        "/dev/ttyUSB1 (" in err)
