"""Finish the file moves a killed ``vmcatcher_cache`` did not get to record.

Why this exists: a file moves between the cache directories with one atomic
rename, and each ``cache.index`` is replaced atomically, but the rename and
the index writes recording it are separate steps. A run killed in between
(SIGKILL, the OOM killer, a reboot) leaves a file that its directory's index
does not describe, and the next run's unknown-file sweep would delete it:

* **install**: a verified image renamed ``partial/<uuid>`` -> ``cache/<uuid>``
  before the cache index was written. The sweep would delete it and the next
  run would download the whole image again.
* **expiry**: ``cache/<uuid>`` renamed to ``expired/<uuid>.<stamp>`` before
  the indexes were written. The cache index names a missing file (the next
  expiry would fail and exit 1) and the sweep would delete the expired copy.

So the cache service writes the index that *gains* an entry before the index
that *loses* it (cache before partial on install, expired before cache on
expiry), and :func:`recover_interrupted_moves` runs before the sweep. It only
ever adds index entries for files that verify against the entry they came
from (size and sha512), and drops entries whose move provably completed; it
never deletes a file. What it finishes is returned as the events the killed
run never fired (``AvailablePostfix``, ``ExpirePostfix``), so that handlers
still hear about every image that became available or expired.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmcatcher.cache.digest import file_size_and_sha512
from vmcatcher.cache.index import expected_bytes, same_bytes
from vmcatcher.cache.layout import CacheLayout, Role
from vmcatcher.names import UnsafeNameError, is_expired_name
from vmcatcher.vocabulary import EventType

log = logging.getLogger("vmcatcher.cache.recovery")


#: (event type, metadata) pairs for the caller to fire.
Announcement = tuple[str, dict[str, Any]]


def recover_interrupted_moves(layout: CacheLayout) -> list[Announcement]:
    """Record moves a killed run completed on disk but not in the indexes (see module doc).

    Saves the indexes it changed (in the safe order) and returns the events to fire.
    """
    announcements: list[Announcement] = []
    changed: set[Role] = set()
    _finish_installs(layout, announcements, changed)
    _finish_expiries(layout, announcements, changed)
    for role in (Role.EXPIRED, Role.CACHE, Role.PARTIAL):
        if role in changed:
            layout.index(role).save()
    return announcements


def _finish_installs(
    layout: CacheLayout, announcements: list[Announcement], changed: set[Role]
) -> None:
    cache_index, partial_index = layout.cache_index, layout.partial_index
    for uuid, entry in list(partial_index.items()):
        try:
            partial = layout.path(Role.PARTIAL, uuid)
            cached = layout.path(Role.CACHE, uuid)
        except UnsafeNameError:
            continue
        if os.path.lexists(partial):
            continue  # still downloading or waiting to be verified: the download step's job
        installed = cache_index.get(uuid)
        if installed is not None:
            if same_bytes(installed, entry):
                # Killed between the cache index write and the partial index write.
                del partial_index[uuid]
                changed.add(Role.PARTIAL)
                announcements.append((EventType.AVAILABLE_POSTFIX, installed))
            continue
        if not _file_matches(cached, entry):
            continue
        record = dict(entry)  # DownLoadTrys included, as a normal install keeps it
        record["filename"] = uuid
        cache_index[uuid] = record
        del partial_index[uuid]
        changed.update((Role.CACHE, Role.PARTIAL))
        log.info("Recovered image '%s' installed by an interrupted run.", uuid)
        announcements.append((EventType.AVAILABLE_POSTFIX, record))


def _finish_expiries(
    layout: CacheLayout, announcements: list[Announcement], changed: set[Role]
) -> None:
    cache_index, expired_index = layout.cache_index, layout.expired_index
    for uuid, entry in list(cache_index.items()):
        filename = entry.get("filename", uuid)
        try:
            if not isinstance(filename, str) or os.path.lexists(layout.path(Role.CACHE, filename)):
                continue
        except UnsafeNameError:
            continue
        moved = _recorded_expiry(layout, uuid, entry) or _unrecorded_expiry(layout, uuid, entry)
        if moved is None:
            continue  # really missing: the expiry step reports it
        del cache_index[uuid]
        changed.add(Role.CACHE)
        if moved not in expired_index:
            entry["filename"] = moved
            expired_index[moved] = entry
            changed.add(Role.EXPIRED)
        log.info("Recovered expiry of image '%s' (moved to '%s') by an interrupted run.",
                 uuid, moved)  # fmt: skip
        announcements.append((EventType.EXPIRE_POSTFIX, expired_index[moved]))


def _recorded_expiry(layout: CacheLayout, uuid: str, entry: Mapping[str, Any]) -> str | None:
    """An expired index entry for this image whose file exists (cache index not yet written)."""
    for name, expired in layout.expired_index.items():
        if name.rsplit(".", 1)[0] != uuid or not same_bytes(expired, entry):
            continue
        try:
            if layout.path(Role.EXPIRED, str(expired.get("filename", name))).is_file():
                return name
        except UnsafeNameError:
            continue
    return None


def _unrecorded_expiry(layout: CacheLayout, uuid: str, entry: Mapping[str, Any]) -> str | None:
    """The newest unrecorded ``expired/<uuid>.<stamp>`` file holding this image's bytes."""
    referenced = layout.expired_index.referenced_filenames() | set(layout.expired_index)
    try:
        names = sorted(os.listdir(layout.expired_dir), reverse=True)
    except OSError:
        return None
    for name in names:
        if name in referenced or not is_expired_name(name) or name.rsplit(".", 1)[0] != uuid:
            continue
        if _file_matches(layout.expired_dir / name, entry):
            return name
    return None


def _file_matches(path: Path, entry: Mapping[str, Any]) -> bool:
    """``path`` is a regular file with exactly the entry's size and sha512."""
    size, sha = expected_bytes(entry)
    try:
        if path.is_symlink() or not path.is_file() or str(path.stat().st_size) != size:
            return False
        return file_size_and_sha512(path) == (int(size), sha)
    except (OSError, ValueError):
        return False
