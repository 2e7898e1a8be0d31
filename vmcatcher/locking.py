"""What every lock of vmcatcher shares: the protocol, and waiting for a lock held elsewhere.

A cache is protected by a file lock (:mod:`vmcatcher.cache.lock`) and, on
PostgreSQL, by a database advisory lock (:mod:`vmcatcher.db.locks`). Both are
taken the same way (``--wait`` none, forever, or some seconds; polled, because
neither ``flock`` with a timeout nor an advisory lock with one exists) and
used as context managers.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from types import TracebackType


class Lock(abc.ABC):
    """Mutual exclusion for one cache; use as a context manager."""

    @abc.abstractmethod
    def acquire(self) -> None:
        """Take the lock or raise :class:`~vmcatcher.errors.CacheLockedError`.

        Failures other than "held by someone else" raise its parent
        :class:`~vmcatcher.errors.CacheError`.
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock back; harmless if not held."""

    @property
    @abc.abstractmethod
    def held(self) -> bool:
        """True while this object holds the lock."""

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def wait_seconds(wait: bool | float) -> float | None:
    """``True`` -> ``None`` (forever), ``False`` -> 0, a number -> that many seconds."""
    if wait is True:
        return None
    if wait is False:
        return 0.0
    if wait < 0:
        raise ValueError("lock wait must not be negative")
    return float(wait)


def poll(try_once: Callable[[], bool], wait: float | None, interval: float) -> bool:
    """Call ``try_once`` until it returns True or ``wait`` seconds (None: forever) have passed.

    It is always tried at least once; returns whether it succeeded.
    """
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        if try_once():
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        time.sleep(interval if remaining is None else min(interval, remaining))
