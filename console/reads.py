"""What the console's pages show, read from the ingest's database (docs/ingest.md) through the
store's shared dialect, so that SQLite and PostgreSQL answer alike.

The fleet's clock: a live fleet's devices keep Unix time, and "silent for 3 h" means 3 h before
now. A simulated fleet runs on device time far from the time its messages arrive (a day in
seconds, starting in the past), so where the newest device time is more than an hour away from
when the newest message arrived, the console's "now" is that newest device time.
"""
import asyncio
import bisect
import concurrent.futures
import functools
import json
import os
import statistics
import threading
import time

from agent.clock import PLAUSIBLE_MS  # a device time before it: a clock never synced
from agent.insights import consumable, energy
from agent.insights.adherence import EVENTS as DOSE_EVENTS  # a pill count's insight's
from console.said import duration
from firmware.profile.insights.energy import WATCH_NAMES
from ingest.queries import OFF_MS, steady
from ingest.store import open_store
from ingest.url import db_url

MINUTE_MS = 60000
HOUR_MS = 3600000
DAY_MS = 86400000
SPANS = {"1d": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS, "all": None}
MAX_POINTS = 1200  # per chart line: 4 readings of each of 300 stretches
LIST_ROWS = 50     # the newest insights and events a device page lists
# Insights a device sends on a schedule or per cycle: over LIST_ROWS, they give way to the others
# (a washer's month of cycles and daily reports hid its maintenance_due from its own page).
ROUTINE = ("forecast", "cycle", "energy_report", "dose_taken")
SERIES_THREADS = 4
_POOL = concurrent.futures.ThreadPoolExecutor(SERIES_THREADS,
                                              thread_name_prefix="tether-console-series")
READ_THREADS = 6
_READERS = concurrent.futures.ThreadPoolExecutor(READ_THREADS,
                                                 thread_name_prefix="tether-console-reads")


async def run(fn, *args):
    """fn(*args) in one of the READ_THREADS threads every page and live update reads in. Each
    thread holds a database connection (Database), so the console holds at most READ_THREADS +
    SERIES_THREADS, however many pages are open: in Starlette's pool of 40 threads it came to
    40 and more, of the 100 a PostgreSQL server allows by default."""
    return await asyncio.get_running_loop().run_in_executor(_READERS, functools.partial(fn, *args))


# SenML's unit symbols (RFC 8428) as a person reads them on a chart: "cabinet (Cel)" puzzled
SHOWN_UNITS = {"Cel": "\u00b0C", "%RH": "% RH"}


def call(fn, *args):
    """fn(*args) in a reading thread, waited for (where no event loop runs yet)."""
    return _READERS.submit(fn, *args).result()


BUSY_S = 5.0  # how long a read or the acknowledgements' write waits for a busy database

class Unreadable(RuntimeError):
    """The database cannot be read (not there yet, unreachable, not the ingest's)."""


def _dead(db):
    """Whether db's connection is gone (PostgreSQL's, closed or broken by the server)."""
    conn = getattr(db, "conn", None)
    return bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))


# A change each kind's `set` takes (docs/insights/), told by an event only that kind sends
SETTING_EXAMPLES = ((consumable.EVENTS, '{"lead_time_ms": 604800000}'),
                    (DOSE_EVENTS, '{"schedule": ["08:00", "20:00"]}'),
                    (energy.EVENTS, '{"tariff": 0.3}'))


def _insight_examples(db, device):
    """[(sensor, a settings change its insight's kind takes, '' if none known)] of the device's
    insight sensors, by the kind of each one's newest event (a profile may change the kind)."""
    out = {}
    for sensor, event, _ in db.rows("SELECT sensor, event, max(t_ms) FROM insights WHERE "
                                    "device = ? GROUP BY sensor, event ORDER BY sensor, 3",
                                    (device,)):
        out[sensor] = next((example for events, example in SETTING_EXAMPLES
                            if event in events), "")
    return sorted(out.items())


class Database:
    """The ingest's database for the console's threads: one read-only connection per thread,
    opened at its first use and opened again after a failure (a restarted server)."""

    def __init__(self, url):
        self.url = url
        self._local = threading.local()
        backend, target = db_url(str(url))
        self._path = target if backend == "sqlite" and target != ":memory:" else None

    def _file(self):
        """The SQLite file's identity now: a file made again in its place (tether simulate
        into the same workdir) is another one, which an open connection never sees."""
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def rows(self, sql, args=()):
        db = getattr(self._local, "db", None)
        try:
            if db is not None and self._path is not None \
                    and self._file() != getattr(self._local, "file", None):
                db.close()
                db = self._local.db = None
            if db is not None:
                try:
                    return db.execute(sql, args).fetchall()
                except Exception:  # noqa: BLE001 - once more on a new connection, below
                    # A server restarted since this thread's last read: its connection is
                    # dead, and each thread's first page after a restart was a 503. Only
                    # then: a lock or a bad query fails again, after twice the wait.
                    if not _dead(db):
                        raise
                    self._local.db = None
                    try:
                        db.close()
                    except Exception:  # noqa: BLE001 - it is being dropped anyway
                        pass
            file = self._file() if self._path is not None else None
            db = self._local.db = open_store(self.url, timeout=BUSY_S, create=False)
            self._local.file = file
            return db.execute(sql, args).fetchall()
        except Exception as exc:  # noqa: BLE001 - any backend's error is a page that says so
            self._local.db = None
            if db is not None:
                try:
                    db.close()
                except Exception:  # noqa: BLE001 - it is being dropped anyway
                    pass
            raise Unreadable("the database cannot be read: %s" % " ".join(str(exc).split()))

    def write(self, sql, args=()):
        """One statement, committed (the console writes only its acknowledgements)."""
        db = getattr(self._local, "db", None)
        if db is None:
            self.rows("SELECT 1")
            db = self._local.db
        try:
            db.execute(sql, args)
            db.conn.commit()
        except Exception as exc:  # noqa: BLE001 - as rows()
            self._local.db = None
            raise Unreadable("the database cannot be written: %s" % " ".join(str(exc).split()))

    def one(self, sql, args=()):
        rows = self.rows(sql, args)
        return rows[0] if rows else None


SIMULATED_MS = 30 * DAY_MS  # device time this far from arrival time is a simulation's


def fleet_now(newest_t_ms, newest_seen_s, wall_ms=None):
    """(now in ms, simulated) for the fleet whose newest device time is newest_t_ms and whose
    newest message arrived at newest_seen_s (Unix seconds). A simulation starts its devices'
    time a year and more in the past; a live fleet's newest reading is older than its newest
    message while every device is silent, and an ingest restarted then gets every device's
    retained status afresh: an hour apart made such a fleet "simulated", its now its last
    reading, and nobody silent."""
    wall = time.time() * 1000 if wall_ms is None else wall_ms
    if newest_t_ms is None or newest_seen_s is None \
            or abs(newest_seen_s * 1000 - newest_t_ms) <= SIMULATED_MS:
        return int(wall), False
    return int(newest_t_ms), True


def clock_of(stamp):
    """(now in ms, simulated) from a FleetCache stamp: the newest device time against when
    that device was last heard (against the newest message of any device, one clock that never
    synced made a fleet silent for a month "simulated", and nobody silent)."""
    return fleet_now(stamp[6], stamp[9])


# ---- the fleet ------------------------------------------------------------------------------

FLEET_COLUMNS = ("device", "status", "last_t_ms", "model", "version", "buffer", "dropped",
                 "repaired", "lost", "rssi", "heap_free")
_DEVICES = ("SELECT device, last_status, last_seen, last_t_ms, batches, readings, "
            "dropped_reported, dropped_health, repaired, events, last_health_at, first_seen "
            "FROM devices")
_LATEST_HEALTH = ("SELECT h.device, h.health FROM health h JOIN "
                  "(SELECT device, max(received_at) AS at FROM health {where}GROUP BY device) m "
                  "ON h.device = m.device AND h.received_at = m.at")


class FleetCache:
    """Every device's row for the fleet table, kept in memory and read again when anything
    arrived: one pass over `devices`, and the latest health report only of the devices that
    sent one since."""

    def __init__(self, db):
        self.db = db
        self._lock = threading.Lock()
        self._stamp = None
        self._rows = {}

    def stamp(self):
        """What changes whenever a message of any device arrives (its status too), the ingest
        records a batch lost, or an action is answered here; and the newest device time, leaving out clocks more than
        an hour ahead of the wall clock (one device's wrong clock must not make the others
        look silent) unless every device's is, and clocks never synced (1970: the fleet was
        shown "as of 1970")."""
        ahead = int(time.time() * 1000) + HOUR_MS
        # and the console's own acknowledgements (last two): the actions page's counts and rows
        # change with one (they stayed until a device next sent something)
        row = self.db.one("SELECT count(*), max(last_seen), max(last_health_at), max(status_at), "
                          "(SELECT count(*) FROM lost), max(last_t_ms), "
                          "max(CASE WHEN last_t_ms <= ? AND last_t_ms >= ? THEN last_t_ms END), "
                          "(SELECT count(*) FROM acks), (SELECT max(received_at) FROM acks) "
                          "FROM devices", (ahead, PLAUSIBLE_MS))
        newest = row[6]
        if newest is None and row[5] is not None and row[5] >= PLAUSIBLE_MS:
            newest = row[5]  # every clock ahead
        seen = None
        if newest is not None:
            seen = self.db.one("SELECT max(last_seen) FROM devices WHERE last_t_ms = ?",
                               (newest,))[0]
        return tuple(row[:6]) + (newest,) + tuple(row[7:9]) + (seen,)

    def refresh(self):
        """The rows, newest; (rows by device, now_ms, simulated). now follows the wall clock
        for a live fleet even while nothing arrives (that is when devices fall silent)."""
        with self._lock:
            stamp = self.stamp()
            if stamp[:7] != (self._stamp or ())[:7]:   # the fleet's rows use no acks
                self._read(stamp)
            return (self._rows,) + clock_of(stamp)

    def _read(self, stamp):
        devices = self.db.rows(_DEVICES)
        lost = {}
        for device, kind, reason, n in self.db.rows(
                "SELECT device, kind, reason, count(*) FROM lost GROUP BY device, kind, reason"):
            lost.setdefault(device, {})[(kind, reason)] = n
        old = self._rows
        stale = [d[0] for d in devices
                 if d[10] is not None and d[10] != old.get(d[0], {}).get("health_at")]
        health = {}
        if len(stale) > 200 or not old:
            pairs = self.db.rows(_LATEST_HEALTH.format(where=""))
        else:
            pairs = []
            for i in range(0, len(stale), 100):
                chunk = stale[i:i + 100]
                where = "WHERE device IN (%s) " % ", ".join("?" * len(chunk))
                pairs += self.db.rows(_LATEST_HEALTH.format(where=where), chunk)
        for device, doc in pairs:
            health[device] = as_map(doc)
        rows = {}
        for (device, status, seen, t_ms, batches, readings, dropped, dropped_health, repaired,
             events, health_at, first_seen) in devices:
            before = old.get(device)
            h = health.get(device)
            if h is None:  # none since the last read: the one read then
                h = before["health"] if before else {}
                health_at = before["health_at"] if before else None
            lost_d = lost.get(device, {})
            rows[device] = {
                "device": device, "status": status or "unknown", "last_seen": seen,
                "first_seen": first_seen,
                "last_t_ms": t_ms, "batches": batches, "readings": readings,
                "model": _text(h.get("model")), "version": _text(h.get("version")),
                "buffer": _int(h.get("batches_queued")), "dropped": max(dropped, dropped_health),
                "repaired": repaired,
                "lost": lost_d.get(("batch", "broker"), 0),
                "dropped_unsent": lost_d.get(("batch", "dropped"), 0),
                "erased": lost_d.get(("batch", "erased"), 0),
                "rssi": _int(h.get("rssi")), "heap_free": _int(h.get("heap_free")),
                "events": events, "health": h, "health_at": health_at}
        self._rows = rows
        self._stamp = stamp


def fleet_page(rows, sort="device", order="asc", q="", status="", page=1, per_page=100):
    """(the page's rows, how many match, pages) of the fleet table: filtered by q (a part of the
    id, model or firmware version, any case) and status, sorted by a FLEET_COLUMNS column (None
    last either way)."""
    q = q.lower()
    match = [r for r in rows.values()
             if (not status or r["status"] == status)
             and (not q or q in r["device"].lower() or q in (r["model"] or "").lower()
                  or q in (r["version"] or "").lower())]
    present = [r for r in match if r[sort] is not None]
    present.sort(key=lambda r: (r[sort], r["device"]), reverse=order == "desc")
    match = present + sorted((r for r in match if r[sort] is None), key=lambda r: r["device"])
    pages = max(1, (len(match) + per_page - 1) // per_page)
    page = min(page, pages)
    return match[(page - 1) * per_page:page * per_page], len(match), pages


# ---- one device -----------------------------------------------------------------------------

def _in_profile_order(db, device, channels):
    """channels [(name, unit)] in the order of the device's profile, as its schema lists them
    (alphabetical put air_rh before air_temp, and ink_c, ink_k, ink_m, ink_y); the ones it does
    not list (an older schema's) after them, by name."""
    from ingest.decode import schema
    try:
        doc = db.one("SELECT s.document FROM devices d JOIN schemas s ON s.schema_id = "
                     "d.schema_id WHERE d.device = ?", (device,))
        order = [c[0] for c in schema(bytes(doc[0])).channels] if doc else []
    except Exception:  # noqa: BLE001 - a schema no decoder takes is the ingest's to say
        order = []
    place = {name: i for i, name in enumerate(order)}
    return sorted(channels, key=lambda c: (place.get(c[0], len(place)), c[0]))


# An event's time as the device page lists and spans it: one from a clock never synced counts
# from the device's boot (1970), so when it arrived stands for it (a board's alarm re-sent at
# each boot, before NTP, was listed in 1970 and in no span)
EVENT_WHEN = "(CASE WHEN synced = 0 THEN CAST(received_at * 1000 AS bigint) ELSE t_ms END)"


def _paired(rows):
    """The newest LIST_ROWS of a device's events (rows newest first) as the page lists them: a
    raise and the clear that followed it are one row, "raised, cleared after 1 min" (a pill
    bottle's 161 events of a month were mostly uncertain_count raised and cleared a minute
    apart, two rows each)."""
    out, open_ = [], {}
    for t, e, s, st, v, d, synced in reversed(rows):
        row = {"t_ms": t, "event": e, "sensor": s, "state": st, "value": v, "detail": d,
               "received": not synced}
        raised = open_.pop((e, s), None)
        if st == "cleared" and raised is not None and isinstance(t, int) \
                and isinstance(raised["t_ms"], int):
            raised["state"] = "raised, cleared after %s" % duration(t - raised["t_ms"])
            raised["cleared_value"] = v
            continue
        if st == "raised":
            open_[(e, s)] = row
        out.append(row)
    return out[::-1][:LIST_ROWS]


def device_detail(db, device, span, charts=True):
    """Everything the device page shows over span ("1d", "7d", "30d", "all"), ending at the
    device's newest reading (without charts: its lists alone); None for a device the database
    does not know."""
    row = db.one("SELECT device, last_status, last_seen, last_t_ms, batches, readings, "
                 "dropped_reported, repaired, last_boot FROM devices WHERE device = ?",
                 (device,))
    if row is None:
        return None
    end = row[3]
    # (a device time near -2**63 ms, a hostile or broken clock, made a start SQLite could not
    # bind: the page was a 503)
    start = None if SPANS[span] is None or end is None else max(end - SPANS[span], -(1 << 63))
    since, args = ("", (device,)) if start is None else (" AND t_ms >= ?", (device, start))
    channels = _in_profile_order(db, device, db.rows(
        "SELECT channel, unit FROM channels WHERE device = ? ORDER BY channel", (device,)))
    insights = [(t, e, s, v, as_map(f)) for t, e, s, v, f in db.rows(
        "SELECT t_ms, event, sensor, value, fields FROM insights WHERE device = ?" + since
        + " ORDER BY t_ms, seq", args)]
    out = []
    # each channel's series is one sort in the database: side by side, on connections of their
    # own (SQLite and psycopg let go of the GIL while the database works)
    thinned = list(_POOL.map(lambda c: series(db, device, c[0], start, end),
                             channels if charts else ()))
    for (channel, unit), points in zip(channels, thinned):
        chart = {"channel": channel, "unit": SHOWN_UNITS.get(unit, unit), "points": points,
                 "marks": [], "lines": []}
        mine = [i for i in insights if i[2] == channel]
        if points and any(i[1] in DOSE_EVENTS for i in mine):
            # a pill count: drawn where the bottle stood (each lift, carry or cap set down
            # beside it took the line to 0 and back, read as a bottle emptied), to the end. A
            # thinned month holds a lift's low until the stretch's next point, hours on: one
            # at 0 shorter than two stretches is a lift too.
            stretch = (points[-1][0] - points[0][0]) // (MAX_POINTS // 4)
            held = [list(p) for p in steady(points, max(OFF_MS, 2 * stretch))]
            if held and points[-1][0] > held[-1][0]:
                held.append([points[-1][0], held[-1][1]])
            chart["points"] = points = held      # the doses' marks go on the count it held
        elif unit == "g" and any(i[1] in DOSE_EVENTS for i in insights):
            # the bottle's weight: off the scale it reads its tare's negative (-30 g)
            chart["points"] = points = [p for p in points if p[1] is None or p[1] >= 0]
        _overlay(chart, points, mine)
        out.append(chart)
    cycles = None
    if charts:
        alarm = None
        if start is not None and not any(i[1] == "maintenance_due" for i in insights):
            # the baseline the device last told, though before the span (span=1d showed none)
            alarm = db.one("SELECT fields FROM insights WHERE device = ? AND event = "
                           "'maintenance_due' AND t_ms < ? ORDER BY t_ms DESC, seq DESC "
                           "LIMIT 1", (device, start))
        cycles = _cycles(insights, as_map(alarm[0]) if alarm else {})
    if cycles:
        out.append(cycles)
    health = [(at, t, as_map(h)) for at, t, h in db.rows(
        "SELECT received_at, t_ms, health FROM health WHERE device = ? "
        "ORDER BY received_at DESC LIMIT 24", (device,))]
    since_when = since.replace("t_ms", EVENT_WHEN)
    events = _paired(db.rows("SELECT " + EVENT_WHEN + ", event, sensor, state, value, detail, "
                             "synced FROM events WHERE device = ? AND state <> 'insight'"
                             + since_when + " ORDER BY 1 DESC, seq DESC LIMIT %d"
                             % (2 * LIST_ROWS), args))
    events_in_span = db.one("SELECT count(*) FROM events WHERE device = ? AND state <> "
                            "'insight'" + since_when, args)[0]
    replies = [(at, ok, as_map(body)) for at, ok, body in db.rows(
        "SELECT received_at, ok, body FROM replies WHERE device = ? "
        "ORDER BY received_at DESC LIMIT 50", (device,))]
    latest = health[0][2] if health else {}
    # Its batch logs after the first: each an erased flash or a new card (ingest/numbering.py)
    new_logs, new_log_at = db.one("SELECT count(*), max(first_seen) FROM stores WHERE "
                                  "device = ? AND kind = 'batch' AND number > 0", (device,))
    erased = db.one("SELECT count(*) FROM lost WHERE device = ? AND kind = 'batch' AND "
                    "reason = 'erased'", (device,))[0] if new_logs else 0
    return {"device": device, "status": row[1] or "unknown", "last_seen": row[2],
            "new_logs": new_logs, "new_log_at": new_log_at, "erased": erased,
            "last_t_ms": end, "batches": row[4], "readings": row[5], "dropped": row[6],
            "repaired": row[7], "boot": row[8],
            "model": _text(latest.get("model")), "version": _text(latest.get("version")),
            "span": span, "start": start, "end": end, "charts": out,
            "sensors": sorted({c for c, _ in channels}),
            # the settings command is for sensors with an insight: the ones that sent one,
            # each with a change of its own kind to show (a pill bottle was shown a lead time)
            "insight_sensors": _insight_examples(db, device),
            "insights": [{"t_ms": t, "event": e, "sensor": s, "value": v, "fields": f}
                         for t, e, s, v, f in reversed(_listed(insights))],
            "insights_in_span": len(insights), "events_in_span": events_in_span,
            "events": events,
            # a report from a clock never synced: when it arrived (it was listed in 1970)
            "health": [{"received_at": at, "health": h, "received": not _dated(t),
                        "t_ms": t if _dated(t) else int(at * 1000)} for at, t, h in health],
            "replies": [{"received_at": at, "ok": bool(ok), "body": b} for at, ok, b in replies]}


def _dated(t_ms):
    return isinstance(t_ms, int) and t_ms >= PLAUSIBLE_MS


def _listed(insights):
    """The insights a device page lists, in time order: at most LIST_ROWS, the newest of every
    kind but ROUTINE first, then the newest ROUTINE ones."""
    if len(insights) <= LIST_ROWS:
        return insights
    rare = [i for i in range(len(insights)) if insights[i][1] not in ROUTINE][-LIST_ROWS:]
    routine = [i for i in range(len(insights)) if insights[i][1] in ROUTINE]
    keep = sorted(rare + routine[len(routine) - (LIST_ROWS - len(rare)):])
    return [insights[i] for i in keep]


def warm(db):
    """Opens a connection in each thread that thins series, so that the first device page
    does not wait for them (a PostgreSQL connection takes tens of ms)."""
    ready = threading.Barrier(SERIES_THREADS)

    def connect(_):
        ready.wait(10)  # one task per thread: each waits until all four have one
        db.rows("SELECT 1")
    list(_POOL.map(connect, range(SERIES_THREADS)))


def device_stamp(db, device):
    """What changes whenever a message of this device arrives."""
    row = db.one("SELECT last_seen, last_status, last_t_ms FROM devices WHERE device = ?",
                 (device,))
    return list(row) if row else None


def series(db, device, channel, start, end, buckets=MAX_POINTS // 4):
    """[[t_ms, value]] of a channel from start (None: the device's first batch, its first synced
    one if any) to end, thinned
    in the database to at most 4 x buckets points: of each stretch of (end - start) / buckets,
    its first, lowest, highest and last reading, at their own times. A stretch is about two
    pixels of the chart wide, so a spike stays visible, the line goes where the readings went,
    and a month of a power meter's readings never leaves the database.

    Over more batches than stretches, the stretches are made of whole batches (by their first
    time) and read from `channel_batches`, which keeps those four readings of every batch: a
    month of a printer is 4,320 rows a channel there instead of 43,200 readings."""
    if end is None:
        return []
    if start is None:
        # A device that ran before its clock synced has batches timed from its boot (1970):
        # from those, the chart would span 56 years with the readings in its last pixel.
        first = db.one("SELECT min(CASE WHEN synced <> 0 THEN t_first END), min(t_first) "
                       "FROM batches WHERE device = ?", (device,))
        start = first[0] if first[0] is not None else first[1]
        if start is None:
            return []
    width = max(1, (end - start) // buckets + 1)
    args = (start, width, device, channel, start, end)
    rows = db.rows("SELECT t_first, v_first, t_low, v_low, t_high, v_high, t_last, v_last "
                   "FROM channel_batches WHERE device = ? AND channel = ? AND t_first >= ? "
                   "AND t_first <= ? ORDER BY t_first, seq", args[2:])
    if len(rows) > buckets:
        return _of_batches(rows, start, width)
    # One sort per stretch (by value): its lowest and highest readings are the ends of that
    # order, its first and last the stretch's least and greatest times.
    return [[t, v] for t, v in db.rows(
        "SELECT t_ms, value FROM (SELECT t_ms, value, row_number() OVER w AS k, "
        "count(*) OVER p AS n, min(t_ms) OVER p AS t0, max(t_ms) OVER p AS t1 "
        "FROM (SELECT t_ms, value, (t_ms - ?) / ? AS b FROM readings WHERE device = ? "
        "AND channel = ? AND t_ms >= ? AND t_ms <= ? AND value IS NOT NULL) r "
        "WINDOW w AS (PARTITION BY b ORDER BY value, t_ms), p AS (PARTITION BY b)) x "
        "WHERE k = 1 OR k = n OR t_ms = t0 OR t_ms = t1 ORDER BY t_ms", args) if _number(v)]


def _of_batches(rows, start, width):
    """series() from rows of channel_batches in time order: of each stretch's batches, the
    first reading of the first, the lowest and highest of them all (the earliest of equals), the
    last of the last. In Python: a sort per stretch in SQL took three times as long."""
    points = {}
    stretch = first = low = high = last = None

    def close():
        for t, v in (first, low, high, last):
            if t is not None and _number(v):
                points[t] = v

    for t0, v0, t_low, v_low, t_high, v_high, t1, v1 in rows:
        b = (t0 - start) // width
        if b != stretch:
            if stretch is not None:
                close()
            stretch, first, low, high = b, (t0, v0), (None, None), (None, None)
        if v_low is not None and (low[0] is None or (v_low, t_low) < (low[1], low[0])):
            low = (t_low, v_low)
        if v_high is not None and (high[0] is None or v_high > high[1]
                                   or (v_high == high[1] and t_high < high[0])):
            high = (t_high, v_high)
        last = (t1, v1)
    if stretch is not None:
        close()
    return [[t, points[t]] for t in sorted(points)]


SETTLED_MS = 30 * 60000   # a dose's mark: the count the bottle stood at this soon after


def _standing(points, t):
    """The count a bottle stood at after a take at t (points: the counts it held, its lifts
    left out by steady()): the first charted after t, within SETTLED_MS (the reading at the
    take itself is the count before it), not the highest (a refill right after the last dose
    would win); the value at t when none is charted there."""
    i = bisect.bisect_right([p[0] for p in points], t)
    if i < len(points) and points[i][0] <= t + SETTLED_MS:
        return points[i][1]
    return _value_at(points, t)


def _value_at(points, t):
    """The charted value at time t: the last point at or before it (the first, before them)."""
    i = bisect.bisect_right([p[0] for p in points], t) - 1
    return points[max(i, 0)][1] if points else None


def _overlay(chart, points, insights):
    """What a channel's insights add to its chart: the ink's forecast to empty and its reorder
    point; the pill count's doses taken and missed."""
    forecast = reorder = None
    for t, event, _, value, f in insights:
        if event in ("forecast", "reorder") and _number(f.get("rate_per_day")):
            # the days are the event's value (a forecast carries no `days` field): level over
            # rate alone ignored the device's week, and the chart, the table and the actions
            # row gave three dates for one cartridge
            forecast = (t, dict(f, days=value) if _number(value) else f)
        if event == "reorder":
            reorder = (t, f)
        if event == "cartridge_replaced":
            forecast = reorder = None
        if event in ("dose_taken", "extra_dose"):
            at = f.get("taken") if isinstance(f.get("taken"), int) else t
            # on the count the dose left, once the bottle stood again (the reading at the take
            # itself is often the bottle still off the scale: a mark on 0 read as empty)
            chart["marks"].append({"label": "dose taken" if event == "dose_taken" else
                                   "extra dose", "t": at, "y": _standing(points, at),
                                   "kind": "taken" if event == "dose_taken" else "extra"})
        elif event == "dose_missed":
            at = f.get("scheduled") if isinstance(f.get("scheduled"), int) else t
            chart["marks"].append({"label": "dose missed", "t": at, "y": _value_at(points, at),
                                   "kind": "missed"})
        elif event in ("reorder", "empty", "cartridge_replaced", "refill_needed", "refilled"):
            chart["marks"].append({"label": event.replace("_", " "), "t": t,
                                   "y": _value_at(points, t), "kind": event})
    if forecast is not None:
        t, f = forecast
        level, days = f.get("level"), f.get("days")
        if not _number(days):
            rate = f["rate_per_day"]
            days = level / rate if rate > 0 and _number(level) else None
        if _number(level) and _number(days) and 0 <= days < 3650:
            # the date it reaches (UTC): the chart's axis stops half a span past the newest
            # reading, and a forecast weeks ahead runs off it
            empty = time.strftime("%Y-%m-%d", time.gmtime((t + days * DAY_MS) / 1000.0))
            chart["lines"].append({"label": "forecast (empty about %s)" % empty, "points": [
                [t, level], [t + int(days * DAY_MS), 0]]})
    if reorder is not None:
        t, f = reorder
        days = f.get("days") if _number(f.get("days")) else 0
        if _number(f.get("level")):
            chart["lines"].append({"label": "reorder point", "points": [
                [chart["points"][0][0] if chart["points"] else t, f["level"]],
                [t + int(days * DAY_MS), f["level"]]]})


def _cycles(insights, before=None):
    """The energy insight's chart: the watched figure of each cycle (or, where the device
    charts the median of every `batch` cycles, those medians), its running average (the
    device's weight, 0.2), and where maintenance_due gave them the learnt baseline and the
    level past which the chart's sum grows (the baseline plus `slack` spreads, in the direction
    of wear: a compressor's capacity falls); `before`: the fields of the last maintenance_due
    before these insights, for its baseline."""
    cycles = [(t, f) for t, e, _, _, f in insights if e == "cycle"]
    if not cycles:
        return None
    watch = cycles[-1][1].get("watch") or "energy"
    # the figure the device charts: none for a cycle with a gap (a reboot, a power cut)
    points = [[f.get("start", t), f["feature"]] for t, f in cycles if _number(f.get("feature"))]
    alarms = [(t, f) for t, e, _, _, f in insights if e == "maintenance_due"]
    last = alarms[-1][1] if alarms else (before or {})
    # as the device groups them: its alarm says, and so does each cycle (a fridge's chart drew
    # single cycles until its first alarm)
    told = last.get("batch") if _int(last.get("batch")) else cycles[-1][1].get("batch")
    batch = told if _int(told) and told > 1 else 1
    if batch > 1:  # as the device charts them, a day of a fridge's cycles, not each one (grouped
        # from the first cycle shown: the device's groups restart at its boots and acks)
        points = [[points[i + batch - 1][0], statistics.median(v for _, v in points[i:i + batch])]
                  for i in range(0, len(points) - batch + 1, batch)]
    recent, ewma = None, []
    for t, v in points:
        recent = v if recent is None else recent + 0.2 * (v - recent)
        ewma.append([t, round(recent, 4)])
    # the figure in words (a chart read "cycles (reversal)", the profile's key as a unit)
    named = WATCH_NAMES.get(watch, watch)
    unit = named if batch == 1 else "%s, median of each %d cycles" % (named, batch)
    chart = {"channel": "cycles", "unit": unit, "points": points, "kind": "cycles",
             "marks": [], "lines": [{"label": "recent (average)", "points": ewma}]}
    for t, f in alarms:
        chart["marks"].append({"label": "maintenance due (drift %s %%)" % f.get("drift_pct"),
                               "t": t, "y": f.get("recent"), "kind": "maintenance_due"})
    if _number(last.get("baseline")) and points:
        ends = [points[0][0], points[-1][0]]
        chart["lines"].append({"label": "learnt baseline",
                               "points": [[x, last["baseline"]] for x in ends]})
        if _number(last.get("spread")) and _number(last.get("slack")):
            wear = -1 if watch == "capacity" else 1
            chart["lines"].append({
                "label": "past this the chart's sum grows (baseline %s %g spread)" % (
                    "-" if wear < 0 else "+", last["slack"]),
                "points": [[x, last["baseline"] + wear * last["slack"] * last["spread"]]
                           for x in ends]})
    return chart


def as_map(doc):
    if isinstance(doc, (bytes, bytearray, memoryview)):
        doc = bytes(doc).decode("utf-8", "replace")
    if not isinstance(doc, str):
        return doc if isinstance(doc, dict) else {}
    try:
        out = json.loads(doc)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {"value": out}


def _number(v):
    """A finite number a device sent (a field may hold anything a buggy device put there)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e15


def _text(v):
    return v if isinstance(v, str) else None


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None
