"""One vmcatcher_cache per cache directory: a real flock between real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmcatcher.cache.layout import CacheLayout, Role
from vmcatcher.cache.lock import LOCK_FILENAME, CacheLock
from vmcatcher.errors import CacheError, CacheLockedError
from vmcatcher.locking import Lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
sys.path.insert(0, {repo!r})
from vmcatcher.cache.lock import CacheLock
lock = CacheLock(sys.argv[1], wait=float(sys.argv[2]))
lock.acquire()
print("locked", flush=True)
sys.stdin.read()  # hold until the test closes our stdin
lock.release()
"""

TRY = """
import sys
sys.path.insert(0, {repo!r})
from vmcatcher.cache.lock import CacheLock
from vmcatcher.errors import CacheError, CacheLockedError
try:
    with CacheLock(sys.argv[1], wait=float(sys.argv[2])):
        print("acquired", flush=True)
except CacheLockedError as exc:
    print(exc, flush=True)
    sys.exit(3)
"""

COUNTER = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from vmcatcher.cache.lock import CacheLock
counter = Path(sys.argv[2])
for _ in range(int(sys.argv[3])):
    with CacheLock(sys.argv[1], wait=True):
        value = int(counter.read_text())
        time.sleep(0.002)
        counter.write_text(str(value + 1))
"""


def start_holder(cache_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=str(REPO)), str(cache_dir), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=10)


def try_lock(cache_dir, wait: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TRY.format(repo=str(REPO)), str(cache_dir), str(wait)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_second_process_is_refused_with_holder_pid(tmp_path):
    holder = start_holder(tmp_path)
    try:
        second = try_lock(tmp_path, 0)
        assert second.returncode == 3
        assert second.stdout.strip() == (
            f"Another vmcatcher_cache is running on '{tmp_path}' (pid {holder.pid})"
        )
        with pytest.raises(CacheLockedError, match=f"pid {holder.pid}"):
            CacheLock(tmp_path).acquire()
    finally:
        stop(holder)
    after = try_lock(tmp_path, 0)
    assert after.returncode == 0 and after.stdout.strip() == "acquired"
    assert (tmp_path / LOCK_FILENAME).exists()  # never deleted


def test_waiting_gives_up_after_the_limit(tmp_path):
    holder = start_holder(tmp_path)
    try:
        lock = CacheLock(tmp_path, wait=0.6)
        start = time.monotonic()
        with pytest.raises(CacheLockedError, match=r"gave up after waiting 0\.6 seconds"):
            lock.acquire()
        assert 0.55 <= time.monotonic() - start < 3.0
        assert not lock.held
    finally:
        stop(holder)


def test_waiting_acquires_when_the_holder_finishes(tmp_path):
    holder = start_holder(tmp_path)
    waiter = subprocess.Popen(
        [sys.executable, "-c", TRY.format(repo=str(REPO)), str(tmp_path), "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.8)
    assert waiter.poll() is None  # still waiting
    stop(holder)
    out, _ = waiter.communicate(timeout=20)
    assert waiter.returncode == 0 and out.strip() == "acquired"


def test_lock_is_released_when_the_holder_dies(tmp_path):
    holder = start_holder(tmp_path)
    holder.kill()
    holder.wait(timeout=10)
    with CacheLock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / LOCK_FILENAME).read_text().strip().isdigit()
    assert not lock.held


def test_mutual_exclusion_under_contention(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                COUNTER.format(repo=str(REPO)),
                str(tmp_path),
                str(counter),
                "25",
            ]
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    assert counter.read_text() == "100"  # no lost update: never two holders at once


def test_same_process_second_lock_object_is_refused(tmp_path):
    with CacheLock(tmp_path), pytest.raises(CacheLockedError):
        CacheLock(tmp_path, wait=False).acquire()


def test_lock_file_survives_the_sweep_and_is_not_inherited(tmp_path):
    for name in ("partial", "expired"):
        (tmp_path / name).mkdir()
    layout = CacheLayout(tmp_path, tmp_path / "partial", tmp_path / "expired")
    with CacheLock(tmp_path):
        assert layout.sweep(Role.CACHE) == []
        # a child started while we hold the lock (e.g. an event handler that
        # backgrounds itself) must not keep the lock alive after we release it
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        assert try_lock(tmp_path, 0).returncode == 0
    finally:
        child.kill()
        child.wait()
    assert (tmp_path / LOCK_FILENAME).exists()


def test_protocol_and_arguments(tmp_path):
    assert issubclass(CacheLock, Lock)
    with pytest.raises(ValueError):
        CacheLock(tmp_path, wait=-1)
    assert CacheLock(tmp_path, wait=True).wait is None
    assert CacheLock(tmp_path, wait=False).wait == 0.0
    assert CacheLock(tmp_path, wait=5).wait == 5.0


def test_unusable_lock_location_is_a_typed_error(tmp_path):
    with pytest.raises(CacheError, match="Cannot open lock file") as err:
        CacheLock(tmp_path / "missing").acquire()
    assert not isinstance(err.value, CacheLockedError)
    with pytest.raises(CacheError):
        CacheLock(tmp_path / "missing").acquire()
