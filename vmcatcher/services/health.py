"""Read-only snapshots of the database that monitoring needs (docs/monitoring.md).

Why one module: the metrics written at the end of a run and the
``vmcatcher_check`` probe report the same facts (when each subscription was
last fetched, when its list expires, which run failed), so they are queried in
one place. Every query selects plain columns, never the stored list documents:
the probe must stay well under a second on 100,000 images.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmcatcher.db.models import (
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    RunRecord,
    Subscription,
    SubscriptionStatus,
)
from vmcatcher.monitoring import RunCommand
from vmcatcher.services.availability import available_query

#: Image UUIDs per ``IN (...)`` query (well below every backend's parameter limit).
_CHUNK = 500


@dataclass(frozen=True)
class SubscriptionHealth:
    """One subscription as monitoring sees it (times are naive UTC)."""

    identifier: str
    authorised: bool
    #: The later of "a new version was imported" and "the list was fetched and verified".
    last_success: datetime | None
    last_code: int | None
    list_version: str | None
    list_expires: datetime | None
    #: When ``-U`` marked the stored list expired (None: not marked).
    list_marked_expired: datetime | None


@dataclass(frozen=True)
class RunOutcome:
    """The last recorded run of one command (a row of ``vmcatcher_run``)."""

    command: str
    started: datetime
    finished: datetime
    exit_code: int
    counts: dict[str, float]


@dataclass(frozen=True)
class WantedImage:
    """An image the cache should hold: subscribed (cache=1) and available."""

    identifier: str
    size: int
    sha512: str
    list_hash: str


def subscription_health(session: Session) -> list[SubscriptionHealth]:
    """Every subscription with its last success and current list, in id order."""
    rows = session.execute(
        select(
            Subscription.identifier,
            Subscription.authorised,
            Subscription.updated,
            SubscriptionStatus.last_success,
            SubscriptionStatus.last_code,
            ImageListInstance.version,
            ImageListInstance.expires,
            ImageListInstance.expired,
        )
        .outerjoin(SubscriptionStatus, SubscriptionStatus.subscription_id == Subscription.id)
        .outerjoin(ImageListInstance, ImageListInstance.id == Subscription.imagelist_latest)
        .order_by(Subscription.id)
    )
    found = []
    for identifier, authorised, updated, success, code, version, expires, marked in rows:
        moments = [m for m in (updated, success) if m is not None]
        found.append(
            SubscriptionHealth(
                identifier=identifier,
                authorised=bool(authorised),
                last_success=max(moments) if moments else None,
                last_code=code,
                list_version=version,
                list_expires=expires,
                list_marked_expired=marked,
            )
        )
    return found


def last_runs(session: Session) -> dict[str, RunOutcome]:
    """The newest recorded run of each command, keyed by ``RunCommand`` value."""
    found: dict[str, RunOutcome] = {}
    for command in RunCommand:
        row = session.scalars(
            select(RunRecord)
            .where(RunRecord.command == command.value)
            .order_by(RunRecord.finished.desc(), RunRecord.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            found[command.value] = RunOutcome(
                command=row.command,
                started=row.started,
                finished=row.finished,
                exit_code=row.exit_code,
                counts=_counts(row.counts),
            )
    return found


def count_wanted(session: Session, now: datetime) -> int:
    """How many images ``vmcatcher_cache`` should hold now, counted by the database."""
    wanted = (
        available_query(now)
        .where(ImageDefinition.cache == 1)
        .with_only_columns(ImageDefinition.id)
        .order_by(None)
        .subquery()
    )
    return int(session.scalar(select(func.count()).select_from(wanted)) or 0)


def wanted_images(
    session: Session, now: datetime, identifiers: Collection[str] | None = None
) -> list[WantedImage]:
    """The images ``vmcatcher_cache`` should hold now (the one "available" rule).

    ``identifiers`` limits the answer to those image UUIDs (asked in chunks), so the
    probe only fetches the rows the cache directory knows about.
    """
    query = (
        available_query(now)
        .where(ImageDefinition.cache == 1)
        .with_only_columns(
            ImageDefinition.identifier,
            ImageInstance.size,
            ImageInstance.sha512,
            ImageListInstance.data_hash,
        )
    )
    if identifiers is None:
        chunks = [query]
    else:
        names = sorted(identifiers)
        chunks = [
            query.where(ImageDefinition.identifier.in_(names[start : start + _CHUNK]))
            for start in range(0, len(names), _CHUNK)
        ]
    connection = session.connection()
    return [
        WantedImage(i, int(size), sha, h)
        for chunk in chunks
        for i, size, sha, h in connection.execute(chunk)
    ]


def count_images(session: Session) -> int:
    """How many image definitions the database holds (for the probe's perfdata)."""
    return int(session.scalar(select(func.count()).select_from(ImageDefinition)) or 0)


def _counts(text: str | None) -> dict[str, float]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, (int, float))}
