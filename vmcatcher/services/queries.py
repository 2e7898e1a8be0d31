"""Small read queries several services share, so each lives in one place."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcatcher.db.models import ImageDefinition, ImageListInstance, Subscription

_CHUNK = 500


def latest_list_instance(session: Session, sub: Subscription) -> ImageListInstance | None:
    """The list instance the subscription currently points at, if it still exists."""
    if sub.imagelist_latest is None:
        return None
    return session.get(ImageListInstance, sub.imagelist_latest)


def definitions_by_identifier(
    session: Session, identifiers: Sequence[str]
) -> dict[str, tuple[int, int | None]]:
    """identifier -> (definition id, owning subscription id) for those already known.

    Asked in chunks: a list of 100,000 images must not become one statement with
    100,000 parameters (SQLite refuses more than 32,766).
    """
    found: dict[str, tuple[int, int | None]] = {}
    for start in range(0, len(identifiers), _CHUNK):
        chunk = identifiers[start : start + _CHUNK]
        rows = session.execute(
            select(
                ImageDefinition.identifier, ImageDefinition.id, ImageDefinition.subscription_id
            ).where(ImageDefinition.identifier.in_(chunk))
        )
        for identifier, definition_id, subscription_id in rows:
            found[identifier] = (definition_id, subscription_id)
    return found
