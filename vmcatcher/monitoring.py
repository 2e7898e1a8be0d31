"""Shared vocabulary of monitoring: recorded commands, probe statuses, run counters.

Why one module: ``vmcatcher_subscribe -U`` and ``vmcatcher_cache`` fill a
:class:`RunStats` while they work, the run recorder stores it in the database
(``vmcatcher_run``), the metrics writer turns it into Prometheus text, and
``vmcatcher_check`` reads it back. The names they share live here once, so a
counter cannot be spelt two ways (see ``docs/monitoring.md``).

This module is imported by the commands on every start, so it imports nothing
heavy.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from datetime import datetime


class RunCommand(str, enum.Enum):
    """The runs whose outcome is recorded (column ``vmcatcher_run.command``)."""

    UPDATE = "update"  # vmcatcher_subscribe -U
    CACHE = "cache"  # vmcatcher_cache

    def __str__(self) -> str:
        return self.value


class Status(enum.IntEnum):
    """Nagios plugin statuses: the probe's exit code and the word on its status line."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class Counter(str, enum.Enum):
    """Counters of one run, as keys of ``vmcatcher_run.counts`` and metric suffixes."""

    SUBSCRIPTIONS_UPDATED = "subscriptions_updated"
    SUBSCRIPTIONS_FAILED = "subscriptions_failed"
    IMAGES_SELECTED = "images_selected"
    IMAGES_CACHED = "images_cached"
    IMAGES_DOWNLOADED = "images_downloaded"
    IMAGES_EXPIRED = "images_expired"
    IMAGES_FAILED = "images_failed"
    BYTES_DOWNLOADED = "downloaded_bytes"
    DOWNLOAD_SECONDS = "download_seconds"
    EVENT_HANDLER_FAILURES = "event_handler_failures"
    EVENT_HANDLER_TIMEOUTS = "event_handler_timeouts"

    def __str__(self) -> str:
        return self.value


@dataclass
class RunStats:
    """What one run did, filled at a few existing points of the services.

    Thread-safe: downloads finish on worker threads and events may fire from
    several threads. ``subscription_codes`` maps a subscription id to the result
    code of its update in this run (0 = fetched, verified and stored or unchanged).
    """

    command: RunCommand
    started: datetime
    counts: dict[str, float] = field(default_factory=dict)
    subscription_codes: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: Counter, amount: float = 1) -> None:
        with self._lock:
            self.counts[counter.value] = self.counts.get(counter.value, 0) + amount

    def set(self, counter: Counter, value: float) -> None:
        with self._lock:
            self.counts[counter.value] = value

    def subscription_done(self, sub_id: int, code: int) -> None:
        """Record one subscription's update result (from ``update_subscriptions``)."""
        with self._lock:
            self.subscription_codes[sub_id] = int(code)
        self.add(Counter.SUBSCRIPTIONS_FAILED if code else Counter.SUBSCRIPTIONS_UPDATED)

    def event_done(self, rc: int, timed_out: bool) -> None:
        """Record one event handler run (from :meth:`vmcatcher.events.EventRunner.fire`)."""
        if timed_out:
            self.add(Counter.EVENT_HANDLER_TIMEOUTS)
        if rc != 0:
            self.add(Counter.EVENT_HANDLER_FAILURES)

    def snapshot(self) -> dict[str, float]:
        """Every counter of the run (zero when never touched), for storage and metrics."""
        with self._lock:
            return {c.value: self.counts.get(c.value, 0) for c in Counter if _applies(self, c)}


_UPDATE_COUNTERS = {
    Counter.SUBSCRIPTIONS_UPDATED,
    Counter.SUBSCRIPTIONS_FAILED,
    Counter.EVENT_HANDLER_FAILURES,
    Counter.EVENT_HANDLER_TIMEOUTS,
}


def _applies(stats: RunStats, counter: Counter) -> bool:
    if stats.command is RunCommand.UPDATE:
        return counter in _UPDATE_COUNTERS
    return counter not in (Counter.SUBSCRIPTIONS_UPDATED, Counter.SUBSCRIPTIONS_FAILED)
