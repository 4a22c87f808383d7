"""Scores of the energy insight on washers and fridges (simulator/scores): cycles found, worn
motors and compressors flagged before they fail, false maintenance alarms. HOST-ONLY (CPython).

Definitions (times are the truth's, simulator/models/washer.py and fridge.py):
- A unit's horizon is the time of its last insight event (a daily energy_report comes every
  day); its exposure starts at the first reading its first report covers (`since`).
- Cycle recall: the share of the truth's programmes (washers) or compressor cycles (fridges;
  two joined by a defrost between them, the power never off, are one) that ended by the
  horizon and that a `cycle` event's [start, end] overlaps, each event
  credited to one of them at most (two washes run together as one cycle are one found, one
  missed). Precision: the share of `cycle` events that overlap a truth cycle or a fridge's
  defrost (it runs into the compressor's pull-down: one cycle; on a failed fridge it is a
  cycle of its own).
- Programmes named right: of the washes found on units whose profile names signatures, the
  share whose `cycle` event carries the programme the model ran (no target: shown).
- Flagged before failure: among degrading units whose failure_ms is by the horizon, the share
  with a maintenance_due at or after degrade_onset_ms and before failure_ms; days before
  failure: failure_ms minus that first alarm (0 for a unit not flagged), the median over them.
- Degrading units not failed yet (their failure_ms past the horizon, their onset before it): the
  share with a maintenance_due at or after degrade_onset_ms (no target: a 30-day run's worn
  units fail after it).
- False maintenance_due per 100 device-months (30 days): alarms on healthy units, and on
  degrading units before their onset, over the time they were healthy.
- energy_report kWh: each whole day's report (no readings missing; its `until` at a report
  time the model marked, truth energy_wh, and its `since` at the one before, within an hour)
  against the energy the model used between the two marks, without the meter's noise: the
  median and 95th percentile of the relative error; standby_kwh against the part of that energy
  the model drew below standby_below (its median relative error). CO2 and cost are the kWh
  times the profile's factors.
Names are the same in every run (a JSON consumer compares them across runs); the counts they
rest on are lines of their own.
"""
import statistics

DAY_MS = 86400000
MONTH_MS = 30 * DAY_MS
KINDS = (("programmes", "washer programmes"), ("compressor_cycles", "fridge compressor cycles"))


MIN_MONTHS = 1     # healthy device-months before the false alarm rate is judged

def _truth_cycles(truth):
    if "programmes" in truth:
        return "programmes", [(p["t"], p["end"]) for p in truth["programmes"]]
    if "compressor_cycles" in truth:
        # A defrost that starts as a compressor cycle ends and ends as the next begins (its
        # pull-down) leaves the power on throughout: on the line the three are one cycle.
        bridges = {(s, e) for s, e in truth.get("defrosts", ())}
        out = []
        for s, e in sorted(truth["compressor_cycles"]):
            if out and any(b == (out[-1][1], s) for b in bridges):
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return "compressor_cycles", out
    return None, []


def _overlapping(a, b):
    """How many intervals of a (sorted by start) overlap some interval of b (sorted)."""
    hit = 0
    j = 0
    for s, e in a:
        while j < len(b) and b[j][1] <= s:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][1] > s:
                hit += 1
                break
            k += 1
    return hit


def _matched(truth, detected):
    """[(i, j)]: truth cycle i found as detected cycle j, each j credited to one i at most (the
    first it overlaps); both lists sorted by start."""
    pairs = []
    used = set()
    j = 0
    for i, (s, e) in enumerate(truth):
        while j < len(detected) and detected[j][1] <= s:
            j += 1
        k = j
        while k < len(detected) and detected[k][0] < e:
            if k not in used and detected[k][1] > s:
                used.add(k)
                pairs.append((i, k))
                break
            k += 1
    return pairs


def _signatures(profile):
    return any((s.get("insight") or {}).get("programmes") for s in profile.get("sensors", ()))


def _unit(u, out):
    events = [x for x in u.insights if x[1] in ("cycle", "energy_report", "maintenance_due")]
    if not events:
        return
    horizon = max(x[0] for x in events)
    reports = [x for x in events if x[1] == "energy_report"]
    begin = min([x[0] for x in events] + [x[4]["since"] for x in reports[:1]])
    cycles = sorted((x[4]["start"], x[4]["end"], x[4].get("programme")) for x in events
                    if x[1] == "cycle")
    whole = [x[4] for x in events if x[1] == "cycle" and not x[4].get("gap")]
    out["figured"][0] += len(whole)
    out["figured"][1] += sum(1 for f in whole if f.get("feature") is not None)
    detected = [(s, e) for s, e, _ in cycles]
    kind, truth = _truth_cycles(u.truth)
    if kind is not None:
        truth = sorted(c for c in truth if c[1] <= horizon)
        pairs = _matched(truth, detected)
        n, hit = out["recall"].get(kind, (0, 0))
        out["recall"][kind] = (n + len(truth), hit + len(pairs))
        if kind == "programmes" and _signatures(u.profile):
            names = {(p["t"], p["end"]): p["programme"] for p in u.truth["programmes"]}
            out["named"][0] += len(pairs)
            out["named"][1] += sum(1 for i, j in pairs
                                   if cycles[j][2] == names.get(truth[i]))
        out["precision"][0] += len(detected)
        real = sorted(_truth_cycles(u.truth)[1] + [(s, e) for s, e in
                                                    u.truth.get("defrosts", ())])
        out["precision"][1] += _overlapping(detected, real)
    marks = u.truth.get("energy_wh") or []
    for i in range(1, len(marks)):
        (t0, wh0, sb0), (t1, wh1, sb1) = marks[i - 1], marks[i]
        for x in reports:
            f = x[4]
            if (f.get("missing_s") == 0 and abs(t1 - f["until"]) < DAY_MS // 24
                    and abs(t0 - f["since"]) < DAY_MS // 24 and wh1 > wh0):
                out["kwh"].append(abs(f["kwh"] * 1000.0 - (wh1 - wh0)) / (wh1 - wh0))
                if sb1 > sb0 and f.get("standby_kwh") is not None:
                    out["standby"].append(abs(f["standby_kwh"] * 1000.0 - (sb1 - sb0))
                                          / (sb1 - sb0))
                break
    alarms = [x[0] for x in events if x[1] == "maintenance_due"]
    onset = u.truth.get("degrade_onset_ms")
    failure = u.truth.get("failure_ms")
    healthy_until = horizon if not u.truth.get("degrading") else min(onset, horizon)
    out["healthy_ms"] += max(0, healthy_until - begin)
    out["false"] += sum(1 for t in alarms if t < healthy_until)
    if u.truth.get("degrading") and failure is not None and failure <= horizon:
        flagged = [t for t in alarms if onset <= t < failure]
        out["leads"].append((failure - flagged[0]) / DAY_MS if flagged else 0.0)
        out["flagged"] += bool(flagged)
    elif u.truth.get("degrading") and onset is not None and onset < horizon:
        # Worn, not failed yet (a 30-day run's units fail later): flagged or not so far.
        out["wearing"][0] += 1
        out["wearing"][1] += any(t >= onset for t in alarms)


def score(units):
    out = {"recall": {}, "precision": [0, 0], "healthy_ms": 0, "false": 0, "leads": [],
           "flagged": 0, "named": [0, 0], "figured": [0, 0], "kwh": [], "standby": [],
           "wearing": [0, 0]}
    for u in units:
        _unit(u, out)
    lines = []
    for kind, label in KINDS:
        n, hit = out["recall"].get(kind, (0, 0))
        if n:
            lines.append(("%s detected as cycles (recall)" % label, hit / n, ">= 0.95",
                          hit / n >= 0.95))
            lines.append(("%s that ended in the run" % label, n, "", None))
    n, hit = out["precision"]
    if n:
        lines.append(("cycles that are real (precision)", hit / n, ">= 0.95", hit / n >= 0.95))
        lines.append(("cycle events", n, "", None))
    # A `watch` that does not fit the appliance (reversal on a fridge) measures nothing: the
    # maker finds out here, not when no unit ever raises maintenance_due.
    n, hit = out["figured"]
    if n:
        lines.append(("whole cycles the watch measured (with none, maintenance_due can never "
                      "be raised)", hit / n, "> 0", hit > 0))
    n, hit = out["named"]
    if n:
        lines.append(("washes named the programme they ran", hit / n,
                      "(the profile's signatures)", None))
    leads = out["leads"]
    share = out["flagged"] / len(leads) if leads else None
    med = statistics.median(leads) if leads else None
    lines.append(("degrading units flagged before failure", share, ">= 0.9",
                  None if share is None else share >= 0.9))
    lines.append(("median days flagged before failure", med, ">= 7",
                  None if med is None else med >= 7))
    lines.append(("degrading units that failed in the run", len(leads), "", None))
    n, hit = out["wearing"]
    if n:
        lines.append(("degrading units not failed yet, flagged since their wear began", hit / n,
                      "(no target)", None))
        lines.append(("degrading units not failed yet", n, "", None))
    months = out["healthy_ms"] / MONTH_MS
    # a rate per 100 device-months from a few days is no finding (0 read as a pass, one false
    # alarm as 1500 and a miss): judged from MIN_MONTHS, the count shown below it either way
    rate = 100.0 * out["false"] / months if months >= MIN_MONTHS else None
    lines.append(("false maintenance_due per 100 device-months", rate,
                  "<= 1" if months >= MIN_MONTHS or not months else
                  "(<= 1, judged from %d healthy device-month)" % MIN_MONTHS,
                  None if rate is None else rate <= 1.0))
    if months > 0:
        lines.append(("false maintenance_due", out["false"], "", None))
        lines.append(("healthy device-months", months, "", None))
    errors = sorted(out["kwh"])
    if errors:
        lines.append(("energy_report kWh against the model's energy: median relative error",
                      statistics.median(errors), "(no target)", None))
        lines.append(("energy_report kWh against the model's energy: 95th percentile relative "
                      "error", errors[min(len(errors) - 1, len(errors) * 95 // 100)],
                      "(no target)", None))
        lines.append(("energy_report whole days scored", len(errors), "", None))
    errors = sorted(out["standby"])
    if errors:
        lines.append(("energy_report standby_kwh against the model's standby: median relative "
                      "error", statistics.median(errors), "(no target)", None))
    return lines
