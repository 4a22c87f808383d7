"""The read side: what the database holds, per device and for the whole fleet, for `tether
ingest`, `tether simulate`, reports and plots. Each function takes a database URL or a SQLite path
(ingest/url.py db_url) and reads through the store's shared dialect (ingest/store)."""
import json

from ingest.store import open_store


def _open(db_path):
    return open_store(db_path, create=False)


def device_count(db_path):
    """The devices the database knows; -1 when it cannot be read (yet)."""
    try:
        with _closing(open_store(db_path, timeout=5.0, create=False)) as db:
            return db.execute("SELECT count(*) FROM devices").fetchone()[0]
    except Exception:  # noqa: BLE001 - any backend's error: a progress line must not stop it
        return -1


REPAIR_COUNTS = ("lost_at_broker", "dropped_by_device", "erased_with_device",
                 "events_lost_at_broker", "events_dropped_by_device", "events_erased_with_device")


def summary(db_path):
    """Per device, from the database alone: readings, batches, duplicates, gaps [(from_seq,
    to_seq)] (missing between stored batches, settled or not), first_seq, last_seq,
    dropped_reported (the largest running total of the batch envelopes), dropped_health (of the
    health reports), events, held, last_status, last_boot; and repair: repaired and
    repaired_readings (batches, and their readings, that came in answer to a resend command),
    lost_at_broker and dropped_by_device (batches the device said it no longer holds, or
    dropped unsent), events_repaired, events_lost_at_broker, events_dropped_by_device, newest
    (the newest batch the device's health reported), open (batches missing up to it and not
    settled: being repaired)."""
    with _closing(_open(db_path)) as db:
        out = {}
        for (device, dup, dropped, dropped_health, status, boot, repaired, repaired_readings,
             events_repaired, newest) in db.execute(
                "SELECT device, duplicates, dropped_reported, dropped_health, last_status, "
                "last_boot, repaired, repaired_readings, events_repaired, batch_newest "
                "FROM devices ORDER BY device"):
            out[device] = {"readings": 0, "batches": 0, "duplicates": dup, "gaps": [],
                           "first_seq": None, "last_seq": None, "dropped_reported": dropped,
                           "dropped_health": dropped_health, "events": 0, "held": 0,
                           "last_status": status, "last_boot": boot, "repaired": repaired,
                           "repaired_readings": repaired_readings,
                           "events_repaired": events_repaired, "newest": newest, "open": 0}
            for key in REPAIR_COUNTS:
                out[device][key] = 0

        def each(sql):
            for row in db.execute(sql):
                yield out.setdefault(row[0], {}), row[1:]

        for d, (n,) in each("SELECT device, count(*) FROM readings GROUP BY device"):
            d["readings"] = n
        for d, (n, lo, hi) in each("SELECT device, count(*), min(seq), max(seq) FROM batches "
                                   "GROUP BY device"):
            d["batches"], d["first_seq"], d["last_seq"] = n, lo, hi
        for d, (lo, hi) in each("SELECT device, from_seq, to_seq FROM gaps "
                                "ORDER BY device, from_seq"):
            d["gaps"].append((lo, hi))
        for d, (n,) in each("SELECT device, count(*) FROM events GROUP BY device"):
            d["events"] = n
        for d, (n,) in each("SELECT device, count(*) FROM held GROUP BY device"):
            d["held"] = n
        for d, (kind, reason, n) in each("SELECT device, kind, reason, count(*) FROM lost "
                                         "GROUP BY device, kind, reason"):
            d[("events_" if kind == "event" else "") + _REASON[reason]] = n
        for d, (n,) in each(_OPEN_SQL + " GROUP BY device"):
            d["open"] = n
        return out


_REASON = {"broker": "lost_at_broker", "dropped": "dropped_by_device",
           "erased": "erased_with_device"}


def _open_sql(kind):
    """Per device: the batches (or events) missing between `done` and the newest known that are
    neither stored nor settled in `lost`."""
    table, last = ("batches", "last_seq") if kind == "batch" else ("events", "last_event_seq")
    return ("SELECT device, greatest(coalesce({last}, -1), coalesce({k}_newest, -1)) - {k}_done "
            "- (SELECT count(*) FROM {table} x WHERE x.device = devices.device "
            "AND x.seq > devices.{k}_done) "
            "- (SELECT count(*) FROM lost l WHERE l.device = devices.device AND l.kind = '{k}' "
            "AND l.seq > devices.{k}_done) {held}FROM devices WHERE {k}_done IS NOT NULL"
            ).format(k=kind, table=table, last=last, held=(
                # compact batches waiting for their schema are here, as repair.plan counts them
                "- (SELECT count(*) FROM held h WHERE h.device = devices.device "
                "AND h.seq > devices.batch_done) " if kind == "batch" else ""))


_OPEN_SQL = _open_sql("batch")


def repairing(db_path, devices=None):
    """Batches and events of the file's devices (or of those in `devices`) that are missing up
    to the newest their health reported and not settled (being repaired, or still on their
    way); 0 when all are whole."""
    with _closing(_open(db_path)) as db:
        return sum(max(0, n) for kind in ("batch", "event")
                   for device, n in db.execute(_open_sql(kind))
                   if devices is None or device in devices)


def known_newest(db_path):
    """{device: (batch, event)}: the newest sequence numbers of each device that the database
    knows, from what it stored and what the device's health reported (-1: none)."""
    with _closing(_open(db_path)) as db:
        return {device: (batch, event) for device, batch, event in db.execute(
            "SELECT device, greatest(coalesce(last_seq, -1), coalesce(batch_newest, -1)), "
            "greatest(coalesce(last_event_seq, -1), coalesce(event_newest, -1)) FROM devices")}


def totals(db_path):
    """The whole file: devices, batches, readings, duplicates, events, health reports, gaps
    (missing batches), malformed messages, held batches (and of those, given up on); repaired,
    repaired_readings, lost_at_broker, dropped_by_device, events_repaired,
    events_lost_at_broker, events_dropped_by_device (see summary)."""
    with _closing(_open(db_path)) as db:
        one = lambda sql: db.execute(sql).fetchone()[0] or 0  # noqa: E731
        return {
            "devices": one("SELECT count(*) FROM devices"),
            "batches": one("SELECT count(*) FROM batches"),
            "readings": one("SELECT count(*) FROM readings"),
            "duplicates": one("SELECT sum(duplicates) FROM devices"),
            "events": one("SELECT count(*) FROM events"),
            "health": one("SELECT count(*) FROM health"),
            "missing": one("SELECT sum(missing) FROM gaps"),
            "malformed": one("SELECT count(*) FROM malformed"),
            "held": one("SELECT count(*) FROM held"),
            "given_up": one("SELECT count(*) FROM held WHERE given_up_at IS NOT NULL"),
            "repaired": one("SELECT sum(repaired) FROM devices"),
            "repaired_readings": one("SELECT sum(repaired_readings) FROM devices"),
            "events_repaired": one("SELECT sum(events_repaired) FROM devices"),
            "lost_at_broker": one("SELECT count(*) FROM lost WHERE kind = 'batch' "
                                  "AND reason = 'broker'"),
            "dropped_by_device": one("SELECT count(*) FROM lost WHERE kind = 'batch' "
                                     "AND reason = 'dropped'"),
            "events_lost_at_broker": one("SELECT count(*) FROM lost WHERE kind = 'event' "
                                         "AND reason = 'broker'"),
            "events_dropped_by_device": one("SELECT count(*) FROM lost WHERE kind = 'event' "
                                            "AND reason = 'dropped'"),
        }


def lost_seqs(db_path, kind="batch", reason="broker"):
    """{device: [seq]}: the batches (or events) recorded as lost at the broker (reason
    "broker") or dropped by the device ("dropped")."""
    with _closing(_open(db_path)) as db:
        out = {}
        for device, seq in db.execute("SELECT device, seq FROM lost WHERE kind = ? "
                                      "AND reason = ? ORDER BY device, seq", (kind, reason)):
            out.setdefault(device, []).append(seq)
        return out


def series(db_path, device, channel):
    """[(t_ms, value)] of one channel of one device, in time order (for plots)."""
    with _closing(_open(db_path)) as db:
        return db.execute("SELECT t_ms, value FROM readings WHERE device = ? AND channel = ? "
                          "ORDER BY t_ms", (device, channel)).fetchall()


STEADY_MS = 20 * 60000     # a pill count that held this long is the bottle standing still (a cap
#                            set down beside it, reading a few pills low, stays up to 15 min)
OFF_MS = 2 * 3600000       # ... one at 0 this long, a bottle really empty (not lifted off)


def steady(pts, off_ms=OFF_MS):
    """The pill counts that held: readings grouped into runs of one count (within half a pill);
    a run the next count followed within STEADY_MS (OFF_MS for a count at or below 0: the bottle
    off the scale, lifted or carried, reads 0 or less) is a touch, not the count, and goes,
    the runs either side of it joining when they hold the same count; the last run stays.
    [(each run's first t, its count)]. Drawn as read, every lift, shake and cap set down beside
    the bottle took the count to 0 and back: 30 days of them hid the 1-pill doses. off_ms: for
    a series thinned to stretches longer than OFF_MS, where a lift's low is held until the
    stretch's next point."""
    runs = []
    for t, v in pts:
        if v is not None and not (runs and abs(v - runs[-1][1]) < 0.5):
            runs.append((t, v))
    while True:
        # a touch the count came back from first, the briefest first: the runs it cut short
        # join and may then hold long enough
        short = [(not (0 < i and abs(runs[i - 1][1] - runs[i + 1][1]) < 0.5),
                  runs[i + 1][0] - t, i) for i, (t, v) in enumerate(runs[:-1])
                 if runs[i + 1][0] - t < (off_ms if v <= 0.5 else STEADY_MS)]
        if not short:
            return runs
        i = min(short)[2]
        del runs[i]
        if 0 < i < len(runs) and abs(runs[i][1] - runs[i - 1][1]) < 0.5:
            del runs[i]


def insights(db_path, device=None):
    """[(device, t_ms, event, sensor, value, fields dict)] in time order per device: what the
    simulator scores against the truth and plots."""
    sql = "SELECT device, t_ms, event, sensor, value, fields FROM insights"
    args = ()
    if device is not None:
        sql += " WHERE device = ?"
        args = (device,)
    with _closing(_open(db_path)) as db:
        rows = db.execute(sql + " ORDER BY device, t_ms, seq", args).fetchall()
    return [(d, t, e, s, v, json.loads(f)) for d, t, e, s, v, f in rows]


def sensor_errors(db_path):
    """{device: {sensor: [sensor_error events raised, the detail of its first]}}: what failed
    to read, whether a fault was injected or the profile got something wrong (a calibration)."""
    with _closing(_open(db_path)) as db:
        rows = db.execute("SELECT device, sensor, detail FROM events WHERE event = ? AND "
                          "state = ? ORDER BY device, t_ms, seq",
                          ("sensor_error", "raised")).fetchall()
    out = {}
    for device, sensor, detail in rows:
        mine = out.setdefault(device, {})
        if sensor in mine:
            mine[sensor][0] += 1
        else:
            mine[sensor] = [1, detail]
    return out


def schemas(db_path):
    """[(schema_id, document)]: the schema documents devices published, as stored (bytes, unless
    the file was written by something else: the caller checks), for `tether decode --db`."""
    with _closing(_open(db_path)) as db:
        return db.execute("SELECT schema_id, document FROM schemas ORDER BY schema_id").fetchall()


class _closing:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()
