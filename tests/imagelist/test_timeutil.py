"""timeutil: the wire format and lenient-but-complete date parsing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from vmcatcher.errors import NotAnImageListError
from vmcatcher.timeutil import TIME_FORMAT, format_time, parse_list_date, utcnow


def test_format():
    assert TIME_FORMAT == "%Y-%m-%dT%H:%M:%SZ"
    assert format_time(datetime(2026, 11, 25, 9, 0, 0, 5)) == "2026-11-25T09:00:00Z"
    aware = datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(aware) == "2026-11-25T09:00:00Z"


def test_utcnow_is_naive_utc():
    now = utcnow()
    assert now.tzinfo is None
    reference = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs(reference - now) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T09:00:00Z", datetime(2026, 11, 25, 9)),
        (" 2026-11-25T09:00:00Z\n", datetime(2026, 11, 25, 9)),
        ("2026-11-25T09:00:00+00:00", datetime(2026, 11, 25, 9)),
        ("2026-11-25T10:30:00+01:30", datetime(2026, 11, 25, 9)),
        ("2026-11-25T00:30:00-08:30", datetime(2026, 11, 25, 9)),
        ("2026-11-26T01:00:00+16:00", datetime(2026, 11, 25, 9)),
        ("2026-11-25T09:00:00.250Z", datetime(2026, 11, 25, 9, 0, 0, 250000)),
        ("2026-11-25 09:00:00", datetime(2026, 11, 25, 9)),
        ("2026-11-25T09:00:00", datetime(2026, 11, 25, 9)),  # no zone: UTC
        ("20261125T090000Z", datetime(2026, 11, 25, 9)),
    ],
)
def test_parse(text, expected):
    parsed = parse_list_date(text)
    assert parsed == expected
    assert parsed.tzinfo is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "2026",
        "2026-11-25",  # no time: dateutil would silently use 00:00 or today's parts
        "09:00:00",  # no date
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-25T25:00:00Z",
        "2026-11-25T09:00:00 XYZ",  # unknown zone name
        "0000-01-01T00:00:00Z",
        "9" * 100,
        None,
        12345,
        ["2026-11-25T09:00:00Z"],
    ],
)
def test_garbage_is_38(text):
    with pytest.raises(NotAnImageListError, match="invalid date"):
        parse_list_date(text)


@examples(1000)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_38(text):
    try:
        parsed = parse_list_date(text)
    except NotAnImageListError:
        return
    assert parsed.tzinfo is None


def test_a_leading_minus_is_not_silently_dropped():
    with pytest.raises(NotAnImageListError):
        parse_list_date("-2024-01-01T00:00:00Z")
