# Which serial port a board is on, when `tether flash` or `tether logs` is given no --port: the
# one USB serial port there is, as `mpremote` connects to the first it finds; several are listed
# and refused (a wrong guess would flash another board), none is said so. HOST-ONLY.
from serial.tools import list_ports

from firmware.rawrepl import NoPort


def _about(p):
    """' (CP2102 USB to UART Bridge Controller, Silicon Labs)', or ''."""
    about = [x for x in (p.description, p.manufacturer) if x and x != "n/a" and x != p.device]
    return " (%s)" % ", ".join(about) if about else ""


def board_port():
    """(port, how it was found) of the only USB serial port; NoPort (exit 3) otherwise."""
    usb = sorted((p for p in list_ports.comports() if p.vid is not None), key=lambda p: p.device)
    if len(usb) == 1:
        return usb[0].device, "the only USB serial port%s" % _about(usb[0])
    if not usb:
        raise NoPort("no USB serial port found: is the board plugged in, with a data cable "
                     "(some only charge)? Give its port with --port")
    raise NoPort("%d USB serial ports: %s; give the board's with --port"
                 % (len(usb), ", ".join(p.device + _about(p) for p in usb)))
