"""Delete subscriptions, endorsers, authorisations and image definitions completely.

Why explicit functions instead of ``session.delete``: the original left
``ImageInstance`` rows behind (foreign key nulled or dangling) and left
``subscription.imagelist_latest`` / ``ImageDefinition.latest`` pointing at
deleted rows (docs/compatibility.md). Those two pointers have no foreign key, so no
database cascade can fix them, and the ``ON DELETE CASCADE`` clauses are not
in effect on an old SQLite file opened without ``foreign_keys=ON``.

Each function here therefore, in one flush of the caller's transaction and
with a handful of bulk statements (sized by the number of tables, not rows):

1. resets pointers that would dangle: ``imagelist_latest`` → NULL,
   ``ImageDefinition.latest`` → 0 (its "no image yet" value);
2. deletes children before parents, so nothing relies on the database's own
   cascades and no row is orphaned;
3. drops the deleted rows from collections already loaded in the session (so
   ``subscription.auths`` no longer lists a deleted auth) without expiring
   anything: objects stay readable after the session closes.

They do not commit: the caller owns the transaction. Each returns
:class:`Deleted`, the number of rows removed per table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, inspect, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)

_SYNC = {"synchronize_session": "fetch"}


@dataclass(frozen=True)
class Deleted:
    """Rows removed by one cascade call, per table."""

    subscriptions: int = 0
    endorsers: int = 0
    principals: int = 0
    auths: int = 0
    list_instances: int = 0
    image_definitions: int = 0
    images: int = 0


def delete_subscription(session: Session, subscription: Subscription) -> Deleted:
    """Delete a subscription with its authorisations, list instances, definitions and images.

    Endorsers are kept (they may sign other lists).
    """
    session.flush()
    sub_id = subscription.id
    auth_ids = select(SubscriptionAuth.id).where(SubscriptionAuth.subscription_id == sub_id)
    list_ids = _list_ids_of(auth_ids)
    definition_ids = select(ImageDefinition.id).where(ImageDefinition.subscription_id == sub_id)
    images = or_(
        ImageInstance.definition_id.in_(definition_ids),
        ImageInstance.list_instance_id.in_(list_ids),
    )
    _clear_pointers(session, images, list_ids)
    counts = Deleted(
        images=_delete(session, ImageInstance, images),
        list_instances=_delete(session, ImageListInstance, ImageListInstance.id.in_(list_ids)),
        auths=_delete(session, SubscriptionAuth, SubscriptionAuth.subscription_id == sub_id),
        image_definitions=_delete(
            session, ImageDefinition, ImageDefinition.subscription_id == sub_id
        ),
        subscriptions=_delete(session, Subscription, Subscription.id == sub_id),
    )
    _prune_loaded_collections(session)
    return counts


def delete_endorser(session: Session, endorser: Endorser) -> Deleted:
    """Delete an endorser, its principals and authorisations, and what was imported under them.

    List instances signed under the endorser's authorisations go too, with their
    image instances; subscriptions and image definitions stay.
    """
    session.flush()
    endorser_id = endorser.id
    auth_ids = select(SubscriptionAuth.id).where(SubscriptionAuth.endorser_id == endorser_id)
    list_ids = _list_ids_of(auth_ids)
    images = ImageInstance.list_instance_id.in_(list_ids)
    _clear_pointers(session, images, list_ids)
    counts = Deleted(
        images=_delete(session, ImageInstance, images),
        list_instances=_delete(session, ImageListInstance, ImageListInstance.id.in_(list_ids)),
        auths=_delete(session, SubscriptionAuth, SubscriptionAuth.endorser_id == endorser_id),
        principals=_delete(
            session, EndorserPrincipal, EndorserPrincipal.endorser_id == endorser_id
        ),
        endorsers=_delete(session, Endorser, Endorser.id == endorser_id),
    )
    _prune_loaded_collections(session)
    return counts


def delete_subscription_auth(session: Session, auth: SubscriptionAuth) -> Deleted:
    """Unlink an endorser from a subscription, with the list instances imported under that link."""
    session.flush()
    auth_id = auth.id
    list_ids = select(ImageListInstance.id).where(ImageListInstance.sub_auth_id == auth_id)
    images = ImageInstance.list_instance_id.in_(list_ids)
    _clear_pointers(session, images, list_ids)
    counts = Deleted(
        images=_delete(session, ImageInstance, images),
        list_instances=_delete(session, ImageListInstance, ImageListInstance.id.in_(list_ids)),
        auths=_delete(session, SubscriptionAuth, SubscriptionAuth.id == auth_id),
    )
    _prune_loaded_collections(session)
    return counts


def delete_image_definition(session: Session, definition: ImageDefinition) -> Deleted:
    """Delete an image definition and every image instance of that UUID."""
    session.flush()
    definition_id = definition.id
    images = ImageInstance.definition_id == definition_id
    _clear_pointers(session, images, None)
    counts = Deleted(
        images=_delete(session, ImageInstance, images),
        image_definitions=_delete(session, ImageDefinition, ImageDefinition.id == definition_id),
    )
    _prune_loaded_collections(session)
    return counts


#: The one-to-many collections that can hold rows deleted here.
_COLLECTIONS: dict[type, tuple[str, ...]] = {
    Endorser: ("principals", "auths"),
    Subscription: ("auths", "image_definitions"),
    SubscriptionAuth: ("list_instances",),
    ImageDefinition: ("instances",),
    ImageListInstance: ("images",),
}


def _prune_loaded_collections(session: Session) -> None:
    """Remove objects deleted by the bulk statements from already-loaded collections."""
    for obj in list(session.identity_map.values()):
        names = _COLLECTIONS.get(type(obj), ())
        loaded = inspect(obj).dict
        for name in names:
            items = loaded.get(name)
            if items is None:
                continue
            kept = [item for item in items if not inspect(item).was_deleted]
            if len(kept) != len(items):
                set_committed_value(obj, name, kept)


def _list_ids_of(auth_ids: Select[Any]) -> Select[Any]:
    return select(ImageListInstance.id).where(ImageListInstance.sub_auth_id.in_(auth_ids))


def _clear_pointers(
    session: Session,
    doomed_images: ColumnElement[bool],
    doomed_list_ids: Select[Any] | None,
) -> None:
    """Reset the FK-less pointers that reference rows about to be deleted."""
    image_ids = select(ImageInstance.id).where(doomed_images)
    session.execute(
        update(ImageDefinition).where(ImageDefinition.latest.in_(image_ids)).values(latest=0),
        execution_options=_SYNC,
    )
    if doomed_list_ids is not None:
        session.execute(
            update(Subscription)
            .where(Subscription.imagelist_latest.in_(doomed_list_ids))
            .values(imagelist_latest=None),
            execution_options=_SYNC,
        )


def _delete(session: Session, model: type, condition: ColumnElement[bool]) -> int:
    result = session.execute(delete(model).where(condition), execution_options=_SYNC)
    return int(getattr(result, "rowcount", 0) or 0)  # a DELETE's result is a CursorResult
