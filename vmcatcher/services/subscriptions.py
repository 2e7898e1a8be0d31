"""Selecting, deleting and configuring subscriptions (docs/commands/vmcatcher_subscribe.md).

Selections are ``-u`` identifiers or ``-r`` normalised URIs; each selection
matches at most one subscription (both columns are unique).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmcatcher.db import cascade
from vmcatcher.db.models import ImageDefinition, Subscription
from vmcatcher.errors import UsageError
from vmcatcher.services.update import force_reimport
from vmcatcher.vocabulary import Caching, TrustAnchor, UpdateMode

log = logging.getLogger("vmcatcher.subscriptions")

BY_UUID = "uuid"
BY_URI = "uri"


def all_subscriptions(session: Session) -> list[Subscription]:
    return list(session.scalars(select(Subscription).order_by(Subscription.id)))


def find(session: Session, selector: str, value: str) -> Subscription | None:
    """The subscription selected by identifier (``uuid``) or stored URI (``uri``)."""
    column = Subscription.uri if selector == BY_URI else Subscription.identifier
    if selector == BY_URI:
        from vmcatcher.uri import normalise_anonymous

        try:
            value = normalise_anonymous(value)
        except Exception:  # an unparsable URI simply matches nothing
            return None
    return session.scalars(select(Subscription).where(column == value)).first()


def delete(session: Session, selector: str, values: Sequence[str]) -> list[str]:
    """Delete the selected subscriptions; return the selections that matched nothing."""
    unmatched = []
    for value in values:
        sub = find(session, selector, value)
        if sub is None:
            unmatched.append(value)
            continue
        log.info("Deleting subscription '%s'.", sub.identifier)
        cascade.delete_subscription(session, sub)
        session.commit()
    return unmatched


@dataclass(frozen=True)
class SubscriptionSettings:
    """Subscription settings given on a command line; ``None``: not given.

    An empty user name or password clears it (the original stored "").
    """

    trust_anchor: TrustAnchor | None = None
    username: str | None = None
    password: str | None = None
    update_mode: UpdateMode | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in vars(self).values())


def configure(
    session_factory: Callable[[], Session],
    selector: str,
    values: Sequence[str],
    settings: SubscriptionSettings,
    update: Callable[[list[int]], object] | None = None,
) -> None:
    """Apply ``settings`` to the selected subscriptions.

    A new update mode changes which images a list may add, so the subscriptions
    whose mode changed are updated again at once (``update`` receives their ids),
    as the original did.
    """
    with session_factory() as session:
        if settings.trust_anchor is not None:
            set_trust_anchor(session, selector, values, settings.trust_anchor)
        if settings.username is not None:
            set_credential(session, selector, values, "username", settings.username)
        if settings.password is not None:
            set_credential(session, selector, values, "password", settings.password)
        matched = []
        if settings.update_mode is not None:
            matched = set_update_mode(session, selector, values, settings.update_mode)
    if matched and update is not None:
        update(matched)


def set_trust_anchor(session: Session, selector: str, values: Sequence[str], anchor: int) -> None:
    for value in values:
        sub = find(session, selector, value)
        if sub is None:
            log.warning("Selection '%s' does not match any known subscriptions.", value)
            continue
        sub.trust_anchor = int(TrustAnchor(anchor))
        session.commit()


def set_credential(
    session: Session, selector: str, values: Sequence[str], field: str, secret: str
) -> None:
    """Set ``username`` or ``password`` ("" clears it, as the original stored)."""
    for value in values:
        sub = find(session, selector, value)
        if sub is None:
            log.warning("Selections '%s' does not match any known subscriptions.", value)
            continue
        setattr(sub, field, secret)
        session.commit()


def matching_ids(session: Session, selector: str, values: Sequence[str]) -> list[int]:
    """Ids of the subscriptions selected by ``-u``/``--uri`` (``-U -u``); refuse no match."""
    matched: list[int] = []
    for value in values:
        sub = find(session, selector, value)
        if sub is None:
            log.warning("Selections '%s' does not match any known subscriptions.", value)
        elif sub.id not in matched:
            matched.append(sub.id)
    if not matched:
        raise UsageError("No known subscription matches the selection; nothing updated.")
    return matched


def set_update_mode(session: Session, selector: str, values: Sequence[str], mode: int) -> list[int]:
    """Set the new-image policy and force the next update to re-import; return matched ids."""
    matched = []
    for value in values:
        sub = find(session, selector, value)
        if sub is None:
            log.warning("Selections '%s' does not match any known subscriptions.", value)
            continue
        sub.update_mode = mode
        force_reimport(session, sub)
        session.commit()
        matched.append(sub.id)
    return matched


def _pairs(
    session: Session, images: Sequence[str], subscriptions: Sequence[str]
) -> Iterator[tuple[str, str, Subscription | None]]:
    """(image, subscription value, subscription row) paired by position; unequal counts
    log the original's ERROR and pair nothing."""
    if len(images) > len(subscriptions):
        log.error("Not enough subscriptions selected")
        return
    if len(images) < len(subscriptions):
        log.error("Not enough images selected")
        return
    for image, sub_id in zip(images, subscriptions):
        yield image, sub_id, find(session, BY_UUID, sub_id)


def image_accept(session: Session, images: Sequence[str], subscriptions: Sequence[str]) -> None:
    """Pre-register image UUIDs for subscriptions (paired by position).

    Each failure is an ERROR line; as in the original they do not change the
    command's exit code (docs/commands/vmcatcher_subscribe.md).
    """
    for image, sub_id, sub in _pairs(session, images, subscriptions):
        if sub is None:
            log.error("Subscription '%s' is unknown.", sub_id)
            continue
        existing = session.scalars(
            select(ImageDefinition).where(ImageDefinition.identifier == image)
        ).first()
        if existing is not None:
            log.error("Subscription '%s' has image '%s' already.", sub_id, image)
            continue
        session.add(
            ImageDefinition(identifier=image, cache=int(Caching.OFF), latest=0, subscription=sub)
        )
        force_reimport(session, sub)
        session.commit()


def image_refuse(session: Session, images: Sequence[str], subscriptions: Sequence[str]) -> None:
    """Forget image UUIDs of subscriptions (paired by position); failures as for accept."""
    for image, sub_id, sub in _pairs(session, images, subscriptions):
        definition = None
        if sub is not None:
            definition = session.scalars(
                select(ImageDefinition).where(
                    ImageDefinition.identifier == image,
                    ImageDefinition.subscription_id == sub.id,
                )
            ).first()
        if sub is None or definition is None:
            log.error("Subscription '%s' already refuses image '%s'.", sub_id, image)
            continue
        cascade.delete_image_definition(session, definition)
        force_reimport(session, sub)
        session.commit()
