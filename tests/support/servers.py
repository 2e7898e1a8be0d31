"""Real HTTP/HTTPS servers on 127.0.0.1 for tests and benchmarks, with fault injection.

Network behaviour (timeouts, Range, redirects, truncation, TLS) is tested against real
sockets, never against mocks of ``requests``. :class:`TestServer` is a threaded
``http.server`` on a random free port that serves a table of routes and records every
request it receives.

Basic use::

    from tests.support.servers import TestServer

    with TestServer() as server:                      # HTTPS: TestServer(tls=pki)
        server.add("/list", b"signed bytes")
        data = fetch_list(server.url("/list"))
        assert server.requests[0].user_agent.startswith("vmcatcher/")

As a pytest fixture (put this in your area's ``conftest.py``)::

    @pytest.fixture
    def http_server():
        with TestServer() as server:
            yield server

Routes (each ``add``-like call replaces the route for that path; a path may include a
query string, which is matched first, before the bare path):

* ``add(path, content, status=200, headers=None, honour_range=True, auth=None,
  chunked=False)``: serve bytes or a :class:`Content` (e.g. :class:`GeneratedContent`
  for large bodies generated on the fly, never held in memory). Single ``Range:
  bytes=a-[b]`` requests get ``206`` + ``Content-Range``, or ``416`` past the end.
* ``set_content(path, content)``: replace the bytes between requests, keeping options.
* ``status(path, code, body=b"")``: answer with that status (404, 500...).
* ``redirect(path, to, status=302)``: ``Location: to`` verbatim (a path, a full URL, a
  ``file://`` URL; a route redirecting to itself is a loop).
* Faults, each optionally limited to the first ``times`` requests of the route, so that
  "fail once, then succeed" (resume) scenarios are one line:
  ``stall(path, content, seconds, before_headers=False)`` (slow loris: headers then
  silence), ``truncate(path, content, after)`` (announce the full length, close after
  ``after`` body bytes), ``wrong_length(path, content, declared)`` (lie in
  Content-Length), ``endless(path)`` (no length, body never ends), ``drip(path,
  content, interval, piece=1)`` (a few bytes at a time, each before the read timeout),
  ``huge_headers(path, content, line_length=..., count=...)``, ``fail(path, content,
  status)`` (an error status, by default once, then the content), ``bad_range(path,
  content)`` (206 with a Content-Range that does not match the request).
* Server-wide switches: ``server.auth = ("user", "pw")`` requires Basic auth everywhere
  (401 otherwise); ``server.ignore_range = True`` answers every Range request with the
  full body and 200, as some servers do.

Recording: ``server.requests`` (list of :class:`RecordedRequest`: method, path with
query, lower-cased headers, ``range``, ``user_agent``, ``authorization``,
``bytes_sent``), ``server.requests_for(path)``, ``server.clear_requests()``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.tls import TestPKI

MiB = 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
_RANGE = re.compile(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*")


# --- content ---------------------------------------------------------------------------


class Content:
    """A body of known size that can be produced slice by slice."""

    size: int

    def chunks(self, start: int, end: int) -> Iterator[bytes]:  # pragma: no cover
        raise NotImplementedError

    def read_all(self) -> bytes:
        return b"".join(self.chunks(0, self.size))

    def sha512(self) -> str:
        digest = hashlib.sha512()
        for chunk in self.chunks(0, self.size):
            digest.update(chunk)
        return digest.hexdigest()


class BytesContent(Content):
    """An in-memory body."""

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.data = bytes(data)
        self.size = len(self.data)
        self.piece = piece

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        view = memoryview(self.data)
        for offset in range(start, end, self.piece):
            yield bytes(view[offset : min(end, offset + self.piece)])


class GeneratedContent(Content):
    """A large deterministic pseudo-random body generated on the fly (constant memory).

    Block ``i`` (``block`` bytes) is one seeded random block whose first 8 bytes are
    replaced by ``i``: cheap to produce, and no two blocks are equal.
    """

    def __init__(self, size: int, seed: int = 1, block: int = MiB) -> None:
        if block < 16:
            raise ValueError("block must be at least 16 bytes")
        self.size = size
        self.block = block
        self._base = random.Random(seed).randbytes(block)

    def _block(self, index: int) -> bytes:
        return index.to_bytes(8, "big") + self._base[8:]

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            index, inner = divmod(position, self.block)
            data = self._block(index)
            stop = min(self.block, inner + end - position)
            yield data if (inner == 0 and stop == self.block) else data[inner:stop]
            position += stop - inner


def as_content(content: bytes | Content) -> Content:
    return content if isinstance(content, Content) else BytesContent(content)


# --- routes and records ------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    bytes_sent: int = 0
    status: int | None = None

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def user_agent(self) -> str | None:
        return self.headers.get("user-agent")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class Route:
    content: Content | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None
    honour_range: bool = True
    auth: tuple[str, str] | None = None
    chunked: bool = False
    fault: str | None = None
    fault_args: dict[str, float] = field(default_factory=dict)
    fault_times: int | None = None
    hits: int = 0


def basic_auth_header(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


# --- the server --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        record = RecordedRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
        )
        owner._record(record)
        route, fault = owner._route_for(self.path)
        self.close_connection = True
        try:
            self._respond(owner, route, fault, record, head)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            pass  # the client went away: that is what many tests do

    def _simple(self, record: RecordedRequest, code: int, body: bytes = b"", **extra: str):
        record.status = code
        self.send_response(code)
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        record.bytes_sent = len(body)

    def _respond(
        self,
        owner: TestServer,
        route: Route | None,
        fault: str | None,
        record: RecordedRequest,
        head: bool,
    ) -> None:
        if route is None:
            return self._simple(record, 404, b"not found\n")
        required = route.auth or owner.auth
        if required and record.authorization != basic_auth_header(*required):
            return self._simple(
                record, 401, b"authentication required\n", WWW_Authenticate='Basic realm="test"'
            )
        args = route.fault_args
        if fault == "stall" and args.get("before_headers"):
            owner._stop.wait(args["seconds"])
            return None
        if fault == "fail":
            code = int(args["status"])
            size = route.content.size if route.content else 0
            extra = {"Content_Range": f"bytes */{size}"} if code == 416 else {}
            return self._simple(record, code, b"failure body\n", **extra)
        if route.location is not None and route.content is None:
            return self._simple(record, route.status, b"", Location=route.location)
        if route.content is None:
            return self._simple(record, route.status, b"status body\n")
        if route.status not in (200, *_REDIRECTS):
            return self._simple(record, route.status, route.content.read_all())
        self._send_content(owner, route, fault, record, head)
        return None

    def _send_content(
        self,
        owner: TestServer,
        route: Route,
        fault: str | None,
        record: RecordedRequest,
        head: bool,
    ) -> None:
        content, args = route.content, route.fault_args
        assert content is not None
        start, end, status = 0, content.size, route.status
        match = _RANGE.fullmatch(record.range or "")
        if status == 200 and match and route.honour_range and not owner.ignore_range:
            first = int(match.group(1))
            if first >= content.size:
                return self._simple(record, 416, b"", Content_Range=f"bytes */{content.size}")
            last = int(match.group(2)) if match.group(2) else content.size - 1
            start, end, status = first, min(last + 1, content.size), 206
        if match and fault == "bad_range":
            start, end, status = 0, content.size, 206  # claims a range nobody asked for
        record.status = status
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{content.size}")
        chunked = route.chunked or fault == "endless"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif fault == "wrong_length":
            self.send_header("Content-Length", str(int(args["declared"])))
        else:
            self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if route.location is not None:
            self.send_header("Location", route.location)
        self.send_header("Connection", "close")
        for name, value in route.headers.items():
            self.send_header(name, value)
        if fault == "huge_headers":
            for number in range(int(args.get("count", 1))):
                self.send_header(f"X-Huge-{number}", "x" * int(args.get("line_length", 10)))
        self.end_headers()
        if head:
            return None
        self.wfile.flush()
        if fault == "stall" and owner._stop.wait(args["seconds"]):
            return None
        if fault == "endless":
            return self._send_endless(owner, record)
        return self._send_body(owner, content, start, end, fault, args, chunked, record)

    def _write(self, data: bytes, chunked: bool, record: RecordedRequest) -> None:
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)
        record.bytes_sent += len(data)

    def _send_body(
        self,
        owner: TestServer,
        content: Content,
        start: int,
        end: int,
        fault: str | None,
        args: dict[str, float],
        chunked: bool,
        record: RecordedRequest,
    ) -> None:
        limit = int(args["after"]) if fault == "truncate" else None
        for chunk in content.chunks(start, end):
            if owner._stop.is_set():
                return
            if limit is not None and record.bytes_sent + len(chunk) >= limit:
                self._write(chunk[: limit - record.bytes_sent], chunked, record)
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # abrupt end, no terminator
                return
            if fault == "drip":
                piece = int(args.get("piece", 1))
                for offset in range(0, len(chunk), piece):
                    if owner._stop.wait(args["interval"]):
                        return
                    self._write(chunk[offset : offset + piece], chunked, record)
                    self.wfile.flush()
                continue
            self._write(chunk, chunked, record)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send_endless(self, owner: TestServer, record: RecordedRequest) -> None:
        block = b"\0" * (64 * 1024)
        while not owner._stop.is_set():
            self._write(block, True, record)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: TestServer
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            wrapped = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.owner.tls_failures.append(repr(error))  # e.g. the client refused our cert
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            try:
                wrapped.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            wrapped.close()

    def handle_error(self, request: object, client_address: object) -> None:
        self.owner.errors.append(repr(request))


class TestServer:
    """A threaded HTTP (or HTTPS with ``tls=``) server on 127.0.0.1, random free port.

    ``tls`` is a :class:`tests.support.tls.TestPKI` (its server certificate for
    127.0.0.1/localhost is used) or a ready ``ssl.SSLContext``; ``wrong_host=True`` serves
    the PKI's certificate for another host name instead.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, tls: TestPKI | ssl.SSLContext | None = None, *, wrong_host: bool = False
    ) -> None:
        self.auth: tuple[str, str] | None = None
        self.ignore_range = False
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.tls_failures: list[str] = []
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        if tls is not None:
            context = tls if isinstance(tls, ssl.SSLContext) else tls.server_context(wrong_host)
            self._server.tls_context = context
        self.scheme = "https" if tls is not None else "http"
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._started = False

    # lifecycle
    def start(self) -> TestServer:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        self._stop.set()
        if self._started:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # addresses
    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/", *, user: str | None = None, password: str | None = None):
        """Absolute URL for ``path``, optionally with ``user:password@`` embedded."""
        creds = ""
        if user is not None:
            creds = user + (f":{password}" if password is not None else "") + "@"
        return f"{self.scheme}://{creds}127.0.0.1:{self.port}{path}"

    # routes
    def _put(self, path: str, route: Route) -> Route:
        with self._lock:
            self._routes[path] = route
        return route

    def add(
        self,
        path: str,
        content: bytes | Content,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        honour_range: bool = True,
        auth: tuple[str, str] | None = None,
        chunked: bool = False,
    ) -> Route:
        return self._put(
            path,
            Route(
                as_content(content), status, dict(headers or {}), None, honour_range, auth, chunked
            ),
        )

    def set_content(self, path: str, content: bytes | Content) -> None:
        with self._lock:
            self._routes[path].content = as_content(content)

    def status(self, path: str, code: int, body: bytes = b"") -> Route:
        """Answer every request with ``code`` and ``body``."""
        return self._put(path, Route(as_content(body), code))

    def redirect(
        self, path: str, to: str, status: int = 302, *, body: bytes | Content | None = None
    ) -> Route:
        """``Location: to`` verbatim; ``body`` (e.g. a huge GeneratedContent) is sent
        after the headers, to check that clients do not read redirect bodies."""
        content = None if body is None else as_content(body)
        return self._put(path, Route(content, status, location=to))

    def _fault(
        self, path: str, content: bytes | Content, fault: str, times: int | None, **args: float
    ) -> Route:
        return self._put(
            path,
            Route(as_content(content), fault=fault, fault_args=dict(args), fault_times=times),
        )

    def stall(
        self,
        path: str,
        content: bytes | Content,
        seconds: float,
        *,
        before_headers: bool = False,
        times: int | None = None,
    ) -> Route:
        return self._fault(
            path, content, "stall", times, seconds=seconds, before_headers=before_headers
        )

    def truncate(
        self, path: str, content: bytes | Content, after: int, *, times: int | None = None
    ) -> Route:
        return self._fault(path, content, "truncate", times, after=after)

    def wrong_length(
        self, path: str, content: bytes | Content, declared: int, *, times: int | None = None
    ) -> Route:
        return self._fault(path, content, "wrong_length", times, declared=declared)

    def endless(self, path: str, *, times: int | None = None) -> Route:
        return self._fault(path, b"", "endless", times)

    def drip(
        self,
        path: str,
        content: bytes | Content,
        interval: float,
        *,
        piece: int = 1,
        times: int | None = None,
    ) -> Route:
        return self._fault(path, content, "drip", times, interval=interval, piece=piece)

    def huge_headers(
        self,
        path: str,
        content: bytes | Content,
        *,
        line_length: int = 70_000,
        count: int = 1,
        times: int | None = None,
    ) -> Route:
        return self._fault(
            path, content, "huge_headers", times, line_length=line_length, count=count
        )

    def fail(
        self, path: str, content: bytes | Content, status: int, *, times: int | None = 1
    ) -> Route:
        """Answer ``status`` (e.g. 503, or 416 with ``Content-Range: bytes */size``) to
        the first ``times`` requests, then serve ``content`` normally."""
        return self._fault(path, content, "fail", times, status=status)

    def bad_range(self, path: str, content: bytes | Content, *, times: int | None = None) -> Route:
        """Answer a Range request with 206 and the *whole* body (``bytes 0-...``)."""
        return self._fault(path, content, "bad_range", times)

    def _route_for(self, raw_path: str) -> tuple[Route | None, str | None]:
        with self._lock:
            route = self._routes.get(raw_path) or self._routes.get(raw_path.split("?", 1)[0])
            if route is None:
                return None, None
            hit = route.hits
            route.hits += 1
        active = route.fault_times is None or hit < route.fault_times
        return route, route.fault if active else None

    # records
    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """Requests whose path (ignoring the query string) is ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (for "connection refused" tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
