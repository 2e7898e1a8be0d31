"""Size and sha512 of a file on disk: the one check of "these are the signed bytes".

The sha512 check of the cache and the recovery of interrupted moves both ask
this question of a whole file; downloads answer it while the bytes arrive
(:mod:`vmcatcher.cache.download`) and never re-read a finished file.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1024 * 1024


def file_size_and_sha512(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Size in bytes and lower-case sha512 hex of the file, read in bounded chunks."""
    digest = hashlib.sha512()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
