"""Bytes per reading on the air for the reference day, per encoding.

    python3 bench/wire_size.py

On the air = MQTT payload + the MQTT 3.1.1 QoS 1 PUBLISH that carries it (fixed header, topic
tether/v1/printer-0001/up/batch, packet id), summed over the day's 60,480 readings. Baselines,
measured in the same run on the same readings: naive JSON (one PUBLISH per reading) and
SenML-JSON (RFC 8428 JSON, one PUBLISH per 420-reading batch). Every Tether batch is decoded
back (agent.batch_decode) and compared with the input readings, value for value.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common as c  # noqa: E402

from agent import batch_decode  # noqa: E402
from firmware import batchfile  # noqa: E402
from firmware.airtime import mqtt_publish_overhead  # noqa: E402

TARGETS = {"compact": 1.2, "compact+deflate": 0.35, "senml": 16.0}
REFERENCE = [  # shared/bench/README.md, measured before Tether existed
    ("one JSON message per reading", 81.9, "payload only: no MQTT framing"),
    ("columnar varints, per 10-min batch", 1.02, "body only: no envelope, no schema, no MQTT"),
    ("the same, each batch deflated", 0.22, "body only: no envelope, no schema, no MQTT"),
    ("the same over the whole day, xz -9", 0.078, "information content, for scale"),
]
CONFIGS = [  # (label, encoding, deflate)
    ("SenML-CBOR", "senml", False),
    ("SenML-CBOR+deflate", "senml", True),
    ("compact", "compact", False),
    ("compact+deflate", "compact", True),
]


def naive_json(rs):
    """One message per reading, as a device with no batching would send it."""
    payload = overhead = 0
    for r in rs:
        msg = json.dumps({"device": c.DEVICE, "sensor": r["n"], "ts": r["t"], "value": r["v"]})
        payload += len(msg)
        overhead += mqtt_publish_overhead(c.TOPIC, len(msg))
    example = json.dumps({"device": c.DEVICE, "sensor": rs[0]["n"], "ts": rs[0]["t"],
                          "value": rs[0]["v"]})
    return payload, overhead, len(rs), example


def check_reference_generator(rs):
    """simulator/reference.py and shared/bench/make_reference.py must give the same lines."""
    shared = c.ROOT.parent / "shared" / "bench" / "make_reference.py"
    if not shared.exists():
        return "shared/bench/make_reference.py not found: identity with it not checked"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ref.jsonl")
        subprocess.run([sys.executable, str(shared), out], check=True, capture_output=True)
        with open(out) as f:
            theirs = f.read().splitlines()
    ours = [json.dumps(r) for r in rs]
    if theirs != ours:
        raise SystemExit("simulator/reference.py differs from shared/bench/make_reference.py")
    return "identical to shared/bench/make_reference.py (%d lines)" % len(ours)


def verify(label, datas, batches, sch):
    """Decodes every batch and compares it with its input; returns the number of deflated ones."""
    deflated = 0
    schemas = {sch.id: sch}
    for data, b in zip(datas, batches):
        d = batch_decode.decode(data, schemas)
        if (d.device, d.seq, d.boot, d.dropped, d.synced) != (c.DEVICE, b.seq, c.BOOT, 0, True):
            raise SystemExit("%s batch %d: envelope does not match" % (label, b.seq))
        got = [(t, n, v, type(v)) for t, n, v in d.readings]
        want = [(t, n, v, type(v)) for t, n, v in b.readings]
        if got != want:
            for i, (g, w) in enumerate(zip(got, want)):
                if g != w:
                    raise SystemExit("%s batch %d, reading %d: decoded %r, input %r"
                                     % (label, b.seq, i, g, w))
            raise SystemExit("%s batch %d: %d readings decoded, %d in" % (label, b.seq,
                                                                          len(got), len(want)))
        deflated += d.deflated
    return deflated


def main():
    print("Tether wire size: bytes per reading on the air, reference day")
    rs = c.day()
    print("workload: %d readings, 7 channels, 144 batches of 420 (10 min); %s"
          % (len(rs), check_reference_generator(rs)))
    p = c.profile()
    sch = c.schema(p)
    batches = c.batches(rs, sch)
    lines = [json.dumps(r) for r in rs]
    print("device id %r, topic %r" % (c.DEVICE, c.TOPIC))
    print()

    rows = []
    figures = {}
    notes = []
    n = len(rs)

    payload, overhead, msgs, example = naive_json(rs)
    figures["naive"] = (payload + overhead) / n
    rows.append(["naive JSON, 1 msg/reading (baseline)", "%d" % msgs, "-", "%.2f" % (payload / n),
                 "%.2f" % (overhead / n), "%.2f" % figures["naive"], "-", ""])

    for label, encoding, deflate in CONFIGS:
        enc = c.encoder(encoding, deflate, p)
        datas = [bytes(b.encode(enc)) for b in batches]
        # The same batches, cut by the agent's own buffer from the JSON lines (tether encode).
        q = c.profile()
        q["uplink"]["encoding"] = encoding
        q["uplink"]["deflate"] = deflate
        _, via_buffer, _ = batchfile.encode(q, lines, c.DEVICE)
        if [bytes(x) for x in via_buffer] != datas:
            raise SystemExit("%s: the buffer's batches differ from the benchmark's" % label)
        deflated = verify(label, datas, batches, sch)
        payload = sum(len(d) for d in datas)
        overhead = sum(mqtt_publish_overhead(c.TOPIC, len(d)) for d in datas)
        body = 0
        for d in datas:
            body += len(batch_decode.read_envelope(d).body)
        key = encoding + ("+deflate" if deflate else "")
        figures[key] = (payload + overhead) / n
        figures[key + " body"] = body / n
        target = TARGETS.get(key)
        rows.append(["%s (Tether)" % label, "%d" % len(datas), "%.3f" % (body / n),
                     "%.3f" % (payload / n), "%.3f" % (overhead / n), "%.3f" % figures[key],
                     "<= %.2f" % target if target else "-",
                     c.verdict(figures[key], target) if target else ""])
        notes.append("%s: %d batches, %d deflated (deflate is kept only where it is smaller), "
                     "every batch decoded back to exactly its 420 input readings (time, "
                     "channel, value and type), and byte-identical to what the agent's buffer "
                     "cuts (firmware.batchfile.encode)" % (label, len(datas), deflated))
        if encoding == "senml" and not deflate:
            senml_batches = datas

    # SenML-JSON: the same packs in RFC 8428's JSON form, one PUBLISH per batch.
    payload = overhead = 0
    for d in senml_batches:
        pack = json.dumps(batchfile.senml_json(batch_decode.decode(d)), separators=(",", ":"))
        payload += len(pack)
        overhead += mqtt_publish_overhead(c.TOPIC, len(pack))
    figures["senml-json"] = (payload + overhead) / n
    rows.insert(1, ["SenML-JSON, 1 msg/batch (baseline)", "144", "-", "%.2f" % (payload / n),
                    "%.2f" % (overhead / n), "%.2f" % figures["senml-json"], "-", ""])

    c.table(["encoding", "msgs/day", "body", "payload", "MQTT", "ON AIR", "target", ""], rows,
            left=(0, 7))
    print("  (bytes per reading; body = batch body without the envelope; payload = what the "
          "PUBLISH carries; MQTT = PUBLISH header + topic + packet id)")
    print()
    for note in notes:
        print("- " + note)
    schema_doc = len(sch.to_cbor())
    schema_topic = "tether/v1/%s/up/schema" % c.DEVICE
    schema_air = schema_doc + mqtt_publish_overhead(schema_topic, schema_doc)
    print("- not counted above: a compact batch names its channels through the schema document "
          "(%d B, %d B on the air on %s), published once per connection: once a day it adds "
          "%.4f B/reading" % (schema_doc, schema_air, schema_topic, schema_air / n))
    print("- not counted above: each QoS 1 PUBLISH is answered by a 4-byte PUBACK (downlink): "
          "%.3f B/reading for naive JSON, %.4f for one message per batch" % (4.0, 4 * 144 / n))
    print("- naive JSON message: %s (json.dumps defaults, ts in Unix seconds as in the workload)"
          % example)
    print("- SenML-JSON: the same packs as SenML-CBOR (records grouped per channel, bn/bt/bu, "
          "relative t, v) in RFC 8428's JSON form without spaces (firmware.batchfile.senml_json), "
          "no envelope")
    print()
    print("Reference figures (shared/bench/README.md, measured before Tether, same readings):")
    c.table(["reference encoding", "B/reading", "what it excludes"],
            [[a, "%.3g" % b, x] for a, b, x in REFERENCE], left=(0, 2))
    print("  compare like with like: naive JSON payload only here = %.2f vs 81.9 (the reference "
          "message form is not written down; ms timestamps plus a line end would give 81.87)"
          % (sum(len(json.dumps({"device": c.DEVICE, "sensor": r["n"], "ts": r["t"],
                                 "value": r["v"]})) for r in rs) / n))
    print("  Tether compact body only = %.3f (deflate on: %.3f) vs 1.02 (varints) and 0.22 "
          "(varints+deflate)" % (figures["compact body"], figures["compact+deflate body"]))
    print()
    print("Targets (on the air):")
    for key in ("compact", "compact+deflate", "senml"):
        print("  %-16s %.4f B/reading  target <= %.2f  %s  (%.0fx smaller than naive JSON's %.1f)"
              % (key, figures[key], TARGETS[key], c.verdict(figures[key], TARGETS[key]),
                 figures["naive"] / figures[key], figures["naive"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
