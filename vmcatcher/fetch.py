"""Fetch one image list: bytes in, bytes out, with limits and timeouts.

The original fetcher (docs/compatibility.md) never verified HTTPS servers (the trust-anchor
setting was silently ignored), had no HTTPS timeout, did not follow redirects, dropped
query strings and the port, and crashed on a refused connection. Here:

* the trust anchor is honoured: ``none`` (no verification; a WARNING when credentials are
  sent), ``browser`` (the system CA bundle), ``igtf`` (the Grid CA directory, used as an
  OpenSSL ``capath``: its ``<hash>.0`` files are exactly that format);
* every request has connect and read timeouts and :func:`fetch_list` a total time budget;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, never to a non-http(s)
  scheme, without reading redirect bodies, and credentials are only sent to the origin
  they were given for;
* the body is read in bounded chunks and abandoned as soon as it exceeds the size limit;
* ``Accept-Encoding: identity`` and no decoding: the bytes verified are the bytes stored;
* ``requests`` does not read ``~/.netrc`` or the CA-bundle env vars behind our back
  (``trust_env`` off); proxies from the environment are still honoured;
* every failure is a :class:`~vmcatcher.errors.FetchError` (exit/result code 10) with a
  one-line reason naming the URL (password masked). An HTTP status is part of the text,
  never an exit code.

This module knows nothing about the database or the command line. ``requests`` is
imported lazily so that commands that never fetch start fast. :class:`HTTPStream` and
:func:`open_http` are shared with :mod:`vmcatcher.cache.download` (image files).
"""

from __future__ import annotations

import functools
import http.client
import logging
import os
import re
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urljoin

from vmcatcher import __version__
from vmcatcher.errors import FetchError, InvalidURIError
from vmcatcher.uri import local_path, mask_password, parse, scheme_of, split_credentials
from vmcatcher.vocabulary import TrustAnchor

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
DEFAULT_MAX_LIST_BYTES = 64 * MiB  # 100,000 images take about 45 MB
DEFAULT_LIST_TOTAL_TIMEOUT = 300.0
MAX_REDIRECTS = 10
USER_AGENT = f"vmcatcher/{__version__}"
HTTP_SCHEMES = ("http", "https")
_READ_CHUNK = 256 * 1024

Timeout = tuple[float, float]
_HASHED_CERT = re.compile(r"[0-9a-f]{8}\.\d+")


@dataclass(frozen=True)
class CombinedTrust:
    """Two trust sources at once: a CA bundle file and a hashed CA directory.

    Image servers are checked against the system CAs *and* the Grid CA directory.
    OpenSSL can load both into one TLS context (``cafile`` plus ``capath``: the
    directory's ``<hash>.N`` names are exactly its lookup format), so no combined
    bundle is ever written to disk: nothing is left in the temporary directory,
    even by a run killed with SIGKILL (docs/robustness.md).
    """

    cafile: str
    capath: str


# False: no verification; True: the default bundle; a path: a bundle file or CA directory.
Verify = bool | str | CombinedTrust


class TransportFailure(Exception):
    """Internal: a request failed; ``str()`` is a short reason without the URL.

    :func:`fetch_list` and :func:`vmcatcher.cache.download.download_image` turn it into
    their own typed error, adding the URL.
    """


class TooLarge(Exception):
    """Internal: more bytes arrived than the caller allows (see :func:`copy_bounded`)."""


class TotalTimeExceeded(TransportFailure):
    """Internal: a transfer took longer than its total time budget."""

    def __init__(self) -> None:
        super().__init__("took longer than the total time allowed")


def copy_bounded(
    read: Callable[[int], bytes],
    write: Callable[[bytes], None],
    *,
    limit: int,
    chunk_size: int,
    deadline: float | None,
    already: int = 0,
    before_chunk: Callable[[], None] | None = None,
) -> int:
    """Copy from ``read`` to ``write`` until ``read`` returns ``b""``; return the total held.

    The one bounded read loop of lists and images: never more than ``limit`` bytes in
    all (``already`` were held before): one byte too many raises :class:`TooLarge` before
    it is written, and is never even requested beyond ``limit + 1``. The total time
    budget ``deadline`` (``time.monotonic()``) is checked after each chunk
    (:class:`TotalTimeExceeded`); ``before_chunk`` may stop the copy by raising.
    """
    done = already
    while True:
        if before_chunk is not None:
            before_chunk()
        chunk = read(max(1, min(chunk_size, limit + 1 - done)))
        if not chunk:
            return done
        if done + len(chunk) > limit:
            raise TooLarge
        write(chunk)
        done += len(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise TotalTimeExceeded


# --- TLS trust -------------------------------------------------------------------------


def system_ca_bundle() -> str:
    """Path of the CA bundle used for ``browser`` verification.

    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` when set (what administrators of
    requests-based tools expect), else OpenSSL's default CA file (honours
    ``SSL_CERT_FILE``; the distribution's trust store, where sites add local CAs), else
    certifi's bundle as shipped with requests.
    """
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(variable)
        if value and os.path.exists(value):
            return value
    default = ssl.get_default_verify_paths().cafile
    if default and os.path.isfile(default):
        return default
    import certifi  # installed with requests

    return certifi.where()


def tls_verify_for(trust_anchor: TrustAnchor | int, ca_dir: str | Path | None) -> Verify:
    """The ``verify`` value for requests: False, a CA bundle file, or a CA directory."""
    try:
        anchor = TrustAnchor(trust_anchor)
    except ValueError:
        raise FetchError(f"invalid trust anchor {trust_anchor!r}") from None
    if anchor is TrustAnchor.NONE:
        return False
    if anchor is TrustAnchor.BROWSER:
        return system_ca_bundle()
    if ca_dir is None:
        raise FetchError("trust anchor IGTF needs a CA directory")
    if not os.path.isdir(ca_dir):
        raise FetchError(f"CA directory '{ca_dir}' does not exist")
    return str(ca_dir)


def image_tls_verify(ca_dir: str | Path | None, insecure: bool = False) -> Verify:
    """The ``verify`` value for image downloads: system CAs plus the CA directory.

    ``False`` only when ``insecure`` is explicitly requested. Without a CA directory
    holding hashed certificates this is the system bundle alone.
    """
    if insecure:
        return False
    system = system_ca_bundle()
    if ca_dir is None or not os.path.isdir(ca_dir):
        return system
    try:
        names = os.listdir(ca_dir)
    except OSError:
        return system
    if not any(_HASHED_CERT.fullmatch(name) for name in names):
        return system
    return CombinedTrust(system, str(ca_dir))


# --- HTTP plumbing shared with image downloads ---------------------------------------


def _requests() -> Any:
    """Import requests on first use; silence urllib3's per-request insecure warning.

    We log our own WARNING (once per fetch, with the URL) when verification is off.
    """
    import requests
    import urllib3

    # re-added each time (no duplicates): callers such as test runners reset filters
    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    return requests


@functools.cache
def _combined_trust_adapter() -> type[Any]:
    """An HTTPAdapter that adds a CA directory to the CA bundle requests verifies with.

    requests takes one ``verify`` path, a file *or* a directory; its two documented
    extension points for adapters put the directory beside the file.
    """
    requests = _requests()

    class _CombinedTrustAdapter(requests.adapters.HTTPAdapter):  # type: ignore[name-defined]
        def __init__(self, capath: str) -> None:
            self.capath = capath
            super().__init__()

        def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
            if verify:
                pool["ca_cert_dir"] = self.capath
            return host, pool

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, verify, cert)
            if verify and url.lower().startswith("https"):
                conn.ca_cert_dir = self.capath

    return _CombinedTrustAdapter


@functools.cache
def _session_class() -> type[requests.Session]:
    """A Session that never follows (or pre-reads) redirects itself.

    Even with ``allow_redirects=False`` requests prepares ``response.next`` by reading the
    *whole* redirect body into memory: a hostile server could send an endless one.
    :func:`open_http` follows redirects itself and never reads their bodies.
    """
    requests = _requests()

    class _Session(requests.Session):  # type: ignore[name-defined]
        def resolve_redirects(self, *args: object, **kwargs: object) -> Iterator[Any]:
            return iter(())

    return _Session


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = parse(url)  # both URLs were parsed before: this cannot fail
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.host or "").lower(), port


def _may_send_credentials(original: str, current: str) -> bool:
    """Credentials go to the origin they were given for, or its http->https upgrade."""
    first, now = _origin(original), _origin(current)
    if first == now:
        return True
    return first[0] == "http" and now[0] == "https" and first[1] == now[1] and first[2] == 80


class HTTPStream:
    """An open HTTP response whose body is read in bounded pieces.

    ``read1(n)`` returns at most ``n`` bytes, as soon as some are available (so time
    budgets can be checked between reads), ``b""`` at the end. Failures while reading
    raise :class:`TransportFailure`. Use as a context manager.
    """

    def __init__(
        self, session: requests.Session, response: requests.Response, timeout: Timeout
    ) -> None:
        self._session = session
        self._response = response
        self._timeout = timeout
        self.url: str = response.url
        self.status: int = response.status_code
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers

    @property
    def content_length(self) -> int | None:
        """The declared body length, or None when absent or unparsable."""
        value = self.headers.get("Content-Length", "")
        return int(value) if value.strip().isdigit() else None

    def read1(self, amount: int) -> bytes:
        import urllib3

        try:
            data = self._response.raw.read1(amount, decode_content=False)
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as error:
            raise TransportFailure(describe_transport_error(error, self._timeout)) from error
        return data or b""

    def close(self) -> None:
        self._response.close()
        self._session.close()

    def __enter__(self) -> HTTPStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_http(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    verify: Verify = True,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_redirects: int = MAX_REDIRECTS,
) -> HTTPStream:
    """GET ``url`` (http/https), following redirects by hand; return the final response.

    Any status is returned (the caller decides what it accepts) except redirects, which
    are followed. Raises :class:`TransportFailure` on connection, TLS, timeout or
    redirect problems. ``url`` must not carry credentials (pass ``auth``).
    """
    requests = _requests()
    session = _session_class()()
    session.trust_env = False  # no ~/.netrc, no env CA bundle overriding `verify`
    session.headers.update(
        {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}
    )
    if isinstance(verify, CombinedTrust):
        session.mount("https://", _combined_trust_adapter()(verify.capath))
        verify = verify.cafile
    current, visited = url, {url}
    try:
        for _ in range(max_redirects + 1):
            response = session.get(
                current,
                headers=dict(headers or {}),
                auth=auth if auth and _may_send_credentials(url, current) else None,
                verify=verify,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
                proxies=requests.utils.get_environ_proxies(current),
            )
            target = session.get_redirect_target(response)
            if target is None:
                return HTTPStream(session, response, timeout)
            response.close()  # never read a redirect's body
            current = _next_hop(current, target, visited)
        raise TransportFailure(f"too many redirects (more than {max_redirects})")
    except TransportFailure:
        session.close()
        raise
    except (requests.exceptions.RequestException, OSError, ValueError) as error:
        session.close()
        raise TransportFailure(describe_transport_error(error, timeout)) from error


def _next_hop(current: str, location: str, visited: set[str]) -> str:
    try:
        target, _, _ = split_credentials(urljoin(current, location))
        scheme = parse(target).scheme
    except (InvalidURIError, ValueError) as error:  # urljoin: ValueError on a broken netloc
        raise TransportFailure(f"redirect to an invalid URL: {error}") from None
    if scheme not in HTTP_SCHEMES:
        raise TransportFailure(
            f"redirect to a {scheme or 'relative'}: URL refused ({mask_password(target)})"
        )
    if target in visited:
        raise TransportFailure(f"redirect loop at {mask_password(target)}")
    if scheme_of(current) == "https" and scheme == "http":
        log.warning("Redirected from https to plain http: %s", mask_password(target))
    visited.add(target)
    return target


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps (urllib3 ``reason``, ``args[0]``, ``__cause__``...)."""
    seen: set[int] = set()
    todo = [error]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for nested in (
            getattr(item, "reason", None),
            item.args[0] if item.args else None,
            item.__cause__,
            item.__context__,
        ):
            if isinstance(nested, BaseException):
                todo.append(nested)


def describe_transport_error(error: BaseException, timeout: Timeout | None = None) -> str:
    """A short, one-line reason for a network failure ("connection refused", ...)."""
    import requests
    import urllib3.exceptions as u3

    chain = list(_causes(error))
    connect_s = f" after {timeout[0]:g} s" if timeout else ""
    read_s = f" after {timeout[1]:g} s without data" if timeout else ""

    def first(*types: type[BaseException]) -> BaseException | None:
        return next((item for item in chain if isinstance(item, types)), None)

    if first(ConnectionRefusedError):
        return "connection refused"
    dns = first(socket.gaierror)
    if isinstance(dns, socket.gaierror):
        return f"cannot resolve host name: {dns.strerror or dns}"
    # urllib3's NewConnectionError subclasses ConnectTimeoutError: not a timeout
    if first(requests.exceptions.ConnectTimeout) or any(
        isinstance(item, u3.ConnectTimeoutError) and not isinstance(item, u3.NewConnectionError)
        for item in chain
    ):
        return f"timed out connecting{connect_s}"
    if first(requests.exceptions.ReadTimeout, u3.ReadTimeoutError, TimeoutError):
        return f"timed out reading{read_s}"
    tls = first(ssl.SSLError)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {tls.verify_message}"
    if isinstance(tls, ssl.SSLError):
        return f"TLS error: {tls.reason or tls}"
    if first(u3.IncompleteRead, http.client.IncompleteRead):
        return "connection closed before the end of the body"
    if first(ConnectionResetError, BrokenPipeError):
        return "connection reset by the server"
    if first(http.client.LineTooLong):
        return "malformed response: header line too long"
    if any(
        "got more than" in str(item)
        for item in chain
        if isinstance(item, http.client.HTTPException)
    ):
        return "malformed response: too many header lines"
    problem = first(http.client.HTTPException, u3.ProtocolError)
    root = problem if problem is not None else chain[-1]
    text = " ".join(str(root).split()) or type(root).__name__
    return f"{type(root).__name__}: {text}"[:300]


# --- the public entry point --------------------------------------------------------------


def _fail(url: str, reason: str) -> FetchError:
    return FetchError(f"cannot fetch {mask_password(url)}: {reason}")


def open_local_file(url: str) -> BinaryIO:
    """Open the file a ``file:`` URL names, unbuffered; TransportFailure with a short reason.

    The one reader of ``file:`` URLs, for lists and (when allowed) images.
    """
    try:
        path = local_path(url)
    except InvalidURIError as error:
        raise TransportFailure(str(error)) from None
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise TransportFailure("file does not exist") from None
    except IsADirectoryError:
        raise TransportFailure("is a directory") from None
    except OSError as error:
        raise TransportFailure(f"cannot read file: {error.strerror or error}") from None


def _read_file(url: str, max_bytes: int) -> bytes:
    body = bytearray()
    try:
        with open_local_file(url) as handle:
            copy_bounded(handle.read, body.extend, limit=max_bytes, chunk_size=_READ_CHUNK,
                         deadline=None)  # fmt: skip
    except TooLarge:
        raise _fail(url, f"too large: more than {max_bytes} bytes") from None
    except TransportFailure as failure:
        raise _fail(url, str(failure)) from None
    except OSError as error:
        raise _fail(url, f"cannot read file: {error.strerror or error}") from None
    return bytes(body)


def _read_body(stream: HTTPStream, url: str, max_bytes: int, deadline: float | None) -> bytes:
    declared = stream.content_length
    if declared is not None and declared > max_bytes:
        raise _fail(url, f"too large: server announces {declared} bytes, limit {max_bytes}")
    body = bytearray()
    try:
        copy_bounded(stream.read1, body.extend, limit=max_bytes, chunk_size=_READ_CHUNK,
                     deadline=deadline)  # fmt: skip
    except TooLarge:
        raise _fail(url, f"too large: more than {max_bytes} bytes") from None
    except TotalTimeExceeded:
        raise _fail(url, "took longer than the total time allowed") from None
    except TransportFailure as failure:
        raise _fail(url, f"{failure} (after {len(body)} bytes)") from failure
    if declared is not None and len(body) != declared:
        raise _fail(url, f"connection closed after {len(body)} of {declared} bytes")
    return bytes(body)


def fetch_list(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    trust_anchor: TrustAnchor | int = TrustAnchor.BROWSER,
    ca_dir: str | Path | None = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_LIST_BYTES,
    total_timeout: float | None = DEFAULT_LIST_TOTAL_TIMEOUT,
) -> bytes:
    """Return the bytes of the image list at ``url`` (``file://``, ``http://``, ``https://``).

    ``username``/``password`` override the ones embedded in the URL, each when non-empty
    (as the original applied DB values over the URL); Basic auth is sent only when both
    resulting parts are non-empty. ``timeout`` is (connect, read) seconds per socket
    operation; ``total_timeout`` bounds the whole transfer. The trust anchor applies to
    an ``http://`` URL too, since it may redirect to https. Raises FetchError.
    """
    try:
        scheme = parse(url).scheme
        plain_url, url_user, url_password = split_credentials(url)
    except InvalidURIError as error:
        raise FetchError(str(error)) from None
    if scheme == "file":
        return _read_file(plain_url, max_bytes)
    if scheme not in HTTP_SCHEMES:
        hint = ""
        if not scheme and plain_url.startswith(("/", "./", "../")):
            hint = f"; for a local file use '{Path(plain_url).absolute().as_uri()}'"
        raise _fail(url, f"unsupported scheme {scheme or '(none)'!r}{hint}")

    verify = tls_verify_for(trust_anchor, ca_dir)  # also for an http URL: it may redirect
    user, secret = username or url_user, password or url_password
    auth = (user, secret) if user and secret else None
    if auth and scheme == "http":
        log.warning("Sending credentials over plain http (not encrypted) to %s", plain_url)
    elif auth and verify is False:
        log.warning(
            "Sending credentials to %s without TLS verification (trust anchor 'none')",
            plain_url,
        )
    log.debug("Fetching %s (verify=%s)", plain_url, verify)

    deadline = None if total_timeout is None else time.monotonic() + total_timeout
    try:
        with open_http(plain_url, auth=auth, verify=verify, timeout=timeout) as stream:
            if stream.status != 200:
                raise _fail(url, f"HTTP {stream.status} {stream.reason}".rstrip())
            return _read_body(stream, url, max_bytes, deadline)
    except TransportFailure as failure:
        raise _fail(url, str(failure)) from failure
