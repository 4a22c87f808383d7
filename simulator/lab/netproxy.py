"""A TCP proxy between an agent and its broker, for faults of the network itself and for
counting the bytes on the wire.

    proxy = Proxy(upstream_port)     # listens on proxy.port (loopback)
    proxy.cut()                      # resets every connection through it (a dropped link)
    proxy.partition(True)            # new connections are refused until partition(False)
    proxy.black_hole(True)           # new connections are accepted and never answered
    proxy.upstream = other_port      # the next connections go elsewhere
    proxy.refuse_subscriptions = True  # every SUBACK the broker sends says 0x80 (refused)
    proxy.bytes_up, proxy.bytes_down # what went through, each way
"""
import socket
import threading


class Proxy:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.host = host
        self.upstream = upstream_port
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._partitioned = False
        self._hole = False
        self.refuse_subscriptions = False   # as a broker whose policy denies them
        self._lock = threading.Lock()
        self._pairs = []
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def partition(self, on):
        """On: every connection is reset and new ones are refused (reset at once)."""
        self._partitioned = on
        if on:
            self.cut()

    def black_hole(self, on):
        """On: new connections are accepted and then nothing, ever, comes back."""
        self._hole = on

    def cut(self):
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                if s is None:
                    continue
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self._closed = True
        self.cut()
        self._server.close()

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            if self._partitioned:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
                continue
            if self._hole:
                with self._lock:
                    self._pairs.append((conn, None))
                threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()
                continue
            try:
                up = socket.create_connection((self.host, self.upstream), timeout=5)
                up.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._pairs.append((conn, up))
            threading.Thread(target=self._pipe, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, False), daemon=True).start()

    def _swallow(self, conn):
        while True:
            try:
                if not conn.recv(4096):
                    return
            except OSError:
                return

    def _pipe(self, src, dst, upward):
        held = b""      # downward, while subscriptions are refused: a packet not whole yet
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            if upward:
                self.bytes_up += len(data)
            else:
                self.bytes_down += len(data)
            if not upward and (self.refuse_subscriptions or held):
                data, held = _refused(held + data)
            try:
                dst.sendall(data)
            except OSError:
                return


def _refused(data):
    """(the whole MQTT packets in data, each SUBACK's return codes set to 0x80; the rest)."""
    out = bytearray()
    at = 0
    while True:
        n, shift, i = 0, 0, at + 1
        while i < len(data) and i - at <= 4:
            n |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not data[i - 1] & 0x80:
                break
        else:
            break
        if i + n > len(data):
            break
        packet = bytearray(data[at:i + n])
        if packet[0] & 0xF0 == 0x90:
            packet[i - at + 2:] = b"\x80" * (n - 2)
        out += packet
        at = i + n
    return bytes(out), data[at:]
