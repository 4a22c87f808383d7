"""What needs someone now, device by device, with its evidence (the console's first page):

    alarm              a threshold the profile marks `alarm: true` stands raised (a fridge's
                       cabinet warm): its newest event is `raised` (a device tells an alarm's
                       state at its first reading after boot: `cleared` too)
    failing            a sensor whose newest sensor_error, of the device's latest boot, is
                       `raised`: a vaccine fridge whose only probe failed read as no alarm
    empty, reorder     a cartridge ran dry, or will within the lead time (no new one since)
    maintenance_due    a motor or compressor drifting from its learnt baseline
    dose_missed        doses missed in the last 7 days (per bottle)
    refill_needed      a bottle's supply below its threshold (no refill since)
    silent             nothing heard for longer than the console's --silent
    dropping           readings dropped by a full buffer, batches lost for good, or refused as
                       copies with other bytes (a device from before store ids whose store
                       was wiped)

An acknowledgement or snooze (table `acks`, written by console/app.py once the device said
yes where it goes to the device) hides an action until there is something newer than what was
acknowledged (a newer insight event, a new reading, a larger drop count) or the snooze ends.
"""
import time

from agent.clock import PLAUSIBLE_MS
from console.reads import DAY_MS, HOUR_MS, as_map
from console.said import duration
from firmware.profile.insights.energy import WATCH_NAMES

ORDER = {"alarm": 0, "failing": 1, "empty": 2, "reorder": 3, "maintenance_due": 4,
         "dose_missed": 5, "refill_needed": 6, "silent": 7, "dropping": 8}
TITLES = {"alarm": "Alarm", "failing": "Sensor failing", "empty": "Cartridge empty", "reorder": "Reorder due",
          "maintenance_due": "Maintenance due", "dose_missed": "Missed doses",
          "refill_needed": "Refill needed", "silent": "Silent", "dropping": "Dropping data"}
RESOLVED_BY = {"empty": "cartridge_replaced", "reorder": "cartridge_replaced",
               "refill_needed": "refilled"}
LOOK_BACK = 90 * DAY_MS  # insight events older than this are not looked at
MISSED_WINDOW = 7 * DAY_MS


def needed(db, rows, now_ms, silent_ms=2 * HOUR_MS):
    """[action dict] in order of urgency: kind, device, sensor ('' when none), event (the
    insight event an acknowledgement answers, or None), t_ms (of the evidence), title,
    evidence (text), figures (dict), model, seen (judged_on(), which an answer sends back)."""
    acks = {(d, a, s): (done, at, until, value) for d, a, s, done, at, until, value in db.rows(
        "SELECT device, action, sensor, done, at_ms, until_ms, value FROM acks")}
    out = []
    latest = {}
    missed = {}
    for device, t, event, sensor, value, fields in db.rows(
            "SELECT device, t_ms, event, sensor, value, fields FROM insights "
            "WHERE event IN ('empty', 'reorder', 'maintenance_due', 'dose_missed', "
            "'refill_needed', 'cartridge_replaced', 'refilled') AND t_ms >= ? "
            "ORDER BY t_ms, seq", (now_ms - LOOK_BACK,)):
        f = as_map(fields)
        if event == "dose_missed":
            # by the dose's time, which the row shows: a dose the device judged late at night
            # was listed in "the last 7 days" with a time more than 7 days back
            at = f.get("scheduled") if isinstance(f.get("scheduled"), int) else t
            if at >= now_ms - MISSED_WINDOW:    # per bottle: a device may weigh two
                missed.setdefault((device, sensor), []).append((t, sensor, f))
            continue
        if event in ("cartridge_replaced", "refilled"):
            for kind, by in RESOLVED_BY.items():
                if by == event:
                    latest.pop((device, kind, sensor), None)
            continue
        if event in ("empty", "reorder"):  # the newer of the two says how things stand
            latest.pop((device, "reorder" if event == "empty" else "empty", sensor), None)
        latest[(device, event, sensor)] = (t, value, f)
    for (device, kind, sensor), (t, value, f) in latest.items():
        a = _insight(kind, device, sensor, t, value, f)
        if kind == "reorder":
            _since_reorder(db, a, now_ms)
        out.append(a)
    for (device, sensor), misses in missed.items():
        out.append({"kind": "dose_missed", "device": device, "sensor": sensor,
                    "event": "dose_missed", "t_ms": misses[-1][0],
                    "evidence": "%d dose%s missed in the last 7 days: %s" % (
                        len(misses), "" if len(misses) == 1 else "s",
                        ", ".join(_when(f.get("scheduled", t)) for t, _, f in misses[-5:])),
                    "figures": {"missed": len(misses),
                                "scheduled": [f.get("scheduled", t) for t, _, f in misses]}})
    out.extend(_alarms(db))
    out.extend(_failing(db))
    wall_ms = int(time.time() * 1000)
    # Batches and events refused as copies with other bytes, by device: a device from before
    # store ids whose store was wiped numbers from 0 again under the same store, and the ingest
    # keeps none of them until its numbers pass the old ones (docs/ingest.md). Shown, not silent.
    refused = {}
    for topic, n in db.rows(
            "SELECT topic, count(*) FROM malformed WHERE reason LIKE ? AND received_at >= ? "
            "GROUP BY topic", ("%arrived again with other%", (wall_ms - MISSED_WINDOW) / 1000.0)):
        parts = topic.split("/")
        if len(parts) >= 3:
            refused[parts[-3]] = refused.get(parts[-3], 0) + n
    for r in rows.values():
        t, now = r["last_t_ms"], now_ms
        if t is not None and (t < PLAUSIBLE_MS or t > now_ms + HOUR_MS) and (
                r["last_seen"] is not None):
            # A clock never synced counts from boot (the days of 1970), one ahead is silent
            # only once the fleet's clock passes it (a year): when its last message came, by
            # the ingest's clock, tells (it was "nothing heard for 20792 days").
            t, now = int(r["last_seen"] * 1000), wall_ms
        never = t is None and r.get("first_seen") is not None
        if never:
            # Heard (a status, a health report) but never a reading: silent since it was first
            # heard, by the ingest's clock (an appliance installed that gets no data out).
            t, now = int(r["first_seen"] * 1000), wall_ms
        if t is not None and now - t > silent_ms:
            out.append({"kind": "silent", "device": r["device"], "sensor": "", "event": None,
                        "t_ms": t, "figures": {"silent_ms": now - t, "status": r["status"]},
                        "evidence": ("no reading since it was first heard, %s ago (%s)"
                                     if never else "nothing heard for %s (%s)") % (
                            duration(now - t), r["status"])})
        drops = (r["dropped"] + r["lost"] + r["dropped_unsent"] + r.get("erased", 0)
                 + refused.get(r["device"], 0))
        if drops:
            parts = []
            if refused.get(r["device"]):
                parts.append("%d batches or events refused in the last 7 days: their numbers "
                             "were taken by earlier ones (firmware from before store ids whose "
                             "store was wiped? docs/ingest.md, De-duplication)"
                             % refused[r["device"]])
            if r["dropped"]:
                parts.append("%d readings dropped by a full buffer" % r["dropped"])
            if r["dropped_unsent"]:
                parts.append("%d batch%s dropped unsent" % (
                    r["dropped_unsent"], "" if r["dropped_unsent"] == 1 else "es"))
            if r.get("erased"):
                parts.append("%d batch%s published and never delivered went with an erased "
                             "flash (a new log since, numbered from 0)" % (
                                 r["erased"], "" if r["erased"] == 1 else "es"))
            if r["lost"]:
                parts.append("%d batch%s lost at the broker" % (r["lost"], "" if r["lost"] == 1
                                                                else "es"))
            out.append({"kind": "dropping", "device": r["device"], "sensor": "", "event": None,
                        "t_ms": t, "figures": {"drops": drops, "dropped": r["dropped"],
                                               "lost": r["lost"],
                                               "dropped_unsent": r["dropped_unsent"],
                                               "erased": r.get("erased", 0),
                                               "refused": refused.get(r["device"], 0)},
                        "evidence": "; ".join(parts)})
    shown = []
    for a in out:
        a["title"] = TITLES[a["kind"]]
        a["model"] = rows[a["device"]]["model"] if a["device"] in rows else None
        a["seen"] = judged_on(a)   # an answer names it: what the page showed, not what came since
        ack = acks.get((a["device"], a["kind"], a["sensor"]))
        if ack is not None and _settled(a, ack, now_ms):
            continue
        shown.append(a)
    shown.sort(key=lambda a: (ORDER[a["kind"]], _urgency(a), a["device"], a["sensor"]))
    return shown


# the newest event of each alarm, through the index events_alarms (ingest/store): a fleet's
# events are mostly not alarms, and an alarm's are mostly behind its newest
ALARMS_SQL = ("SELECT e.device, e.sensor, e.event, e.seq, e.boot, e.t_ms, e.synced, "
              "e.received_at, e.state, e.value FROM events e JOIN (SELECT device, sensor, event, "
              "max(seq) AS seq FROM events WHERE detail = 'alarm' GROUP BY device, sensor, "
              "event) n ON e.device = n.device AND e.seq = n.seq")
# where the run of `raised` an alarm stands in began: the first raised after its last cleared
RUN_SQL = ("SELECT min(seq) FROM events WHERE device = ? AND sensor = ? AND event = ? AND "
           "detail = 'alarm' AND seq > coalesce((SELECT max(seq) FROM events WHERE device = ? "
           "AND sensor = ? AND event = ? AND detail = 'alarm' AND state = 'cleared'), -1)")


def _alarms(db):
    """Alarm thresholds standing, a row per sensor. A device tells the state of every alarm of
    a sensor at the first reading after boot, so of a sensor's alarms those told at its newest
    telling's boot are the profile's now (one renamed or removed since is not), and each stands
    when its newest event is `raised`."""
    newest = {}
    for device, sensor, event, seq, boot, t, synced, received_at, state, value in db.rows(
            ALARMS_SQL):
        if not synced:  # times since boot (1970): when the ingest got it
            t = int(received_at * 1000)
        newest.setdefault((device, sensor), []).append((seq, boot, event, state, t, value))
    out = []
    for (device, sensor), alarms in sorted(newest.items()):
        boot = max(alarms)[1]
        standing = [a for a in alarms if a[3] == "raised" and a[1] == boot]
        if not standing:
            continue
        # Acknowledged until a new run of it begins: a restart while it stands raises it again
        # (the state starts afresh at boot), which is not news. By sequence number, not time,
        # which a clock never synced starts again from 0 at each boot.
        began = max(db.one(RUN_SQL, (device, sensor, event) * 2)[0]
                    for _, _, event, _, _, _ in standing)
        standing.sort()
        out.append({"kind": "alarm", "device": device, "sensor": sensor, "event": None,
                    "t_ms": min(t for _, _, _, _, t, _ in standing),
                    "figures": {"seq": began, "events": [
                        {"event": e, "value": v, "t_ms": at}
                        for _, _, e, _, at, v in standing]},
                    "evidence": "; ".join("%s: %s at %s, not cleared since" % (
                        e, num_text(v), _when(at)) for _, _, e, _, at, v in standing)})
    return out


# each sensor's newest sensor_error, through the index events_sensor_errors, unless the device
# has sent batches of a later boot since (one that rebooted with the sensor working says
# nothing of it); a boot of no batch yet counts (a device whose only sensor is dead sends none)
FAILING_SQL = ("SELECT e.device, e.sensor, e.seq, e.t_ms, e.synced, e.received_at, e.state, "
               "e.detail FROM events e JOIN (SELECT device, sensor, max(seq) AS seq FROM events "
               "WHERE event = 'sensor_error' GROUP BY device, sensor) n ON e.device = n.device "
               "AND e.seq = n.seq JOIN devices d ON d.device = e.device "
               "WHERE e.boot >= coalesce(d.last_boot, 0)")


def _failing(db):
    """Sensors failing now, a row each: a dead probe reads as no alarm, and the device is not
    silent while its other sensors report."""
    out = []
    for device, sensor, seq, t, synced, received_at, state, detail in db.rows(FAILING_SQL):
        if state != "raised":
            continue
        if not synced:
            t = int(received_at * 1000)
        out.append({"kind": "failing", "device": device, "sensor": sensor, "event": None,
                    "t_ms": t, "figures": {"seq": seq, "error": detail},
                    "evidence": "failing since %s: %s" % (_when(t), detail or "an error")})
    return out


def judged_on(action):
    """What an acknowledgement of action is judged on (acks.value): it stays hidden until this
    grows (see _settled)."""
    if action["kind"] == "dropping":
        return action["figures"]["drops"]
    if action["kind"] in ("alarm", "failing"):
        return action["figures"]["seq"]
    return action["t_ms"]


def _settled(action, ack, now_ms):
    done, at, until, value = ack
    if done == "snooze":
        return until is not None and now_ms < until
    return value is not None and judged_on(action) <= value


def _insight(kind, device, sensor, t, value, f):
    figures = {k: f.get(k) for k in f}
    # The sensor is the row's own column: not said again. What stands now leads (a reorder's
    # level and days now come first, from _since_reorder); the figures behind it follow.
    if kind == "reorder":
        evidence = ("reorder sent at %s %% left, %s days to empty (%s to %s), lead time %s days; "
                    "%s %%/day" % (
                        num_text(f.get("level")), num_text(f.get("days", value)),
                        num_text(f.get("low_days")), num_text(f.get("high_days")),
                        num_text(f.get("lead_days")), num_text(f.get("rate_per_day"))))
    elif kind == "empty":
        evidence = "empty at %s %%, %s" % (num_text(f.get("level", value)),
                                           "reordered before" if f.get("reordered")
                                           else "never reordered")
    elif kind == "maintenance_due":
        # `cycles` counts chart points: with a batch each is the median of that many cycles
        batch = f.get("batch")
        points = ("%s points of %s cycles" % (num_text(f.get("cycles")), num_text(batch))
                  if isinstance(batch, int) and not isinstance(batch, bool) and batch > 1
                  else "%s cycles" % num_text(f.get("cycles")))
        evidence = ("%s %s%s %% from this unit's normal %s (spread %s), and staying there: "
                    "CUSUM %s%s after %s" % (
                        WATCH_NAMES.get(f.get("watch"), f.get("watch")),
                        "" if not _is_number(f.get("drift_pct")) or f["drift_pct"] < 0 else "+",
                        num_text(f.get("drift_pct")), num_text(f.get("baseline")),
                        num_text(f.get("spread")), num_text(f.get("cusum")),
                        " (limit %s)" % num_text(f["limit"]) if "limit" in f else "", points))
    else:  # refill_needed
        evidence = "%s pills left, %s days of supply at %s a day" % (
            num_text(f.get("count")), num_text(f.get("days_left", value)), num_text(f.get("per_day")))
    return {"kind": kind, "device": device, "sensor": sensor, "event": kind, "t_ms": t,
            "evidence": evidence, "figures": figures}


FRESH_MS = 2 * DAY_MS   # a forecast older (a device that stopped sending them): the level's


def _since_reorder(db, a, now_ms):
    """A reorder's row as things stand now: the level of the sensor's newest batch, and the
    forecast less the days since (the row showed the level and days of when it was sent, and
    the fleet's reorders sorted by those)."""
    f = a["figures"]
    row = db.one("SELECT v_last FROM channel_batches WHERE device = ? AND channel = ? "
                 "ORDER BY t_first DESC LIMIT 1", (a["device"], a["sensor"]))
    if row is not None and _is_number(row[0]):
        f["level_now"] = row[0]
    rate = f.get("rate_per_day")
    newer = db.one("SELECT t_ms, value FROM insights WHERE device = ? AND sensor = ? AND "
                   "event IN ('forecast', 'reorder') AND t_ms >= ? ORDER BY t_ms DESC LIMIT 1",
                   (a["device"], a["sensor"], a["t_ms"]))
    if newer is not None and _is_number(newer[1]) and now_ms - newer[0] <= FRESH_MS:
        # the device's own days to empty, of its newest forecast or the reorder itself (its
        # rate is the weeks', spread over the week), less the days since, as the chart draws
        # it: the reorder's rate over the level gave another date than the chart
        f["days_now"] = round(max(newer[1] - (now_ms - newer[0]) / DAY_MS, 0.0), 1)
    elif "level_now" in f and _is_number(rate) and rate > 0:
        # the ink there is at the rate the device forecast with: the days since alone ran on
        # past empty ("2.2 % left, about -4.7 days to empty")
        f["days_now"] = round(max(f["level_now"], 0) / rate, 1)
    elif _is_number(f.get("days")):
        f["days_now"] = round(f["days"] - (now_ms - a["t_ms"]) / DAY_MS, 1)
    now = []
    if "level_now" in f:
        now.append("%s %% left" % num_text(f["level_now"]))
    if "days_now" in f:
        now.append("about %s days to empty" % num_text(f["days_now"]))
    if now:
        a["evidence"] = "now " + ", ".join(now) + "; " + a["evidence"]


def _urgency(a):
    f = a["figures"]
    if a["kind"] == "reorder":
        days = f.get("days_now", f.get("days"))
        return days if _is_number(days) else 0
    if a["kind"] == "dose_missed":
        return -f["missed"]
    if a["kind"] == "silent":
        return -f["silent_ms"]
    if a["kind"] == "dropping":
        return -f["drops"]
    return -a["t_ms"]


def _when(t_ms):
    if not isinstance(t_ms, int):
        return "?"
    return time.strftime("%a %d %b %H:%M UTC", time.gmtime(t_ms / 1000))


def num_text(v):
    if isinstance(v, bool) or v is None:
        return "?"
    if isinstance(v, float):
        return ("%.1f" % v) if abs(v) >= 10 else ("%.2f" % v).rstrip("0").rstrip(".")
    return str(v)


def _is_number(v):
    """A device's field is any JSON value: only a number is compared as one (a text one took
    the whole page down with a TypeError)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
