"""Open a vmcatcher database for reading only, never creating or upgrading it.

Why: ``vmcatcher_check`` runs as the NRPE or monitoring user, which may only
read the database, and a probe must never change what it observes. So unlike
:func:`vmcatcher.db.engine.open_database` this does not switch SQLite to WAL,
opens the file with ``mode=ro`` (a missing file is reported, not created, and
no side file is created either: :func:`_sqlite_ro`) and asks PostgreSQL for
read-only transactions (docs/monitoring.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event, pool
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from vmcatcher.db.engine import (
    Database,
    absolute_sqlite_url,
    default_postgresql_driver,
    mask_url,
    sqlite_file,
)
from vmcatcher.errors import DatabaseError


def open_read_only(url: str) -> Database:
    """A :class:`Database` whose connections cannot write; raises DatabaseError."""
    try:
        parsed = default_postgresql_driver(make_url(url))
    except DatabaseError:
        raise
    except Exception:
        raise DatabaseError(f"Invalid database URL '{mask_url(url)}'") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, object] = {"poolclass": pool.NullPool}
    if backend == "sqlite":
        parsed = absolute_sqlite_url(parsed)
        path = sqlite_file(parsed)
        if path is not None:
            if not os.path.isfile(path):
                raise DatabaseError(f"Database file '{path}' does not exist")
            kwargs["creator"] = lambda: _sqlite_ro(path)
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as error:
        raise DatabaseError(f"Cannot open database '{mask_url(parsed)}': {error}") from None
    if backend == "postgresql":

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.close()
            dbapi_connection.commit()

    return Database(engine=engine, url=parsed, session=sessionmaker(bind=engine))


def _sqlite_ro(path: str):  # -> sqlite3.Connection
    """A read-only connection that creates no file next to the database.

    A reader of a WAL database normally opens (and, where it may, creates) the
    ``-wal`` and ``-shm`` side files. When they do not exist, no run is writing
    and everything is in the main file, so it is read as ``immutable``: nothing
    is created, not even by a monitoring user who may write the directory
    (a ``-shm`` file owned by that user would stop vmcatcher itself). When they
    exist, a run is active and the reader joins it the normal way, read-only.
    """
    import sqlite3

    uri = f"{Path(path).as_uri()}?mode=ro"
    if not os.path.exists(f"{path}-wal") and not os.path.exists(f"{path}-shm"):
        uri += "&immutable=1"
    connection = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    connection.execute("PRAGMA query_only = ON")
    return connection
