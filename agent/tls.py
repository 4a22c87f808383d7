# TLS for the uplink: an ssl context from the PEM texts a compiled profile carries.
#
# Verification is on: the broker's certificate must chain to the profile's CA (or, without one,
# to the system's CAs on CPython) and match the broker's host name. MicroPython's ssl takes DER
# bytes; CPython's wants a file for the client certificate and key (agent/host/tls.py).
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
        from agent.host import tls as host_tls
        return host_tls.context(ca, cert, key, tmpdir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca:
        ctx.load_verify_locations(cadata=der(ca))
    if cert:
        ctx.load_cert_chain(der(cert), der(key))
    return ctx
