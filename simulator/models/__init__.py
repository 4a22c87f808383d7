"""Appliance models: what drives the virtual chips of a simulated device over device time.

    cls = model_for(profile)                       # the compiled profile dict
    model = cls(profile, random.Random(seed), start_ms, unit_index)
    model.advance(t_ms, platform)                  # monotonic device time; sets every sensor
    model.truth                                    # what really happened, for the report

One module per appliance, its physics and numbers in its header comment: printer.py (ink, print
jobs, cartridges; with a pill bottle on the same device when the profile has a load cell),
pill_bottle.py (doses, adherence, refills), washer.py (programmes, degrading motor), fridge.py
(thermostat, compressor duty cycle, defrost, degrading compressor), signals.py (made-up signals
for a product none of them fits, and for the sensors a model leaves alone); base.py holds the
shared parts (power trace with its exact energy integral, noise, released truth). HOST-ONLY
(CPython).

What happens depends on the seed only (each model plans whole days in order from its rng), not
on how often advance() is called; a record joins `truth` once device time has passed it. Truth
keys (times are Unix ms):
    printer      print_jobs [(start, end, pages, colour)], ink_low [(t, sensor)],
                 ink_empty [(t, sensor)] (reached 0 %), cartridge_changes [(t, sensor)],
                 ink_start [(t, sensor, level)] (the cartridges at the start), cleanings [t]
    pill bottle  doses [(t, taken, scheduled, "on_time"|"late"|"double")],
                 missed_doses [(scheduled, "forgot"|"empty")], refills [(t, added, count_after)],
                 handling [(t, "lift"|"shake"|"carry"|"open"|"cap_off", duration)],
                 patient {dose_times_min, pills_per_dose, refill, late, missed, double, cap_off,
                          handling_per_day, start_ms, start_count}
    washer       programmes [{t, end, programme, temp, load, drum_w, spike_w, spin_w, energy_wh}],
                 mix_changes [t]
    fridge       compressor_cycles [(on, off)], defrosts [(start, end)], door_openings [t]
    all          degrading (bool); washer and fridge also degrade_per_week, degrade_onset_ms and
                 failure_ms (the motor or compressor fails; None on healthy units)
Before the first advance() the chips hold the platform's defaults: call advance(start_ms) first.
"""


def model_for(profile):
    """The model class for a compiled profile: a fridge when device.model says so or an energy
    insight watches a compressor's `capacity` (ValueError without a power meter); a printer for
    ink_* level sensors; a pill bottle for an HX711 pill count; a washer for a PZEM-004T;
    otherwise made-up signals (signals.py, docs/simulator.md)."""
    model = ((profile.get("device") or {}).get("model") or "").lower()
    sensors = profile.get("sensors") or []

    def has(pred):
        return any(pred(s) for s in sensors)

    if "fridge" in model or has(lambda s: (s.get("insight") or {}).get("watch") == "capacity"):
        if has(lambda s: s["driver"] in ("pzem004t", "ina219") and s["quantity"] in
               ("power", "energy", "current")):
            from simulator.models.fridge import Fridge
            return Fridge
        raise ValueError("profile %r: a fridge needs a power meter: a pzem004t or ina219 sensor "
                         "reading power, energy or current" % (profile.get("device") or {}).get(
                             "id"))
    if has(lambda s: s["name"].startswith("ink_") and s["quantity"] == "level"):
        from simulator.models.printer import Printer
        return Printer
    if has(lambda s: s["driver"] == "hx711" and s["quantity"] == "count"):
        from simulator.models.pill_bottle import PillBottle
        return PillBottle
    if has(lambda s: s["driver"] == "pzem004t"):
        from simulator.models.washer import Washer
        return Washer
    # a product of its own: its sensors read made-up signals, and its insights are not scored
    from simulator.models.signals import Signals
    return Signals
