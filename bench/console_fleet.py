"""A synthetic fleet for bench/console.py: a database in the ingest's layout, as a fleet of N
devices 30 days in would leave it, made in seconds instead of a month.

    fill(url, devices)      url: a SQLite path or postgresql://... (an empty database)

The layout is the ingest's own (ingest.store.open_store creates it, on either backend) and the
rows are written in its shared dialect, the readings through Store.insert_readings, so the
console reads what an ingest would have stored. Shapes (health documents, insight fields,
batch rows) are those of a real `tether simulate` run and docs/insights/*.md.

- Devices: printer-00001, pillbottle-00002, washer-00003, fridge-00004, ... (the kinds in turn),
  each with the counters of 30 days (batches, readings, events at the kind's real rate), its
  latest hour of batches, 3 health reports, and its latest events and insights: ink forecasts
  and reorders, doses taken and missed, cycles, energy reports, maintenance due. A share is
  offline (for hours, or silent for days) and a share dropped data (`dropped_reported`, `lost`
  rows), so "actions needed" has rows of each sort.
- One device per kind (the first: DETAILED) has its whole 30 days: readings at the profile's
  rate (examples/*.yaml: intervals, deadbands) in 10-minute batches, hourly health, and every
  insight the month would bring.

The clock is one clock: device times are Unix ms and the newest of them is now, received_at is
the device time plus the uplink's few hundred ms, so "last seen 3 min ago" reads true.
"""
import json
import math
import random
import time
import zlib

from agent.runtime import VERSION
from ingest.store import open_store

DAY_MS = 86400000
HOUR_MS = 3600000
BATCH_MS = 600000
DAYS = 30
KINDS = ("printer", "pillbottle", "washer", "fridge")
ESP32 = ("printer", "pillbottle")  # the others are Raspberry Pis: no RSSI or heap in health

# Per kind: channels (name, unit, mantissa, exponent, interval s, readings stored a day: what a
# 1-day `tether simulate` stores per device, deadbands and all) and the batch encoding.
CHANNELS = {
    "printer": [("ink_c", "%", 1, -1, 60, 1440), ("ink_m", "%", 1, -1, 60, 1440),
                ("ink_y", "%", 1, -1, 60, 1440), ("ink_k", "%", 1, -1, 60, 1440),
                ("power", "W", 1, -1, 10, 159)],
    "pillbottle": [("pills", "count", 1, 0, 30, 2880), ("weight", "g", 1, -1, 600, 144)],
    "washer": [("power", "W", 1, -1, 5, 3014), ("energy", "Wh", 1, 0, 60, 1440),
               ("voltage", "V", 1, -1, 60, 1440)],
    "fridge": [("power", "W", 1, -1, 10, 1932), ("energy", "Wh", 1, 0, 60, 1440),
               ("voltage", "V", 1, -1, 60, 1440)],
}
ENCODING = {"printer": "compact", "pillbottle": "compact", "washer": "senml",
            "fridge": "compact"}
SENSOR = {"printer": "ink_c", "pillbottle": "pills", "washer": "power", "fridge": "power"}
MODEL = {"printer": "Acme InkJet 3000", "pillbottle": "Acme SmartCap",  # examples/*.yaml
         "washer": "Acme WashPro 8", "fridge": "Acme CoolBox 300 fridge"}
OLD_VERSION = "0.0.9"  # a tenth of the fleet not updated yet


def device_ids(devices):
    return ["%s-%05d" % (KINDS[i % 4], i + 1) for i in range(devices)]


DETAILED = device_ids(4)  # the device of each kind with its whole month


def schema_of(kind):
    """(schema id, CBOR document, channels JSON) as the ingest stores a device's schema; None
    for a kind that sends SenML (no schema)."""
    if ENCODING[kind] != "compact":
        return None
    from agent.schema import Schema
    s = Schema([(n, u, m, e) for n, u, m, e, _, _ in CHANNELS[kind]])
    return s.id, s.to_cbor(), json.dumps([list(c) for c in s.channels])


def fill(url, devices, now_ms=None, seed=1):
    """Fills the empty database at url with a fleet of `devices` (see the module docstring);
    returns {table: rows written}."""
    now_ms = now_ms or int(time.time() * 1000)
    now_ms -= now_ms % 10000  # on a sampling tick, as device times are
    rng = random.Random(seed)
    store = open_store(url)
    counts = {}
    try:
        store.begin()
        _schemas(store, now_ms, counts)
        rows = {t: [] for t in ("devices", "batches", "channels", "health", "events",
                                "insights", "lost", "replies")}
        readings = 0
        for i, device in enumerate(device_ids(devices)):
            kind = KINDS[i % 4]
            if device in DETAILED:
                readings += Month(store, device, kind, now_ms, rng).write(rows)
            else:
                Latest(device, kind, now_ms, rng).rows(rows)
        for table, data in rows.items():
            bulk(store, table, data)
            counts[table] = counts.get(table, 0) + len(data)
        counts["readings"] = readings
        store.commit()
    except BaseException:
        if store.in_transaction:
            store.rollback()
        raise
    finally:
        store.close()
    return counts


def _schemas(store, now_ms, counts):
    for kind in KINDS:
        s = schema_of(kind)
        if s:
            store.execute("INSERT INTO schemas (schema_id, document, channels, first_seen) "
                          "VALUES (?, ?, ?, ?)", (s[0], s[1], s[2], (now_ms - DAYS * DAY_MS)
                                                  / 1000.0))
            counts["schemas"] = counts.get("schemas", 0) + 1


COLUMNS = {
    "devices": ("device", "schema_id", "first_seen", "last_seen", "last_boot", "last_seq",
                "last_t_ms", "dropped_reported", "dropped_health", "batches", "readings",
                "events", "last_status", "status_at", "last_health_at", "last_event_seq",
                "batch_oldest", "batch_newest", "event_oldest", "event_newest", "batch_done",
                "event_done", "repaired", "repaired_readings"),
    "batches": ("device", "seq", "boot", "dropped", "synced", "encoding", "deflated",
                "schema_id", "bytes", "crc32", "received_at", "readings", "t_first", "t_last",
                "ingest"),
    "channels": ("device", "channel", "unit"),
    "health": ("device", "received_at", "t_ms", "health"),
    "events": ("device", "seq", "boot", "t_ms", "synced", "event", "sensor", "state", "value",
               "detail", "received_at"),
    "insights": ("device", "seq", "t_ms", "synced", "event", "sensor", "value", "fields",
                 "received_at"),
    "lost": ("device", "kind", "seq", "reason", "recorded_at"),
    "replies": ("device", "received_at", "reply", "ok", "body"),
}


def bulk(store, table, rows):
    """rows into table: COPY on PostgreSQL (executemany is ~20x slower there), executemany in
    the shared dialect on SQLite."""
    if not rows:
        return
    cols = COLUMNS[table]
    if hasattr(store, "_copy"):
        with store.conn.cursor().copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(cols))) as cp:
            for r in rows:
                cp.write_row(r)
    else:
        store.executemany("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(cols),
                                                             ", ".join("?" * len(cols))), rows)


# -- what a device's month leaves -------------------------------------------------------------

class Device:
    """A device's state over the month: when it was last heard of, its sequence numbers, and the
    rows of its latest health reports and events."""

    def __init__(self, device, kind, now_ms, rng):
        self.device, self.kind, self.rng = device, kind, rng
        self.now_ms = now_ms
        self.per_batch = sum(n[5] for n in CHANNELS[kind]) / 144.0
        self.schema = schema_of(kind)
        roll = rng.random()
        if roll < 0.90:  # online, its last batch within the last 10 minutes
            self.status, self.last_ms = "online", now_ms - rng.randrange(0, 60) * 10000
        elif roll < 0.97:  # offline for hours: unplugged, Wi-Fi down
            self.status, self.last_ms = "offline", now_ms - rng.randrange(1, 48) * HOUR_MS
        else:  # silent for days
            self.status, self.last_ms = "offline", now_ms - rng.randrange(3, 20) * DAY_MS
        self.first_ms = now_ms - DAYS * DAY_MS - rng.randrange(0, 60) * 10000
        self.boot = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
        self.batches = (self.last_ms - self.first_ms) // BATCH_MS
        self.dropped = rng.randrange(5, 400) if rng.random() < 0.03 else 0
        self.lost = min(self.dropped // 100 + (1 if self.dropped else 0), 3)
        self.repaired = rng.randrange(0, 4) if rng.random() < 0.1 else 0
        self.rssi = rng.randrange(-88, -42) if kind in ESP32 else None
        self.heap = rng.randrange(96000, 142000) if kind in ESP32 else None
        self.version = OLD_VERSION if rng.random() < 0.1 else VERSION
        self.event_seq = 0
        self.events = []  # (t_ms, event, sensor, state, value, fields or None)

    def received(self, t_ms):
        return (t_ms + 150 + self.rng.randrange(0, 600)) / 1000.0

    def seen_s(self):
        return self.received(self.last_ms)

    def device_row(self, readings, events):
        last = self.batches - 1
        event_last = self.event_seq - 1 if self.event_seq else None
        return (self.device, self.schema and self.schema[0], self.first_ms / 1000.0,
                self.seen_s(), self.boot, last, self.last_ms, self.dropped, self.dropped,
                self.batches - self.lost, readings, events, self.status, self.seen_s(),
                self.seen_s(), event_last, max(0, last - 2000), last,
                max(0, self.event_seq - 200), event_last, last, event_last,
                self.repaired, int(self.repaired * self.per_batch))

    def health_doc(self, t_ms, queued=0):
        sensors = {}
        for name, _, _, _, interval, per_day in CHANNELS[self.kind]:
            taken = 300 // interval or 1
            kept = max(1, round(taken * per_day * interval / 86400.0))
            sensors[name] = {"errors": {}, "readings": kept, "suppressed": taken - kept}
        doc = {"batches_queued": queued, "boot": self.boot, "buffer_bytes": queued * 96,
               "connects": self.boot + self.rng.randrange(0, 3), "device": self.device,
               "dropped": self.dropped, "events_queued": 0,
               "heap_free": self.heap and self.heap + self.rng.randrange(-4000, 4000),
               "heap_used": self.heap and 160000 - self.heap,
               "insights": {"fresh": 0, "held": 0, "restored": self.boot - 1, "save_errors": 0,
                            "sent": self.event_seq, "snoozed": 0, "unsynced": 0},
               "last_error": None, "model": MODEL[self.kind],
               "readings_waiting": self.rng.randrange(0, 40),
               "reconnects": self.rng.randrange(0, 4), "rssi": self.rssi and
               self.rssi + self.rng.randrange(-3, 4), "sensors": sensors,
               "seq": {"batch": [max(0, self.batches - 2000), self.batches - 1],
                       "event": [max(0, self.event_seq - 200), self.event_seq - 1]},
               "synced": True, "t": t_ms, "too_large": 0,
               "uptime_s": (t_ms - self.first_ms) // 1000 // self.boot, "v": 1,
               "version": self.version}
        return json.dumps(doc, sort_keys=True)

    def event(self, t_ms, event, value, fields=None, state="insight", sensor=None):
        self.events.append((t_ms, event, sensor or SENSOR[self.kind], state, value, fields))

    def event_rows(self, rows):
        self.events.sort(key=lambda e: e[0])
        self.event_seq += len(self.events)
        seq = self.event_seq - len(self.events)
        for t, event, sensor, state, value, fields in self.events:
            at = self.received(t)
            detail = None if fields is None else json.dumps(fields, sort_keys=True)
            rows["events"].append((self.device, seq, self.boot, t, 1, event, sensor, state,
                                   value, detail, at))
            if state == "insight":
                rows["insights"].append((self.device, seq, t, 1, event, sensor, value, detail,
                                         at))
            seq += 1

    def batch_row(self, seq, t_first, t_last, readings):
        compact = self.schema is not None
        size = 24 + readings * (3 if compact else 38)
        return (self.device, seq, self.boot, self.dropped, 1, ENCODING[self.kind], 0,
                self.schema and self.schema[0], size, zlib.crc32(b"%s%d" % (
                    self.device.encode(), seq)), self.received(t_last), readings, t_first,
                t_last, "tether-ingest-bench-0")

    def channel_rows(self, rows):
        for name, unit, _, _, _, _ in CHANNELS[self.kind]:
            rows["channels"].append((self.device, name, unit))

    def lost_rows(self, rows):
        seqs = {self.batches - 1 - self.rng.randrange(6, 4000) for _ in range(self.lost)}
        for k, seq in enumerate(sorted(s for s in seqs if s >= 0)):
            rows["lost"].append((self.device, "batch", seq, "dropped", self.seen_s() - k * 3600))

    # -- insights, by kind (fields as docs/insights/*.md) --

    def insights(self, since_ms):
        """The insight events of [since_ms, last_ms] a device of this kind sends."""
        getattr(self, "_" + self.kind)(since_ms)

    def _printer(self, since_ms):
        rng = self.rng
        for ink in ("ink_c", "ink_m", "ink_y", "ink_k"):
            rate = rng.uniform(0.8, 4.0)
            level = rng.uniform(5, 95)
            for day in range(int((self.last_ms - since_ms) // DAY_MS) + 1):
                t = self.last_ms - day * DAY_MS - rng.randrange(0, 360) * 10000
                if t < since_ms:
                    break
                lvl = level + day * rate
                if lvl > 100:
                    break
                days = lvl / rate
                self.event(t, "forecast", round(days, 2), {
                    "level": round(lvl, 1), "rate_per_day": round(rate, 3),
                    "low_days": round(lvl / (rate * 1.3), 2),
                    "high_days": round(lvl / (rate * 0.7), 2), "points": 28, "weekly": True},
                    sensor=ink)
                if day == 0 and days < 12:  # the lead time (10 days) and a margin
                    self.event(t + 10000, "reorder", round(days, 2), {
                        "days": round(days, 2), "low_days": round(lvl / (rate * 1.3), 2),
                        "high_days": round(lvl / (rate * 0.7), 2), "level": round(lvl, 1),
                        "rate_per_day": round(rate, 3), "lead_days": 10.0, "weekly": True},
                        sensor=ink)
                if day == 0 and lvl < 15:
                    self.event(t - 20000, "ink_low", round(lvl, 1), state="raised", sensor=ink)

    def _pillbottle(self, since_ms):
        rng = self.rng
        day0 = self.last_ms - self.last_ms % DAY_MS
        count = rng.randrange(4, 60)
        for day in range(int((self.last_ms - since_ms) // DAY_MS) + 1):
            for hour in (8, 20):
                scheduled = day0 - day * DAY_MS + hour * HOUR_MS
                if not since_ms <= scheduled <= self.last_ms - HOUR_MS:
                    continue
                if rng.random() < 0.06:
                    self.event(scheduled + 2 * HOUR_MS, "dose_missed", None, {
                        "scheduled": scheduled, "close": scheduled + 2 * HOUR_MS})
                    continue
                late = rng.choice((0, 0, 0, 0, 12, 47))
                taken = scheduled + (late * 60000 if late else -rng.randrange(0, 30) * 60000)
                self.event(taken + 60000, "dose_taken", 1, {
                    "late_min": late, "pills": 1, "scheduled": scheduled,
                    "status": "late" if late else "on_time", "taken": taken})
        if count < 7:
            self.event(self.last_ms - HOUR_MS, "refill_needed", round(count / 2.0, 1), {
                "count": count, "days_left": round(count / 2.0, 1), "per_day": 2})

    def _washer(self, since_ms):
        self._motor(since_ms, cycles_a_day=2, wh=(300, 1420), minutes=(41, 180), peak=2150,
                    watch="reversal")

    def _fridge(self, since_ms):
        self._motor(since_ms, cycles_a_day=24, wh=(22, 30), minutes=(17, 23), peak=130,
                    watch="capacity")

    def _motor(self, since_ms, cycles_a_day, wh, minutes, peak, watch):
        rng = self.rng
        every = DAY_MS // cycles_a_day
        drift = rng.random() < 0.04
        t = self.last_ms - rng.randrange(0, every // 10000) * 10000
        n = 0
        while t >= since_ms:
            duration = rng.uniform(*minutes) * 60
            energy = rng.uniform(*wh)
            self.event(t, "cycle", round(energy, 2), {
                "duration_s": int(duration), "end": t - 60000, "energy_wh": round(energy, 2),
                "feature": round(rng.uniform(4.4, 4.7), 4), "gap": False,
                "peak_w": round(peak * rng.uniform(0.9, 1.05), 1), "programme": None,
                "start": t - 60000 - int(duration * 1000), "watch": watch})
            t -= every + rng.randrange(-every // 20000, every // 20000 + 1) * 10000
            n += 1
        midnight = self.last_ms - self.last_ms % DAY_MS
        while midnight > since_ms:
            kwh = rng.uniform(*wh) * cycles_a_day / 1000.0
            self.event(midnight, "energy_report", round(kwh, 4), {
                "co2_g": round(kwh * 250, 1), "cost": round(kwh * 0.3, 4), "currency": "EUR",
                "cycles": cycles_a_day, "kwh": round(kwh, 4), "missing_s": 0,
                "since": midnight - DAY_MS, "standby_kwh": round(rng.uniform(0.01, 0.03), 4),
                "until": midnight})
            midnight -= DAY_MS
        if drift:
            base = sum(wh) / 2.0
            pct = rng.uniform(9, 25)
            self.event(self.last_ms - rng.randrange(1, 72) * HOUR_MS, "maintenance_due",
                       round(pct, 2), {
                           "watch": watch, "baseline": round(base, 2),
                           "spread": round(base * 0.05, 3),
                           "recent": round(base * (1 + pct / 100), 2),
                           "drift_pct": round(pct, 2), "cusum": round(rng.uniform(6, 8), 3),
                           "cycles": n})


class Latest(Device):
    """A fleet device: its 30 days' counters, its latest hour of batches, 3 health reports, the
    insights of its last day."""

    def rows(self, rows):
        self.insights(self.last_ms - DAY_MS)
        self.event_seq = len(self.events) * DAYS  # a month's worth, of which the latest stored
        self.event_rows(rows)
        readings = int(self.batches * self.per_batch)
        rows["devices"].append(self.device_row(readings, self.event_seq))
        self.channel_rows(rows)
        per = int(self.per_batch)
        for k in range(6):
            seq = self.batches - 1 - k
            t_last = self.last_ms - k * BATCH_MS
            rows["batches"].append(self.batch_row(seq, t_last - BATCH_MS + 10000, t_last, per))
        for k in range(3):
            t = self.last_ms - k * HOUR_MS
            rows["health"].append((self.device, self.received(t), t,
                                   self.health_doc(t, queued=self.rng.randrange(0, 3))))
        self.lost_rows(rows)


class Month(Device):
    """A device with its whole month stored: readings, batches, hourly health, insights, and a
    few command replies."""

    def __init__(self, store, device, kind, now_ms, rng):
        Device.__init__(self, device, kind, now_ms, rng)
        self.store = store
        self.status, self.last_ms = "online", now_ms
        self.first_ms = now_ms - DAYS * DAY_MS
        self.batches = DAYS * DAY_MS // BATCH_MS
        self.dropped = self.lost = 0

    def write(self, rows):
        self.insights(self.first_ms)
        self.event_rows(rows)
        readings = 0
        for seq in range(self.batches):
            t0 = self.first_ms + seq * BATCH_MS
            batch = self.readings(t0)
            self.store.insert_readings(self.device, seq, batch)
            readings += len(batch)
            rows["batches"].append(self.batch_row(seq, batch[0][0], batch[-1][0], len(batch)))
        rows["devices"].append(self.device_row(readings, self.event_seq))
        self.channel_rows(rows)
        for t in range(self.first_ms + HOUR_MS, self.last_ms + 1, HOUR_MS):
            rows["health"].append((self.device, self.received(t), t, self.health_doc(t)))
        for k, (cmd, body) in enumerate((
                ("ping", {"ok": True, "result": {"pong": True}}),
                ("set_interval", {"ok": True, "result": {"sensor": SENSOR[self.kind],
                                                         "interval_ms": 60000}}),
                ("diag", {"ok": True, "result": {"heap_free": self.heap, "uptime_s": 86400}}))):
            at = (self.last_ms - (3 - k) * HOUR_MS) / 1000.0
            body = dict(body, reply="console-%d" % k)
            rows["replies"].append((self.device, at, "console-%d" % k, 1,
                                    json.dumps(body, sort_keys=True)))
        return readings

    def _printer(self, since_ms):
        """Each day's forecast, and the reorders, lows and swaps, of the inks value() draws."""
        for i, ink in enumerate(("ink_c", "ink_m", "ink_y", "ink_k")):
            rate = self.ink_rate(ink)
            prev = None
            reordered = low = False
            for t in range(since_ms + DAY_MS // 2 + i * 60000, self.last_ms, DAY_MS):
                level = self.value(ink, t)
                if prev is not None and level > prev + 20:
                    self.event(t, "cartridge_replaced", round(level, 1),
                               {"from": round(prev, 1), "to": round(level, 1)}, sensor=ink)
                    reordered = low = False
                prev = level
                days = level / rate
                self.event(t, "forecast", round(days, 2), {
                    "level": round(level, 1), "rate_per_day": round(rate, 3),
                    "low_days": round(days / 1.3, 2), "high_days": round(days / 0.7, 2),
                    "points": 28, "weekly": True}, sensor=ink)
                if days < 12 and not reordered:
                    reordered = True
                    self.event(t + 10000, "reorder", round(days, 2), {
                        "days": round(days, 2), "low_days": round(days / 1.3, 2),
                        "high_days": round(days / 0.7, 2), "level": round(level, 1),
                        "rate_per_day": round(rate, 3), "lead_days": 10.0, "weekly": True},
                        sensor=ink)
                if level < 15 and not low:
                    low = True
                    self.event(t + 20000, "ink_low", round(level, 1), state="raised",
                               sensor=ink)

    @staticmethod
    def ink_rate(ink):
        return 2.0 + "cmyk".index(ink[-1]) * 0.7  # %/day

    def readings(self, t0):
        """[(t_ms, channel, value)] of the 10 minutes from t0, time order: each channel sampled
        at its interval, kept at the rate its deadband keeps (a real day's count)."""
        rng = self.rng
        out = []
        for name, _, _, e, interval, per_day in CHANNELS[self.kind]:
            step = interval * 1000
            keep = per_day * interval / 86400.0
            for t in range(t0, t0 + BATCH_MS, step):
                if keep >= 1 or rng.random() < keep:
                    out.append((t, name, round(self.value(name, t), -e)))
        out.sort(key=lambda r: r[0])
        return out

    def value(self, name, t):
        """A plausible reading of channel `name` at t (ms): inks that fall and get replaced,
        pills taken twice a day, motor cycles, a meter that counts up, mains voltage."""
        days = (t - self.first_ms) / float(DAY_MS)
        hour = (t % DAY_MS) / float(HOUR_MS)
        if name.startswith("ink_"):
            return 100.0 - (days * self.ink_rate(name) + 37 * "cmyk".index(name[-1])) % 100
        if name == "pills":
            return 60 - int(days * 2) % 60
        if name == "weight":
            return 25 + 0.45 * (60 - int(days * 2) % 60)
        if name == "energy":
            return int(days * (1.1 if self.kind == "washer" else 0.73) * 1000)
        if name == "voltage":
            return 230 + 4 * math.sin(hour / 24 * 2 * math.pi) + self.rng.uniform(-1, 1)
        if self.kind == "printer":
            return 24 + self.rng.uniform(-2, 2) if 9 <= hour < 17 and hour % 1 < 0.05 else 3.1
        if self.kind == "washer":
            on = hour % 12 < 2
            return (2000 if hour % 12 < 0.3 else 350) + self.rng.uniform(-30, 30) if on else 2.1
        on = (t // 60000) % 60 < 18
        return 118 + self.rng.uniform(-6, 6) if on else 1.2
