"""Every example profile passes `tether check`; the reference workload keeps its channel order."""
import pathlib

import pytest

from firmware.cli import main
from firmware.profile.compile import compile

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
PROFILES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name != "secrets.yaml")


def test_the_examples_are_there():
    assert {p.name for p in PROFILES} >= {"fridge.yaml", "pill-bottle.yaml", "printer.yaml",
                                          "reference-printer.yaml", "washer.yaml"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_example_compiles_without_errors(path):
    compiled, errors = compile(str(path))
    assert errors == []
    assert compiled["v"] == 1


def test_all_examples_pass_tether_check(capsys):
    assert main(["check"] + [str(p) for p in PROFILES]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count(": ok\n") == len(PROFILES)


def test_reference_printer_matches_the_benchmark_workload():
    compiled, errors = compile(str(EXAMPLES / "reference-printer.yaml"))
    assert errors == []
    assert [(s["name"], s["unit"], s["resolution"], s["interval_ms"]) for s in compiled["sensors"]] == [
        ("energy", "Wh", [1, 0], 10_000),
        ("ink_c", "%", [1, -1], 10_000),
        ("ink_k", "%", [1, -1], 10_000),
        ("ink_m", "%", [1, -1], 10_000),
        ("ink_y", "%", [1, -1], 10_000),
        ("pills", "count", [1, 0], 10_000),
        ("power", "W", [1, -1], 10_000),
    ]
    assert [s["driver"] for s in compiled["sensors"]] == [
        "pzem004t", "level_probe", "level_probe", "level_probe", "level_probe", "hx711", "ina219"]
    assert compiled["batch"]["max_readings"] == 420
    assert compiled["batch"]["max_age_ms"] == 600_000
    assert compiled["uplink"]["encoding"] == "compact"


def test_printer_example_has_four_inks_with_low_thresholds_and_power():
    compiled, _ = compile(str(EXAMPLES / "printer.yaml"))
    sensors = {s["name"]: s for s in compiled["sensors"]}
    assert list(sensors) == ["ink_c", "ink_m", "ink_y", "ink_k", "power"]
    for ink in ("ink_c", "ink_m", "ink_y", "ink_k"):
        assert sensors[ink]["driver"] == "level_probe"
        assert sensors[ink]["thresholds"] == [{"event": "ink_low", "below": 15, "hysteresis": 2}]
    assert sensors["power"]["driver"] == "ina219"
    # From the package common/base.yaml, with its password from examples/secrets.yaml.
    assert compiled["uplink"]["password"] == "not-a-real-password"
    assert compiled["uplink"]["ca"].startswith("An example CA certificate, so that the example")
