"""Record how a ``-U`` or cache run ended: a database row, and optionally a metrics file.

Why around the whole command: a run that fails before it even reaches the
database (an empty CA directory, a bad option in the environment) is exactly
the run monitoring must hear about. So :func:`run_recorded` wraps the command's
body *including* its error handling, takes the exit code it ended with, and
only then opens the database on its own to write ``vmcatcher_run`` and the
subscriptions' ``vmcatcher_subscription_status`` (docs/monitoring.md).

Recording never changes the run's exit code: a failure to record is one
WARNING line (e.g. the database locked by a writer past the busy timeout), and
the run's own code and messages stand; the probe then sees an older last run.
A metrics file that cannot be written is an ERROR: it was asked for. A database that
does not exist or is not at the current schema is left alone: the probe then
reports UNKNOWN, which is the truth.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from vmcatcher.monitoring import RunCommand, RunStats
from vmcatcher.timeutil import utcnow

log = logging.getLogger("vmcatcher.monitoring")

#: Rows kept per command in ``vmcatcher_run``; older ones are deleted by each run.
KEEP_RUNS = 500


def run_recorded(
    command: RunCommand,
    body: Callable[[RunStats], int],
    database_url: str,
    metrics_file: str | None = None,
) -> int:
    """Run ``body`` (which returns an exit code and never raises), then record its outcome."""
    stats = RunStats(command, utcnow())
    exit_code = body(stats)
    finished = utcnow()
    subscriptions = []
    try:
        subscriptions = record_run(database_url, stats, exit_code, finished)
    except SQLAlchemyError as error:  # e.g. locked by a writer past the busy timeout
        from vmcatcher.db.engine import describe_database_error

        log.warning("Run not recorded in the database: %s", describe_database_error(error))
    except Exception as error:  # recording must not hide the run's own outcome
        log.warning("Run not recorded in the database: %s", _one_line(error))
    if metrics_file:
        try:
            from vmcatcher.metrics import write_metrics

            write_metrics(metrics_file, stats, exit_code, finished, subscriptions)
        except Exception as error:
            log.error("Could not write metrics file '%s': %s", metrics_file, _one_line(error))
    return exit_code


def record_run(database_url: str, stats: RunStats, exit_code: int, finished: datetime) -> list:
    """Insert the ``vmcatcher_run`` row and the subscriptions' status; return their health.

    Returns an empty list without writing when the database is missing or not at
    the current schema.
    """
    from vmcatcher.db.engine import open_database
    from vmcatcher.db.migrate import HEAD_REVISION, schema_revision
    from vmcatcher.db.models import RunRecord, Subscription, SubscriptionStatus
    from vmcatcher.services.health import subscription_health

    if _missing_sqlite_file(database_url):
        return []
    database = open_database(database_url)
    try:
        if schema_revision(database) != HEAD_REVISION:
            log.debug("Run not recorded: database schema is not current")
            return []
        with database.session() as session, session.begin():
            session.add(
                RunRecord(
                    command=stats.command.value,
                    started=stats.started,
                    finished=finished,
                    exit_code=int(exit_code),
                    counts=json.dumps(stats.snapshot(), sort_keys=True),
                )
            )
            for sub_id, code in sorted(stats.subscription_codes.items()):
                if session.get(Subscription, sub_id) is None:
                    continue  # deleted meanwhile
                status = session.get(SubscriptionStatus, sub_id)
                if status is None:
                    status = SubscriptionStatus(subscription_id=sub_id)
                    session.add(status)
                status.last_attempt = finished
                status.last_code = code
                if code == 0:
                    status.last_success = finished
            session.flush()
            _prune(session, stats.command)
        with database.session() as session:
            return subscription_health(session)
    finally:
        database.close()


def _prune(session, command: RunCommand) -> None:
    from vmcatcher.db.models import RunRecord

    oldest_kept = session.scalar(
        select(RunRecord.id)
        .where(RunRecord.command == command.value)
        .order_by(RunRecord.id.desc())
        .offset(KEEP_RUNS - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        session.execute(
            delete(RunRecord).where(RunRecord.command == command.value, RunRecord.id < oldest_kept)
        )


def _missing_sqlite_file(url: str) -> bool:
    """True for a file-backed SQLite URL whose file does not exist (do not create it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return False
    return not os.path.exists(path)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
