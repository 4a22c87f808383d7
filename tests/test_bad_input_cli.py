"""Bad input to the `tether` command, run as a user runs it: a plain message and exit 2, never a
traceback, never unbounded memory, and never a line of a file the profile had no business
reading."""
import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "examples", "reference-printer.yaml")
PROFILE = """\
device: {id: kettle}
platform: sim
buses: [{id: i2c0, type: i2c, sda: 1, scl: 2}]
sensors: [{name: power, driver: ina219, bus: i2c0}]
uplink: {broker: "mqtt://localhost"}
"""
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def _small_memory():
    # 1 GiB of address space: reading /dev/zero whole would die with a MemoryError long before
    # it finished, so a pass proves the read was bounded.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def tether(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "firmware.cli"] + [str(a) for a in args],
                          stdin=stdin, capture_output=True, text=True, cwd=ROOT, env=env,
                          preexec_fn=_small_memory, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def refused(proc, *says):
    assert proc.returncode == 2, proc.stderr
    for text in says:
        assert text in proc.stderr


def product(tmp_path, head=""):
    """A valid profile in tmp_path/product/ with `head` (packages, say) on top."""
    folder = tmp_path / "product"
    folder.mkdir(exist_ok=True)
    path = folder / "p.yaml"
    path.write_text(textwrap.dedent(head) + PROFILE)
    return path


def test_check_of_dev_zero_states_the_profile_size_limit():
    refused(tether("check", "/dev/zero"),
            "/dev/zero: cannot read: larger than 256 KiB, the limit for a profile file")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_package_naming_an_endless_device_states_the_size_limit(tmp_path, device):
    path = product(tmp_path, "packages: [%s]\n" % device)
    refused(tether("check", "--allow-outside", "/dev", path),
            "%s:1:12: packages[0]: cannot read '%s': larger than 256 KiB, the limit for a "
            "profile file" % (path, device))


def test_a_pem_file_naming_dev_zero_states_its_size_limit(tmp_path):
    path = product(tmp_path)
    path.write_text(PROFILE.replace('"mqtt://localhost"', '"mqtts://localhost", ca: /dev/zero'))
    refused(tether("check", path),
            "uplink.ca: cannot read '/dev/zero': larger than 1 MiB, the limit for a PEM file")


def test_a_named_pipe_nobody_writes_is_said_so_not_waited_on(tmp_path):
    # open() of a FIFO waits for a writer: check, decode and a profile's CA hung for ever
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    refused(tether("check", fifo), "%s: cannot read: a named pipe that nobody writes to" % fifo)
    refused(tether("decode", fifo), "tether decode: %s: a named pipe that nobody writes to" % fifo)
    path = product(tmp_path)
    path.write_text(PROFILE.replace('"mqtt://localhost"', '"mqtts://localhost", ca: %s' % fifo))
    refused(tether("check", path), "uplink.ca: cannot read '%s': a named pipe that nobody writes "
            "to" % fifo)
    # a pipe that is written is read whole, as before: `tether check /dev/stdin`
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "firmware.cli", "check", "/dev/stdin"],
                          input=PROFILE, capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0 and "/dev/stdin: ok" in proc.stdout, proc.stdout + proc.stderr


def test_a_package_outside_the_profiles_folder_is_refused_unread(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "passwd").write_text(PASSWD)
    path = product(tmp_path, """\
        packages:
          - ../elsewhere/passwd
          - %s/etc/passwd
        """ % ("../" * 40))
    proc = tether("check", path)
    refused(proc, "%s:2:5: packages[0]: '%s' is outside the profile's folder '%s': packages are "
                  "read from there, or from a folder given with --allow-outside"
            % (path, tmp_path / "elsewhere" / "passwd", tmp_path / "product"),
            "%s:3:5: packages[1]: '/etc/passwd' is outside" % path)
    assert len(proc.stderr.splitlines()) == 2  # no "missing key" for what the packages lack


def test_a_link_out_of_the_profiles_folder_is_outside_too(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "passwd").write_text(PASSWD)
    path = product(tmp_path, "packages: [base.yaml]\n")
    (tmp_path / "product" / "base.yaml").symlink_to(tmp_path / "elsewhere" / "passwd")
    refused(tether("check", path), "packages[0]: '%s' (a link to '%s') is outside"
            % (tmp_path / "product" / "base.yaml", tmp_path / "elsewhere" / "passwd"))


def test_a_file_read_by_mistake_is_described_never_quoted(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "passwd").write_text(PASSWD)
    path = product(tmp_path, "packages: [../elsewhere/passwd]\n")
    proc = tether("check", "--allow-outside", tmp_path / "elsewhere", path)
    refused(proc, "passwd:1:1: expected a mapping of top-level keys, got text")
    assert "/bin/bash" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    proc = tether("check", tmp_path / "elsewhere" / "passwd")
    refused(proc, "passwd:1:1: expected a mapping of top-level keys, got text")
    assert "/bin/bash" not in proc.stderr


def test_allow_outside_lets_compile_and_run_read_a_shared_package(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text("batch: {max_readings: 7}\n")
    path = product(tmp_path, "packages: [../shared/base.yaml]\n")
    refused(tether("compile", path), "is outside the profile's folder")
    proc = tether("compile", "--allow-outside", tmp_path / "shared", path)
    assert proc.returncode == 0 and '"max_readings":7' in proc.stdout, proc.stderr
    refused(tether("run", path), "is outside the profile's folder")
    # Past the package check, run stops at the next problem: the device id is a template.
    path.write_text(path.read_text().replace("{id: kettle}", "{id: 'kettle-{uid}'}"))
    refused(tether("run", "--allow-outside", tmp_path / "shared", path), "--device ID")


def test_after_an_alias_bomb_only_the_bomb_is_reported(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += ["a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 7)]
    path = product(tmp_path)
    before, uplink = PROFILE.split("uplink:")
    path.write_text(before + "\n".join(lines) + "\nuplink:" + uplink + "batch: {max_readings: 9}\n")
    proc = tether("check", path)
    refused(proc, "too many values (aliases expand to more than 100000); simplify the file")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_an_alias_bomb_in_a_package_stops_the_other_files_quietly(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += ["a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)) for i in range(1, 7)]
    path = product(tmp_path, "packages: [bomb.yaml, base.yaml]\n")
    (tmp_path / "product" / "bomb.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "product" / "base.yaml").write_text("batch: {max_readings: 7}\n")
    proc = tether("check", path)
    refused(proc, "bomb.yaml:")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_decode_of_dev_zero_states_the_batch_file_size_limit():
    refused(tether("decode", "/dev/zero"),
            "tether decode: /dev/zero: larger than 64 MiB, the limit for a batch file")


def test_decode_of_an_endless_stream_states_the_batch_file_size_limit():
    with open("/dev/zero", "rb") as zero:  # what `cat /dev/zero | tether decode -` gives it
        refused(tether("decode", "-", stdin=zero),
                "tether decode: -: larger than 64 MiB, the limit for a batch file")


def test_encode_of_dev_zero_states_the_line_length_limit():
    refused(tether("encode", "--profile", REFERENCE, "/dev/zero", "-o", os.devnull),
            "tether encode: /dev/zero: line 1: longer than 4 KiB, the limit for a line of readings")


def test_encode_of_an_endless_stream_of_readings_states_the_file_size_limit(tmp_path):
    feed = subprocess.Popen(["yes", '{"t": 1763856000, "n": "power", "v": 2}'],
                            stdout=subprocess.PIPE)
    try:
        proc = tether("encode", "--profile", REFERENCE, "-", "-o", os.devnull, stdin=feed.stdout)
    finally:
        feed.kill()
        feed.wait()
        feed.stdout.close()
    refused(proc, "tether encode: -: larger than 64 MiB, the limit for a readings file")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_encode_refuses_nan_and_infinity_with_the_line_number(tmp_path, value):
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1763856000, "n": "power", "v": 2}\n'
                        '{"t": 1763856010, "n": "power", "v": %s}\n' % value)
    refused(tether("encode", "--profile", REFERENCE, readings, "-o", os.devnull),
            "tether encode: %s: line 2: t and v must be finite numbers (not NaN or Infinity)"
            % readings)
    readings.write_text('{"t": %s, "n": "power", "v": 2}\n' % value)
    refused(tether("encode", "--profile", REFERENCE, readings, "-o", os.devnull),
            "line 1: t and v must be finite numbers")


@pytest.mark.parametrize("value, said", [('"on"', "text"), ("true", "true or false")])
def test_encode_says_a_text_or_boolean_value_is_no_number(tmp_path, value, said):
    # "t and v must be finite numbers (not NaN or Infinity)" said of "on" and of true.
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1763856000, "n": "power", "v": %s}\n' % value)
    refused(tether("encode", "--profile", REFERENCE, readings, "-o", os.devnull),
            "tether encode: %s: line 1: v is %s: tether encode takes numbers" % (readings, said))


def test_a_fleet_file_naming_dev_zero_states_its_size_limit():
    refused(tether("simulate", "--fleet", "/dev/zero"),
            "tether simulate: /dev/zero: larger than 256 KiB, the limit for a fleet file")


def test_read_and_encode_take_allow_outside_too(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yaml").write_text("batch: {max_readings: 7}\n")
    path = product(tmp_path, "packages: [../shared/base.yaml]\n")
    proc = tether("read", "--allow-outside", tmp_path / "shared", path)
    assert proc.returncode == 0 and "power" in proc.stdout, proc.stderr
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1763856000, "n": "power", "v": 2}\n')
    refused(tether("encode", "--profile", path, readings, "-o", os.devnull), "is outside")
    proc = tether("encode", "--allow-outside", tmp_path / "shared", "--profile", path, readings,
                  "-o", os.devnull)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("line,says", [
    ("[" * 3000, 'line 1: expected {"t": seconds, "n": name, "v": number}'),
    ('{"t": 1763856000, "n": ["a"], "v": 1}', "line 1: n must be a channel name (text)"),
    ('{"t": 1763856000, "n": "power", "v": -1e308}',
     "line 1: reading -1e+308 is too large for a batch"),
    ('{"t": 1763856000, "n": "power", "v": 1e30}', "line 1: reading 1e+30 is too large"),
    ('{"t": 1e300, "n": "power", "v": 1}', "line 1: t 1e+300 is out of range"),
    ('{"t": -1e17, "n": "power", "v": 1}', "line 1: t -1e+17 is out of range"),
])
def test_encode_refuses_a_reading_it_cannot_encode_with_the_line_number(tmp_path, line, says):
    readings = tmp_path / "r.jsonl"
    readings.write_text(line + "\n")
    refused(tether("encode", "--profile", REFERENCE, readings, "-o", os.devnull),
            "tether encode: %s: %s" % (readings, says))


def test_encode_says_when_a_time_looks_like_milliseconds(tmp_path):
    # {"t": 1764000000000} went in silently and came back as the year 57866
    readings = tmp_path / "r.jsonl"
    readings.write_text('{"t": 1764000000, "n": "power", "v": 1}\n'
                        '{"t": 1764000000000, "n": "power", "v": 2}\n'
                        '{"t": 1764000001000, "n": "power", "v": 3}\n')
    proc = tether("encode", "--profile", REFERENCE, readings, "-o", os.devnull)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        "tether encode: %s: note: line 2: t 1.764e+12 looks like milliseconds: t is Unix "
        "seconds (year 57867)" % readings)


@pytest.mark.parametrize("encoding", ["senml", "compact"])
def test_encode_takes_times_up_to_what_decode_reads_back(tmp_path, encoding):
    readings = tmp_path / "r.jsonl"
    # +-(2**63 - 1) ms, a signed 64-bit integer: what decoders and the ingest's columns take
    readings.write_text('{"t": -9223372036854775, "n": "power", "v": 1}\n'
                        '{"t": 9223372036854775, "n": "power", "v": 2}\n')
    out = tmp_path / "o.cbor"
    proc = tether("encode", "--profile", REFERENCE, "--encoding", encoding, readings, "-o", out)
    assert proc.returncode == 0, proc.stderr
    proc = tether("decode", out)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["t"] for line in proc.stdout.splitlines()] == [
        -9223372036854775, 9223372036854775]


@pytest.mark.parametrize("text, says", [
    ("devices: " + "[" * 20000 + "]" * 20000, "not a YAML fleet file: nested too deeply"),
    ("devices:\n  - {profile: ../reference-printer.yaml, count: 1000000000000}",
     "devices[0].count: the fleet would have more than 100000 devices, the limit"),
    ("devices:\n  - {profile: ../reference-printer.yaml, count: 60000}\n"
     "  - {profile: ../reference-printer.yaml, count: 40001}",
     "devices[1].count: the fleet would have more than 100000 devices"),
    ("devices:\n  - {profile: ../reference-printer.yaml, count: true}",
     ":2:49: devices[0].count: expected a whole number >= 1"),
])
def test_a_fleet_file_beyond_what_the_simulator_takes_is_refused(tmp_path, text, says):
    path = tmp_path / "fleets" / "f.yaml"
    path.parent.mkdir()
    (tmp_path / "reference-printer.yaml").write_text(open(REFERENCE).read())
    path.write_text(text)
    refused(tether("simulate", "--fleet", path, "--duration", "1min"),
            "tether simulate: %s%s%s" % (path, "" if says[0] == ":" else ": ", says))


def test_a_refused_substitution_variable_is_reported_once_not_at_each_use(tmp_path):
    path = product(tmp_path, "substitutions: {n: %s}\n" % ("9" * 5000))
    path.write_text(path.read_text().replace("device: {id: kettle}", "device: {id: $n}")
                    + "batch: {max_readings: $n}\n")
    proc = tether("check", path)
    refused(proc, "substitutions.n: expected an integer (of at most 4300 digits), got '999")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
