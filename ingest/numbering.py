"""A device's stores: its sequence numbers as the ingest keeps them.

A device numbers its batches (and, apart, its events) from 0 in a log it made; a log made afresh
(an erased board, a new SD card, a purged buffer) starts at 0 again under a new random store id,
which its batches, events, health reports and resend replies carry (docs/wire-format.md). The
ingest numbers a device's stores of a kind 0, 1, 2... in the order it meets them (table `stores`)
and keeps sequence number s of store n as n * 2^32 + s: the first store's numbers as they are, a
later one's past every earlier one's, so that nothing keyed by (device, seq) needs the store.
Store id 0 is a log made before store ids (a version 1 envelope): the store 0 of the devices the
database had before them.

Meeting a device's new store (not its first) settles the one before: what that one had
published and the ingest still lacks (up to the newest its health reports and batches told of)
will not come, and goes to `lost` as dropped by the device; repair then starts at the new
store's 0. A batch of an earlier store that turns up later is still stored under its own numbers.
"""
import logging

from ingest import repair

SHIFT = repair.SHIFT
MAX_SETTLED = 1 << 20  # numbers of an old store settled in `lost` at most (a log holds far fewer)


def number(db, device, kind, store, now, d, add=True):
    """The store's number among the device's of its kind: read from `stores`, or given now (the
    next free one; None when add is False) inside the writer's transaction. The caller keeps
    it (Handlers._base): a store's number never changes once its transaction commits."""
    row = db.execute("SELECT number FROM stores WHERE device = ? AND kind = ? AND store = ?",
                     (device, kind, store)).fetchone()
    if row is not None:
        return row[0]
    if not add:
        return None
    n = db.execute("SELECT coalesce(max(number), -1) + 1 FROM stores WHERE device = ? "
                   "AND kind = ?", (device, kind)).fetchone()[0]
    db.execute("INSERT INTO stores (device, kind, store, number, first_seen) "
               "VALUES (?, ?, ?, ?, ?)", (device, kind, store, n, now))
    if n:
        settled = settle(db, device, kind, n << SHIFT, now)
        if settled:
            d.add(("" if kind == "batch" else "events_") + "dropped_by_device", settled)
        d.add("stores_replaced")
        d.logs.append((logging.WARNING, "device %s has a new %s log (store id %d, its store %d "
                       "here: an erased or new buffer), numbered from %d; %d %s%s of the one "
                       "before that had not arrived are recorded as lost (dropped by the "
                       "device)", device, kind, store, n, n << SHIFT, settled, kind,
                       "es" if kind == "batch" else "s"))
    return n


def current(db, device, kind):
    """The number of the device's newest store of the kind (0 when none is known)."""
    return db.execute("SELECT coalesce(max(number), 0) FROM stores WHERE device = ? AND kind = ?",
                      (device, kind)).fetchone()[0]


def settle(db, device, kind, base, now):
    """The numbers below base that the device had published and are neither stored nor settled:
    into `lost` as dropped; repair goes on from base. Returns how many."""
    last = repair.LAST[kind]
    row = db.execute("SELECT {k}_done, greatest(coalesce({last}, -1), coalesce({k}_newest, -1)) "
                     "FROM devices WHERE device = ?".format(k=kind, last=last),
                     (device,)).fetchone()
    settled = 0
    if row is not None and row[0] is not None:
        lo, hi = row[0] + 1, min(row[1], base - 1, row[0] + MAX_SETTLED)
        if hi >= lo:
            args = (device, lo, hi)
            have = {s for (s,) in db.execute("SELECT seq FROM %s WHERE device = ? AND seq "
                                             "BETWEEN ? AND ?" % repair.TABLE[kind], args)}
            have.update(s for (s,) in db.execute(
                "SELECT seq FROM lost WHERE device = ? AND kind = ? AND seq BETWEEN ? AND ?",
                (device, kind, lo, hi)))
            if kind == "batch":  # waiting for their schema: here already
                have.update(s for (s,) in db.execute(
                    "SELECT seq FROM held WHERE device = ? AND seq BETWEEN ? AND ?", args))
            have = sorted(have)
            rows = [(device, kind, s, now) for a, b in repair.missing(have, lo, hi)
                    for s in range(a, b + 1)]
            if rows:
                db.executemany("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                               "VALUES (?, ?, ?, 'dropped', ?) ON CONFLICT DO NOTHING", rows)
            settled = len(rows)
    db.execute("DELETE FROM asked WHERE device = ? AND kind = ? AND seq < ?", (device, kind, base))
    db.execute("UPDATE devices SET {k}_done = greatest(coalesce({k}_done, -1), ?), "
               "{k}_oldest = NULL WHERE device = ?".format(k=kind), (base - 1, device))
    return settled
