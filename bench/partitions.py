"""A device that names a day of its own in every batch (a clock never synced, broken or hostile)
against the PostgreSQL ingest's store (ingest/store/postgres.py, docs/ingest.md "Partitions"):
how long its batches take to store, how many partitions they make, and whether the views can
still be read for another device afterwards.

    python3 bench/partitions.py              # 3,000 days (~1 min)
    python3 bench/partitions.py --days 8000  # the case that broke the views (~4 min)

Each batch is one reading on a day of its own, the days spread over the years, stored through
PostgresStore in groups of 500 (as the ingest commits a group of messages). Then a device with
two readings today is read back through `readings` and `channel_batches`.

Baseline, in the same run on its own database: the same batches with every day inside the days
the store partitions (its clock set to each batch's own day), which is what the ingest did before
layout version 5: a partition for every day named. Target: no partition for the days outside the
window, and the views read (the baseline's reads fail past some thousands of partitions with
"out of shared memory"). Needs Debian's `postgresql` (simulator/lab/postgres.py starts one).
"""
import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = 86400000
GROUP = 500


def run(url, days, follow):
    """(store seconds, partitions made, [(query, result or error, seconds)])."""
    import psycopg
    from ingest.store import postgres
    store = postgres.connect(url)
    now = int(time.time() * 1000)
    try:
        t0 = time.perf_counter()
        for start in range(0, days, GROUP):
            store.begin()
            for d in range(start, min(days, start + GROUP)):
                t = (d - days // 2) * 50 * DAY // 7 + 12345  # a week or so apart, around 1970
                if follow:  # the baseline: the store's now is the batch's own day
                    store.clock = lambda t=t: t / 1000
                store.insert_readings("odd-clock", d, [(t, "x", 1.0)])
            store.commit()
        stored = time.perf_counter() - t0
        store.clock = time.time
        store.begin()
        store.insert_readings("good", 1, [(now, "power", 2.0), (now + 100, "power", 3.0)])
        store.commit()
        made = store.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                             "'readings_packed'::regclass").fetchone()[0]
        reads = []
        for q in ("SELECT count(*) FROM readings WHERE device = 'good' AND channel = 'power'",
                  "SELECT count(*) FROM channel_batches WHERE device = 'good'"):
            t0 = time.perf_counter()
            try:
                store.begin()
                got = store.execute(q).fetchone()[0]
                store.commit()
            except psycopg.Error as exc:
                store.rollback()
                got = "fails: %s" % str(exc).splitlines()[0]
            reads.append((q.split(" FROM ")[1].split()[0], got, time.perf_counter() - t0))
        return stored, made, reads
    finally:
        store.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=3000, help="batches, each on a day of its own")
    args = ap.parse_args(argv)
    import psycopg
    from simulator.lab.postgres import Postgres
    pg = Postgres().start()
    try:
        results = {}
        for name, follow in (("now (window of days)", False), ("baseline: every day", True)):
            db = "b_%d" % follow
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute('CREATE DATABASE "%s"' % db)
            results[name] = run(pg.url.rsplit("/", 1)[0] + "/" + db, args.days, follow)
    finally:
        pg.stop()
    print("%d batches of one reading, each on a day of its own, then two readings of another "
          "device read back through the views:" % args.days)
    print("  %-22s %10s %11s  %s" % ("store", "stored s", "partitions", "reads"))
    ok = True
    for name, (stored, made, reads) in results.items():
        text = "; ".join("%s %s (%.2f s)" % (view, got, s) for view, got, s in reads)
        print("  %-22s %10.1f %11d  %s" % (name, stored, made, text))
    stored, made, reads = results["now (window of days)"]
    if made > 367 or any(not isinstance(got, int) for _, got, _ in reads):
        ok = False
    print("target: at most 367 partitions (a year back to tomorrow) and the views read: %s"
          % ("meets target" if ok else "MISSES TARGET"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
