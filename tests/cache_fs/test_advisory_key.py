"""The advisory lock's key and guard: pure logic, checked on every backend.

The lock itself, between real PostgreSQL sessions, is tested in
``tests/postgres/test_advisory_lock.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from vmcatcher.db.locks import ADVISORY_LOCK_CLASS, DatabaseAdvisoryLock, advisory_lock_key


def test_key_is_the_directory_name_not_its_path() -> None:
    assert advisory_lock_key("/srv/host-a/cache") == advisory_lock_key("/mnt/b/cache/")
    assert advisory_lock_key("/srv/host-a/cache") != advisory_lock_key("/srv/host-a/images")
    cls, obj = advisory_lock_key("relative/cache")
    assert cls == ADVISORY_LOCK_CLASS and 0 <= obj < 2**31
    assert 0 <= ADVISORY_LOCK_CLASS < 2**31  # both halves fit PostgreSQL's int4


def test_sqlite_engines_are_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ValueError, match="PostgreSQL"):
        DatabaseAdvisoryLock(engine, advisory_lock_key(tmp_path))
