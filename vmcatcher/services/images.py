"""Image definitions: selecting them by UUID or sha512, (de)selecting them for the cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcatcher.db import cascade
from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)

BY_UUID = "uuid"
BY_SHA512 = "sha512"


def find(session: Session, selector: str, value: str) -> list[ImageDefinition]:
    """Definitions selected by identifier, or having any stored instance with that sha512."""
    if selector == BY_SHA512:
        query = (
            select(ImageDefinition)
            .where(
                ImageDefinition.id.in_(
                    select(ImageInstance.definition_id).where(
                        ImageInstance.sha512 == value.lower(),
                        ImageInstance.list_instance_id.is_not(None),
                    )
                )
            )
            .order_by(ImageDefinition.id)
        )
    else:
        query = select(ImageDefinition).where(ImageDefinition.identifier == value)
    return list(session.scalars(query))


def set_cache(session: Session, selector: str, values: Sequence[str], cache: int) -> int:
    """Subscribe (1) or unsubscribe (0) the selected images; return how many matched."""
    matched = 0
    for value in values:
        for definition in find(session, selector, value):
            definition.cache = int(cache)
            matched += 1
    session.commit()
    return matched


def delete(session: Session, selector: str, values: Sequence[str]) -> list[str]:
    """Forget the selected images; return the selections that matched nothing."""
    unmatched = []
    for value in values:
        definitions = find(session, selector, value)
        if not definitions:
            unmatched.append(value)
        for definition in definitions:
            cascade.delete_image_definition(session, definition)
    session.commit()
    return unmatched


@dataclass(frozen=True)
class ImageDetail:
    """One row of ``vmcatcher_image -i``: an image in its subscription's latest list."""

    subscription: Subscription
    list_instance: ImageListInstance
    image: ImageInstance
    definition: ImageDefinition
    auth: SubscriptionAuth
    endorser: Endorser
    principal: EndorserPrincipal


def details(session: Session, definition: ImageDefinition) -> list[ImageDetail]:
    rows = session.execute(
        select(Subscription, ImageListInstance, ImageInstance, SubscriptionAuth, Endorser,
               EndorserPrincipal)
        .join(ImageListInstance, ImageListInstance.id == Subscription.imagelist_latest)
        .join(ImageInstance, ImageInstance.list_instance_id == ImageListInstance.id)
        .join(SubscriptionAuth, SubscriptionAuth.id == ImageListInstance.sub_auth_id)
        .join(Endorser, Endorser.id == SubscriptionAuth.endorser_id)
        .join(EndorserPrincipal, EndorserPrincipal.endorser_id == Endorser.id)
        .where(Subscription.id == definition.subscription_id)
        .where(ImageInstance.definition_id == definition.id)
        .order_by(EndorserPrincipal.id)
    )  # fmt: skip
    return [
        ImageDetail(sub, instance, image, definition, auth, endorser, principal)
        for sub, instance, image, auth, endorser, principal in rows
    ]
