# The device's side of end-to-end repair (docs/uplink.md, "Repair"), through the whole agent
# (agent/runtime.py) with a client that never connects: the `resend` command's reply and its
# checks, and the `seq` key of health. The log's own retention and classification are in
# test_log.py, the uplink's repair queue in test_uplink.py. Both interpreters.
MICROPYTHON_HEAP = "168k"  # the whole agent from .mpy with the 64-bit port's 2x objects; 128k
# held it until the command ids memory and the too-large path joined (fragmentation at 128k);
# 144k until December's buffer code (write errors, a full disk): it then fails at 136k and
# failed once at 144k in a fresh clone's run

import asyncio

from agent import cbor, cbor_decode
from agent.clock import FakeClock
from agent.runtime import Agent
from agent.store import RamStore
from hal.sim.platform import SimPlatform

PROFILE = {
    "v": 1, "device": {"id": "dev-r"}, "platform": "sim", "buses": [],
    "sensors": [{"calibration": {"raw_empty": 410, "raw_full": 3720}, "driver": "level_probe",
                 "filters": {}, "interval_ms": 1000, "name": "ink_c", "pin": 34,
                 "quantity": "level", "resolution": [1, -1], "thresholds": [], "unit": "%"}],
    "batch": {"max_age_ms": 3600000, "max_bytes": 256, "max_readings": 4},
    "buffer": {"flush_ms": 3600000, "max_bytes": 4096, "path": "buffer", "ram_readings": 4,
               "storage": "ram"},
    "uplink": {"backoff_max_ms": 300000, "backoff_min_ms": 1000, "client_id": "dev-r",
               "deflate": False, "encoding": "compact", "health_ms": 300000,
               "host": "127.0.0.1", "port": 1883, "keepalive_ms": 60000, "prefix": "tether/v1",
               "ack_timeout_ms": 30000, "tls": False, "window": 4},
}


class NoClient:
    def __init__(self, *args, **kw):
        raise OSError("not in these tests")


def agent():
    a = Agent(PROFILE, SimPlatform(PROFILE), FakeClock(), NoClient, store=RamStore(),
              events_store=RamStore())
    a.open()
    return a


def form(a, n):
    """n more batches of four readings in the buffer's log."""
    for _ in range(n):
        for _ in range(4):
            a.buffer.append(a.clock.monotonic(), 0, 1)
            a.clock.advance(1000)


def send_and_ack(log, upto):
    """What the uplink does when the broker acks every batch up to seq upto."""
    log.rewind()
    while log.acked < upto:
        seq = log.next_batch()[0]
        assert log.ack(seq)


def command(a, fields):
    reply, then = asyncio.run(a.commands.handle(cbor.dumps(fields)))
    assert then is None
    return cbor_decode.loads(reply)


def test_resend_replies_what_is_held_gone_dropped_and_unknown_and_queues_the_held():
    a = agent()
    log = a.buffer.log
    form(a, 6)
    send_and_ack(log, 5)
    # Unsent batches until the log is full twice over: the acked ones go first, then the
    # oldest unsent ones, dropped and counted.
    while log.dropped == 0:
        form(a, 1)
    form(a, 3)
    oldest, newest = log.oldest(), a.buffer.seq - 1
    assert 6 < oldest < newest
    r = command(a, {"id": "r1", "cmd": "resend", "kind": "batch", "ranges": [[0, newest + 5]]})
    assert r == {"reply": "r1", "ok": True, "result": {
        "kind": "batch", "queued": newest - oldest + 1, "gone": [[0, 5]],
        "dropped": [[6, oldest - 1]], "unknown": [[newest + 1, newest + 5]],
        "store": log.store_id}}, (r, oldest, newest)
    assert a.uplink.repairs == [[0, oldest, newest]]
    # Held batches come back exactly as they were first handed out.
    log.rewind()
    first = log.next_batch()
    assert first[0] == oldest and log.held(oldest) == first[1]


def test_a_resend_for_another_store_is_refused_and_queues_nothing():
    a = agent()
    form(a, 3)
    mine = a.buffer.log.store_id
    r = command(a, {"id": 2, "cmd": "resend", "kind": "batch", "ranges": [[0, 2]],
                    "store": mine ^ 1})
    assert r["ok"] is False and r["error"] == "store: this batch log is store %d, not %d" % (
        mine, mine ^ 1), r
    assert a.uplink.repairs == []
    r = command(a, {"id": 3, "cmd": "resend", "kind": "batch", "ranges": [[0, 2]],
                    "store": mine})
    assert r["ok"] is True and r["result"]["queued"] == 3, r


def test_resend_of_events_reads_the_event_log():
    a = agent()
    a.events.emit(1000, False, "fault", "ink_c", "nack")
    a.events.emit(2000, False, "recovered", "ink_c", "ok")
    r = command(a, {"id": 7, "cmd": "resend", "kind": "event", "ranges": [[1, 1], [2, 3]]})
    assert r["result"] == {"kind": "event", "queued": 1, "gone": [], "dropped": [],
                           "unknown": [[2, 3]], "store": a.events.log.store_id}
    assert a.events.log.store_id != a.buffer.log.store_id  # each log its own
    assert a.uplink.repairs == [[1, 1, 1]]


def test_bad_resend_arguments_get_a_clear_error_reply_and_queue_nothing():
    a = agent()
    form(a, 2)
    bad = [
        ({"kind": "batches", "ranges": [[0, 1]]}, "'kind' must be \"batch\" or \"event\""),
        ({"kind": "batch"}, "missing argument 'ranges'"),
        ({"kind": "batch", "ranges": 5}, "argument 'ranges' must be a list"),
        ({"kind": "batch", "ranges": []}, "bounded: 'ranges' must hold 1 to 16 ranges, got 0"),
        ({"kind": "batch", "ranges": [[i, i] for i in range(17)]},
         "bounded: 'ranges' must hold 1 to 16 ranges, got 17"),
        ({"kind": "batch", "ranges": [[0, 1000], [2000, 2023]]},
         "bounded: at most 1024 sequence numbers a command, got 1025"),
        ({"kind": "batch", "ranges": [[0, 1], [3, 2]]},
         "range 1 must be [from, to] with 0 <= from <= to < 2**32"),
        ({"kind": "batch", "ranges": [[0, 1 << 70]]}, "range 0 must be"),  # never printed
        ({"kind": "b" * 300, "ranges": [[0, 1]]}, "got '" + "b" * 37 + "'..."),
        ({"kind": "batch", "ranges": [[-1, 2]]}, "with 0 <= from <= to"),
        ({"kind": "batch", "ranges": [[1]]}, "with 0 <= from <= to"),
        ({"kind": "batch", "ranges": [["a", 2]]}, "with 0 <= from <= to"),
        ({"kind": "batch", "ranges": [[True, 2]]}, "with 0 <= from <= to"),
        ({"kind": "batch", "ranges": [[0, 1 << 40]]}, "with 0 <= from <= to"),
        ({"kind": "batch", "ranges": [[0, 1]], "now": True}, "unknown argument 'now'"),
    ]
    for i, (args, error) in enumerate(bad):
        fields = {"id": i, "cmd": "resend"}
        fields.update(args)
        r = command(a, fields)
        assert r["reply"] == i and r["ok"] is False and error in r["error"], (args, r)
    assert a.uplink.repairs == []
    # Sixteen ranges of 1024 sequence numbers in all are within the bounds.
    ranges = [[i * 64, i * 64 + 63] for i in range(16)]
    r = command(a, {"id": "ok", "cmd": "resend", "kind": "batch", "ranges": ranges})
    assert r["ok"] is True and r["result"]["queued"] == 2, r


def test_overlapping_ranges_are_queued_once():
    a = agent()
    form(a, 6)
    send_and_ack(a.buffer.log, 5)
    r = command(a, {"id": "o", "cmd": "resend", "kind": "batch",
                    "ranges": [[2, 3], [0, 4], [1, 1], [5, 5]]})
    assert r["result"]["queued"] == 6 and a.uplink.repairs == [[0, 0, 5]], r
    # counted once joined: 1,001 numbers asked twice are within the bound of 1,024 (the same
    # range twice was refused as 2,002)
    r = command(a, {"id": "twice", "cmd": "resend", "kind": "batch",
                    "ranges": [[0, 1000], [0, 1000]]})
    assert r["ok"] is True and r["result"]["queued"] == 6, r


def test_resend_when_the_repair_queue_is_full_says_so():
    a = agent()
    form(a, 2)
    send_and_ack(a.buffer.log, 1)
    for i in range(32):
        assert a.uplink.repair("event", [[i, i]])
    r = command(a, {"id": 1, "cmd": "resend", "kind": "batch", "ranges": [[0, 1]]})
    assert r["ok"] is False and r["error"].startswith("busy:"), r


def test_health_carries_the_oldest_held_and_newest_published_seq_of_each_log():
    a = agent()
    h = cbor_decode.loads(a.health(a.uplink))
    b, e = a.buffer.log.store_id, a.events.log.store_id  # which log the numbers are of
    assert h["seq"] == {"batch": [None, -1, b], "event": [None, -1, e]}
    form(a, 3)
    a.events.emit(1000, False, "fault", "ink_c", "nack")
    send_and_ack(a.buffer.log, 1)  # 0 and 1 acked, 2 not published yet
    h = cbor_decode.loads(a.health(a.uplink))
    assert h["seq"] == {"batch": [0, 1, b], "event": [0, -1, e]}
    a.uplink.sent[0] = 2  # what the uplink published this boot, acked or not
    a.uplink.sent[1] = 0
    h = cbor_decode.loads(a.health(a.uplink))
    assert h["seq"] == {"batch": [0, 2, b], "event": [0, 0, e]}
    a.buffer.log.store_id = 0  # a log from before store ids: as before them
    assert cbor_decode.loads(a.health(a.uplink))["seq"]["batch"] == [0, 2]


def test_each_health_report_carries_a_boards_keys_beside_the_agents_at_its_own_moment():
    a = agent()
    a.more_health = lambda: {"crash_boots": a.uplink.connects, "safe_mode": False}
    first = cbor_decode.loads(a.health(a.uplink))
    a.uplink.connects = 3
    a.uplink.last_error = "OSError: 113"
    form(a, 1)
    second = cbor_decode.loads(a.health(a.uplink))
    assert sorted(first) == sorted(second) and "crash_boots" in first and "seq" in first
    assert (first["connects"], first["last_error"], first["crash_boots"]) == (0, None, 0)
    assert (second["connects"], second["last_error"], second["crash_boots"]) == (
        3, "OSError: 113", 3)
    assert first["batches_queued"] == 0 and second["batches_queued"] == 1
    assert second["sensors"] == {"ink_c": {"readings": 0, "suppressed": 0, "errors": {}}}


def test_resend_answers_ranges_asked_out_of_order_or_overlapping_in_order_and_joined():
    a = agent()
    form(a, 4)  # 0..3 held, none acked
    r = command(a, {"id": 1, "cmd": "resend", "kind": "batch",
                    "ranges": [[6, 7], [2, 3], [0, 2], [4, 5]]})
    assert r["result"] == {"kind": "batch", "queued": 4, "gone": [], "dropped": [],
                           "unknown": [[4, 7]], "store": a.buffer.log.store_id}, r
    assert a.uplink.repairs == [[0, 0, 3]]
