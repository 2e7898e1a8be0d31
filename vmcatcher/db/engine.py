"""Open a vmcatcher database from a SQLAlchemy URL.

Why this module exists: every command starts by opening ``VMCATCHER_RDBMS``
(or ``-d``), and every one of them must fail the same way when it cannot —
one line, naming the URL with the password masked, exit 1 — instead of
dumping a SQLAlchemy traceback that might also show the password.

Any SQLAlchemy URL works. SQLite is the common case and gets what a
multi-process cron deployment needs, applied on every new connection:

* ``journal_mode=WAL`` so ``vmcatcher_cache`` can read while
  ``vmcatcher_subscribe -U`` writes;
* ``busy_timeout`` of 30 s so concurrent runs wait instead of failing with
  "database is locked" (``VMCATCHER_DB_BUSY_TIMEOUT``, in seconds, changes it:
  a site whose cron jobs may legitimately wait longer raises it, tests lower it);
* ``foreign_keys=ON`` so the schema's ``ON DELETE CASCADE`` clauses are real
  (the original never switched them on).

PostgreSQL (sites sharing one database between hosts) needs a driver: the
``postgresql`` extra (``pip install 'vmcatcher[postgresql]'``, i.e. psycopg 3)
or psycopg2 (Debian's ``python3-psycopg2``). Both
``postgresql+psycopg://user:pw@host:5432/db`` and the plain
``postgresql://user:pw@host/db`` work: the plain form is opened with psycopg 3
when it is installed, else with psycopg2, whatever SQLAlchemy's own default (an
explicit ``+driver`` is always kept). The URL handed to event handlers is the
one configured.

A relative ``sqlite:///vmcatcher.db`` is resolved against the current working
directory once, at open time, as the original did; later ``chdir`` calls do
not move the database.

Importing this module costs SQLAlchemy only; Alembic is imported by
:mod:`vmcatcher.db.migrate` when (and only when) a migration is needed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from vmcatcher.errors import DatabaseError
from vmcatcher.uri import password_in, redact_password

log = logging.getLogger("vmcatcher.db")

#: Who may create a missing database (docs/database.md, "Which commands create it").
CREATING_COMMANDS = "'vmcatcher_subscribe -s' and 'vmcatcher_endorser -C'"

#: The default of every command when neither ``-d`` nor ``VMCATCHER_RDBMS`` is given.
DEFAULT_URL = "sqlite:///vmcatcher.db"

#: How long a SQLite connection waits for a lock held by another process.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Environment variable overriding that wait, in seconds.
ENV_BUSY_TIMEOUT = "VMCATCHER_DB_BUSY_TIMEOUT"


@dataclass
class Database:
    """An opened database: the engine plus a session factory bound to it.

    ``session()`` returns a new :class:`~sqlalchemy.orm.Session` with
    ``expire_on_commit=False`` so objects stay usable for output after commit.
    ``session.begin()`` is also available (a session inside a transaction).
    """

    engine: Engine
    url: URL
    session: sessionmaker[Session] = field(repr=False)
    #: Where the URL came from ("set by option -d"...), for error messages; may be None.
    origin: str | None = None
    #: Whether a missing schema may be created (only configuring commands).
    create: bool = True

    @property
    def masked_url(self) -> str:
        """The URL as text with any password replaced by ``***``."""
        return self.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def sqlite_path(self) -> str | None:
        """Absolute path of a file-backed SQLite database, else ``None``."""
        if not self.is_sqlite:
            return None
        return sqlite_file(self.url)

    @property
    def is_sqlite_memory(self) -> bool:
        """True for a private in-memory SQLite database (gone when the pool closes)."""
        if not self.is_sqlite:
            return False
        database = self.url.database
        return not database or database == ":memory:" or self.url.query.get("mode") == "memory"

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def mask_url(url: str | URL) -> str:
    """Return *url* as text with its password replaced by ``***``.

    Works on text SQLAlchemy cannot parse too, so error messages about a
    malformed URL never leak a password either.
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return redact_password(url)


def not_created_error(masked: str, origin: str | None, problem: str) -> DatabaseError:
    """The one line refusing to create a missing database or schema (docs/database.md)."""
    where = f" ({origin})" if origin else ""
    return DatabaseError(
        f"Database '{masked}'{where} {problem}; not creating it: check the URL"
        f" (only {CREATING_COMMANDS} create a database)"
    )


def open_database(
    url: str,
    *,
    echo: bool = False,
    create: bool = True,
    read_only: bool = False,
    origin: str | None = None,
) -> Database:
    """Open the database at *url* and check that it can be used.

    One connection is made straight away (and kept in the pool), so that an
    unreachable server, an unreadable or corrupted file, or an unknown driver
    fails here with :class:`~vmcatcher.errors.DatabaseError` rather than in
    the middle of a command. The schema is not touched: call
    :func:`vmcatcher.db.migrate.ensure_schema` next.

    ``create=False`` refuses a SQLite file that does not exist (it is opened
    with ``mode=rw``, so it cannot be created by accident either) and makes
    ``ensure_schema`` refuse a database without tables. ``read_only=True``
    opens a SQLite file with ``mode=ro``; when that fails because the file is
    in WAL mode and the user can write neither it nor its directory, it is
    read as ``immutable`` (see docs/database.md, "Read-only users").
    ``origin`` says where *url* came from, for the error messages.
    """
    masked = mask_url(url)
    try:
        parsed = make_url(url)
    except Exception as error:
        detail = _one_line(error, password_in(url))
        raise DatabaseError(f"Invalid database URL '{masked}': {detail}") from None

    parsed = default_postgresql_driver(parsed)
    kwargs: dict[str, object] = {"echo": echo}
    busy_ms = SQLITE_BUSY_TIMEOUT_MS
    path: str | None = None
    if parsed.get_backend_name() == "sqlite":
        parsed = absolute_sqlite_url(parsed)
        busy_ms = sqlite_busy_timeout_ms()
        kwargs["connect_args"] = {"timeout": busy_ms / 1000}
        path = sqlite_file(parsed)
    masked = mask_url(parsed)
    new_file = path is not None and not os.path.exists(path)
    if new_file and not create:
        raise not_created_error(masked, origin, "does not exist")
    mode = "ro" if read_only else ("rwc" if create else "rw")
    try:
        engine = _engine(parsed, kwargs, path, mode, busy_ms)
        _check(engine)
    except ModuleNotFoundError as error:
        hint = f"; {POSTGRESQL_HINT}" if parsed.get_backend_name() == "postgresql" else ""
        raise DatabaseError(
            f"Cannot open database '{masked}': driver module '{error.name}' is not installed{hint}"
        ) from None
    except Exception as error:
        if not (read_only and path is not None and _needs_immutable(path)):
            raise DatabaseError(
                f"Cannot open database '{masked}': {_one_line(error, parsed.password)}"
            ) from None
        # A WAL file nobody writes to, in a directory this user cannot write: read it as is.
        try:
            engine = _engine(parsed, kwargs, path, "ro&immutable=1", busy_ms)
            _check(engine)
        except Exception as error:
            raise DatabaseError(
                f"Cannot open database '{masked}': {_one_line(error, parsed.password)}"
            ) from None
    if new_file:
        log.warning("Created new database file '%s' (%s)", path, origin or "as configured")

    factory = sessionmaker(bind=engine, expire_on_commit=False)
    return Database(engine=engine, url=parsed, session=factory, origin=origin, create=create)


def _engine(
    url: URL, kwargs: dict[str, object], path: str | None, mode: str, busy_ms: int
) -> Engine:
    """An engine for *url*; a SQLite file is opened as a ``mode=`` URI (see open_database)."""
    options = dict(kwargs)
    if path is not None:
        options["creator"] = _sqlite_creator(path, mode, busy_ms)
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        writable = "ro" not in mode

        def on_connect(dbapi_connection: object, record: object) -> None:
            _sqlite_on_connect(dbapi_connection, record, busy_ms, wal=writable)

        event.listen(engine, "connect", on_connect)
    return engine


def _sqlite_creator(path: str, mode: str, busy_ms: int) -> Callable[[], sqlite3.Connection]:
    uri = f"{Path(path).as_uri()}?mode={mode}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=busy_ms / 1000, check_same_thread=False)

    return connect


def _check(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception:
        engine.dispose()
        raise


def _needs_immutable(path: str) -> bool:
    """True when only an ``immutable`` open can read *path*: WAL, no -wal, unwritable dir."""
    directory = os.path.dirname(path) or "."
    return (
        os.path.exists(path)
        and not os.access(directory, os.W_OK)
        and not os.path.exists(f"{path}-wal")
    )


def database_error(database: Database, action: str, error: BaseException) -> DatabaseError:
    """Build the one-line DatabaseError for *action* failing on *database*."""
    detail = _one_line(error, database.url.password)
    return DatabaseError(f"Cannot {action} database '{database.masked_url}': {detail}")


def describe_database_error(error: BaseException) -> str:
    """One line for a failed database operation, saying what to do when it was locked.

    SQLAlchemy's own text spans several lines (the SQL, its parameters, a web
    link); users get the driver's message, and for SQLite's "database is locked"
    (another process held the lock past the busy timeout) the way out.
    """
    text = _one_line(error)
    if "database is locked" in text:
        try:
            seconds = f"{sqlite_busy_timeout_ms() / 1000:g} s"
        except DatabaseError:
            seconds = "the busy timeout"
        text += (
            f" (another process held it for more than {seconds}; retry later, or raise"
            f" {ENV_BUSY_TIMEOUT})"
        )
    return text


#: The PostgreSQL drivers we can use, in order of preference, with their SQLAlchemy names.
POSTGRESQL_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
POSTGRESQL_HINT = "pip install 'vmcatcher[postgresql]' (psycopg 3) or install psycopg2"


def default_postgresql_driver(url: URL) -> URL:
    """Open plain ``postgresql://`` with whichever driver is installed, psycopg 3 first.

    SQLAlchemy's own default for the plain form changed (psycopg2 up to 2.0,
    psycopg 3 from 2.1), so relying on it breaks sites that have only one of
    them, e.g. Debian's ``python3-psycopg2`` as deployments of the original
    used. An explicit ``+driver`` is always kept.
    """
    if url.drivername != "postgresql":
        return url
    for module, drivername in POSTGRESQL_DRIVERS:
        if _installed(module):
            return url.set(drivername=drivername)
    raise DatabaseError(
        f"Cannot open database '{mask_url(url)}': no PostgreSQL driver is installed; "
        f"{POSTGRESQL_HINT}"
    ) from None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def sqlite_busy_timeout_ms(environ: dict[str, str] | None = None) -> int:
    """The SQLite busy timeout in ms: ``VMCATCHER_DB_BUSY_TIMEOUT`` seconds, default 30 s."""
    text = (os.environ if environ is None else environ).get(ENV_BUSY_TIMEOUT, "").strip()
    if not text:
        return SQLITE_BUSY_TIMEOUT_MS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise DatabaseError(
            f"Invalid {ENV_BUSY_TIMEOUT} '{text}': a number of seconds from 0 to 86400"
        )
    return int(seconds * 1000)


def _sqlite_on_connect(
    dbapi_connection: object,
    _record: object,
    busy_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    *,
    wal: bool = True,
) -> None:
    """Per-connection SQLite settings (see module docstring)."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        # Fails with "file is not a database" on a corrupted file: let it raise.
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        if wal and mode not in ("wal", "memory"):
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            except Exception:
                # A read-only directory cannot hold the -wal file; keep the old mode.
                pass
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def sqlite_file(url: URL) -> str | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return database


def absolute_sqlite_url(url: URL) -> URL:
    path = sqlite_file(url)
    if path is None or os.path.isabs(path):
        return url
    return url.set(database=os.path.abspath(path))


def _one_line(error: BaseException, secret: str | None = None) -> str:
    """The driver's own message on one line, without SQLAlchemy's boilerplate."""
    inner: BaseException = error
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        inner = error.orig
    text = str(inner).strip() or type(inner).__name__
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    if secret:
        text = text.replace(secret, "***")
    return text
