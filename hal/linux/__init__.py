# The Linux platform backend (Raspberry Pi, CPython): I2C through /dev/i2c-N, UART through
# pyserial, GPIO through the GPIO character device (gpiod). Host-only: a board never imports it.
import errno

from hal.linux.platform import LinuxPlatform

__all__ = ["LinuxPlatform", "access_hint"]


def access_hint(code, group):
    """Why a device file did not open, when permission was the reason. EACCES is the file's
    owner and mode: a group to join. EPERM is a device cgroup, as the DevicePolicy= of the unit
    that `tether install-service` writes: it allows only the profile's device files."""
    if code == errno.EPERM:
        return ("not permitted: a systemd service may open only the device files its unit "
                "allows (DeviceAllow=), those of the profile it was installed with, as they "
                "were when it started: restart it once a USB adapter is plugged in (systemctl "
                "restart), and run tether install-service again after changing the profile's "
                "buses or pins")
    return "permission denied: run as a member of the '%s' group" % group
