"""Durable file operations: what survives a crash or a power cut, in one place.

Why one module: the cache writes its indexes, moves verified downloads into
``cache/`` and moves expired images into ``expired/``. Each of these must leave
either the old or the new state on disk, never a half-written file, and must
be made durable before the run goes on (the index written next relies on it).
The rules, once:

* a new file is written beside its target under a temporary name
  (:data:`TEMP_PREFIX`), fsync'ed, then renamed over the target, then the
  directory is fsync'ed (:func:`atomic_write_bytes`);
* a move is a rename plus a directory fsync; across file systems it becomes
  a copy into such a temporary file, fsync, rename, then removal of the source
  (:func:`move_file`);
* the temporary names are recognisable (:func:`is_temp_name`), so the cache
  sweep removes stale ones left by a crashed run (docs/robustness.md).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

#: Prefix of our temporary files. It starts with a dot so it can never collide with a
#: managed (safe) name; :func:`is_temp_name` recognises the whole name.
TEMP_PREFIX = ".vmcatcher-tmp-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}")
_COPY_CHUNK = 1024 * 1024


def is_temp_name(name: str) -> bool:
    """True for the names this module gives its temporary files."""
    return _TEMP_NAME.fullmatch(name) is not None


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or unlink inside ``directory`` durable (best effort on odd filesystems)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temp(directory: Path) -> tuple[Path, int]:
    """A fresh temporary file in ``directory``, opened for writing."""
    for _ in range(100):
        temp = directory / (TEMP_PREFIX + secrets.token_hex(8))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            continue
        return temp, fd
    raise OSError(f"could not create a temporary file in '{directory}'")  # pragma: no cover


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    The new file keeps the mode of the file it replaces; a new file gets the
    usual ``0666 & ~umask``.
    """
    target = Path(path)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    temp, fd = _new_temp(target.parent)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        _discard(temp)
        raise
    fsync_directory(target.parent)


def move_file(source: Path, target: Path, *, overwrite: bool) -> None:
    """Move ``source`` to ``target`` durably; raise ``OSError`` with nothing changed on failure.

    ``overwrite=False`` refuses an existing ``target`` (``FileExistsError``).
    Across file systems the bytes are copied into a temporary file beside the
    target (fsync'ed, with the source's mode and times), renamed into place, and
    only then is the source removed.
    """
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, f"'{target}' already exists")
    place = os.replace if overwrite else os.rename
    try:
        place(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:  # different file systems
            raise
        _copy_then_remove(source, target, place)
    fsync_directory(target.parent)


def _copy_then_remove(source: Path, target: Path, place: Callable[[Path, Path], None]) -> None:
    temp, fd = _new_temp(target.parent)
    try:
        with open(source, "rb") as reader, os.fdopen(fd, "wb") as writer:
            shutil.copyfileobj(reader, writer, _COPY_CHUNK)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, temp)
        place(temp, target)
    except BaseException:
        _discard(temp)
        raise
    os.unlink(source)
    fsync_directory(source.parent)
