"""``vmcatcher_check``: gather what the probe judges, read-only and without network.

Why a service of its own: the probe looks at the database, the CA directory and
the cache directory, the way an admin would, but must never change any of
them (it runs as a monitoring user, every few minutes, next to cron jobs). So
it opens the database read-only (:mod:`vmcatcher.db.readonly`), reads the
``cache.index`` files as plain JSON (loading them through
:class:`~vmcatcher.cache.index.CacheIndex` could quarantine a corrupt one),
and finds the cache lock's holder without taking the lock. The verdict itself
is :func:`vmcatcher.probe.evaluate` (docs/monitoring.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vmcatcher.cache.index import INDEX_FILENAME, expected_bytes
from vmcatcher.cache.lock import LOCK_FILENAME
from vmcatcher.errors import VmcatcherError
from vmcatcher.probe import CacheFacts, CrlFact, ProbeFacts, ProbeResult, Thresholds, evaluate
from vmcatcher.services.health import WantedImage
from vmcatcher.timeutil import utcnow


@dataclass(frozen=True)
class CheckOptions:
    database_url: str
    cert_dir: str
    crl_policy: str  # strict, relaxed or off
    cache_dir: str | None  # None: no cache checks
    partial_dir: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


def run_check(options: CheckOptions) -> ProbeResult:
    """Gather the facts and judge them."""
    return evaluate(gather(options), options.thresholds)


def gather(options: CheckOptions, now: datetime | None = None) -> ProbeFacts:
    """Every fact the probe judges; problems become facts, never exceptions."""
    now = now or utcnow()
    from sqlalchemy.exc import SQLAlchemyError

    from vmcatcher.db.engine import describe_database_error
    from vmcatcher.db.migrate import HEAD_REVISION, schema_revision
    from vmcatcher.db.readonly import open_read_only
    from vmcatcher.services.health import (
        count_wanted,
        last_runs,
        subscription_health,
        wanted_images,
    )

    try:
        database = open_read_only(options.database_url)
    except VmcatcherError as error:
        return ProbeFacts(now=now, database_problem=str(error))
    try:
        try:
            revision = schema_revision(database)
        except VmcatcherError as error:
            return ProbeFacts(now=now, database_problem=str(error))
        if revision != HEAD_REVISION:
            return ProbeFacts(
                now=now,
                database_problem=f"database '{database.masked_url}' is at schema revision "
                f"{revision or 'none'}, not {HEAD_REVISION}: run vmcatcher_subscribe -U once",
            )
        try:
            with database.session() as session:
                subscriptions = tuple(subscription_health(session))
                runs = last_runs(session)
                cache = None
                if options.cache_dir:
                    cache = _cache_facts(
                        options,
                        lambda known: (
                            count_wanted(session, now),
                            wanted_images(session, now, known),
                        ),
                        options.thresholds.max_tries,
                    )
        except SQLAlchemyError as error:  # e.g. a role without SELECT on a table
            problem = f"cannot read database '{database.masked_url}': "
            return ProbeFacts(now=now, database_problem=problem + describe_database_error(error))
    finally:
        database.close()
    crls, ca_problem = _crl_facts(options, now)
    return ProbeFacts(
        now=now,
        subscriptions=subscriptions,
        runs=runs,
        crl_policy=options.crl_policy,
        crls=crls,
        ca_problem=ca_problem,
        cache=cache,
    )


# --- CA directory -----------------------------------------------------------------------


def _crl_facts(options: CheckOptions, now: datetime) -> tuple[tuple[CrlFact, ...], str | None]:
    if options.crl_policy == "off":
        return (), None
    from vmcatcher.trust import load_trust_store
    from vmcatcher.trust.smime import crl_verdicts

    if not os.path.isdir(options.cert_dir):
        return (), f"CA directory '{options.cert_dir}' does not exist"
    try:
        store = load_trust_store(options.cert_dir)
    except VmcatcherError as error:
        return (), str(error)
    aware_now = now.replace(tzinfo=timezone.utc)
    facts = []
    for ca in store.all_certificates():
        verdicts, _usable = crl_verdicts([ca], store, aware_now)
        state = verdicts[0][1].state.value
        facts.append(CrlFact(ca.subject, state, _next_update(store, ca)))
    return tuple(facts), None


def _next_update(store: Any, ca: Any) -> datetime | None:
    """nextUpdate of the freshest readable CRL of ``ca``, as naive UTC."""
    readable = [c for c in store.crl_files(ca) if c.crl is not None and c.next_update]
    if not readable:
        return None
    freshest = max(readable, key=lambda c: c.last_update or c.next_update)
    moment = freshest.next_update
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


# --- cache directory ----------------------------------------------------------------------


def _cache_facts(
    options: CheckOptions,
    wanted_among: Callable[[set[str]], tuple[int, list[WantedImage]]],
    max_tries: int,
) -> CacheFacts:
    """Compare the cache directory with the wanted images.

    Only the images the two ``cache.index`` files name are fetched from the database
    (``wanted_among``); every other wanted image is simply missing, so a site with a
    large database and a small cache is checked in one count query.
    """
    cache_dir = Path(options.cache_dir or "cache")
    partial_dir = Path(options.partial_dir) if options.partial_dir else cache_dir / "partial"
    if not cache_dir.is_dir():
        return CacheFacts(problem=f"cache directory '{cache_dir}' does not exist")
    try:
        cached = _read_index(cache_dir)
        partial = _read_index(partial_dir) if partial_dir.is_dir() else {}
    except (OSError, ValueError) as error:
        return CacheFacts(problem=f"cannot read a cache.index under '{cache_dir}': {error}")
    wanted_count, wanted = wanted_among(set(cached) | set(partial))
    missing, given_up, bad_size = [], [], []
    for image in wanted:
        entry = cached.get(image.identifier)
        if isinstance(entry, dict) and expected_bytes(entry) == (str(image.size), image.sha512):
            name = str(entry.get("filename", image.identifier))
            try:
                size = (cache_dir / name).stat().st_size
            except OSError:
                size = None
            if size == image.size:
                continue
            if size is not None:
                bad_size.append(image.identifier)
                continue
        tries = (partial.get(image.identifier) or {}).get("DownLoadTrys")
        if (
            isinstance(tries, dict)
            and tries.get("msgHash") == image.list_hash
            and _int(tries.get("count")) >= max_tries
        ):
            given_up.append(image.identifier)
        else:
            missing.append(image.identifier)
    free = total = None
    try:
        info = os.statvfs(cache_dir)
        free, total = info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize
    except OSError:
        pass
    pid, held = lock_holder(cache_dir / LOCK_FILENAME)
    return CacheFacts(
        wanted=wanted_count,
        missing_count=wanted_count - len(wanted) + len(missing),
        missing=tuple(missing),
        given_up=tuple(given_up),
        bad_size=tuple(bad_size),
        free_bytes=free,
        total_bytes=total,
        lock_pid=pid,
        lock_seconds=held,
    )


def _read_index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX_FILENAME
    if not path.exists():
        return {}
    data = json.loads(path.read_bytes())
    return data if isinstance(data, dict) else {}


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def lock_holder(path: Path) -> tuple[int | None, float | None]:
    """(pid, seconds held) of the process holding the cache lock, or (None, None).

    The holder rewrites the lock file when it takes the lock, so the file's mtime
    is when it got it (vmcatcher/cache/lock.py). Whether it is held comes from
    ``/proc/locks``, which needs no lock of our own; elsewhere a non-blocking
    shared ``flock`` is tried and released at once.
    """
    try:
        info = path.stat()
    except OSError:
        return None, None
    held = _held_per_proc_locks(info)
    if held is None:
        held = _held_per_flock(path)
    if not held:
        return None, None
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    pid = int(text) if text.isdigit() else 0
    return pid, max(0.0, time.time() - info.st_mtime)


def _held_per_proc_locks(info: os.stat_result) -> bool | None:
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return True
        except ValueError:
            continue
    return False


def _held_per_flock(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False
