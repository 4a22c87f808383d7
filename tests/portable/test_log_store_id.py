# agent/log.py's store id: drawn when a log is made, kept by every reopen, carried by the
# batches and events of that log (docs/wire-format.md, "The store id"), so that the ingest can
# tell a log made afresh, which numbers from 0 again, from the one before it.
# Runs under CPython (pytest) and under the real MicroPython (tests/portable harness).
MICROPYTHON_HEAP = "104k"  # the buffer, the events and the envelope's decoder, as test_log.py
import bufkit as K
from agent import batch, cbor_decode
from agent.events import Events
from agent.store import RamStore
from logkit import add, both_stores, opened


def test_a_new_log_draws_a_store_id_that_every_reopen_keeps():
    for store, again in both_stores():
        log = opened(store)
        first = log.store_id
        assert 1 << 16 <= first < 1 << 32, first
        add(log, 0)
        log.close()
        for _ in range(3):
            log = opened(again())
            assert log.store_id == first
            log.close()


def test_logs_made_apart_draw_ids_of_their_own():
    ids = [opened(RamStore()).store_id for _ in range(8)]
    assert len(set(ids)) == 8, ids


def test_a_log_from_before_store_ids_keeps_store_0_and_version_1_envelopes():
    for store, again in both_stores():
        buf = K.make(store)
        buf.open()
        K.append(buf, 0)
        buf.cut()
        buf.log.close()
        store = again()
        store.remove("id")  # as a log made by firmware before store ids left it
        buf = K.make(store)
        buf.open()
        assert buf.log.store_id == 0
        K.append(buf, 1)
        buf.cut()
        sent = []
        while True:
            b = buf.log.next_batch()
            if b is None:
                break
            sent.append(cbor_decode.loads(bytes(b[1])))
        assert [(f[0], len(f)) for f in sent] == [(2, 9), (1, 8)]
        assert again().read_all("id") is None  # not written for it: it stays store 0


def test_a_log_from_before_store_ids_that_lost_its_state_file_keeps_store_0():
    for store, again in both_stores():
        log = opened(store)
        add(log, 0)
        log.close()
        store = again()
        store.remove("id")
        store.remove("state")  # its segments remain: their numbers are store 0's
        log = opened(store)
        assert (log.store_id, log.next_seq()) == (0, 1)


def test_a_corrupt_id_file_draws_a_new_id_whose_store_starts_at_the_next_number():
    for store, again in both_stores():
        log = opened(store)
        old = log.store_id
        assert (log.store_first, log.oldest_of_store()) == (0, None)
        for seq in range(3):
            add(log, seq)
        assert log.oldest_of_store() == 0
        log.dropped = 50  # readings a full log dropped: the old store's count
        log.save_state()
        log.close()
        store = again()
        data = bytearray(store.read_all("id"))
        data[0] ^= 0xFF
        store.replace("id", bytes(data))
        log = opened(store)
        assert log.store_id not in (0, old) and log.store_first == 3
        assert log.dropped == 0 and opened(again()).dropped == 0  # the new store counts its own (the ingest adds the old ones)
        # batches 0..2 are the old id's: health tells the ingest where this store starts, and
        # that none of this store's is published yet (it said 2, under the new id: the ingest
        # asked for 0..2 of the new store, which never came)
        assert (log.oldest(), log.oldest_of_store()) == (0, None)
        log.acked = 2
        assert log.span(2) == [None, -1, log.store_id]
        add(log, 3)
        assert log.span(3) == [3, 3, log.store_id]
        assert log.oldest_of_store() == 3
        log.close()
        log = opened(again())
        assert (log.store_id, log.store_first) != (old, 0) and log.store_first == 3


def _cut(store, name, size):
    data = store.read_all(name)
    store.replace(name, bytes(data[:size]))


def test_a_log_cut_short_gives_the_batches_to_come_a_new_store_never_a_number_sent():
    # Batches 0..2 sent and acknowledged (not yet saved as acked), then the segment cut inside
    # a record: the next batch took number 1 again, and the ingest, which had 1, refused it
    # with its readings as "arrived again with other bytes".
    for cut_at in (2, 20, 60, 100):   # in batch 0 (all of the log cut away), 1 or 2
        for store, again in both_stores():
            log = opened(store)
            old = log.store_id
            for seq in range(3):
                add(log, seq)
            while True:
                b = log.next_batch()
                if b is None:
                    break
                log.ack(b[0])
            store = again()            # killed: the acks since the state was saved go too
            _cut(store, [n for n in store.names() if n.endswith(".seg")][-1], cut_at)
            log = opened(store)
            assert log.discarded > 0
            nxt = log.next_seq()
            assert log.store_id not in (0, old) and log.store_first == nxt, (cut_at, nxt)
            new = log.store_id
            add(log, nxt)
            log.close()
            log = opened(again())      # the next boot keeps it: no torn end any more
            assert (log.store_id, log.store_first) == (new, nxt)


def test_a_log_that_ends_on_a_whole_record_keeps_its_store():
    for store, again in both_stores():
        log = opened(store)
        old = log.store_id
        for seq in range(3):
            add(log, seq)
        log.close()
        log = opened(again())
        assert (log.store_id, log.discarded, log.next_seq()) == (old, 0, 3)


def test_batches_and_events_carry_their_logs_store_id():
    buf = K.make(RamStore())
    buf.open()
    for i in range(3):
        K.append(buf, i)
    buf.cut()
    env = K.Envelope(cbor_decode.loads(bytes(buf.log.next_batch()[1])))
    assert env.store == buf.log.store_id and env.seq == 0
    events = Events(K.RecordingLog(RamStore(), 8192, 2048, batch.seq_of), "dev-1")
    events.open()
    events.emit(5, True, "ink_low", "ink_c", "raised", 14.0)
    fields = cbor_decode.loads(bytes(events.next_event()[1]))
    assert fields[0] == batch.VERSION_STORE and len(fields) == 12
    assert fields[11] == events.log.store_id != buf.log.store_id


class _Unreadable(RamStore):
    def read_all(self, name):
        return None if name == "id" else RamStore.read_all(self, name)


def test_an_id_file_that_cannot_be_read_stops_the_open_rather_than_change_the_id():
    store = _Unreadable()
    opened(store).close()
    try:
        opened(store)
    except OSError as exc:
        assert "id: cannot be read" in str(exc), exc
    else:
        raise AssertionError("opened without its id")
