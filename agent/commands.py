# Commands from the cloud, on {prefix}/{device}/down/cmd, answered on {prefix}/{device}/up/event.
#
# A command is a CBOR map {"id": text or integer, "cmd": name, ...its arguments}; the reply is a
# CBOR map {"reply": the id, "ok": true, "result": ...} or {"reply": the id (null when the
# command had none), "ok": false, "error": "what was wrong"} (docs/wire-format.md). Whatever
# arrives, the agent answers and carries on: garbage, unknown commands and bad arguments get an
# error reply, never an exception.
from agent import cbor

MAX_DEPTH = 4  # a command is a flat map: deeper nesting is refused before it is built


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
            raise CommandError("argument %r must be from %s to %s, got %s" % (name, low, high, v))
        return v

    def done(self):
        for name in self.fields:
            if name not in self.used:
                raise CommandError("unknown argument %r" % (name,))
        self.checked = True


def _kind_name(kind):
    return {str: "text", int: "an integer", bool: "true or false", list: "a list"}.get(
        kind, str(kind))


class Commands:
    """handlers: {name: fn(Command) -> result}; a handler may return (result, then), and then()
    is called once the reply is on its way (a reboot)."""

    def __init__(self, handlers):
        self.handlers = handlers
        self.received = 0
        self.rejected = 0
        self.w = cbor.Writer()

    async def handle(self, payload):
        """(reply bytes, then or None) for one command payload."""
        self.received += 1
        cid = None
        then = None
        try:
            from agent import cbor_decode
            try:
                fields = cbor_decode.loads(payload, MAX_DEPTH)
            except cbor.CBORError as exc:
                raise CommandError("not CBOR: %s" % exc)
            if not isinstance(fields, dict):
                raise CommandError("a command is a CBOR map")
            cid = fields.get("id")
            if not isinstance(cid, (str, int)) or isinstance(cid, bool):
                cid = None
                raise CommandError("a command needs an id (text or integer)")
            name = fields.get("cmd")
            handler = self.handlers.get(name) if isinstance(name, str) else None
            if handler is None:
                raise CommandError("unknown command %r (known: %s)"
                                   % (name, ", ".join(sorted(self.handlers))))
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
        return bytes(w.getvalue()), then
