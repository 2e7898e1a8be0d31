"""One home for durable writes and moves (vmcatcher.durable)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vmcatcher import durable


def _exdev(*_args: object) -> None:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_move_refuses_an_existing_target_unless_overwriting(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(b"new")
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        durable.move_file(source, target, overwrite=False)
    assert source.read_bytes() == b"new" and target.read_bytes() == b"old"
    durable.move_file(source, target, overwrite=True)
    assert target.read_bytes() == b"new" and not source.exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_move_across_file_systems_copies_then_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    source = tmp_path / "src" / "image"
    source.parent.mkdir()
    source.write_bytes(b"x" * 3_000_000)
    os.chmod(source, 0o640)
    target = tmp_path / "dst" / "image"
    target.parent.mkdir()
    real_replace, real_rename = os.replace, os.rename
    first = {"done": False}

    def once_exdev(real):  # the first call is the plain move, which fails with EXDEV
        def call(a, b):
            if not first["done"]:
                first["done"] = True
                _exdev()
            return real(a, b)

        return call

    monkeypatch.setattr(os, "replace", once_exdev(real_replace))
    monkeypatch.setattr(os, "rename", once_exdev(real_rename))
    durable.move_file(source, target, overwrite=overwrite)
    assert target.read_bytes() == b"x" * 3_000_000
    assert (target.stat().st_mode & 0o777) == 0o640
    assert not source.exists()
    assert [p.name for p in target.parent.iterdir()] == ["image"]


def test_failed_cross_device_copy_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "missing", tmp_path / "out" / "image"
    target.parent.mkdir()
    monkeypatch.setattr(os, "rename", _exdev)
    with pytest.raises(FileNotFoundError):
        durable.move_file(source, target, overwrite=False)
    assert list(target.parent.iterdir()) == []


def test_temporary_names_are_recognised() -> None:
    assert durable.is_temp_name(durable.TEMP_PREFIX + "0123456789abcdef")
    assert not durable.is_temp_name(durable.TEMP_PREFIX + "xyz")
