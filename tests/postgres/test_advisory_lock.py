"""The cache's PostgreSQL advisory lock between real sessions and real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool

from tests.support.databases import requires_postgresql
from vmcatcher.db.locks import DatabaseAdvisoryLock, advisory_lock_key
from vmcatcher.errors import CacheError, CacheLockedError

pytestmark = requires_postgresql

REPO = Path(__file__).resolve().parents[2]
KEY = advisory_lock_key("/srv/host-a/cache")

HOLDER = """
import sys
sys.path.insert(0, {repo!r})
from sqlalchemy import create_engine
from vmcatcher.db.locks import DatabaseAdvisoryLock, advisory_lock_key
lock = DatabaseAdvisoryLock(create_engine(sys.argv[1]), advisory_lock_key(sys.argv[2]))
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def engines(pg_url: str):
    """Two engines on one database: two hosts' worth of sessions."""
    made = [create_engine(pg_url, poolclass=pool.QueuePool) for _ in range(2)]
    yield made
    for engine in made:
        engine.dispose()


def lock(engine, key=KEY, wait=False) -> DatabaseAdvisoryLock:
    return DatabaseAdvisoryLock(engine, key, wait, name="cache", database="the-db")


def test_second_session_is_refused_with_a_message_naming_the_holder(engines) -> None:
    first, second = lock(engines[0]), lock(engines[1])
    first.acquire()
    try:
        with pytest.raises(CacheLockedError) as caught:
            second.acquire()
        assert not second.held
        message = str(caught.value)
        assert message.startswith("Another vmcatcher_cache is running on cache 'cache'")
        assert "'the-db'" in message
        assert f"vmcatcher_cache pid {os.getpid()} on {socket.gethostname()}"[:63] in message
        assert "connected from 127.0.0.1" in message
    finally:
        first.release()
    with second:
        assert second.held
    assert not second.held


def test_other_cache_names_do_not_block_each_other(engines) -> None:
    with lock(engines[0]), lock(engines[1], key=advisory_lock_key("/srv/other")) as other:
        assert other.held


def test_timed_wait_gives_up_after_the_timeout(engines) -> None:
    with lock(engines[0]):
        began = time.monotonic()
        with pytest.raises(CacheLockedError, match=r"gave up after waiting 1\.2 seconds"):
            lock(engines[1], wait=1.2).acquire()
        assert 1.2 <= time.monotonic() - began < 5


def test_waiting_run_gets_the_lock_when_the_holder_releases(engines) -> None:
    holder = lock(engines[0])
    holder.acquire()
    timer = threading.Timer(0.7, holder.release)
    timer.start()
    try:
        began = time.monotonic()
        with lock(engines[1], wait=True) as waiter:
            assert waiter.held
            assert time.monotonic() - began >= 0.6
    finally:
        timer.join()


def test_lock_connection_leaves_the_pool_and_is_closed_on_release(engines) -> None:
    engine = engines[0]
    held = lock(engine)
    held.acquire()
    with engine.connect() as other:  # a pooled connection is a different session
        holders = other.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).scalar()
        assert holders == 0
    held.release()
    with engine.connect() as again:
        name = again.exec_driver_sql("SHOW application_name").scalar()
        assert not name.startswith("vmcatcher_cache pid")
        count = again.exec_driver_sql(  # pg_locks is server-wide: other tests' locks too
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        ).scalar()
        assert count == 0


def test_a_killed_holder_leaves_no_stale_lock(pg_url: str, engines) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=str(REPO)), pg_url, "/x/cache"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CacheLockedError):
            lock(engines[0], key=advisory_lock_key("/y/cache")).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # The server notices the dropped connection and frees the lock at once.
        with lock(engines[0], key=advisory_lock_key("/y/cache"), wait=10) as taken:
            assert taken.held
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_unreachable_database_is_a_cache_error_not_a_traceback() -> None:
    engine = create_engine("postgresql+psycopg://u:secret@127.0.0.1:1/db?connect_timeout=3")
    try:
        with pytest.raises(CacheError) as caught:
            lock(engine).acquire()
        assert not isinstance(caught.value, CacheLockedError)
        assert "Cannot lock cache 'cache' in database 'the-db'" in str(caught.value)
        assert "secret" not in str(caught.value)
    finally:
        engine.dispose()
