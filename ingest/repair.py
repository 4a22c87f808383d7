"""End-to-end repair: the ingest asks devices to re-send what their sequence numbers say it lacks.

Brokers lose messages they acknowledged (a restart without persistence, a SIGKILL, shared
subscriptions across a restart), and only the ingest can see it: it knows each device's batch
and event sequence numbers, and health reports carry the newest the device has published
(docs/uplink.md, "How the ingest repairs gaps"). Per device and kind the database keeps `done`:
every sequence number up to it is stored, or settled in `lost`. Above it a pass of plan() finds
the missing ranges (between stored ones, and up to the newest), lets each wait a grace period
(it may still be on its way), and publishes a bounded `resend` command, at most one outstanding
per device, at least `interval` apart per device, and within a token bucket for the whole fleet.
The device re-publishes what it holds; the reply names what it no longer holds (`gone`: lost at
the broker) and what it dropped unsent (`dropped`: dropped by the device), recorded in `lost`.

Everything here runs inside the ingest writer's transaction (Store.begin: on SQLite BEGIN
IMMEDIATE), so processes that share one database never claim the same device at once; the clock
is passed in (`now`). The SQL is in the shared dialect of ingest/store/__init__.py.
"""
import bisect
import json
import logging
import os

from agent import cbor

from ingest.topics import command_topic

MAX_RANGES = 16       # per command: the protocol's bound
MAX_SEQS = 1024       # sequence numbers per command, in all: the protocol's bound
WINDOW = 4096         # sequence numbers above `done` looked at per device and pass
MAX_REPLY_RANGES = 64  # per list in a reply (a device sends at most MAX_RANGES)
ID_PREFIX = "repair-"
INT64 = 1 << 63
SHIFT = 32  # a device's store n numbers from n << SHIFT here (ingest/numbering.py); the
# protocol's sequence numbers are below 2^32
KINDS = ("batch", "event")
TABLE = {"batch": "batches", "event": "events"}
LAST = {"batch": "last_seq", "event": "last_event_seq"}
REASONS = (("gone", "broker"), ("dropped", "dropped"))  # reply list -> lost.reason
MAX_ASKS = 8  # asks of one number, at growing intervals, before it is settled as lost
PROBE = {"batch": 64, "event": 16}  # numbers past the tail asked for when it may have been lost
UNHEALTHY = 600.0  # seconds a device sends batches with no health report before it is told of

log = logging.getLogger("tether.ingest")


class Policy:
    """How eagerly the ingest asks (seconds; requests per second for the fleet).

    grace: a gap waits this long before it is asked for; interval: at least this long between two
    requests to one device; timeout: a request without a reply blocks its device this long;
    reask: a range asked for and still missing is asked again after this; rate, burst: the
    fleet-wide token bucket (shared by the processes that share the database)."""

    def __init__(self, grace=10.0, interval=5.0, timeout=30.0, reask=60.0, rate=10.0, burst=50):
        for name, value in (("grace", grace), ("interval", interval), ("timeout", timeout),
                            ("reask", reask), ("rate", rate), ("burst", burst)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < 1e9:
                raise ValueError("repair %s: expected a number from 0, not %r" % (name, value))
        if rate <= 0 or burst < 1:
            raise ValueError("repair rate must be above 0 and burst at least 1")
        self.grace = float(grace)
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.reask = float(reask)
        self.rate = float(rate)
        self.burst = float(burst)


# ---- pure parts ----

def missing(have, lo, hi):
    """The ranges [(a, b)] of lo..hi (inclusive) that are not in `have` (ascending)."""
    out = []
    nxt = lo
    for s in have:
        if s < nxt:
            continue
        if s > hi:
            break
        if s > nxt:
            out.append((nxt, s - 1))
        nxt = s + 1
    if nxt <= hi:
        out.append((nxt, hi))
    return out


class Ages:
    """Since when this process has seen each missing range: grace periods start there. A part of
    a range that was already missing at the last update keeps its time (a tail that grows, a gap
    partly filled); a new part starts now."""

    def __init__(self):
        self.seen = {}  # key -> [(a, b, since)], ascending and disjoint

    def update(self, key, ranges, now):
        old = self.seen.get(key, ())
        out = []
        for a, b in ranges:
            x = a
            for oa, ob, since in old:
                if ob < x:
                    continue
                if oa > b:
                    break
                if oa > x:
                    out.append((x, oa - 1, now))
                    x = oa
                end = min(ob, b)
                out.append((x, end, since))
                x = end + 1
            if x <= b:
                out.append((x, b, now))
        if out:
            self.seen[key] = out
        else:
            self.seen.pop(key, None)
        return out

    def keep(self, keys):
        """Forgets every key not in `keys` (their gaps are gone)."""
        for key in [k for k in self.seen if k not in keys]:
            del self.seen[key]


def choose(ranges, recent, max_ranges=MAX_RANGES, max_seqs=MAX_SEQS):
    """What one command asks for: `ranges` in order, less the sequence numbers in `recent`
    (ascending: asked for a moment ago), at most max_ranges ranges and max_seqs numbers."""
    out = []
    budget = max_seqs
    for a, b in ranges:
        i = bisect.bisect_left(recent, a)
        x = a
        while x <= b:
            stop = recent[i] - 1 if i < len(recent) and recent[i] <= b else b
            if stop >= x:
                end = min(stop, x + budget - 1)
                out.append([x, end])
                budget -= end - x + 1
                if not budget or len(out) == max_ranges:
                    return out
            x = stop + 2  # past the recent one (or past b)
            i += 1
    return out


def one_store(ranges):
    """The ranges of the first one's store (ingest/numbering.py): a command asks one."""
    if not ranges:
        return ranges
    top = ((ranges[0][0] >> SHIFT) + 1 << SHIFT) - 1
    return [[a, min(b, top)] for a, b in ranges if a <= top]


def refill(tokens, at, now, rate, burst):
    """A token bucket's tokens at `now`, from `tokens` at time `at` (None: a full bucket)."""
    if at is None:
        return burst
    return min(burst, tokens + max(0.0, now - at) * rate)


def command(cmd_id, kind, ranges, store=0):
    """The resend command's CBOR bytes (docs/uplink.md); the store id where it is not 0 (a
    device from before store ids refuses arguments it does not know)."""
    doc = {"id": cmd_id, "cmd": "resend", "kind": kind, "ranges": ranges}
    if store:
        doc["store"] = store
    return cbor.dumps(doc)


def parse_seq(value):
    """{kind: (oldest, newest, store id)} from a health report's `seq`; ValueError when
    malformed."""
    if not isinstance(value, dict):
        raise ValueError("seq is not a map")
    out = {}
    for kind in KINDS:
        pair = value.get(kind)
        if pair is None:
            continue
        if not isinstance(pair, list) or len(pair) not in (2, 3):
            raise ValueError("seq.%s is not [oldest, newest] or [oldest, newest, store]" % kind)
        oldest, newest = pair[:2]
        store = pair[2] if len(pair) == 3 else 0
        if len(pair) == 3 and not (_int_in(store, 1) and not store >> SHIFT):
            raise ValueError("seq.%s store %r is not a store id (1 to 2^32 - 1)" % (kind, store))
        if oldest is not None and not _int_in(oldest, 0):
            raise ValueError("seq.%s oldest %r is not null or a sequence number" % (kind, oldest))
        if not _int_in(newest, -1):
            raise ValueError("seq.%s newest %r is not -1 or a sequence number" % (kind, newest))
        if max(newest, oldest or 0) >> SHIFT:
            raise ValueError("seq.%s: a device's numbers are below 2^32" % kind)
        out[kind] = (oldest, newest, store)
    return out


def parse_ranges(result, key):
    """[(a, b)] from a reply's result[key]; ValueError when malformed."""
    value = result.get(key, [])
    if not isinstance(value, list) or len(value) > MAX_REPLY_RANGES:
        raise ValueError("%s is not a list of at most %d ranges" % (key, MAX_REPLY_RANGES))
    out = []
    for r in value:
        if not (isinstance(r, list) and len(r) == 2 and _int_in(r[0], 0) and _int_in(r[1], 0)
                and r[0] <= r[1]):
            raise ValueError("%s: %r is not a range [from, to]" % (key, r))
        out.append((r[0], r[1]))
    return out


def _int_in(v, low):
    return isinstance(v, int) and not isinstance(v, bool) and low <= v < INT64


# ---- the database's side (inside the writer's transaction) ----

def note_health(db, device, seq):
    """A health report's `seq` ({kind: (oldest, newest, base)} in the ingest's numbers, base:
    where its store's numbers start here): the newest it has published (the tail may be
    missing), and where repair starts for a device (or a store) seen for the first time: at the
    oldest it still holds, or lower where batches of the store below that are stored (what is
    missing between them is asked for too)."""
    for kind, (oldest, newest, base) in seq.items():
        lo = oldest if oldest is not None else newest + 1
        first = db.execute("SELECT min(seq) FROM %s WHERE device = ? AND seq >= ?"
                           % TABLE[kind], (device, base)).fetchone()[0]
        if first is not None and first < lo:
            lo = first
        db.execute("UPDATE devices SET {k}_oldest = ?, "
                   "{k}_newest = greatest(coalesce({k}_newest, -1), ?), "
                   "{k}_done = coalesce({k}_done, ?) WHERE device = ?".format(k=kind),
                   (oldest, newest, lo - 1, device))


def accounted(db, device, kind, lo, hi):
    """The numbers in lo..hi the database has (stored, or settled in `lost`), ascending."""
    args = (device, lo, hi)
    have = {s for (s,) in db.execute("SELECT seq FROM %s WHERE device = ? AND seq BETWEEN ? "
                                     "AND ?" % TABLE[kind], args)}
    have.update(s for (s,) in db.execute(
        "SELECT seq FROM lost WHERE device = ? AND kind = ? AND seq BETWEEN ? AND ?",
        (device, kind, lo, hi)))
    if kind == "batch":  # compact batches waiting for their schema are here already
        have.update(s for (s,) in db.execute(
            "SELECT seq FROM held WHERE device = ? AND seq BETWEEN ? AND ?", args))
    return sorted(have)


def arrived(db, device, kind, seq):
    """A batch or event newly stored: True when it was asked for (a repair). It is no longer
    lost, should a stale copy turn up after the device said it was gone."""
    asked = db.execute("DELETE FROM asked WHERE device = ? AND kind = ? AND seq = ?",
                       (device, kind, seq)).rowcount
    db.execute("DELETE FROM lost WHERE device = ? AND kind = ? AND seq = ?", (device, kind, seq))
    return asked > 0


def reply(db, device, doc, now, d, base):
    """A reply to a resend command (its id starts with ID_PREFIX): the request is answered, and
    what the device says it no longer holds is settled in `lost`, for the numbers that were
    asked for and have not arrived. base(kind, store id): what the store's numbers take here
    (None for a store not met). ValueError for a malformed reply."""
    rid = doc.get("reply")
    db.execute("UPDATE requests SET answered_at = ? WHERE device = ? AND id = ? "
               "AND answered_at IS NULL", (now, device, rid))
    if not doc.get("ok"):
        d.logs.append((logging.WARNING, "device %s refused the resend request %s: %.200s",
                       device, rid, doc.get("error")))
        d.add("repair_refused")
        return
    result = doc.get("result")
    if not isinstance(result, dict) or result.get("kind") not in KINDS:
        raise ValueError("the result is not a map with kind batch or event")
    kind = result["kind"]
    lists = {key: parse_ranges(result, key) for key in ("gone", "dropped", "unknown")}
    store = result.get("store", 0)
    if not _int_in(store, 0) or store >> SHIFT:
        raise ValueError("store %r is not a store id" % (store,))
    at = base(kind, store)
    if at is None:
        return  # of a log the ingest never met: its numbers are nobody's here
    for key in lists:
        lists[key] = [(a + at, b + at) for a, b in lists[key]]
    for key, reason in REASONS:
        for a, b in lists[key]:
            n = db.execute("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                           "SELECT device, kind, seq, ?, ? FROM asked "
                           "WHERE device = ? AND kind = ? AND seq BETWEEN ? AND ? "
                           "ON CONFLICT DO NOTHING",
                           (reason, now, device, kind, a, b)).rowcount
            db.execute("DELETE FROM asked WHERE device = ? AND kind = ? AND seq BETWEEN ? AND ?",
                       (device, kind, a, b))
            if n:
                d.add(("" if kind == "batch" else "events_")
                      + ("lost_at_broker" if reason == "broker" else "dropped_by_device"), n)
    unknown = lists["unknown"]
    row = db.execute("SELECT ranges FROM requests WHERE device = ? AND id = ?",
                     (device, rid)).fetchone()
    top = max(b for _, b in json.loads(row[0])) if row is not None else None
    if top is not None and not any(a <= top <= b for key in ("gone", "dropped", "unknown")
                                   for a, b in lists[key]):
        # The device holds the top of what was asked, the believed tail: there may be more past
        # it (a tail lost with the health reports that told of it), so the next numbers are
        # asked for too, until the device answers `unknown`.
        # Only at the tail: a gap between stored batches says nothing of what lies past them.
        db.execute("UPDATE devices SET {k}_newest = ? WHERE device = ? "
                   "AND greatest(coalesce({last}, -1), coalesce({k}_newest, -1)) <= ?"
                   .format(k=kind, last=LAST[kind]),
                   (min(top + PROBE[kind], INT64 - 1), device, top))
    for a, b in unknown:
        db.execute("DELETE FROM asked WHERE device = ? AND kind = ? AND seq BETWEEN ? AND ?",
                   (device, kind, a, b))
    if unknown:
        # Above what the device has formed: its newest was wrong (a device that lost its flash?).
        # The next health report says it again; until then nothing there is asked for.
        db.execute("UPDATE devices SET {k}_newest = least({k}_newest, ?) WHERE device = ? "
                   "AND {k}_newest IS NOT NULL"
                   .format(k=kind), (min(a for a, _ in unknown) - 1, device))


def probe(db, before):
    """The ingest had no session on the broker for a while (it reconnected and the broker kept
    nothing for it): what devices published meanwhile may be gone, with the health reports that
    would tell of it. The tail past what is stored is asked for, of each device known before
    `before` (the connect; what a device sent since may be a repair, no sign of a whole tail)
    and online (an offline one is never asked, so a guess there would stay open; it says its
    newest in the health report it sends when it is back): the device re-sends what it holds
    and answers the rest `unknown`, which sets its newest back."""
    for kind in KINDS:
        # {last} + PROBE, at most the top of 64 bits (a device may number up to there)
        top = INT64 - 1
        db.execute("UPDATE devices SET {k}_newest = greatest(coalesce({k}_newest, -1), "
                   "CASE WHEN {last} < ? THEN {last} + ? ELSE ? END) "
                   "WHERE {k}_done IS NOT NULL AND {last} IS NOT NULL AND first_seen < ? "
                   "AND (coalesce(last_status, '') != 'offline' OR last_seen > status_at)"
                   .format(k=kind, last=LAST[kind]), (top - PROBE[kind], PROBE[kind], top, before))


class Repair:
    """One ingest process's planner: plan() once a second, inside the writer's transaction."""

    def __init__(self, policy, prefix, ingest_id):
        self.policy = policy
        self.prefix = prefix
        self.ingest_id = ingest_id
        self.ages = Ages()
        self.silent = set()  # devices told of as not answering requests, until one answers
        self.unhealthy = set()  # devices told of as sending batches with no health report
        self._next_look = 0.0

    def plan(self, db, now):
        """[(topic, payload)]: the resend commands to publish once the transaction commits."""
        p = self.policy
        row = db.execute("SELECT tokens, at FROM repair_bucket WHERE id = 0").fetchone()
        tokens = refill(row[0], row[1], now, p.rate, p.burst) if row else p.burst
        spent = 0
        out = []
        keys = set()
        rows = db.execute(
            "SELECT d.device, CASE WHEN d.last_seen > d.status_at THEN 'online' "
            "ELSE d.last_status END, r.sent_at, r.answered_at, "
            "d.batch_done, greatest(coalesce(d.last_seq, -1), coalesce(d.batch_newest, -1)), "
            "d.event_done, greatest(coalesce(d.last_event_seq, -1), coalesce(d.event_newest, -1)), "
            "d.last_seen, d.last_status "
            "FROM devices d LEFT JOIN requests r ON r.device = d.device "
            "WHERE (d.batch_done IS NOT NULL AND greatest(coalesce(d.last_seq, -1), "
            "       coalesce(d.batch_newest, -1)) > d.batch_done) "
            "   OR (d.event_done IS NOT NULL AND greatest(coalesce(d.last_event_seq, -1), "
            "       coalesce(d.event_newest, -1)) > d.event_done) "
            "ORDER BY coalesce(r.sent_at, 0)").fetchall()
        for device, status, sent_at, answered_at, bdone, btop, edone, etop, seen, said in rows:
            timed_out = (sent_at is not None and answered_at is None
                         and now - sent_at >= max(p.timeout, p.interval))
            free = (status != "offline"
                    and (sent_at is None
                         or (answered_at is not None and now - sent_at >= p.interval)
                         or timed_out))
            if answered_at is not None:
                self.silent.discard(device)
            elif (free and timed_out and device not in self.silent and seen is not None
                  and seen > sent_at + 1 and said != "offline"
                  and not self._replied(db, device, now - 3600)):
                # (its own status does not say offline: a backlog delivered late, after its
                # offline, is received now from a device long gone; no status at all, an ACL
                # denying it, is no sign of one)
                # It publishes and has answered nothing for an hour (a late reply is no sign):
                # a broker whose ACL lets a device publish but not read its commands grants the
                # subscription all the same (Mosquitto 2) and drops what comes for it.
                self.silent.add(device)
                log.warning("device %s did not answer the resend request sent %.0f s ago, "
                            "though it is online: do commands reach it? (the broker must let "
                            "it read %s); what it lacks is asked for again, not settled as lost "
                            "until it answers", device, now - sent_at,
                            command_topic(self.prefix, device))
            for kind, done, top in (("batch", bdone, btop), ("event", edone, etop)):
                if done is None or top <= done:
                    continue
                keys.add((device, kind))
                ripe = self._ripe(db, device, kind, done, top, now)
                if not (free and ripe and tokens - spent >= 1):
                    continue
                lo, hi = ripe[0][0], ripe[-1][1]
                recent = self._recent(db, device, kind, lo, hi, now, answered_at is not None)
                ranges = one_store(choose(ripe, recent))
                if ranges and self._claim(db, device, kind, ranges, now, out):
                    spent += 1
                    free = False
        self.ages.keep(keys)
        if now >= self._next_look:
            self._next_look = now + 60.0
            self._no_health(db, now)
        if spent:
            db.execute("INSERT INTO repair_bucket (id, tokens, at) VALUES (0, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
                       (tokens - spent, now))
        return out

    def _replied(self, db, device, since):
        """True when the device has sent a reply (to any command) since then."""
        return db.execute("SELECT 1 FROM replies WHERE device = ? AND received_at >= ? LIMIT 1",
                          (device, since)).fetchone() is not None

    def _no_health(self, db, now):
        """Tells once of each device that has sent batches for UNHEALTHY seconds and never a
        health report: repair starts at one (where the device's log begins), so its gaps wait."""
        for device, first_seen in db.execute(
                "SELECT device, first_seen FROM devices WHERE batch_done IS NULL "
                "AND last_seq IS NOT NULL AND last_health_at IS NULL AND first_seen < ?",
                (now - UNHEALTHY,)).fetchall():
            if device not in self.unhealthy:
                self.unhealthy.add(device)
                # A broker that takes its batches and drops its health reports (an ACL on
                # up/health, a message size limit between the two) acknowledges them all.
                log.warning("device %s has sent batches for %.0f min and no health report: its "
                            "gaps are not asked for until one comes (it sends one at each "
                            "connect and every uplink.health_every; is the broker dropping them? "
                            "an ACL on %s/%s/up/health, or a message size limit)", device,
                            (now - first_seen) / 60, self.prefix, device)

    def _recent(self, db, device, kind, lo, hi, now, answering):
        """The numbers in lo..hi asked for too lately to ask again (ascending). A number waits
        `reask` after its first ask, twice that after its second, and so on; one asked
        MAX_ASKS times that still has not come (a device that says it holds it and re-sends
        something else: another log's batch under that number) is recorded as lost at the
        broker once its last wait is over, and no more asked for (it leaves `lost` if it comes);
        but not while the device's last request went unanswered (`answering` False) and no
        reply of it came within that wait (commands may not reach it, and it may hold them all):
        those are asked again at the longest wait."""
        recent = []
        over = []
        for seq, asked_at, asks in db.execute(
                "SELECT seq, asked_at, asks FROM asked WHERE device = ? AND kind = ? "
                "AND seq BETWEEN ? AND ? ORDER BY seq", (device, kind, lo, hi)):
            wait = self.policy.reask * (1 << min(asks, MAX_ASKS) - 1)
            if now - asked_at < wait:
                recent.append(seq)
            elif asks >= MAX_ASKS:
                over.append(seq)
        longest = self.policy.reask * (1 << MAX_ASKS - 1)
        if over and not answering and not self._replied(db, device, now - longest):
            over = []       # commands may not reach it: asked again, not settled
        if over:
            db.executemany("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                           "VALUES (?, ?, ?, 'broker', ?) ON CONFLICT DO NOTHING",
                           [(device, kind, s, now) for s in over])
            db.executemany("DELETE FROM asked WHERE device = ? AND kind = ? AND seq = ?",
                           [(device, kind, s) for s in over])
            log.warning("device %s: %d %s number%s asked for %d times did not come; recorded as "
                        "lost at the broker", device, len(over), kind,
                        "" if len(over) == 1 else "s", MAX_ASKS)
        return sorted(recent + over)  # settled now: not asked for in this pass either

    def _ripe(self, db, device, kind, done, top, now):
        """Moves `done` over what is stored or settled; the missing ranges past their grace."""
        lo, hi = done + 1, min(top, done + WINDOW)
        gaps = missing(accounted(db, device, kind, lo, hi), lo, hi)
        reached = gaps[0][0] - 1 if gaps else hi
        if reached > done:
            db.execute("UPDATE devices SET {k}_done = greatest({k}_done, ?) WHERE device = ?"
                       .format(k=kind), (reached, device))
        aged = self.ages.update((device, kind), gaps, now)
        return [(a, b) for a, b, since in aged if now - since >= self.policy.grace]

    def _claim(self, db, device, kind, ranges, now, out):
        """Takes the device's one request slot (unless another process holds it) and records
        what is asked; True when the command is to be sent."""
        p = self.policy
        cmd_id = ID_PREFIX + os.urandom(6).hex()
        claimed = db.execute(
            "INSERT INTO requests (device, id, kind, ranges, sent_at, answered_at, ingest) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (device) DO UPDATE SET "
            "id = excluded.id, kind = excluded.kind, ranges = excluded.ranges, "
            "sent_at = excluded.sent_at, answered_at = NULL, ingest = excluded.ingest "
            "WHERE (requests.answered_at IS NOT NULL AND requests.sent_at <= ?) "
            "OR requests.sent_at <= ?",
            (device, cmd_id, kind, json.dumps(ranges), now, self.ingest_id, now - p.interval,
             now - max(p.timeout, p.interval))).rowcount
        if not claimed:
            return False
        db.executemany("INSERT INTO asked (device, kind, seq, asked_at, asks) "
                       "VALUES (?, ?, ?, ?, 1) ON CONFLICT (device, kind, seq) DO UPDATE SET "
                       "asked_at = excluded.asked_at, asks = asked.asks + 1",
                       [(device, kind, s, now) for a, b in ranges for s in range(a, b + 1)])
        n = ranges[0][0] >> SHIFT  # the device numbers each store from 0
        row = db.execute("SELECT store FROM stores WHERE device = ? AND kind = ? AND number = ?",
                         (device, kind, n)).fetchone()
        at = n << SHIFT
        out.append((command_topic(self.prefix, device),
                    command(cmd_id, kind, [[a - at, b - at] for a, b in ranges],
                            row[0] if row is not None else 0)))
        return True
