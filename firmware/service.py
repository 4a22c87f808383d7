"""`tether install-service PROFILE`: the agent as a systemd service on a Raspberry Pi.

It compiles the profile (secrets included) to /etc/tether/DEVICE.json, readable by root alone,
writes /etc/systemd/system/tether-DEVICE.service, which runs `tether run` on it, then runs
`systemctl daemon-reload`, `enable` and `restart` (a service already running picks up the new
profile). `--dry-run` prints the unit instead; `--root DIR` writes both files under DIR and runs
no systemctl (packaging, tests). docs/raspberry-pi.md explains each line of the unit.

The unit runs the agent as a dynamic user (DynamicUser=): no account to create or keep, no
file on the system it can write but its state directory /var/lib/tether (the profile's default
buffer path), and the compiled profile, which holds the broker password and the client key,
reaches it as a credential (LoadCredential=) that only the service can read. It may open the
device files of the buses and GPIO pins the profile uses and no other.

Exit codes: 0 done; 1 systemctl failed (the files are written); 2 the profile or an option
(an invalid profile, not a Raspberry Pi profile, a template device id without --device, a
buffer outside /var/lib/tether or shared with another installed device, no GPIO chip found);
3 this machine (not root, no systemctl, a device group missing, tether installed where the
service cannot see it, a file that cannot be written).
"""
import grp
import json
import os
import posixpath
import shutil
import subprocess
import sys

from firmware.args import device_id, duration, gpiochip_path
from firmware.profile import add_allow_outside
from firmware.profile.schema import BUFFER_PATHS
from firmware.profile.units import format_duration
from hal.linux.platform import LinuxPlatform, device_file

PROFILE_DIR = "/etc/tether"
UNIT_DIR = "/etc/systemd/system"
STATE_DIR = "/var/lib/tether"   # StateDirectory=tether; the rpi default buffer.path is in it
CREDENTIAL = "profile.json"     # a .json name: `tether run` reads it as a compiled profile
# Agent.stop: up to 5 s for the uplink to deliver what waits, then the offline message and
# the DISCONNECT (the client gives up after its timeout), then the buffer is saved. 30 s covers
# that with room on a slow SD card; past it systemd kills the agent, which loses only what it
# had not saved: the buffer is power-cut safe.
TIMEOUT_STOP = "30s"
RESTART_SEC = "10s"
# An appliance has nobody to type `systemctl reset-failed`: an agent that stopped on what may pass
# (a full disk, a crash) is started again however often; one that stopped on what would fail
# again the same way (tether run's exit 2: the profile, a folder it may not use) is not. Five
# starts in ten minutes left a Pi whose disk was full for a minute failed for good.
NO_RESTART_EXIT = 2
# The Raspberry Pi OS groups that own the device files.
GROUPS = {"i2c": "i2c", "uart": "dialout", "gpio": "gpio"}
# Where a system hides files from the service (ProtectHome=yes).
HIDDEN = (("/home/", "ProtectHome=yes"), ("/root/", "ProtectHome=yes"),
          ("/run/user/", "ProtectHome=yes"), ("/tmp/", "PrivateTmp=yes"),
          ("/var/tmp/", "PrivateTmp=yes"))
INSTALL = ("`sudo python3 -m venv /opt/tether && sudo /opt/tether/bin/pip install "
           "'CHECKOUT[rpi]'` (CHECKOUT: the path of tether's source; tether is not on "
           "PyPI: the `tether-agent` there is another project)")


class ServiceError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class _Recorder(LinuxPlatform):
    """The Linux platform that opens nothing: it records the device files and pins the
    profile's drivers ask for, through the same code as `tether run` (hal/board.py)."""

    def __init__(self):
        super().__init__()
        self.buses = {}   # device file -> bus type
        self.pins = set()

    def i2c(self, bus):
        self.buses[device_file(bus)] = "i2c"
        return _Nothing()

    def uart(self, bus, timeout_ms=None):
        self.buses[device_file(bus)] = "uart"
        return _Nothing()

    def _pin(self, n, output, pull=None, value=0):
        self.pins.add(n)
        return _Nothing()


class _Nothing:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def devices_of(profile):
    """({device file: bus type} of the buses the profile's sensors use, set of GPIO pins).
    ValueError: a bus or pin the Pi does not have (as `tether run` would say)."""
    from hal.board import drivers
    recorder = _Recorder()
    drivers(profile, recorder)
    return recorder.buses, recorder.pins


def find_gpiochip():
    from hal.linux.gpio import find_chip, load_gpiod
    try:
        return find_chip(load_gpiod())
    except (ImportError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc  # no [Errno N]
        raise ServiceError(2, "tether install-service: the profile uses GPIO pins, and the "
                           "Pi's GPIO chip was not found: %s; give it with --gpiochip "
                           "/dev/gpiochipN" % why)


def check_gpiod():
    """ServiceError unless the GPIO bindings import: without them the service would stop at
    each start (--gpiochip names the chip, not the bindings that drive it)."""
    from hal.linux.gpio import load_gpiod
    try:
        load_gpiod()
    except ImportError as exc:
        raise ServiceError(2, "tether install-service: the profile uses GPIO pins: %s" % exc)


def command():
    """How the unit starts tether: this Python, with the firmware package it imports, isolated
    (-I): `-m` would put the working directory, /var/lib/tether, first on sys.path, and a
    firmware/ folder there would be run instead."""
    return [sys.executable, "-I", "-m", "firmware.cli"]


def plan(profile, source, device, gpiochip=None, status_every=None, quiet=False):
    """(unit text, path of the compiled profile, path of the unit, device id, groups) for a
    compiled profile; ServiceError when it cannot be a service."""
    platform = profile["platform"]
    if platform == "esp32":
        raise ServiceError(2, "tether install-service: %s is a profile for an ESP32 (platform: "
                           "esp32), which runs the agent itself: put it on the board with "
                           "`tether flash %s --port /dev/ttyUSB0`" % (source, source))
    if platform != "rpi":
        raise ServiceError(2, "tether install-service: %s is a profile for platform %s; a "
                           "service runs a Raspberry Pi profile (platform: rpi). Run it in a "
                           "terminal with `tether run %s`" % (source, platform, source))
    name = device or profile["device"]["id"]
    if "{uid}" in name:
        raise ServiceError(2, "tether install-service: the device id %r is a template: give "
                           "--device ID" % name)
    buffer = profile["buffer"]
    if buffer["storage"] == "flash":
        path = posixpath.normpath(buffer["path"])
        if not (path + "/").startswith(STATE_DIR + "/") or path == STATE_DIR:
            raise ServiceError(2, "tether install-service: %s: buffer.path is %s, and the "
                               "service may write only under %s/ (its state directory; the "
                               "rest of the system is read-only to it): leave buffer.path out "
                               "(%s) or give a folder under %s/"
                               % (source, buffer["path"], STATE_DIR, BUFFER_PATHS["rpi"],
                                  STATE_DIR))
    try:
        buses, pins = devices_of(profile)
    except ValueError as exc:
        raise ServiceError(2, "tether install-service: %s: %s" % (source, exc))
    allowed = dict(buses)
    if pins and gpiochip:       # named: that chip alone
        allowed[gpiochip] = "gpio"
    elif pins:
        # found by its label at each start (tether run): a chip fixed here stopped the service
        # when a kernel update renumbered them (the Pi 5's went from gpiochip4 to 0). That
        # there is one is checked by a real install (install()), not a --root or --dry-run.
        allowed["char-gpiochip"] = "gpio"
    groups = sorted({GROUPS[kind] for kind in allowed.values()})
    args = command() + ["run"]
    if device:
        args += ["--device", device]
    if pins and gpiochip:
        args += ["--gpiochip", gpiochip]
    # A status line a minute is 1,440 journal lines a day on an SD card: the maker's choice.
    if quiet:
        args += ["--quiet"]
    elif status_every is not None:
        args += ["--status-every", format_duration(status_every)]
    # Where systemd puts the credential (systemd 247 on): the variable, not the specifier %d,
    # which came later than Raspberry Pi OS 11's systemd.
    exec_start = " ".join(_quoted(a) for a in args) + " ${CREDENTIALS_DIRECTORY}/" + CREDENTIAL
    profile_path = "%s/%s.json" % (PROFILE_DIR, name)
    unit_path = "%s/tether-%s.service" % (UNIT_DIR, name)
    model = profile["device"].get("model")
    usb = sorted({cls for path, kind in allowed.items() if kind == "uart"
                  for cls in _usb_serial(path)})
    # systemd resolves a char-NAME class in /proc/devices when the service starts, and the
    # class is there only once its driver's module is loaded (at the first adapter plugged in,
    # on Raspberry Pi OS): the modules are loaded first (systemd.resource-control's advice).
    modprobe = " ".join("modprobe@%s.service" % USB_MODULES[cls] for cls in usb)
    lines = [
        "# Written by `tether install-service` from %s." % _one_line(source),
        "# Change the profile and run it again rather than editing this file.",
        "[Unit]",
        "Description=Tether agent for %s%s" % (name, " (%s)" % _one_line(model).replace(
            "%", "%%") if model else ""),
        "Wants=network-online.target" + (" " + modprobe if modprobe else ""),
        "After=network-online.target time-sync.target" + (" " + modprobe if modprobe else ""),
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + exec_start,
        "LoadCredential=%s:%s" % (CREDENTIAL, profile_path),
        "Restart=always",
        "RestartSec=%s" % RESTART_SEC,
        "# exit 2: the profile or the machine is wrong; starting again would fail the same way",
        "RestartPreventExitStatus=%d" % NO_RESTART_EXIT,
        "# SIGTERM: the agent delivers what waits (at most 5 s), says offline, saves the buffer.",
        "TimeoutStopSec=%s" % TIMEOUT_STOP,
        "# journalctl -t tether-DEVICE finds its lines (not every python3's)",
        "SyslogIdentifier=tether-%s" % name,
        "",
        "DynamicUser=yes",
        "User=tether",
    ]
    if groups:
        lines.append("SupplementaryGroups=" + " ".join(groups))
    lines += [
        "StateDirectory=tether",
        "StateDirectoryMode=0700",
        "WorkingDirectory=%s" % STATE_DIR,
        "UMask=0077",
        "",
        "# The device files of the profile's buses and GPIO chips, and no other.",
        "DevicePolicy=closed",
    ]
    lines += ["DeviceAllow=%s rw" % path for path in sorted(allowed)]
    if usb:
        # systemd resolves a path when the service starts: an adapter plugged in later (or
        # again, as another ttyUSBn) was denied though the agent retries the bus. Its class of
        # device, by the driver's name in /proc/devices, is allowed whenever it appears.
        lines.append("# USB serial adapters, whenever they are plugged in")
        lines += ["DeviceAllow=%s rw" % cls for cls in usb]
    lines += [
        "",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "PrivateMounts=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n", profile_path, unit_path, name, groups


# The kernel module that registers each USB serial class in /proc/devices.
USB_MODULES = {"char-ttyUSB": "usbserial", "char-ttyACM": "cdc_acm"}


def _usb_serial(path):
    """The device classes ("char-ttyUSB", "char-ttyACM") a USB serial port's path may be."""
    name = posixpath.basename(path)
    if name.startswith("ttyUSB"):
        return ("char-ttyUSB",)
    if name.startswith("ttyACM"):
        return ("char-ttyACM",)
    if path.startswith(("/dev/serial/by-id/", "/dev/serial/by-path/")):
        return ("char-ttyACM", "char-ttyUSB")   # either driver's
    return ()


def _quoted(arg):
    """An ExecStart word, as systemd reads it back: % starts a specifier and $ a variable;
    words split on spaces unless in "..." (with C escapes)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in ' \t"\'\\;'):
        return arg
    return '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"')


def _one_line(text):
    return " ".join(str(text).split())


def _check_groups(groups):
    missing = []
    for group in groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            missing.append(group)
    if missing:
        raise ServiceError(3, "tether install-service: no group %s on this machine: the service "
                           "reaches the device files through it (Raspberry Pi OS has i2c, gpio "
                           "and dialout); create it and give it the device files with a udev "
                           "rule" % ", ".join(missing))


def _check_visible():
    """The service cannot run a Python or a package in a home folder (ProtectHome=yes) or a
    temporary one (PrivateTmp=yes): nor one a symlink leads there (a venv's python3 is one, to
    the Python it was made with: pyenv's is in /root or /home)."""
    import firmware
    for what, path in (("Python", sys.executable),
                       ("Python", os.path.realpath(sys.executable)),
                       ("Python's installation", os.path.realpath(sys.base_prefix)),
                       ("tether's firmware package",
                        os.path.realpath(os.path.dirname(firmware.__file__)))):
        for folder, why in HIDDEN:
            if (path + "/").startswith(folder):
                raise ServiceError(3, "tether install-service: %s is in %s, which the service "
                                   "cannot see (%s): install tether outside home and "
                                   "temporary folders, e.g. %s, and run that tether "
                                   "(docs/raspberry-pi.md)" % (what, path, why, INSTALL))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(command()[:2] + ["-c", "import firmware.cli"], cwd="/", env=env,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise ServiceError(3, "tether install-service: %s cannot import tether without "
                           "PYTHONPATH, as the service would start it: install tether into it "
                           "(pip install 'CHECKOUT[rpi]')" % sys.executable)


def _check_shared_buffer(root, profile, profile_path, device):
    """Two agents on one buffer would mix their batches: refuse a second device on it, and a
    device the buffer does not hold the readings of (tether run would refuse it at every
    start: firmware/run.py, hold_buffer)."""
    if profile["buffer"]["storage"] != "flash":
        return
    mine = posixpath.normpath(profile["buffer"]["path"])
    owner = _owner(root, mine)
    if owner and owner != device:
        raise ServiceError(2, "tether install-service: the buffer in %s holds the readings of "
                           "device %s, and tether run would refuse to send them as %s: remove "
                           "it to drop them (sudo rm -rf %s) or give this profile its own "
                           "buffer.path under %s/" % (mine, owner, device, mine, STATE_DIR))
    for entry, other in _installed(root, profile_path):
        theirs = _buffer_of(root, other)
        if theirs is None:
            continue
        if theirs != mine and (mine.startswith(theirs + "/") or theirs.startswith(mine + "/")):
            # tether run refuses a buffer inside another (their files would mix): the service
            # would stop at its first start, for good (exit 2).
            raise ServiceError(2, "tether install-service: the buffer in %s and the one of %s "
                               "in %s are one inside the other: give this profile a buffer.path "
                               "of its own beside it under %s/" % (mine, other, theirs,
                                                                   STATE_DIR))
        if theirs == mine:
            name = entry[:-len(".json")]
            raise ServiceError(2, "tether install-service: the service of %s already keeps its "
                               "buffer in %s: give this profile its own buffer.path under %s/, "
                               "or, if this device replaces %s (a --device id mistyped), remove "
                               "that service and its buffer first (sudo tether remove-service "
                               "%s --purge)" % (other, mine, STATE_DIR, name, name))


def _installed(root, profile_path):
    """(file name, path) of each device's compiled profile installed under root but this one."""
    try:
        names = sorted(os.listdir(_under(root, PROFILE_DIR)))
    except OSError:
        return []
    return [(entry, "%s/%s" % (PROFILE_DIR, entry)) for entry in names
            if entry.endswith(".json") and "%s/%s" % (PROFILE_DIR, entry) != profile_path]


def _check_shared_ports(root, profile, profile_path):
    """A serial port in another installed device's profile too: the agent opens its UART alone
    (TIOCEXCL), so the service started second would fail every sensor on it for good. I2C
    buses are shared by the kernel, and allowed."""
    # On this machine by the file each name leads to: /dev/serial0 is a link to /dev/ttyAMA0
    # or /dev/ttyS0, a USB adapter's /dev/serial/by-id/... to its /dev/ttyUSBn.
    here = os.path.realpath(root) == "/"

    def uarts(devices):
        return {os.path.realpath(path) if here else path: path
                for path, kind in devices.items() if kind == "uart"}
    mine = uarts(devices_of(profile)[0])
    for entry, other in _installed(root, profile_path) if mine else ():
        try:
            with open(_under(root, other), encoding="utf-8") as f:
                theirs = uarts(devices_of(json.load(f))[0])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue    # not a profile this Tether reads: its own service says so
        both = sorted(mine[path] for path in mine if path in theirs)
        if both:
            name = entry[:-len(".json")]
            raise ServiceError(2, "tether install-service: the serial port %s is also %s's "
                               "(tether-%s.service), and one process at a time opens it: put "
                               "the sensors on it in one profile (Modbus meters at their own "
                               "addresses on one bus), or give this one a port of its own"
                               % (both[0], name, name))


def _moved_buffer(root, profile, profile_path):
    """(old folder, new folder) when the device's installed profile kept its buffer elsewhere
    and that folder holds readings (segments or a journal), else None."""
    old = _buffer_of(root, profile_path)
    new = posixpath.normpath(profile["buffer"]["path"]) \
        if profile["buffer"]["storage"] == "flash" else None
    if old is None or old == new:
        return None
    try:
        held = [n for n in os.listdir(_under(root, old)) if n.endswith(".seg") or n == "journal"]
    except OSError:
        return None
    return (old, new or "a flash buffer") if held else None


def _under(root, path):
    return os.path.join(root, path.lstrip("/"))


def _write(path, text, mode):
    """Written whole or not at all: a reinstall never leaves half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, mode)
        f.write(text)
        f.flush()
        os.fsync(fd)
    os.replace(tmp, path)


def main(args, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return install(args, out, err)
    except ServiceError as exc:
        err.write("%s\n" % exc)
        return exc.code


def install(args, out, err=sys.stderr):
    from firmware.profile.compile import compile_with_secrets, to_json
    profile, errors, _ = compile_with_secrets(args.profile, args.allow_outside)
    if errors:
        raise ServiceError(2, "\n".join(errors))
    unit, profile_path, unit_path, name, groups = plan(profile, args.profile, args.device,
                                                       args.gpiochip, args.status_every,
                                                       args.quiet)
    service = "tether-%s.service" % name
    chip = "DeviceAllow=char-gpiochip rw" in unit.splitlines()
    if args.dry_run:
        # What a real install on this machine would refuse, said now rather than after the
        # unit was read and approved.
        checks = [lambda: _check_groups(groups), _check_visible]
        if chip:
            checks.append(find_gpiochip)
        elif args.gpiochip:
            checks.append(check_gpiod)
        for check in checks:
            try:
                check()
            except ServiceError as exc:
                err.write("warning: an install on this machine would stop here: %s\n"
                          % str(exc).replace("tether install-service: ", "", 1))
        out.write("# %s (mode 0600): the compiled profile, with its secrets\n" % profile_path)
        out.write("# %s:\n" % unit_path)
        out.write(unit)
        out.write("# then: systemctl daemon-reload; systemctl enable %s; systemctl restart %s\n"
                  % (service, service))
        return 0
    root = args.root or "/"
    real = os.path.realpath(root) == "/"
    systemctl = None
    if real:
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise ServiceError(3, "tether install-service: systemctl not found: this machine "
                               "does not run systemd (--dry-run prints the unit, --root DIR "
                               "writes it for another system)")
        if os.geteuid() != 0:
            raise ServiceError(3, "tether install-service: installing a service needs root: "
                               "run it with sudo (--dry-run shows the unit as any user)")
        _check_groups(groups)
        _check_visible()
        if chip:
            find_gpiochip()     # the service finds it at each start: there must be one
        elif args.gpiochip:
            check_gpiod()
    _check_shared_buffer(root, profile, profile_path, name)
    _check_shared_ports(root, profile, profile_path)
    moved = _moved_buffer(root, profile, profile_path)
    again = os.path.exists(_under(root, unit_path))
    try:
        _write(_under(root, profile_path), to_json(profile) + "\n", 0o600)
        _write(_under(root, unit_path), unit, 0o644)
    except OSError as exc:
        raise ServiceError(3, "tether install-service: cannot write %s: %s"
                           % (exc.filename or root, exc.strerror or exc))
    out.write("wrote %s and %s\n" % (_under(root, profile_path), _under(root, unit_path)))
    if not real:
        # The unit names this machine's Python: an image built elsewhere must have tether
        # there, or the service stops at its first start with a bare "No such file".
        err.write("warning: the unit starts %s (this machine's tether): the system under %s "
                  "must have tether installed at that same path (docs/raspberry-pi.md installs "
                  "it in /opt/tether)\n" % (command()[0], root))
        try:
            _check_visible()
        except ServiceError as exc:
            err.write("warning: %s\n" % str(exc).replace("tether install-service: ", "", 1))
    if moved:
        err.write("warning: the service's buffer was %s, and what it holds is not sent from "
                  "there: move its files into %s before the service starts (--no-start, then "
                  "systemctl start), or remove it to drop them%s\n"
                  % (moved + ("; the service is stopped and not started again until then"
                              if real and not args.no_start else "",)))
    if not real:
        return 0
    for step in steps_of(service, args.no_start, moved):
        _systemctl(systemctl, step, "install-service")
    out.write(said_after(service, args.no_start, moved, again))
    return 0


def said_after(service, no_start, moved, again):
    """The line an install ends with; again: the unit was there before."""
    if no_start and again and not moved:
        # The profile reaches the service as a credential, copied at its start: one running
        # goes on with the old profile, and `enable --now` does not restart it (nor does a
        # restart enable one that never was).
        return ("installed, not started: systemctl enable %s; systemctl restart %s (a running "
                "service keeps its old profile until then)\n" % (service, service))
    if no_start or moved:
        return "installed, not started: systemctl enable --now %s\n" % service
    return "started %s; its log: journalctl -u %s -f\n" % (service, service)


def steps_of(service, no_start, moved):
    """The systemctl steps of an install. A buffer moved elsewhere that holds readings stops
    the service, enabled, not started: started at once, it would begin a new buffer beside the
    old one's readings before the maker could move them (the warning came after the restart)."""
    steps = [["daemon-reload"]]
    if no_start:
        return steps
    if moved:
        return steps + [["enable", service], ["stop", service]]
    return steps + [["enable", service], ["restart", service]]


def remove(args, out):
    """`tether remove-service DEVICE`: the service stopped and disabled, its unit and compiled
    profile removed; its buffer kept (what it holds goes out if the device is installed again)
    unless --purge."""
    name = args.device
    root = args.root or "/"
    real = os.path.realpath(root) == "/"
    profile_path = "%s/%s.json" % (PROFILE_DIR, name)
    unit_path = "%s/tether-%s.service" % (UNIT_DIR, name)
    service = "tether-%s.service" % name
    systemctl = None
    if real:
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise ServiceError(3, "tether remove-service: systemctl not found: this machine "
                               "does not run systemd")
        if os.geteuid() != 0:
            raise ServiceError(3, "tether remove-service: removing a service needs root: run "
                               "it with sudo")
    files = [p for p in (unit_path, profile_path) if os.path.lexists(_under(root, p))]
    if not files:
        try:
            others = sorted(e[:-len(".json")] for e in os.listdir(_under(root, PROFILE_DIR))
                            if e.endswith(".json"))
        except OSError:
            others = []
        raise ServiceError(2, "tether remove-service: no service of device %s is installed "
                           "here (%s)" % (name, "installed: " + ", ".join(others) if others
                                          else "none is"))
    buffer = _buffer_of(root, profile_path)
    if buffer is not None and args.purge:
        owner = _owner(root, buffer)
        if owner and owner != name:
            raise ServiceError(2, "tether remove-service: --purge: the buffer in %s holds the "
                               "readings of device %s, not %s: left as it is; nothing was "
                               "changed" % (buffer, owner, name))
    if real and os.path.lexists(_under(root, unit_path)):
        _systemctl(systemctl, ["disable", "--now", service])
    for path in files:
        try:
            os.remove(_under(root, path))
        except OSError as exc:
            raise ServiceError(3, "tether remove-service: cannot remove %s: %s"
                               % (_under(root, path), exc.strerror or exc))
    if real:
        _systemctl(systemctl, ["daemon-reload"])
        subprocess.run([systemctl, "reset-failed", service], capture_output=True)  # may be none
    out.write("removed %s%s: %s\n" % (service, " (stopped and disabled)" if real else "",
                                      ", ".join(_under(root, p) for p in files)))
    where = None if buffer is None else _under(root, buffer)
    if where is not None and os.path.isdir(where):
        if args.purge:
            shutil.rmtree(os.path.realpath(where))
            out.write("removed its buffer %s\n" % buffer)
        else:
            out.write("its buffer stays in %s: what it holds goes out if %s is installed again "
                      "(--purge removes it)\n" % (buffer, name))
    out.write("the broker keeps its retained status and schema: clear them with an empty "
              "retained message on each (docs/raspberry-pi.md, Removing it)\n")
    return 0


def _systemctl(systemctl, step, command="remove-service"):
    """One systemctl step; ServiceError (exit 1) with what it said when it fails."""
    done = subprocess.run([systemctl] + step, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(1, "tether %s: systemctl %s failed: %s"
                           % (command, " ".join(step), (done.stderr or done.stdout).strip()))


def _owner(root, buffer):
    """The device whose readings the buffer folder holds (its `device` marker, else what its
    batches name: a buffer from before the marker), or None."""
    folder = _under(root, buffer)
    try:
        with open(os.path.join(folder, "device"), encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        from firmware.run import device_in_log
        try:
            return device_in_log(folder) if os.path.isdir(folder) else None
        except OSError:
            return None
    except OSError:
        return None


def _buffer_of(root, profile_path):
    """The buffer folder the installed compiled profile names, or None."""
    try:
        with open(_under(root, profile_path), encoding="utf-8") as f:
            buffer = json.load(f)["buffer"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(buffer, dict) or buffer.get("storage") != "flash" or not isinstance(
            buffer.get("path"), str):
        return None
    path = posixpath.normpath(buffer["path"])
    # only a folder under the state directory, as install-service allows
    return path if path.startswith(STATE_DIR + "/") else None


def remove_main(args, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return remove(args, out)
    except ServiceError as exc:
        err.write("%s\n" % exc)
        return exc.code


def add_command(sub):
    p = sub.add_parser("remove-service", help="stop and remove a device's service that "
                                              "install-service made (its buffer stays)")
    p.add_argument("device", type=device_id, metavar="DEVICE", help="the device id")
    p.add_argument("--purge", action="store_true",
                   help="also remove its buffer, and the readings not yet delivered in it")
    p.add_argument("--root", metavar="DIR", help="remove the files under DIR and run no "
                   "systemctl (as install-service --root wrote them)")
    p.set_defaults(func=remove_main)
    p = sub.add_parser("install-service", help="install the agent as a systemd service on a "
                                               "Raspberry Pi (tether run of PROFILE at boot)")
    p.add_argument("profile", metavar="PROFILE", help="a profile YAML file (platform: rpi)")
    p.add_argument("--device", type=device_id, metavar="ID",
                   help="the device id (when the profile's is a template such as washer-{uid})")
    p.add_argument("--gpiochip", type=gpiochip_path, metavar="PATH", help="the GPIO chip of the profile's pins "
                   "(default: the Pi's pin controller, found by its label)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the unit and what would be installed; change nothing")
    p.add_argument("--root", metavar="DIR", help="write the files under DIR and run no "
                   "systemctl (to package, or to look)")
    p.add_argument("--no-start", action="store_true",
                   help="install and daemon-reload, but neither enable nor start the service")
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("--status-every", type=duration(1000, 86400000), metavar="DURATION",
                       help="the service's status line this often in the journal (default 1min)")
    lines.add_argument("--quiet", action="store_true",
                       help="no status lines in the journal (connections and errors still are)")
    add_allow_outside(p)
    p.set_defaults(func=main)
