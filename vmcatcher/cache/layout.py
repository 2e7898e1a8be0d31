"""The three cache directories, validated once, and every file operation inside them.

``vmcatcher_cache`` works in three directories (docs/commands/vmcatcher_cache.md): *cache*
(the endorsed images, ``<cache>/<uuid>``), *partial* (downloads in progress,
``<partial>/<uuid>``) and *expired* (images taken out of the cache,
``<expired>/<uuid>.<YYYY-MM-DD_HH-MM-SS>``). Each holds a ``cache.index``
(:class:`~vmcatcher.cache.index.CacheIndex`).

Why the checks here look the way they do:

* **The directories must exist** (the original never created them); the
  error says how to create them.
* **What is dangerous is one role's sweep deleting another role's files.** The
  original deleted *every* unreferenced regular file in each directory, so two
  roles sharing one directory destroyed each other's files (docs/compatibility.md).
  Two rules make that impossible here:

  1. the three directories must be distinct (after resolving symlinks);
  2. the sweep deletes only regular files *directly* inside its directory,
     whose names look like the names that role manages (an image identifier
     for cache/partial, ``<identifier>.<stamp>`` for expired, or a stale
     temporary file of our own atomic writes) and that its index does not
     reference. It never touches ``cache.index`` or its ``.corrupt-`` copies,
     the lock file, hidden files, symlinks or subdirectories.

  Because the sweep does not recurse, nesting by itself cannot make one sweep
  delete another role's files. So the original's default layout, with
  ``partial/`` and ``expired/`` *inside* the cache directory, stays allowed
  (sites use it; the README shows it). Every other nesting is refused: the
  cache inside partial or expired, partial inside expired, expired inside
  partial. Partial and expired are the directories operators and cleanup
  tools empty (``tmpwatch``, ``rm -rf expired/*``, :meth:`prune_expired`), so
  nothing else may live under them.
* **Names inside the directories are built only from safe names**
  (:func:`vmcatcher.names.require_safe_name`), and a name equal to a role
  directory nested in the same place (``partial``, ``expired`` in the default
  layout) is refused, so an image can never be written over a directory.
"""

from __future__ import annotations

import enum
import logging
import os
import shlex
import stat
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from vmcatcher.cache.index import CORRUPT_PREFIX, INDEX_FILENAME, CacheIndex
from vmcatcher.durable import fsync_directory, is_temp_name, move_file
from vmcatcher.errors import CacheError, CacheFileMissingError, ConfigError
from vmcatcher.names import (
    EXPIRED_STAMP_FORMAT,
    UnsafeNameError,
    is_expired_name,
    is_safe_name,
    require_safe_name,
)

log = logging.getLogger("vmcatcher.cache.layout")

#: A temporary file of ours older than this is a leftover of a crashed write.
STALE_TEMP_SECONDS = 600.0
_MAX_STAMP_BUMPS = 3600


class Role(str, enum.Enum):
    """The job of one cache directory."""

    CACHE = "cache"
    PARTIAL = "partial"
    EXPIRED = "expired"


# Wording of the original's start-up errors (docs/troubleshooting.md).
_ROLE_TITLES = {
    Role.CACHE: "Cache directory",
    Role.PARTIAL: "Download directory",
    Role.EXPIRED: "Expired directory",
}


def _contains(outer: str, inner: str) -> bool:
    """True if ``inner`` lies strictly below ``outer`` (both real, absolute paths)."""
    return os.path.commonpath([outer, inner]) == outer and outer != inner


class CacheLayout:
    """The validated cache/partial/expired triple, with their indexes and file operations.

    Construction only validates (raising :class:`ConfigError`); it neither
    creates nor deletes anything. The three :class:`CacheIndex` objects are
    loaded on first use and can be reloaded with :meth:`load_indexes`.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        partial_dir: str | os.PathLike[str],
        expired_dir: str | os.PathLike[str],
    ) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.partial_dir = Path(os.path.abspath(partial_dir))
        self.expired_dir = Path(os.path.abspath(expired_dir))
        self._validate()
        self._indexes: dict[Role, CacheIndex] = {}

    # -- validation ---------------------------------------------------------------

    def directory(self, role: Role) -> Path:
        """The absolute path of the directory playing ``role``."""
        return {
            Role.CACHE: self.cache_dir,
            Role.PARTIAL: self.partial_dir,
            Role.EXPIRED: self.expired_dir,
        }[Role(role)]

    def _validate(self) -> None:
        problems = []
        for role in Role:
            path = self.directory(role)
            title = _ROLE_TITLES[role]
            quoted = shlex.quote(str(path))
            if not os.path.lexists(path):
                problems.append(
                    f"{title} '{path}' does not exist (create it with: mkdir -p {quoted})"
                )
            elif not path.is_dir():
                problems.append(f"{title} '{path}' is not a directory")
            elif _read_only_file_system(path):
                problems.append(f"{title} '{path}' is on a read-only file system")
            elif not os.access(path, os.W_OK | os.X_OK):
                problems.append(f"{title} '{path}' is not writable by this user")
        if problems:
            raise ConfigError("; ".join(problems))
        real = {role: os.path.realpath(self.directory(role)) for role in Role}
        roles = list(Role)
        for i, first in enumerate(roles):
            for second in roles[i + 1 :]:
                if real[first] == real[second]:
                    raise ConfigError(
                        f"{_ROLE_TITLES[first]} and {_ROLE_TITLES[second].lower()} are the same"
                        f" directory '{real[first]}'; give each its own directory"
                    )
        for outer in (Role.PARTIAL, Role.EXPIRED):
            for inner in Role:
                if inner is not outer and _contains(real[outer], real[inner]):
                    raise ConfigError(
                        f"{_ROLE_TITLES[inner]} '{real[inner]}' lies inside"
                        f" {_ROLE_TITLES[outer].lower()} '{real[outer]}'; only the partial"
                        " and expired directories may be placed inside the cache directory"
                    )

    def _reserved_names(self, role: Role) -> set[str]:
        """Names of other role directories sitting directly inside ``role``'s directory."""
        here = os.path.realpath(self.directory(role))
        reserved = set()
        for other in Role:
            if other is not role:
                path = os.path.realpath(self.directory(other))
                if os.path.dirname(path) == here:
                    reserved.add(os.path.basename(path))
        return reserved

    def path(self, role: Role, name: str) -> Path:
        """``<directory of role>/<name>``, after checking ``name`` is a safe managed name.

        Raises :class:`~vmcatcher.names.UnsafeNameError` for an unsafe name or a
        name that is one of the role directories nested there.
        """
        role = Role(role)
        require_safe_name(name, "file name")
        if name in self._reserved_names(role):
            raise UnsafeNameError(
                f"file name {name!r} is the name of a cache directory inside"
                f" '{self.directory(role)}'"
            )
        return self.directory(role) / name

    # -- indexes ------------------------------------------------------------------------

    def index(self, role: Role) -> CacheIndex:
        """The index of ``role``'s directory, loaded on first use."""
        role = Role(role)
        if role not in self._indexes:
            self._indexes[role] = CacheIndex(self.directory(role))
        return self._indexes[role]

    @property
    def cache_index(self) -> CacheIndex:
        return self.index(Role.CACHE)

    @property
    def partial_index(self) -> CacheIndex:
        return self.index(Role.PARTIAL)

    @property
    def expired_index(self) -> CacheIndex:
        return self.index(Role.EXPIRED)

    def load_indexes(self) -> None:
        """(Re)load all three indexes from disk, dropping unsaved changes."""
        for role in Role:
            if role in self._indexes:
                self._indexes[role].reload()
            else:
                self._indexes[role] = CacheIndex(self.directory(role))

    def save(self, *roles: Role) -> None:
        """Sweep, then atomically save, the given roles' indexes (all three if none given).

        The original ran the sweep before every save; so do we.
        """
        for role in roles or tuple(Role):
            self.sweep(role)
            self.index(role).save()

    # -- the unknown-file sweep --------------------------------------------------------

    def is_managed_name(self, role: Role, name: str) -> bool:
        """True if a file called ``name`` in ``role``'s directory could be one we manage."""
        role = Role(role)
        if name == INDEX_FILENAME or name.startswith(CORRUPT_PREFIX):
            return False
        if role is Role.EXPIRED:
            return is_expired_name(name)
        return is_safe_name(name)

    def sweep(self, role: Role, index: CacheIndex | None = None) -> list[str]:
        """Delete unreferenced managed files (see the module docstring); return their names.

        ``index`` defaults to the layout's own index of ``role``. Nothing is
        deleted if that index was just recovered from a corrupt file: the files
        it described are kept for the operator (a WARNING says so).
        """
        role = Role(role)
        index = index if index is not None else self.index(role)
        directory = self.directory(role)
        if index.recovered is not None:
            log.warning(
                "Not removing unreferenced files in '%s' because its index was corrupt"
                " (kept as '%s').",
                directory,
                index.recovered,
            )
            return []
        referenced = index.referenced_filenames() | set(index)
        removed: list[str] = []
        now = time.time()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise CacheError(f"Cannot list directory '{directory}': {exc.strerror}") from exc
        for entry in entries:
            name = entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue  # subdirectories, symlinks, sockets...: never ours to delete
            if is_temp_name(name):
                if now - info.st_mtime < STALE_TEMP_SECONDS:
                    continue  # possibly a write in progress
            elif name in referenced or not self.is_managed_name(role, name):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("Failed to remove unreferenced file '%s': %s", entry.path, exc.strerror)
                continue
            log.info("Removed unreferenced file '%s'.", entry.path)
            removed.append(name)
        if removed:
            fsync_directory(directory)
        return removed

    # -- expiry ---------------------------------------------------------------------------

    def expired_name(self, uuid: str, now_local: datetime, taken: Iterable[str] = ()) -> str:
        """A free ``<uuid>.<YYYY-MM-DD_HH-MM-SS>`` name in the expired directory.

        If the name is already used (two expiries of one image within a
        second), the stamp is moved on by one second until it is free, so the
        name keeps the original's format.
        """
        require_safe_name(uuid)
        used = set(taken) | set(self.expired_index)
        stamp_time = now_local
        for _ in range(_MAX_STAMP_BUMPS):
            name = f"{uuid}.{stamp_time.strftime(EXPIRED_STAMP_FORMAT)}"
            if name not in used and not os.path.lexists(self.expired_dir / name):
                return require_safe_name(name, "expired file name")
            stamp_time += timedelta(seconds=1)
        raise CacheError(f"No free expired file name for '{uuid}' near {now_local}")

    def move_to_expired(self, uuid: str, now_local: datetime | None = None) -> str:
        """Move ``<cache>/<uuid>`` and its index entry to the expired directory.

        ``now_local`` is the local time of the move (default: now); it names
        the file ``<uuid>.<YYYY-MM-DD_HH-MM-SS>`` as the original did. The
        cache entry dict itself moves (the same object), keyed by that name,
        with its ``filename`` set to it, so a caller holding the dict sees the
        new name (the ExpirePostfix event relies on that, docs/events.md). Neither
        index is saved here.

        Raises :class:`CacheFileMissingError` (after dropping the cache entry)
        if the file does not exist, and :class:`CacheError` if the move fails
        (nothing changed). The caller logs.
        """
        require_safe_name(uuid)
        cache_index = self.cache_index
        entry = cache_index.get(uuid)
        filename = uuid
        if entry is not None and isinstance(entry.get("filename"), str):
            filename = entry["filename"]
        try:
            source = self.path(Role.CACHE, filename)
        except UnsafeNameError:
            source = None
        if source is None or not source.is_file() or source.is_symlink():
            cache_index.pop(uuid, None)
            raise CacheFileMissingError(
                f"uuid '{uuid}' referances file '{filename}' but file does not exist."
            )
        name = self.expired_name(uuid, now_local or datetime.now())
        target = self.expired_dir / name
        try:
            move_file(source, target, overwrite=False)
        except OSError as exc:
            raise CacheError(
                f"Failed to move file {source} to expired directory: {exc.strerror or exc}"
            ) from exc
        if entry is None:
            entry = {"dc:identifier": uuid}
        cache_index.pop(uuid, None)
        entry["filename"] = name
        self.expired_index[name] = entry
        return name

    def prune_expired(
        self,
        max_count: int | None = None,
        max_age_days: float | None = None,
        *,
        now_local: datetime | None = None,
    ) -> list[str]:
        """Delete the oldest expired images beyond ``max_count`` or older than ``max_age_days``.

        Off unless a limit is given (the original never pruned). Age comes from
        the stamp in the name (local time of expiry). Files and their expired
        index entries are removed; the index is not saved here. Returns the
        removed names, oldest first.
        """
        if max_count is None and max_age_days is None:
            return []
        if max_count is not None and max_count < 0:
            raise ValueError("max_count must not be negative")
        index = self.expired_index
        stamped: list[tuple[datetime, str]] = []
        for key in index:
            when = _stamp_of(key)
            if when is not None:
                stamped.append((when, key))
        stamped.sort()
        doomed: set[str] = set()
        if max_age_days is not None:
            limit = (now_local or datetime.now()) - timedelta(days=max_age_days)
            doomed.update(key for when, key in stamped if when < limit)
        if max_count is not None:
            excess = len(stamped) - max_count
            if excess > 0:
                doomed.update(key for _, key in stamped[:excess])
        removed = []
        for _, key in stamped:
            if key not in doomed:
                continue
            filename = index[key].get("filename", key)
            if isinstance(filename, str) and is_expired_name(filename):
                try:
                    os.unlink(self.path(Role.EXPIRED, filename))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.error("Failed to remove expired image '%s': %s", filename, exc.strerror)
                    continue
            del index[key]
            log.info("Pruned expired image '%s'.", key)
            removed.append(key)
        if removed:
            fsync_directory(self.expired_dir)
        return removed

    def __repr__(self) -> str:
        return (
            f"CacheLayout(cache={str(self.cache_dir)!r}, partial={str(self.partial_dir)!r},"
            f" expired={str(self.expired_dir)!r})"
        )


def _stamp_of(name: str) -> datetime | None:
    if not is_expired_name(name):
        return None
    try:
        return datetime.strptime(name.rsplit(".", 1)[1], EXPIRED_STAMP_FORMAT)
    except ValueError:
        return None


def _read_only_file_system(path: Path) -> bool:
    """A read-only mount is not a permission problem: say which it is."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
