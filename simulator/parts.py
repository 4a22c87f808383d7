"""What only the simulated devices know, kept in the ingest's database next to what it stored, so
that the report of a fleet spread over processes and machines is built from one place.

Each process that ran devices (the one process of `tether simulate --workers 1`, each worker, each
`--shard`) stores one part: a row of `sim_parts` holding, as JSON, its range of the fleet's
devices and for each of them the ground truth (readings generated, waiting, lost with a power
cut; events raised; faults applied; the model's truth for the insight scores) and the fleet's
backlog history. simulator/report.py merges the parts of a run with what the database holds.

The table is in the ingest's layout (ingest/store: a migration); the statements here are in the
dialect every backend takes. A shard runs once into a database (check_shard).
"""
import hashlib
import json
import os

from ingest.repair import SHIFT, TABLE
from ingest.store import StoreError, open_store
from ingest.url import db_url, hide_password

MASK = (1 << SHIFT) - 1     # a seq's number within its store (ingest/numbering.py)
STORE_SQL = ("INSERT INTO sim_parts (run, first_device, devices, body) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (run, first_device) DO UPDATE SET devices = excluded.devices, "
             "body = excluded.body")


class PartsError(ValueError):
    pass


def check_shard(db_path, run, first, end):
    """Before a shard runs into the database its fleet shares: PartsError if the database holds
    the parts of another run, or of this shard already. The ingest stores each device's batch
    once, so a shard run again (or another run's shard) stores nothing of its own: its report
    said 0 delivered, and the database's report mixed two runs."""
    try:
        rows = _rows(db_path)
    except PartsError:
        return      # no database or no parts (yet): the shard's ingest says what the file is
    name = hide_password(str(db_path))
    held = []   # [first, end) of the parts of this shard's devices: each worker stores its own
    for other, at, count, _ in rows:
        if other != run:
            raise PartsError("--db: %s holds a part of another run (%s; this shard's is %s): "
                             "the shards of one fleet run with the same fleet, seed, duration "
                             "and faults, and another run needs a database of its own"
                             % (name, other, run))
        if at < end and first < at + count:
            held.append((at, at + count))
    if held:
        spans = []      # the parts joined where they touch, as devices are counted (from 1)
        for a, b in sorted(held):
            if spans and spans[-1][1] >= a:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
        raise PartsError("--db: %s holds devices %s of this run already: a shard runs "
                         "once into its database (to run it again, drop and create the "
                         "database and run every shard)"
                         % (name, ", ".join("%d-%d" % (a + 1, b) for a, b in spans)))


def _rows(db_path):
    """[(run, first_device, devices, body)] of sim_parts, by run and first device; PartsError
    for a database that is not there or holds no such table."""
    name = hide_password(str(db_path))
    try:
        backend, target = db_url(str(db_path))
        if backend == "sqlite" and not os.path.isfile(target):
            raise PartsError("%s: no such database" % db_path)
        db = open_store(db_path, create=False)
    except (ValueError, StoreError) as exc:
        raise PartsError(str(exc))
    try:
        return db.execute("SELECT run, first_device, devices, body FROM sim_parts "
                          "ORDER BY run, first_device").fetchall()
    except db.Error as exc:  # psycopg's message spans lines (LINE 1: ... ^): said in one
        raise PartsError("%s holds no simulation run (%s): it is not the database of a "
                         "`tether simulate` run of this version"
                         % (name, " ".join(str(exc).split())))
    finally:
        db.close()


FLEET = ", fleet "  # what run_key puts before the hash of the fleet and the faults


def run_key(seed, devices, duration_ms, lines=(), faults=()):
    """The name under which the parts of one run meet: shards of one fleet agree on it by
    running the same fleet (`lines`: its profiles and counts), faults, seed and duration, and
    shards that differ in any of them do not meet (load() says so)."""
    digest = hashlib.sha256(json.dumps([[[p, n, t] for p, n, t in lines], faults],
                                       sort_keys=True, default=repr).encode()).hexdigest()
    return "seed %d, %d devices, %d ms%s%s" % (seed, devices, duration_ms, FLEET, digest[:12])


def _differing(run, runs):
    """A PartsError for parts of runs alike but for their fleets or faults, or None."""
    alike = sorted(r for r in runs if r.rpartition(FLEET)[0] == run.rpartition(FLEET)[0])
    if len(alike) < 2:
        return None
    return ("runs %s have the same seed, devices and duration but other fleets or faults: "
            "their parts are not merged (the shards of one run take the same fleet file and "
            "--faults; run the shards that differ again)" % "; ".join(repr(r) for r in alike))


def device_part(d):
    """What the device side knows of one simulated device (simulator/device.py) at the end."""
    log = d.agent.buffer.log
    d.failed()
    return {
        "device": d.device_id,
        "model": d.profile["device"].get("model"),
        "kind": type(d.model).__name__,
        "sensors": d.profile["sensors"],  # as provisioned: what the insight scores read
        "generated": d.buffered,
        "waiting": log.unacked_readings,
        "power_cut_window": d.cut_losses,
        "events_raised": d.events_raised,
        "events_waiting": d.agent.events.log.unacked,
        "power_cuts": d.power_cuts,
        "erases": d.erases,
        "sensor_faults": d.sensor_faults,
        "boots": d.boots,
        "outage_ms": d.outage_ms,
        "backlog_max_batches": d.backlog_max,
        "bytes_on_air": d.link.bytes_up,
        "truth": getattr(d.model, "truth", {}),
        "crashed": d.crashed,
    }


def part(fleet, gone, restarts, started_wall, ended_wall, erased):
    """The part of a Fleet (simulator/fleet.py) whose devices are done: `gone` {device: [seq]}
    the batches the ingest recorded as lost at the broker, as the ingest numbers them (their
    readings are counted here, where each batch's size is known); `erased` what erased() says
    of the devices whose flash was erased. JSON in, JSON out: a part read back from the
    database is the same as one built in memory."""
    counts, stores = erased
    devices = []
    for d in fleet.devices:
        p = device_part(d)
        by_store = {}
        for seq in gone.get(d.device_id, ()):
            by_store.setdefault(seq >> SHIFT, []).append(seq & MASK)
        store_of = stores.get(d.device_id) or {0: d.first_store}
        p["lost_at_broker"] = sum(d.readings_in(store_of.get(n), seqs)
                                  for n, seqs in by_store.items())
        p["erased"], p["events_erased"] = counts.get(d.device_id, (0, 0))
        devices.append(p)
    return json.loads(json.dumps({
        "first": fleet.first, "devices_total": fleet.devices_total, "seed": fleet.seed,
        "duration_ms": fleet.duration_ms, "start_unix_ms": fleet.clock.start_unix_ms,
        "restarts": restarts, "started_wall": started_wall, "ended_wall": ended_wall,
        "history": fleet.history, "devices": devices}))


def erased(db_path, devices):
    """({device id: (readings, events)}, {device id: {store number: store id}}): what the
    devices' erased logs held unacknowledged and the ingest never stored (what of it the ingest
    knew of is in its `lost` as erased), and the numbers the ingest gave their batch logs."""
    out, stores = {}, {}
    todo = [d for d in devices if d.erases]
    if not todo:
        return out, stores
    db = open_store(db_path, create=False)
    try:
        for d in todo:
            number = {(kind, store): n for kind, store, n in db.execute(
                "SELECT kind, store, number FROM stores WHERE device = ?", (d.device_id,))}
            stores[d.device_id] = {n: store for (kind, store), n in number.items()
                                   if kind == "batch"}
            readings, events = d.erased_rows, 0
            for kind, store, held in d.erased_held:
                if not held:
                    continue
                got = set()
                if (kind, store) in number:
                    base = number[kind, store] << SHIFT
                    span = (d.device_id, base, base + max(held))
                    got = {s - base for (s,) in db.execute(
                        "SELECT seq FROM %s WHERE device = ? AND seq BETWEEN ? AND ?"
                        % TABLE[kind], span)}
                missing = [s for s in held if s not in got]
                if kind == "batch":
                    readings += sum(held[s] for s in missing)
                else:
                    events += len(missing)
            out[d.device_id] = (readings, events)
    finally:
        db.close()
    return out, stores


def store(db_path, run, body):
    db = open_store(db_path)
    try:
        db.execute(STORE_SQL, (run, body["first"], len(body["devices"]), json.dumps(body)))
    finally:
        db.close()


def load(db_path, run=None):
    """(run, [part]) of one run, in device order, covering its whole fleet; PartsError says
    what is missing (a shard that has not stored its part) or which runs there are to choose
    from."""
    name = hide_password(str(db_path))
    rows = _rows(db_path)
    runs = sorted({r[0] for r in rows})
    if run is None:
        differing = _differing(runs[0], runs) if runs else None
        if differing is not None and len({r.rpartition(FLEET)[0] for r in runs}) == 1:
            raise PartsError("%s: %s" % (name, differing))
        if not runs:  # --run cannot help
            raise PartsError("%s holds no simulation run: a `tether simulate` (each shard) "
                             "stores its part when it ends; an interrupted one, or a `tether "
                             "ingest`, stores none" % name)
        if len(runs) != 1:
            raise PartsError("%s holds the runs %s: choose one with --run" % (
                name, "; ".join(repr(r) for r in runs)))
        run = runs[0]
    elif run not in runs:
        raise PartsError("%s holds no run %r (it holds %s)" % (
            name, run, "; ".join(repr(r) for r in runs) or "none"))
    parts = [json.loads(body) for r, _, _, body in rows if r == run]
    total = parts[0]["devices_total"]
    have = []
    at = 0
    for p in parts:
        if p["first"] != at:
            break
        at += len(p["devices"])
        have.append(p)
    if at != total or len(have) != len(parts):
        differing = _differing(run, runs)
        if differing is not None:
            raise PartsError("%s: %s" % (name, differing))
        spans = sorted((p["first"], p["first"] + len(p["devices"])) for p in parts)
        covered = ", ".join("%d-%d" % (a + 1, b) for a, b in spans)
        missing, at = [], 0
        for a, b in spans + [(total, total)]:
            if a > at:
                missing.append("%d-%d" % (at + 1, a))
            at = max(at, b)
        if not missing:
            raise PartsError("%s: run %r has parts for devices %s of %d, which overlap" % (
                name, run, covered, total))
        raise PartsError("%s: run %r has parts for devices %s of %d, none for %s: a shard has "
                         "not stored its part yet (or failed)" % (
                             name, run, covered, total, ", ".join(missing)))
    return run, parts


def merged_history(parts):
    """The fleet's backlog history: each part samples at the same steps of device time
    (simulator/clock.py, windows), so entry k of every part is of one instant."""
    out = []
    for entries in zip(*[p["history"] for p in parts]):
        out.append((max(e[0] for e in entries), sum(e[1] for e in entries),
                    sum(e[2] for e in entries)))
    return out
