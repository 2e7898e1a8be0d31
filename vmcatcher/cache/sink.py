"""The partial file of a download, written, hashed and counted in one pass.

Why its own module: the download logic (requests, ranges, resume, limits) and
the disk side (a sha512 in a helper thread, background fdatasync every
:data:`SYNC_EVERY` bytes so writeback overlaps the transfer) change for
different reasons. :class:`HashingSink` is all the download needs: ``write``,
``hexdigest``, ``fsync``, ``close``; memory stays bounded whatever the image size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from vmcatcher.errors import DownloadError

MiB = 1024 * 1024
#: Blocks read back when a resumed download re-hashes its prefix.
PREFIX_BLOCK = MiB
SYNC_EVERY = 64 * MiB  # background fdatasync interval while writing
_QUEUED_CHUNKS = 8  # chunks waiting for the hash thread (memory bound)


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


class HashingSink:
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
                block = prefix.read(min(PREFIX_BLOCK, offset - self.size))
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
