# The energy insight (agent/insights/__init__.py, docs/insights.md).
KIND = "energy"
EVENTS = ()


class Detector:
    KIND = KIND
    EVENTS = EVENTS

    def __init__(self, cfg, emit):
        self.cfg = cfg
        self.emit = emit

    def feed(self, t, v, synced):
        pass
