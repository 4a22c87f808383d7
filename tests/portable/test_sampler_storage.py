# The sampler in front of the real buffer and event log: clock sync reaches the batches, events
# are stored durably. Both interpreters; the checks decode what was stored, and decoding is the
# consumer's job, not the board's (the board's side runs at 64k in test_board_heap.py), so this
# module runs at 128k.
MICROPYTHON_HEAP = "128k"

from agent import batch
from agent.clock import FakeClock
from agent.sampler import Sampler
from samplerkit import SCHEMA, Fake, channel, run


def test_clock_sync_is_passed_to_the_buffer_and_cuts_its_batch():
    from agent import cbor_decode, compact_decode
    from agent.buffer import Buffer
    from agent.log import Log
    from agent.store import RamStore
    clock = FakeClock()
    store = RamStore()
    log = Log(store, 1 << 20, 1 << 16, batch.seq_of)
    buf = Buffer(log, batch.Encoder("dev", SCHEMA, "compact", False, 1024, 64), 64, 3600000,
                 64, 3600000)
    buf.open()
    s = Sampler(clock, buf, None, [channel(0, Fake(lambda n: {"x": 1.5}))])
    run(s, clock, 50000)
    clock.sync(1763856000000)
    run(s, clock, 100000)
    buf.cut()
    first = buf.next_batch()
    second = buf.next_batch()
    assert batch.seq_of(first[1]) == 0 and batch.seq_of(second[1]) == 1
    e1 = cbor_decode.loads(first[1])
    e2 = cbor_decode.loads(second[1])
    assert e1[6] & batch.FLAG_SYNCED == 0 and len(compact_decode.decode(e1[-1], SCHEMA)) == 5
    rows2 = compact_decode.decode(e2[-1], SCHEMA)
    assert e2[6] & batch.FLAG_SYNCED and len(rows2) == 5 and rows2[0][0] == 1763856000000


def test_events_are_stored_durably_with_their_own_sequence_numbers():
    from agent import events_decode as ev_mod
    from agent.events import Events
    from agent.log import Log
    from agent.store import RamStore
    store = RamStore()
    log = Log(store, 65536, 8192, batch.seq_of)
    events = Events(log, "dev")
    events.open()
    events.emit(1000, False, "ink_low", "ink_c", "raised", 14.9)
    events.emit(2000, False, "sensor_error", "power", "raised", None,
                "INA219 at i2c0:0x40 did not acknowledge")
    again = Events(Log(store, 65536, 8192, batch.seq_of), "dev")
    again.open()
    assert again.seq == 2 and again.log.boot == 2
    seq, data = again.next_event()
    e = ev_mod.decode(data)
    assert (seq, e.device, e.seq, e.t, e.event, e.sensor, e.state, e.value, e.detail) == (
        0, "dev", 0, 1000, "ink_low", "ink_c", "raised", 14.9, None)
    e = ev_mod.decode(again.next_event()[1])
    assert (e.seq, e.detail, e.boot) == (1, "INA219 at i2c0:0x40 did not acknowledge", 1)


def test_a_value_past_what_a_batch_holds_at_its_resolution_is_a_counted_fault_not_a_stop():
    # 0.00000001 V resolution: 23 V is 2.3e9 steps, past the buffer's +-2**30; 5 V fits.
    from agent.buffer import Buffer
    from agent.log import Log
    from agent.schema import Schema
    from agent.store import RamStore
    from agent.sampler import Channel
    schema = Schema([("voltage", "V", 1, -8)])
    clock = FakeClock()
    buf = Buffer(Log(RamStore(), 1 << 20, 1 << 16, batch.seq_of),
                 batch.Encoder("dev", schema, "compact", False, 1024, 64), 64, 3600000, 64, 3600000)
    buf.open()
    seq = [5.0, 23.0, 23.0, 5.5]
    c = Channel(0, "voltage", Fake(lambda n: {"x": seq[n]}), "x", 10000,
                lambda v: schema.scale(0, v), schema, {}, [])
    run(Sampler(clock, buf, None, [c]), clock, 40000)
    assert c.errors == {"range": 2} and c.readings == 2
    buf.cut()
    from agent import cbor_decode, compact_decode
    rows = compact_decode.decode(cbor_decode.loads(buf.next_batch()[1])[-1], schema)
    assert [v for _, _, v in rows] == [500000000, 550000000]
