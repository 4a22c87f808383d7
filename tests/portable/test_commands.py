# agent/commands.py: each command runs at most once, a retained one never runs, one too large
# for the client is answered with an error that names its id when its first bytes hold it.
# Both interpreters; the agent against a real broker is in tests/test_agent_uplink.py.
MICROPYTHON_HEAP = "96k"  # 64k until the tests of too many items and of escaped text: the
# module's own code then left too little for the bignum of 5,000 digits a test encodes

import asyncio

from agent import cbor, cbor_decode
from agent.commands import RECENT, Commands, peek_id


def commands():
    runs = []

    def ping(cmd):
        cmd.done()
        runs.append(1)
        return "pong"
    return Commands({"ping": ping}), runs


def in_order(*pairs):
    """A CBOR map with its pairs in this order (cbor.dumps sorts the keys)."""
    out = bytes([0xA0 + len(pairs)])
    for k, v in pairs:
        out += cbor.dumps(k) + cbor.dumps(v)
    return out


def handle(c, payload, retained=False, size=None, limit=None):
    reply, _ = asyncio.run(c.handle(payload, retained, size, limit))
    return None if reply is None else cbor_decode.loads(reply)


def test_a_repeated_id_is_neither_run_nor_answered_again():
    c, runs = commands()
    ping = cbor.dumps({"id": 7, "cmd": "ping"})
    assert handle(c, ping) == {"reply": 7, "ok": True, "result": "pong"}
    assert handle(c, ping) is None
    assert handle(c, cbor.dumps({"id": "7", "cmd": "ping"}))["ok"]  # text "7" is another id
    assert runs == [1, 1] and c.skipped == 1


def test_an_id_that_got_an_error_is_not_answered_twice_either():
    c, runs = commands()
    bad = cbor.dumps({"id": 1, "cmd": "ping", "extra": 1})
    assert "unknown argument" in handle(c, bad)["error"]
    assert handle(c, bad) is None
    assert runs == []


def test_only_the_last_ids_are_remembered():
    c, runs = commands()
    for i in range(RECENT + 1):
        assert handle(c, cbor.dumps({"id": i, "cmd": "ping"}))["ok"]
    assert handle(c, cbor.dumps({"id": RECENT, "cmd": "ping"})) is None
    assert handle(c, cbor.dumps({"id": 0, "cmd": "ping"}))["ok"]  # forgotten: runs again
    assert len(runs) == RECENT + 2 and len(c.recent) == RECENT


def test_a_retained_command_is_never_run_and_answered_once():
    c, runs = commands()
    ping = cbor.dumps({"id": "r1", "cmd": "ping"})
    r = handle(c, ping, retained=True)
    assert r["reply"] == "r1" and not r["ok"] and "retained command not run" in r["error"]
    assert handle(c, ping, retained=True) is None  # the broker replays it on every connect
    assert handle(c, ping) is None                 # and the id is spent
    assert handle(c, b"\xff garbage", retained=True) is None  # no id: nobody to answer
    assert handle(c, b"") is None  # what clears a retained message
    assert runs == []


def test_a_retained_copy_of_a_command_that_ran_live_does_not_run_again():
    # Published retained while the device was connected, it arrives live without the retain
    # flag (and runs); the broker replays it, retained, on the next connect.
    c, runs = commands()
    ping = cbor.dumps({"id": 5, "cmd": "ping"})
    assert handle(c, ping)["ok"]
    assert handle(c, ping, retained=True) is None
    assert runs == [1]


def test_a_command_too_large_is_answered_with_its_id_and_size():
    c, runs = commands()
    head = cbor.dumps({"id": "big-1", "cmd": "ping", "pad": b"x" * 100})[:64]
    r = handle(c, head, size=100043, limit=2018)
    assert r == {"reply": "big-1", "ok": False,
                 "error": "command of 100043 bytes is larger than the 2018 bytes this device takes"}
    assert handle(c, head, size=100043, limit=2018) is None  # the same id again
    assert handle(c, head, retained=True, size=100043, limit=2018) is None
    # an id behind a long value cannot be read from the first bytes: null
    late = in_order(("pad", b"x" * 100), ("id", 9), ("cmd", "ping"))[:64]
    assert handle(c, late, size=3000, limit=2018)["reply"] is None
    assert handle(c, late, retained=True, size=3000, limit=2018) is None
    assert runs == []


def test_a_command_nested_too_deep_is_answered_by_its_id_and_said_so():
    c, runs = commands()
    deep = in_order(("id", "r1"), ("cmd", "ping"), ("args", [[[[[1]]]]]))
    r = handle(c, deep)
    assert r["reply"] == "r1" and r["ok"] is False
    assert r["error"].startswith("nested too deep for a command (at most 4 levels): at byte ")
    assert handle(c, deep) is None                       # the same id: answered once
    # Bytes that are not CBOR at all: no id to answer, as before.
    assert handle(c, b"\xff\xfe")["error"].startswith("not CBOR: ")
    # JSON, what a person types first: said so (it read "the input ends 2479623168012135446
    # bytes early")
    for text in (b'{"id":1,"cmd":"ping"}', b"[1]"):
        assert handle(c, text)["error"] == ("not CBOR: this is text (JSON?); a command is a "
                                            "CBOR map (docs/uplink.md, Commands)")
    assert runs == []


def test_a_command_of_too_many_items_is_answered_by_its_id_before_they_fill_the_heap():
    # 2 KB of CBOR holds 2,000 empty maps: past a board's heap, a MemoryError with no id
    c, runs = commands()
    # made as bytes: the lists themselves would not fit the test's heap on MicroPython
    for i, filler in enumerate((b"\x99\x07\xbc" + b"\xa0" * 1980, b"\x99\x01\x2c" + b"\x00" * 300,
                                b"\xb8\x82" + b"\x00\x00" * 130)):
        r = handle(c, b"\xa3" + b"".join(cbor.dumps(v) for v in ("id", i, "cmd", "ping", "x"))
                   + filler)
        assert r["ok"] is False and r["reply"] == i, r
        assert r["error"].startswith("too many items for a command: at byte "), r
        assert r["error"].endswith(": more than 256 items"), r
    # a resend of 16 ranges is well within (55 items)
    r = handle(c, cbor.dumps({"id": "ok", "cmd": "ping", "x": [[0, 1]] * 16}))
    assert r["error"] == "unknown argument 'x'"
    assert peek_id(b"\xa2\x61x\x99\x03\x84" + b"\xa0" * 900 + cbor.dumps("id") + b"\x05") is None
    # the chunks of an indefinite-length string are counted too: 2,000 empty ones, 2 KB
    r = handle(c, b"\xa3" + b"".join(cbor.dumps(v) for v in ("id", 7, "cmd", "ping", "x"))
               + b"\x7f" + b"\x60" * 1980 + b"\xff")
    assert r["reply"] == 7 and r["error"].endswith(": more than 256 items"), r
    assert runs == []


def test_a_self_described_command_runs():
    # d9 d9 f7, the tag some CBOR libraries put first by default: "a command is a CBOR map"
    c, runs = commands()
    assert handle(c, b"\xd9\xd9\xf7" + cbor.dumps({"id": 9, "cmd": "ping"})) == {
        "reply": 9, "ok": True, "result": "pong"}
    # refused, it is answered by its id as an untagged one is (it was null: the sender waited)
    tagged = b"\xd9\xd9\xf7" + in_order(("id", 10), ("cmd", "ping"), ("x", "y" * 60))
    r = handle(c, tagged[:40], size=5000, limit=2048)
    assert r["reply"] == 10 and r["ok"] is False, r


def test_of_several_unknown_arguments_the_same_one_is_named_on_a_board_as_on_a_host():
    # MicroPython's dicts keep no order: it named 'zz' where CPython named 'aa'
    c, runs = commands()
    r = handle(c, in_order(("id", 1), ("cmd", "ping"), ("zz", 1), ("k11", 2), ("aa", 3)))
    assert r["error"] == "unknown argument 'aa'"


def test_text_in_an_error_is_escaped_alike_on_a_board_and_a_host():
    # MicroPython's repr escapes every character past ASCII, CPython's none that prints
    r = reply_to({"id": 1, "cmd": "caf\u00e9"})
    assert r["error"].startswith("unknown command 'caf\\xe9' (known: "), r
    r = reply_to({"id": 1, "cmd": "\uff10\U0001f600 it's\n"})
    assert r["error"].startswith("unknown command \"\\uff10\\U0001f600 it's\\n\""), r


def test_peek_id_reads_the_id_from_the_first_bytes_only():
    assert peek_id(cbor.dumps({"id": 3, "cmd": "resend", "ranges": [[0, 1]] * 50})[:20]) == 3
    assert peek_id(in_order(("cmd", "resend"), ("kind", "batch"), ("id", "x"))[:40]) == "x"
    assert peek_id(cbor.dumps({"id": True, "cmd": "ping"})) is None
    assert peek_id(cbor.dumps({"id": [1], "cmd": "ping"})) is None
    assert peek_id(cbor.dumps([{"id": 1}])) is None
    assert peek_id(b"\xbf\x62id\x01\xff") == 1   # an indefinite-length map
    assert peek_id(b"\xbf\x63cmd\x01\xff") is None
    assert peek_id(cbor.dumps({"id": "a" * 100})[:30]) is None  # the id itself cut off
    assert peek_id(b"") is None and peek_id(b"\xff\xfe") is None


# -- error messages stay short: never the digits of a bignum (CPython refuses to print them),
# never a long name whole

def reply_to(fields):
    def check_interval(cmd):
        n = cmd.arg("n", int, 1, 10)
        cmd.done()
        return n
    commands = Commands({"ping": lambda cmd: cmd.done(), "set": check_interval})
    out, _ = asyncio.run(commands.handle(cbor.dumps(fields)))
    return cbor_decode.loads(out)


def test_a_command_name_that_is_not_text_is_shown_short():
    r = reply_to({"id": 1, "cmd": [1 << 70]})
    assert r == {"reply": 1, "ok": False,
                 "error": "unknown command [<int of more than 64 bits>] (known: ping, set)"}


def test_a_bignum_argument_out_of_range_is_not_printed():
    r = reply_to({"id": "a", "cmd": "set", "n": 10 ** 5000})
    assert r["error"] == "argument 'n' must be from 1 to 10, got <int of more than 64 bits>"
    assert reply_to({"id": "a", "cmd": "set", "n": 11})["error"].endswith("got 11")


def test_an_unknown_argument_named_by_a_bignum_or_a_long_text_is_shown_short():
    # a bignum key is not CBOR this decoder takes (agent/cbor_decode.py), said short
    error = reply_to({"id": 2, "cmd": "ping", 10 ** 5000: 1})["error"]
    assert error.startswith("not CBOR: at byte ") and error.endswith(": a map key past 64 bits")
    error = reply_to({"id": 2, "cmd": "ping", "x" * 1000: 1})["error"]
    assert error == "unknown argument '%s'..." % ("x" * 37)
    assert reply_to({"id": 3, "cmd": "set", "n": 4}) == {"reply": 3, "ok": True, "result": 4}


def test_an_id_too_long_to_remember_is_refused_and_not_remembered():
    c, runs = commands()
    for cid in ("x" * 65, 1 << 64):
        r = handle(c, cbor.dumps({"id": cid, "cmd": "ping"}))
        assert r["reply"] is None and "a command needs an id (text of at most 64" in r["error"]
    assert runs == [] and c.recent == []
    assert handle(c, cbor.dumps({"id": "x" * 64, "cmd": "ping"}))["ok"]
