"""Shared fixtures for the database tests.

``fresh_db`` is always a SQLite file (for tests of SQLite specifics);
``any_db`` is the backend of ``VMCATCHER_TEST_DATABASE`` (SQLite by default,
a fresh PostgreSQL database in the PostgreSQL pass): use it in tests marked
``db``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import test_database_url
from vmcatcher.db import Database, prepare_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vmcatcher.db"


@pytest.fixture
def fresh_db(db_path: Path) -> Iterator[Database]:
    database = prepare_database(f"sqlite:///{db_path}")
    yield database
    database.close()


@pytest.fixture
def any_db(tmp_path: Path) -> Iterator[Database]:
    database = prepare_database(test_database_url(tmp_path))
    yield database
    database.close()


def backups_of(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".backup-*"))
