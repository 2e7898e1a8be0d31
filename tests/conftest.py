"""Suite-wide test settings: the ``db`` marker and per-test database clean-up.

Why here: ``make test`` runs everything on SQLite, then re-runs ``-m db`` with
``VMCATCHER_TEST_DATABASE`` pointing at a PostgreSQL server
(:mod:`tests.support.databases`). Which tests belong to that second pass is
decided in one place:

* every test under the end-to-end directories below (they run the real
  commands against the database of :func:`~tests.support.databases.test_database_url`);
* tests elsewhere marked ``@pytest.mark.db`` explicitly (e.g. in ``tests/db``);
* minus tests marked ``@pytest.mark.sqlite_only`` (they check SQLite specifics
  such as the default ``sqlite:///vmcatcher.db`` or a file's permissions).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases, fuzzing

fuzzing.load_profile()  # before any test module builds its hypothesis settings

TESTS = Path(__file__).resolve().parent

#: Directories whose every test runs against the configured test database.
DB_DIRECTORIES = ("e2e", "cache_e2e", "check", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db: uses the database of VMCATCHER_TEST_DATABASE (re-run on PostgreSQL)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: checks SQLite specifics; never part of the PostgreSQL pass"
    )


def pytest_report_header(config: pytest.Config) -> str:
    url = databases.configured_url()
    if url is None:
        return "vmcatcher test database: SQLite (set VMCATCHER_TEST_DATABASE for PostgreSQL)"
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    return f"vmcatcher test database: PostgreSQL, a fresh database per test on {shown}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    directories = [TESTS / name for name in DB_DIRECTORIES]
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            continue
        path = Path(str(item.path))
        if any(path.is_relative_to(directory) for directory in directories):
            item.add_marker(pytest.mark.db)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases a test created, after all its other fixtures."""
    yield
    databases.drop_created_databases()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A new, empty vmcatcher database for this test (SQLite file or PostgreSQL database)."""
    return databases.test_database_url(tmp_path)
