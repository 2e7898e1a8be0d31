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

:class:`CacheLockBase` is the small protocol both locks follow:
``acquire``/``release`` and a context manager.

:class:`DatabaseAdvisoryLock` is the second one, for sites that run
``vmcatcher_cache`` on several hosts against one PostgreSQL database and one
shared cache: an ``flock`` does not reliably exclude processes on other hosts
(NFS, CIFS or cluster file systems differ), but every host reaches the same
database server. It is a session-level ``pg_try_advisory_lock`` held on one
dedicated connection for the whole run; the server drops it when that
connection ends, so a crashed or killed run leaves no stale lock either.

The key is ``(ADVISORY_LOCK_CLASS, crc32 of the cache directory's basename)``:
a constant for vmcatcher_cache plus the directory *name*, not its path, because
hosts mount the shared cache at different paths (``/mnt/vmcache/cache`` here,
``/srv/cache`` there). One cache per database is the supported shared
deployment; the basename only keeps two differently named caches that happen
to share a database from blocking each other. So every host must mount the
shared cache under the same directory name.
"""

from __future__ import annotations

import abc
import errno
import fcntl
import os
import socket
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from vmcatcher.errors import CacheError, CacheLockedError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

LOCK_FILENAME = ".vmcatcher.lock"
_POLL_INTERVAL = 0.1

#: First half of every vmcatcher_cache advisory lock key ("vmca"; fits a signed int4).
ADVISORY_LOCK_CLASS = 0x766D6361
#: How often a waiting run asks the database again.
_DB_POLL_INTERVAL = 0.5


class CacheLockBase(abc.ABC):
    """Mutual exclusion for one cache; use as a context manager."""

    @abc.abstractmethod
    def acquire(self) -> None:
        """Take the lock or raise :class:`~vmcatcher.errors.CacheLockedError`.

        Failures other than "held by someone else" raise its parent
        :class:`~vmcatcher.errors.CacheError`.
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock back; harmless if not held."""

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """True while this object holds the lock."""

    def __enter__(self) -> CacheLockBase:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class CacheLock(CacheLockBase):
    """An exclusive ``flock`` on ``<cache_dir>/.vmcatcher.lock``.

    ``wait``: ``False`` (or 0) fails at once if another process holds the
    lock; ``True`` waits as long as it takes; a number waits up to that many
    seconds.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], wait: bool | float = False) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.path = self.cache_dir / LOCK_FILENAME
        if wait is True:
            self.wait: float | None = None  # forever
        elif wait is False:
            self.wait = 0.0
        else:
            if wait < 0:
                raise ValueError("lock wait must not be negative")
            self.wait = float(wait)
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
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(
                    fd, fcntl.LOCK_EX if deadline is None else fcntl.LOCK_EX | fcntl.LOCK_NB
                )
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CacheError(f"Cannot lock '{self.path}': {exc.strerror}") from exc
            if deadline is None:  # pragma: no cover - a blocking flock only returns when held
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CacheLockedError(self._busy_message())
            time.sleep(min(_POLL_INTERVAL, remaining))

    def _busy_message(self) -> str:
        message = f"Another vmcatcher_cache is running on '{self.cache_dir}' (pid {self._holder()})"
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


def _wait_seconds(wait: bool | float) -> float | None:
    """``True`` → ``None`` (forever), ``False`` → 0, a number → that many seconds."""
    if wait is True:
        return None
    if wait is False:
        return 0.0
    if wait < 0:
        raise ValueError("lock wait must not be negative")
    return float(wait)


def advisory_lock_key(cache_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """The ``(class, object)`` advisory lock key of a cache directory (see module docstring)."""
    name = Path(os.path.abspath(cache_dir)).name
    return ADVISORY_LOCK_CLASS, zlib.crc32(name.encode("utf-8", "surrogateescape")) & 0x7FFFFFFF


class DatabaseAdvisoryLock(CacheLockBase):
    """A PostgreSQL session advisory lock on ``key``, held on one dedicated connection.

    ``engine`` must be a PostgreSQL engine; the connection is taken out of its
    pool for the run and closed on release. ``wait`` as for :class:`CacheLock`
    (the database is polled every half second). ``name`` is what messages call
    the cache, ``database`` how they name the database (give a masked URL).
    """

    def __init__(
        self,
        engine: Engine,
        key: tuple[int, int],
        wait: bool | float = False,
        *,
        name: str = "cache",
        database: str | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("advisory locks need a PostgreSQL database")
        self.engine = engine
        self.key = key
        self.wait = _wait_seconds(wait)
        self.name = name
        self.database = database or engine.url.render_as_string(hide_password=True)
        self._connection: Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def acquire(self) -> None:
        if self._connection is not None:
            return
        from sqlalchemy import exc

        try:
            connection = self.engine.connect()
        except exc.SQLAlchemyError as error:
            raise CacheError(
                f"Cannot lock cache '{self.name}' in database '{self.database}': "
                f"{_first_line(error)}"
            ) from None
        try:
            connection.detach()  # closed for real on release: never back into the pool
            self._label(connection)
            self._lock(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _label(self, connection: Connection) -> None:
        """Name this session after us, so a waiting run on another host can say who holds it."""
        label = f"vmcatcher_cache pid {os.getpid()} on {socket.gethostname()}"[:63]
        connection.exec_driver_sql("SELECT set_config('application_name', %(label)s, false)",
                                   {"label": label})  # fmt: skip
        connection.commit()

    def _lock(self, connection: Connection) -> None:
        from sqlalchemy import exc

        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                got = connection.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(class)s, %(object)s)",
                    {"class": self.key[0], "object": self.key[1]},
                ).scalar()
                connection.commit()  # the lock is session-level: no transaction left open
            except exc.SQLAlchemyError as error:
                raise CacheError(
                    f"Cannot lock cache '{self.name}' in database '{self.database}': "
                    f"{_first_line(error)}"
                ) from None
            if got:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CacheLockedError(self._busy_message(connection))
            time.sleep(
                _DB_POLL_INTERVAL if remaining is None else min(_DB_POLL_INTERVAL, remaining)
            )

    def _busy_message(self, connection: Connection) -> str:
        message = (
            f"Another vmcatcher_cache is running on cache '{self.name}' "
            f"(lock held in database '{self.database}' by {self._holder(connection)})"
        )
        if self.wait:
            message += f"; gave up after waiting {self.wait:g} seconds"
        return message

    def _holder(self, connection: Connection) -> str:
        """Who holds the lock, as far as this role may see: application name and client address."""
        try:
            row = connection.exec_driver_sql(
                "SELECT a.application_name, host(a.client_addr), l.pid "
                "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid::bigint = %(class)s AND l.objid::bigint = %(object)s",
                {"class": self.key[0], "object": self.key[1]},
            ).first()
            connection.commit()
        except Exception:
            return "another session"
        if row is None:
            return "another session"
        application, address, pid = row
        who = application or f"database session {pid}"
        return f"{who}, connected from {address}" if address else who

    def release(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            connection.exec_driver_sql(
                "SELECT pg_advisory_unlock(%(class)s, %(object)s)",
                {"class": self.key[0], "object": self.key[1]},
            )
            connection.commit()
        except Exception:
            pass  # closing the session below releases it anyway
        finally:
            connection.close()

    def __repr__(self) -> str:
        return f"DatabaseAdvisoryLock({self.name!r}, key={self.key}, held={self.held})"


def _first_line(error: BaseException) -> str:
    inner = getattr(error, "orig", None) or error
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0]
