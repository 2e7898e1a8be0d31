"""The metrics file: one run's outcome in the Prometheus text format (docs/monitoring.md).

Why a file: sites already run node_exporter, whose textfile collector reads
``*.prom`` files from one directory. Each command rewrites its own file at the
end of every run; ``prometheus_client.write_to_textfile`` writes a temporary
file and renames it, so the collector never reads half a file.

Every series carries a ``command`` label (``update`` or ``cache``): both
commands report the subscriptions, and node_exporter refuses the same series
from two files. When ``--metrics-file`` names a directory, the file is
``<dir>/vmcatcher_<command>.prom``, so one setting (``VMCATCHER_METRICS_FILE``)
can serve both commands.

``prometheus_client`` is imported only here, and this module only when a
metrics file is asked for, so start-up stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from vmcatcher.monitoring import Counter, RunStats
from vmcatcher.services.health import SubscriptionHealth

PREFIX = "vmcatcher"

#: Help text of each per-run counter (metric ``vmcatcher_run_<counter>``).
COUNTER_HELP: dict[Counter, str] = {
    Counter.SUBSCRIPTIONS_UPDATED: "Subscriptions fetched and verified without error in the run",
    Counter.SUBSCRIPTIONS_FAILED: "Subscriptions whose update failed in the run",
    Counter.IMAGES_SELECTED: "Subscribed and available images (what the cache should hold)",
    Counter.IMAGES_CACHED: "Images in the cache at the end of the run",
    Counter.IMAGES_DOWNLOADED: "Images downloaded, verified and cached in the run",
    Counter.IMAGES_EXPIRED: "Images moved to the expired directory in the run",
    Counter.IMAGES_FAILED: "Image downloads that failed in the run",
    Counter.BYTES_DOWNLOADED: "Bytes received by the successful downloads of the run",
    Counter.DOWNLOAD_SECONDS: "Seconds spent downloading, summed over parallel downloads",
    Counter.EVENT_HANDLER_FAILURES: "Event handler runs that exited non-zero or did not start",
    Counter.EVENT_HANDLER_TIMEOUTS: "Event handler runs killed after the event timeout",
}


def metrics_path(configured: str | os.PathLike[str], command: str) -> Path:
    """The file to write: ``configured`` itself, or ``vmcatcher_<command>.prom`` inside it."""
    path = Path(configured)
    if path.is_dir():
        return path / f"{PREFIX}_{command}.prom"
    return path


def write_metrics(
    configured: str | os.PathLike[str],
    stats: RunStats,
    exit_code: int,
    finished: datetime,
    subscriptions: Iterable[SubscriptionHealth],
) -> Path:
    """Render the run and the subscriptions and replace the metrics file atomically."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    command = stats.command.value
    registry = CollectorRegistry()

    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", text, ("command", *labels), registry=registry)

    gauge("run_start_timestamp_seconds", "When the run started (Unix time)").labels(command).set(
        _unix(stats.started)
    )
    gauge("run_end_timestamp_seconds", "When the run ended (Unix time)").labels(command).set(
        _unix(finished)
    )
    gauge("run_exit_code", "Exit code of the run (0: success)").labels(command).set(exit_code)
    gauge("run_success", "1 when the run exited 0, else 0").labels(command).set(
        1 if exit_code == 0 else 0
    )
    for name, value in stats.snapshot().items():
        gauge(f"run_{name}", COUNTER_HELP[Counter(name)]).labels(command).set(value)

    success = gauge(
        "subscription_last_success_timestamp_seconds",
        "When the subscription's list was last fetched and verified (Unix time)",
        ("subscription",),
    )
    expiry = gauge(
        "subscription_list_expiry_timestamp_seconds",
        "dc:date:expires of the subscription's current list (Unix time)",
        ("subscription",),
    )
    info = gauge(
        "subscription_list_info",
        "Always 1; the current list version is in the version label",
        ("subscription", "version"),
    )
    for sub in subscriptions:
        if sub.last_success is not None:
            success.labels(command, sub.identifier).set(_unix(sub.last_success))
        if sub.list_expires is not None:
            expiry.labels(command, sub.identifier).set(_unix(sub.list_expires))
        if sub.list_version is not None:
            info.labels(command, sub.identifier, sub.list_version).set(1)

    target = metrics_path(configured, command)
    write_to_textfile(str(target), registry)
    return target


def _unix(moment: datetime) -> float:
    """Seconds since the epoch of a naive UTC datetime (how the database stores times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
