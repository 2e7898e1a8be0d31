"""The one definition of an "available" image, and the image state bitmap built on it.

An image is *available* when the latest list of its own, authorised
subscription carries it, that list has not expired, and the image definition
points at that list's instance of the image (docs/commands/vmcatcher_image.md). The
cache downloads what is available and subscribed, and expires everything else;
``vmcatcher_image -l`` shows ``state = cache + 2 * available``.

A list counts as expired once it is marked so *or* once its own
``dc:date:expires`` has passed, even if no ``vmcatcher_subscribe -U`` ran since
(docs/compatibility.md, "list expiry"): a publisher who stops renewing a list withdraws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from vmcatcher.db.models import ImageDefinition, ImageInstance, ImageListInstance, Subscription
from vmcatcher.timeutil import utcnow
from vmcatcher.vocabulary import ImageState


def available_query(now: datetime | None = None) -> Select:
    """(Subscription, ImageDefinition, ImageListInstance, ImageInstance) of available images."""
    moment = now or utcnow()
    return (
        select(Subscription, ImageDefinition, ImageListInstance, ImageInstance)
        .join(ImageDefinition, ImageDefinition.subscription_id == Subscription.id)
        .join(ImageListInstance, ImageListInstance.id == Subscription.imagelist_latest)
        .join(
            ImageInstance,
            (ImageInstance.definition_id == ImageDefinition.id)
            & (ImageInstance.list_instance_id == ImageListInstance.id)
            & (ImageInstance.id == ImageDefinition.latest),
        )
        .where(
            Subscription.authorised.is_(True),
            ImageListInstance.expired.is_(None),
            ImageListInstance.expires > moment,
        )
        .order_by(ImageDefinition.id)
    )


@dataclass(frozen=True)
class ImageStateRow:
    image: str
    state: int
    subscription: str


def _state(cache: int, available: bool) -> ImageState:
    state = ImageState.SUBSCRIBED if cache else ImageState.KNOWN
    return state | ImageState.AVAILABLE if available else state


def image_states(session: Session, now: datetime | None = None) -> list[ImageStateRow]:
    """Every image definition with its state bitmap, in definition order."""
    available = {
        definition_id
        for (definition_id,) in session.execute(
            available_query(now).with_only_columns(ImageDefinition.id)
        )
    }
    rows = session.execute(
        select(ImageDefinition.id, ImageDefinition.identifier, ImageDefinition.cache,
               Subscription.identifier)
        .join(Subscription, ImageDefinition.subscription_id == Subscription.id)
        .order_by(ImageDefinition.id)
    )  # fmt: skip
    return [
        ImageStateRow(image, int(_state(cache, def_id in available)), sub)
        for def_id, image, cache, sub in rows
    ]
