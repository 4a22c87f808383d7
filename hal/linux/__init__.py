# The Linux platform backend (Raspberry Pi, CPython): I2C through /dev/i2c-N, UART through
# pyserial, GPIO through the GPIO character device (gpiod). Host-only: a board never imports it.
from hal.linux.platform import LinuxPlatform

__all__ = ["LinuxPlatform"]
