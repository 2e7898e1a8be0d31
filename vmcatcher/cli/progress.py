"""Download progress on the admin's terminal: one tqdm bar per image, nothing under cron."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


class TerminalProgress:
    """tqdm bars when stderr is a terminal; otherwise silent (the log lines say enough).

    Passed to :func:`vmcatcher.services.cache.run_cache` as its progress display;
    download threads call :meth:`open`'s callback, so bar bookkeeping is locked.
    """

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def open(self, name: str, total: int) -> Callable[[int, int], None] | None:
        if not self.enabled:
            return None
        from tqdm import tqdm

        with self._lock:
            bar = tqdm(total=total, desc=name[:36], unit="B", unit_scale=True,
                       unit_divisor=1024, leave=False, position=len(self._bars))  # fmt: skip
            self._bars[name] = bar

        def update(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        return update

    def done(self, name: str) -> None:
        with self._lock:
            bar = self._bars.pop(name, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for name in list(self._bars):
            self.done(name)
