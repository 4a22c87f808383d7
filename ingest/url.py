"""The two URLs the ingest takes: a broker's (mqtt:// or mqtts://) and a database's.

One grammar for a broker URL, used by the ingest, `tether simulate`, `tether run --broker` and the
profile schema (docs/profiles.md, docs/ingest.md):

    mqtt://[user[:password]@]host[:port][/]        port 1883 by default
    mqtts://[user[:password]@]host[:port][/]       TLS, port 8883 by default

host is a name (letters, digits, '.', '-') or an IP address (IPv6 in brackets); the port is 1 to
65535; nothing follows but an optional '/'. The user name and password are percent-decoded, and a
password needs a user name. Who may carry credentials in the URL is the caller's rule, one for
all: a command line that has no other place for them (`tether ingest --broker`) takes them; a
profile and `tether run --broker` refuse them, because a profile names them in `username` and
`password`, where `!secret` keeps them out of files that are shared.
"""
import collections
import os
import re
from urllib.parse import unquote

Broker = collections.namedtuple("Broker", "host port tls username password")
Database = collections.namedtuple("Database", "backend target")

EXAMPLE = "mqtt://host:1883 or mqtts://host:8883"
_BROKER = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
                     r"(?:(?P<userinfo>[^@/?#]*)@)?"
                     r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)?"
                     r"(?::(?P<port>[^/?#]*))?"
                     r"(?P<rest>.*)", re.S)
_POSTGRES = ("postgresql://", "postgres://")


class BadURL(ValueError):
    """A URL that is not what was asked for; the message says what was expected."""


def parse_broker(url):
    """Broker(host, port, tls, username, password) from a broker URL (see the module docstring);
    BadURL saying what is wrong otherwise. username and password are None when absent."""
    m = _BROKER.fullmatch(url) if isinstance(url, str) else None
    if m is None or m.group("scheme") not in ("mqtt", "mqtts") or not m.group("host"):
        raise BadURL("expected a broker URL like %s, not %r" % (EXAMPLE, url))
    if m.group("rest") not in ("", "/"):
        raise BadURL("a broker URL has no path, query or fragment: %r" % url)
    host = m.group("host")
    if not host.startswith("[") and (len(host.rstrip(".")) > 253 or any(
            len(label) > 63 for label in host.split("."))):
        # DNS's limits (RFC 1035): a longer name passed, and every connect failed
        raise BadURL("the host name in %r is longer than DNS allows (253 characters, 63 "
                     "between dots)" % (url if len(url) <= 80 else url[:77] + "..."))
    tls = m.group("scheme") == "mqtts"
    port = m.group("port")
    if port is None:
        port = 8883 if tls else 1883
    elif not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise BadURL("the port in %r is not a number from 1 to 65535" % url)
    else:
        port = int(port)
    user = password = None
    if m.group("userinfo") is not None:
        user, sep, password = m.group("userinfo").partition(":")
        user = unquote(user)
        password = unquote(password) if sep else None
        if not user:
            raise BadURL("a broker URL with credentials needs a user name before '@': %r"
                         % hide_password(url))
    return Broker(m.group("host").strip("[]"), port, tls, user, password)


def hide_password(url):
    """url without its password (user:password@, or a password= parameter), for messages.

    Everything from '://' to the LAST '@' is the user information (a password may hold '/', '@'
    or '?' unescaped): the user name before its first ':' stays, the rest becomes ***; without a
    ':' but with an '@' in it, all of it does."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        userinfo, _, after = tail.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            userinfo = user + ":***"
        elif "@" in userinfo:
            userinfo = "***"
        url = head + sep + userinfo + "@" + after
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def secrets_of(url):
    """The texts of url that a message must not repeat: its password as written and
    percent-decoded (user:password@ or a password= parameter), its pieces between '@' and '/',
    and the URL itself."""
    found = [url]
    tail = url.partition("://")[2]
    if "@" in tail:
        userinfo = tail.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found += [password] if colon else [userinfo] if "@" in userinfo else []
    found += re.findall(r"[?&]password=([^&]*)", url)
    # libpq splits the user information at its first '@', the host part at '/': its messages
    # may quote any piece of a password that holds them
    found += [piece for s in found[1:] for piece in re.split(r"[@/]", s)]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def db_url(text):
    """Database(backend, target) for a --db value: ("postgresql", the URL) for postgresql://...
    (or postgres://...), else ("sqlite", the path) for a SQLite file (":memory:" too). BadURL for
    an empty value, another URL scheme, or a folder."""
    if not isinstance(text, str) or not text:
        raise BadURL("expected a SQLite file or a postgresql:// URL, got %r" % (text,))
    if text.startswith(_POSTGRES):
        return Database("postgresql", text)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise BadURL("expected a SQLite file or a postgresql:// URL, not a %s:// URL: %r"
                     % (scheme.group(1), hide_password(text)))
    typo = re.match(r"(postgres(?:ql)?:/*)", text, re.I)
    if typo or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", text):
        # postgresql:/u:pw@db/x or postgres:db: a URL mistyped, not a file to create (its
        # text, password and all, would be the file's name and be printed). Shown no further
        # than its scheme: where the password starts is anyone's guess.
        raise BadURL("expected a SQLite file or a postgresql:// URL, got one starting %r: a "
                     "mistyped URL? (postgresql://user@host[:port]/database)"
                     % (typo.group(1) if typo else text[:text.index(":") + 2]))
    if os.path.isdir(text):
        raise BadURL("%s is a folder, not a SQLite file" % text)
    return Database("sqlite", text)
