"""The report at the end of a simulation: where every reading went, per device and for the fleet.

For each device the ground truth is what the simulator saw its agent do:

- generated: readings the sampler put in the buffer (over every boot);
- power-cut window: readings that were only in RAM when the power went (the documented flush
  window: visible, counted, not "lost");
- delivered: distinct readings the reference ingest stored (SQLite), duplicates not counted;
- reported dropped: what the device's batches say its full buffer dropped;
- waiting: readings still in the device's buffer at the end (a link too slow to drain);
- repaired: of the delivered readings, those in batches the ingest asked the device for again
  (the broker had lost them: ingest/repair.py);
- lost at the broker: readings in the batches the ingest recorded as lost at the broker (the
  device no longer held them when asked): counted, never silent, but lost;
- lost = generated - delivered - reported dropped - waiting - power-cut window - lost at the
  broker: readings nobody can account for. Both must be 0; `tether simulate` exits non-zero
  when either is not;
- events likewise: raised (each is on flash before the agent goes on), delivered (distinct at
  the ingest), waiting, repaired, lost at the broker, lost.

Insights (agent/insights) are scored against the models' truth by simulator/scores from what
the ingest stored: `insight_scores` in the JSON, one line per figure with its target.
"""
from simulator import scores
from ingest import insights, lost_seqs, sensor_errors, summary
from ingest.url import hide_password


def from_parts(db_path, parts):
    """The report of a whole fleet from the parts its processes stored (simulator/parts.py, in
    device order) and what the ingest stored in db_path: the same whether the fleet ran in one
    process, in workers or in shards."""
    per = summary(db_path)
    failed = sensor_errors(db_path)
    devices = []
    for x in (d for p in parts for d in p["devices"]):
        s = per.get(x["device"], {})
        generated = x["generated"]
        delivered = s.get("readings", 0)
        dropped = s.get("dropped_reported", 0)
        waiting = x["waiting"]
        at_broker = x["lost_at_broker"]
        events_at_broker = s.get("events_lost_at_broker", 0)
        devices.append({
            "device": x["device"],
            "model": x["model"],
            # the appliance model that drove its chips (simulator/models): a profile of one's
            # own is scored as that appliance
            "simulated_as": x.get("kind"),
            "generated": generated,
            "delivered": delivered,
            "reported_dropped": dropped,
            "waiting": waiting,
            "lost": (generated - delivered - dropped - waiting - x["power_cut_window"] - at_broker
                     - x.get("erased", 0)),
            # held by a buffer when its flash was erased, never delivered (--faults erase)
            "erased": x.get("erased", 0),
            "events_erased": x.get("events_erased", 0),
            "erases": x.get("erases", 0),
            "power_cut_window": x["power_cut_window"],
            "repaired": s.get("repaired_readings", 0),
            "repaired_batches": s.get("repaired", 0),
            "lost_at_broker": at_broker,
            "lost_at_broker_batches": s.get("lost_at_broker", 0),
            "dropped_by_device_batches": s.get("dropped_by_device", 0),
            "duplicates": s.get("duplicates", 0),
            "gaps": [list(g) for g in s.get("gaps", [])],
            "events": s.get("events", 0),
            "events_raised": x["events_raised"],
            "events_waiting": x["events_waiting"],
            "events_repaired": s.get("events_repaired", 0),
            "events_lost_at_broker": events_at_broker,
            "events_dropped_by_device": s.get("events_dropped_by_device", 0),
            "events_lost": (x["events_raised"] - s.get("events", 0) - x["events_waiting"]
                            - events_at_broker - s.get("events_dropped_by_device", 0)
                            - x.get("events_erased", 0)),
            "power_cuts": x["power_cuts"],
            "sensor_faults": x.get("sensor_faults", 0),     # a part of an older run has none
            # sensor_error events raised, per sensor, whatever the cause: [count, first detail]
            "sensor_errors": failed.get(x["device"], {}),
            "boots": x["boots"],
            "outage_ms": x["outage_ms"],
            "backlog_max_batches": x["backlog_max_batches"],
            "bytes_on_air": x["bytes_on_air"],
            "bytes_per_reading": (round(x["bytes_on_air"] / delivered, 3) if delivered
                                  else None),
            "truth": _truth(x["truth"]),
            # why its agent stopped on its own (an exception), or None
            "crashed": x.get("crashed"),
        })
    fleet_total = {}
    for key in ("generated", "delivered", "reported_dropped", "waiting", "lost",
                "power_cut_window", "repaired", "repaired_batches", "lost_at_broker",
                "lost_at_broker_batches", "dropped_by_device_batches", "duplicates", "events",
                "events_raised", "events_waiting", "events_repaired", "events_lost_at_broker",
                "events_dropped_by_device",
                "events_lost", "power_cuts", "boots", "outage_ms", "sensor_faults",
                "bytes_on_air", "erases", "erased", "events_erased"):
        fleet_total[key] = sum(x[key] for x in devices)
    fleet_total["devices"] = len(devices)
    fleet_total["crashed"] = sum(1 for x in devices if x["crashed"])
    fleet_total["backlog_max_batches"] = max((x["backlog_max_batches"] for x in devices),
                                             default=0)
    fleet_total["bytes_per_reading"] = (round(fleet_total["bytes_on_air"] /
                                              fleet_total["delivered"], 3)
                                        if fleet_total["delivered"] else None)
    units = units_of(db_path, parts)
    for x, u in zip(devices, units):
        x["insights"] = len(u.insights)
    fleet_total["insights"] = sum(x["insights"] for x in devices)
    # The run's wall time: from the first process's start to the last one's end.
    started = min(p["started_wall"] or 0 for p in parts)
    wall = max(p["ended_wall"] or 0 for p in parts) - started
    first = parts[0]
    return {
        "insight_scores": {area: [{"name": n, "value": v, "target": t, "ok": ok}
                                  for n, v, t, ok in lines]
                           for area, lines in scores.score(units).items()},
        "device_time_ms": first["duration_ms"],
        "wall_s": round(wall, 1),
        "speed": round(first["duration_ms"] / 1000.0 / wall, 1) if wall > 0 else None,
        "seed": first["seed"],
        "broker_restarts": sum(p["restarts"] for p in parts),
        "database": hide_password(db_path),
        "fleet": fleet_total,
        "devices": devices,
    }


def units_of(db_path, parts):
    """The insight scores' units (simulator/scores): truth from the parts, insights from the
    database."""
    by_device = {}
    for device, t, event, sensor, value, fields in insights(db_path):
        by_device.setdefault(device, []).append((t, event, sensor, value, fields))
    return [scores.Unit(x["device"], x["truth"], by_device.get(x["device"], []),
                        {"sensors": x["sensors"]})
            for p in parts for x in p["devices"]]


def _truth(truth):
    """The model's ground truth, reduced to counts (the lists can be long)."""
    out = {}
    for key, value in truth.items():
        out[key] = len(value) if isinstance(value, (list, tuple)) else value
    return out


SIMULATED_AS = {"Signals": "made-up signals (no appliance model fits its sensors: its insights "
                           "are not scored; docs/simulator.md)"}


def text(report):
    """The summary a person reads at the end."""
    f = report["fleet"]
    if f["bytes_per_reading"] is None:  # no reading delivered: no quotient to show
        import copy
        f = copy.copy(f)  # of the same type as the report's
        f["bytes_per_reading"] = "no reading delivered, so no"
    hours = report["device_time_ms"] / 3600000.0
    span = ("%.2f days" % (hours / 24) if hours >= 48 else "1 hour" if round(hours, 2) == 1
            else "%g hours" % round(hours, 2))
    kinds = {}
    for d in report["devices"]:
        if d.get("simulated_as"):
            key = (d.get("model") or "no model", d["simulated_as"])
            kinds[key] = kinds.get(key, 0) + 1
    lines = [
        "%d device%s, %s of device time in %.0f s (%.0fx)" % (
            f["devices"], "" if f["devices"] == 1 else "s", span, report["wall_s"],
            report["speed"] or 0),
        "simulated as: %s" % "; ".join(
            "%d %s as %s" % (n, model, SIMULATED_AS.get(kind, kind.lower()))
            for (model, kind), n in sorted(kinds.items())),
        # the terms add up to what was generated: a reading a power cut took from RAM is no
        # mystery one line further down
        "readings: %d generated, %d delivered, %d reported dropped by full buffers, %d still "
        "waiting on devices, %d in RAM when the power was cut (not yet flushed, as the profile "
        "allows)%s%s, %d LOST" % (
            f["generated"], f["delivered"], f["reported_dropped"], f["waiting"],
            f["power_cut_window"],
            ", %d lost at the broker" % f["lost_at_broker"] if f["lost_at_broker"] else "",
            ", %d erased with a flash" % f["erased"] if f.get("erased") else "", f["lost"]),
        "faults: %d power cuts (%d readings in their RAM windows), %.1f h of outages, %d sensor "
        "faults, %d broker restarts; %d duplicates received and discarded" % (
            f["power_cuts"], f["power_cut_window"], f["outage_ms"] / 3600000.0,
            f.get("sensor_faults", 0), report["broker_restarts"], f["duplicates"]),
    ]
    failed = {}     # sensor -> [errors, devices, first detail]
    for d in report["devices"]:
        for sensor, (n, detail) in sorted(d.get("sensor_errors", {}).items()):
            x = failed.setdefault(sensor, [0, 0, detail])
            x[0] += n
            x[1] += 1
    if failed:
        # The injected faults were all the report said: a profile's wrong calibration failed
        # half the readings of a run that said "0 sensor faults".
        lines.append("sensor errors: %s%s; the first said: %s" % (
            ", ".join("%s %d on %d device%s" % (s, n, k, "" if k == 1 else "s")
                      for s, (n, k, _) in sorted(failed.items())),
            "" if f.get("sensor_faults") else
            " (no sensor fault was injected: the profile, a calibration or a range, does not "
            "fit what the appliance does)",
            "; ".join("%s: %s" % (s, x[2]) for s, x in sorted(failed.items())[:3])))
    crashed = [d for d in report["devices"] if d.get("crashed")]
    if crashed:
        # It showed as one device fewer online and its readings as "waiting", exit 0.
        lines.append("AGENTS STOPPED by an error on %d device%s (their readings since are not "
                     "generated): %s" % (
                         len(crashed), "" if len(crashed) == 1 else "s",
                         "; ".join("%s: %s" % (d["device"], d["crashed"])
                                   for d in crashed[:3])))
    if f.get("erases"):
        lines.append(
            "erased flash: %d erases, which took %d readings and %d events their buffers held "
            "undelivered (counted, not LOST)" % (f["erases"], f["erased"], f["events_erased"]))
    lines += [
        "events: %d raised, %d delivered, %d still waiting on devices, %d LOST; %s bytes on the "
        "air per reading; largest backlog %d batches (one device's peak)" % (
            f["events_raised"], f["events"], f["events_waiting"], f["events_lost"],
            f["bytes_per_reading"], f["backlog_max_batches"]),
        "repair: %d readings (%d batches) and %d events the broker lost were sent again by their "
        "devices; %d readings (%d batches) and %d events LOST AT THE BROKER" % (
            f["repaired"], f["repaired_batches"], f["events_repaired"], f["lost_at_broker"],
            f["lost_at_broker_batches"], f["events_lost_at_broker"]),
    ]
    if report["insight_scores"]:
        lines.append("insights: %d delivered, scored against the models' truth:"
                     % f["insights"])
        lines += scores.lines_text({area: [(x["name"], x["value"], x["target"], x["ok"])
                                           for x in rows]
                                    for area, rows in report["insight_scores"].items()})
    lost = [d for d in report["devices"]
            if d["lost"] or d["events_lost"] or d["lost_at_broker_batches"]
            or d["events_lost_at_broker"]]
    for d in lost[:10]:
        lines.append("  LOST %d readings and %d events on %s, and %d readings (%d batches) and "
                     "%d events at the broker (generated %d, delivered %d, dropped %d, "
                     "waiting %d)" % (d["lost"], d["events_lost"], d["device"],
                                      d["lost_at_broker"], d["lost_at_broker_batches"],
                                      d["events_lost_at_broker"], d["generated"],
                                      d["delivered"], d["reported_dropped"], d["waiting"]))
    return "\n".join(lines)
