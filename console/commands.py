"""Commands from the console to devices (docs/uplink.md, "Commands"): each is published on the
device's command topic with an id of its own, and waited for on the device's event topic, where
its reply comes; the console subscribes to that topic only while it waits."""
import secrets
import ssl
import threading

import cbor2

from agent import cbor_decode
from ingest.topics import command_topic
from ingest.url import parse_broker


class CommandError(RuntimeError):
    """A command that could not be sent or got no reply: the message says which and why;
    unanswered: it was sent, and no reply came."""

    def __init__(self, message, unanswered=False):
        super().__init__(message)
        self.unanswered = unanswered


class Commander:
    """A paho client on the broker, connected in the background and reconnecting."""

    def __init__(self, broker_url, prefix="tether/v1", ca=None, timeout=10.0):
        self.broker = parse_broker(broker_url)
        self.prefix = prefix
        self.ca = ca
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()
        self._waiting = {}       # command id -> [threading.Event, reply]
        self._subscribed = {}    # device -> [commands waiting on its topic, subscribed Event]
        self._acks = {}          # subscribe mid -> threading.Event
        self.connected = False
        self.last_error = None

    def start(self):
        import paho.mqtt.client as paho
        client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id="tether-console-" + secrets.token_hex(4),
                             protocol=paho.MQTTv311)
        b = self.broker
        if b.username is not None:
            client.username_pw_set(b.username, b.password)
        if b.tls:
            client.tls_set_context(ssl.create_default_context(cafile=self.ca))
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        client.connect_async(b.host, b.port, 30)
        client.loop_start()
        return self

    def stop(self):
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def send(self, device, command):
        """The device's reply {"reply", "ok", "result" | "error"} to command (a dict without its
        id); CommandError when it cannot be sent or no reply comes within the timeout."""
        if not self.connected:
            raise CommandError("not connected to the broker %s:%d%s" % (
                self.broker.host, self.broker.port,
                " (%s)" % self.last_error if self.last_error else ""))
        cid = "console-" + secrets.token_hex(6)
        waiter = [threading.Event(), None]
        with self._lock:
            self._waiting[cid] = waiter
            sub = self._subscribed.get(device)
            if sub is None:
                # The first command to a device subscribes to its event topic; those that come
                # while it is in force wait for the same SUBACK. Subscribing and unsubscribing
                # under the lock keeps them in order on the wire.
                sub = self._subscribed[device] = [0, threading.Event()]
                rc, mid = self._client.subscribe(self._topic(device), qos=1)
                if rc == 0:
                    self._acks[mid] = sub[1]
            sub[0] += 1
        try:
            if not sub[1].wait(self.timeout):
                raise CommandError("the broker did not confirm the subscription to %s"
                                   % self._topic(device))
            doc = dict(command, id=cid)
            info = self._client.publish(command_topic(self.prefix, device), cbor2.dumps(doc),
                                        qos=1)
            if info.rc != 0:
                raise CommandError("the broker did not take the command (paho error %d)"
                                   % info.rc)
            if not waiter[0].wait(self.timeout):
                raise CommandError("sent, but no reply from %s within %.0f s: it may be "
                                   "offline, and a command it misses is lost (a device keeps "
                                   "no session at the broker)" % (device, self.timeout),
                                   unanswered=True)
            return waiter[1]
        finally:
            with self._lock:
                self._waiting.pop(cid, None)
                sub[0] -= 1
                if sub[0] == 0 and self._subscribed.get(device) is sub:
                    del self._subscribed[device]
                    for mid in [m for m, e in self._acks.items() if e is sub[1]]:
                        del self._acks[mid]  # a SUBACK that never came
                    if self.connected:
                        self._client.unsubscribe(self._topic(device))

    def _topic(self, device):
        return "%s/%s/up/event" % (self.prefix, device)

    # ---- paho callbacks (its network thread) ----

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.connected = not reason.is_failure
        self.last_error = None if self.connected else str(reason)
        if self.connected:
            with self._lock:
                # The old connection's SUBACKs will not come: a command waiting for one gets
                # the new subscription's (its Event was left in _acks for good, and it timed out)
                self._acks.clear()
                for sub_device, sub in self._subscribed.items():
                    rc, mid = client.subscribe(self._topic(sub_device), qos=1)
                    if rc == 0 and not sub[1].is_set():
                        self._acks[mid] = sub[1]

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        # A refused CONNECT comes here too, as "Unspecified error": the CONNACK's reason,
        # which _on_connect kept ("Not authorized"), is the one to tell.
        if self.connected or self.last_error is None:
            self.last_error = str(reason)
        self.connected = False

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self._lock:
            done = self._acks.pop(mid, None)
        if done is not None and not any(r.is_failure for r in reasons):
            done.set()

    def _on_message(self, client, userdata, msg):
        try:
            # The bounded decoder the ingest reads devices with: cbor2 honours value sharing
            # (tags 28/29), and a 300-byte reply of a list shared 40 levels deep expanded to
            # 2**40 items in the console's answer.
            doc = cbor_decode.loads(msg.payload)
        except Exception:  # noqa: BLE001 - an event (an array) or garbage: not a reply to us
            return
        if isinstance(doc, dict) and isinstance(doc.get("reply"), str):
            with self._lock:
                waiter = self._waiting.get(doc["reply"])
            if waiter is not None:
                waiter[1] = doc
                waiter[0].set()
