"""Cache directories: validation, the restricted sweep, moves to expired/, pruning."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from vmcatcher.cache.index import INDEX_FILENAME, CacheIndex
from vmcatcher.cache.layout import CacheLayout, Role
from vmcatcher.cache.lock import LOCK_FILENAME
from vmcatcher.durable import TEMP_PREFIX
from vmcatcher.errors import CacheError, CacheFileMissingError, ConfigError
from vmcatcher.names import UnsafeNameError

U1 = "f0e1d2c3-0000-4000-8000-000000000001"
U2 = "f0e1d2c3-0000-4000-8000-000000000002"
U3 = "f0e1d2c3-0000-4000-8000-000000000003"
NOW = datetime(2024, 1, 2, 3, 4, 5)


def make_default(tmp_path):
    """The original's default layout: partial/ and expired/ inside cache/."""
    cache = tmp_path / "cache"
    (cache / "partial").mkdir(parents=True)
    (cache / "expired").mkdir()
    return CacheLayout(cache, cache / "partial", cache / "expired")


def make_separate(tmp_path):
    dirs = [tmp_path / n for n in ("c", "p", "e")]
    for d in dirs:
        d.mkdir()
    return CacheLayout(*dirs)


# -- validation -----------------------------------------------------------------------


def test_default_nested_layout_is_allowed(tmp_path):
    layout = make_default(tmp_path)
    assert layout.cache_dir == tmp_path / "cache"
    assert layout.directory(Role.PARTIAL) == tmp_path / "cache" / "partial"


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("c", "p", "e"):
        (tmp_path / name).mkdir()
    layout = CacheLayout("c", "p", "e")
    assert layout.cache_dir == tmp_path / "c" and layout.cache_dir.is_absolute()


def test_missing_directories_say_how_to_create_them(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(ConfigError) as err:
        CacheLayout(tmp_path / "c", tmp_path / "my partial", tmp_path / "e")
    message = str(err.value)
    assert (
        f"Download directory '{tmp_path}/my partial' does not exist"
        f" (create it with: mkdir -p '{tmp_path}/my partial')" in message
    )
    assert (
        f"Expired directory '{tmp_path}/e' does not exist (create it with: mkdir -p {tmp_path}/e)"
        in message
    )
    assert "Cache directory" not in message


def test_missing_cache_directory_message(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^Cache directory '/\S+/x' does not exist \(create it with: mkdir -p /\S+/x\)",
    ):
        CacheLayout(tmp_path / "x", tmp_path / "x" / "partial", tmp_path / "x" / "expired")


def test_a_file_is_not_a_directory(tmp_path):
    for name in ("c", "p"):
        (tmp_path / name).mkdir()
    (tmp_path / "e").write_text("")
    with pytest.raises(ConfigError, match=r"Expired directory .* is not a directory"):
        CacheLayout(tmp_path / "c", tmp_path / "p", tmp_path / "e")


@pytest.mark.parametrize(
    ("cache", "partial", "expired"),
    [
        ("c", "c", "e"),
        ("c", "p", "c"),
        ("c", "p", "p"),
        ("c", "c", "c"),
    ],
)
def test_same_directory_twice_is_refused(tmp_path, cache, partial, expired):
    for name in {"c", "p", "e"}:
        (tmp_path / name).mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="are the same directory"):
        CacheLayout(tmp_path / cache, tmp_path / partial, tmp_path / expired)


def test_same_directory_through_symlink_is_refused(tmp_path):
    for name in ("c", "e"):
        (tmp_path / name).mkdir()
    (tmp_path / "p").symlink_to(tmp_path / "c")
    with pytest.raises(ConfigError, match="same directory"):
        CacheLayout(tmp_path / "c", tmp_path / "p", tmp_path / "e")
    with pytest.raises(ConfigError, match="same directory"):
        CacheLayout(tmp_path / "c", tmp_path / "c" / ".", tmp_path / "e")


@pytest.mark.parametrize(
    ("cache", "partial", "expired"),
    [
        ("p/c", "p", "e"),  # cache inside partial
        ("e/c", "p", "e"),  # cache inside expired
        ("c", "e/p", "e"),  # partial inside expired
        ("c", "p", "p/e"),  # expired inside partial
        ("c", "c/p", "c/p/e"),  # expired inside partial inside cache
    ],
)
def test_dangerous_nesting_is_refused(tmp_path, cache, partial, expired):
    for name in (cache, partial, expired):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    with pytest.raises(ConfigError, match="lies inside"):
        CacheLayout(tmp_path / cache, tmp_path / partial, tmp_path / expired)


def test_deeper_nesting_inside_cache_is_allowed(tmp_path):
    for name in ("c/work/p", "c/old/e"):
        (tmp_path / name).mkdir(parents=True)
    CacheLayout(tmp_path / "c", tmp_path / "c/work/p", tmp_path / "c/old/e")


def test_paths_refuse_unsafe_and_directory_names(tmp_path):
    layout = make_default(tmp_path)
    assert layout.path(Role.CACHE, U1) == layout.cache_dir / U1
    for bad in ("../etc/passwd", "/etc/passwd", ".hidden", "", "a/b", "partial", "expired"):
        with pytest.raises(UnsafeNameError):
            layout.path(Role.CACHE, bad)
    assert layout.path(Role.PARTIAL, "expired") == layout.partial_dir / "expired"


# -- the sweep -------------------------------------------------------------------------


def populate(directory, names):
    for name in names:
        (directory / name).write_text(name)


def test_cache_sweep_deletes_only_unreferenced_managed_files(tmp_path):
    layout = make_default(tmp_path)
    cache = layout.cache_dir
    layout.cache_index[U1] = {"filename": U1}
    layout.cache_index[U3] = {"dc:identifier": U3}  # no filename: the key protects it
    keep = [
        U1,
        U3,
        INDEX_FILENAME,
        "cache.index.corrupt-20240101T000000Z",
        LOCK_FILENAME,
        ".hidden",
        "My Notes.txt",
        "-dash",
        TEMP_PREFIX + "0123456789abcdef",  # fresh: may be a write in progress
    ]
    populate(cache, [*keep, U2, "unrelated-but-safe.img"])
    os.symlink("/etc/hostname", cache / "symlinked-uuid")
    (cache / "subdir").mkdir()
    stale = cache / (TEMP_PREFIX + "fedcba9876543210")
    stale.write_text("x")
    os.utime(stale, (0, 0))
    removed = layout.sweep(Role.CACHE)
    assert sorted(removed) == sorted([U2, "unrelated-but-safe.img", stale.name])
    remaining = {p.name for p in cache.iterdir()}
    assert set(keep) | {"partial", "expired", "subdir", "symlinked-uuid"} == remaining
    assert (layout.partial_dir).is_dir() and (layout.expired_dir).is_dir()


def test_expired_sweep_only_touches_expired_names(tmp_path):
    layout = make_separate(tmp_path)
    expired = layout.expired_dir
    referenced = f"{U1}.2024-01-02_03-04-05"
    layout.expired_index[referenced] = {"filename": referenced}
    populate(expired, [referenced, f"{U2}.2023-12-31_23-59-59", U3, "notes.txt"])
    removed = layout.sweep(Role.EXPIRED)
    assert removed == [f"{U2}.2023-12-31_23-59-59"]
    assert {p.name for p in expired.iterdir()} == {referenced, U3, "notes.txt"}


def test_sweep_with_explicit_index(tmp_path):
    layout = make_separate(tmp_path)
    populate(layout.partial_dir, [U1, U2])
    other = CacheIndex(layout.partial_dir, load=False)
    other[U2] = {"filename": U2}
    assert layout.sweep(Role.PARTIAL, other) == [U1]


def test_sweep_keeps_files_when_index_was_corrupt(tmp_path, caplog):
    layout = make_separate(tmp_path)
    populate(layout.cache_dir, [U1, U2])
    (layout.cache_dir / INDEX_FILENAME).write_text("{not json")
    assert layout.sweep(Role.CACHE) == []
    assert {p.name for p in layout.cache_dir.iterdir()} >= {U1, U2}
    assert any("Not removing unreferenced files" in r.getMessage() for r in caplog.records)


def test_save_sweeps_then_writes(tmp_path):
    layout = make_default(tmp_path)
    populate(layout.cache_dir, [U1, U2])
    layout.cache_index[U1] = {"filename": U1}
    layout.save(Role.CACHE)
    assert not (layout.cache_dir / U2).exists()
    assert CacheIndex(layout.cache_dir)[U1] == {"filename": U1}
    assert not (layout.partial_dir / INDEX_FILENAME).exists()
    layout.save()
    assert (layout.partial_dir / INDEX_FILENAME).read_bytes() == b"{}"
    assert (layout.expired_dir / INDEX_FILENAME).read_bytes() == b"{}"


def test_load_indexes_drops_unsaved_changes(tmp_path):
    layout = make_separate(tmp_path)
    layout.cache_index[U1] = {"filename": U1}
    layout.load_indexes()
    assert len(layout.cache_index) == 0


# -- move to expired ---------------------------------------------------------------------


def test_move_to_expired_names_and_moves_entry(tmp_path):
    layout = make_default(tmp_path)
    (layout.cache_dir / U1).write_bytes(b"image bytes")
    entry = {"dc:identifier": U1, "filename": U1, "hv:size": 11}
    layout.cache_index[U1] = entry
    name = layout.move_to_expired(U1, NOW)
    assert name == f"{U1}.2024-01-02_03-04-05"
    assert not (layout.cache_dir / U1).exists()
    assert (layout.expired_dir / name).read_bytes() == b"image bytes"
    assert U1 not in layout.cache_index
    assert layout.expired_index[name] is entry  # the same dict object moves
    assert entry["filename"] == name
    layout.save(Role.CACHE, Role.EXPIRED)
    assert CacheIndex(layout.expired_dir)[name]["filename"] == name
    assert (layout.expired_dir / name).exists()  # referenced, so the sweep kept it


def test_move_to_expired_twice_in_one_second_does_not_collide(tmp_path):
    layout = make_separate(tmp_path)
    names = []
    for content in (b"first", b"second", b"third"):
        (layout.cache_dir / U1).write_bytes(content)
        layout.cache_index[U1] = {"filename": U1}
        names.append(layout.move_to_expired(U1, NOW))
    assert names == [
        f"{U1}.2024-01-02_03-04-05",
        f"{U1}.2024-01-02_03-04-06",
        f"{U1}.2024-01-02_03-04-07",
    ]
    assert [(layout.expired_dir / n).read_bytes() for n in names] == [b"first", b"second", b"third"]


def test_move_to_expired_avoids_unindexed_existing_file(tmp_path):
    layout = make_separate(tmp_path)
    (layout.expired_dir / f"{U1}.2024-01-02_03-04-05").write_text("someone else's")
    (layout.cache_dir / U1).write_text("mine")
    layout.cache_index[U1] = {"filename": U1}
    assert layout.move_to_expired(U1, NOW) == f"{U1}.2024-01-02_03-04-06"
    assert (layout.expired_dir / f"{U1}.2024-01-02_03-04-05").read_text() == "someone else's"


def test_move_to_expired_missing_file_drops_entry(tmp_path):
    layout = make_separate(tmp_path)
    layout.cache_index[U1] = {"filename": U1}
    with pytest.raises(CacheFileMissingError) as err:
        layout.move_to_expired(U1, NOW)
    assert str(err.value) == f"uuid '{U1}' referances file '{U1}' but file does not exist."
    assert U1 not in layout.cache_index
    assert len(layout.expired_index) == 0


def test_move_to_expired_refuses_unsafe_identifier(tmp_path):
    layout = make_separate(tmp_path)
    (tmp_path / "victim").write_text("keep me")
    with pytest.raises(UnsafeNameError):
        layout.move_to_expired("../victim", NOW)
    assert (tmp_path / "victim").read_text() == "keep me"


def test_move_to_expired_failure_changes_nothing(tmp_path):
    layout = make_separate(tmp_path)
    (layout.cache_dir / U1).write_text("data")
    layout.cache_index[U1] = {"filename": U1}
    layout.expired_dir.rename(tmp_path / "gone")  # the expired directory vanished under us
    with pytest.raises(CacheError, match=r"Failed to move file .* to expired directory"):
        layout.move_to_expired(U1, NOW)
    assert (layout.cache_dir / U1).read_text() == "data"
    assert U1 in layout.cache_index
    assert len(layout.expired_index) == 0


# -- pruning ----------------------------------------------------------------------------


def make_expired(layout, stamps):
    names = []
    for i, stamp in enumerate(stamps):
        name = f"{U1[:-1]}{i}.{stamp}"
        (layout.expired_dir / name).write_text(name)
        layout.expired_index[name] = {"filename": name}
        names.append(name)
    return names


def test_prune_is_off_by_default(tmp_path):
    layout = make_separate(tmp_path)
    make_expired(layout, ["2020-01-01_00-00-00"])
    assert layout.prune_expired() == []
    assert len(layout.expired_index) == 1


def test_prune_by_count_keeps_newest(tmp_path):
    layout = make_separate(tmp_path)
    names = make_expired(
        layout, ["2024-01-03_00-00-00", "2024-01-01_00-00-00", "2024-01-02_00-00-00"]
    )
    removed = layout.prune_expired(max_count=1)
    assert removed == [names[1], names[2]]  # oldest first
    assert list(layout.expired_index) == [names[0]]
    assert {p.name for p in layout.expired_dir.iterdir()} == {names[0]}


def test_prune_by_age(tmp_path):
    layout = make_separate(tmp_path)
    names = make_expired(layout, ["2023-12-01_00-00-00", "2024-01-01_12-00-00"])
    removed = layout.prune_expired(max_age_days=7, now_local=datetime(2024, 1, 3))
    assert removed == [names[0]]
    assert (layout.expired_dir / names[1]).exists() and not (layout.expired_dir / names[0]).exists()


def test_read_only_file_system_is_named_as_such(tmp_path: Path) -> None:
    """A read-only mount is reported as one, not as a permission problem (issue 11, item 9)."""
    import subprocess

    mountpoint = tmp_path / "ro"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        for name in ("cache", "cache/partial", "cache/expired"):
            (mountpoint / name).mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=True)
        cache = mountpoint / "cache"
        with pytest.raises(ConfigError) as caught:
            CacheLayout(cache, cache / "partial", cache / "expired")
        assert f"Cache directory '{cache}' is on a read-only file system" in str(caught.value)
        assert "not writable by this user" not in str(caught.value)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
