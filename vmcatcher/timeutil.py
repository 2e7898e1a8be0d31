"""Time helpers: every stored time is naive UTC, every printed time uses TIME_FORMAT."""

from __future__ import annotations

from datetime import datetime, timezone

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    """The current time as a naive UTC datetime, as the database stores times."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def format_time(value: datetime) -> str:
    """Render a naive UTC datetime the way the original printed every time."""
    return value.strftime(TIME_FORMAT)
