"""Tests that only mean something on PostgreSQL: skipped unless the pass runs there.

Every test in this directory is marked ``db`` (see ``tests/conftest.py``), so
the PostgreSQL pass of ``make test`` runs all of them; each module here also
carries :data:`tests.support.databases.requires_postgresql`, so the SQLite pass
reports them as skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import test_database_url
from vmcatcher.db import Database, open_database


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    """A new, empty PostgreSQL database (no schema yet)."""
    return test_database_url(tmp_path)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    yield database
    database.close()
