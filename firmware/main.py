# The board's entry point: MicroPython runs /main.py at every boot (after /boot.py), and
# `tether build` ships this file as source. The logic is in firmware/board.py (docs/esp32.md).
from firmware import board

board.main()
