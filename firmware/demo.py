"""`tether demo`: checks every example profile, then encodes one day of the reference workload
in each encoding, decodes it back, and prints what it costs on the air."""
import json
import os
import pathlib
import sys

from firmware import batchfile, examples
from firmware.airtime import mqtt_publish_overhead
from firmware.profile.compile import compile as compile_profile

ENCODINGS = (("senml", False), ("senml", True), ("compact", False), ("compact", True))


def check_examples(folder, out):
    ok = True
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "secrets.yaml":
            continue
        profile, errors = compile_profile(str(path))
        if errors:
            ok = False
            out.write("FAIL  %s\n%s\n" % (path, "\n".join(errors)))
        else:
            shown = os.path.relpath(path)
            out.write("ok    %-32s %-20s %d sensors on %s\n" % (
                path if shown.startswith("..") else shown, profile["device"]["id"],
                len(profile["sensors"]), profile["platform"]))
    return ok


def main(args, out=sys.stdout):
    from simulator import reference
    folder = pathlib.Path(args.examples)
    out.write("Example profiles (%s):\n" % folder)
    if not check_examples(folder, out):
        return 2
    profile, errors = compile_profile(str(folder / "reference-printer.yaml"))
    if errors:
        out.write("\n".join(errors) + "\n")
        return 2
    lines = list(reference.readings())
    outdir = pathlib.Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    reference.write(str(outdir / "reference-readings.jsonl"))
    out.write("\nOne day of the reference workload (%d readings, 7 channels, every 10 s), "
              "batches of 10 minutes:\n\n" % len(lines))
    out.write("  %-17s %8s %9s %14s  %s\n" % ("encoding", "batches", "bytes", "B/reading*",
                                             "decoded back"))
    device = profile["device"]["id"]
    topic = "%s/%s/up/batch" % (profile["uplink"]["prefix"], device)
    text = [json.dumps(r) for r in lines]
    for encoding, deflate in ENCODINGS:
        profile["uplink"]["encoding"] = encoding
        profile["uplink"]["deflate"] = deflate
        schema, batches, _ = batchfile.encode(profile, text)
        data = (schema.to_cbor() if encoding == "compact" else b"") + b"".join(batches)
        name = encoding + ("+deflate" if deflate else "")
        (outdir / ("reference.%s.cbor" % name)).write_bytes(data)
        back = []
        for _, kind, item in batchfile.items(data):
            if kind == "batch":
                back.extend(item.readings)
        same = back == [(r["t"] * 1000, r["n"], r["v"]) for r in lines]
        air = sum(len(b) + mqtt_publish_overhead(topic, len(b)) for b in batches)
        out.write("  %-17s %8d %9d %14.3f  %s\n" % (name, len(batches), len(data),
                                                   air / len(lines),
                                                   "identical" if same else "DIFFERENT"))
        if not same:
            return 1
    # The same day as a device without batching sends it: one JSON message per reading.
    naive = 0
    for r in lines:
        msg = json.dumps({"device": device, "sensor": r["n"], "ts": r["t"], "value": r["v"]})
        naive += len(msg) + mqtt_publish_overhead("%s/%s/%s" % (
            profile["uplink"]["prefix"], device, r["n"]), len(msg))
    out.write("\n* batch + MQTT PUBLISH framing on %s. The same readings as one JSON message "
              "each (device, sensor, ts, value; on %s/%s/SENSOR): %.1f B/reading.\n"
              % (topic, profile["uplink"]["prefix"], device, naive / len(lines)))
    out.write("Files are in %s/: `tether decode %s/reference.compact.cbor | head` prints readings "
              "back.\n" % (outdir, outdir))
    return 0


def add_command(sub):
    p = sub.add_parser("demo", help="check the example profiles, encode and decode a day of the "
                                    "reference workload, print the sizes")
    p.add_argument("--examples", default=examples.folder(), metavar="DIR",
                   help="folder of example profiles (default: the repository's)")
    p.add_argument("--out", default="tether-demo", metavar="DIR",
                   help="where to write the readings and batch files (default: tether-demo)")
    p.set_defaults(func=main)
