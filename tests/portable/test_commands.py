# The command parser answers whatever arrives with a reply, and its error messages stay short:
# never the digits of a bignum (CPython refuses to print them), never a long name whole.
# Runs under CPython and under MicroPython.
import asyncio

from agent import cbor, cbor_decode
from agent.commands import CommandError, Commands


def reply_to(fields):
    def check_interval(cmd):
        n = cmd.arg("n", int, 1, 10)
        cmd.done()
        return n
    commands = Commands({"ping": lambda cmd: cmd.done(), "set": check_interval})
    out, _ = asyncio.run(commands.handle(cbor.dumps(fields)))
    return cbor_decode.loads(out)


def test_a_command_name_that_is_not_text_is_shown_by_its_type():
    r = reply_to({"id": 1, "cmd": [1 << 70]})
    assert r == {"reply": 1, "ok": False, "error": "unknown command <list> (known: ping, set)"}


def test_a_bignum_argument_out_of_range_is_not_printed():
    r = reply_to({"id": "a", "cmd": "set", "n": 10 ** 5000})
    assert r["error"] == "argument 'n' must be from 1 to 10, got <int of more than 64 bits>"
    assert reply_to({"id": "a", "cmd": "set", "n": 11})["error"].endswith("got 11")


def test_an_unknown_argument_named_by_a_bignum_or_a_long_text_is_shown_short():
    assert reply_to({"id": 2, "cmd": "ping", 10 ** 5000: 1})["error"] == (
        "unknown argument <int of more than 64 bits>")
    error = reply_to({"id": 2, "cmd": "ping", "x" * 1000: 1})["error"]
    assert error == "unknown argument '%s'..." % ("x" * 37)
    assert reply_to({"id": 3, "cmd": "set", "n": 4}) == {"reply": 3, "ok": True, "result": 4}
