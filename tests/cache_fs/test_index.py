"""cache.index: byte-exact layout, atomic saves, tolerant loading (spec §10.3)."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from vmcatcher.cache.index import INDEX_FILENAME, CacheIndex
from vmcatcher.durable import TEMP_PREFIX, atomic_write_bytes, is_temp_name
from vmcatcher.errors import CacheError

UUID = "f0e1d2c3-0000-4000-8000-000000000001"

ENTRY = {
    "dc:identifier": UUID,
    "uuid": UUID,
    "hv:uri": "https://example.org/one.img",
    "uri": "https://example.org/one.img",
    "sl:checksum:sha512": "ab" * 64,
    "sha512": "ab" * 64,
    "hv:size": 1234,
    "size": 1234,
    "hv:imagelist.dc:identifier": "11111111-2222-4333-8444-555555555555",
    "message": "MIME-Version: 1.0\nContent-Type: multipart/signed\n\nbody é",
    "msgHash": "cd" * 64,
    "dc:title": "Grüße",
    "sl:comments": "None",
    "hv:image.hv:format": "qcow2",
    "DownLoadTrys": {"count": 2, "msgHash": "cd" * 64},
    "filename": UUID,
}


def leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_missing_file_is_an_empty_index(tmp_path):
    index = CacheIndex(tmp_path)
    assert len(index) == 0 and dict(index) == {}
    assert index.recovered is None
    assert not (tmp_path / INDEX_FILENAME).exists()


def test_save_is_byte_exact_original_layout(tmp_path):
    index = CacheIndex(tmp_path)
    index[UUID] = dict(ENTRY)
    index["aaaa"] = {"filename": "aaaa", "z": 1, "a": [1, 2]}
    index.save()
    written = (tmp_path / INDEX_FILENAME).read_bytes()
    expected = json.dumps({UUID: ENTRY, "aaaa": index["aaaa"]}, sort_keys=True, indent=4)
    assert written == expected.encode("ascii")
    assert not written.endswith(b"\n")
    assert b"\\u00fc" in written  # ASCII-escaped like the original
    assert leftovers(tmp_path) == []


def test_round_trip_and_dict_api(tmp_path):
    index = CacheIndex(tmp_path)
    index[UUID] = dict(ENTRY)
    index.save()
    again = CacheIndex(tmp_path)
    assert again[UUID] == ENTRY
    assert UUID in again and list(again) == [UUID] and len(again) == 1
    assert again.referenced_filenames() == {UUID}
    del again[UUID]
    again.save()
    assert (tmp_path / INDEX_FILENAME).read_bytes() == b"{}"
    with pytest.raises(TypeError):
        again["x"] = "not a dict"  # type: ignore[assignment]


def test_reads_an_index_written_by_the_original(tmp_path):
    original = json.dumps({UUID: ENTRY}, sort_keys=True, indent=4)
    (tmp_path / INDEX_FILENAME).write_text(original)
    index = CacheIndex(tmp_path)
    index.save()
    assert (tmp_path / INDEX_FILENAME).read_text() == original


def test_non_object_json_is_ignored_with_warning(tmp_path, caplog):
    (tmp_path / INDEX_FILENAME).write_text("[1, 2, 3]")
    index = CacheIndex(tmp_path)
    assert len(index) == 0
    assert index.recovered is None
    assert any(
        "not an object" in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    )


def test_non_object_entries_are_dropped(tmp_path, caplog):
    (tmp_path / INDEX_FILENAME).write_text(json.dumps({"good": {"filename": "good"}, "bad": 3}))
    index = CacheIndex(tmp_path)
    assert list(index) == ["good"]
    assert any("'bad' is not an object" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content", [b'{"truncated": {"filename": "x"', b"\xff\xfe garbage", b""])
def test_corrupt_index_is_preserved_and_treated_as_empty(tmp_path, caplog, content):
    (tmp_path / INDEX_FILENAME).write_bytes(content)
    index = CacheIndex(tmp_path)
    assert len(index) == 0
    assert index.recovered is not None
    assert index.recovered.name.startswith("cache.index.corrupt-")
    assert index.recovered.read_bytes() == content
    assert not (tmp_path / INDEX_FILENAME).exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("is not valid JSON" in w and str(index.recovered) in w for w in warnings)
    # a second corrupt file in the same second gets its own name
    (tmp_path / INDEX_FILENAME).write_bytes(content)
    second = CacheIndex(tmp_path)
    assert second.recovered is not None and second.recovered != index.recovered
    assert second.recovered.read_bytes() == content


def test_unreadable_index_raises_instead_of_pretending_empty(tmp_path):
    (tmp_path / INDEX_FILENAME).mkdir()  # reading a directory fails with an OSError
    with pytest.raises(CacheError, match="Cannot read cache index"):
        CacheIndex(tmp_path)


def test_failed_serialisation_leaves_old_file_intact(tmp_path):
    index = CacheIndex(tmp_path)
    index[UUID] = dict(ENTRY)
    index.save()
    before = (tmp_path / INDEX_FILENAME).read_bytes()
    index["bad"] = {"filename": "bad", "value": object()}
    with pytest.raises(CacheError, match="Cannot serialise"):
        index.save()
    assert (tmp_path / INDEX_FILENAME).read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / INDEX_FILENAME
    target.write_bytes(b"{}")
    # a target that cannot be replaced: a non-empty directory in its place
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "x").write_text("x")
    with pytest.raises(OSError):
        atomic_write_bytes(blocked, b"new")
    assert (blocked / "x").read_text() == "x"
    assert leftovers(tmp_path) == []


def test_atomic_write_replaces_inode_and_keeps_mode(tmp_path):
    target = tmp_path / INDEX_FILENAME
    target.write_bytes(b"{}")
    os.chmod(target, 0o640)
    old_inode = target.stat().st_ino
    with open(target, "rb") as reader:  # a reader of the old file keeps seeing it whole
        atomic_write_bytes(target, b'{"a": {}}')
        assert reader.read() == b"{}"
    assert target.read_bytes() == b'{"a": {}}'
    assert target.stat().st_ino != old_inode
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_new_file_gets_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_temp_names():
    assert is_temp_name(TEMP_PREFIX + "0123456789abcdef")
    assert not is_temp_name(TEMP_PREFIX + "xyz")
    assert not is_temp_name("cache.index")
    assert not is_temp_name(UUID)


def test_save_survives_a_crash_between_write_and_rename(tmp_path):
    """Kill a writer process mid-save (at the rename): the index is the old one or the new one."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    index = CacheIndex(tmp_path)
    index["old"] = {"filename": "old"}
    index.save()
    script = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(repo)!r})\n"
        "from vmcatcher.cache.index import CacheIndex\n"
        "real_replace = os.replace\n"
        "def crash(src, dst):\n"
        "    os._exit(9)\n"
        "os.replace = crash\n"
        f"i = CacheIndex({str(tmp_path)!r})\n"
        "i['new'] = {'filename': 'new', 'blob': 'x' * 100000}\n"
        "i.save()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert proc.returncode == 9
    assert list(CacheIndex(tmp_path)) == ["old"]
    assert len(leftovers(tmp_path)) == 1  # the abandoned temp file the sweep will collect
