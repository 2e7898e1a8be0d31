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

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from vmcatcher.errors import InvalidURIError

MASK = "***"
_MAX_PORT = 65535
_FALLBACK_USERINFO = re.compile(r"(//[^/@:?#]*:)[^/?#]*@")
_CONTROL_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(32), 127, 0x85, 0x2028, 0x2029)}


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
    return host or None, port


def parse(url: object) -> ParsedURI:
    """Parse ``url`` the way ``urimunge.setUri`` did; non-strings count as ``""``.

    Raises :class:`InvalidURIError` for a non-numeric or out-of-range port or a broken
    IPv6 literal.
    """
    text = url if isinstance(url, str) else ""
    parts = _split(text)
    username = password = None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = (unquote(secret) or None) if colon else None
    host, port = _parse_hostport(hostport, text)
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
        return _FALLBACK_USERINFO.sub(rf"\1{MASK}@", text).translate(_CONTROL_ESCAPES)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return text.translate(_CONTROL_ESCAPES)
    masked = urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))
    return masked.translate(_CONTROL_ESCAPES)


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` (``""`` when there is none or it cannot be parsed)."""
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""
