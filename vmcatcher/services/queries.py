"""Small read queries several services share, so each lives in one place."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vmcatcher.db.models import ImageListInstance, Subscription


def latest_list_instance(session: Session, sub: Subscription) -> ImageListInstance | None:
    """The list instance the subscription currently points at, if it still exists."""
    if sub.imagelist_latest is None:
        return None
    return session.get(ImageListInstance, sub.imagelist_latest)
