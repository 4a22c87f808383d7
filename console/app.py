"""The console's web app (Starlette): three pages rendered on the server (Jinja2) for a fast
first paint, their fragments for live updates, a server-sent event stream saying when the
database changed, and the command endpoint. Every input is checked here; a bad one gets a 400
that says what was expected, never a traceback.

Access: the token is needed for everything on an address other than loopback, and for commands
everywhere. It comes as ?token= once (the printed URL; it becomes an HttpOnly cookie), as that
cookie, or as `Authorization: Bearer TOKEN`. A command must also come from the console's own
page (its Origin, when the browser sends one, is this host).
"""
import asyncio
import gzip
import hmac
import json
import logging
import os
import re
import time
import urllib.parse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse,
                                 RedirectResponse, Response, StreamingResponse)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent import cbor
from console import actions as actions_mod
from console import reads
from console import said as said_mod
from console.commands import CommandError

log = logging.getLogger("tether.console")
HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SENSOR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_SNOOZE_MS = 90 * reads.DAY_MS
POLL_S = 0.5  # how often the event stream looks at the database: changes show within 2 s


class BadInput(ValueError):
    """A request that is not what the console takes: the message says what was expected."""


class NoDevice(BadInput):
    """A command for a device the database has never heard from: a 404."""


def chart_js():
    """Chart.js 4 with its date adapter, from the chartkick wheel: served by the console
    itself, so the pages work offline."""
    import chartkick
    return os.path.join(os.path.dirname(chartkick.__file__), "django", "static", "chartkick",
                        "Chart.bundle.js")


class Console:
    """What the app's handlers share: the database, the fleet cache, the commander, the
    settings."""

    def __init__(self, db_url, token, open_access, commander=None, silent_ms=2 * reads.HOUR_MS,
                 per_page=100):
        self.db = reads.Database(db_url)
        self.fleet = reads.FleetCache(self.db)
        self.token = token
        self.open_access = open_access  # pages without the token (loopback)
        # browsers keep cookies per host, not per port: two consoles on one host keep two
        self.cookie = "tether_console"
        self.stopping = lambda: False  # true once the server shuts down: streams end
        self.commander = commander
        self.silent_ms = silent_ms
        self.per_page = per_page

    def warm(self, env):
        """What the first requests would otherwise wait for: the pages' templates compiled,
        the fleet read once, the database connections of the chart threads opened."""
        for name in os.listdir(os.path.join(HERE, "templates")):
            env.get_template(name)
        try:
            reads.call(self.fleet.refresh)  # its connection too in a reading thread
            reads.warm(self.db)
        except reads.Unreadable:
            pass  # said on the first page

    def actions(self):
        rows, now, simulated = self.fleet.refresh()
        return actions_mod.needed(self.db, rows, now, self.silent_ms), rows, now, simulated


def make_app(console):
    env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                      autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["heard"] = _heard
    env.filters["uptime"] = _uptime
    env.globals["plausible"] = reads.PLAUSIBLE_MS
    env.filters["num"] = actions_mod.num_text
    env.filters["field"] = _field
    env.filters["said"] = lambda i: said_mod.said(i["event"], i["value"], i["fields"])
    # JSON as text in a page: autoescape makes it safe, so no \u0027 for every quote as tojson
    env.filters["json_text"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)

    def page(request, name, code=200, **context):
        context.setdefault("live", True)
        html = env.get_template(name).render(request=request, **context)
        return HTMLResponse(html, status_code=code)

    def refuse(request, status, message, api=False):
        if api or request.url.path.startswith("/api/"):  # what a script reads: JSON
            # "ok" as a command's answers have it: a script checks one key for all of them
            return JSONResponse({"ok": False, "error": message}, status_code=status)
        return page(request, "error.html", code=status, message=message, live=False)

    def guarded(handler, api=False):
        async def run(request):
            try:
                if console.open_access and not _local_host(request):
                    # a page of another site that resolved its name to 127.0.0.1 (DNS
                    # rebinding) must not read the fleet
                    return refuse(request, 403, "this console answers to 127.0.0.1 and "
                                                "localhost only", api)
                if request.query_params.get("token") is not None and not api:
                    return _take_token(request, console)
                if not console.open_access and not _has_token(request, console):
                    return refuse(request, 401, "this console needs its token: %s" % (
                        "the cookie its pages set (open the URL it printed at start, with "
                        "?token=), or Authorization: Bearer TOKEN" if api else
                        "open the URL it printed at start (with ?token=)"), api)
                return await handler(request)
            except NoDevice as exc:
                return refuse(request, 404, str(exc), api)
            except BadInput as exc:
                return refuse(request, 400, str(exc), api)
            except reads.Unreadable as exc:
                return refuse(request, 503, str(exc), api)
        return run

    async def actions_page(request):
        q = request.query_params
        _only(request, ("kind", "page", "fragment"))
        kind = _choice(q, "kind", ("",) + tuple(actions_mod.ORDER), "")
        number = _int(q, "page", 1, 1, 1000000)
        needed, rows, now, simulated = await reads.run(console.actions)
        counts = {}
        for a in needed:
            counts[a["kind"]] = counts.get(a["kind"], 0) + 1
        shown = [a for a in needed if not kind or a["kind"] == kind]
        per = console.per_page
        pages = max(1, (len(shown) + per - 1) // per)
        number = min(number, pages)
        name = "actions_rows.html" if _choice(q, "fragment", ("1",), None) else "actions.html"
        return page(request, name, actions=shown[(number - 1) * per:number * per],
                    total=len(needed), matching=len(shown), counts=counts, kind=kind,
                    page_no=number, pages=pages, now=now, simulated=simulated,
                    devices=len(rows), involved=len({a["device"] for a in needed}),
                    titles=actions_mod.TITLES, view="actions",
                    commands_ok=console.commander is not None)

    async def fleet_page(request):
        q = request.query_params
        _only(request, ("sort", "order", "q", "status", "page", "fragment"))
        sort = _choice(q, "sort", reads.FLEET_COLUMNS, "device")
        order = _choice(q, "order", ("asc", "desc"), "asc")
        status = _choice(q, "status", ("", "online", "offline", "unknown"), "")
        text = q.get("q", "")
        if len(text) > 100:
            raise BadInput("q: at most 100 characters")
        number = _int(q, "page", 1, 1, 1000000)
        rows, now, simulated = await reads.run(console.fleet.refresh)
        shown, total, pages = reads.fleet_page(rows, sort, order, text, status, number,
                                               console.per_page)
        online = sum(1 for r in rows.values() if r["status"] == "online")
        name = "fleet_rows.html" if _choice(q, "fragment", ("1",), None) else "fleet.html"
        return page(request, name, rows=shown, total=total, pages=pages, page_no=min(
            number, pages), sort=sort, order=order, q=text, status=status, now=now,
                    simulated=simulated, devices=len(rows), online=online, view="fleet",
                    columns=COLUMN_TITLES)

    async def device_page(request):
        device = _device(request.path_params["device"])
        _only(request, ("span", "fragment"))
        span = _choice(request.query_params, "span", tuple(reads.SPANS), "7d")
        fragment = _choice(request.query_params, "fragment", ("summary", "lists"), None)
        detail = await reads.run(reads.device_detail, console.db, device, span,
                                 fragment is None)
        if detail is None:
            return refuse(request, 404, "no device %s in this database" % device)
        rows, now, simulated = await reads.run(console.fleet.refresh)
        name = {"summary": "device_summary.html", "lists": "device_rows.html",
                None: "device.html"}[fragment]
        return page(request, name, d=detail, now=now, simulated=simulated, spans=reads.SPANS,
                    view="device", commands_ok=console.commander is not None)

    async def device_data(request):
        device = _device(request.path_params["device"])
        _only(request, ("span",))
        span = _choice(request.query_params, "span", tuple(reads.SPANS), "7d")
        detail = await reads.run(reads.device_detail, console.db, device, span)
        if detail is None:
            return refuse(request, 404, "no device %s in this database" % device, api=True)
        return JSONResponse({"charts": detail["charts"], "start": detail["start"],
                             "end": detail["end"]})

    async def stream(request):
        _only(request, ("device",))
        device = request.query_params.get("device")
        if device is not None:
            device = _device(device)

        def news():
            """What changed: on a device's page its own messages, elsewhere any device's; and
            the fleet's clock (from the stamp alone: nothing is read again for it)."""
            fleet = console.fleet.stamp()
            stamp = reads.device_stamp(console.db, device) if device else fleet
            now, simulated = reads.clock_of(fleet)
            return stamp, "as of %s%s" % (_when(now), " (simulated time)" if simulated else "")

        async def changes():
            # The first look always tells the page: what arrived between its rendering and
            # this stream's start would show nowhere else.
            last = unseen = object()  # the first look differs from anything, None included
            quiet = 0.0
            yield "retry: 1000\n\n"
            while not console.stopping() and not await request.is_disconnected():
                error = None
                try:
                    stamp, clock = await reads.run(news)
                except reads.Unreadable as exc:
                    stamp, clock, error = str(exc), None, str(exc)
                if last is unseen or stamp != last:
                    # an error: the page says its rows are stale, not live
                    yield "data: %s\n\n" % json.dumps({"clock": clock, "error": error})
                    last, quiet = stamp, 0.0
                elif quiet >= 15:
                    yield ": still here\n\n"  # a proxy would close a connection idle too long
                    quiet = 0.0
                await asyncio.sleep(POLL_S)
                quiet += POLL_S
        return StreamingResponse(changes(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def command(request):
        if console.open_access and not _local_host(request):
            return refuse(request, 403, "this console answers to 127.0.0.1 and localhost only")
        if not _has_token(request, console):
            return refuse(request, 401, "commands need the console's token: open the URL it "
                                        "printed at start (with ?token=)")
        origin = request.headers.get("origin")
        if origin is not None and origin != "%s://%s" % (request.url.scheme,
                                                         request.headers.get("host")):
            return refuse(request, 403, "a command must come from the console's own page")
        # The media type itself (`text/plain; x=application/json` passed a substring test, and
        # a form that a page elsewhere may post without asking first has that type)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise BadInput("a command is a JSON object (Content-Type: application/json)")
        body = b""
        async for chunk in request.stream():  # never more than a command's size in memory
            body += chunk
            if len(body) > 4096:
                raise BadInput("a command is at most 4096 bytes")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise BadInput("not JSON: %s" % exc)
        except RecursionError:  # [[[...]]] 2,000 deep fits in 4096 bytes
            raise BadInput("not JSON a command can be: nested too deep")
        if not isinstance(doc, dict):
            raise BadInput("a command is a JSON object")
        # It waits for the device's reply, for seconds: in Starlette's pool, not the readers'
        result = await run_in_threadpool(_run_command, console, doc)
        return JSONResponse(result)

    async def healthz(request):
        return PlainTextResponse("ok")

    # 934 KB as the wheel has it: compressed once, at start; compressed at the first request,
    # it held the event loop, and the first device page's other requests, for 100-250 ms
    with open(chart_js(), "rb") as f:
        packed = gzip.compress(f.read(), 9)

    async def chart(request):
        if "gzip" not in request.headers.get("accept-encoding", ""):
            return FileResponse(chart_js(), media_type="text/javascript",
                                headers={"Cache-Control": "public, max-age=86400"})
        return Response(packed, media_type="text/javascript",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding",
                                 "Cache-Control": "public, max-age=86400"})

    async def not_found(request, exc):
        if exc.status_code == 404:
            return refuse(request, 404, "no page %s" % request.url.path)
        return refuse(request, exc.status_code, exc.detail)

    async def crashed(request, exc):
        log.exception("console: %s %s", request.method, request.url.path)
        return refuse(request, 500, "the console failed on this request (%s); its log has the "
                                    "details" % type(exc).__name__)

    console.warm(env)
    routes = [
        Route("/", guarded(actions_page)),
        Route("/fleet", guarded(fleet_page)),
        Route("/device/{device:path}/data", guarded(device_data, api=True)),
        Route("/device/{device:path}", guarded(device_page)),
        Route("/api/stream", guarded(stream, api=True)),
        Route("/api/command", guarded(command, api=True), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/static/chart.js", chart),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=1024)],
                     exception_handlers={HTTPException: not_found, Exception: crashed})


COLUMN_TITLES = (("device", "Device"), ("status", "Status"), ("last_t_ms", "Last seen"),
                 ("model", "Model"), ("version", "Firmware"), ("buffer", "Buffer at last health"),
                 ("dropped", "Dropped"), ("repaired", "Repaired"), ("lost", "Lost"),
                 ("rssi", "RSSI"), ("heap_free", "Free heap"))


# ---- commands -------------------------------------------------------------------------------

COMMANDS = {"ping": ("device",), "diag": ("device",),  # each command's fields
            "set_interval": ("device", "sensor", "interval_ms"),
            "ack": ("device", "kind", "sensor", "seen"),
            "snooze": ("device", "kind", "sensor", "for_ms", "seen"),
            "settings": ("device", "sensor", "settings")}


def _run_command(console, doc):
    """{"ok", "reply" | "error", "recorded"} for a checked command request."""
    name = doc.get("command")
    if not isinstance(name, str) or name not in COMMANDS:
        raise BadInput("command: one of %s" % ", ".join(COMMANDS))
    extra = set(doc) - set(COMMANDS[name]) - {"command"}
    if extra:
        raise BadInput("%s takes no %s" % (name, ", ".join(sorted(extra))))
    device = _device(doc.get("device"))
    if reads.call(reads.device_stamp, console.db, device) is None:  # nothing to wait 10 s for
        raise NoDevice("no device %s in this database" % device)
    if name in ("ack", "snooze"):
        return _answer(console, name, device, doc)
    if name == "settings":
        # An insight's settings (a lead time, a dose schedule): read without `settings`, changed
        # with them; the device checks each one and answers with all of them as they now hold.
        sensor = _sensor(doc.get("sensor"))
        settings = doc.get("settings")
        if settings is None:
            return _send(console, device, {"cmd": "insight", "sensor": sensor,
                                           "action": "settings"})
        if not isinstance(settings, dict) or not settings:
            raise BadInput("settings: a map of an insight's settings to their values, e.g. "
                           "{\"lead_time_ms\": 604800000} (docs/insights.md), or none to read "
                           "them")
        return _send(console, device, {"cmd": "insight", "sensor": sensor, "action": "set",
                                       "settings": settings})
    if name == "set_interval":
        sensor = _sensor(doc.get("sensor"))
        ms = doc.get("interval_ms")
        if isinstance(ms, bool) or not isinstance(ms, int) or not 100 <= ms <= 86400000:
            raise BadInput("interval_ms: an integer from 100 to 86400000 (1 day)")
        return _send(console, device, {"cmd": "set_interval", "sensor": sensor,
                                       "interval_ms": ms})
    return _send(console, device, {"cmd": name})


def _send(console, device, command):
    if console.commander is None:
        return {"ok": False, "error": "this console has no broker: start it with --broker URL "
                                      "to command devices"}
    try:
        reply = console.commander.send(device, command)
    except CommandError as exc:
        stamp = reads.call(reads.device_stamp, console.db, device)
        if exc.unanswered and stamp is not None and stamp[1] == "offline":
            # Sent all the same (the database may be behind the broker), but said plainly: a
            # device keeps no session at the broker, so nothing holds a command for it.
            return {"ok": False, "error": "no reply from %s: it is offline (its last will said "
                                          "so), and a command it misses is lost; send it once "
                                          "the device is back online" % device}
        return {"ok": False, "error": str(exc)}
    if not reply.get("ok"):
        return {"ok": False, "error": "%s answered: %s" % (device, reply.get("error")),
                "reply": _plain(reply)}
    return {"ok": True, "reply": _plain(reply)}


def _answer(console, name, device, doc):
    """An acknowledgement or snooze of an action the actions page shows: sent to the device
    where it is an insight's, and recorded (table acks) once the device said yes."""
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in actions_mod.ORDER:
        raise BadInput("kind: one of %s" % ", ".join(actions_mod.ORDER))
    sensor = doc.get("sensor")
    if not isinstance(sensor, str) or (sensor and not SENSOR.match(sensor)):
        raise BadInput("sensor: a sensor name, or \"\" for none")
    for_ms = None
    if name == "snooze":
        for_ms = doc.get("for_ms")
        if isinstance(for_ms, bool) or not isinstance(for_ms, int) \
                or not 60000 <= for_ms <= MAX_SNOOZE_MS:
            raise BadInput("for_ms: an integer from 60000 (a minute) to %d (90 days)"
                           % MAX_SNOOZE_MS)
    needed, rows, now, _ = reads.call(console.actions)  # a reading thread's connection
    action = next((a for a in needed if (a["device"], a["kind"], a["sensor"])
                   == (device, kind, sensor)), None)
    if action is None:
        return {"ok": False, "error": "no '%s' action for %s%s now (the actions page lists "
                                      "none)" % (kind, device, " " + sensor if sensor else "")}
    seen = doc.get("seen")
    if seen is not None and (isinstance(seen, bool) or not isinstance(seen, int)):
        raise BadInput("seen: the row's data-seen, an integer")
    if seen is not None and seen != action["seen"]:
        # A raise or a drop that came after the page was drawn would be answered unseen
        return {"ok": False, "changed": True, "error": (
            "the %s row of %s%s changed since the page showed it (now: %s): look at it again"
            % (action["title"], device, " " + sensor if sensor else "", action["evidence"]))}
    until = now + for_ms if for_ms else None
    reply = None
    if action["event"] is not None:
        command = {"cmd": "insight", "sensor": sensor, "action": name, "event": action["event"]}
        if for_ms:
            command["for_ms"] = for_ms
        sent = _send(console, device, command)
        if not sent["ok"]:
            return sent
        reply = sent["reply"]
        result = reply.get("result") if isinstance(reply.get("result"), dict) else {}
        if isinstance(result.get("until"), int) and abs(result["until"] - until) <= reads.DAY_MS:
            # the device's own end, on its clock; one far from the fleet's (a device whose clock
            # is off) would hide the row for that long: the console's then
            until = result["until"]
    # The device has done it: the record is tried again while the database is busy (each try
    # waits up to its busy timeout), and a failure says the device's part was done.
    for attempt in range(RECORD_TRIES):
        try:
            reads.call(
                console.db.write,
                "INSERT INTO acks (device, action, sensor, done, at_ms, until_ms, value, "
                "received_at, reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, "
                "action, sensor) DO UPDATE SET done = excluded.done, at_ms = excluded.at_ms, "
                "until_ms = excluded.until_ms, value = excluded.value, "
                "received_at = excluded.received_at, reply = excluded.reply",
                (device, kind, sensor, name, now, until, actions_mod.judged_on(action),
                 time.time(), json.dumps(reply) if reply is not None else None))
            break
        except reads.Unreadable as exc:
            why = str(exc).replace("the database cannot be written: ", "")
            if attempt < RECORD_TRIES - 1:
                time.sleep(RECORD_PAUSE_S)  # a worker thread's: a database that fails at once
                continue
            if reply is None:   # a silent or dropping row: nothing went to a device
                return {"ok": False, "error": "the console could not record it (%s): the row "
                                              "stays up; answer it again later" % why}
            return {"ok": False, "reply": reply, "error": (
                "%s took it, but the console could not record it (%s): the row stays up until "
                "it can; answering again sends the device the same" % (device, why))}
    return {"ok": True, "reply": reply, "recorded": {"done": name, "until": until}}


RECORD_TRIES = 3    # an acknowledgement's record, the database busy: some 15 s in all (SQLite
RECORD_PAUSE_S = 1  # waits out its busy timeout at each try)


def _plain(doc):
    """A CBOR reply (agent.cbor_decode's values) as JSON can carry it: bytes as hex, a tag as
    {"tag", "value"}, another simple value as {"simple"}, undefined as null."""
    if isinstance(doc, dict):
        return {str(k): _plain(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_plain(v) for v in doc]
    if isinstance(doc, (bytes, bytearray)):
        return bytes(doc).hex()
    if isinstance(doc, cbor.Tag):
        return {"tag": doc.tag, "value": _plain(doc.value)}
    if isinstance(doc, cbor.Simple):
        return {"simple": doc.value}
    if doc is cbor.UNDEFINED:
        return None
    return doc


# ---- checks ---------------------------------------------------------------------------------

def _only(request, names):
    for key in request.query_params:
        if key not in names and key != "token":
            raise BadInput("unknown query parameter %r (this page takes: %s)"
                           % (key[:40], ", ".join(names)))


def _choice(q, name, allowed, default):
    v = q.get(name)
    if v is None:
        return default
    if v not in allowed:
        raise BadInput("%s: one of %s, not %r" % (name, ", ".join(a or '""' for a in allowed),
                                                 v[:40]))
    return v


def _int(q, name, default, low, high):
    v = q.get(name)
    if v is None:
        return default
    if not (v.isascii() and v.isdigit() and len(v) <= 7 and low <= int(v) <= high):
        raise BadInput("%s: a whole number from %d to %d, not %r" % (name, low, high, v[:40]))
    return int(v)


def _device(v):
    if not isinstance(v, str) or not DEVICE_ID.match(v):
        raise BadInput("device: an id of 1 to 64 letters, digits, '-', '_' and '.', starting "
                       "with a letter or digit")
    return v


def _sensor(v):
    if not isinstance(v, str) or not SENSOR.match(v):
        raise BadInput("sensor: a sensor name (letters, digits, '_', '-', '.')")
    return v


def _local_host(request):
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOCAL_NAMES


def _has_token(request, console):
    given = request.cookies.get(console.cookie)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":  # the scheme is case-insensitive (RFC 7235)
        given = credentials.strip()
    return given is not None and hmac.compare_digest(given.encode(), console.token.encode())


def _take_token(request, console):
    """?token=: right, a cookie and the same URL without it; wrong, a 401."""
    given = request.query_params["token"]
    if not hmac.compare_digest(given.encode(), console.token.encode()):
        body = "wrong token: open the URL the console printed at start"
        return HTMLResponse("<!doctype html><title>Tether console</title><p>%s</p>" % body,
                            status_code=401)
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    url = request.url.path + ("?" + urllib.parse.urlencode(rest) if rest else "")
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(console.cookie, console.token, httponly=True, samesite="strict")
    return response


# ---- formatting (Jinja filters) -------------------------------------------------------------

def _when(t_ms):
    if not isinstance(t_ms, (int, float)):
        return "never"
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_ms / 1000))
    except (OverflowError, OSError, ValueError):  # a device's field past the platform's years
        return "%d ms" % t_ms if t_ms == t_ms and abs(t_ms) != float("inf") else str(t_ms)


TIME_FIELDS = ("scheduled", "taken", "close", "start", "end", "since", "until", "at")


def _field(item):
    """An insight's field as the device page shows it: its times as times."""
    k, v = item
    if k in TIME_FIELDS and isinstance(v, int) and v > 10 ** 12:
        return "%s %s" % (k, _when(v))   # as the lists write a time (it was "12-22 20:21")
    if isinstance(v, bool):
        return "%s %s" % (k, "yes" if v else "no")
    if isinstance(v, (int, float)):
        return "%s %s" % (k, actions_mod.num_text(v))
    return "%s %s" % (k, v)


def _uptime(s):
    """A health report's uptime_s as a person reads it: '5 d 12 h', '3 h 20 min'."""
    if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
        return ""
    return said_mod.duration(int(s * 1000))


def _heard(d, now_ms):
    """How long ago a device's newest reading was (d: a fleet row or a device page's summary):
    for a clock never synced (the days of 1970, "20422.0 days ago"), how long ago its last
    message came, by this machine's clock."""
    t = d.get("last_t_ms")
    if isinstance(t, (int, float)) and isinstance(d.get("last_seen"), (int, float)):
        if t < reads.PLAUSIBLE_MS:
            return "%s (its clock is not synced)" % _ago(d["last_seen"] * 1000,
                                                         time.time() * 1000)
        if t > now_ms + reads.HOUR_MS:   # "just now" for a year, where it fell silent
            return "%s (its clock is %s ahead)" % (
                _ago(d["last_seen"] * 1000, time.time() * 1000),
                said_mod.duration(int(t - now_ms)))
    return _ago(t, now_ms)


def _ago(t_ms, now_ms):
    if not isinstance(t_ms, (int, float)):
        return "never"
    ms = max(0, now_ms - t_ms)
    if ms < reads.MINUTE_MS:
        return "just now"
    return said_mod.duration(ms) + " ago"



