"""`tether encode`, `tether decode` and `tether demo`, run as a user runs them."""
import json
import re
import subprocess
import sys

import pytest

from simulator import reference

PROFILE = "examples/reference-printer.yaml"


def tether(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "firmware.cli"] + list(args), input=stdin,
                          capture_output=True)


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "readings.jsonl"
    reference.write(str(path), hours=2)
    return path


@pytest.mark.parametrize("encoding,deflate", [("senml", False), ("senml", True),
                                              ("compact", False), ("compact", True)])
def test_encode_then_decode_prints_the_readings_back_byte_for_byte(two_hours, tmp_path, encoding,
                                                                   deflate):
    out = tmp_path / "batches.cbor"
    args = ["encode", "--profile", PROFILE, "--encoding", encoding, str(two_hours), "-o", str(out)]
    proc = tether(*args + (["--deflate"] if deflate else []))
    assert proc.returncode == 0, proc.stderr
    assert b"12 batches" in proc.stderr  # 2 h in batches of 10 min
    proc = tether("decode", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == two_hours.read_bytes()


def test_encode_cuts_batches_by_the_profile_policy(tmp_path):
    readings = tmp_path / "r.jsonl"
    # 25 readings of one channel, one a minute: max_age 10 min cuts at 10, 10 and 5.
    readings.write_text("".join(json.dumps({"t": 1763856000 + 60 * i, "n": "power", "v": i / 10})
                                + "\n" for i in range(25)))
    out = tmp_path / "b.cbor"
    assert tether("encode", "--profile", PROFILE, str(readings), "-o", str(out)).returncode == 0
    from firmware.batchfile import items
    batches = [item for _, kind, item in items(out.read_bytes()) if kind == "batch"]
    assert [len(b.readings) for b in batches] == [10, 10, 5]
    assert [b.seq for b in batches] == [0, 1, 2]
    assert all(b.device == "printer-0001" and b.synced for b in batches)


def test_decode_senml_prints_one_rfc8428_json_pack_per_batch(two_hours, tmp_path):
    out = tmp_path / "b.cbor"
    tether("encode", "--profile", PROFILE, str(two_hours), "-o", str(out))
    proc = tether("decode", "--senml", str(out))
    packs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(packs) == 12
    first = packs[0][0]
    assert first == {"bn": "energy", "bt": 1763856000, "bu": "Wh", "t": 0, "v": 15230}
    assert {"bn": "ink_c", "bu": "%", "t": 0, "v": 71.4} == packs[0][60]
    assert sum(len(p) for p in packs) == 2 * 360 * 7


def test_decode_of_a_cut_file_names_the_byte_offset_and_exits_2(two_hours, tmp_path):
    out = tmp_path / "b.cbor"
    tether("encode", "--profile", PROFILE, "--encoding", "senml", str(two_hours), "-o", str(out))
    data = out.read_bytes()
    cut = tmp_path / "cut.cbor"
    cut.write_bytes(data[:len(data) - 100])
    proc = tether("decode", str(cut))
    assert proc.returncode == 2
    assert b"cut.cbor: at byte " in proc.stderr and b"ends" in proc.stderr
    # Everything before the broken batch was printed.
    assert len(proc.stdout.splitlines()) == 11 * 420


def test_decode_of_garbage_from_stdin_is_a_clear_error_not_a_crash():
    proc = tether("decode", "-", stdin=b"\x88\x01\x63abc\x01\x01\x00\x05\x00\x41")
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"tether decode: -: at byte 11:")
    proc = tether("decode", "-", stdin=b"\x82\x01\x02")
    assert proc.returncode == 2 and b"8 fields" in proc.stderr
    proc = tether("decode", "-", stdin=b"\xa1\x01\x02")
    assert proc.returncode == 2 and b"not a Tether schema" in proc.stderr


def test_encode_rejects_a_channel_the_profile_does_not_have(tmp_path):
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1763856000, "n": "power", "v": 3.5}\n'
                        '{"t": 1763856000, "n": "toner", "v": 3}\n')
    proc = tether("encode", "--profile", PROFILE, str(readings), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert b"line 2: channel 'toner' is not in the profile" in proc.stderr


def test_encode_reports_readings_rounded_to_their_resolution(tmp_path):
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1763856000, "n": "power", "v": 3.54}\n')
    out = tmp_path / "o.cbor"
    proc = tether("encode", "--profile", PROFILE, str(readings), "-o", str(out))
    assert proc.returncode == 0 and b"1 readings rounded" in proc.stderr
    assert json.loads(tether("decode", str(out)).stdout)["v"] == 3.5


def test_demo_checks_the_examples_and_round_trips_every_encoding(tmp_path):
    proc = tether("demo", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    text = proc.stdout.decode()
    for name in ("fridge", "pill-bottle", "printer", "reference-printer", "washer"):
        assert "ok    examples/%s.yaml" % name in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("senml", "compact"))]
    assert [r[0] for r in rows] == ["senml", "senml+deflate", "compact", "compact+deflate"]
    assert all(r[-1] == "identical" for r in rows)
    assert float(rows[2][3]) <= 1.2 and float(rows[0][3]) <= 16
    # The baseline is measured in the run, not cited from a file the checkout does not have.
    naive = re.search(r"as one JSON message each .*: ([\d.]+) B/reading", text)
    assert naive and float(naive.group(1)) > 50 * float(rows[2][3])
    assert "shared/" not in text


def test_decode_prints_json_strict_parsers_read_and_says_when_the_input_is_text(tmp_path):
    # A SenML NaN printed as NaN, which json.loads(strict) and other languages refuse; a JSON
    # file given by mistake was "the input ends 2482646927631527241 bytes early".
    import cbor2
    lines = tmp_path / "r.jsonl"
    lines.write_text('{"t": 1763856000, "n": "power", "v": 1.5}\n'
                     '{"t": 1763856010, "n": "power", "v": 2.5}\n')
    batches = tmp_path / "b.cbor"
    proc = tether("encode", "--profile", PROFILE, "--encoding", "senml", str(lines), "-o",
                  str(batches))
    assert proc.returncode == 0, proc.stderr
    # Another SenML device's pack, whose second value is NaN (tether encode refuses one).
    envelope = cbor2.loads(batches.read_bytes())
    pack = cbor2.loads(envelope[-1])
    pack[1][2] = float("nan")
    envelope[-1] = cbor2.dumps(pack)
    batches.write_bytes(cbor2.dumps(envelope))
    proc = tether("decode", str(batches))
    assert proc.returncode == 0, proc.stderr

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail("not JSON: " + c))
    got = [strict(line) for line in proc.stdout.decode().splitlines()]
    assert [r["v"] for r in got] == [1.5, None]
    proc = tether("decode", "--senml", str(batches))
    assert [r["v"] for r in strict(proc.stdout.decode())] == [1.5, None]
    proc = tether("decode", str(lines))
    assert proc.returncode == 2
    # the hint alone: read as CBOR, text said it "ends 2482646927917135386 bytes early"
    assert proc.stderr.decode() == ("tether decode: %s: this is text (JSON?), not CBOR: "
                                    "`tether encode` makes a batch file of JSON-lines readings\n"
                                    % lines)


def test_decode_senml_keeps_each_readings_unit_and_type_for_another_devices_pack(tmp_path):
    # A reading in W was labelled kW (the channel's last unit); text and booleans were "v".
    import cbor2
    pack = [{-2: "p", -4: "W", -3: 1763856000, 2: 1, 6: 0}, {1: "kW", 2: 2, 6: 1},
            {0: "mode", 3: "eco", 6: 2}, {0: "door", 4: True, 6: 3}, {0: "q", 2: 5, 6: 4}]
    batch = cbor2.dumps([1, "other-1", 0, 1, 0, 0, 1, cbor2.dumps(pack)])
    (tmp_path / "b.cbor").write_bytes(batch)
    proc = tether("decode", "--senml", str(tmp_path / "b.cbor"))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == [
        {"bn": "p", "bt": 1763856000, "bu": "W", "t": 0, "v": 1},
        {"u": "kW", "t": 1, "v": 2},
        {"bn": "pmode", "t": 2, "vs": "eco"},   # bn and bu carry over (RFC 8428)
        {"bn": "pdoor", "t": 3, "vb": True},
        {"bn": "pq", "t": 4, "v": 5}]


@pytest.mark.parametrize("encoding", ["senml", "compact"])
def test_decode_says_when_a_batchs_times_are_not_unix_time(tmp_path, encoding):
    # An unsynced device's times count from its start: printed as "t in Unix seconds" they
    # read as January 1970, and a SenML pack's base time under 2^28 as relative to now.
    import array
    from agent import profile as compiled_profile
    from firmware.profile.compile import compile as compile_profile
    profile, errors = compile_profile(PROFILE)
    assert not errors
    profile["uplink"]["encoding"] = encoding
    enc = compiled_profile.encoder(profile, device_id="p1")
    out = bytearray(compiled_profile.schema(profile).to_cbor()) if encoding == "compact" else \
        bytearray()
    for synced, base in ((False, 31093352), (True, 1763856000000)):
        out += bytes(enc.encode(base, array.array("i", [0, 1000]), array.array("B", [0, 0]),
                                array.array("i", [500, 501]), 0, 2, 0, 1, 0, synced))
    (tmp_path / "b.cbor").write_bytes(bytes(out))
    lines = [json.loads(x) for x in tether("decode", str(tmp_path / "b.cbor")).stdout.splitlines()]
    assert [x.get("synced") for x in lines] == [False, False, None, None], lines
    assert lines[0]["t"] == 31093.352 and lines[2]["t"] == 1763856000
    packs = [json.loads(x) for x in tether("decode", "--senml",
                                           str(tmp_path / "b.cbor")).stdout.splitlines()]
    assert packs[0][0]["unsynced_"] is True and "unsynced_" not in packs[1][0], packs


def test_encode_takes_back_the_unsynced_readings_decode_prints(tmp_path):
    lines = ['{"t": 31093.352, "n": "ink_c", "v": 50.0, "synced": false}',
             '{"t": 31094.352, "n": "ink_c", "v": 50.1, "synced": false}',
             '{"t": 1763856000, "n": "ink_c", "v": 50.2}']
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    done = tether("encode", "--profile", PROFILE, "--device", "p1", str(tmp_path / "r.jsonl"),
                  "-o", str(tmp_path / "b.cbor"))
    assert done.returncode == 0, done.stderr
    back = [json.loads(x) for x in tether("decode", str(tmp_path / "b.cbor")).stdout.splitlines()]
    assert back == [json.loads(x) for x in lines]
    (tmp_path / "bad.jsonl").write_text('{"t": 1, "n": "ink_c", "v": 1, "synced": "no"}\n')
    done = tether("encode", "--profile", PROFILE, "--device", "p1", str(tmp_path / "bad.jsonl"),
                  "-o", str(tmp_path / "x.cbor"))
    assert done.returncode == 2 and b"line 1: synced must be true or false" in done.stderr
