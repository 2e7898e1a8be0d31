"""How deeply a decoded JSON document nests, measured without recursion.

Why this matters: Python's ``json`` module recurses once per nesting level, so
a document nested close to the interpreter's recursion limit decodes or not
depending on how deep the caller's stack already is, and encoding it again
with ``indent`` takes time quadratic in its depth. Signed lists and
``cache.index`` files come from outside; both readers refuse documents nested
deeper than a fixed limit, using :func:`nesting_depth`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["nesting_depth"]


def nesting_depth(document: Any) -> int:
    """Levels of arrays/objects inside each other: 0 for a scalar, 1 for ``[]`` or ``{}``."""
    if not isinstance(document, (dict, list)):
        return 0
    deepest = 0
    todo: list[tuple[Any, int]] = [(document, 1)]
    while todo:
        value, depth = todo.pop()
        deepest = max(deepest, depth)
        children = value.values() if isinstance(value, dict) else value
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
