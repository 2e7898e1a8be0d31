"""The ``--metrics-file`` option and the run recording shared by ``-U`` and the cache.

Kept apart from the commands so that each of them gains two lines: the option,
and :func:`main_recorded` in place of ``run_cli`` (docs/monitoring.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vmcatcher.cli.common import run_cli
from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.settings import DEFAULT_DATABASE, ENV_DATABASE, resolve

ENV_METRICS_FILE = "VMCATCHER_METRICS_FILE"


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's metrics (Prometheus text format) to PATH at the end, or to "
        f"PATH/vmcatcher_<command>.prom if PATH is a directory; env {ENV_METRICS_FILE}",
    )


def main_recorded(
    command: RunCommand,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, RunStats], int],
) -> int:
    """``run_cli(run)``, then record the outcome in the database and the metrics file."""
    from vmcatcher.services.runstatus import run_recorded

    database_url = str(resolve(args.database, ENV_DATABASE, DEFAULT_DATABASE))
    metrics_file = resolve(args.metrics_file, ENV_METRICS_FILE, None)
    return run_recorded(
        command,
        lambda stats: run_cli(lambda: run(args, stats)),
        database_url,
        str(metrics_file) if metrics_file else None,
    )
