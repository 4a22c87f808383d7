# A stand-in for MicroPython's `network` on an ESP32 (the WLAN station the board's entry point
# uses): the access point answers after `after` join attempts, or never (after = None).
# install() puts it in sys.modules["network"]. Runs under CPython and MicroPython.
import sys

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202

after = 0
rssi = -58
_wlans = {}


def install(joins_before_success=0):
    global after
    after = joins_before_success
    _wlans.clear()
    sys.modules["network"] = sys.modules[__name__]


def uninstall():
    sys.modules.pop("network", None)


class _WLAN:
    def __init__(self, interface):
        self.interface = interface
        self.on = False
        self.joined = False
        self.joins = []   # (ssid, password) per connect()

    def active(self, *on):
        if on:
            self.on = bool(on[0])
            return None
        return self.on

    def connect(self, ssid, key=None):
        if not self.on:
            raise OSError("Wifi Not Started")
        self.joins.append((ssid, key))
        self.joined = after is not None and len(self.joins) > after

    def disconnect(self):
        self.joined = False

    def isconnected(self):
        return self.joined

    def status(self, *param):
        if param:
            if param[0] != "rssi":
                raise ValueError("unknown status param")
            if not self.joined:
                raise OSError("not connected")
            return rssi
        if self.joined:
            return STAT_GOT_IP
        return STAT_NO_AP_FOUND if self.joins else STAT_IDLE

    def ifconfig(self):
        return ("192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1")

    def lose_link(self):
        """The access point went away (a test's doing)."""
        self.joined = False


def WLAN(interface=STA_IF):
    # Like MicroPython's: one object per interface.
    if interface not in _wlans:
        _wlans[interface] = _WLAN(interface)
    return _wlans[interface]
