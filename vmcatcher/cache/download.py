"""Download one image file: a single streaming pass that writes, hashes and counts.

The original ran ``wget`` through a shell with the list's ``hv:uri`` interpolated
unquoted (command injection by any list publisher, docs/compatibility.md), with
``--no-check-certificate``, no upper bound on the size, and then read the whole file
again to hash it. Here:

* bytes go straight from the socket to ``partial_path`` while sha512 and the byte count
  are computed, in bounded chunks, so memory stays constant whatever the image size
  (the hash runs in a helper thread and the file is fdatasync'ed in the background every
  64 MiB, so hashing, writing and writeback overlap instead of adding up);
* no more than ``expected_size + 1`` bytes are ever read: one byte too many aborts the
  download and deletes the partial file (a hostile or broken server cannot fill the disk);
* an interrupted download keeps its partial file and the next call resumes it with an
  HTTP ``Range`` request, re-hashing the prefix already on disk; if the server ignores or
  refuses the range, or the resumed result does not verify, it starts again from zero;
* the result must have exactly ``expected_size`` bytes and the signed sha512, otherwise
  the partial file is deleted: the hash from the signed list is the integrity check;
* TLS is verified (system CAs plus the Grid CA directory, see
  :func:`vmcatcher.fetch.image_tls_verify`) unless the operator explicitly asks for no
  verification;
* ``file://`` image URLs are refused unless the caller allows them (a signed list could
  otherwise copy any readable local file into the cache, a hash-confirmation oracle);
* no shell, and no path is ever derived from the URL: the caller names ``partial_path``.

The caller (the cache service) owns the partial/cache directories and their indexes; it
moves a verified file into place with :func:`install_file`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmcatcher.durable import move_file
from vmcatcher.errors import DownloadError, InvalidURIError
from vmcatcher.fetch import (
    DEFAULT_TIMEOUT,
    HTTP_SCHEMES,
    HTTPStream,
    Timeout,
    TransportFailure,
    Verify,
    open_http,
)
from vmcatcher.uri import local_path, mask_password, parse, split_credentials

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = MiB
SYNC_EVERY = 64 * MiB  # background fdatasync interval while writing
_QUEUED_CHUNKS = 8  # chunks waiting for the hash thread (memory bound)
_SHA512_HEX = re.compile(r"[0-9a-fA-F]{128}")
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DownloadResult:
    """A verified image in ``path`` (not yet moved into the cache)."""

    path: Path
    size: int
    sha512: str
    resumed_from: int  # bytes reused from an earlier partial download (0: from scratch)
    transferred: int  # bytes received in this call


class DownloadCancelled(Exception):
    """The caller asked the download to stop (Ctrl-C); the partial file is kept for resuming."""


class _Restart(Exception):
    """Internal: discard what is on disk and request the whole file again."""


class _HashThread:
    """sha512 in a worker thread, so hashing overlaps the socket reads and file writes.

    hashlib releases the GIL on large updates; on a fast link the hash is the bottleneck
    and would otherwise add to the write time. The queue is bounded: constant memory.
    """

    def __init__(self) -> None:
        self._hasher = hashlib.sha512()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._thread = threading.Thread(target=self._run, name="vmcatcher-sha512", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.stop()
        return self._hasher.hexdigest()


class _Flusher:
    """fdatasync the file in the background every :data:`SYNC_EVERY` bytes.

    Dirty pages stay bounded while a large image arrives, and the final fsync has little
    left to do instead of stalling on gigabytes of writeback.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None

    def request(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vmcatcher-sync", daemon=True)
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self._fd)
            except OSError as error:
                self.error = error
                return

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wanted.set()
            self._thread.join()
            self._thread = None


class _Sink:
    """The partial file plus a running sha512 and byte count.

    Opening with ``offset`` > 0 keeps the first ``offset`` bytes (resume) and feeds them
    to the hash again; offset 0 truncates. Always :meth:`close` it.
    """

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
        try:
            self.fd = os.open(path, flags | (0 if offset else os.O_TRUNC), 0o644)
        except OSError as error:
            raise DownloadError(
                f"cannot open partial file '{path}': {error.strerror or error}"
            ) from None
        self._hash = _HashThread()
        self._flusher = _Flusher(self.fd)
        self._unsynced = 0
        self.size = 0
        try:
            if offset:
                self._hash_prefix(offset)
            self.start = self.size  # bytes reused from disk
            os.lseek(self.fd, self.size, os.SEEK_SET)
        except OSError as error:
            self.close()
            raise DownloadError(f"cannot read partial file '{path}': {error.strerror}") from None
        except BaseException:
            self.close()
            raise

    def _hash_prefix(self, offset: int) -> None:
        with open(self.path, "rb", buffering=0) as prefix:
            while self.size < offset:
                block = prefix.read(min(DEFAULT_CHUNK_SIZE, offset - self.size))
                if not block:
                    break
                self._hash.update(block)
                self.size += len(block)

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(chunk)
        self._unsynced += len(chunk)
        if self._unsynced >= SYNC_EVERY:
            self._unsynced = 0
            self._flusher.request()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def fsync(self) -> None:
        self._flusher.stop()
        if self._flusher.error is not None:
            raise self._flusher.error
        os.fsync(self.fd)

    def close(self) -> None:
        self._hash.stop()
        self._flusher.stop()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _check_expectations(expected_size: object, expected_sha512: object) -> str:
    if not isinstance(expected_size, int) or isinstance(expected_size, bool):
        raise DownloadError(f"invalid expected size {expected_size!r}")
    if expected_size < 0:
        raise DownloadError(f"invalid expected size {expected_size!r}")
    if not isinstance(expected_sha512, str) or not _SHA512_HEX.fullmatch(expected_sha512):
        raise DownloadError(f"invalid expected sha512 {expected_sha512!r}")
    return expected_sha512.lower()


def _existing_size(path: Path) -> int:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return 0
    except OSError as error:
        raise DownloadError(f"cannot use partial file '{path}': {error.strerror}") from None
    if not path.is_file() or path.is_symlink():
        raise DownloadError(f"partial file '{path}' is not a regular file")
    return info.st_size


def _check_space(directory: Path, needed: int, expected_size: int, url: str) -> None:
    try:
        stats = os.statvfs(directory)
    except FileNotFoundError:
        raise DownloadError(f"partial directory '{directory}' does not exist") from None
    except OSError as error:
        raise DownloadError(f"cannot inspect '{directory}': {error.strerror}") from None
    available = stats.f_frsize * stats.f_bavail
    if needed > available:
        raise DownloadError(
            f"image {mask_password(url)} is too large at {expected_size} bytes, "
            f"available disk space is {available} bytes"
        )


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes <start>-<end>/<total>`` -> (start, total or None); None if malformed."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


class _Transfer:
    """State of one download_image call (kept together to keep functions small)."""

    def __init__(
        self,
        url: str,
        path: Path,
        expected_size: int,
        progress: Progress | None,
        chunk_size: int,
        deadline: float | None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.cancel = cancel
        self.url = url
        self.shown = mask_password(url)
        self.path = path
        self.expected_size = expected_size
        self.progress = progress
        self.chunk_size = max(1, chunk_size)
        self.deadline = deadline
        self.transferred = 0

    def error(self, text: str) -> DownloadError:
        return DownloadError(f"image {self.shown}: {text}")

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.expected_size)

    def copy(self, read: Callable[[int], bytes], sink: _Sink) -> None:
        """Move bytes from ``read`` into ``sink``, never accepting more than expected."""
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise DownloadCancelled(self.shown)
            want = min(self.chunk_size, self.expected_size + 1 - sink.size)
            chunk = read(want)
            if not chunk:
                return
            if sink.size + len(chunk) > self.expected_size:
                raise self.error(
                    f"incorrect size: more than the expected {self.expected_size} bytes"
                )
            sink.write(chunk)
            self.transferred += len(chunk)
            self.report(sink.size)
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise TransportFailure("took longer than the total time allowed")


def _check_response(transfer: _Transfer, stream: HTTPStream, offset: int) -> int | None:
    """Check the response against the request; return the announced body length.

    Raises :class:`_Restart` when a range request cannot be continued, TransportFailure
    for an error status (a partial file is kept), DownloadError for a wrong size.
    """
    status, declared = stream.status, stream.content_length
    if offset and status == 206:
        parsed = _parse_content_range(stream.headers.get("Content-Range"))
        if parsed is None or parsed[0] != offset:
            log.info("Server answered with another range; restarting %s", transfer.shown)
            raise _Restart
        if parsed[1] is not None and parsed[1] != transfer.expected_size:
            raise transfer.error(
                f"incorrect size: expected {transfer.expected_size} bytes, server has {parsed[1]}"
            )
    elif offset and status == 416:
        log.info("Server refused the range request (416); restarting %s", transfer.shown)
        raise _Restart
    elif status != 200:
        raise TransportFailure(f"HTTP {status} {stream.reason}".rstrip())
    elif offset:
        log.info("Server ignored the range request; downloading %s from the start", transfer.shown)
    start = offset if status == 206 else 0
    if declared is not None and start + declared > transfer.expected_size:
        raise transfer.error(
            f"incorrect size: expected {transfer.expected_size} bytes, "
            f"server announces {start + declared}"
        )
    return declared


def _http_attempt(
    transfer: _Transfer,
    offset: int,
    auth: tuple[str, str] | None,
    verify: Verify,
    timeout: Timeout,
) -> _Sink:
    """One GET (with Range when ``offset``); returns the sink holding the finished body.

    The prefix already on disk is re-hashed *before* the request, so the server is not
    left waiting on an idle connection while a large prefix is read back.
    """
    sink = _Sink(transfer.path, offset) if offset else None
    try:
        offset = sink.start if sink is not None else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with open_http(
            transfer.url, headers=headers, auth=auth, verify=verify, timeout=timeout
        ) as stream:
            declared = _check_response(transfer, stream, offset)
            if sink is None or stream.status == 200:
                if sink is not None:
                    sink.close()
                sink = _Sink(transfer.path, 0)  # truncates
            before = sink.size
            transfer.report(before)
            transfer.copy(stream.read1, sink)
            received = sink.size - before
            if declared is not None and received != declared:
                raise TransportFailure(f"connection closed after {received} of {declared} bytes")
            return sink
    except BaseException:
        if sink is not None:
            sink.close()
        raise


def _file_attempt(transfer: _Transfer, url: str) -> _Sink:
    try:
        source = open(local_path(url), "rb", buffering=0)  # noqa: SIM115
    except InvalidURIError as error:
        raise transfer.error(str(error)) from None
    except FileNotFoundError:
        raise transfer.error("file does not exist") from None
    except OSError as error:
        raise transfer.error(f"cannot read file: {error.strerror or error}") from None
    with source:
        sink = _Sink(transfer.path, 0)
        try:
            transfer.copy(source.read, sink)
        except BaseException:
            sink.close()
            raise
    return sink


def _verify_complete(transfer: _Transfer, sink: _Sink, expected_sha512: str) -> str:
    """Raise on wrong size/hash (the caller deletes the file); return the hex digest."""
    if sink.size != transfer.expected_size:
        raise transfer.error(
            f"incorrect size: expected {transfer.expected_size} bytes, got {sink.size}"
        )
    digest = sink.hexdigest()
    if digest != expected_sha512:
        raise transfer.error(f"unexpected sha512: expected {expected_sha512}, got {digest}")
    return digest


def download_image(
    url: str,
    partial_path: Path,
    *,
    expected_size: int,
    expected_sha512: str,
    timeout: Timeout = DEFAULT_TIMEOUT,
    verify: Verify = True,
    allow_file: bool = False,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    total_timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Download ``url`` into ``partial_path`` and verify size and sha512 in the same pass.

    Resumes a partial file left by an interrupted earlier call. On success the file is
    fsync'ed and described by the result; on a wrong size or hash it is deleted; on a
    network failure it is kept for the next call. Raises DownloadError.

    ``verify``: True (system CAs), a CA bundle file or directory, or False (no TLS check).
    ``progress(bytes_so_far, expected_size)`` is called as bytes arrive.
    ``total_timeout`` (seconds) bounds the whole call; None means no bound beyond the
    per-read ``timeout``.
    ``cancel``: when set (by another thread), the copy stops before its next chunk and
    :class:`DownloadCancelled` is raised; the partial file is kept for resuming.
    """
    path = Path(partial_path)
    expected = _check_expectations(expected_size, expected_sha512)
    try:
        scheme = parse(url).scheme
        plain_url, user, secret = split_credentials(url)
    except InvalidURIError as error:
        raise DownloadError(str(error)) from None
    if scheme == "file" and not allow_file:
        raise DownloadError(f"image {mask_password(url)}: file:// image URLs are not allowed")
    if scheme != "file" and scheme not in HTTP_SCHEMES:
        raise DownloadError(f"Unknown transport {scheme!r} for image URL {mask_password(url)}")

    deadline = None if total_timeout is None else time.monotonic() + total_timeout
    transfer = _Transfer(plain_url, path, expected_size, progress, chunk_size, deadline, cancel)
    transfer.shown = mask_password(url)
    offset = _existing_size(path)
    if offset > expected_size:
        _discard(path)
        offset = 0
    _check_space(path.parent, expected_size - offset, expected_size, url)

    if offset == expected_size and offset > 0:
        finished = _reuse_complete(transfer, expected)
        if finished is not None:
            return finished
        offset = 0
    if scheme == "file":
        offset = 0
    auth = (user, secret) if user and secret else None
    return _download_loop(transfer, scheme, offset, expected, auth, verify, timeout)


def _write_failure(transfer: _Transfer, error: OSError) -> DownloadError:
    """The error for a failed write of the partial file; a full disk also removes the file.

    Keeping the bytes of a download that did not fit would keep the disk full, so
    the index writes and every other download would fail too; the free-space check
    then refuses the image up front until there is room for all of it.
    """
    text = f"cannot write '{transfer.path}': {error.strerror or error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        _discard(transfer.path)
        text += "; partial download removed"
    return transfer.error(text)


def _reuse_complete(transfer: _Transfer, expected: str) -> DownloadResult | None:
    """A previous run finished the file but did not install it: verify and reuse it."""
    sink = _Sink(transfer.path, transfer.expected_size)
    try:
        if sink.size == transfer.expected_size and sink.hexdigest() == expected:
            sink.fsync()
            transfer.report(sink.size)
            return DownloadResult(transfer.path, sink.size, expected, sink.size, 0)
    finally:
        sink.close()
    _discard(transfer.path)
    return None


def _download_loop(
    transfer: _Transfer,
    scheme: str,
    offset: int,
    expected: str,
    auth: tuple[str, str] | None,
    verify: Verify,
    timeout: Timeout,
) -> DownloadResult:
    restarts = 2
    while True:
        try:
            if scheme == "file":
                sink = _file_attempt(transfer, transfer.url)
            else:
                sink = _http_attempt(transfer, offset, auth, verify, timeout)
        except _Restart:
            _discard(transfer.path)
            offset, restarts = 0, restarts - 1
            if restarts < 0:
                raise transfer.error("server keeps answering with the wrong range") from None
            continue
        except TransportFailure as failure:
            kept = _existing_size(transfer.path)
            note = f"; {kept} of {transfer.expected_size} bytes kept for resuming" if kept else ""
            raise transfer.error(f"{failure}{note}") from failure
        except DownloadError:
            _discard(transfer.path)
            raise
        except OSError as error:
            raise _write_failure(transfer, error) from None
        try:
            digest = _verify_complete(transfer, sink, expected)
            sink.fsync()
        except DownloadError:
            sink.close()
            _discard(transfer.path)
            if sink.start and restarts > 0:
                log.info(
                    "Resumed download of %s did not verify; starting again from zero",
                    transfer.shown,
                )
                offset, restarts = 0, restarts - 1
                continue
            raise
        except OSError as error:
            raise _write_failure(transfer, error) from None
        finally:
            sink.close()
        return DownloadResult(transfer.path, sink.size, digest, sink.start, transfer.transferred)


def install_file(partial_path: Path, dest_path: Path) -> None:
    """Move a verified file into the cache atomically and make the move durable."""
    source, dest = Path(partial_path), Path(dest_path)
    try:
        move_file(source, dest, overwrite=True)
    except OSError as error:
        raise DownloadError(
            f"cannot move '{source}' to '{dest}': {error.strerror or error}"
        ) from None
