"""Which database a DB-touching test runs on: SQLite by default, PostgreSQL on request.

Why one helper: ``make test`` runs the whole suite on SQLite, then runs the
tests marked ``db`` a second time against a PostgreSQL server (see
:mod:`tests.support.postgres`). Every test or fixture that needs a vmcatcher
database asks this module for its URL, so switching backends is one
environment variable and no test hard-codes ``sqlite:///``.

The contract:

* ``VMCATCHER_TEST_DATABASE`` unset, empty or ``sqlite``: every call of
  :func:`test_database_url` returns ``sqlite:///<tmp_path>/vmcatcher.db``
  (nothing is created here; :meth:`ScratchDatabase.prepare` creates the schema
  as a configuring command would).
* ``VMCATCHER_TEST_DATABASE=postgresql+psycopg://user:pw@127.0.0.1:port/db``
  (any SQLAlchemy PostgreSQL URL of a role allowed to ``CREATE DATABASE``):
  every call creates a new, empty database on that server, named
  ``vmct_<worker>_<n>_<random>``, and returns the same URL pointing at it. The
  database is dropped after the test (``tests/conftest.py`` calls
  :func:`drop_created_databases`), and any left over when the process exits.

``tests/support/commands.py`` removes ``VMCATCHER_*`` variables from the
environment of the commands under test, so the variable never leaks into a
command: fixtures put the URL into ``VMCATCHER_RDBMS`` themselves.

For reading what a command wrote, :class:`ScratchDatabase` runs plain SQL on
either backend with ``?`` placeholders and returns rows the way Python's
``sqlite3`` would (``DateTime`` columns as ``YYYY-MM-DD HH:MM:SS[.ffffff]``
text, booleans as 0/1), so assertions need not care which backend ran.
The schema's mixed-case names (``ImageInstance``, ``endorserPrincible``,
``fkIdentifier``...) may be written unquoted, as sqlite3 allows: on PostgreSQL,
which would fold them to lower case, they are quoted automatically.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

ENV = "VMCATCHER_TEST_DATABASE"

_counter = itertools.count(1)
_created: list[str] = []
_admin: Any = None  # one autocommit psycopg connection per test process


def configured_url() -> str | None:
    """The PostgreSQL server URL from ``VMCATCHER_TEST_DATABASE``, or None for SQLite."""
    value = os.environ.get(ENV, "").strip()
    if not value or value.lower() == "sqlite":
        return None
    if not value.startswith("postgresql"):
        raise RuntimeError(f"{ENV} must be empty, 'sqlite' or a postgresql URL, not {value!r}")
    return value


def backend() -> str:
    """``"postgresql"`` or ``"sqlite"``: what DB-touching tests run on in this process."""
    return "sqlite" if configured_url() is None else "postgresql"


def is_postgresql() -> bool:
    return configured_url() is not None


def _requires_postgresql() -> Any:
    import pytest

    return pytest.mark.skipif(
        not is_postgresql(),
        reason=f"needs PostgreSQL: {ENV} is not a postgresql URL (make test-postgresql runs it)",
    )


#: ``pytestmark = requires_postgresql`` for tests that only mean something on PostgreSQL.
requires_postgresql = _requires_postgresql()


def test_database_url(tmp_path: Path, name: str = "vmcatcher.db") -> str:
    """A URL for a new, empty vmcatcher database for one test (see the module docstring).

    On SQLite the file is ``tmp_path / name`` (not created here). On PostgreSQL
    each call creates a separate database, so a test needing two databases
    calls it twice.
    """
    server = configured_url()
    if server is None:
        return f"sqlite:///{tmp_path / name}"
    from sqlalchemy.engine import make_url

    database = _create_database()
    return make_url(server).set(database=database).render_as_string(hide_password=False)


test_database_url.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def test_database(tmp_path: Path, name: str = "vmcatcher.db") -> ScratchDatabase:
    """:func:`test_database_url` wrapped in a :class:`ScratchDatabase` for raw reads."""
    url = test_database_url(tmp_path, name)
    return ScratchDatabase(url, None if is_postgresql() else tmp_path / name)


test_database.__test__ = False  # type: ignore[attr-defined]


@dataclass
class ScratchDatabase:
    """Raw SQL on a test's database, independent of vmcatcher's own models.

    ``path`` is the SQLite file (``None`` on PostgreSQL). Parameters use ``?``.
    """

    url: str
    path: Path | None = None

    @property
    def is_postgresql(self) -> bool:
        return self.path is None

    def prepare(self) -> ScratchDatabase:
        """Create the schema, as a site's first configuring command would.

        Only ``vmcatcher_subscribe -s`` and ``vmcatcher_endorser -C`` create a
        database; fixtures whose tests start with any other command call this.
        """
        from vmcatcher.db import prepare_database

        prepare_database(self.url).close()
        return self

    @property
    def url_without_password(self) -> str:
        """The URL as vmcatcher shows it to event handlers: the password left out."""
        from sqlalchemy.engine import URL, make_url

        u = make_url(self.url)
        bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
        return bare.render_as_string(hide_password=False)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        if self.path is not None:
            with sqlite3.connect(self.path) as db:
                return db.execute(query, params).fetchall()
        with self._pg() as connection:
            cursor = connection.execute(_pg_query(query, params), tuple(params) or None)
            rows = cursor.fetchall() if cursor.description else []
        return [tuple(_like_sqlite(value) for value in row) for row in rows]

    def dicts(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as {column: value}, like ``sqlite3.Row``."""
        if self.path is not None:
            with sqlite3.connect(self.path) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute(query, params).fetchall()]
        with self._pg() as connection:
            cursor = connection.execute(_pg_query(query, params), tuple(params) or None)
            names = [column.name for column in cursor.description]
            return [
                dict(zip(names, (_like_sqlite(v) for v in row), strict=True))
                for row in cursor.fetchall()
            ]

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Run one writing statement and commit it."""
        if self.path is not None:
            db = sqlite3.connect(self.path)
            try:
                db.execute(statement, params)
                db.commit()
            finally:
                db.close()
            return
        with self._pg() as connection:
            connection.execute(_pg_query(statement, params), tuple(params) or None)

    def count(self, table: str) -> int:
        return int(self.scalar(f'SELECT count(*) FROM "{table}"'))

    def exists(self) -> bool:
        """Has anything created the schema yet (SQLite: does the file exist)?"""
        if self.path is not None:
            return self.path.exists()
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            )
        )

    def _pg(self) -> Any:
        import psycopg

        return psycopg.connect(**_connect_args(self.url))


def drop_created_databases() -> None:
    """Drop every PostgreSQL database this process created (no-op on SQLite)."""
    if not _created:
        return
    from psycopg import sql

    connection = _admin_connection()
    while _created:
        name = _created.pop()
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _create_database() -> str:
    from psycopg import sql

    connection = _admin_connection()
    worker = re.sub(r"\W", "", os.environ.get("PYTEST_XDIST_WORKER", "main"))
    name = f"vmct_{worker}_{next(_counter)}_{secrets.token_hex(3)}"
    strategy = " STRATEGY FILE_COPY" if connection.info.server_version >= 150000 else ""
    # FILE_COPY: ~20 ms instead of ~60 ms for an empty database (durability is off).
    connection.execute(sql.SQL("CREATE DATABASE {}" + strategy).format(sql.Identifier(name)))
    _created.append(name)
    return name


def _admin_connection() -> Any:
    global _admin
    if _admin is None or _admin.closed:
        import psycopg

        server = configured_url()
        assert server is not None
        _admin = psycopg.connect(**_connect_args(server), autocommit=True)
        atexit.register(_drop_at_exit)
    return _admin


def _drop_at_exit() -> None:
    try:
        drop_created_databases()
    except Exception:
        pass  # the server may already be gone; the cluster is thrown away anyway


def _connect_args(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    args: dict[str, Any] = {
        "host": parsed.host or "127.0.0.1",
        "dbname": parsed.database,
        "user": parsed.username,
        "password": parsed.password,
        "connect_timeout": 10,
    }
    if parsed.port:
        args["port"] = parsed.port
    args.update(parsed.query)
    return {key: value for key, value in args.items() if value is not None}


#: How SQLAlchemy's SQLite dialect stores a ``DateTime`` (always with microseconds).
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|(\?)|(%)|([A-Za-z_][A-Za-z0-9_]*)")


def _mixed_case_names() -> frozenset[str]:
    """Table and column names of the schema that PostgreSQL would fold if left unquoted."""
    from vmcatcher.db.models import Base

    names = set()
    for table in Base.metadata.tables.values():
        names.add(table.name)
        names.update(column.name for column in table.columns)
    return frozenset(name for name in names if name != name.lower())


def _pg_query(query: str, params: Sequence[Any]) -> str:
    """SQL written for sqlite3, made to mean the same on PostgreSQL.

    Outside quoted text: ``?`` placeholders become psycopg's ``%s`` (and ``%``
    becomes ``%%``) when there are parameters, and the schema's mixed-case
    names (``ImageInstance``, ``fkIdentifier``...) get the double quotes SQLite
    does not need but PostgreSQL does.
    """
    mixed = _mixed_case_names()

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "%s" if params else "?"
        if match.group(2):
            return "%%" if params else "%"
        word = match.group(3)
        if word is not None and word in mixed:
            return f'"{word}"'
        return match.group(0)

    return _TOKEN.sub(replace, query)


def _like_sqlite(value: Any) -> Any:
    """A PostgreSQL value as Python's sqlite3 returns the same column from SQLAlchemy's SQLite."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).strftime(_SQLITE_DATETIME)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, memoryview):
        return bytes(value)
    return value
