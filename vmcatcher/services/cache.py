"""``vmcatcher_cache``: keep the cache equal to the set of subscribed, available images.

One run (docs/commands/vmcatcher_cache.md) fires ``ProcessPrefix``, then runs
the selected actions in the fixed order expire → sha512 check → download, saves
the three indexes and fires ``ProcessPostfix``. The main thread owns the
indexes, the database and the events; worker threads only move bytes (:func:`download_image`), so
parallel downloads cannot interleave index writes or events.

Fixed relative to the original (docs/compatibility.md): a corrupt
image found by the sha512 check is moved to ``expired/`` with Expire events
(not silently deleted); partial downloads that are no longer wanted are
dropped; a failed expiry still saves the indexes and fires ``ProcessPostfix``
(and the run exits 1); downloads stream, verify while writing, resume, and
never run a shell. Names are checked before they are used: an identifier that
is not a safe file name, or that names one of our nested directories
(``partial``, ``expired``), is ignored with an ERROR, and index entries whose
key or ``filename`` could not be one of our files are dropped at start-up, so
they never become paths nor reach a handler as ``VMCATCHER_EVENT_FILENAME``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from vmcatcher.cache.digest import file_size_and_sha512
from vmcatcher.cache.download import DownloadResult, download_image, install_file
from vmcatcher.cache.index import expected_bytes, same_bytes
from vmcatcher.cache.layout import CacheLayout, Role
from vmcatcher.cache.recovery import recover_interrupted_moves
from vmcatcher.db.engine import Database
from vmcatcher.db.models import ImageDefinition, ImageInstance, ImageListInstance, Subscription
from vmcatcher.errors import CacheError, CacheFileMissingError, DatabaseError, VmcatcherError
from vmcatcher.events import EventRunner
from vmcatcher.fetch import Verify
from vmcatcher.monitoring import Counter, RunCommand, RunStats
from vmcatcher.names import UnsafeNameError
from vmcatcher.services.availability import available_query
from vmcatcher.settings import DatabaseSettings
from vmcatcher.timeutil import utcnow
from vmcatcher.vocabulary import CacheAction, Caching, EventType

log = logging.getLogger("vmcatcher.cache")

MAX_DOWNLOAD_TRIES = 5
# A download may take at most this long plus its size at this rate: a server that drips
# bytes just faster than the read timeout cannot hold the run (and its lock) for ever,
# while a slow but honest link still finishes (the next run resumes what was fetched).
DOWNLOAD_GRACE_SECONDS = 600.0
MIN_DOWNLOAD_RATE = 64 * 1024  # bytes per second

# Copied from the database row into every index entry as str(value), as the original.
_INSTANCE_FIELDS = {
    "dc:title": "title",
    "dc:description": "description",
    "hv:version": "version",
    "hv:hypervisor": "hypervisor",
    "sl:arch": "arch",
    "sl:comments": "comments",
    "sl:os": "os",
    "sl:osversion": "osversion",
}


class ProgressDisplay(Protocol):
    """Shows downloads as they go; the command passes one in (a terminal: bars)."""

    def open(self, name: str, total: int) -> Callable[[int, int], None] | None:
        """Start showing ``name``; return the callback fed (bytes so far, total)."""

    def done(self, name: str) -> None:
        """``name`` has finished (or failed)."""

    def close(self) -> None:
        """The run's downloads are over."""


class NoProgress:
    """No display: under cron the log lines say enough."""

    def open(self, name: str, total: int) -> Callable[[int, int], None] | None:
        return None

    def done(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class CacheSettings:
    """Everything one ``vmcatcher_cache`` run is configured with, as resolved by the command."""

    directories: tuple[str, str, str]  # cache, partial, expired
    database: DatabaseSettings
    actions: frozenset[CacheAction]
    cert_dir: str
    handler: str | None = None  # -x / VMCATCHER_CACHE_EVENT
    event_timeout: float = 10.0
    insecure: bool = False
    allow_file: bool = False
    parallel: int = 2
    timeout: tuple[float, float] = (10.0, 60.0)
    wait: bool | float = False
    expired_max_count: int | None = None
    expired_max_age_days: float | None = None
    allow_empty_database: bool = False
    retry: tuple[str, ...] = ()


def run_cache(
    settings: CacheSettings,
    progress: ProgressDisplay | None = None,
    stats: RunStats | None = None,
) -> int:
    """One ``vmcatcher_cache`` run: lock the cache, open the database, run, fire events.

    Returns the exit code (0, or 1 when expiry failed). The cache lock is taken
    before the database is opened, and on PostgreSQL an advisory lock as well, so
    runs on other hosts sharing the cache wait too (docs/database.md).
    """
    from vmcatcher.cache.lock import CacheLock
    from vmcatcher.fetch import image_tls_verify
    from vmcatcher.services.database import open_configured_database

    layout = CacheLayout(*settings.directories)
    with CacheLock(layout.cache_dir, wait=settings.wait), ExitStack() as held:
        database = open_configured_database(settings.database)
        held.callback(database.close)
        _lock_shared_cache(database, layout.cache_dir, settings.wait, held)
        events = EventRunner(
            settings.handler,
            base_env=base_environment(layout, settings.database.url),
            timeout=settings.event_timeout,
        )
        events.stats = stats
        options = CacheOptions(
            actions=set(settings.actions),
            events=events,
            tls_verify=image_tls_verify(settings.cert_dir, insecure=settings.insecure),
            allow_file=settings.allow_file,
            parallel=settings.parallel,
            timeout=settings.timeout,
            progress=progress or NoProgress(),
            expired_max_count=settings.expired_max_count,
            expired_max_age_days=settings.expired_max_age_days,
            allow_empty_database=settings.allow_empty_database,
            retry=settings.retry,
        )
        if stats is not None:
            options.stats = stats
        with database.session() as session:
            return CacheRun(layout, session, options).run()


def _lock_shared_cache(
    database: Database, cache_dir: Path, wait: bool | float, held: ExitStack
) -> None:
    """On PostgreSQL also take the cache's advisory lock: runs on other hosts share the DB.

    The file lock alone cannot be trusted across hosts (shared file systems
    differ); see :mod:`vmcatcher.db.locks` for the key. SQLite databases are
    local files, so the file lock is enough there.
    """
    if database.engine.dialect.name != "postgresql":
        return
    from vmcatcher.db.locks import DatabaseAdvisoryLock, advisory_lock_key

    lock = DatabaseAdvisoryLock(
        database.engine,
        advisory_lock_key(cache_dir),
        wait,
        name=str(cache_dir),
        database=database.masked_url,
    )
    held.enter_context(lock)


@dataclass
class CacheOptions:
    """What a :class:`CacheRun` works with: the settings turned into live objects."""

    actions: set[CacheAction]
    events: EventRunner
    tls_verify: Verify = True
    allow_file: bool = False
    parallel: int = 2
    timeout: tuple[float, float] = (10.0, 60.0)
    progress: ProgressDisplay = field(default_factory=NoProgress)
    expired_max_count: int | None = None
    expired_max_age_days: float | None = None
    allow_empty_database: bool = False
    #: Images whose failed-download counter is reset first (``--retry``).
    retry: tuple[str, ...] = ()
    #: Counters for the run record and metrics (docs/monitoring.md).
    stats: RunStats = field(default_factory=lambda: RunStats(RunCommand.CACHE, utcnow()))


@dataclass
class _Wanted:
    """One image that should be in the cache, with the index entry describing it."""

    uuid: str
    entry: dict[str, Any]


@dataclass
class CacheRun:
    """One run of ``vmcatcher_cache`` over one layout and one database session."""

    layout: CacheLayout
    session: Session
    options: CacheOptions
    now: datetime = field(default_factory=utcnow)
    _wanted: dict[str, _Wanted] | None = field(default=None, init=False, repr=False)
    #: Set on Ctrl-C: the download workers stop before their next chunk.
    _cancel: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def run(self) -> int:
        """Run the selected actions; return the exit code (0, or 1 when expiry failed)."""
        recovered = recover_interrupted_moves(self.layout)  # before the sweep deletes them
        for role in Role:
            self.layout.sweep(role)
        self.layout.load_indexes()
        self._drop_unusable_entries()
        if CacheAction.EXPIRE in self.options.actions:
            self._refuse_empty_database()
        events = self.options.events
        events.fire(EventType.PROCESS_PREFIX)
        for event_type, metadata in recovered:
            events.fire(event_type, metadata)
        rc = 0
        if CacheAction.EXPIRE in self.options.actions and not self.expire():
            log.error("Failed to expire old images")
            rc = 1
        if CacheAction.CHECK in self.options.actions:
            self.check()
        if CacheAction.DOWNLOAD in self.options.actions:
            self.download()
        if self.options.expired_max_count is not None or (
            self.options.expired_max_age_days is not None
        ):
            self.layout.prune_expired(
                max_count=self.options.expired_max_count,
                max_age_days=self.options.expired_max_age_days,
            )
        self.layout.save()  # after pruning, so expired/cache.index matches the files
        self.options.stats.set(Counter.IMAGES_SELECTED, len(self.wanted()))
        self.options.stats.set(Counter.IMAGES_CACHED, len(self.layout.cache_index))
        events.fire(EventType.PROCESS_POSTFIX)
        return rc

    # --- what should be cached ------------------------------------------------------

    def wanted(self) -> dict[str, _Wanted]:
        """Every subscribed, available image, keyed by UUID, with its index entry.

        Computed once per run (the database does not change during a run), so
        a refused identifier is reported once.
        """
        if self._wanted is None:
            self._wanted = self._query_wanted()
        return self._wanted

    def _query_wanted(self) -> dict[str, _Wanted]:
        query = available_query(self.now).where(ImageDefinition.cache == Caching.ON)
        decoded: dict[int, tuple[dict, dict[str, dict]]] = {}
        found: dict[str, _Wanted] = {}
        for sub, definition, instance, image in self.session.execute(query):
            problem = self._name_problem(definition.identifier, Role.CACHE, Role.PARTIAL)
            if problem:
                log.error("Image identifier %r cannot be used: %s; ignored.",
                          definition.identifier, problem)  # fmt: skip
                continue
            if instance.id not in decoded:
                decoded[instance.id] = stored_list_fields(instance)
            list_metadata, images = decoded[instance.id]
            entry = index_entry(sub, definition, instance, image, list_metadata, images)
            found[definition.identifier] = _Wanted(definition.identifier, entry)
        return found

    def _name_problem(self, name: object, *roles: Role) -> str | None:
        """Why ``name`` cannot name a file in these roles' directories (None if it can)."""
        if not isinstance(name, str):
            return f"{name!r} is not a safe file name"
        for role in roles:
            try:
                self.layout.path(role, name)
            except UnsafeNameError as error:
                return str(error)
        return None

    def _drop_unusable_entries(self) -> None:
        """Forget index entries whose key or file name could not be one of our files.

        Such an entry was written by hand or by something else: acting on it would
        use it as a path, and its events would hand it to handlers as a file name.
        """
        for role in Role:
            index = self.layout.index(role)
            for key, entry in list(index.items()):
                problem = self._name_problem(key, role) or self._name_problem(
                    entry.get("filename", key), role
                )
                if problem:
                    log.error("Dropping entry %r of the %s index: %s.", key, role.value, problem)
                    del index[key]

    # --- expire -------------------------------------------------------------------------

    def _refuse_empty_database(self) -> None:
        """Expiring everything because the database is empty is almost always a wrong ``-d``.

        See docs/commands/vmcatcher_cache.md (``--allow-empty-database``).
        """
        cached = len(self.layout.cache_index)
        if not cached or self.options.allow_empty_database:
            return
        if self.session.execute(select(Subscription.id).limit(1)).first() is not None:
            return
        bind = self.session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseError(
            f"Database '{url}' holds no subscription while the cache index lists {cached} "
            "image(s): not expiring them (wrong database? --allow-empty-database expires them)"
        )

    def expire(self) -> bool:
        """Move every cached image that is no longer wanted to the expired directory."""
        cache_index = self.layout.cache_index
        wanted = self.wanted()
        doomed = []
        for uuid, entry in list(cache_index.items()):
            target = wanted.get(uuid)
            if target is None or not same_bytes(entry, target.entry):
                doomed.append(uuid)
                continue
            if entry.get("msgHash") != target.entry["msgHash"]:
                entry["message"] = target.entry["message"]
                entry["msgHash"] = target.entry["msgHash"]
        ok = True
        for uuid in doomed:
            ok = self._expire_one(uuid) and ok
        return ok

    def _expire_one(self, uuid: str) -> bool:
        entry = self.layout.cache_index.get(uuid)
        if entry is None:
            return True
        self.options.events.fire(EventType.EXPIRE_PREFIX, entry)
        ok = True
        try:
            self.layout.move_to_expired(uuid)
            log.info("Expired image '%s'", uuid)
            self.options.stats.add(Counter.IMAGES_EXPIRED)
        except CacheFileMissingError as error:
            log.error("%s", error)
            ok = False
        except (CacheError, UnsafeNameError) as error:
            log.error("Failed to move file %s to expired directory: %s", uuid, error)
            ok = False
        self.layout.save(Role.EXPIRED, Role.CACHE)  # gaining index first: see cache.recovery
        self.options.events.fire(EventType.EXPIRE_POSTFIX, entry)
        return ok

    # --- sha512 check ---------------------------------------------------------------------

    def check(self) -> None:
        """Re-hash every cached image; move corrupt ones to expired/ (with events)."""
        for uuid, entry in list(self.layout.cache_index.items()):
            try:
                path = self.layout.path(Role.CACHE, str(entry.get("filename", uuid)))
            except UnsafeNameError as error:
                log.error("Image '%s': %s", uuid, error)
                continue
            if not path.is_file():
                log.error("Image '%s' is missing from the cache directory.", uuid)
                del self.layout.cache_index[uuid]
                continue
            try:
                size, digest = file_size_and_sha512(path)
            except OSError as error:
                log.error("Image '%s' cannot be read: %s", uuid, error.strerror or error)
                continue
            problem = None
            expected_size, expected_sha = expected_bytes(entry)
            if str(size) != expected_size:
                problem = f"Image '{uuid}' size incorrect."
            elif digest != expected_sha:
                problem = f"Image '{uuid}' sha512 incorrect."
            if problem:
                log.error("%s", problem)
                log.error("Image '%s' was corrupted, moving it to the expired directory.", uuid)
                self._expire_one(uuid)
        self.layout.save(Role.CACHE)

    # --- download -----------------------------------------------------------------------

    def download(self) -> None:
        """Download every wanted image that is not (correctly) in the cache yet."""
        wanted = self.wanted()
        cache_index = self.layout.cache_index
        partial_index = self.layout.partial_index
        for uuid in list(partial_index):
            if uuid not in wanted:
                log.info("Dropping unfinished download of '%s': no longer wanted.", uuid)
                del partial_index[uuid]
        for uuid in self.options.retry:
            if uuid not in wanted:
                log.warning("Image '%s' is not a subscribed, available image; not retried.", uuid)
                continue
            entry = partial_index.get(uuid)
            if entry is not None and entry.pop("DownLoadTrys", None) is not None:
                log.info("Image '%s': failed-download counter reset (--retry).", uuid)
        todo = []
        for uuid, target in wanted.items():
            cached = cache_index.get(uuid)
            if cached is not None and same_bytes(cached, target.entry):
                if not self._cached_file_missing(uuid, cached):
                    continue
                log.warning(
                    "Image '%s' is missing from the cache directory; downloading it again.", uuid
                )
                del cache_index[uuid]
            if self._register_try(target):
                todo.append(target)
        self.layout.save(Role.PARTIAL)
        if not todo:
            return
        workers = max(1, min(self.options.parallel, len(todo)))
        bars = self.options.progress
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        futures: dict[Future[DownloadResult], _Wanted] = {}
        finished: set[str] = set()
        try:
            futures = {pool.submit(self._fetch, target, bars): target for target in todo}
            for future in as_completed(futures):
                self._finish(futures[future], future)
                finished.add(futures[future].uuid)
        except KeyboardInterrupt:
            # Ctrl-C: stop the workers between chunks, keep their partial files and index
            # entries for the Range resume of the next run (docs/commands/vmcatcher_cache.md).
            self._cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for target in todo:
                if target.uuid not in finished:
                    self._forget_try(target)
            self.layout.save(Role.PARTIAL)
            raise
        finally:
            pool.shutdown(wait=True)
            bars.close()

    def _forget_try(self, target: _Wanted) -> None:
        """An interrupted attempt does not count towards MAX_DOWNLOAD_TRIES."""
        entry = self.layout.partial_index.get(target.uuid)
        tries = entry.get("DownLoadTrys") if entry else None
        if isinstance(tries, dict) and int(tries.get("count", 0) or 0) > 0:
            tries["count"] = int(tries["count"]) - 1

    def _cached_file_missing(self, uuid: str, entry: dict[str, Any]) -> bool:
        """The index says cached, but the file is gone (a handler or an admin removed it)."""
        try:
            path = self.layout.path(Role.CACHE, str(entry.get("filename", uuid)))
        except UnsafeNameError:
            return False
        return not path.is_file()

    def _register_try(self, target: _Wanted) -> bool:
        """Count a download attempt for this list version; False after too many."""
        partial_index = self.layout.partial_index
        entry = dict(partial_index.get(target.uuid, {}))
        entry.update(target.entry)
        tries = entry.get("DownLoadTrys")
        count = 0
        if isinstance(tries, dict) and tries.get("msgHash") == target.entry["msgHash"]:
            count = int(tries.get("count", 0) or 0)
        if count >= MAX_DOWNLOAD_TRIES:
            log.warning(
                "Image '%s' has failed to download '%s' times, giving up until new image list.",
                target.uuid,
                count,
            )
            # The original follows the WARNING with this ERROR; a cron job run with -q
            # must still hear that the image is stuck (docs/compatibility.md).
            log.error("Failed to download file '%s'.", target.uuid)
            partial_index[target.uuid] = entry
            return False
        entry["DownLoadTrys"] = {"count": count + 1, "msgHash": target.entry["msgHash"]}
        entry["filename"] = target.uuid
        partial_index[target.uuid] = entry
        return True

    def _fetch(self, target: _Wanted, bars: ProgressDisplay) -> DownloadResult:
        entry = target.entry
        log.info("Downloading '%s'.", target.uuid)
        progress = bars.open(target.uuid, int(entry["size"]))
        started = time.monotonic()
        try:
            return download_image(
                str(entry["uri"]),
                self.layout.path(Role.PARTIAL, target.uuid),
                expected_size=int(entry["size"]),
                expected_sha512=str(entry["sha512"]),
                timeout=self.options.timeout,
                verify=self.options.tls_verify,
                allow_file=self.options.allow_file,
                progress=progress,
                total_timeout=download_time_limit(int(entry["size"])),
                cancel=self._cancel,
            )
        finally:
            self.options.stats.add(Counter.DOWNLOAD_SECONDS, time.monotonic() - started)
            bars.done(target.uuid)

    def _finish(self, target: _Wanted, future: Future[DownloadResult]) -> None:
        """Main thread: move a verified download into the cache, with events."""
        uuid = target.uuid
        partial_index = self.layout.partial_index
        try:
            result = future.result()
        except (VmcatcherError, OSError) as error:
            log.error("Failed to download file '%s': %s", uuid, error)
            self.options.stats.add(Counter.IMAGES_FAILED)
            self.layout.save(Role.PARTIAL)
            return
        except Exception as error:  # a bug in one download must not stop the others
            log.error("Failed to download file '%s': unexpected %s: %s",
                      uuid, type(error).__name__, error)  # fmt: skip
            self.options.stats.add(Counter.IMAGES_FAILED)
            self.layout.save(Role.PARTIAL)
            return
        self.options.stats.add(Counter.BYTES_DOWNLOADED, result.transferred)
        announced = dict(partial_index.get(uuid, {}))
        announced.update(target.entry)
        announced["filename"] = uuid
        self.options.events.fire(EventType.AVAILABLE_PREFIX, announced)
        try:
            install_file(result.path, self.layout.path(Role.CACHE, uuid))
        except (VmcatcherError, OSError) as error:
            log.error("Failed to Move file '%s' into the enbdorsed directory: %s", uuid, error)
            self.layout.save(Role.PARTIAL)
            return
        # The partial entry moves into the cache index whole, DownLoadTrys included, as the
        # original's did (docs/commands/vmcatcher_cache.md, "cache.index").
        entry = dict(announced)
        self.layout.cache_index[uuid] = entry
        partial_index.pop(uuid, None)
        self.layout.save(Role.CACHE, Role.PARTIAL)  # gaining index first: see cache.recovery
        log.info("moved file %s", uuid)
        self.options.stats.add(Counter.IMAGES_DOWNLOADED)
        self.options.events.fire(EventType.AVAILABLE_POSTFIX, entry)


def download_time_limit(size: int) -> float:
    """Seconds one image download may take in total (see MIN_DOWNLOAD_RATE)."""
    return DOWNLOAD_GRACE_SECONDS + size / MIN_DOWNLOAD_RATE


def stored_list_fields(instance: ImageListInstance) -> tuple[dict, dict[str, dict]]:
    """The stored list's top-level metadata and image dicts by identifier (no verification:
    the list was verified when it was imported)."""
    from vmcatcher.imagelist import decode_image_list
    from vmcatcher.trust import extract_payload_unverified

    try:  # what it dropped was reported when the list was imported (-U)
        image_list = decode_image_list(extract_payload_unverified(instance.data))
    except VmcatcherError as error:
        log.error("Stored image list %s cannot be read again: %s", instance.id, error)
        return {}, {}
    images = {image.identifier: dict(image.metadata) for image in image_list.images}
    return dict(image_list.metadata), images


def index_entry(
    sub: Subscription,
    definition: ImageDefinition,
    instance: ImageListInstance,
    image: ImageInstance,
    list_metadata: dict,
    images: dict[str, dict],
) -> dict[str, Any]:
    """The ``cache.index`` entry of one image, with the original's keys."""
    data = instance.data
    entry: dict[str, Any] = {
        "dc:identifier": definition.identifier,
        "uuid": definition.identifier,
        "hv:uri": image.uri,
        "uri": image.uri,
        "sl:checksum:sha512": image.sha512,
        "sha512": image.sha512,
        "hv:size": image.size,
        "size": image.size,
        "hv:imagelist.dc:identifier": sub.identifier,
        "message": data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data),
        "msgHash": instance.data_hash,
    }
    for key, attribute in _INSTANCE_FIELDS.items():
        entry[key] = str(getattr(image, attribute))
    vo = list_metadata.get("ad:vo")
    if vo:
        entry["hv:imagelist.ad:vo"] = vo
    for key, value in images.get(definition.identifier, {}).items():
        entry[f"hv:image.{key}"] = value
    return entry


def cache_dir_environment(layout: CacheLayout, database_url: str) -> dict[str, str]:
    """The resolved settings exported to event handlers (docs/events.md)."""
    return {
        "VMCATCHER_CACHE_DIR_CACHE": str(layout.cache_dir),
        "VMCATCHER_CACHE_DIR_DOWNLOAD": str(layout.partial_dir),
        "VMCATCHER_CACHE_DIR_EXPIRE": str(layout.expired_dir),
        "VMCATCHER_RDBMS": database_url,
    }


def base_environment(layout: CacheLayout, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(cache_dir_environment(layout, database_url))
    return env
