"""Shared fixtures for the database tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmcatcher.db import Database, prepare_database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vmcatcher.db"


@pytest.fixture
def fresh_db(db_path: Path) -> Iterator[Database]:
    database = prepare_database(f"sqlite:///{db_path}")
    yield database
    database.close()


def backups_of(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".backup-*"))
