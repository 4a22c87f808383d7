# One boot of a board, on the host: the doubles of machine, network and ntptime go into
# sys.modules, then /main.py (firmware/main.py, unchanged) runs as MicroPython runs it at boot.
# Run in the board's root folder (main.py, firmware/, profile.json, secrets.json) with
#   micropython -m board_boot
# doubles.json there says how the doubles behave this boot:
#   {"reset_cause": "WDT_RESET", "wifi_after": 2 (joins that fail first; null: never),
#    "ntp_failures": 1, "crash": true (every sampling round raises; "crash_rounds": n, the
#    first n),
#    "crash_uplink": true (the uplink task raises at every start; the buffer's flushes are
#    printed, "DOUBLE: flushed, N readings were in RAM"),
#    "full": true (every file opened for writing: OSError 28, ENOSPC, nothing written, as
#    LittleFS does when the flash is full),
#    "settings": {"firmware.board": {"SAFE_MODE_BOOTS": 3}, ...}}  (module constants, shorter)
# machine.reset() ends the process with machine_fake.RESET_EXIT.
import json
import sys

import machine_fake
import network_fake
import ntptime_fake

with open("doubles.json") as f:
    config = json.load(f)
machine_fake.install()
machine_fake.cause = getattr(machine_fake, config.get("reset_cause", "PWRON_RESET"))
network_fake.install(config.get("wifi_after", 0))
ntptime_fake.install(config.get("ntp_failures", 0))
for name in config.get("settings", {}):
    __import__(name)
    module = sys.modules[name]
    values = config["settings"][name]
    for key in values:
        setattr(module, key, values[key])
if config.get("full"):
    import builtins
    opened = builtins.open

    def full(path, mode="r", *args):
        if "w" in mode or "a" in mode:
            raise OSError(28)
        return opened(path, mode, *args)
    builtins.open = full
if config.get("crash_uplink"):
    from agent.buffer import Buffer
    from agent.uplink import Uplink
    flush = Buffer.flush

    async def broken(self):
        raise RuntimeError("uplink made to crash")

    def flush_told(self):
        held = self.n - self.flushed
        flush(self)
        print("DOUBLE: flushed, %d readings were in RAM" % held)
    Uplink.run = broken
    Buffer.flush = flush_told
crashes = [config.get("crash_rounds", 1000000 if config.get("crash") else 0)]
if crashes[0]:
    from agent.sampler import Sampler
    step = Sampler.step

    def crash(self):
        if crashes[0] > 0:
            crashes[0] -= 1
            raise RuntimeError("made to crash at every boot")
        return step(self)
    Sampler.step = crash

import main  # noqa: E402,F401  (the board's entry point: runs until machine.reset())
