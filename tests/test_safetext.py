"""Control characters from remote text are escaped; ordinary text is untouched."""

from __future__ import annotations

import io

import pytest

from vmcatcher.output.writer import Writer
from vmcatcher.safetext import escape_controls, escape_document


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain ASCII", "plain ASCII"),
        ("Ünïcödé ✓ 日本", "Ünïcödé ✓ 日本"),
        ("/DC=org/CN=A\\/B", "/DC=org/CN=A\\/B"),  # backslashes are not doubled
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("back\x08space", "back\\x08space"),
        ("cr\rlf\n", "cr\\rlf\\n"),
        ("csi\x9b1m", "csi\\x9b1m"),
        ("del\x7f", "del\\x7f"),
        ("sep\u2028", "sep\\u2028"),
        ("tab\t", "tab\\t"),
    ],
)
def test_escape_controls(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


def test_tabs_kept_where_they_separate_columns() -> None:
    assert escape_controls("a\tb\x1b", keep="\t") == "a\tb\\x1b"


def test_documents_keep_their_lines() -> None:
    assert escape_document('{\r\n\t"a": 1\n}') == '{\r\n\t"a": 1\n}'
    assert escape_document("over\rwrite\x1b]0;t\x07") == "over\\rwrite\\x1b]0;t\\x07"


def test_writer_escapes_every_format() -> None:
    stream = io.StringIO()
    writer = Writer("lines", stream)
    writer.lines(["key=ti\x1btle\there"])
    writer.raw(b"doc\x1b\r\nline\rX")
    writer.json({"t": "a\x1bb"})
    assert (
        stream.getvalue() == 'key=ti\\x1btle\there\ndoc\\x1b\r\nline\\rX{\n    "t": "a\\u001bb"\n}'
    )
