"""`tether run`: the agent itself on this machine, until Ctrl-C.

On a Raspberry Pi it reads the real sensors (hal/linux) and uplinks over paho-mqtt; with
`--platform sim` the same agent runs on virtual chips. The buffer lives where the profile says
(`buffer.path`), or in `--store DIR`; `--broker URL` sends to another broker than the profile's.

It prints a line for each connection made, lost or refused and for each sensor that starts or
stops failing, and a status line every `--status-every` (1min; `--quiet`: none). A broker it cannot reach, or that refuses the login,
is reported at once; sampling goes on and the buffer keeps the readings until it gets through.

Every line goes to standard error, whole and at once, and is the same in a terminal and under
systemd (which puts it in the journal): no colour, no progress bar, no carriage return; under
systemd each line also starts with its priority (`<4>`), which journald takes off (Journal).
PROFILE is a YAML profile, or a compiled one (`.json`, as `tether compile` and `tether
install-service` write it).
"""
import asyncio
import errno
import os
import signal
import socket
import ssl
import sys
import time

from agent.uplink import REFUSED_CMD, describe
from firmware.args import device_id
from firmware.profile import add_allow_outside
from firmware.profile.compile import compile as compile_profile
from firmware.profile.units import format_duration
from ingest.url import BadURL, parse_broker

STATUS_EVERY_MS = 60000
SIM_STORE = "tether-run"   # under it, in the working folder, --platform sim keeps an ESP32's or a
# Pi's profile's buffer (a folder per device)
# The sections every compiled profile has, and their JSON types.
COMPILED_KEYS = {"device": dict, "platform": str, "buses": list, "sensors": list, "buffer": dict,
                 "batch": dict, "uplink": dict}

# CONNACK return codes 1-5, as a user should read them.
REFUSED = {1: "the broker refused MQTT 3.1.1, or it is not an MQTT broker",
           2: "the broker refused the client id",
           3: "the broker is unavailable",
           4: "the broker refused the login: bad user name or password",
           5: "the broker refused the login: not authorised"}


# sd-daemon's priorities (syslog's): the prefix journald takes off a line and files it under.
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


class Journal:
    """Standard error when it is systemd's journal: each line starts with its priority (`<4>`),
    which journald takes off and files the line under, so `journalctl -u tether-DEVICE -p
    warning` shows the problems alone. The text is the terminal's; a line written plainly is an
    error (what `tether run` says before it stops)."""

    levels = True

    def __init__(self, stream):
        self.stream = stream

    def write(self, text, level=ERR):
        self.stream.write("".join("<%d>%s" % (level, line) for line in text.splitlines(True)))

    def flush(self):
        self.stream.flush()


def batches(n):
    return "1 batch" if n == 1 else "%d batches" % n


def journal(stream):
    """Journal(stream) when stream is the journal (JOURNAL_STREAM, which systemd sets for a
    service, names its device and inode: not a run of the service's command in a shell, nor
    one piped on), else stream."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return stream
    if os.environ.get("JOURNAL_STREAM") == "%d:%d" % (st.st_dev, st.st_ino):
        return Journal(stream)
    return stream


class Unbroken:
    """The agent's output, which never stops it: a pipe that closed (`| head`, a `tee` that
    died) made the next line raise into the uplink, which took the connection for failed and
    never delivered again. After the first failure nothing more is written."""

    def __init__(self, stream):
        self.stream = stream
        self.levels = getattr(stream, "levels", False)
        self.gone = False

    def write(self, text, *level):
        if not self.gone:
            try:
                self.stream.write(text, *level)
            except (OSError, ValueError):   # ValueError: the stream was closed
                self.gone = True

    def flush(self):
        if not self.gone:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.gone = True


def say(out, text, level):
    """Writes text at a priority: one the journal files, plain elsewhere."""
    if getattr(out, "levels", False):
        out.write(text, level)
    else:
        out.write(text)


def override_broker(profile, url):
    """Points the profile's uplink at url (mqtt://host[:port] or mqtts://...). Without TLS the
    profile's CA, certificate, key, user name and password are not used: in clear text, any host
    named on the command line would read the password. Returns a line saying so, or None."""
    try:
        broker = parse_broker(url)
    except BadURL:
        broker = None
    if broker is None or broker.username is not None:
        hint = ("; the user name and password come from the profile, sent over mqtts:// only"
                if "@" in url else "")
        raise ValueError("--broker: expected a URL like mqtt://127.0.0.1:1883 or "
                         "mqtts://broker.example:8883, got %r%s" % (url, hint))
    u = profile["uplink"]
    u.update({"host": broker.host, "port": broker.port, "tls": broker.tls})
    if not u["tls"]:
        for key in ("ca", "cert", "key"):
            u.pop(key, None)
        sent = [u.pop(key) for key in ("username", "password") if u.get(key) is not None]
        if sent:
            return ("--broker %s is not TLS: the profile's user name and password are not sent "
                    "(mqtts:// sends them)" % url)
    return None


def plain(exc, host, port):
    """What went wrong with a connection, in words (exceptions of agent/host/paho_client.py)."""
    code = getattr(exc, "code", None)
    if code in REFUSED:
        return REFUSED[code]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the broker's certificate does not verify: %s" % exc.verify_message
    if isinstance(exc, ssl.SSLError):
        return "TLS failed: %s" % (exc.reason or exc)
    if isinstance(exc, socket.gaierror):
        return "cannot resolve %s: %s" % (host, exc.strerror)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: no broker listening on %s:%d" % (host, port)
    if isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH,
                                                  errno.ENETUNREACH):
        return "cannot reach %s:%d: %s" % (host, port, exc.strerror or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return describe(exc)


class Reporter:
    """The lines `tether run` prints while the agent runs. It sees the connections through the
    MQTT client class it hands the agent (logged_client), so the agent needs no hooks."""

    def __init__(self, out, host, port, tls):
        self.out = out
        self.where = "%s:%d%s" % (host, port, " (TLS)" if tls else "")
        self.host, self.port, self.tls = host, port, tls
        self.agent = None
        self.failing = None     # the reason of the failures since the last connection
        self.failures = 0
        self.down_since = time.monotonic()
        self.error_before = None  # the uplink's last error when the connection was made
        self.failing_sensors = {}  # sensor name -> the kind of its failure, as last printed
        self.connected_at = None
        self.client_id = None    # of the connection last made
        self.quick_losses = 0    # connections lost within QUICK_LOSS_S of being made, in a row
        self.reasons = {}  # sensor name -> its failure's words, as its sensor_error event said
        self.told_commands = False

    def line(self, text, level=INFO):
        say(self.out, "%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), text), level)
        self.out.flush()

    def connected(self, client=None):
        self.client_id = getattr(client, "client_id", None)
        waiting = self.agent.buffer.log.unacked if self.agent else 0
        self.line("connected to %s%s" % (self.where, ", sending %s that waited"
                                         % batches(waiting) if waiting else ""))
        self.failing, self.failures = None, 0
        self.error_before = self.agent.uplink.last_error if self.agent else None
        self.connected_at = time.monotonic()

    def subscribe_refused(self, topic, exc):
        """Said once a run (the uplink tries again at each connection, and sends meanwhile)."""
        if getattr(exc, "code", None) == 0x80 and not self.told_commands:
            self.told_commands = True
            self.line("%s; readings are sent all the same (does the broker's policy let the "
                      "device subscribe to it?)" % (REFUSED_CMD % topic), WARNING)

    def refused(self, exc):
        """A connection attempt failed: said at once, then again only when the reason changes."""
        why = plain(exc, self.host, self.port)
        if self.tls and (isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)) or (
                isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(exc))):
            # a plain MQTT listener answers a TLS hello so: it said only "Connection reset"
            why += (" (is port %d a TLS listener? mqtts:// speaks TLS, usually on 8883; a "
                    "plain one is mqtt://, usually 1883)" % self.port)
        self.failures += 1
        if why != self.failing:
            self.failing = why
            self.line("cannot connect to %s: %s; sampling goes on, readings are kept, retrying"
                      % (self.where, why), WARNING)

    def lost(self, exc):
        if self.agent is not None and self.agent.uplink.stopping:
            return
        self.down_since = time.monotonic()
        why = None
        if exc is not None:
            why = plain(exc, self.host, self.port)
        elif self.agent is not None and self.agent.uplink.last_error is not self.error_before:
            why = self.agent.uplink.last_error  # the uplink closed it, and said why
        self.line("disconnected from %s%s; reconnecting" % (self.where,
                                                            ": %s" % why if why else ""), WARNING)
        quick = (self.connected_at is not None
                 and time.monotonic() - self.connected_at < QUICK_LOSS_S)
        self.quick_losses = self.quick_losses + 1 if quick else 0
        if self.quick_losses == QUICK_LOSSES:
            # A broker drops the older of two clients with one id: two runs of one device (a
            # terminal run left going beside the service) throw each other off in turn.
            # A broker also ends a connection for what it will not take (a packet over its
            # max_packet_size, an ACL that disconnects): MQTT 3.1.1 does not say which.
            self.line("lost %d connections within %d s of making them: is another client "
                      "connected with client id %s (another tether run or service of this "
                      "device)? The broker keeps only the newest. Or the broker refuses what "
                      "the device sends (a message larger than its maximum packet size, its "
                      "ACL): its log says why" % (
                          QUICK_LOSSES, QUICK_LOSS_S, self.client_id), WARNING)

    def sensors(self):
        for c in self.agent.sampler.channels:
            if c.failing != self.failing_sensors.get(c.name):
                if c.failing is None:
                    self.line("sensor %s reads again" % c.name, NOTICE)
                else:
                    # The words of the failure's start (the sampler sends no event when only
                    # its kind changes): not under a later kind.
                    why = self.reasons.get(c.name) if self.failing_sensors.get(c.name) is None \
                        else None
                    self.line("sensor %s fails (%s%s); it is tried again with backoff%s" % (
                        c.name, c.failing, ": " + why if why else "",
                        ", the other sensors go on" if any(
                            x is not c and x.failing is None
                            for x in self.agent.sampler.channels) else ""), WARNING)
                self.failing_sensors[c.name] = c.failing

    def status(self):
        a = self.agent
        u = a.uplink
        log = a.buffer.log
        errors = sum(sum(e.values()) for _, _, _, e in a.sampler.health())
        if u.connected:
            link = "connected"
        else:
            down = int(time.monotonic() - self.down_since)
            link = "not connected for %s" % (format_duration(down * 1000) if down else
                                             "under 1s")
            if self.failing:
                link += " (%d attempt%s: %s)" % (self.failures, "" if self.failures == 1
                                                 else "s", self.failing)
        read = sum(c.readings for c in a.sampler.channels)
        self.line("status: %s; %d reading%s, %d acknowledged (batches and events, resends "
                  "included), %s waiting, "
                  "%d readings dropped%s, %d sensor error%s" % (
                      link, read, "" if read == 1 else "s", u.acked, _waiting(a), log.dropped,
                      _events_dropped(a), errors, "" if errors == 1 else "s"))

    def logged_client(self, client_class):
        reporter = self

        class Logged(client_class):
            _logged_on_close = None

            async def connect(self):
                try:
                    await super().connect()
                except Exception as exc:
                    reporter.refused(exc)
                    raise
                reporter.connected(self)

            async def subscribe(self, topic, qos):
                try:
                    return await super().subscribe(topic, qos)
                except Exception as exc:
                    reporter.subscribe_refused(topic, exc)
                    raise

            # The uplink sets on_close on each client it makes: reported, then passed on.
            @property
            def on_close(self):
                return self._logged_on_close

            @on_close.setter
            def on_close(self, fn):
                def closed(exc):
                    reporter.lost(exc)
                    if fn is not None:
                        fn(exc)
                self._logged_on_close = closed

        return Logged


def main(args, err=sys.stderr):
    err = journal(err)
    if args.profile.endswith(".json"):
        profile, errors = load_compiled(args.profile)
    else:
        profile, errors = compile_profile(args.profile, args.allow_outside)
    if errors:
        err.write("\n".join(errors) + "\n")
        return 2
    try:
        return _main(profile, args, err)
    except _Incomplete as exc:
        err.write("tether run: %s: not a compiled profile as this Tether's `tether compile` "
                  "writes it (%s): compile it again (or tether install-service again)\n"
                  % (args.profile, exc))
        return 2


class _Incomplete(Exception):
    """A compiled profile (.json) that lacks what the agent reads: edited by hand, or written
    by something else. It stopped every start with a traceback, which a service restarts
    forever (exit 1)."""


def _incomplete(args, exc):
    """_Incomplete for a KeyError (TypeError, IndexError) met reading a compiled profile; one
    from a YAML profile, compiled here whole, is a bug: raised as it is."""
    if not args.profile.endswith(".json"):
        raise exc
    return _Incomplete("%s: %s" % (type(exc).__name__, exc))


def _main(profile, args, err):
    try:
        ready = _setup(profile, args, err)
    except (KeyError, TypeError, IndexError) as exc:
        raise _incomplete(args, exc)
    if isinstance(ready, int):
        return ready
    platform, claim, held = ready
    try:
        return asyncio.run(_run(profile, platform, args, Unbroken(err), claim))
    finally:
        if held is not None:
            held.close()


def _setup(profile, args, err):
    """(platform, claim, held lock) ready to run, or an exit code."""
    if "{uid}" in profile["device"]["id"] and not args.device:
        err.write("tether run: the device id %r is a template: give --device ID\n"
                  % profile["device"]["id"])
        return 2
    try:
        note = override_broker(profile, args.broker) if args.broker else None
    except ValueError as exc:
        err.write("tether run: %s\n" % exc)
        return 2
    if args.store:
        profile["buffer"]["path"] = args.store
        profile["buffer"]["storage"] = "flash"
    elif args.platform == "sim" and profile["platform"] != "sim":
        # A board's /buffer or a Pi's /var/lib/tether/buffer is no place on a laptop: it wrote
        # into / as root, and was "Permission denied" otherwise
        profile["buffer"]["path"] = os.path.join(SIM_STORE, args.device or profile["device"]["id"])
    from firmware.read import platform_for
    try:
        platform = platform_for(args.platform or profile["platform"], profile, args.fault,
                                gpiochip=args.gpiochip, doing="run")
    except (ValueError, ImportError, OSError) as exc:
        err.write("tether run: %s\n" % (_os_error(exc) if isinstance(exc, OSError) else exc))
        return 2
    if note:
        say(err, "tether run: %s\n" % note, WARNING)
    held = claim = None
    if profile["buffer"]["storage"] == "flash":
        path, device = profile["buffer"]["path"], args.device or profile["device"]["id"]
        # The folder is marked as the device's once the agent is built and its buffer read:
        # a run that fails before (a bus it cannot open) leaves no claim on it.
        claim = lambda: mark_buffer(path, device)  # noqa: E731
        try:
            held = hold_buffer(path, device)
        except OSError as exc:
            hint = ""
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not args.store:
                hint = " (the profile's buffer.path: give --store DIR for a folder of your own)"
            err.write("tether run: %s%s\n" % (_os_error(exc), hint))
            return _start_failed(exc)
        except ValueError as exc:
            err.write("tether run: %s\n" % exc)
            return 2
    return platform, claim, held


QUICK_LOSS_S = 5      # a connection lost this soon after it was made, QUICK_LOSSES times in a
QUICK_LOSSES = 3      # row: another client with the same id, most likely
LOCK_NAME = "run.lock"      # in the buffer's folder; agent/log.py ignores other names
DEVICE_NAME = "device"


def hold_buffer(path, device):
    """One agent at a time on a buffer, and only the device whose readings it holds: the open
    lock file, held (flock) until closed. ValueError saying who has it, or whose it is; OSError
    for a folder that cannot be made or written.

    Two agents on one folder wrote one segment file at once, sent each batch twice, and, with
    one client id, threw each other off the broker every second; a buffer filled as one device
    and sent as another put one device's readings under the other's topic."""
    import fcntl
    nested = _nested_buffer(path)
    if nested:
        raise ValueError("%s is %s: the two would read each other's files (a buffer's "
                         "events log is its events folder); give this one a folder of its own "
                         "with --store DIR" % (path, nested))
    if os.path.exists(path) and not os.path.isdir(path):
        # makedirs said only "File exists"
        raise ValueError("%s is a file, not a folder: the buffer is a folder of its own"
                         % path)
    os.makedirs(path, exist_ok=True)
    lock = open(os.path.join(path, LOCK_NAME), "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            who = lock.read().strip() or "another process"
            raise ValueError("the buffer in %s is in use by another tether run (%s): give this "
                             "one a folder of its own with --store DIR" % (path, who)) from None
        marker = os.path.join(path, DEVICE_NAME)
        try:
            with open(marker, encoding="utf-8") as f:
                owner = f.read().strip()
        except FileNotFoundError:
            # A buffer from before the marker: its batches name their device. Taken as this
            # one's, they went out on its topic, were refused by the ingest, and were deleted.
            owner = device_in_log(path)
        if owner and owner != device:
            raise ValueError("the buffer in %s holds the readings of device %s, not %s: they "
                             "would go out as %s's; give %s a folder of its own with --store "
                             "DIR (or, to drop what it holds, remove %s)"
                             % (path, owner, device, device, device, path))
        lock.seek(0)
        lock.truncate()
        lock.write("pid %d, device %s\n" % (os.getpid(), device))
        lock.flush()
        return lock
    except BaseException:
        lock.close()
        raise


def device_in_log(path):
    """The device id the oldest good batch in a buffer folder carries, or None (no batch)."""
    from agent.batch_decode import read_envelope
    from agent.log import BATCH, records
    from agent.store import FileStore
    store = FileStore(path)
    try:
        for name in [n for n in store.names() if n.endswith(".seg")]:
            for kind, payload, _ in records(store, name, 0, store.size(name)):
                if kind != BATCH:
                    break
                try:
                    return read_envelope(bytes(payload[2:])).device  # after its reading count
                except ValueError:
                    return None
        return None
    finally:
        store.close()


def _nested_buffer(path):
    """'inside the buffer in X' or 'holds the buffer in X' when another buffer (a folder with a
    run.lock or a device marker) is above path or below it; else None."""
    def is_buffer(folder):
        return any(os.path.exists(os.path.join(folder, n)) for n in (LOCK_NAME, DEVICE_NAME))
    here = os.path.realpath(path)
    up = os.path.dirname(here)
    while up and up != os.path.dirname(up):
        if is_buffer(up):
            return "inside the buffer in %s" % up
        up = os.path.dirname(up)
    if os.path.isdir(here):
        for root, dirs, files in os.walk(here):
            if root != here and (LOCK_NAME in files or DEVICE_NAME in files):
                return "holds the buffer in %s" % root
            if root.count(os.sep) - here.count(os.sep) >= 2:
                dirs[:] = []     # two levels down: a --store of a big folder is not searched
    return None


def load_compiled(path):
    """(compiled profile, []) from a `.json` file that `tether compile` wrote, else (None, error
    lines). The YAML it came from was checked then; this checks that it is such a file."""
    import json
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except OSError as exc:
        return None, ["%s: cannot read: %s" % (path, exc.strerror or exc)]
    except ValueError as exc:
        return None, ["%s: not a compiled profile: not JSON (%s)" % (path, exc)]
    missing = [k for k in COMPILED_KEYS if not isinstance(profile, dict)
               or not isinstance(profile.get(k), COMPILED_KEYS[k])]
    if missing:
        return None, ["%s: not a compiled profile as `tether compile` writes it: no %s"
                      % (path, ", ".join(repr(k) for k in missing))]
    if not isinstance(profile["device"].get("id"), str):
        return None, ["%s: not a compiled profile as `tether compile` writes it: no device id"
                      % path]
    from firmware.profile.compiled import fill_defaults, problems
    fill_defaults(profile)
    wrong = problems(profile)
    if wrong:
        return None, ["%s: %s (compile it again, or tether install-service again)" % (path, p)
                      for p in wrong]
    return profile, []


def mark_buffer(path, device):
    """Marks the buffer in path as device's (hold_buffer refuses another device on it), unless
    it is: none yet, or one cut short by a crash, written whole, or not."""
    marker = os.path.join(path, DEVICE_NAME)
    try:
        with open(marker, encoding="utf-8") as f:
            if f.read().strip():
                return
    except FileNotFoundError:
        pass
    with open(marker + ".tmp", "w", encoding="utf-8") as f:
        f.write(device + "\n")
    os.replace(marker + ".tmp", marker)


async def _run(profile, platform, args, out, claim=None):
    from agent.clock import SystemClock
    from agent.host.paho_client import Client
    from agent.runtime import Agent
    try:
        try:
            u = profile["uplink"]
            reporter = Reporter(out, u["host"], u["port"], u["tls"])
            agent = Agent(profile, platform, SystemClock(), reporter.logged_client(Client),
                          device_id=args.device)
        except (KeyError, TypeError, IndexError) as exc:
            raise _incomplete(args, exc)
        discarded = agent.open()     # the store's errors are its own, not the profile's
        if claim is not None:
            claim()
    except OSError as exc:  # the buffer's folder; an ssl.SSLError (check reports those first)
        out.write("tether run: %s%s\n" % (_buffer_of(exc, profile), _os_error(exc)))
        return _start_failed(exc)
    except (ValueError, ImportError) as exc:    # ImportError: gpiod, for the profile's pins
        out.write("tether run: %s\n" % exc)
        return 2
    reporter.agent = agent
    if agent.sampler.events is not None:
        agent.sampler.events = _Reasons(agent.sampler.events, reporter.reasons)
    n = len(agent.sampler.channels)
    say(out, "%s: %d sensor%s, buffer at %s (%s waiting%s), broker %s:%d%s\n" % (
        agent.device, n, "" if n == 1 else "s", profile["buffer"]["path"],
        batches(agent.buffer.log.unacked),
        ", %d torn or corrupt bytes discarded" % discarded if discarded else "",
        u["host"], u["port"], " (TLS)" if u["tls"] else ""), WARNING if discarded else INFO)
    out.flush()
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()
    # SIGHUP too: the ssh session that started it closed; what is in RAM is saved all the same
    # (not under nohup, which asked for it to be ignored).
    stops = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        stops.append(signal.SIGHUP)
    for sig in stops:
        loop.add_signal_handler(sig, _once, stopping, sig)
    task = asyncio.create_task(agent.run())
    watch = asyncio.create_task(_watch(reporter, None if args.quiet else args.status_every))
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    if task.done() and task.exception() is not None:  # sampling failed: the store, say
        exc = task.exception()
        out.write("tether run: the agent stopped: %s%s\n" % (_buffer_of(exc, profile),
                                                              _os_error(exc)))
        return 1
    if not task.done():
        await agent.stop()
        await task
    say(out, "stopped: %s waiting for the broker, %d readings%s dropped in all\n"
        % (_waiting(agent), agent.buffer.log.dropped,
           _events_dropped(agent).replace(" dropped", "")), NOTICE)
    return 0


def _waiting(agent):
    """'N batches' waiting, and ' and M events' when there are (kept and sent as batches are)."""
    n = agent.events.log.unacked
    return batches(agent.buffer.log.unacked) + (
        " and %d event%s" % (n, "" if n == 1 else "s") if n else "")


def _events_dropped(agent):
    """', N events dropped' when the events' log was full at some time, else ''."""
    n = agent.events.log.dropped
    return ", %d events dropped" % n if n else ""


class _Reasons:
    """The sampler's events, passed on, keeping each sensor_error's words for the reporter's
    line: the sampler keeps a failure's kind only (a board's heap)."""

    def __init__(self, events, reasons):
        self.events = events
        self.reasons = reasons

    def emit(self, t, synced, event, sensor, state, value=None, detail=None):
        if event == "sensor_error" and detail:
            self.reasons[sensor] = detail
        return self.events.emit(t, synced, event, sensor, state, value, detail)


def _once(stopping, sig):
    # A second Ctrl-C while the agent drains changes nothing (the drain is bounded).
    if not stopping.done():
        stopping.set_result(sig)


async def _watch(reporter, every_ms):
    """A line when a sensor starts or stops failing (checked every second), and the status line
    every every_ms (None: never)."""
    loop = asyncio.get_running_loop()
    due = loop.time() + every_ms / 1000 if every_ms else None
    while True:
        await asyncio.sleep(1 if due is None else min(1, max(due - loop.time(), 0)))
        reporter.sensors()
        if due is not None and loop.time() >= due:
            reporter.status()
            due += every_ms / 1000


def add_command(sub):
    from firmware.args import duration, gpiochip_path
    p = sub.add_parser("run", help="run the agent on this machine (a Raspberry Pi, or --platform "
                                   "sim) until Ctrl-C")
    p.add_argument("profile", metavar="PROFILE", help="a profile YAML file, or a compiled "
                   "profile (.json)")
    p.add_argument("--platform", choices=("sim", "rpi"), help="default: the profile's")
    p.add_argument("--device", type=device_id, metavar="ID", help="the device id (when the profile's is a "
                                                  "template such as printer-{uid})")
    p.add_argument("--broker", metavar="URL",
                   help="use this broker instead of the profile's: mqtt://HOST[:PORT] (no TLS: "
                        "the profile's CA and certificate are not used) or mqtts://HOST[:PORT]")
    p.add_argument("--status-every", type=duration(1000, 86400000), default=STATUS_EVERY_MS,
                   metavar="DURATION", help="a status line this often (default 1min)")
    p.add_argument("--quiet", action="store_true",
                   help="no status lines (connections and errors are still reported)")
    p.add_argument("--fault", action="append", default=[], metavar="SENSOR=KIND",
                   help="with --platform sim: break the part behind a sensor, as tether read "
                        "does")
    p.add_argument("--store", metavar="DIR", help="where the buffer lives (default: the "
                                                  "profile's buffer.path; with --platform sim "
                                                  "for an esp32 or rpi profile, %s/DEVICE)"
                                                  % SIM_STORE)
    p.add_argument("--gpiochip", type=gpiochip_path, metavar="PATH",
                   help="on a Raspberry Pi: the GPIO chip of the pins (default: the Pi's pin "
                        "controller, found by its label)")
    add_allow_outside(p)
    p.set_defaults(func=main)


# Store errors that may pass: a start that failed on them may succeed later (exit 1, which the
# service restarts; 2 is for what would fail the same way again).
PASSING = (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EBUSY)


def _buffer_of(exc, profile):
    """'the buffer at PATH: ' for a store error that names no file (a full disk, EIO): where
    to look."""
    if (isinstance(exc, OSError) and not getattr(exc, "filename", None)
            and exc.errno in PASSING and profile["buffer"]["storage"] == "flash"):
        return "the buffer at %s: " % profile["buffer"]["path"]
    return ""


def _start_failed(exc):
    """tether run's exit code for an OSError at start: 1 if it may pass, else 2."""
    return 1 if exc.errno in PASSING else 2


def _os_error(exc):
    """`file: what` for an OSError that names its file, its own words for one made with a
    sentence (OSError(ENOENT, "cannot open UART ...")), else the exception as it says itself:
    never Python's "[Errno 2]", which lands in the journal."""
    if getattr(exc, "filename", None) and getattr(exc, "strerror", None):
        return "%s: %s" % (exc.filename, exc.strerror)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
