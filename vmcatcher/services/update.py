"""``vmcatcher_subscribe -U``: download, verify and import new versions of subscribed lists.

The flow per subscription is the original's, with the fixes the project
decided on (docs/compatibility.md):

* each subscription is updated in its own transaction, and any failure is
  mapped to its result code, logged, and the next subscription still runs;
* a stored list whose own ``dc:date:expires`` has passed is marked expired
  (its images stop being available); a downloaded list that is already
  expired is refused with 34 and changes nothing, so replaying an old list
  cannot knock out a valid one; a later valid list clears the state;
* rollback is checked against the newest stored version of the
  subscription, even after ``--image-accept``/``--image-refuse`` reset the
  latest pointer;
* an image UUID belongs to the subscription that registered it: another
  list carrying it is refused for that image (32) and cannot touch it;
* the signer is matched to an endorser through the principal's foreign key
  and the link must be authorised;
* the list may only move its own subscription URL within http(s).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from vmcatcher.db.engine import describe_database_error
from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)
from vmcatcher.errors import (
    Code,
    FetchError,
    InvalidURIError,
    LowerVersionError,
    NotAuthorisedError,
    VmcatcherError,
)
from vmcatcher.fetch import DEFAULT_TIMEOUT
from vmcatcher.imagelist import Image, ImageList
from vmcatcher.imagelist.checks import check_version
from vmcatcher.monitoring import RunStats
from vmcatcher.services.queries import definitions_by_identifier, latest_list_instance
from vmcatcher.services.verification import VerifiedList, verify_list
from vmcatcher.timeutil import format_time, utcnow
from vmcatcher.trust import CrlPolicy, TrustStore, dn_equal
from vmcatcher.uri import normalise_anonymous, scheme_of
from vmcatcher.vocabulary import Caching, EventType, UpdateMode

log = logging.getLogger("vmcatcher.update")

RELOAD_CACHE = "reload cache"  # data_hash sentinel forcing a re-import

# Fires SubscriptionImageNew; receives the image's JSON fields.
NewImageHook = Callable[[dict[str, Any]], object]


@dataclass
class UpdateContext:
    """What every subscription's update needs, resolved once per run."""

    store: TrustStore
    crl_policy: CrlPolicy
    ca_dir: str | Path | None
    on_new_image: NewImageHook | None = None
    fetch: Callable[..., bytes] | None = None  # defaults to vmcatcher.fetch.fetch_list
    fetch_timeout: tuple[float, float] = DEFAULT_TIMEOUT  # (connect, read) seconds
    stats: RunStats | None = None  # per-subscription results for the run record


def new_image_events(command: str | None, stats: RunStats | None = None) -> NewImageHook | None:
    """The hook firing ``SubscriptionImageNew`` through ``command`` (``-x``), if one is set.

    ``stats`` counts handler failures and timeouts for the run record (docs/monitoring.md).
    """
    if not command:
        return None
    import os

    from vmcatcher.events import EventRunner

    runner = EventRunner(command, base_env=dict(os.environ))
    runner.stats = stats
    return lambda metadata: runner.fire(EventType.SUBSCRIPTION_IMAGE_NEW, metadata)


def _network_fetch() -> Callable[..., bytes]:
    from vmcatcher.fetch import fetch_list  # requests is imported only by commands that fetch

    return fetch_list


def update_subscriptions(
    session_factory: Callable[[], Session],
    context: UpdateContext,
    selected: Iterable[int] | None = None,
) -> int:
    """Update every subscription (or the ``selected`` ids); return the last non-zero code."""
    with session_factory() as session:
        query = select(Subscription.id).order_by(Subscription.id)
        ids = list(session.scalars(query))
    if selected is not None:
        wanted = set(selected)
        ids = [i for i in ids if i in wanted]
    rc = 0
    for sub_id in ids:
        with session_factory() as session:
            code = update_one(session, sub_id, context)
        if context.stats is not None:
            context.stats.subscription_done(sub_id, code)
        if code:
            rc = code
    return rc


def update_one(session: Session, sub_id: int, context: UpdateContext) -> int:
    """Update one subscription in its own transaction; never raises for expected failures."""
    sub = session.get(Subscription, sub_id)
    if sub is None:
        return 0
    identifier = sub.identifier
    try:
        return _update(session, sub, context)
    except (NotAuthorisedError, LowerVersionError) as error:  # decided after verification
        session.rollback()
        log.error("%s", error)
        return int(error.code)
    except VmcatcherError as error:
        session.rollback()
        if isinstance(error, FetchError):
            log.error("%s, while retrieving %s", error, sub.uri)
        else:
            log.error("%s", error)
            log.error("Failed to verify subscription '%s' with URI '%s'", identifier, sub.uri)
        return int(error.code)
    except IntegrityError as error:
        session.rollback()
        log.error("Database integrity error '%s' processing '%s'.", str(error.orig), identifier)
        return int(Code.DB_INTEGRITY)
    except SQLAlchemyError as error:  # e.g. locked for longer than the busy timeout
        session.rollback()
        log.error("Database error updating subscription '%s': %s", identifier,
                  describe_database_error(error))  # fmt: skip
        return int(Code.FAILURE)
    except Exception as error:  # a bug must not stop the other subscriptions
        session.rollback()
        log.error("Unexpected error updating subscription '%s': %s", identifier, error)
        log.debug("Traceback", exc_info=True)
        return int(Code.FAILURE)


def _update(session: Session, sub: Subscription, context: UpdateContext) -> int:
    log.info("Updating:%s", sub.identifier)
    now = utcnow()
    if not sub.authorised:
        log.warning("Subscription '%s' is not authorised; not updated.", sub.identifier)
        return 0
    mark_expired_if_due(session, sub, now)
    session.commit()

    fetch = context.fetch or _network_fetch()
    data = fetch(
        sub.uri,
        username=sub.username or None,
        password=sub.password or None,
        trust_anchor=sub.trust_anchor,
        ca_dir=context.ca_dir,
        timeout=context.fetch_timeout,
    )
    verified = verify_list(
        data,
        context.store,
        crl_policy=context.crl_policy,
        now=now,
        expected_identifier=sub.identifier,
        expected_uri=sub.uri,
    )
    if not lock_subscription(session, sub):
        log.warning("Subscription '%s' was deleted while it was updated.", sub.identifier)
        return 0
    auth = find_authorisation(session, sub, verified)
    if auth is None:
        raise NotAuthorisedError(
            f"Endorser subject='{verified.message.signer_subject}' "
            f"issuer='{verified.message.signer_issuer}' not authorised on subscription "
            f"'{sub.identifier}'"
        )
    previous = latest_list_instance(session, sub)
    if previous is not None and previous.data_hash == verified.data_hash:
        log.debug("Same version:%s", sub.identifier)
        return 0
    if previous is None:
        log.info("First version of:%s", sub.identifier)
    refuse_rollback(session, sub, verified.image_list.version)
    return import_list(session, sub, auth, verified, now, context.on_new_image)


def lock_subscription(session: Session, sub: Subscription) -> bool:
    """Serialise imports of one subscription across processes; re-read its row.

    Two ``-U`` (cron and an admin) may download the same new version at once;
    without a lock both would see the old latest instance and both import it.
    A no-op UPDATE of the row takes the write lock until this transaction ends
    (SQLite: the database write lock, waiting up to the busy timeout;
    PostgreSQL: the row lock), then the row is refreshed so that the
    "same version" and rollback checks see what the other run committed.
    False if the subscription no longer exists.
    """
    statement = (
        update(Subscription)
        .where(Subscription.id == sub.id)
        .values(updated=Subscription.updated)
        .execution_options(synchronize_session=False)
    )
    if getattr(session.execute(statement), "rowcount", 0) == 0:
        return False
    session.refresh(sub)
    return True


def mark_expired_if_due(session: Session, sub: Subscription, now: datetime) -> None:
    """Mark the stored latest list expired once its own expiry date has passed."""
    latest = latest_list_instance(session, sub)
    if latest is not None and latest.expired is None and latest.expires < now:
        log.info(
            "Image list '%s' has expired on: '%s'", sub.identifier, format_time(latest.expires)
        )
        latest.expired = now
        session.flush()


def find_authorisation(
    session: Session, sub: Subscription, verified: VerifiedList
) -> SubscriptionAuth | None:
    """The authorised link between this subscription and the list's signer, if any."""
    rows = session.execute(
        select(SubscriptionAuth, EndorserPrincipal)
        .join(Endorser, SubscriptionAuth.endorser_id == Endorser.id)
        .join(EndorserPrincipal, EndorserPrincipal.endorser_id == Endorser.id)
        .where(SubscriptionAuth.subscription_id == sub.id)
        .where(SubscriptionAuth.authorised.is_(True))
        .order_by(SubscriptionAuth.id)
    )
    subject = verified.message.signer_subject
    issuer = verified.message.signer_issuer
    for auth, principal in rows:
        if dn_equal(principal.hv_dn, subject) and dn_equal(principal.hv_ca, issuer):
            return auth
    return None


def newest_instance(session: Session, sub: Subscription) -> ImageListInstance | None:
    """The most recently imported list instance of ``sub``, whatever the latest pointer says."""
    return session.scalars(
        select(ImageListInstance)
        .join(SubscriptionAuth, ImageListInstance.sub_auth_id == SubscriptionAuth.id)
        .where(SubscriptionAuth.subscription_id == sub.id)
        .order_by(ImageListInstance.imported.desc(), ImageListInstance.id.desc())
        .limit(1)
    ).first()


def refuse_rollback(session: Session, sub: Subscription, new_version: str) -> None:
    """Refuse a version lower than the newest stored one (17); warn about an unchanged number."""
    newest = newest_instance(session, sub)
    newest_version = None if newest is None else newest.version
    if check_version(sub.identifier, newest_version, new_version):
        log.warning(
            'Downloaded version "%s" version "%s" has the same version number than the old '
            'version "%s".',
            sub.identifier,
            new_version,
            newest_version,
        )


def import_list(
    session: Session,
    sub: Subscription,
    auth: SubscriptionAuth,
    verified: VerifiedList,
    now: datetime,
    on_new_image: NewImageHook | None,
) -> int:
    """Store a verified list version and its images, then point the subscription at it."""
    image_list = verified.image_list
    instance = ImageListInstance(
        data=verified.data,
        data_hash=verified.data_hash,
        expired=None,
        sub_auth=auth,
        imported=now,
        created=image_list.created,
        expires=image_list.expires,
        version=image_list.version,
    )
    session.add(instance)
    session.flush()

    rc = _import_images(session, sub, instance, image_list, on_new_image)

    _follow_list_uri(session, sub, image_list)
    sub.updated = now
    sub.imagelist_latest = instance.id
    session.commit()
    return rc


def _import_images(
    session: Session,
    sub: Subscription,
    instance: ImageListInstance,
    image_list: ImageList,
    on_new_image: NewImageHook | None,
) -> int:
    """Store the list's images as rows of ``instance``; return 0 or 32 (a refused image).

    Rows are written with bulk INSERT/UPDATE statements, not one ORM object per
    image: a list of 100,000 images imports in seconds instead of minutes.
    """
    identifiers = [image.identifier for image in image_list.images]
    known = definitions_by_identifier(session, identifiers)
    rc = 0
    seen: set[str] = set()
    accepted: list[Image] = []
    new_definitions: list[dict[str, Any]] = []
    for image in image_list.images:
        if image.identifier in seen:
            log.warning(
                "ImageId '%s' appears more than once in list '%s'; only the first is used.",
                image.identifier,
                sub.identifier,
            )
            continue
        seen.add(image.identifier)
        owner = known.get(image.identifier)
        if owner is not None and owner[1] != sub.id:
            log.warning(
                "ImageId '%s' belongs to another subscription; refused for subscription '%s'",
                image.identifier,
                sub.identifier,
            )
            rc = int(Code.IMAGE_REFUSED)
            continue
        if owner is None:
            if on_new_image is not None:
                on_new_image(dict(image.metadata))
            if not sub.update_mode & UpdateMode.ADD:
                # WARNING, not INFO: cron sees exit 32 and must see why (docs/troubleshooting.md).
                log.warning(
                    "ImageId '%s' refused by subscription '%s' (new image; update mode %s: "
                    "accept new images with 'vmcatcher_subscribe -u %s "
                    "--imagelist-newimage-accept')",
                    image.identifier,
                    sub.identifier,
                    sub.update_mode,
                    sub.identifier,
                )
                rc = int(Code.IMAGE_REFUSED)
                continue
            new_definitions.append(
                {
                    "identifier": image.identifier,
                    "cache": int(
                        Caching.ON if sub.update_mode & UpdateMode.SUBSCRIBE else Caching.OFF
                    ),
                    "latest": 0,
                    "subscription": sub.id,
                }
            )
        accepted.append(image)
    _insert_rows(session, sub, instance, accepted, new_definitions)
    return rc


def _insert_rows(
    session: Session,
    sub: Subscription,
    instance: ImageListInstance,
    accepted: list[Image],
    new_definitions: list[dict[str, Any]],
) -> None:
    """Plain executemany statements on the tables (keys are column names): no per-row
    ORM bookkeeping, and no RETURNING, which not every driver batches."""
    definitions = cast(Table, ImageDefinition.__table__)
    instances = cast(Table, ImageInstance.__table__)
    if new_definitions:
        session.execute(insert(definitions), new_definitions)
    if not accepted:
        return
    mine = select(ImageDefinition.identifier, ImageDefinition.id).where(
        ImageDefinition.subscription_id == sub.id
    )
    owned = {identifier: definition for identifier, definition in session.execute(mine)}
    rows = [
        {
            **_instance_values(image),
            "fkIdentifier": owned[image.identifier],
            "fkimagelistinstance": instance.id,
        }
        for image in accepted
    ]
    session.execute(insert(instances), rows)
    created = session.execute(
        select(ImageInstance.id, ImageInstance.definition_id).where(
            ImageInstance.list_instance_id == instance.id
        )
    )
    latest = [{"row_id": definition, "newest": row} for row, definition in created]
    session.execute(
        update(definitions)
        .where(definitions.c.id == bindparam("row_id"))
        .values(latest=bindparam("newest")),
        latest,
    )
    session.expire(sub, ["image_definitions"])


def _instance_values(image: Image) -> dict[str, Any]:
    return {
        "description": image.description,
        "hypervisor": image.hypervisor,
        "sha512": image.sha512,
        "uri": image.uri,
        "os": str(image.os),
        "osversion": str(image.osversion),
        "arch": image.arch,
        "version": image.version,
        "size": image.size,
        "title": image.title,
        "comments": image.comments,
    }


def _follow_list_uri(session: Session, sub: Subscription, image_list: ImageList) -> None:
    """Let a signed list move its subscription, but only within http/https."""
    try:
        new_uri = normalise_anonymous(image_list.uri)
    except InvalidURIError as error:
        log.warning("Subscription '%s' keeps URI '%s'; the list names %s", sub.identifier,
                    sub.uri, error)  # fmt: skip
        return
    if new_uri == sub.uri:
        return
    old_scheme, new_scheme = scheme_of(sub.uri), scheme_of(new_uri)
    allowed = old_scheme == new_scheme or (old_scheme, new_scheme) == ("http", "https")
    taken = session.scalar(
        select(Subscription.id).where(Subscription.uri == new_uri, Subscription.id != sub.id)
    )
    if old_scheme == "file" or not allowed or new_scheme not in ("http", "https") or taken:
        log.warning(
            "Subscription '%s' keeps URI '%s'; the list names '%s'",
            sub.identifier,
            sub.uri,
            new_uri,
        )
        return
    log.warning("Subscription '%s' moves from '%s' to '%s'", sub.identifier, sub.uri, new_uri)
    sub.uri = new_uri


def force_reimport(session: Session, sub: Subscription) -> None:
    """Make the next update import the current list again, even if unchanged.

    The original reset ``imagelist_latest`` for ``--image-accept/--image-refuse``,
    which made every image of the subscription unavailable (and expired from the
    cache) until the next update; marking the stored hash does not.
    """
    latest = latest_list_instance(session, sub)
    if latest is not None:
        latest.data_hash = RELOAD_CACHE
