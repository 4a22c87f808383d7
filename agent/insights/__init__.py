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
# its settings; ValueError with a message for a bad one) and state() (a small dict for diag).
#
# Portable: runs on a board as on CPython.
KINDS = ("consumable", "adherence", "energy")
STATE = "insight"        # an insight event's state field (agent/events.py)


def module(kind):
    if kind not in KINDS:
        raise ValueError("no insight %r" % (kind,))
    return __import__("agent.insights." + kind, None, None, (kind,))


def modules(profile):
    """Sorted dotted names of the insight modules a compiled profile uses."""
    out = []
    for s in profile["sensors"]:
        i = s.get("insight")
        if i is not None:
            name = "agent.insights." + i["type"]
            if name not in out:
                out.append(name)
    return sorted(out)


class Insights:
    """The detectors of a profile's sensors, and what the cloud said about their insights:
    snoozed ones are not sent (and counted) until their time is up."""

    def __init__(self, events, sensors):
        """events: agent.events.Events; sensors: the compiled profile's sensors."""
        self.events = events
        self.detectors = {}   # sensor name -> detector
        self.snoozed = {}     # (sensor, event) -> until, device ms
        self.sent = 0
        self.held = 0         # not sent: snoozed
        self.acked = 0
        self.synced = False
        for s in sensors:
            cfg = s.get("insight")
            if cfg is not None:
                self.detectors[s["name"]] = module(cfg["type"]).Detector(
                    cfg, self._emitter(s["name"]))

    def _emitter(self, sensor):
        def emit(t, event, value, fields):
            until = self.snoozed.get((sensor, event))
            if until is not None:
                if t < until:
                    self.held += 1
                    return
                del self.snoozed[(sensor, event)]
            self.sent += 1
            self.events.emit(t, self.synced, event, sensor, STATE, value, fields)
        return emit

    def for_sensor(self, name):
        return self.detectors.get(name)

    def feeder(self, name):
        """fn(t, value, synced) for the sampler, or None when the sensor has no insight."""
        d = self.detectors.get(name)
        if d is None:
            return None

        def feed(t, v, synced):
            self.synced = synced
            d.feed(t, v, synced)
        return feed

    def command(self, sensor, action, event=None, until=None, args=None):
        """ack / snooze / set, from the `insight` command (agent/runtime.py). A result dict;
        ValueError with the reason for anything it cannot do."""
        d = self.detectors.get(sensor)
        if d is None:
            raise ValueError("no insight on sensor %r (insights: %s)"
                             % (sensor, ", ".join(sorted(self.detectors)) or "none"))
        if event is not None and event not in d.EVENTS:
            raise ValueError("the %s insight sends no %r (it sends %s)"
                             % (d.KIND, event, ", ".join(d.EVENTS)))
        if action == "ack":
            self.acked += 1
            ack = getattr(d, "ack", None)
            return {"sensor": sensor, "event": event, "acked": True,
                    "effect": ack(event) if ack is not None else None}
        if action == "snooze":
            if until is None:
                self.snoozed.pop((sensor, event), None)
            else:
                self.snoozed[(sensor, event)] = until
            return {"sensor": sensor, "event": event, "until": until}
        if action == "set":
            setter = getattr(d, "set", None)
            if setter is None:
                raise ValueError("the %s insight of %r has no settings to change"
                                 % (d.KIND, sensor))
            return {"sensor": sensor, "settings": setter(args)}
        raise ValueError("unknown action %r" % (action,))

    def state(self):
        out = {}
        for name in self.detectors:
            st = getattr(self.detectors[name], "state", None)
            out[name] = st() if st is not None else {}
        return out

    def health(self):
        return {"sent": self.sent, "held": self.held, "snoozed": len(self.snoozed)}
