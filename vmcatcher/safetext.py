"""Remote text made safe to print: control characters shown escaped, everything else as is.

Why: titles, descriptions, URIs, DNs and versions come from image lists, and
HTTP reasons from remote servers. Printed raw, an ESC sequence in a list title
could rewrite an admin's terminal (move the cursor, hide lines, retitle the
window), a CR could overwrite the line before it, and a newline could forge a
``key=value`` line or a log line. So every command prints such text through
this module (docs/robustness.md, "Remote text on the terminal"):

* :func:`escape_controls` for the ``lines`` format and log lines: every C0
  control (newline included; tab only where it is not a column separator),
  DEL, every C1 control and the Unicode line/paragraph separators become
  Python-style escapes (``\\x1b``, ``\\n``, ``\\u2028``), so one record stays
  on one line;
* :func:`escape_document` for the raw ``message``/``SMIME`` formats,
  whose line structure is the document's own: tab, newline and CRLF stay, any
  other control is escaped. A verified list never contains other controls (JSON
  forbids them raw), so these outputs stay byte for byte what was signed.

Ordinary text, non-ASCII UTF-8 included, is returned unchanged; backslashes are
not doubled (DNs use them for OpenSSL escapes). JSON output needs nothing from
here: ``json.dumps`` already writes controls as ``\\u001b``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CONTROL_CODES = (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)


def _escape(code: int) -> str:
    return repr(chr(code))[1:-1] if code < 0x100 else f"\\u{code:04x}"


#: str.translate table: control character -> its printable escape.
_ESCAPES = {code: _escape(code) for code in _CONTROL_CODES}


def _class(codes: Iterable[int]) -> str:
    return "[" + "".join(re.escape(chr(code)) for code in codes) + "]"


_ANY_CONTROL = re.compile(_class(_CONTROL_CODES))
# What a raw document may not show: a CR not followed by LF, any control but tab/LF/CR.
_DOCUMENT_UNSAFE = re.compile(
    r"\r(?!\n)|" + _class(code for code in _CONTROL_CODES if chr(code) not in "\t\n\r")
)


def has_controls(text: str) -> bool:
    """Whether ``text`` holds any character :func:`escape_controls` would escape."""
    return _ANY_CONTROL.search(text) is not None


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with every control character escaped, except those in ``keep``.

    ``keep="\t"`` is what line outputs and log lines use: a tab separates the
    columns of ``-l`` and is harmless on a terminal; everything else that could
    move the cursor, end the line or ring the bell is shown as an escape.
    """
    if not has_controls(text):
        return text
    table = _ESCAPES if not keep else {k: v for k, v in _ESCAPES.items() if chr(k) not in keep}
    return text.translate(table)


def escape_document(text: str) -> str:
    """``text`` for a raw document output: tab, newline and CRLF kept, other controls escaped."""
    if not has_controls(text):
        return text
    return _DOCUMENT_UNSAFE.sub(lambda match: _ESCAPES[ord(match.group())], text)
