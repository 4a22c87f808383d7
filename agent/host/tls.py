# CPython's half of agent/tls.py: an ssl.SSLContext from PEM texts. CPython reads a client
# certificate and key only from files, so they are written, readable by this user alone, and
# removed once read (the context holds them: a copy of the key left in /tmp outlived each run).
import os
import shutil
import ssl
import tempfile


def context(ca=None, cert=None, key=None, tmpdir=None):
    ctx = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    if cert:
        folder = tempfile.mkdtemp(prefix="tether-tls-", dir=tmpdir)
        paths = []
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            paths.append(path)
        try:
            ctx.load_cert_chain(paths[0], paths[1])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return ctx
