"""``vmcatcher_subscribe -s URL``: create a subscription from a signed list.

Differences from the original, each a fixed bug (docs/compatibility.md):

* a failed download fails the subscription (the original reported success);
* the credentials and trust anchor given on the command line are used for
  the first download and stored, and new subscriptions default to the
  ``browser`` trust anchor;
* the subscription row is built from an explicit whitelist of list fields:
  a list cannot set credentials, trust anchor or update mode;
* the list's dates are checked (an expired or future list cannot be
  subscribed to) and the endorser is found through the principal's foreign key;
* ``--imagelist-newimage-*`` applies to the new subscription whatever URL was
  typed (a mirror or a ``file://`` copy);
* a duplicate identifier is a clear error, not a crash, and the whole
  subscription is written in one transaction or not at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    Subscription,
    SubscriptionAuth,
)
from vmcatcher.errors import EndorserMismatchError, UsageError, VmcatcherError
from vmcatcher.fetch import DEFAULT_TIMEOUT
from vmcatcher.services.queries import definitions_by_identifier
from vmcatcher.services.update import force_reimport
from vmcatcher.services.verification import VerifiedList, verify_list
from vmcatcher.timeutil import utcnow
from vmcatcher.trust import CrlPolicy, TrustStore, dn_equal
from vmcatcher.uri import mask_password, normalise_anonymous, split_credentials
from vmcatcher.vocabulary import Caching, TrustAnchor, UpdateMode

log = logging.getLogger("vmcatcher.subscribe")


@dataclass
class SubscribeOptions:
    store: TrustStore
    crl_policy: CrlPolicy
    ca_dir: str | Path | None
    auto_endorse: bool = False
    username: str | None = None  # None: not given; "" : given as cleared
    password: str | None = None
    trust_anchor: TrustAnchor | None = None
    update_mode: int | None = None
    fetch_timeout: tuple[float, float] = DEFAULT_TIMEOUT  # (connect, read) seconds


def subscribe_all(
    session_factory: Callable[[], Session], urls: Sequence[str], options: SubscribeOptions
) -> None:
    """``vmcatcher_subscribe -s``: each URL in turn; the first failure stops the command.

    The reason is logged, then the command fails with the original's message.
    """
    for url in urls:
        with session_factory() as session:
            try:
                subscribe(session, url, options)
            except VmcatcherError as error:
                log.error("%s", error)
                raise VmcatcherError(f"Failed to subscribe to '{mask_password(url)}'") from None


def subscribe(session: Session, url: str, options: SubscribeOptions) -> Subscription:
    """Download, verify and subscribe to the list at ``url``; all or nothing."""
    from vmcatcher.fetch import fetch_list

    plain_url, url_user, url_password = split_credentials(url)
    username = options.username if options.username is not None else url_user
    password = options.password if options.password is not None else url_password
    trust_anchor = options.trust_anchor if options.trust_anchor is not None else TrustAnchor.BROWSER
    data = fetch_list(
        plain_url,
        username=username or None,
        password=password or None,
        trust_anchor=trust_anchor,
        ca_dir=options.ca_dir,
        timeout=options.fetch_timeout,
    )
    verified = verify_list(data, options.store, crl_policy=options.crl_policy, now=utcnow())
    try:
        sub = _store_subscription(session, verified, options, username, password, trust_anchor)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return sub


def _store_subscription(
    session: Session,
    verified: VerifiedList,
    options: SubscribeOptions,
    username: str | None,
    password: str | None,
    trust_anchor: TrustAnchor,
) -> Subscription:
    image_list = verified.image_list
    endorser = _find_or_create_endorser(
        session, verified.message.signer_subject, verified.message.signer_issuer, options
    )
    uri = normalise_anonymous(image_list.uri)
    existing = session.scalars(select(Subscription).where(Subscription.uri == uri)).first()
    if existing is not None:
        log.info("Already subscribed to '%s' as '%s'.", uri, existing.identifier)
        _apply_to_existing(session, existing, options, username, password)
        return existing
    clash = session.scalars(
        select(Subscription).where(Subscription.identifier == image_list.identifier)
    ).first()
    if clash is not None:
        raise UsageError(
            f"Subscription '{image_list.identifier}' already exists with URI '{clash.uri}'; "
            f"the list now names '{uri}'"
        )
    update_mode = options.update_mode or 0
    sub = Subscription(
        identifier=image_list.identifier,
        description=image_list.description,
        uri=uri,
        authorised=True,
        imagelist_latest=None,
        trust_anchor=int(trust_anchor),
        username=username,
        password=password,
        update_mode=update_mode,
    )
    session.add(sub)
    session.add(SubscriptionAuth(subscription=sub, endorser=endorser, authorised=True))
    cache = int(Caching.ON if update_mode & UpdateMode.SUBSCRIBE else Caching.OFF)
    identifiers = sorted({image.identifier for image in image_list.images})
    owned = set(definitions_by_identifier(session, identifiers))
    session.flush()  # the subscription's id, for the bulk insert below
    seen: set[str] = set()
    rows = []
    for image in image_list.images:
        if image.identifier in seen:
            continue
        seen.add(image.identifier)
        if image.identifier in owned:
            log.warning(
                "ImageId '%s' already belongs to another subscription; not added to '%s'.",
                image.identifier,
                sub.identifier,
            )
            continue
        rows.append(
            {"identifier": image.identifier, "cache": cache, "latest": 0, "subscription": sub.id}
        )
    if rows:  # one executemany on the table: a list of 100,000 images subscribes in seconds
        session.execute(insert(cast(Table, ImageDefinition.__table__)), rows)
        session.expire(sub, ["image_definitions"])
    return sub


def _apply_to_existing(
    session: Session,
    sub: Subscription,
    options: SubscribeOptions,
    username: str | None,
    password: str | None,
) -> None:
    """``-s`` again on a subscribed URL applies every option given, in one transaction.

    The original applied only the new-image mode and dropped the others without a word
    (docs/commands/vmcatcher_subscribe.md). What changed is logged at WARNING: the
    command changed an existing subscription.
    """
    changed = []
    if options.trust_anchor is not None and sub.trust_anchor != int(options.trust_anchor):
        sub.trust_anchor = int(options.trust_anchor)
        changed.append(f"trust anchor '{options.trust_anchor.name.lower()}'")
    if username is not None and sub.username != username:
        sub.username = username
        changed.append("user name")
    if password is not None and sub.password != password:
        sub.password = password
        changed.append("password")
    if options.update_mode is not None and sub.update_mode != options.update_mode:
        changed.append(f"new-image mode {options.update_mode}")
    if options.update_mode is not None:
        _set_update_mode(session, sub, options.update_mode)
    if changed:
        log.warning("Subscription '%s' already existed; applied %s.", sub.identifier,
                    ", ".join(changed))  # fmt: skip
    session.flush()


def _set_update_mode(session: Session, sub: Subscription, mode: int) -> None:
    """``--imagelist-newimage-*`` with ``-s`` on a subscription that already exists.

    Applied as for a new one (docs/commands/vmcatcher_subscribe.md): the mode is stored, the next
    update re-imports the current list, and mode 3 subscribes every known image.
    """
    sub.update_mode = mode
    force_reimport(session, sub)
    if mode & UpdateMode.SUBSCRIBE:
        for definition in sub.image_definitions:
            definition.cache = 1
    session.flush()


def _find_or_create_endorser(
    session: Session, subject: str, issuer: str, options: SubscribeOptions
) -> Endorser:
    for principal in session.scalars(select(EndorserPrincipal).order_by(EndorserPrincipal.id)):
        if not dn_equal(principal.hv_dn, subject):
            continue
        if dn_equal(principal.hv_ca, issuer) and principal.endorser is not None:
            return principal.endorser
        raise EndorserMismatchError(
            f"Endorser '{subject}' is registered with issuer '{principal.hv_ca}', "
            f"but the list was signed under issuer '{issuer}'."
        )
    if not options.auto_endorse:
        # The hint is part of the error line: cron mail shows ERROR, not INFO.
        raise UsageError(
            f"Endorser '{subject}':'{issuer}' was not found in database. Use '--auto-endorse'"
            " (-e) to add it, or create it with 'vmcatcher_endorser -C'."
        )
    endorser = Endorser(identifier=str(uuid.uuid4()))
    endorser.principals.append(EndorserPrincipal(hv_dn=subject, hv_ca=issuer))
    session.add(endorser)
    session.flush()
    log.warning("Endorser '%s':'%s' added to database.", subject, issuer)
    return endorser
