"""Time in vmcatcher: naive datetimes that mean UTC, and the one wire format.

Why naive UTC: the original stored and compared naive ``utcnow()`` values, and
the database columns hold them that way; keeping one
convention everywhere avoids mixing aware and naive values. Image lists
should carry ``YYYY-MM-DDTHH:MM:SSZ``; the original crashed on anything else
(docs/compatibility.md). We parse leniently instead -- offsets are converted
to UTC, fractions accepted -- but refuse values that are not a complete date
and time (dateutil would otherwise fill missing parts from today's date), and
report garbage as :class:`~vmcatcher.errors.NotAnImageListError` (code 38).
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

from vmcatcher.errors import NotAnImageListError

__all__ = ["TIME_FORMAT", "format_time", "parse_list_date", "utcnow"]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Two different defaults: a field missing from the text shows up as a difference.
_DEFAULT_A = datetime(2001, 1, 1, 1, 1, 1)
_DEFAULT_B = datetime(2002, 2, 2, 2, 2, 2)
_MAX_DATE_LENGTH = 64


def utcnow() -> datetime:
    """The current time as a naive UTC datetime, as the database stores times."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``; aware values are converted to UTC first."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime(TIME_FORMAT)


def parse_list_date(text: object) -> datetime:
    """Parse an image-list date into a naive UTC datetime.

    Accepts the canonical ``2026-11-25T09:00:00Z`` and reasonable ISO-8601
    variants (``+02:00`` offsets, fractional seconds, a space instead of ``T``).
    Raises :class:`~vmcatcher.errors.NotAnImageListError` for anything that is
    not a complete date and time.
    """
    if not isinstance(text, str):
        raise NotAnImageListError(f"invalid date {text!r}: not a string")
    value = text.strip()
    if not value or len(value) > _MAX_DATE_LENGTH or not value[0].isdigit():
        raise NotAnImageListError(f"invalid date {text!r}")
    try:
        return datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        pass
    from dateutil import parser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unknown time zone names: refuse, don't guess
            first = parser.parse(value, default=_DEFAULT_A)
            second = parser.parse(value, default=_DEFAULT_B)
    except (ValueError, OverflowError, TypeError, ArithmeticError, Warning) as error:
        raise NotAnImageListError(f"invalid date {text!r}: {error}") from None
    if first != second:
        raise NotAnImageListError(f"invalid date {text!r}: not a complete date and time")
    if first.tzinfo is not None:
        try:
            first = first.astimezone(timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError) as error:
            raise NotAnImageListError(f"invalid date {text!r}: {error}") from None
    return first
