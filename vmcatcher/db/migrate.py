"""Bring a database's schema to the version this vmcatcher expects, on every start.

Why: sites keep the ``vmcatcher.db`` of the original (0.2 to 0.6.x), which has
no version table, and future releases will change the schema again. Each
command therefore calls :func:`ensure_schema` right after opening the database.

The common case must cost nothing: when ``alembic_version`` already holds the
head revision, ``ensure_schema`` runs exactly one ``SELECT`` and returns,
without importing Alembic. Otherwise, holding a write lock (``BEGIN
IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) so that two cron jobs
cannot migrate at once, it decides:

* no vmcatcher table at all: create every table at head and stamp head;
* vmcatcher tables but no ``alembic_version``: a database of the original.
  Its release is recognised from the ``subscription`` columns (11 columns →
  0.6, no ``updateMode`` → 0.4, no ``trustAnchor`` → before 0.4); missing
  tables are created as that release would have; the revision is stamped and
  upgraded to head;
* an older revision: upgrade to head;
* an unknown revision (a newer vmcatcher wrote it): refuse, change nothing.

Before changing an existing SQLite file a consistent copy is written next to
it (``<file>.backup-<UTC stamp>``, SQLite backup API) and a WARNING line on
logger ``vmcatcher.db`` names the backup and the versions. The whole
migration runs in one transaction with SQLite foreign keys off (a table
rebuild must not fire ``ON DELETE CASCADE``), so it either completes or leaves
the file as it was. Rows are never dropped.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, exc, inspect, pool

from vmcatcher.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    Database,
    database_error,
    not_created_error,
)
from vmcatcher.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("vmcatcher.db")

#: The newest revision; must equal the head of ``migrations/versions`` (a test checks).
HEAD_REVISION = "v0_7_runs"

#: What each revision corresponds to, for log messages.
RELEASE_OF_REVISION: dict[str, str] = {
    "pre_0_4": "vmcatcher < 0.4",
    "v0_4": "vmcatcher 0.4",
    "v0_6": "vmcatcher 0.5/0.6",
    "v0_7": "vmcatcher 0.7",
    "v0_7_runs": "vmcatcher 0.7 with run status",
}

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Arbitrary constant key for ``pg_advisory_xact_lock`` ("vmcatch" in ASCII).
_PG_LOCK_KEY = 0x766D6361746368


def schema_revision(database: Database) -> str | None:
    """The revision stamped in ``alembic_version``, or ``None`` when there is none.

    One query; a missing version table reads as ``None``. Raises
    :class:`DatabaseError` when the database cannot be read at all.
    """
    try:
        with database.engine.connect() as connection:
            return _stamped_revision(connection)
    except exc.SQLAlchemyError as error:
        raise database_error(database, "read", error) from None


def ensure_schema(database: Database) -> None:
    """Make sure *database* has the current schema, creating or upgrading it.

    Cheap when nothing is to be done (one query). Raises
    :class:`~vmcatcher.errors.DatabaseError` with a one-line message when the
    database cannot be read, has an unrecognised layout or cannot be migrated.
    """
    try:
        with database.engine.connect() as connection:
            current = _stamped_revision(connection)
    except exc.SQLAlchemyError as error:
        raise database_error(database, "read", error) from None
    if current == HEAD_REVISION:
        return
    if not database.create:
        _refuse_empty(database)
    try:
        with _quiet_alembic():
            _migrate(database)
    except DatabaseError:
        raise
    except Exception as error:
        raise database_error(database, "migrate", error) from None


def _refuse_empty(database: Database) -> None:
    """A command that does not configure never creates the schema (docs/database.md)."""
    from vmcatcher.db.migrations.legacy import TABLES

    try:
        with database.engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    except exc.SQLAlchemyError as error:
        raise database_error(database, "read", error) from None
    if not tables & (set(TABLES) | {"alembic_version"}):
        raise not_created_error(database.masked_url, database.origin, "has no vmcatcher tables")


def _stamped_revision(connection: Connection) -> str | None:
    try:
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except exc.DBAPIError:
        # No version table (or unreadable): the caller's slow path finds out which.
        if connection.in_transaction():
            connection.rollback()
        return None
    if len(rows) != 1:
        return None if not rows else ",".join(sorted(r[0] for r in rows))
    return rows[0][0]


def _migrate(database: Database) -> None:
    from alembic import command  # imported only when a migration is needed

    from vmcatcher.db.migrations.legacy import TABLES, detect_revision, legacy_metadata
    from vmcatcher.db.models import Base

    config = _alembic_config()
    known = _known_revisions(config)
    backup: Path | None = None
    with _migration_connection(database) as connection:
        tables = set(inspect(connection).get_table_names())
        current = _stamped_revision(connection) if "alembic_version" in tables else None
        if current == HEAD_REVISION:
            return  # another process migrated while we waited for the lock
        ours = tables & set(TABLES)

        if current is None and not ours:
            Base.metadata.create_all(connection)
            config.attributes["connection"] = connection
            command.stamp(config, HEAD_REVISION)
            log.warning(
                "Created database schema %s in '%s'",
                RELEASE_OF_REVISION[HEAD_REVISION],
                database.masked_url,
            )
            return

        if current is not None and current not in known:
            raise DatabaseError(
                f"Database '{database.masked_url}' has schema revision '{current}', "
                f"unknown to this vmcatcher (newest known: '{HEAD_REVISION}'); "
                "was it written by a newer release?"
            )

        legacy = current is None
        if legacy:
            if "subscription" in tables:
                columns = [c["name"] for c in inspect(connection).get_columns("subscription")]
                current = detect_revision(columns)
                if current is None:
                    raise DatabaseError(
                        f"Database '{database.masked_url}' has a 'subscription' table with "
                        f"unrecognised columns ({', '.join(columns)}); not upgrading it"
                    )
            else:
                current = "v0_6"
        assert current is not None  # stamped, or recognised from the original's columns

        backup = _backup_sqlite(database)
        log.warning(
            "Upgrading database '%s' schema from %s (revision %s) to %s (revision %s); %s",
            database.masked_url,
            RELEASE_OF_REVISION.get(current, current),
            current,
            RELEASE_OF_REVISION[HEAD_REVISION],
            HEAD_REVISION,
            f"backup written to '{backup}'" if backup else "no file backup made for this backend",
        )
        if legacy:
            old_schema = legacy_metadata(current)
            missing = [table for name, table in old_schema.tables.items() if name not in tables]
            if missing:
                old_schema.create_all(connection, tables=missing)
                log.info("Created missing tables: %s", ", ".join(t.name for t in missing))
        config.attributes["connection"] = connection
        if legacy:
            command.stamp(config, current)
        command.upgrade(config, HEAD_REVISION)
    if backup is not None:
        _vacuum(database)


def _vacuum(database: Database) -> None:
    """Give back the space the table rebuilds left free (the lists' blobs can be large).

    Not essential: a failure (e.g. a concurrent reader holding the file) is only logged.
    """
    path = database.sqlite_path
    if path is None:
        return
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            connection.execute("VACUUM")
    except sqlite3.Error as error:
        log.warning("Could not compact database '%s' after upgrade: %s", path, error)


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def _known_revisions(config: Config) -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    return {rev.revision for rev in script.walk_revisions()}


@contextmanager
def _migration_connection(database: Database) -> Iterator[Connection]:
    """A connection inside the transaction that holds the migration lock."""
    separate = database.is_sqlite and not database.is_sqlite_memory
    engine = _sqlite_migration_engine(database) if separate else database.engine
    try:
        with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
            yield connection
    finally:
        if engine is not database.engine:
            engine.dispose()


def _sqlite_migration_engine(database: Database) -> Engine:
    """A private SQLite engine whose transactions really include DDL.

    pysqlite by default neither begins a transaction before ``CREATE``/``DROP``
    nor takes the write lock early; a table rebuild must be atomic and must not
    fire foreign-key cascades. So: driver autocommit off, ``BEGIN IMMEDIATE``
    at ``begin()``, ``foreign_keys=OFF`` for this connection only.
    """
    engine = create_engine(
        database.url,
        poolclass=pool.NullPool,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        dbapi_connection.execute("PRAGMA foreign_keys = OFF")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _backup_sqlite(database: Database) -> Path | None:
    """Copy a file-backed SQLite database next to itself; return the copy's path."""
    source = database.sqlite_path
    if source is None:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = _unique_path(Path(f"{source}.backup-{stamp}"))
    mode = stat.S_IMODE(os.stat(source).st_mode) & 0o666
    # Create it private first: the database holds subscription passwords.
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        with (
            closing(sqlite3.connect(f"{Path(source).as_uri()}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        os.chmod(target, mode)
    except BaseException:
        with _suppress_os_error():
            os.unlink(target)
        raise
    return target


def _unique_path(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Keep Alembic's step-by-step INFO chatter off a command's console.

    Our own INFO line on ``vmcatcher.db`` says what happened. A site that set a
    level for the ``alembic`` logger explicitly keeps it.
    """
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


@contextmanager
def _suppress_os_error() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass
