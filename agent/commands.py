# Commands from the cloud, on {prefix}/{device}/down/cmd, answered on {prefix}/{device}/up/event.
#
# A command is a CBOR map {"id": text or integer, "cmd": name, ...its arguments}; the reply is a
# CBOR map {"reply": the id, "ok": true, "result": ...} or {"reply": the id (null when the
# command had none), "ok": false, "error": "what was wrong"} (docs/wire-format.md). Whatever
# arrives, the agent carries on: garbage, unknown commands and bad arguments get an error reply,
# never an exception.
#
# A command runs at most once. The ids of the last RECENT commands are remembered for as long as
# the agent runs (across reconnects): one that comes again is neither run nor answered again. A
# command the broker delivers as retained (replayed to every new subscription, so on every
# reconnect and long after it was sent) is never run: it is answered once with an error; one
# without an id is dropped unanswered, as is an empty message (what clears a retained one). A
# command larger than the MQTT client takes arrives as its first bytes only: it is answered with
# an error, its id read from those bytes if it is there (a map whose "id" comes before any long
# value), else null.
from agent import cbor

MAX_DEPTH = 4  # a command is a flat map: deeper nesting is refused before it is built
MAX_ITEMS = 256  # items in a command, in all (a resend of 16 ranges has 55)
RECENT = 16    # command ids remembered, to run each at most once
MAX_ID = 64    # characters of a text id
_BIG = 1 << 64



class CommandError(Exception):
    pass


class Command:
    """A command's arguments: `arg(name, kind, low, high)` reads and checks one of them; a
    handler calls done() after its last arg() and before it acts, so that a command with an
    unknown argument does nothing."""

    def __init__(self, fields):
        self.fields = fields
        self.used = ["id", "cmd"]
        self.checked = False

    def arg(self, name, kind, low=None, high=None):
        self.used.append(name)
        if name not in self.fields:
            raise CommandError("missing argument %r" % name)
        v = self.fields[name]
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise CommandError("argument %r must be %s" % (name, _kind_name(kind)))
        if (low is not None and v < low) or (high is not None and v > high):
            raise CommandError("argument %r must be from %s to %s, got %s"
                               % (name, low, high, shown(v)))
        return v

    def done(self):
        for name in self.fields:
            if name not in self.used:
                # the first in an order of their own: MicroPython's dicts keep none, and named
                # another than CPython's
                name = min((n for n in self.fields if n not in self.used), key=_order)
                raise CommandError("unknown argument %s" % shown(name))
        self.checked = True


def shown(v):
    """v in an error message (agent/shown.py, loaded at the first error: a board that gets
    only good commands never holds its bytecode)."""
    from agent.shown import shown as bounded
    return bounded(v)


def _order(key):
    return str(key), type(key).__name__


def _kind_name(kind):
    return {str: "text", int: "an integer", bool: "true or false", list: "a list",
            dict: "a map"}.get(kind, str(kind))


class Commands:
    """handlers: {name: fn(Command) -> result}; a handler may return (result, then), and then()
    is called once the reply is on its way (a reboot). writer: the cbor.Writer replies are
    encoded into (the agent shares its health report's, made at start at its size: grown here
    at the first command, on a board's fragmented heap, it failed)."""

    def __init__(self, handlers, writer=None):
        self.handlers = handlers
        self.received = 0
        self.rejected = 0
        self.skipped = 0    # repeated ids, retained commands without one, empty messages
        self.recent = []    # the last RECENT ids, oldest first
        self.w = writer or cbor.Writer()

    def _again(self, cid, retained):
        # True for a command to drop unanswered; remembers the id of any other.
        if cid in self.recent or (retained and cid is None):
            self.skipped += 1
            return True
        if cid is not None:
            if len(self.recent) >= RECENT:
                self.recent.pop(0)
            self.recent.append(cid)
        return False

    async def handle(self, payload, retained=False, size=None, limit=None):
        """(reply or None, then or None) for one command payload; the reply is a memoryview of
        its bytes, valid until the writer is used again (publish it at once). retained: the broker
        delivered it as a retained message; size: the command was larger than the MQTT client
        takes (`limit` bytes) and payload holds only its first bytes."""
        self.received += 1
        if not payload:  # clears a retained command: not one itself
            self.skipped += 1
            return None, None
        cid = None
        then = None
        try:
            from agent import cbor_decode
            if size is not None:
                cid = peek_id(payload)
                if self._again(cid, retained):
                    return None, None
                raise CommandError("command of %d bytes is larger than the %d bytes this device "
                                   "takes" % (size, limit))
            try:
                fields = cbor_decode.loads(payload, MAX_DEPTH, MAX_ITEMS)
            except cbor.CBORError as exc:
                fields = None
                # Still answered by its id where one comes before the fault (the sender waits
                # on it): a value nested too deep is well-formed CBOR, only not a command.
                cid = peek_id(payload)
                error = ("nested too deep for a command (at most %d levels): %s"
                         % (MAX_DEPTH, exc) if isinstance(exc, cbor.TooDeep)
                         else "too many items for a command: %s" % exc
                         if isinstance(exc, cbor_decode.TooMany) else "not CBOR: %s" % exc)
                if len(payload) and payload[0] in (0x7b, 0x5b):     # '{', '['
                    # JSON's first byte is CBOR's long string: "the input ends
                    # 2479623168012135446 bytes early" told nobody what was wrong
                    error = "not CBOR: this is text (JSON?); a command is a CBOR map " \
                            "(docs/uplink.md, Commands)"
            else:
                error = None
                if isinstance(fields, cbor.Tag) and fields.tag == 55799:
                    fields = fields.value   # self-described CBOR (RFC 8949 3.4.6), as some
                    # libraries write it by default
                cid = _id(fields.get("id")) if isinstance(fields, dict) else None
            if self._again(cid, retained):
                return None, None
            if retained:
                raise CommandError("retained command not run: publish commands without the "
                                   "retain flag, and clear this one")
            if error is not None:
                raise CommandError(error)
            if not isinstance(fields, dict):
                raise CommandError("a command is a CBOR map")
            if cid is None:
                raise CommandError("a command needs an id (text of at most %d characters, or "
                                   "a 64-bit integer)" % MAX_ID)
            name = fields.get("cmd")
            if name is None:
                raise CommandError("missing argument 'cmd' (known: %s)"
                                   % ", ".join(sorted(self.handlers)))
            handler = self.handlers.get(name) if isinstance(name, str) else None
            if handler is None:
                raise CommandError("unknown command %s (known: %s)"
                                   % (shown(name), ", ".join(sorted(self.handlers))))
            cmd = Command(fields)
            result = handler(cmd)
            if not cmd.checked:
                raise CommandError("internal: the %s handler did not check its arguments" % name)
            if isinstance(result, tuple):
                result, then = result
            reply = {"reply": cid, "ok": True, "result": result}
        except CommandError as exc:
            self.rejected += 1
            then = None
            reply = {"reply": cid, "ok": False, "error": str(exc)}
        except Exception as exc:  # a handler's bug must not take the agent down
            self.rejected += 1
            then = None
            reply = {"reply": cid, "ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        w = self.w
        w.reset()
        w.value(reply)
        return w.getvalue(), then


def _id(v):
    """v as a command id, or None. Ids are remembered (to run each command once), so they stay
    small: text of at most MAX_ID characters, or a 64-bit integer."""
    if isinstance(v, str):
        return v if len(v) <= MAX_ID else None
    if isinstance(v, int) and not isinstance(v, bool) and -_BIG < v < _BIG:
        return v
    return None


def peek_id(head):
    """The id of a command of which only the first bytes arrived, or None: the map's pairs are
    read in order until "id" (see _id) or the bytes run out."""
    from agent import cbor_decode
    r = cbor_decode.Counted(head, MAX_DEPTH, MAX_ITEMS)
    try:
        major, n, _ = r.head()
        if (major, n) == (6, 55799):    # self-described (RFC 8949 3.4.6)
            major, n, _ = r.head()
        if major != 5:
            return None
        while n is None or n > 0:
            key = r.item()
            value = r.item()
            if key == "id":
                return _id(value)
            if n is not None:
                n -= 1
    except cbor.CBORError:
        pass
    return None
