"""Removing an MQTT session from a broker: what a run of `tether simulate` does with its ingest's
persistent session when it ends, so the broker does not queue messages for it forever.

A persistent session (clean_session=False) outlives the client's connection: the broker keeps
its subscriptions and queues every matching message until the same client id returns. The way
to end one from an MQTT 3.1.1 client is to connect with that client id and clean_session=True
(the broker discards the old session) and disconnect (the new, clean one ends with it).
"""
import threading


def forget(host, port, client_id, timeout=5.0):
    """Ends the session of `client_id` on the broker. True once the broker has accepted the
    clean connection (the session is gone); False when it could not be reached in time, which
    leaves the session there (the caller says so)."""
    import paho.mqtt.client as paho

    accepted = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True, protocol=paho.MQTTv311)

    def on_connect(cl, userdata, flags, reason, properties):
        if not reason.is_failure:
            accepted.set()
    client.on_connect = on_connect
    try:
        client.connect(host, port, 30)
    except OSError:
        return False
    client.loop_start()
    try:
        return accepted.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
