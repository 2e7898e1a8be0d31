"""One ``vmcatcher_cache`` at a time per cache directory.

Two overlapping runs (a slow download still going when cron starts the next
one) would download the same images twice, sweep each other's partial files
and overwrite each other's ``cache.index``. So (docs/compatibility.md, "concurrent runs") a
second run waits for the first or exits with a clear message; it never
corrupts anything.

The lock is an ``fcntl.flock`` on ``<cache>/.vmcatcher.lock``:

* the kernel drops it when the holder exits, however it exits, so there are
  no stale locks to clean up and the file is never deleted (deleting a lock
  file while others wait on it breaks mutual exclusion);
* the name starts with a dot, so it is not a safe image name and the cache
  sweep never touches it;
* the holder writes its pid into it, only to name it in the message a
  waiting run prints;
* the descriptor is close-on-exec, so event handlers and their background
  children never inherit (and so never prolong) the lock.

:class:`~vmcatcher.db.locks.DatabaseAdvisoryLock` is the second lock of a run, for
caches shared across hosts through one PostgreSQL database; both follow
:class:`vmcatcher.locking.Lock`.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from vmcatcher.errors import CacheError, CacheLockedError
from vmcatcher.locking import Lock, poll, wait_seconds

LOCK_FILENAME = ".vmcatcher.lock"
_POLL_INTERVAL = 0.1


class CacheLock(Lock):
    """An exclusive ``flock`` on ``<cache_dir>/.vmcatcher.lock``.

    ``wait``: ``False`` (or 0) fails at once if another process holds the
    lock; ``True`` waits as long as it takes; a number waits up to that many
    seconds.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        wait: bool | float = False,
        *,
        filename: str = LOCK_FILENAME,
        command: str = "vmcatcher_cache",
    ) -> None:
        """``filename``/``command``: another lock file in the cache directory, and the
        command a busy message names (``vmcatcher_glance`` keeps its own run lock)."""
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.path = self.cache_dir / filename
        self.command = command
        self.wait = wait_seconds(wait)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CacheError(f"Cannot open lock file '{self.path}': {exc.strerror}") from exc
        try:
            self._lock(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _lock(self, fd: int) -> None:
        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CacheError(f"Cannot lock '{self.path}': {exc.strerror}") from exc
                return False
            return True

        if not poll(try_once, self.wait, _POLL_INTERVAL):
            raise CacheLockedError(self._busy_message())

    def _busy_message(self) -> str:
        message = f"Another {self.command} is running on '{self.cache_dir}' (pid {self._holder()})"
        if self.wait:
            message += f"; gave up after waiting {self.wait:g} seconds"
        return message

    def _holder(self) -> str:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return "unknown"
        return text if text.isdigit() else "unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"CacheLock({str(self.path)!r}, held={self.held})"
