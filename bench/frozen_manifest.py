# The freeze manifest of the MicroPython unix-port binary bench/heap.py --frozen runs: the unix
# variant's own frozen modules (asyncio, ...) and Tether as firmware/manifest.py freezes it for an
# ESP32, with the drivers examples/printer.yaml uses. firmware/manifest.py's include of the port's
# boards/manifest.py is left out: the unix port keeps its manifest under variants/.
#   make -C ports/unix VARIANT=standard FROZEN_MANIFEST=/path/to/tether/bench/frozen_manifest.py
include("$(PORT_DIR)/variants/standard/manifest.py")
include("../firmware/manifest.py", drivers=["ina219", "level_probe"], port_manifest=False)
