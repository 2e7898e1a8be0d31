"""Safe file names: the one rule deciding whether a list-supplied identifier may name a file.

Image identifiers come from signed lists, i.e. from a remote publisher. The
original used them directly as file names, so ``../x`` or ``/etc/x`` escaped
the cache (docs/compatibility.md). Here an identifier names a file only
if it matches :data:`SAFE_NAME`: letters, digits, ``.``, ``_`` and ``-``, not
starting with a dot or dash, at most 200 characters, and not the name of a
directory's own ``cache.index``. Every UUID qualifies.
"""

from __future__ import annotations

import re

from vmcatcher.errors import VmcatcherError

MAX_NAME_LENGTH = 200
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

# Suffix the expired directory appends: '<uuid>.<YYYY-MM-DD_HH-MM-SS>'.
EXPIRED_STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"
_EXPIRED_SUFFIX = re.compile(r"\.\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")


class UnsafeNameError(VmcatcherError):
    """An identifier cannot be used as a file name."""


# Every managed directory keeps its index in this file (and corrupt copies beside it):
# an image called ``cache.index`` would overwrite the index with its bytes.
_INDEX_NAME = "cache.index"


def is_safe_name(name: object) -> bool:
    """True when ``name`` can be used as a file name inside a managed directory."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and SAFE_NAME.fullmatch(name) is not None
        and name != _INDEX_NAME
        and not name.startswith(_INDEX_NAME + ".")
    )


def require_safe_name(name: object, what: str = "identifier") -> str:
    """Return ``name`` if safe, else raise :class:`UnsafeNameError` naming the problem."""
    if not is_safe_name(name):
        raise UnsafeNameError(f"{what} {name!r} is not a safe file name")
    assert isinstance(name, str)
    return name


def is_expired_name(name: str) -> bool:
    """True for names of the form ``<safe identifier>.<YYYY-MM-DD_HH-MM-SS>``."""
    match = _EXPIRED_SUFFIX.search(name)
    if match is None or match.end() != len(name):
        return False
    return is_safe_name(name[: match.start()])
