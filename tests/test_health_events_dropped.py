"""Events a full events log dropped are counted where readings dropped are: the health report,
`tether run`'s status line and its closing line (threshold crossings, sensor faults and insight
events vanished in a long outage with every count at 0)."""
from agent import cbor_decode
from firmware.run import _events_dropped
from tests.portable.commandkit import agent

SENSOR = {"name": "power", "driver": "ina219", "bus": "i2c0", "address": 64, "quantity": "power",
          "unit": "W", "interval_ms": 1000, "resolution": [1, -1], "filters": {},
          "thresholds": [], "calibration": {"shunt_ohms": 0.1, "max_current": 3.2}}
BUS = {"id": "i2c0", "type": "i2c", "sda": 21, "scl": 22, "frequency": 100000}


def test_events_a_full_log_dropped_are_in_health_and_the_status_lines():
    a = agent(SENSOR, buses=[BUS])
    for i in range(2000):      # offline: the events' log (8 KiB at least) fills and drops
        a.events.emit(1767225600000 + i, True, "sensor_error", "power", "raised", None,
                      "INA219 at i2c0:0x40 did not acknowledge %d" % i)
    dropped = a.events.log.dropped
    assert dropped > 0
    health = cbor_decode.loads(a.health(a.uplink))
    assert health["events_dropped"] == dropped and health["dropped"] == 0
    assert _events_dropped(a) == ", %d events dropped" % dropped


def test_bytes_found_torn_or_corrupt_at_open_are_in_health_and_diag_the_events_logs_too():
    # Only Agent.open()'s return carried a bad journal record and the events log's damage: a
    # board drops that value, and health had no such key
    from agent.runtime import Agent
    from agent.store import RamStore
    from hal.sim.platform import SimPlatform
    from tests.portable.commandkit import FakeClock, NoClient, command, profile
    store, events = RamStore(), RamStore()
    p = profile(SENSOR, [BUS])

    def boot():
        a = Agent(p, SimPlatform(p), FakeClock(0, 1767225600000), NoClient, store=store,
                  events_store=events)
        return a, a.open()
    a, _ = boot()
    for i in range(3):
        a.buffer.append(1767225600000 + i, 0, 10 + i)
    a.buffer.flush()                          # journaled
    a.events.emit(1767225600000, True, "sensor_error", "power", "raised", None, "nack")
    journal = bytearray(store.read_all("journal"))
    journal[10] ^= 1
    store.replace("journal", bytes(journal))
    seg = [n for n in events.names() if n.endswith(".seg")][0]
    events.append(seg, b"\x05\x00\x01torn")   # a record a power cut tore
    a, discarded = boot()
    assert discarded == len(journal) + 7 > 0
    assert cbor_decode.loads(a.health(a.uplink))["discarded"] == discarded
    assert command(a, {"id": 1, "cmd": "diag"})["result"]["discarded"] == discarded
