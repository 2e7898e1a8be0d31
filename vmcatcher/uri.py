"""URL handling in one place: the anonymous form we store, credential splitting, log masking.

The original vmcatcher normalised every subscription URL with ``uriNormaliseAnonymous``
and stored the result: scheme, host, non-zero port and path, with
credentials always removed. Existing databases hold URLs in that form, so we reproduce it,
but fix what it broke:

* query strings are kept (``?a=b`` selects the list on many servers; dropping it fetched
  the wrong document) — fragments are still dropped, they are never sent to a server;
* ``;params`` in the last path segment are kept as part of the path;
* IPv6 literals (``http://[::1]:8080/x``) work;
* a bad port (``http://host:abc/``) raises :class:`~vmcatcher.errors.InvalidURIError`
  with a clear message instead of a ValueError traceback.

Credentials embedded in a URL (``https://user:pass@host/``) are never stored in the URL
column or logged: :func:`split_credentials` separates them and :func:`mask_password`
hides the password in anything that reaches a log line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from vmcatcher.errors import InvalidURIError
from vmcatcher.safetext import escape_controls

MASK = "***"
_MAX_PORT = 65535
# 'scheme://user:secret@host...' taken apart without parsing: the password runs to the
# last '@' before the query, so an unencoded '@' or '/' in it never leaks the rest (a
# database URL's password may hold both).
_USERINFO = re.compile(
    r"^(?P<head>.*?://[^:/@?#]*):(?P<password>[^?#]*)@(?P<tail>[^@?#]*(?:[?#].*)?)$", re.S
)
# Control characters (C0, DEL, C1, line separators): never part of a URL we accept.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A registered host name or IPv4 address (RFC 3986 unreserved characters).
_HOST_CHARS = re.compile(r"[A-Za-z0-9._~-]")
# 'http:user:secret@host/x': userinfo without an authority (urlsplit puts it in the path).
_PATH_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:(?!//)[^/?#@:]*:)[^/?#@]*@")


@dataclass(frozen=True)
class ParsedURI:
    """The parts of a URL as ``urimunge`` saw them (``None`` when absent)."""

    scheme: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    query: str


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as error:  # e.g. "Invalid IPv6 URL"
        raise InvalidURIError(f"invalid URL {mask_password(url)!r}: {error}") from None


def _check_host(host: str, url: str) -> None:
    """A host is a bracketed IPv6 literal, or a (possibly international) DNS name / IPv4."""
    if host.startswith("["):
        literal = host[1:-1]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidURIError(
                f"invalid IPv6 address {host!r} in URL {mask_password(url)!r}"
            ) from None
        return
    if host.isascii():
        bad = _HOST_CHARS.sub("", host)
        if bad:
            raise InvalidURIError(
                f"invalid character {bad[0]!r} in host {host!r} of URL {mask_password(url)!r}"
            )
        return
    import idna  # installed with requests; the same encoding requests applies

    try:
        idna.encode(host, uts46=True)
    except (idna.IDNAError, UnicodeError, ValueError) as error:
        raise InvalidURIError(
            f"host {host!r} of URL {mask_password(url)!r} is not a valid international "
            f"domain name ({error})"
        ) from None


def _parse_hostport(hostport: str, url: str) -> tuple[str | None, int | None]:
    """Split ``host[:port]`` (host may be a bracketed IPv6 literal); port 0 means none."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidURIError(f"invalid IPv6 address in URL {mask_password(url)!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidURIError(f"invalid host in URL {mask_password(url)!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if port_text == "":
        port = None
    elif port_text.isascii() and port_text.isdigit() and int(port_text) <= _MAX_PORT:
        port = int(port_text) or None
    else:
        raise InvalidURIError(
            f"invalid port {port_text!r} in URL {mask_password(url)!r}: "
            f"a port is a number from 0 to {_MAX_PORT}"
        )
    if host:
        _check_host(host, url)
    return host or None, port


def parse(url: object) -> ParsedURI:
    """Parse ``url`` the way ``urimunge.setUri`` did; non-strings count as ``""``.

    This is the one place where a URL from a user, a list, a redirect or a
    database row is taken apart, and it raises nothing but
    :class:`InvalidURIError`: for control characters anywhere (Python's
    ``urlsplit`` would silently delete some of them), a non-numeric or
    out-of-range port, a broken IPv6 literal, a host with characters no host
    name has (or an invalid international one), an http(s) URL without a host,
    and credentials in a ``file:`` URL. Everything that passes can be split and
    rebuilt again without an exception.
    """
    text = url if isinstance(url, str) else ""
    bad = _UNSAFE.search(text)
    if bad:
        raise InvalidURIError(f"invalid character {bad.group()!r} in URL {mask_password(text)!r}")
    parts = _split(text)
    username = password = None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = (unquote(secret) or None) if colon else None
    host, port = _parse_hostport(hostport, text)
    if parts.scheme in ("http", "https") and host is None:
        raise InvalidURIError(
            f"URL {mask_password(text)!r} names no host (expected {parts.scheme}://host/...)"
        )
    if parts.scheme == "file" and at:
        raise InvalidURIError(f"file URL {mask_password(text)!r} carries credentials")
    return ParsedURI(parts.scheme, username, password, host, port, parts.path, parts.query)


def normalise_anonymous(url: object) -> str:
    """The stored, credential-free form of a URL (original ``uriNormaliseAnonymous``).

    ``https://user:pw@host:8443/path/x?y=1`` -> ``https://host:8443/path/x?y=1``;
    ``http://host:0/a`` -> ``http://host/a``; ``file:///tmp/x`` unchanged; ``""`` -> ``://``.
    """
    parsed = parse(url)
    authority = ""
    if parsed.host is not None:
        authority = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    query = f"?{parsed.query}" if parsed.query else ""
    if parsed.scheme and parsed.host is None and parsed.path and not parsed.path.startswith("/"):
        # 'http:user:pw@host/x' has no authority; 'http://' + path would invent one,
        # and store its password in the URL column
        return f"{parsed.scheme}:{parsed.path}{query}"
    return f"{parsed.scheme}://{authority}{parsed.path}{query}"


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Return ``(url_without_credentials, username, password)``.

    The URL is otherwise kept as given (port, query...). User and password are
    percent-decoded (``%40`` -> ``@``); an absent or empty part is ``None``.
    """
    parts = _split(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, secret = userinfo.partition(":")
    username = unquote(user) or None
    password = (unquote(secret) or None) if colon else None
    return urlunsplit(parts._replace(netloc=hostport)), username, password


def mask_password(url: object) -> str:
    """``url`` with any embedded password replaced by ``***``; safe for log lines.

    Control characters (a list's ``hv:uri`` may hold a newline) are shown escaped,
    so a URL can never start a forged log line. Never raises: this is used while
    reporting other errors.
    """
    text = url if isinstance(url, str) else str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return escape_controls(redact_password(text, MASK))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return escape_controls(_PATH_USERINFO.sub(rf"\1{MASK}@", text))
    masked = urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))
    return escape_controls(masked)


def local_path(url: str) -> str:
    """The file system path a ``file:`` URL names (percent-decoded).

    Refuses (:class:`InvalidURIError`) a URL naming another host (only none or
    ``localhost`` is this machine) and one without a path.
    """
    parsed = parse(url)
    if parsed.host not in (None, "localhost"):
        raise InvalidURIError(f"file URL names another host ({parsed.host!r})")
    path = unquote(parsed.path)
    if not path:
        raise InvalidURIError("path not defined")
    return path


def password_in(url: str) -> str | None:
    """The password a URL carries in its userinfo (found without parsing), if any."""
    match = _USERINFO.match(url)
    return match["password"] or None if match else None


def redact_password(url: str, replacement: str | None = MASK) -> str:
    """``url`` with the userinfo password replaced (``***``) or removed (``None``).

    Works on text no URL parser accepts, so messages about a malformed URL, and the
    database URL handed to event handlers, never carry a password either.
    """
    match = _USERINFO.match(url)
    if match is None or not match["password"]:
        return url
    secret = "" if replacement is None else f":{replacement}"
    return f"{match['head']}{secret}@{match['tail']}"


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` (``""`` when there is none or it cannot be parsed)."""
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""
