# A MicroPython freeze manifest: Tether's board code built into the firmware image, for makers
# who build their own MicroPython (docs/esp32.md, "Freezing the agent into the firmware").
# Frozen bytecode runs from flash instead of being loaded into RAM, which leaves tens of KiB
# more heap on a board without PSRAM. The board then needs only /main.py (firmware/main.py),
# /profile.json and /secrets.json on its filesystem.
#
# Build an ESP32 image with every driver:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/tether/firmware/manifest.py
# or from your own board's manifest, with only the chips your products use:
#   include("/path/to/tether/firmware/manifest.py", drivers=[NAME, ...])
# with the driver names profiles use (hal/chips.py); a sensor read through another chip (its
# line there says which) needs that chip too.
#
# Relative paths here are relative to this file's folder (MicroPython's manifest rules).

# The chips come from the registry (hal/chips.py), read as a file: a manifest runs under the
# build's CPython with this folder as the working directory, not with Tether importable. Every
# other module in hal/drivers/ is a helper some chips import (I2C registers, Modbus frames):
# small, and frozen always.
_registry = {}
with open("../hal/chips.py") as _f:
    exec(_f.read(), _registry)
DRIVERS = sorted(_registry["CHIPS"])
_helpers = sorted(_n[:-3] for _n in __import__("os").listdir("../hal/drivers")
                  if _n.endswith(".py") and _n[:-3] not in DRIVERS and _n != "__init__.py")

options.defaults(drivers=DRIVERS, port_manifest=True)

# The port's own frozen modules (asyncio, ntptime, ...): a FROZEN_MANIFEST replaces the
# board's manifest, and the agent needs them. Included once even when a board's manifest
# already does. port_manifest=False leaves it to the including manifest, for a port whose
# manifest is elsewhere (bench/frozen_manifest.py, the unix port).
if options.port_manifest:
    include("$(PORT_DIR)/boards/manifest.py")

package("agent", base_path="..", files=[
    "__init__.py", "batch.py", "buffer.py", "cbor.py", "cbor_decode.py", "clock.py",
    "commands.py", "compact.py", "crashboots.py", "events.py", "log.py", "mqtt.py", "profile.py",
    "runtime.py", "salvage.py", "sampler.py", "schema.py", "schema_change.py", "senml.py",
    "shown.py",
    "store.py", "supervisor.py",
    "tls.py", "tz.py", "uplink.py", "insights/__init__.py", "insights/adherence.py",
    "insights/consumable.py", "insights/early.py", "insights/energy.py",
])

for _name in options.drivers:
    if _name not in DRIVERS:
        raise ValueError("no driver %r; drivers are %s" % (_name, ", ".join(DRIVERS)))
_chips = _helpers + sorted(options.drivers)

package("hal", base_path="..", files=[
    "__init__.py", "board.py", "bus.py", "chips.py", "ticks.py", "unopened.py", "esp32.py",
    "esp32_net.py",
    "drivers/__init__.py",
] + ["drivers/%s.py" % m for m in _chips])

package("firmware", base_path="..", files=["__init__.py", "board.py"])
