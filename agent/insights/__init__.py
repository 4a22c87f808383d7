# Insights: detectors that turn one sensor's readings into what a maker acts on (ink to reorder,
# a dose missed, a motor to service), computed on the device and sent as events
# (docs/insights.md). Each kind is one module here, imported only when a profile names it:
#
#   consumable   ink and other supplies: rate, days to empty, reorder, swaps, empty
#   adherence    a pill bottle on a load cell: doses taken, late, missed, extra; refills
#   energy       an appliance's power: cycles, standby, daily energy report, maintenance due
#
# A kind's module holds `Detector(cfg, emit)`, with KIND (its name) and EVENTS (the events it
# sends): cfg is the sensor's compiled `insight` mapping,
# emit(t, event, value, fields) sends one insight event. The sampler calls
# feed(t, value, synced) with every plausible reading, before the median and the deadband (a
# detector does its own smoothing: a swap must show within one reading). A detector may also
# have ack(event) (the cloud acknowledged one of its insights), set(args) (a downlink changes
# its settings; ValueError with a message for a bad one), state() (a small dict for diag), and
# snapshot() / restore(snapshot): what it has learned as a small CBOR-able value, and back.
#
# What a detector has learned (weeks of ink use, a motor's baseline, the dose taken an hour ago)
# survives a reboot: the manager writes every detector's snapshot to flash (save(), every
# SAVE_MS of running, after a round in which a detector sent an event, so that a reboot does not
# send it again, and at a clean stop; one file, CRC-checked, replaced atomically) and
# restores it at boot (load()). A snapshot that does not restore (torn, from another kind,
# refused by the detector) is dropped and the detector starts afresh: counted, never a crash.
# Readings taken before the clock is synced are not fed as they come: every insight is about Unix
# time, and a board's first seconds after a reboot would look like a clock set back. A kind in
# HOLD (a pill bottle: a dose taken while a board that rebooted waits for its network is still
# that dose, on time) has them held, as runs of one value (early.py), and fed at the first
# synced reading, dated by the clock's sync.
#
# Portable: runs on a board as on CPython.
import binascii
import struct

from agent import cbor

SAVE_NAME = "insights"     # the snapshot's file, in the event log's store
SAVE_MS = 15 * 60000       # monotonic ms between snapshots while running
KINDS = ("consumable", "adherence", "energy")
HOLD = ("adherence",)      # kinds whose readings before the clock's sync are held (early.py)
STATE = "insight"        # an insight event's state field (agent/events.py)


def short(x):
    """x in a detector's error message, never a whole snapshot's text nor a bignum's digits:
    agent/shown.py, loaded only when a message is made (a board's heap is small)."""
    from agent.shown import shown
    return shown(x, 16)


def in_order(args):
    """A settings map's keys as set() walks them: MicroPython's dicts keep no order, and the
    first bad key is the one an error names, the same on a board as in the simulator."""
    return sorted(args, key=str)


def module(kind):
    if kind not in KINDS:
        raise ValueError("no insight %r" % (kind,))
    return __import__("agent.insights." + kind, None, None, (kind,))


class Insights:
    """The detectors of a profile's sensors, and what the cloud said about their insights:
    snoozed ones are not sent (and counted) until their time is up; those a detector sends
    only once (its ONCE) wait for it."""
    SAVE_MS = SAVE_MS

    def __init__(self, events, sensors, clock=None):
        """events: agent.events.Events; sensors: the compiled profile's sensors; clock: the
        agent's (agent/clock.py), which dates held readings once it is synced (None: none held)."""
        self.events = events
        self.clock = clock
        self.cfgs = {}        # sensor name -> its insight's compiled config
        self.detectors = {}   # sensor name -> detector
        self.snoozed = {}     # (sensor, event) -> until, Unix ms
        self.waiting = {}     # (sensor, event) -> [t, value, fields]: an event sent once per
                              # cartridge, supply or drift (a detector's ONCE), held by a snooze
        self.sent = 0
        self.held = 0         # not sent: snoozed
        self.acked = 0
        self.unsynced = 0     # readings taken while the clock was not synced
        self.restored = 0     # detectors that went on from their snapshot at boot
        self.fresh = 0        # snapshots dropped at boot: the detector started afresh
        self.dirty = False    # a detector sent an event, or the cloud changed one, since save()
        self.save_errors = 0  # snapshots or files that could not be written
        for s in sensors:
            cfg = s.get("insight")
            if cfg is not None:
                self.cfgs[s["name"]] = cfg
                self._make(s["name"])

    def _make(self, name):
        cfg = self.cfgs[name]
        d = module(cfg["type"]).Detector(cfg, self._emitter(name))
        self.detectors[name] = d
        return d

    def _emitter(self, sensor):
        def emit(t, event, value, fields):
            self.dirty = True  # what it has learned led to an event: worth saving now
            d = self.detectors.get(sensor)
            once = getattr(d, "ONCE", None) or {}
            renew = event == getattr(d, "RENEW", None)
            for e in once:
                if once[e] == event:
                    # A new cartridge or supply: what waited for the old one is not needed,
                    # and a snooze of a cartridge's reorder is not the next one's (it held the
                    # next cartridge's reorder until 3 days before dry). A bottle's `refilled`
                    # (a pill put back too) leaves its refill snooze alone.
                    self.waiting.pop((sensor, e), None)
                    if renew:
                        self.snoozed.pop((sensor, e), None)
            first = (getattr(d, "RELEASE", None) or {}).get(event)
            if first is not None and (sensor, first) in self.waiting:
                # Out of ink with its reorder held by a snooze: the order is needed now, and
                # `empty` says it was made (it said so of one that never left the device).
                self._send_waiting((sensor, first))
            key = (sensor, event)
            until = self.snoozed.get(key)
            if until is not None:
                if t < until:
                    self.held += 1
                    if event in once:
                        # Sent once: dropped, the next cartridge's reorder or a drift would
                        # never be told. It goes out when the snooze ends (feed below).
                        self.waiting[key] = [t, value, fields]
                    return
                del self.snoozed[key]
            self.sent += 1
            self.events.emit(t, True, event, sensor, STATE, value, fields)
        return emit

    def _release(self, t):
        """Sends what waited for a snooze that has ended by t (Unix ms), as it was judged."""
        for key in list(self.waiting):
            until = self.snoozed.get(key)
            if until is None or t >= until:
                self._send_waiting(key)

    def _send_waiting(self, key):
        """Sends what waited for a snooze, as it was judged, and ends the snooze."""
        t0, value, fields = self.waiting.pop(key)
        self.snoozed.pop(key, None)
        self.sent += 1
        self.dirty = True
        self.events.emit(t0, True, key[1], key[0], STATE, value, fields)

    def feeder(self, name):
        """fn(t, value, synced) for the sampler, or None when the sensor has no insight."""
        if name not in self.detectors:
            return None
        if self.clock is not None and self.cfgs[name]["type"] in HOLD:
            # by name, as the kinds: only a bundle with such a kind ships it
            return __import__("agent.insights.early", None, None, ("early",)).feeder(self, name)

        def feed(t, v, synced):
            if synced:
                self.feed(name, t, v)
            else:
                self.unsynced += 1
        return feed

    def feed(self, name, t, v):
        """A synced reading to sensor name's detector; what waited for a snooze ended by it."""
        self.detectors[name].feed(t, v, True)
        if self.waiting:
            self._release(t)

    def command(self, sensor, action, event=None, until=None, args=None):
        """ack / snooze / set / settings, from the `insight` command (agent/runtime.py); a
        snooze's until is False while the clock is not synced. A result dict;
        ValueError with the reason for anything it cannot do."""
        d = self.detectors.get(sensor)
        if d is None:
            raise ValueError("no insight on sensor %s (insights: %s)"
                             % (short(sensor), ", ".join(sorted(self.detectors)) or "none"))
        if event is not None and event not in d.EVENTS:
            raise ValueError("the %s insight sends no %s (it sends %s)"
                             % (d.KIND, short(event), ", ".join(d.EVENTS)))
        if action == "ack":
            self.acked += 1
            for key in list(self.waiting):    # acted on: no need to tell it after the snooze
                if key[0] == sensor and (event is None or key[1] == event):
                    del self.waiting[key]
            ack = getattr(d, "ack", None)
            out = {"sensor": sensor, "event": event, "acked": True,
                   "effect": ack(event) if ack is not None else None}
        elif action == "snooze":
            if until is not None and event is not None and event == getattr(d, "RENEW", None):
                # held, it never told the cloud of the new cartridge: the old reorder row
                # stayed up and the new cartridge's reorder looked like a second one
                raise ValueError("%s starts a new supply: it cannot be snoozed" % event)
            if until is False:
                raise ValueError("the clock is not synced yet: a snooze needs the time of day")
            if until is None:
                self.snoozed.pop((sensor, event), None)
            else:
                self.snoozed[(sensor, event)] = until
            out = {"sensor": sensor, "event": event, "until": until}
        elif action == "set":
            setter = getattr(d, "set", None)
            if setter is None:
                raise ValueError("the %s insight of %s has no settings to change"
                                 % (d.KIND, short(sensor)))
            out = {"sensor": sensor, "settings": setter(args)}
        elif action == "settings":      # what holds now: a set() the profile overrode at boot
            return {"sensor": sensor, "settings": d.settings()}
        else:
            raise ValueError("unknown action %s" % short(action))
        self.dirty = True  # what the cloud said must outlive a power cut: saved this round
        return out

    def state(self):
        out = {}
        for name in self.detectors:
            st = getattr(self.detectors[name], "state", None)
            out[name] = st() if st is not None else {}
        return out

    def health(self, now):
        """now: Unix ms (snoozes whose time is up are not counted)."""
        snoozed = 0
        for k in self.snoozed:
            if self.snoozed[k] > now:
                snoozed += 1
        return {"sent": self.sent, "held": self.held, "snoozed": snoozed,
                "unsynced": self.unsynced, "restored": self.restored, "fresh": self.fresh,
                "save_errors": self.save_errors}

    # -- across reboots ---------------------------------------------------------------------

    def save(self, store):
        """Writes every detector's snapshot and the snoozes (store.replace: atomic). A detector
        whose snapshot fails is left out, a file that cannot be written is tried again at the
        next save: counted in save_errors, never raised (the agent samples on)."""
        self.dirty = False
        snaps = {}
        for name in self.detectors:
            d = self.detectors[name]
            if hasattr(d, "snapshot"):
                try:
                    snaps[name] = [d.KIND, d.snapshot()]
                except Exception:
                    self.save_errors += 1
        doc = {"v": 1, "detectors": snaps,
               "snoozed": [[k[0], k[1], self.snoozed[k]] for k in self.snoozed],
               "waiting": [[k[0], k[1]] + self.waiting[k] for k in self.waiting]}
        try:
            try:
                body = cbor.dumps(doc)
            except cbor.CBORError:  # a snapshot CBOR cannot hold: leave out those that fail
                for name in list(snaps):
                    try:
                        cbor.dumps(snaps[name])
                    except cbor.CBORError:
                        del snaps[name]
                        self.save_errors += 1
                body = cbor.dumps(doc)
            store.replace(SAVE_NAME, body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF))
        except Exception:  # a full or failing filesystem
            self.save_errors += 1
            self.dirty = True

    def load(self, store):
        """Restores what save() wrote, where it still fits this profile; returns how many
        detectors went on from their snapshot."""
        data = store.read_all(SAVE_NAME)
        if data is None:
            return 0
        doc = None
        if len(data) > 4 and struct.unpack("<I", data[-4:])[0] == (
                binascii.crc32(data[:-4]) & 0xFFFFFFFF):
            try:
                from agent import cbor_decode
                doc = cbor_decode.loads(memoryview(data)[:-4])  # not a copy of the file
            except Exception:  # a CRC that matched by chance: nothing to go on
                doc = None
        if not isinstance(doc, dict) or doc.get("v") != 1:
            self.fresh += len(self.detectors)
            return 0
        snaps = doc.get("detectors")
        fresh = []
        for name in self.detectors:
            snap = snaps.get(name) if isinstance(snaps, dict) else None
            d = self.detectors[name]
            if snap is None:
                continue
            try:
                if not (isinstance(snap, list) and len(snap) == 2 and snap[0] == d.KIND):
                    raise ValueError("a snapshot of another kind")
                d.restore(snap[1])
                self.restored += 1
            except Exception:  # torn, foreign or refused: this detector starts afresh
                self.fresh += 1
                fresh.append(name)
                self._make(name)
        snoozed = doc.get("snoozed")
        for item in snoozed if isinstance(snoozed, list) else ():
            if (isinstance(item, list) and len(item) == 3 and item[0] in self.detectors
                    and item[1] in self.detectors[item[0]].EVENTS and isinstance(item[2], int)
                    and item[1] != getattr(self.detectors[item[0]], "RENEW", None)):
                self.snoozed[(item[0], item[1])] = item[2]   # one an older version took: not
        waiting = doc.get("waiting")
        for item in waiting if isinstance(waiting, list) else ():
            # What waited for a detector that starts afresh is judged again by it.
            if (isinstance(item, list) and len(item) == 5 and item[0] in self.detectors
                    and item[0] not in fresh
                    and item[1] in (getattr(self.detectors[item[0]], "ONCE", None) or {})
                    and isinstance(item[2], int) and isinstance(item[4], (dict, type(None)))):
                self.waiting[(item[0], item[1])] = item[2:]
        return self.restored
