"""A device's stores: its sequence numbers as the ingest keeps them.

A device numbers its batches (and, apart, its events) from 0 in a log it made; a log made afresh
(an erased board, a new SD card, a purged buffer) starts at 0 again under a new random store id,
which its batches, events, health reports and resend replies carry (docs/wire-format.md). The
ingest numbers a device's stores of a kind 0, 1, 2... in the order their batches or events
arrive (table `stores`) and keeps sequence number s of store n as n * 2^32 + s: the first
store's numbers as they are, a later one's past every earlier one's, so that nothing keyed by
(device, seq) needs the store. Store id 0 is a log made before store ids (a version 1 envelope):
the store 0 of the devices the database had before them.

Meeting a device's new store (not its first) settles the one before: what that one published
(up to the newest its batches and its own health reports told of, not a number probed past
them) and the ingest still lacks will not come, and goes to `lost` as `erased` (gone with the
log). Repair then starts over as for a new device: at the oldest the new store holds, once a
health report of it says so. A batch of an earlier store that turns up later is still stored under its
own numbers. The new store's dropped-readings count goes on from the device's total so far
(`dropped_base`): a log made afresh counts from 0.
"""
import logging

from ingest import repair

SHIFT = repair.SHIFT
# Numbers of a device's old stores settled in `lost` in a day, at most (a log holds fewer): a
# device sending batches of stores 1, 2, 3... numbered 0 and 2^32 - 1 made 65,536 rows of
# `lost` per two small messages, and 900 MB in two minutes. What is past it stays a gap.
MAX_SETTLED = 1 << 16
DAY_S = 86400


def number(db, device, kind, store, now, d, add=True):
    """(number, dropped_base) of the store among the device's of its kind: read from `stores`,
    or given now (the next free number; None when add is False) inside the writer's
    transaction. The caller keeps it (Handlers._base): it never changes once committed."""
    row = db.execute("SELECT number, dropped_base FROM stores WHERE device = ? AND kind = ? "
                     "AND store = ?", (device, kind, store)).fetchone()
    if row is not None:
        return tuple(row)
    if not add:
        return None
    n = db.execute("SELECT coalesce(max(number), -1) + 1 FROM stores WHERE device = ? "
                   "AND kind = ?", (device, kind)).fetchone()[0]
    dropped = 0
    if n and kind == "batch":
        dropped = db.execute("SELECT greatest(dropped_reported, dropped_health) FROM devices "
                             "WHERE device = ?", (device,)).fetchone()
        dropped = dropped[0] if dropped is not None else 0
    db.execute("INSERT INTO stores (device, kind, store, number, first_seen, dropped_base) "
               "VALUES (?, ?, ?, ?, ?, ?)", (device, kind, store, n, now, dropped))
    if n:
        settled, cut = settle(db, device, kind, n, now)
        if cut:
            d.logs.append((logging.WARNING, "device %s: its new %s logs left more numbers to "
                           "settle as erased in a day than %d: the rest stay gaps", device,
                           kind, MAX_SETTLED))
        if settled:
            d.add(("" if kind == "batch" else "events_") + "erased_with_device", settled)
        d.add("stores_replaced")
        # A warning when the old log took what it had published with it
        d.logs.append((logging.WARNING if settled else logging.INFO,
                       "device %s has a new %s log (an erased or new buffer): its numbering "
                       "restarted at 0 (store id %d, kept here from %d as its store %d)%s",
                       device, kind, store, n << SHIFT, n,
                       "; %d %s%s it had published and not delivered went with the old one "
                       "(in lost as erased)" % (
                           settled, kind, "es" if kind == "batch" else "s") if settled else ""))
    return n, dropped


def current(db, device, kind):
    """The number of the device's newest store of the kind (0 when none is known)."""
    return db.execute("SELECT coalesce(max(number), 0) FROM stores WHERE device = ? AND kind = ?",
                      (device, kind)).fetchone()[0]


def settle(db, device, kind, n, now):
    """Store n - 1's numbers that the device published and are neither stored nor settled:
    into `lost` as erased (they went with the old log). Repair then waits for store n's health
    report (`done` cleared). Returns (how many, whether MAX_SETTLED a day cut it short)."""
    old, base = (n - 1) << SHIFT, n << SHIFT
    done = db.execute("SELECT %s_done FROM devices WHERE device = ?" % kind,
                      (device,)).fetchone()
    reported = db.execute("SELECT reported FROM stores WHERE device = ? AND kind = ? "
                          "AND number = ?", (device, kind, n - 1)).fetchone()
    first, top = db.execute("SELECT min(seq), max(seq) FROM %s WHERE device = ? AND seq >= ? "
                            "AND seq < ?" % repair.TABLE[kind], (device, old, base)).fetchone()
    if reported is not None and reported[0] is not None:
        top = max(top if top is not None else -1, old + reported[0])
    settled, cut = 0, False
    # from where repair had got to; without a health report of it, from its first batch stored
    lo = max(done[0] + 1, old) if done is not None and done[0] is not None else first
    if lo is not None and top is not None:
        budget = MAX_SETTLED - db.execute(
            "SELECT count(*) FROM lost WHERE device = ? AND kind = ? AND reason = 'erased' "
            "AND recorded_at > ?", (device, kind, now - DAY_S)).fetchone()[0]
        rows = []
        for a, b in repair.missing(repair.accounted(db, device, kind, lo, top), lo, top):
            take = min(b - a + 1, budget - len(rows))
            rows += [(device, kind, s, now) for s in range(a, a + max(take, 0))]
            if take < b - a + 1:
                cut = True
                break
        if rows:
            db.executemany("INSERT INTO lost (device, kind, seq, reason, recorded_at) "
                           "VALUES (?, ?, ?, 'erased', ?) ON CONFLICT DO NOTHING", rows)
        settled = len(rows)
    db.execute("DELETE FROM asked WHERE device = ? AND kind = ? AND seq < ?", (device, kind, base))
    db.execute("UPDATE devices SET {k}_done = NULL, {k}_oldest = NULL WHERE device = ?"
               .format(k=kind), (device,))
    return settled, cut
