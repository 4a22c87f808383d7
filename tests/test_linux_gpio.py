"""The Linux GPIO backend with the real gpiod (v2) Python package, faked below its C extension.

gpiod's Python layer (Chip, request_lines, LineSettings, LineRequest, the enums) runs for real;
only the objects of its C extension `gpiod._ext` that talk to the kernel (Chip, LineConfig,
LineSettings, Request) are replaced by a fake Raspberry Pi 4 pin controller: a chip labelled
"pinctrl-bcm2711" with 58 lines whose levels follow outputs, bias and an external drive. The
settings the backend asks for are read back as the integer codes gpiod hands to the kernel.
"""
import errno
import os
import sys

import pytest

if sys.platform.startswith("linux"):
    import gpiod  # the `rpi` extra; also in `test`: a missing gpiod fails here, on Linux
    from gpiod import _ext
    from gpiod.line import Value
else:  # gpiod (libgpiod) exists only for Linux
    pytest.skip("the GPIO character device exists only on Linux", allow_module_level=True)

from hal.linux import LinuxPlatform
from hal.linux.gpio import find_chip


class FakeExtLineSettings:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeExtLineConfig:
    def __init__(self):
        self.settings = {}
        self.output_values = None

    def add_line_settings(self, offsets, settings):
        for offset in offsets:
            self.settings[offset] = settings.kwargs

    def set_output_values(self, values):
        self.output_values = values


class FakeBoard:
    """The kernel's view: chips by path, lines held by requests, levels on the wires."""

    def __init__(self):
        self.chips = {"/dev/gpiochip0": ("gpiochip0", "pinctrl-bcm2711", 58),
                      "/dev/gpiochip1": ("gpiochip1", "raspberrypi-exp-gpio", 8)}
        self.requests = []       # (path, consumer, {offset: settings}) in request order
        self.held = {}           # (path, offset) -> consumer
        self.outputs = {}        # (path, offset) -> 0/1 driven by us
        self.external = {}       # (path, offset) -> 0/1 driven by the outside world
        self.bias = {}
        self.denied = {}         # path -> the errno opening it fails with (EACCES, EPERM)

    def level(self, key):
        if key in self.outputs:
            return self.outputs[key]
        if key in self.external:
            return self.external[key]
        return 1 if self.bias.get(key) == _ext.BIAS_PULL_UP else 0


class FakeExtRequest:
    def __init__(self, board, path, offsets):
        self.board = board
        self.path = path
        self._offsets = offsets
        self.released = False

    chip_name = property(lambda self: self.board.chips[self.path][0])
    offsets = property(lambda self: list(self._offsets))

    def get_values(self, offsets, values):
        assert not self.released
        for i, offset in enumerate(offsets):
            assert offset in self._offsets
            level = self.board.level((self.path, offset))
            values[i] = Value.ACTIVE if level else Value.INACTIVE

    def set_values(self, values):
        assert not self.released
        for offset, value in values.items():
            key = (self.path, offset)
            if key not in self.board.outputs:
                raise PermissionError(errno.EPERM, "Operation not permitted")
            self.board.outputs[key] = 1 if value == Value.ACTIVE else 0

    def release(self):
        self.released = True
        for offset in self._offsets:
            self.board.held.pop((self.path, offset), None)


def fake_ext_chip(board):
    class FakeExtChip:
        def __init__(self, path):
            if path not in board.chips:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            if path in board.denied:
                raise PermissionError(board.denied[path], os.strerror(board.denied[path]))
            self.path = path

        def get_info(self):
            return gpiod.ChipInfo(*board.chips[self.path])

        def get_line_name(self, offset):
            return "GPIO%d" % offset

        def line_offset_from_id(self, id):
            raise OSError(errno.ENOENT, "No such file or directory")

        def request_lines(self, line_cfg, consumer, event_buffer_size):
            offsets = list(line_cfg.settings)
            for offset in offsets:
                if (self.path, offset) in board.held:
                    raise OSError(errno.EBUSY, "Device or resource busy")
            for offset, settings in line_cfg.settings.items():
                key = (self.path, offset)
                board.held[key] = consumer
                if settings["direction"] == _ext.DIRECTION_OUTPUT:
                    board.outputs[key] = 1 if settings["output_value"] == _ext.VALUE_ACTIVE else 0
                else:
                    board.outputs.pop(key, None)
                    board.bias[key] = settings["bias"]
            board.requests.append((self.path, consumer, dict(line_cfg.settings)))
            return FakeExtRequest(board, self.path, offsets)

        def close(self):
            pass

    return FakeExtChip


@pytest.fixture
def board(monkeypatch):
    fake = FakeBoard()
    monkeypatch.setattr(_ext, "Chip", fake_ext_chip(fake))
    monkeypatch.setattr(_ext, "LineConfig", FakeExtLineConfig)
    monkeypatch.setattr(_ext, "LineSettings", FakeExtLineSettings)
    return fake


def test_linux_gpio_finds_the_pi_pin_controller_by_its_label(board):
    # Pi 4: the pin controller is gpiochip0, the firmware's expander gpiochip1
    assert find_chip(gpiod, ["/dev/gpiochip1", "/dev/gpiochip0"]) == "/dev/gpiochip0"
    # Pi 5 with an older kernel: the header's RP1 is gpiochip4, after the SoC's own chips
    board.chips = {"/dev/gpiochip0": ("gpiochip0", "gpio-brcmstb@107d508500", 32),
                   "/dev/gpiochip4": ("gpiochip4", "pinctrl-rp1", 54)}
    assert find_chip(gpiod, ["/dev/gpiochip0", "/dev/gpiochip3", "/dev/gpiochip4"]) == \
        "/dev/gpiochip4"


def test_linux_gpio_without_a_pi_controller_is_a_clear_error(board):
    board.chips = {"/dev/gpiochip0": ("gpiochip0", "gpio-sim", 8)}
    with pytest.raises(OSError) as info:
        find_chip(gpiod, ["/dev/gpiochip0"])
    assert info.value.errno == errno.ENODEV
    assert "pinctrl-bcm2711" in str(info.value) and "gpio-sim" in str(info.value)


def test_linux_gpio_searches_dev_gpiochip_files(board, monkeypatch):
    import hal.linux.gpio as linux_gpio

    monkeypatch.setattr(linux_gpio.glob, "glob",
                        lambda pattern: ["/dev/gpiochip1", "/dev/gpiochip0"])
    platform = LinuxPlatform()
    pin = platform.pin_in(4)
    assert pin.chip == "/dev/gpiochip0"
    assert board.requests[0][0] == "/dev/gpiochip0"


def test_linux_gpio_input_pin_requests_input_with_the_pull_asked_for(board):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    plain = platform.pin_in(5)
    up = platform.pin_in(6, pull="up")
    down = platform.pin_in(13, pull="down")
    settings = {offset: s for _, _, req in board.requests for offset, s in req.items()}
    assert [(o, settings[o]["direction"], settings[o]["bias"]) for o in (5, 6, 13)] == [
        (5, _ext.DIRECTION_INPUT, _ext.BIAS_AS_IS),
        (6, _ext.DIRECTION_INPUT, _ext.BIAS_PULL_UP),
        (13, _ext.DIRECTION_INPUT, _ext.BIAS_PULL_DOWN)]
    assert [consumer for _, consumer, _ in board.requests] == ["tether"] * 3
    assert (up.value(), down.value()) == (1, 0)
    board.external[("/dev/gpiochip0", 5)] = 1
    board.external[("/dev/gpiochip0", 6)] = 0
    assert (plain.value(), up.value()) == (1, 0)


def test_linux_gpio_output_pin_starts_at_its_value_and_follows_value_v(board):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    sck = platform.pin_out(17, value=1)
    assert board.requests[0][2][17]["direction"] == _ext.DIRECTION_OUTPUT
    assert board.requests[0][2][17]["output_value"] == _ext.VALUE_ACTIVE
    assert board.outputs[("/dev/gpiochip0", 17)] == 1
    assert sck.value(0) is None
    assert board.outputs[("/dev/gpiochip0", 17)] == 0 and sck.value() == 0
    sck.value(True)
    assert board.outputs[("/dev/gpiochip0", 17)] == 1 and sck.value() == 1
    sck.off()
    assert board.outputs[("/dev/gpiochip0", 17)] == 0 and sck() == 0
    sck.on()
    assert board.outputs[("/dev/gpiochip0", 17)] == 1
    sck(0)
    assert board.outputs[("/dev/gpiochip0", 17)] == 0
    low = platform.pin_out(27)
    assert board.requests[1][2][27]["output_value"] == _ext.VALUE_INACTIVE and low.value() == 0


def test_linux_gpio_chip_denied_says_which_group_or_that_the_service_unit_denies_it(board):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    board.denied["/dev/gpiochip0"] = errno.EACCES
    with pytest.raises(OSError) as info:
        platform.pin_in(5)
    assert info.value.errno == errno.EACCES
    assert str(info.value).endswith(": run as a member of the 'gpio' group")
    board.denied["/dev/gpiochip0"] = errno.EPERM
    with pytest.raises(OSError) as info:
        platform.pin_in(5)
    assert info.value.errno == errno.EPERM and "GPIO 5 on /dev/gpiochip0" in str(info.value)
    assert "only the device files its unit allows (DeviceAllow=)" in str(info.value)


def test_linux_gpio_line_in_use_says_so(board):
    board.held[("/dev/gpiochip0", 18)] = "w1-gpio"
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    with pytest.raises(OSError) as info:
        platform.pin_in(18)
    assert info.value.errno == errno.EBUSY
    assert "GPIO 18" in str(info.value) and "another program" in str(info.value)


def test_linux_gpio_close_releases_every_line(board):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    platform.pin_in(22)
    platform.pin_out(23)
    assert set(board.held) == {("/dev/gpiochip0", 22), ("/dev/gpiochip0", 23)}
    platform.close()
    assert board.held == {}
    again = platform.pin_in(22)  # released lines can be requested again
    assert again.value() == 0


def test_linux_gpio_refuses_a_bad_pull_and_a_bad_pin_number(board):
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    with pytest.raises(ValueError):
        platform.pin_in(4, pull="sideways")
    with pytest.raises(ValueError):
        platform.pin_in(-1)
    with pytest.raises(ValueError):
        platform.pin_in(99)  # gpiod: beyond the chip's 58 lines
    assert board.requests == []


def test_linux_has_no_adc_and_says_to_use_an_ads1115():
    with pytest.raises(ValueError) as info:
        LinuxPlatform().adc(26)
    assert "ADS1115" in str(info.value) and "adc:" in str(info.value)


def test_linux_gpio_without_gpiod_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)
    platform = LinuxPlatform(gpiochip="/dev/gpiochip0")
    with pytest.raises(ImportError) as info:
        platform.pin_in(4)
    assert "pip install 'gpiod>=2'" in str(info.value)


def test_a_gpio_chip_missing_at_start_fails_its_sensors_and_is_tried_again(board, monkeypatch):
    # No /dev/gpiochip* yet (a Pi still booting): the agent stopped with exit 2, which its
    # unit never restarts. Now its chip's sensors fail, and a later setup finds the chip.
    import hal.linux.gpio as linux_gpio
    from hal.board import drivers
    from hal.unopened import BusError
    found = []
    monkeypatch.setattr(linux_gpio.glob, "glob", lambda pattern: list(found))
    profile = {"buses": [], "sensors": [
        {"name": "weight", "driver": "hx711", "quantity": "weight", "pins": {"dout": 5, "sck": 6},
         "gain": 128, "calibration": {"tare": 0, "scale": 1, "pill_weight": None}}]}
    platform = LinuxPlatform()
    # The pulses timed on a clock of the test's: on the wall clock a loaded machine stretched
    # one past the chip's 60 us, and the read was put down to that, not to the line
    platform.ticks_us = lambda: 0
    (scale,) = drivers(profile, platform)
    with pytest.raises(BusError) as info:
        scale.setup()
    assert "no GPIO character device (/dev/gpiochip*)" in str(info.value)
    found.append("/dev/gpiochip0")
    from hal.bus import SensorError
    with pytest.raises(SensorError) as info:   # the chip's own answer now: no load cell here
        scale.setup()
    assert not isinstance(info.value, BusError) and "DOUT" in str(info.value)
    assert sorted(line for _, line in board.held) == [5, 6]


def test_a_chip_built_again_after_its_second_pin_failed_gets_its_first_back(board):
    board.held[("/dev/gpiochip0", 6)] = "w1-gpio"     # sck held by another program
    from hal.board import Wiring
    from hal.unopened import BusError
    wiring = Wiring({"buses": []}, LinuxPlatform(gpiochip="/dev/gpiochip0"))
    dout = wiring.pin_in(5)
    with pytest.raises(BusError):
        wiring.pin_out(6)
    del board.held[("/dev/gpiochip0", 6)]
    assert wiring.pin_in(5) is dout          # not "GPIO 5 is in use by another program"
    wiring.pin_out(6)
