# A MicroPython freeze manifest: Tether's board code built into the firmware image, for makers
# who build their own MicroPython (docs/esp32.md, "Freezing the agent into the firmware").
# Frozen bytecode runs from flash instead of being loaded into RAM, which leaves tens of KiB
# more heap on a board without PSRAM. The board then needs only /main.py (firmware/main.py),
# /profile.json and /secrets.json on its filesystem.
#
# Build an ESP32 image with every driver:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/tether/firmware/manifest.py
# or from your own board's manifest, with only the chips your products use:
#   include("/path/to/tether/firmware/manifest.py", drivers=["ina219", "level_probe"])
# (a level_probe read through an ADS1115 needs "ads1115" too).
#
# Relative paths here are relative to this file's folder (MicroPython's manifest rules).

# Every chip Tether has a driver for, and the helper modules each one imports.
DRIVERS = {
    "ads1115": ["i2c16"],
    "hx711": [],
    "ina219": ["i2c16"],
    "level_probe": [],
    "pzem004t": ["modbus"],
}

options.defaults(drivers=sorted(DRIVERS))

# The port's own frozen modules (asyncio, ntptime, ...): a FROZEN_MANIFEST replaces the
# board's manifest, and the agent needs them. Included once even when a board's manifest
# already does.
include("$(PORT_DIR)/boards/manifest.py")

package("agent", base_path="..", files=[
    "__init__.py", "batch.py", "buffer.py", "cbor.py", "cbor_decode.py", "clock.py",
    "commands.py", "compact.py", "crashboots.py", "events.py", "log.py", "mqtt.py", "profile.py",
    "runtime.py", "sampler.py", "schema.py", "senml.py", "store.py", "supervisor.py", "tls.py",
    "uplink.py",
])

_chips = []
for _name in options.drivers:
    if _name not in DRIVERS:
        raise ValueError("no driver %r; drivers are %s" % (_name, ", ".join(sorted(DRIVERS))))
    for _module in [_name] + DRIVERS[_name]:
        if _module not in _chips:
            _chips.append(_module)

package("hal", base_path="..", files=[
    "__init__.py", "board.py", "bus.py", "chips.py", "ticks.py", "esp32.py", "esp32_net.py",
    "drivers/__init__.py",
] + ["drivers/%s.py" % m for m in _chips])

package("firmware", base_path="..", files=["__init__.py", "board.py"])
