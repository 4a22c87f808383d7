"""The cloud side of Tether: subscribes to a fleet's topics, decodes, de-duplicates, asks devices
to re-send what is missing, and stores into a database: a SQLite file by default (docs/ingest.md).

    url.py         the broker URL and database URL parsers
    topics.py      the topics subscribed to, and a topic's kind and device
    decode.py      payloads into what is stored (pure)
    subscriber.py  Ingest: the paho client's life cycle and the writer thread
    handlers.py    what each message stores, on a store
    repair.py      resend requests for what is missing
    store/         open_store(url): one module per backend (sqlite.py, postgres.py)
    queries.py     the read side: summary, totals, series, insights, sensor_errors, lost_seqs,
                   repairing, known_newest
"""
from ingest.queries import (insights, known_newest, lost_seqs, repairing, sensor_errors,
                            series, summary, totals)
from ingest.store import connect_db, open_store
from ingest.subscriber import Ingest
from ingest.url import parse_broker

__all__ = ["Ingest", "connect_db", "insights", "known_newest", "lost_seqs", "open_store",
           "parse_broker", "repairing", "series", "summary", "totals"]
