# A compiled profile (the JSON that `tether compile` writes) turned into the agent's parts.
#
# The board never parses YAML: the host validates the profile and compiles it (firmware/profile).
import gc
import json
import sys

from agent import batch
from agent.buffer import Buffer
from agent.log import Log
from agent.schema import Schema

_MPY = sys.implementation.name == "micropython"
SEGMENTS = 8  # the log drops an eighth of its bytes at a time when it is full
FORMAT = 1    # the compiled profile's "v": a board refuses another (firmware/board.py)


def load(path):
    with open(path) as f:
        return json.load(f)


def schema(profile):
    return Schema.from_profile(profile)


def encoder(profile, device_id=None, channels=None):
    b = profile["batch"]
    u = profile["uplink"]
    return batch.Encoder(device_id or profile["device"]["id"], channels or schema(profile),
                         u["encoding"], u["deflate"], b["max_bytes"], b["max_readings"])


def buffer(profile, store=None, device_id=None, channels=None):
    """The profile's buffer, not yet opened. store defaults to what the profile says: files
    under buffer.path, or RAM."""
    if _MPY:
        # Before the long-lived buffers, so that they land in the fewest holes of a small heap.
        # Not on CPython, which has room to spare, and where a full collection walks every
        # object of the process: the simulator makes thousands of agents in one process, and
        # booting 1,000 of them took 175 s with it, 2.3 s without (bench/fleet.py).
        gc.collect()
    b = profile["buffer"]
    if store is None:
        from agent.store import FileStore, RamStore
        store = RamStore() if b["storage"] == "ram" else FileStore(b["path"])
    log = Log(store, b["max_bytes"], max(b["max_bytes"] // SEGMENTS, profile["batch"]["max_bytes"]),
              batch.seq_of)
    return Buffer(log, encoder(profile, device_id, channels), profile["batch"]["max_readings"],
                  profile["batch"]["max_age_ms"], b["ram_readings"], b["flush_ms"])
