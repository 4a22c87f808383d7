# The frozen modules of bench/float32.py's binary: asyncio, frozen as on a board.
include("$(MPY_DIR)/extmod/asyncio")
