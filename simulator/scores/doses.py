"""Doses: the adherence insight (agent/insights/adherence.py) scored against the pill bottle
model's truth (simulator/models/pill_bottle.py). HOST-ONLY (CPython).

A unit is anything with .truth, .insights [(t, event, sensor, value, fields)] and .profile (as
provisioned: the patient's own dose times in the count sensor's adherence insight). Scheduled
doses are matched by their scheduled time (Unix ms), which the truth and the events both carry.

Only the scheduled doses the device could judge count: the slot opened after the run began
(truth patient start_ms) and its close + settle had passed before the last thing the run shows
(the latest truth record or insight event). Of those:
  taken      the truth has a take for it, on time or late (not the second take of a double)
  missed     the truth has it in missed_doses (forgotten, or the bottle was empty)
  dose_missed sensitivity   share of missed doses with a dose_missed event
  dose_missed specificity   share of taken doses without one
  dose_taken recall         share of taken doses with a dose_taken event
  dose_taken precision      share of dose_taken events (in judged slots) whose dose was taken
Comparison lines: the published adherence sensor's sensitivity 0.949 and specificity 0.994; the
share of taken doses reported missed (a bottle study: about 0.036); on time / late and pills
agreement;
extra_dose against the truth's double takes; handling events per bottle-day the detector had to
ignore; dose_incomplete against the doses the truth took in part (fewer pills than the dose:
a bottle running out); the counts the shares rest on.
refill_needed: the truth's count (its start, less each take, a refill's count after) over the
pills a day of the schedule is the days of supply; the supply runs low when that falls below
refill_days (once a supply: a refill re-arms it). Recall: the share of those moments, a day or
more before the run ended, with a refill_needed from an hour before to REFILL_LATE_MS after;
precision: the share of refill_needed events that are.
"""
from agent.insights.adherence import early_of

DAY_MS = 86400000
MINUTE_MS = 60000
HOUR_MS = 3600000
REFILL_LATE_MS = DAY_MS


def _cfg(profile):
    for s in profile["sensors"]:
        i = s.get("insight")
        if i is not None and i.get("type") == "adherence":
            return s["name"], i
    return None, None


def _close(cfg, sched):
    """When the detector's slot for `sched` closes (agent/insights/adherence.py)."""
    off = cfg.get("utc_offset_min", 0)
    m = ((sched // MINUTE_MS) + off) % 1440
    times = cfg["times_min"]
    later = [x for x in times if x > m]
    gap = ((later[0] if later else times[0] + 1440) - m) * MINUTE_MS
    early = early_of(times, cfg["window_ms"], cfg.get("early_ms", 0))
    return min(sched + cfg["late_ms"], sched + gap - early)


def _dose_pills(cfg, sched):
    """The pills of the dose at `sched`: the profile's one count, or its entry for that dose
    time (a list in the sorted times' order)."""
    pills = cfg["pills"]
    if not isinstance(pills, list):
        return pills
    m = ((sched // MINUTE_MS) + cfg.get("utc_offset_min", 0)) % 1440
    times = cfg["times_min"]
    return pills[times.index(m)] if m in times else max(pills)


def _low_supply(truth, cfg):
    """The times the truth's days of supply fell below refill_days, once a supply."""
    pills = cfg["pills"]
    per_day = sum(pills) if isinstance(pills, list) else pills * len(cfg["times_min"])
    changes = [(t, -n, None) for t, n, _, _ in truth["doses"]]
    changes += [(t, 0, after) for t, _, after in truth["refills"]]
    count = truth["patient"].get("start_count")
    if count is None or not per_day:
        return []
    out = []
    armed = True
    t0 = truth["patient"]["start_ms"]
    for t, less, after in [(t0, 0, count)] + sorted(changes, key=lambda c: c[0]):
        if after is not None:
            armed = armed or after > count
            count = after
        else:
            count += less
        if armed and count / float(per_day) < cfg["refill_days"]:
            out.append(t)
            armed = False
    return out


def _ratio(a, b):
    return a / b if b else None


def tally(units):
    """Counts over every unit (a dict), for score() and for tests."""
    c = {"missed": 0, "missed_hit": 0, "taken": 0, "taken_flagged_missed": 0, "taken_hit": 0,
         "reported_taken": 0, "reported_taken_true": 0, "status_agree": 0, "pills_agree": 0,
         "doubles": 0,
         "doubles_hit": 0, "extra": 0, "extra_true": 0, "handling": 0, "bottle_days": 0.0,
         "part": 0, "part_hit": 0, "incomplete": 0, "incomplete_true": 0,
         "low": 0, "low_hit": 0, "refill_needed": 0, "refill_needed_true": 0}
    for u in units:
        sensor, cfg = _cfg(u.profile)
        if cfg is None:
            continue
        truth = u.truth
        start = truth["patient"]["start_ms"]
        times = [t for t, _, _, _ in truth["doses"]] + [t for t, _, _ in truth["refills"]]
        times += [s for s, _ in truth["missed_doses"]] + [i[0] for i in u.insights]
        end = max(times) if times else start
        c["bottle_days"] += (end - start) / DAY_MS

        def judged(sched):
            return (sched - cfg["window_ms"] >= start
                    and _close(cfg, sched) + cfg["settle_ms"] <= end)

        taken = {}
        doubles = set()
        any_double = set()  # an extra_dose is right for a double whose slot the run cut short too
        for t, n, sched, status in truth["doses"]:
            if status == "double":
                any_double.add(sched)
            if judged(sched):
                if status == "double":
                    doubles.add(sched)
                else:
                    taken[sched] = (status, n)
        missed = set(s for s, _ in truth["missed_doses"] if judged(s))
        c["handling"] += len(truth.get("handling", ()))
        rep_missed = set()
        rep_taken = {}
        rep_extra = set()
        rep_incomplete = set()
        for t, event, s, value, fields in u.insights:
            if s != sensor or not fields:
                continue
            sched = fields.get("scheduled")
            if event == "extra_dose":
                c["extra"] += 1
                if sched is not None and sched in any_double:
                    c["extra_true"] += 1
                    rep_extra.add(sched)
            if sched is None or not judged(sched):
                continue
            if event == "dose_missed":
                rep_missed.add(sched)
            elif event == "dose_incomplete":
                rep_incomplete.add(sched)
            elif event == "dose_taken":
                rep_taken[sched] = (fields.get("status"), fields.get("pills"))
                c["reported_taken"] += 1
                if sched in taken:
                    c["reported_taken_true"] += 1
        c["missed"] += len(missed)
        c["missed_hit"] += len(missed & rep_missed)
        c["taken"] += len(taken)
        c["taken_flagged_missed"] += len([s for s in taken if s in rep_missed])
        c["taken_hit"] += len([s for s in taken if s in rep_taken])
        c["status_agree"] += len([s for s in taken if s in rep_taken
                                  and rep_taken[s][0] == taken[s][0]])
        c["pills_agree"] += len([s for s in taken if s in rep_taken
                                 and rep_taken[s][1] == taken[s][1]])
        c["doubles"] += len(doubles)
        c["doubles_hit"] += len(doubles & rep_extra)
        part = set(d for d, (_, n) in taken.items() if 0 < n < _dose_pills(cfg, d))
        c["part"] += len(part)
        c["part_hit"] += len(part & rep_incomplete)
        c["incomplete"] += len(rep_incomplete)
        c["incomplete_true"] += len(rep_incomplete & part)
        every_low = _low_supply(truth, cfg)
        lows = [t for t in every_low if t + DAY_MS <= end]
        needed = [t for t, event, s, _, _ in u.insights
                  if s == sensor and event == "refill_needed"]
        c["low"] += len(lows)
        c["low_hit"] += len([t for t in lows
                             if any(-HOUR_MS <= x - t <= REFILL_LATE_MS for x in needed)])
        c["refill_needed"] += len(needed)
        c["refill_needed_true"] += len([x for x in needed if any(
            -HOUR_MS <= x - t <= REFILL_LATE_MS for t in every_low)])
    return c


def score(units):
    """[(name, value, target text, ok)]; a value is None when nothing was there to score."""
    c = tally(units)
    out = []

    def line(name, value, target, ok):
        """ok None: a figure shown for comparison, with no verdict."""
        out.append((name, value, target,
                    None if value is None or ok is None else ok(value)))

    sens = _ratio(c["missed_hit"], c["missed"])
    spec = _ratio(c["taken"] - c["taken_flagged_missed"], c["taken"])
    line("dose_missed sensitivity (published sensor: 0.949)", sens, ">= 0.97",
         lambda v: v >= 0.97)
    line("dose_missed specificity (published sensor: 0.994)", spec, ">= 0.995",
         lambda v: v >= 0.995)
    line("dose_taken precision", _ratio(c["reported_taken_true"], c["reported_taken"]),
         ">= 0.97", lambda v: v >= 0.97)
    line("dose_taken recall", _ratio(c["taken_hit"], c["taken"]), ">= 0.97",
         lambda v: v >= 0.97)
    line("taken doses reported missed (a bottle study: about 0.036)",
         None if spec is None else 1.0 - spec, "(for comparison)", None)
    line("dose_taken on time / late as in the truth", _ratio(c["status_agree"], c["taken_hit"]),
         "(for comparison)", None)
    line("dose_taken pills as in the truth", _ratio(c["pills_agree"], c["taken_hit"]),
         "(for comparison)", None)
    line("extra_dose: double takes found", _ratio(c["doubles_hit"], c["doubles"]),
         "(for comparison)", None)
    line("extra_dose: events that were a double take", _ratio(c["extra_true"], c["extra"]),
         "(for comparison)", None)
    line("handling that is no dose (lift, shake, carry, open, cap off), per bottle-day",
         _ratio(c["handling"], c["bottle_days"]), "(for comparison)", None)
    line("dose_incomplete: doses taken in part found", _ratio(c["part_hit"], c["part"]),
         "(for comparison)", None)
    line("dose_incomplete: events that were a dose taken in part",
         _ratio(c["incomplete_true"], c["incomplete"]), "(for comparison)", None)
    line("refill_needed when the supply fell below refill_below (recall)",
         _ratio(c["low_hit"], c["low"]), "(for comparison)", None)
    line("refill_needed events that were (precision)",
         _ratio(c["refill_needed_true"], c["refill_needed"]), "(for comparison)", None)
    for name, key in (("missed doses judged", "missed"), ("taken doses judged", "taken"),
                      ("supplies that ran low", "low"), ("bottle-days", "bottle_days")):
        line(name, c[key], "", None)
    return out
