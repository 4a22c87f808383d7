"""Brokers for the uplink tests: a real Mosquitto, and fake ones that misbehave on purpose.

- `Mosquitto`: the Debian `mosquitto` binary on a free loopback port with a generated config:
  anonymous or password file, an ACL, a TLS listener (server-only or mutual TLS) with
  certificates from `make_tls_files`. start/stop/kill/pause/resume/restart, and its log.
- `make_tls_files`: a throwaway CA, a server certificate for localhost/127.0.0.1 and client
  certificates for device-A and device-B (CN = device id), PEM and DER, via the openssl CLI.
- `Subscriber`: a paho-mqtt client in its own thread that records every message, to check at the
  other end what a client under test published.
- `BlackHole`: accepts TCP connections and never answers. `FakeBroker`: answers CONNECT with a
  CONNACK (or any bytes), records every packet, never sends a PUBACK, and can inject bytes.

Nothing here skips: a missing mosquitto or openssl raises ToolMissing, which the fixtures in
tests/conftest_broker.py turn into a failed test (benchmarks into an error).
"""
import base64
import hashlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time

SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin")

# Credentials in the password file when a test asks for `users=True`.
USERS = {"admin": "admin-secret", "device-A": "secret-A", "device-B": "secret-B"}
DEVICES = ("device-A", "device-B")

# The ACL of issue 4: each device writes only under its own tether/v1/{device}/ and reads its own
# downlink; the user name is the password-file user or, on the mTLS listener
# (use_identity_as_username), the client certificate's CN. `admin` may do anything.
TETHER_ACL = """\
user admin
topic readwrite #

pattern write tether/v1/%u/#
pattern read tether/v1/%u/down/#
"""


class ToolMissing(RuntimeError):
    pass


def find_tool(name):
    """A binary from PATH or from the sbin/bin folders (Debian puts mosquitto in /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SEARCH_DIRS:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def require_tool(name, package):
    path = find_tool(name)
    if path is None:
        raise ToolMissing("`%s` is not installed (looked in PATH and %s): apt-get install -y %s"
                          % (name, ", ".join(SEARCH_DIRS), package))
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def password_line(user, password, salt=None, iterations=101):
    """One line of a mosquitto 2.x password file: PBKDF2-SHA512 in the `$7$` format that
    mosquitto_passwd writes (iterations, base64 salt of 12 bytes, base64 hash of 64 bytes)."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return "%s:$7$%d$%s$%s" % (user, iterations, base64.b64encode(salt).decode(),
                               base64.b64encode(digest).decode())


# ---- TLS material ----

class TLSFiles:
    """Paths of the generated CA, server and client certificates (PEM and DER)."""

    def __init__(self, folder):
        folder = pathlib.Path(folder)
        self.folder = folder
        self.ca_pem = folder / "ca.pem"
        self.ca_der = folder / "ca.der"
        self.ca_key = folder / "ca.key"
        self.server_cert = folder / "server.pem"
        self.server_key = folder / "server.key"
        self.clients = {}  # device -> {"cert_pem", "key_pem", "cert_der", "key_der"}

    def client(self, device):
        return self.clients[device]


def _openssl(openssl, *args, cwd=None):
    proc = subprocess.run([openssl] + list(args), capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (" ".join(args), proc.stdout, proc.stderr))


def make_tls_files(folder, devices=DEVICES, openssl=None):
    """A throwaway CA (EC P-256), a server certificate for localhost and 127.0.0.1, and one client
    certificate per device (CN = device id), PEM plus DER for the MicroPython ssl module."""
    openssl = openssl or require_tool("openssl", "openssl")
    files = TLSFiles(folder)
    folder = files.folder
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(openssl, "req", "-x509", "-new", *ec, "-keyout", str(files.ca_key),
             "-out", str(files.ca_pem), "-days", "30", "-subj", "/CN=Tether Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl(openssl, "x509", "-in", str(files.ca_pem), "-outform", "DER", "-out", str(files.ca_der))

    def issue(name, cn, ext, serial):
        key = folder / (name + ".key")
        csr = folder / (name + ".csr")
        cert = folder / (name + ".pem")
        extfile = folder / (name + ".ext")
        extfile.write_text(ext)
        _openssl(openssl, "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
                 "-subj", "/CN=" + cn)
        _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(files.ca_pem),
                 "-CAkey", str(files.ca_key), "-set_serial", str(serial), "-days", "30",
                 "-extfile", str(extfile), "-out", str(cert))
        _openssl(openssl, "x509", "-in", str(cert), "-outform", "DER",
                 "-out", str(folder / (name + ".der")))
        _openssl(openssl, "pkey", "-in", str(key), "-outform", "DER",
                 "-out", str(folder / (name + ".key.der")))
        return cert, key

    issue("server", "localhost",
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n", 1000)
    for i, device in enumerate(devices):
        cert, key = issue("client-" + device, device,
                          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=clientAuth\n", 2000 + i)
        files.clients[device] = {
            "cert_pem": cert, "key_pem": key,
            "cert_der": folder / ("client-%s.der" % device),
            "key_der": folder / ("client-%s.key.der" % device),
        }
    return files


# ---- Mosquitto ----

class Mosquitto:
    """One mosquitto process with a generated config in `folder`.

    users: None (no password file), True (USERS) or {user: password}; anonymous: allow clients
    without credentials; acl: None, True (TETHER_ACL) or the text of an ACL file; tls: None,
    "server" (a TLS listener, server certificate only) or "mutual" (require_certificate true,
    use_identity_as_username true), which needs tls_files. `port` is the plain listener (always
    there, for the checking subscriber), `tls_port` the TLS one.
    """

    def __init__(self, folder, binary=None, users=None, anonymous=None, acl=None, tls=None,
                 tls_files=None, persistence=False, log_type="all", extra_conf=""):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.binary = binary or require_tool("mosquitto", "mosquitto")
        if users is True:
            users = dict(USERS)
        if acl is True:
            acl = TETHER_ACL
        if tls not in (None, "server", "mutual"):
            raise ValueError("tls must be None, 'server' or 'mutual'")
        if tls and tls_files is None:
            raise ValueError("a TLS listener needs tls_files")
        self.users = users
        self.anonymous = (not users) if anonymous is None else anonymous
        self.acl = acl
        self.tls = tls
        self.tls_files = tls_files
        self.persistence = persistence
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.host = "127.0.0.1"
        self.conf_path = self.folder / "mosquitto.conf"
        self.log_path = self.folder / "mosquitto.log"
        self.proc = None
        self.starts = 0
        self._conf = (log_type, extra_conf)
        self._write_config(log_type, extra_conf)

    def _write_config(self, log_type, extra_conf):
        lines = [
            "per_listener_settings false",
            # Debian's mosquitto started as root drops to user `mosquitto`, which cannot read
            # pytest's 0700 temp folders; as any other user this line is ignored.
            "user root",
            "persistence %s" % ("true" if self.persistence else "false"),
            "persistence_location %s/" % self.folder,
            "log_dest stderr",
            "log_timestamp true",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
            "allow_anonymous %s" % ("true" if self.anonymous else "false"),
        ]
        for kind in log_type.split():
            lines.append("log_type %s" % kind)
        if self.users:
            pw = self.folder / "passwords"
            pw.write_text("".join(password_line(u, p) + "\n" for u, p in self.users.items()))
            lines.append("password_file %s" % pw)
        if self.acl is not None:
            acl = self.folder / "acl"
            acl.write_text(self.acl)
            lines.append("acl_file %s" % acl)
        lines += ["", "listener %d 127.0.0.1" % self.port]
        if self.tls:
            f = self.tls_files
            lines += ["", "listener %d 127.0.0.1" % self.tls_port,
                      "cafile %s" % f.ca_pem,
                      "certfile %s" % f.server_cert,
                      "keyfile %s" % f.server_key]
            if self.tls == "mutual":
                lines += ["require_certificate true", "use_identity_as_username true"]
        if extra_conf:
            lines += ["", extra_conf]
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -- process control --

    def start(self, timeout=10.0):
        if self.running:
            return self
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"---- start %d ----\n" % self.starts)
        log.flush()
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited with code %s at start:\n%s"
                                       % (self.proc.returncode, self.log()))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise RuntimeError("mosquitto did not accept on port %d within %.0f s:\n%s"
                                           % (port, timeout, self.log()))
                    time.sleep(0.01)
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, timeout=5.0):
        """SIGTERM (clean shutdown), SIGKILL if it takes longer than timeout."""
        if not self.running:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL: the broker dies at once, its sockets are reset by the kernel."""
        if self.running:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self):
        """SIGSTOP: connections stay open but nothing answers (a silently dead broker)."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.running:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self, kill=False, persistence=None):
        """Same port, same config (and with persistence, the same state). persistence=False:
        started again without persistence, as a broker that lost its disk: its state file is
        removed, so a later start with persistence=True does not bring the old state back."""
        if kill:
            self.kill()
        else:
            self.stop()
        if persistence is not None and persistence != self.persistence:
            self.persistence = persistence
            self._write_config(*self._conf)
            if not persistence:
                try:
                    os.remove(self.folder / "mosquitto.db")
                except FileNotFoundError:
                    pass
        return self.start()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_when(self, ready, timeout=15.0):
        """The log once ready(log) holds, or as it is after `timeout`. The broker writes a
        line after acting on a packet, so a client that has returned can be ahead of it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if ready(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<Mosquitto port=%s tls_port=%s running=%s>" % (self.port, self.tls_port,
                                                                self.running)


# ---- a checking subscriber ----

class Subscriber:
    """A paho-mqtt subscriber (its own network thread) that records (topic, payload, qos,
    retain) for every message on `topics`; connect() returns once the SUBACK arrived."""

    def __init__(self, port, topics=("#",), username=None, password=None, client_id=None,
                 host="127.0.0.1", qos=1):
        import paho.mqtt.client as paho

        self.messages = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._failed = None
        self.topics = list(topics)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "checker-%d" % os.getpid(),
                                  protocol=paho.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.host = host
        self.port = port
        self.qos = qos

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            self._failed = "CONNACK %s" % reason
            self._subscribed.set()
            return
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        bad = [r for r in reasons if r.is_failure]
        if bad:
            self._failed = "SUBACK %s" % bad
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def connect(self, timeout=5.0):
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("subscriber: no SUBACK within %.1f s" % timeout)
        if self._failed:
            raise RuntimeError("subscriber: " + self._failed)
        return self

    def wait_for(self, predicate, timeout=5.0):
        """Wait until predicate(messages) is true; returns the messages either way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.messages)

    def wait_count(self, n, timeout=5.0):
        return self.wait_for(lambda m: len(m) >= n, timeout)

    def wait_payload(self, payload, timeout=5.0):
        return self.wait_for(lambda m: any(x[1] == payload for x in m), timeout)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.stop()


# ---- fake brokers ----

def read_packet(conn):
    """One MQTT packet from a blocking socket: (first byte, body bytes), or None at EOF."""
    head = _recv_exact(conn, 1)
    if head is None:
        return None
    n, shift = 0, 0
    while True:
        b = _recv_exact(conn, 1)
        if b is None:
            return None
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = _recv_exact(conn, n) if n else b""
    if body is None:
        return None
    return head[0], body


def _recv_exact(conn, n):
    out = b""
    while len(out) < n:
        try:
            chunk = conn.recv(n - len(out))
        except OSError:
            return None
        if not chunk:
            return None
        out += chunk
    return out


class _Server:
    rcvbuf = None   # bytes: a small receive buffer, so that a client feels a slow reader at once

    def __init__(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.host = "127.0.0.1"
        self.port = self._sock.getsockname()[1]
        self.conns = []
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        raise NotImplementedError

    @property
    def connections(self):
        return len(self.conns)

    def close(self):
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(2)
        with self._lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Paced:
    """A connection read at `rate` bytes a second, 256 bytes at a time."""

    def __init__(self, conn, rate):
        self.conn = conn
        self.rate = rate

    def recv(self, n):
        data = self.conn.recv(min(n, 256))
        time.sleep(len(data) / self.rate)
        return data


class BlackHole(_Server):
    """Accepts TCP connections and never sends a byte (what it receives is kept in `received`):
    a client waiting for its CONNACK, or a TLS handshake, must time out."""

    def __init__(self):
        self.received = b""
        super().__init__()

    def _serve(self, conn):
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data


class FakeBroker(_Server):
    """Just enough of an MQTT 3.1.1 broker: reads the CONNECT, answers with `connack` (bytes,
    default accepted), then `after_connack` (e.g. a malformed packet), and records every packet
    as (first byte, body) in `packets` (after read_delay seconds of not reading, if given, so
    that the client's socket fills up). It never sends a PUBACK; it answers PINGREQ with
    PINGRESP, and SUBSCRIBE with a SUBACK carrying return code `suback` (None: no SUBACK).
    send() injects bytes into the newest connection at any time."""

    def __init__(self, connack=b"\x20\x02\x00\x00", after_connack=b"", pingresp=True,
                 suback=1, read_delay=0.0, read_rate=None):
        self.connack = connack
        # bytes a second it reads at after CONNACK (through a 2 KB receive buffer): a slow link
        self.read_rate = read_rate
        if read_rate:
            self.rcvbuf = 2048
        self.read_delay = read_delay  # seconds without reading after CONNACK: a slow broker
        self.after_connack = after_connack
        self.pingresp = pingresp
        self.suback = suback
        self.packets = []
        self.closed_by_client = threading.Event()
        self._cond = threading.Condition()
        super().__init__()

    def _serve(self, conn):
        first = True
        while True:
            pkt = read_packet(_Paced(conn, self.read_rate) if self.read_rate and not first
                              else conn)
            if pkt is None:
                self.closed_by_client.set()
                return
            with self._cond:
                self.packets.append(pkt)
                self._cond.notify_all()
            kind, body = pkt
            try:
                if first:
                    first = False
                    if self.connack:
                        conn.sendall(self.connack)
                    if self.after_connack:
                        conn.sendall(self.after_connack)
                    if self.read_delay:
                        time.sleep(self.read_delay)
                elif kind == 0xC0 and self.pingresp:
                    conn.sendall(b"\xd0\x00")
                elif kind == 0x82 and self.suback is not None:
                    conn.sendall(b"\x90\x03" + body[:2] + bytes([self.suback]))
            except OSError:
                return

    def send(self, data):
        with self._lock:
            conn = self.conns[-1]
        conn.sendall(data)

    def wait_packets(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.packets) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.packets)
