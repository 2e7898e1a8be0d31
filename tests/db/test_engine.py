"""Opening databases: SQLite settings, path resolution and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vmcatcher.db import (
    DEFAULT_URL,
    Subscription,
    mask_url,
    open_database,
    prepare_database,
)
from vmcatcher.errors import Code, DatabaseError

REPO = Path(__file__).resolve().parents[2]


def pragma(database, name: str):
    with database.engine.connect() as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_pragmas_are_in_effect_on_every_connection(fresh_db) -> None:
    assert pragma(fresh_db, "foreign_keys") == 1
    assert pragma(fresh_db, "journal_mode") == "wal"
    assert pragma(fresh_db, "busy_timeout") == 30000
    # ...also for sessions, which take their own pooled connections.
    with fresh_db.session() as session:
        assert session.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_foreign_keys_are_enforced(fresh_db) -> None:
    from vmcatcher.db import SubscriptionAuth

    with fresh_db.session() as session, session.begin():
        session.add(SubscriptionAuth(subscription_id=42, endorser_id=43, authorised=True))
        with pytest.raises(Exception, match="FOREIGN KEY constraint failed"):
            session.flush()


def test_relative_sqlite_url_is_resolved_against_the_cwd_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = prepare_database(DEFAULT_URL)
    try:
        assert database.sqlite_path == str(tmp_path / "vmcatcher.db")
        assert database.url.database == str(tmp_path / "vmcatcher.db")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        with database.session() as session, session.begin():
            session.add(Subscription(identifier="x", uri="http://h/l", authorised=True))
    finally:
        database.close()
    assert (tmp_path / "vmcatcher.db").is_file()
    assert not (tmp_path / "elsewhere" / "vmcatcher.db").exists()


def test_in_memory_database_works() -> None:
    database = prepare_database("sqlite://")
    try:
        assert database.sqlite_path is None
        with database.session() as session, session.begin():
            session.add(Subscription(identifier="x", uri="http://h/l", authorised=True))
        with database.session() as session:
            sub = session.query(Subscription).one()
            assert (sub.trust_anchor, sub.update_mode) == (0, 0)
    finally:
        database.close()


def test_mask_url_hides_passwords() -> None:
    assert mask_url("postgresql://vm:s3cr3t@db.example/vmc") == "postgresql://vm:***@db.example/vmc"
    assert mask_url("sqlite:////var/lib/vmcatcher/vmcatcher.db") == (
        "sqlite:////var/lib/vmcatcher/vmcatcher.db"
    )
    # Even when SQLAlchemy cannot parse it.
    assert "s3cr3t" not in mask_url("bad url ://vm:s3cr3t@host")


def assert_one_line_error(error: DatabaseError, *, shows: str, hides: str | None = None) -> str:
    message = str(error)
    assert "\n" not in message
    assert shows in message
    if hides:
        assert hides not in message
    assert error.code == Code.FAILURE
    assert error.__cause__ is None and error.__suppress_context__
    return message


def test_unparsable_url_is_a_database_error() -> None:
    with pytest.raises(DatabaseError) as caught:
        open_database("not a url ://admin:hunter2@host/db")
    assert_one_line_error(caught.value, shows="Invalid database URL", hides="hunter2")


def test_unknown_driver_is_a_database_error() -> None:
    with pytest.raises(DatabaseError) as caught:
        open_database("nosuchdb://admin:hunter2@127.0.0.1/vmcatcher")
    message = assert_one_line_error(
        caught.value, shows="'nosuchdb://admin:***@127.0.0.1/vmcatcher'", hides="hunter2"
    )
    assert message.startswith("Cannot open database")


def test_unreachable_server_masks_the_password() -> None:
    # Port 1 on the loopback: refused at once; the driver (psycopg) is installed.
    url = "postgresql+psycopg://admin:hunter2@127.0.0.1:1/vmcatcher?connect_timeout=5"
    with pytest.raises(DatabaseError) as caught:
        open_database(url)
    assert_one_line_error(caught.value, shows="admin:***@127.0.0.1:1", hides="hunter2")


PLAIN_PG = "postgresql://admin:hunter2@127.0.0.1:1/vmcatcher?connect_timeout=5"


def _only(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Pretend that only these driver modules are installed."""
    from vmcatcher.db import engine

    monkeypatch.setattr(engine, "_installed", lambda module: module in modules)


@pytest.mark.parametrize(
    ("installed", "driver"),
    [
        (("psycopg", "psycopg2"), "postgresql+psycopg"),
        (("psycopg",), "postgresql+psycopg"),
        (("psycopg2",), "postgresql+psycopg2"),
    ],
)
def test_plain_postgresql_url_uses_the_installed_driver(
    monkeypatch: pytest.MonkeyPatch, installed: tuple[str, ...], driver: str
) -> None:
    """psycopg 3 first, psycopg2 otherwise, whatever SQLAlchemy's own default is."""
    _only(monkeypatch, *installed)
    with pytest.raises(DatabaseError) as caught:
        open_database(PLAIN_PG)
    message = assert_one_line_error(
        caught.value, shows=f"'{driver}://admin:***@127.0.0.1:1/", hides="hunter2"
    )
    assert "No module named" not in message and "refused" in message


def test_plain_postgresql_url_without_any_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _only(monkeypatch)
    with pytest.raises(DatabaseError) as caught:
        open_database(PLAIN_PG)
    message = assert_one_line_error(caught.value, shows="no PostgreSQL driver", hides="hunter2")
    assert "pip install 'vmcatcher[postgresql]'" in message


def test_explicit_postgresql_driver_is_kept() -> None:
    url = "postgresql+psycopg2://admin:hunter2@127.0.0.1:1/vmcatcher"
    with pytest.raises(DatabaseError) as caught:
        open_database(url)
    assert_one_line_error(caught.value, shows="postgresql+psycopg2://admin:***@", hides="hunter2")


def test_directory_path_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        open_database(f"sqlite:///{tmp_path}")
    assert_one_line_error(caught.value, shows=str(tmp_path))


def test_missing_parent_directory_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        open_database(f"sqlite:///{tmp_path}/no/such/dir/vmcatcher.db")
    assert_one_line_error(caught.value, shows="unable to open database file")


def test_corrupted_file_is_a_database_error(tmp_path: Path) -> None:
    path = tmp_path / "vmcatcher.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(DatabaseError) as caught:
        prepare_database(f"sqlite:///{path}")
    assert_one_line_error(caught.value, shows="file is not a database")


def test_truncated_database_is_a_database_error(tmp_path: Path) -> None:
    """A real database cut in half: the header is fine, reading tables fails."""
    path = tmp_path / "vmcatcher.db"
    prepare_database(f"sqlite:///{path}").close()
    data = path.read_bytes()
    path.write_bytes(data[:4096] + os.urandom(len(data) - 4096))
    with pytest.raises(DatabaseError) as caught:
        prepare_database(f"sqlite:///{path}")
    assert_one_line_error(caught.value, shows=str(path))


def test_no_traceback_reaches_the_user(tmp_path: Path) -> None:
    """What a command does with the error: one line on stderr, exit 1."""
    code = textwrap.dedent(
        f"""
        import sys
        from vmcatcher.db import prepare_database
        from vmcatcher.errors import VmcatcherError
        try:
            prepare_database({f"sqlite:///{tmp_path}"!r})
        except VmcatcherError as error:
            print(error, file=sys.stderr)
            sys.exit(error.code)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
