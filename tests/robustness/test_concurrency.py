"""Several vmcatcher commands on one SQLite database at the same time.

Cron starts ``vmcatcher_subscribe -U`` and ``vmcatcher_cache`` independently,
and an admin may type ``vmcatcher_image -l`` or a second ``-U`` at any moment.
With WAL and a busy timeout (``vmcatcher.db.engine``) they must all finish
correctly: readers never wait for the writer, writers wait for each other, a
new list version is imported exactly once however many ``-U`` race for it,
and a lock held longer than the busy timeout ends the command with one clear
line and exit 1, never a traceback.
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time

import pytest

from tests.robustness.consistency import assert_db_consistent
from tests.robustness.sitekit import SUBSCRIPTION, Site, mutate, seeded, uuids
from tests.support.commands import Result, clean_env, command_path
from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import sign

pytestmark = pytest.mark.robustness


def _start(site: Site, name: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.Popen(
        [command_path(name), *args],
        cwd=site.root,
        env=clean_env({**site.env, **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err)


def _instances(site: Site, version: int) -> int:
    with sqlite3.connect(site.db_path) as db:
        return db.execute(
            'SELECT count(*) FROM "imageListInstance" l JOIN "subscriptionAuth" a'
            " ON a.id = l.sub_auth JOIN subscription s ON s.id = a.subscription"
            " WHERE s.identifier = ? AND l.version = ?",
            (SUBSCRIPTION, str(version)),
        ).fetchone()[0]


def _no_lock_failure(result: Result) -> None:
    text = result.stdout + result.stderr
    assert "locked" not in text.lower(), result
    assert "Traceback" not in text, result


def test_update_and_cache_run_at_the_same_time(site: Site) -> None:
    """-U imports new versions while vmcatcher_cache downloads and vmcatcher_image -l reads."""
    seed, rng = seeded("update and cache at once")
    sizes = (1024, 4096)
    site.drip = (0.002, 1024)  # the cache run lasts while -U writes
    site.publish({uuid: rng.randbytes(rng.randint(*sizes)) for uuid in uuids(40, rng)})
    site.subscribe()
    for _ in range(4):
        site.publish(mutate(site.images, rng, sizes, change=10, remove=3, add=6))
        cache = _start(site, "vmcatcher_cache")
        time.sleep(0.3)  # the cache has read the database and is downloading
        update = _start(site, "vmcatcher_subscribe", "-U")
        listing = _start(site, "vmcatcher_image", "-l")
        results = [_finish(proc) for proc in (cache, update, listing)]
        for result in results:
            assert result.returncode == 0, f"seed {seed}: {result}"
            _no_lock_failure(result)
        assert _instances(site, site.version) == 1
        site.assert_consistent()
    site.check(site.command("vmcatcher_cache"))
    site.assert_consistent(strict=True)


def test_two_updates_at_once_import_a_new_version_once(site: Site) -> None:
    """Two -U racing for the same new version: both succeed, one instance is stored."""
    seed, rng = seeded("two updates at once")
    site.publish({uuid: rng.randbytes(64) for uuid in uuids(300, rng)})
    site.subscribe()
    for _ in range(4):
        site.publish(mutate(site.images, rng, (64, 64), change=100, remove=5, add=20))
        first = _start(site, "vmcatcher_subscribe", "-U")
        second = _start(site, "vmcatcher_subscribe", "-U")
        for result in (_finish(first), _finish(second)):
            assert result.returncode == 0, f"seed {seed}: {result}"
            _no_lock_failure(result)
        assert _instances(site, site.version) == 1, f"seed {seed}: version {site.version}"
        assert_db_consistent(site.db_path)


def _publish_other_list(site: Site, path: str) -> None:
    """A second valid signed list (another identifier) at ``path`` on the site's server."""
    document = make_image_list(
        "0b7c52f4-4ad7-4f0e-9d6b-3f3f0e6f2c11",
        site.server.url(path),
        "1",
        [make_image(data=b"other")],
        site.pki.endorser.subject,
        site.pki.endorser.issuer,
    )
    site.server.add(path, sign(list_payload(document), site.pki.endorser))


def _hold_exclusive_lock(path, seconds: float | None = None) -> sqlite3.Connection:
    """A plain sqlite3 connection holding BEGIN EXCLUSIVE (released by rollback/close)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("BEGIN EXCLUSIVE")
    if seconds is not None:
        threading.Timer(seconds, db.rollback).start()
    return db


def _one_error_line(result: Result) -> str:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, result
    errors = [line for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line]
    assert errors, result
    for line in errors:
        assert "[SQL:" not in line and "sqlalche.me" not in line, result
    assert not any(line.startswith(("[SQL", "(Background", "[parameters")) for line in
                   text.splitlines()), result  # fmt: skip
    return "\n".join(errors)


@pytest.mark.parametrize(
    "command",
    [
        ("vmcatcher_subscribe", "-U"),
        ("vmcatcher_image", "-r", "-u", "{image}"),
        ("vmcatcher_subscribe", "-s", "{other_list}"),
    ],
    ids=["subscribe-U", "image-r", "subscribe-s"],
)
def test_database_locked_longer_than_busy_timeout(site: Site, command: tuple[str, ...]) -> None:
    """A writer blocked past VMCATCHER_DB_BUSY_TIMEOUT: one clear ERROR line, exit 1."""
    site.publish({uuid: b"x" * 100 for uuid in uuids(3, __import__("random").Random(7))})
    site.subscribe()
    site.publish()  # a new version for -U to import
    image = sorted(site.images)[0]
    _publish_other_list(site, "/other.list")
    args = [a.format(image=image, other_list=site.server.url("/other.list")) for a in command]
    db = _hold_exclusive_lock(site.db_path)
    try:
        started = time.monotonic()
        result = site.command(*args, env={"VMCATCHER_DB_BUSY_TIMEOUT": "0.5"}, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        db.rollback()
        db.close()
    print(result)
    assert result.returncode == 1, result
    errors = _one_error_line(result)
    assert "locked" in errors.lower(), result
    assert elapsed < 20, f"took {elapsed:.1f}s with a 0.5 s busy timeout"
    assert_db_consistent(site.db_path)
    assert _instances(site, site.version) == 0
    # Once the lock is gone, the same command works.
    if command[:2] == ("vmcatcher_subscribe", "-U"):
        site.check(site.command(*args))
        assert _instances(site, site.version) == 1


def test_readers_and_cache_are_not_blocked_by_a_writer(site: Site) -> None:
    """WAL: while another process holds the write lock, reading commands still work."""
    site.publish({uuid: b"y" * 2048 for uuid in uuids(3, __import__("random").Random(8))})
    site.subscribe()
    db = _hold_exclusive_lock(site.db_path)
    try:
        env = {"VMCATCHER_DB_BUSY_TIMEOUT": "0.5"}
        listing = site.command("vmcatcher_image", "-l", env=env)
        cache = site.command("vmcatcher_cache", env=env)
    finally:
        db.rollback()
        db.close()
    for result in (listing, cache):
        assert result.returncode == 0, result
    _no_lock_failure(listing)
    # The cache's work is not blocked; only its run record (docs/monitoring.md) is a write,
    # skipped with one WARNING when the writer outlasts the busy timeout.
    text = cache.stdout + cache.stderr
    skipped = [line for line in text.splitlines() if "Run not recorded" in line]
    assert len(skipped) <= 1 and all(line.startswith("WARNING") for line in skipped), cache
    rest = "\n".join(line for line in text.splitlines() if line not in skipped)
    assert "locked" not in rest.lower() and "Traceback" not in rest, cache
    assert len(listing.stdout.splitlines()) == 3
    site.assert_consistent(strict=True)


def test_a_short_lock_is_waited_for(site: Site) -> None:
    """A lock released within the busy timeout: the writer waits and succeeds."""
    site.publish({uuid: b"z" * 100 for uuid in uuids(3, __import__("random").Random(9))})
    site.subscribe()
    site.publish()
    db = _hold_exclusive_lock(site.db_path, seconds=1.5)
    try:
        started = time.monotonic()
        result = site.command("vmcatcher_subscribe", "-U", env={"VMCATCHER_DB_BUSY_TIMEOUT": "20"})
        elapsed = time.monotonic() - started
    finally:
        time.sleep(0.1)
        db.close()
    assert result.returncode == 0, result
    _no_lock_failure(result)
    assert elapsed >= 1.0, f"did not wait for the lock ({elapsed:.2f}s)"
    assert _instances(site, site.version) == 1


def test_invalid_busy_timeout_is_a_usage_error(site: Site) -> None:
    result = site.command("vmcatcher_image", "-l", env={"VMCATCHER_DB_BUSY_TIMEOUT": "soon"})
    assert result.returncode == 1, result
    assert "VMCATCHER_DB_BUSY_TIMEOUT" in _one_error_line(result)
