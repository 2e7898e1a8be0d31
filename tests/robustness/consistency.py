"""Invariants that must hold after any crash, full disk or race: nothing is lost.

Two reusable checks, read with plain ``sqlite3`` and ``json`` (never through
vmcatcher's own code, which is what is under test):

* :func:`assert_db_consistent` -- the SQLite file is intact, no row is orphaned,
  and the two pointers without a foreign key (``subscription.imagelist_latest``,
  ``ImageDefinition.latest``) point at rows that exist and belong to them; a
  list instance that is some subscription's latest is complete (every image it
  carries is what its definition calls latest).
* :func:`assert_cache_consistent` -- every ``cache.index`` parses; ``cache/``
  holds only verified images (each image file hashes to a sha512 the database
  holds for that UUID, and matches its index entry); ``expired/`` likewise.
  ``strict=True`` (after a normal run finished) also demands that the cache is
  exactly the wanted set, no index entry lacks its file, no file lacks its
  entry, and no download is left half done.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_EXPIRED_NAME = re.compile(r"(?P<uuid>.+)\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")

# (child table, column, parent table) for every foreign key of the schema.
_FOREIGN_KEYS = (
    ("endorserPrincible", "endorser", "endorser"),
    ("subscriptionAuth", "subscription", "subscription"),
    ("subscriptionAuth", "endorser", "endorser"),
    ("ImageDefinition", "subscription", "subscription"),
    ("imageListInstance", "sub_auth", "subscriptionAuth"),
    ("ImageInstance", "fkIdentifier", "ImageDefinition"),
    ("ImageInstance", "fkimagelistinstance", "imageListInstance"),
)


def sha512_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha512()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _rows(db: sqlite3.Connection, query: str, params: tuple = ()) -> list[tuple]:
    return db.execute(query, params).fetchall()


def assert_db_consistent(db_path: Path | str) -> None:
    """Fail with a precise message if the vmcatcher database at ``db_path`` is inconsistent."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        problems: list[str] = []
        integrity = _rows(db, "PRAGMA integrity_check")
        if integrity != [("ok",)]:
            problems.append(f"integrity_check: {integrity}")
        fk = _rows(db, "PRAGMA foreign_key_check")
        if fk:
            problems.append(f"foreign_key_check: {fk}")
        for child, column, parent in _FOREIGN_KEYS:
            orphans = _rows(
                db,
                f'SELECT c.id, c."{column}" FROM "{child}" c LEFT JOIN "{parent}" p'
                f' ON p.id = c."{column}" WHERE p.id IS NULL',
            )
            if orphans:
                problems.append(f"orphan {child}.{column} -> {parent}: {orphans[:5]}")
        # subscription.imagelist_latest: NULL or a list instance of that subscription.
        bad_latest = _rows(
            db,
            "SELECT s.id, s.imagelist_latest FROM subscription s WHERE s.imagelist_latest IS"
            ' NOT NULL AND NOT EXISTS (SELECT 1 FROM "imageListInstance" l JOIN'
            ' "subscriptionAuth" a ON a.id = l.sub_auth WHERE l.id = s.imagelist_latest'
            " AND a.subscription = s.id)",
        )
        if bad_latest:
            problems.append(f"subscription.imagelist_latest dangling: {bad_latest}")
        # ImageDefinition.latest: 0/NULL or an instance of that very definition.
        bad_def = _rows(
            db,
            'SELECT d.id, d.latest FROM "ImageDefinition" d WHERE COALESCE(d.latest, 0) != 0'
            ' AND NOT EXISTS (SELECT 1 FROM "ImageInstance" i WHERE i.id = d.latest'
            ' AND i."fkIdentifier" = d.id)',
        )
        if bad_def:
            problems.append(f"ImageDefinition.latest dangling: {bad_def}")
        # A definition must belong to the subscription whose lists carry it.
        foreign = _rows(
            db,
            'SELECT i.id FROM "ImageInstance" i JOIN "ImageDefinition" d ON d.id ='
            ' i."fkIdentifier" JOIN "imageListInstance" l ON l.id = i.fkimagelistinstance'
            ' JOIN "subscriptionAuth" a ON a.id = l.sub_auth WHERE a.subscription !='
            " d.subscription",
        )
        if foreign:
            problems.append(f"ImageInstance rows crossing subscriptions: {foreign[:5]}")
        # The latest list of a subscription was imported completely.
        incomplete = _rows(
            db,
            'SELECT s.id, i.id, d.latest FROM subscription s JOIN "ImageInstance" i'
            ' ON i.fkimagelistinstance = s.imagelist_latest JOIN "ImageDefinition" d'
            ' ON d.id = i."fkIdentifier" WHERE d.latest != i.id',
        )
        if incomplete:
            problems.append(f"latest list not the definitions' latest: {incomplete[:5]}")
        duplicates = _rows(
            db,
            'SELECT a.subscription, l.data_hash, count(*) FROM "imageListInstance" l JOIN'
            " \"subscriptionAuth\" a ON a.id = l.sub_auth WHERE l.data_hash != 'reload cache'"
            " GROUP BY a.subscription, l.data_hash HAVING count(*) > 1",
        )
        if duplicates:
            problems.append(f"one list version imported more than once: {duplicates}")
        assert not problems, f"database {db_path} is inconsistent:\n" + "\n".join(problems)
    finally:
        db.close()


def known_hashes(db_path: Path | str) -> dict[str, set[tuple[int, str]]]:
    """Every (size, sha512) the database holds for each image UUID (any list version)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        found: dict[str, set[tuple[int, str]]] = {}
        for uuid, size, sha in _rows(
            db,
            'SELECT d.identifier, i.size, i.sha512 FROM "ImageInstance" i'
            ' JOIN "ImageDefinition" d ON d.id = i."fkIdentifier"',
        ):
            found.setdefault(uuid, set()).add((int(size), sha.lower()))
        return found
    finally:
        db.close()


def read_index(directory: Path) -> dict[str, dict[str, Any]]:
    """The parsed ``cache.index`` of ``directory`` ({} if absent); fails if it does not parse."""
    path = directory / "cache.index"
    if not path.exists():
        return {}
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise AssertionError(f"{path} does not parse: {error}\n{text[:500]}") from None
    assert isinstance(data, dict), f"{path} is not a JSON object"
    for key, entry in data.items():
        assert isinstance(entry, dict), f"{path}: entry {key} is not an object"
    return data


def image_files(directory: Path) -> dict[str, Path]:
    """Regular, visible files of ``directory`` other than ``cache.index`` (and its copies)."""
    return {
        entry.name: entry
        for entry in directory.iterdir()
        if entry.is_file()
        and not entry.is_symlink()
        and not entry.name.startswith(".")
        and not entry.name.startswith("cache.index")
    }


def _entry_hash(entry: Mapping[str, Any]) -> tuple[int, str]:
    size = entry.get("size", entry.get("hv:size"))
    sha = entry.get("sha512", entry.get("sl:checksum:sha512"))
    return int(size), str(sha).lower()


def assert_cache_consistent(
    db_path: Path | str,
    cache_dir: Path,
    partial_dir: Path,
    expired_dir: Path,
    *,
    wanted: Mapping[str, bytes] | None = None,
    strict: bool = False,
) -> None:
    """Check the three cache directories against the database (see the module docstring).

    ``wanted`` (UUID -> image bytes), with ``strict``, is exactly what the cache must hold.
    """
    known = known_hashes(db_path)
    cache_index = read_index(cache_dir)
    partial_index = read_index(partial_dir)
    expired_index = read_index(expired_dir)
    problems: list[str] = []

    cached_files = image_files(cache_dir)
    for name, path in cached_files.items():
        size_sha = sha512_of(path)
        if size_sha not in known.get(name, set()):
            problems.append(f"cache/{name} is not a verified image of that UUID")
        entry = cache_index.get(name)
        if entry is not None and _entry_hash(entry) != size_sha:
            problems.append(f"cache/{name} does not match its cache.index entry")
        if entry is None and strict:
            problems.append(f"cache/{name} is not in cache.index")
    for uuid, entry in cache_index.items():
        filename = entry.get("filename", uuid)
        if filename != uuid:
            problems.append(f"cache.index entry {uuid} names file {filename!r}")
        if strict and filename not in cached_files:
            problems.append(f"cache.index entry {uuid} has no file")

    expired_files = image_files(expired_dir)
    for name, path in expired_files.items():
        match = _EXPIRED_NAME.fullmatch(name)
        if match is None:
            problems.append(f"expired/{name} is not an expired image name")
            continue
        size_sha = sha512_of(path)
        if size_sha not in known.get(match.group("uuid"), set()):
            problems.append(f"expired/{name} is not a verified image of that UUID")
        entry = expired_index.get(name)
        if entry is not None and _entry_hash(entry) != size_sha:
            problems.append(f"expired/{name} does not match its expired index entry")
        if strict and entry is None:
            problems.append(f"expired/{name} is not in the expired index")
    if strict:
        for name, entry in expired_index.items():
            if entry.get("filename", name) not in expired_files:
                problems.append(f"expired index entry {name} has no file")

    if strict:
        leftovers = set(image_files(partial_dir))
        if leftovers:
            problems.append(f"partial/ still holds {sorted(leftovers)}")
        if partial_index:
            problems.append(f"partial index still holds {sorted(partial_index)}")
        if wanted is not None:
            if set(cache_index) != set(wanted):
                missing = sorted(set(wanted) - set(cache_index))
                extra = sorted(set(cache_index) - set(wanted))
                problems.append(f"cache.index differs from the wanted set: missing {missing},"
                                f" extra {extra}")  # fmt: skip
            for uuid, data in wanted.items():
                path = cached_files.get(uuid)
                if path is None or path.read_bytes() != data:
                    problems.append(f"cache/{uuid} does not hold the wanted bytes")
    assert not problems, "cache is inconsistent:\n" + "\n".join(problems)
