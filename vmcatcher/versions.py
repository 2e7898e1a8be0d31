"""Version ordering of image lists: the original's ``split_numeric_sort``.

Why a port and not ``packaging.version``: publishers use anything as
``hv:version`` ("3.0.1", "20150618211400", "1.0-rc1", "1.a"), and a site's
stored versions were ordered by this exact algorithm; rollback refusal (code
17) must keep agreeing with it. Rules, token by token after splitting at the
kept delimiters ``- , . /``: numbers compare numerically, a number is lower
than a non-number, other tokens compare run-by-run (digit runs numerically,
other runs lexically), and with all common tokens equal the longer string is
the greater.
"""

from __future__ import annotations

import re

__all__ = ["compare_versions"]

_DELIMITERS = re.compile(r"([-,./])")
_RUNS = re.compile(r"[0-9]+|[^0-9]+")
_DIGITS = re.compile(r"[0-9]+")


def _tokens(version: str) -> list[str]:
    return [token for token in _DELIMITERS.split(version) if token != ""]


def _is_number(token: str) -> bool:
    return _DIGITS.fullmatch(token) is not None


def _compare_numbers(old: str, new: str) -> int:
    """Numeric order of two digit strings, without int() (no digit-count limit)."""
    old, new = old.lstrip("0"), new.lstrip("0")
    if (len(old), old) == (len(new), new):
        return 0
    return 1 if (len(new), new) > (len(old), old) else -1


def _compare_sequences(old: list[str], new: list[str], lexical: bool) -> int:
    for old_token, new_token in zip(old, new):
        if old_token == new_token:
            continue
        old_number, new_number = _is_number(old_token), _is_number(new_token)
        if old_number and new_number:
            order = _compare_numbers(old_token, new_token)
            if order == 0:
                continue
            return order
        if old_number:
            return -1
        if new_number:
            return 1
        if lexical:
            return 1 if old_token < new_token else -1
        result = _compare_sequences(_RUNS.findall(old_token), _RUNS.findall(new_token), True)
        if result:
            return result
    if len(new) > len(old):
        return 1
    if len(new) < len(old):
        return -1
    return 0


def compare_versions(old: str, new: str) -> int:
    """1 if ``new`` is newer than ``old``, -1 if older, 0 if equal.

    >>> compare_versions("1.2", "1.10")
    1
    >>> compare_versions("1.0", "1.0-rc1")
    1
    """
    return _compare_sequences(_tokens(str(old)), _tokens(str(new)), False)
