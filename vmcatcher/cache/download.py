"""Download one image file: a single streaming pass that writes, hashes and counts.

The original ran ``wget`` through a shell with the list's ``hv:uri`` interpolated
unquoted (command injection by any list publisher, docs/compatibility.md), with
``--no-check-certificate``, no upper bound on the size, and then read the whole file
again to hash it. Here:

* bytes go straight from the socket to ``partial_path`` while sha512 and the byte count
  are computed (:class:`~vmcatcher.cache.sink.HashingSink`), in bounded chunks, so memory
  stays constant whatever the image size; the loop is the one lists use too
  (:func:`vmcatcher.fetch.copy_bounded`);
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
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmcatcher.cache.sink import HashingSink
from vmcatcher.durable import move_file
from vmcatcher.errors import DownloadError, InvalidURIError
from vmcatcher.fetch import (
    DEFAULT_TIMEOUT,
    HTTP_SCHEMES,
    HTTPStream,
    Timeout,
    TooLarge,
    TransportFailure,
    Verify,
    copy_bounded,
    open_http,
    open_local_file,
)
from vmcatcher.uri import mask_password, parse, split_credentials

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = MiB
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

    def copy(self, read: Callable[[int], bytes], sink: HashingSink) -> None:
        """Move bytes from ``read`` into ``sink``, never accepting more than expected."""

        def write(chunk: bytes) -> None:
            sink.write(chunk)
            self.transferred += len(chunk)
            self.report(sink.size)

        try:
            copy_bounded(read, write, limit=self.expected_size, chunk_size=self.chunk_size,
                         deadline=self.deadline, already=sink.size,
                         before_chunk=self._stop_if_cancelled)  # fmt: skip
        except TooLarge:
            raise self.error(
                f"incorrect size: more than the expected {self.expected_size} bytes"
            ) from None

    def _stop_if_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(self.shown)


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
) -> HashingSink:
    """One GET (with Range when ``offset``); returns the sink holding the finished body.

    The prefix already on disk is re-hashed *before* the request, so the server is not
    left waiting on an idle connection while a large prefix is read back.
    """
    sink = HashingSink(transfer.path, offset) if offset else None
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
                sink = HashingSink(transfer.path, 0)  # truncates
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


def _file_attempt(transfer: _Transfer, url: str) -> HashingSink:
    try:
        source = open_local_file(url)
    except TransportFailure as failure:
        raise transfer.error(str(failure)) from None
    with source:
        sink = HashingSink(transfer.path, 0)
        try:
            transfer.copy(source.read, sink)
        except BaseException:
            sink.close()
            raise
    return sink


def _verify_complete(transfer: _Transfer, sink: HashingSink, expected_sha512: str) -> str:
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
    sink = HashingSink(transfer.path, transfer.expected_size)
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
