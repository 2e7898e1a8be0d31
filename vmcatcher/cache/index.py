"""The ``cache.index`` file of one cache directory, read tolerantly and written atomically.

Each of the cache, partial and expired directories holds a ``cache.index``:
a JSON object mapping a key (image UUID, or ``<uuid>.<stamp>`` in expired/)
to an entry dict whose ``filename`` names the file it describes
(docs/commands/vmcatcher_cache.md). Sites keep these files across the upgrade, and event
handlers or scripts may read them, so the layout stays byte-for-byte the
original's: ``json.dumps(index, sort_keys=True, indent=4)``.

What changes (docs/compatibility.md):

* **Saving is atomic**: a temporary file in the same directory, fsync,
  ``os.replace``, fsync of the directory. A crash mid-save leaves either the
  old or the new index, never a truncated one.
* **A corrupt index never crashes the run** (the original raised): it is
  renamed to ``cache.index.corrupt-<UTC stamp>`` so an operator can inspect or
  restore it, a WARNING says so, and the index starts empty. :attr:`recovered`
  is then set so that the caller does not sweep away the files the lost index
  described during the same run.
* Valid JSON that is not an object is ignored with a WARNING, as the original
  ignored it; entries that are not objects are dropped with a WARNING.
* An index that exists but cannot be *read* (permissions, I/O error) raises
  :class:`~vmcatcher.errors.CacheError`: treating it as empty would make the
  sweep delete every cached file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from vmcatcher.durable import atomic_write_bytes, fsync_directory
from vmcatcher.errors import CacheError
from vmcatcher.jsondepth import nesting_depth

log = logging.getLogger("vmcatcher.cache.index")

INDEX_FILENAME = "cache.index"
#: Deeper than any index we write (list values nest at most 64 levels, plus two).
MAX_INDEX_DEPTH = 100
CORRUPT_PREFIX = INDEX_FILENAME + ".corrupt-"

Entry = dict[str, Any]


def expected_bytes(entry: Mapping[str, Any]) -> tuple[str, str]:
    """(size, lower-case sha512) an index entry promises, read through the legacy aliases.

    The original wrote both ``size``/``sha512`` and ``hv:size``/``sl:checksum:sha512``;
    entries from either spelling compare equal. Missing values read as ``"None"``.
    """
    size = entry.get("size", entry.get("hv:size"))
    sha = entry.get("sha512", entry.get("sl:checksum:sha512"))
    return str(size), str(sha).lower()


def same_bytes(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Both entries describe the same file content (size and sha512)."""
    return expected_bytes(first) == expected_bytes(second)


def render_index(data: dict[str, Any]) -> bytes:
    """The exact bytes the original wrote for an index (no trailing newline)."""
    return json.dumps(data, sort_keys=True, indent=4).encode("ascii")


class CacheIndex(MutableMapping[str, Entry]):
    """A dict-like view of one directory's ``cache.index``, loaded on construction.

    Keys are the index keys (UUIDs, or expired names); values are entry dicts.
    Changes stay in memory until :meth:`save`.
    """

    def __init__(self, directory: str | os.PathLike[str], *, load: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / INDEX_FILENAME
        self._entries: dict[str, Entry] = {}
        #: Path the corrupt index was moved to, when :meth:`reload` had to recover.
        self.recovered: Path | None = None
        if load:
            self.reload()

    # -- loading and saving ---------------------------------------------------

    def reload(self) -> None:
        """(Re)read the file; missing means empty. See the module docstring for bad files."""
        self._entries = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CacheError(f"Cannot read cache index '{self.path}': {exc.strerror}") from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested too deep
            self._quarantine(exc)
            return
        if nesting_depth(data) > MAX_INDEX_DEPTH:
            # never written by us; saving it again would take time quadratic in its depth
            self._quarantine(ValueError(f"nested deeper than {MAX_INDEX_DEPTH} levels"))
            return
        if not isinstance(data, dict):
            log.warning(
                "Cache index '%s' holds JSON that is not an object; ignoring it.", self.path
            )
            return
        for key, entry in data.items():
            if isinstance(entry, dict):
                self._entries[key] = entry
            else:
                log.warning(
                    "Cache index '%s': entry '%s' is not an object; dropping it.", self.path, key
                )

    def _quarantine(self, error: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.directory / f"{CORRUPT_PREFIX}{stamp}"
        counter = 1
        while os.path.lexists(target):
            counter += 1
            target = self.directory / f"{CORRUPT_PREFIX}{stamp}-{counter}"
        try:
            os.rename(self.path, target)
        except OSError as exc:
            raise CacheError(
                f"Cache index '{self.path}' is corrupt ({error}) and could not be moved aside:"
                f" {exc.strerror}"
            ) from exc
        fsync_directory(self.directory)
        self.recovered = target
        log.warning(
            "Cache index '%s' is not valid JSON (%s); kept it as '%s' and starting with an"
            " empty index.",
            self.path,
            error,
            target,
        )

    def render(self) -> bytes:
        """The bytes :meth:`save` would write."""
        return render_index(self._entries)

    def save(self) -> None:
        """Write the index atomically; raise :class:`CacheError` on failure."""
        try:
            data = self.render()
        except (TypeError, ValueError, RecursionError) as exc:
            raise CacheError(f"Cannot serialise cache index '{self.path}': {exc}") from exc
        try:
            atomic_write_bytes(self.path, data)
        except OSError as exc:
            raise CacheError(f"Cannot write cache index '{self.path}': {exc}") from exc

    # -- queries ----------------------------------------------------------------

    def referenced_filenames(self) -> set[str]:
        """Every ``filename`` named by an entry (strings only)."""
        names = set()
        for entry in self._entries.values():
            name = entry.get("filename")
            if isinstance(name, str):
                names.add(name)
        return names

    # -- MutableMapping -----------------------------------------------------------

    def __getitem__(self, key: str) -> Entry:
        return self._entries[key]

    def __setitem__(self, key: str, entry: Entry) -> None:
        if not isinstance(key, str):
            raise TypeError("cache index keys are strings")
        if not isinstance(entry, dict):
            raise TypeError("cache index entries are dicts")
        self._entries[key] = entry

    def __delitem__(self, key: str) -> None:
        del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"CacheIndex({str(self.directory)!r}, {len(self._entries)} entries)"
