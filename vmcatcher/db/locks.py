"""A PostgreSQL advisory lock for a cache shared by several hosts.

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

The key is ``(ADVISORY_LOCK_CLASS, crc32 of the cache directory's basename)``:
see :func:`advisory_lock_key` and docs/database.md.
"""

from __future__ import annotations

import os
import socket
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from vmcatcher.errors import CacheError, CacheLockedError, first_line
from vmcatcher.locking import Lock, poll, wait_seconds

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

#: First half of every vmcatcher_cache advisory lock key ("vmca"; fits a signed int4).
ADVISORY_LOCK_CLASS = 0x766D6361
#: How often a waiting run asks the database again.
_DB_POLL_INTERVAL = 0.5


def advisory_lock_key(cache_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """The ``(class, object)`` advisory lock key of a cache directory (see module docstring)."""
    name = Path(os.path.abspath(cache_dir)).name
    return ADVISORY_LOCK_CLASS, zlib.crc32(name.encode("utf-8", "surrogateescape")) & 0x7FFFFFFF


class DatabaseAdvisoryLock(Lock):
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
        self.wait = wait_seconds(wait)
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
                f"{first_line(error)}"
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

        def try_once() -> bool:
            try:
                got = connection.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(class)s, %(object)s)",
                    {"class": self.key[0], "object": self.key[1]},
                ).scalar()
                connection.commit()  # the lock is session-level: no transaction left open
            except exc.SQLAlchemyError as error:
                raise CacheError(
                    f"Cannot lock cache '{self.name}' in database '{self.database}': "
                    f"{first_line(error)}"
                ) from None
            return bool(got)

        if not poll(try_once, self.wait, _DB_POLL_INTERVAL):
            raise CacheLockedError(self._busy_message(connection))

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
