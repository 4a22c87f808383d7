# set_interval on a sensor whose insight needs its readings close together, through the whole
# agent (test_insight_command.py's): an energy insight counts readings further apart than an
# outage as one, and every report said 0 kWh. Both interpreters.
MICROPYTHON_HEAP = "192k"  # the whole agent from .mpy with the energy insight and an INA219
# (it runs at 174k, not at 172k; the rest is room, as the runs differ by the order of allocations)

from energykit import config
from commandkit import agent, command

POWER = {"calibration": {"max_current": 3.2, "shunt_ohms": 0.1}, "driver": "ina219",
         "address": 64, "bus": "i2c0", "filters": {}, "interval_ms": 5000, "name": "power",
         "quantity": "power", "resolution": [1, -1], "thresholds": [], "unit": "W"}
I2C0 = {"id": "i2c0", "type": "i2c", "sda": 21, "scl": 22, "frequency": 400000}


def test_a_sensor_whose_energy_insight_needs_close_readings_keeps_them():
    sensor = dict(POWER)
    sensor["insight"] = config()
    a = agent(sensor, buses=[I2C0])
    r = command(a, {"id": 1, "cmd": "set_interval", "sensor": "power", "interval_ms": 900000})
    assert r["ok"] is False and r["error"] == ("power: at most 300000 ms: its energy insight "
                                               "counts readings further apart as an outage"), r
    assert a.sampler.channels[0].interval_ms == 5000
    r = command(a, {"id": 2, "cmd": "set_interval", "sensor": "power", "interval_ms": 300000})
    assert r["ok"] is True and a.sampler.channels[0].interval_ms == 300000
