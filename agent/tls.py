# TLS for the uplink: an ssl context from the PEM texts a compiled profile carries.
#
# Verification is on: the broker's certificate must chain to the profile's CA (or, without one,
# to the system's CAs on CPython) and match the broker's host name. MicroPython's ssl takes DER
# bytes; CPython's wants a file for the client certificate and key.
import binascii
import ssl


def der(pem):
    """The DER bytes of the first PEM block in pem."""
    lines = []
    inside = False
    for line in pem.splitlines():
        if line.startswith("-----BEGIN"):
            inside = True
        elif line.startswith("-----END"):
            break
        elif inside:
            lines.append(line.strip())
    return binascii.a2b_base64("".join(lines))


def context(ca=None, cert=None, key=None, tmpdir=None):
    """An ssl.SSLContext that verifies the broker; cert and key (PEM) for mutual TLS.
    tmpdir: where CPython may write the client certificate and key, which it reads only from
    files (readable by this user alone)."""
    if hasattr(ssl, "create_default_context"):  # CPython
        ctx = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
        if cert:
            import os
            import tempfile
            folder = tempfile.mkdtemp(prefix="tether-tls-", dir=tmpdir)
            paths = []
            for name, text in (("cert.pem", cert), ("key.pem", key)):
                path = os.path.join(folder, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                paths.append(path)
            ctx.load_cert_chain(paths[0], paths[1])
        return ctx
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca:
        ctx.load_verify_locations(cadata=der(ca))
    if cert:
        ctx.load_cert_chain(der(cert), der(key))
    return ctx
