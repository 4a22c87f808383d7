"""The uplink as the agent sets it up from the profile (agent/runtime.py): its PUBACK timeout,
and the MQTT client id it connects with: by default the device id, also
when `tether run --device` gives the id of a templated profile whole; brokers tie permissions to
it (AWS IoT policies, mosquitto's %c patterns), and "printer-{uid}" with --device printer-1 once
connected as printer-printer-1."""
import pathlib

from agent.clock import SystemClock
from agent.runtime import Agent
from agent.store import RamStore
from firmware.profile.compile import compile as compile_profile
from hal.sim.platform import SimPlatform

PRINTER = pathlib.Path(__file__).resolve().parent.parent / "examples" / "printer.yaml"


class Recorded:
    def __init__(self, client_id, *args, **kwargs):
        self.client_id = client_id


def client_id(device_id, set_client_id=None):
    profile, errors = compile_profile(str(PRINTER))
    assert not errors and profile["device"]["id"] == "printer-{uid}"
    assert profile["uplink"]["client_id"] == "printer-{uid}"  # the device id's template
    profile["buffer"]["storage"] = "ram"
    profile["uplink"]["tls"] = False
    if set_client_id is not None:
        profile["uplink"]["client_id"] = set_client_id
    agent = Agent(profile, SimPlatform(profile), SystemClock(), Recorded, store=RamStore(),
                  events_store=RamStore(), reboot=lambda: None, device_id=device_id)
    return agent.uplink.make_client(None).client_id


def test_a_device_id_given_whole_is_the_client_id():
    assert client_id("printer-1") == "printer-1"


def test_a_client_id_template_of_its_own_takes_the_device_id_for_uid():
    assert client_id("printer-1", "acme-{uid}") == "acme-printer-1"
    assert client_id("printer-1", "fixed-name") == "fixed-name"


def test_the_profiles_ack_timeout_is_the_uplinks():
    # 30 s fixed: on a 120 bytes/s link no 8 KiB batch ever got its PUBACK in time, and none
    # arrived at all
    profile, errors = compile_profile(str(PRINTER))
    assert not errors and profile["uplink"]["ack_timeout_ms"] == 30000
    profile["buffer"]["storage"] = "ram"
    profile["uplink"]["ack_timeout_ms"] = 120000
    agent = Agent(profile, SimPlatform(profile), SystemClock(), Recorded, store=RamStore(),
                  events_store=RamStore(), reboot=lambda: None, device_id="printer-1")
    assert agent.uplink.ack_timeout_ms == 120000
