"""Endorsers: the people allowed to sign lists, their x.509 credentials, and their links.

An endorser is a stable identifier (any string; the README uses a person's
name) owning one or more principals, each a (subject DN, issuer DN) pair. A
subject DN belongs to one endorser only, whatever its CA. A link
(``subscriptionAuth``) says which endorser may sign which subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmcatcher.db import cascade
from vmcatcher.db.models import Endorser, EndorserPrincipal, Subscription, SubscriptionAuth
from vmcatcher.errors import EndorserCreateError, UsageError
from vmcatcher.limits import DN_LIMIT, too_long
from vmcatcher.trust.dn import slash_form

log = logging.getLogger("vmcatcher.endorsers")


@dataclass(frozen=True)
class Link:
    endorser: str
    subscription: str
    authorised: bool


def find_endorser(session: Session, identifier: str) -> Endorser | None:
    return session.scalars(select(Endorser).where(Endorser.identifier == identifier)).first()


def find_subscription(session: Session, identifier: str) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(Subscription.identifier == identifier)
    ).first()


def pair_credentials(subjects: Sequence[str], issuers: Sequence[str]) -> list[tuple[str, str]]:
    """Pair subjects with issuers by position; one issuer may serve every subject."""
    if len(subjects) > len(issuers):
        if len(issuers) == 1:
            return [(subject, issuers[0]) for subject in subjects]
        if issuers:
            raise UsageError("Unsure how to add subjects credentials without issuer credentials.")
        raise UsageError("Cant add subjects credentials without issuer credentials.")
    if len(issuers) > len(subjects):
        raise UsageError("Cant add issuer credentials, without a subject.")
    return list(zip(subjects, issuers))


def create_endorser(
    session: Session, identifier: str, subjects: Sequence[str], issuers: Sequence[str]
) -> None:
    """Create (or extend) endorser ``identifier`` with the given credentials, all or nothing.

    A subject DN already held by any endorser fails the whole call with exit
    code 12 and leaves the database as it was. (The original left a newly
    created endorser behind only when it had just created it, and silently
    returned success when extending an existing one.)
    """
    for text in (identifier, *subjects, *issuers):
        if too_long(text, DN_LIMIT):
            raise UsageError(f"'{text[:40]}...' is longer than {DN_LIMIT} characters.")
    if not identifier.strip():
        raise UsageError("Empty endorser identifier (-e): give the endorser a name.")
    subjects = [slash_dn(text, "subject (--dn)") for text in subjects]
    issuers = [slash_dn(text, "issuer (-I)") for text in issuers]
    pairs = pair_credentials(subjects, issuers)
    endorser = find_endorser(session, identifier)
    if endorser is None:
        endorser = Endorser(identifier=identifier)
        session.add(endorser)
    for subject, issuer in pairs:
        taken = session.scalars(
            select(EndorserPrincipal).where(EndorserPrincipal.hv_dn == subject)
        ).first()
        if taken is not None:
            session.rollback()
            holder = taken.endorser.identifier if taken.endorser is not None else "(none)"
            raise EndorserCreateError(
                f"Database integrity error while adding '{subject}' credentials to  "
                f"'{identifier}'. (the subject is already held by endorser '{holder}')"
            )
        endorser.principals.append(EndorserPrincipal(hv_dn=subject, hv_ca=issuer))
        session.flush()
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise EndorserCreateError(
            f"Database integrity error while adding credentials to  '{identifier}'."
        ) from None


def delete_endorsers(session: Session, identifiers: Sequence[str]) -> None:
    """Delete endorsers with everything imported under their signature."""
    for identifier in identifiers:
        endorser = find_endorser(session, identifier)
        if endorser is None:
            log.warning("Failed to find endorser '%s'.", identifier)
            continue
        log.info("Deleting endorser '%s'.", identifier)
        cascade.delete_endorser(session, endorser)
        session.commit()


def _link_rows(session: Session, endorser: Endorser, sub: Subscription) -> list[SubscriptionAuth]:
    return list(
        session.scalars(
            select(SubscriptionAuth).where(
                SubscriptionAuth.endorser_id == endorser.id,
                SubscriptionAuth.subscription_id == sub.id,
            )
        )
    )


def link(session: Session, endorsers: Sequence[str], subscriptions: Sequence[str]) -> None:
    """Authorise each endorser to sign the subscription at the same position."""
    for endorser_id, sub_id in zip(endorsers, subscriptions):
        endorser = find_endorser(session, endorser_id)
        sub = find_subscription(session, sub_id)
        if endorser is None:
            log.warning("endorser not available.")
            continue
        if sub is None:
            log.warning("subscription not available.")
            continue
        if _link_rows(session, endorser, sub):
            log.warning("endorser and subscription already linked.")
            continue
        session.add(SubscriptionAuth(subscription=sub, endorser=endorser, authorised=True))
        session.commit()


def unlink(session: Session, endorsers: Sequence[str], subscriptions: Sequence[str]) -> None:
    """Withdraw authorisations; list versions imported under them go too."""
    for endorser_id, sub_id in zip(endorsers, subscriptions):
        endorser = find_endorser(session, endorser_id)
        sub = find_subscription(session, sub_id)
        rows = _link_rows(session, endorser, sub) if endorser and sub else []
        if not rows:
            log.warning("endorser and subscription are not linked.")
            continue
        for row in rows:
            cascade.delete_subscription_auth(session, row)
        session.commit()


def principals(session: Session) -> list[tuple[Endorser, EndorserPrincipal]]:
    """Every (endorser, principal) pair, in creation order."""
    return list(
        session.execute(
            select(Endorser, EndorserPrincipal)
            .join(EndorserPrincipal, EndorserPrincipal.endorser_id == Endorser.id)
            .order_by(Endorser.id, EndorserPrincipal.id)
        ).tuples()
    )


def links(session: Session) -> list[Link]:
    rows = session.execute(
        select(Endorser.identifier, Subscription.identifier, SubscriptionAuth.authorised)
        .join(SubscriptionAuth, SubscriptionAuth.endorser_id == Endorser.id)
        .join(Subscription, SubscriptionAuth.subscription_id == Subscription.id)
        .order_by(SubscriptionAuth.id)
    )
    return [Link(e, s, bool(a)) for e, s, a in rows]


def linked_subscriptions(session: Session, endorser: Endorser) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .join(SubscriptionAuth, SubscriptionAuth.subscription_id == Subscription.id)
            .where(SubscriptionAuth.endorser_id == endorser.id)
            .order_by(SubscriptionAuth.id)
        )
    )


def checked_credentials(
    identifier: str, subjects: Sequence[str], issuers: Sequence[str]
) -> tuple[list[str], list[str]]:
    """A new endorser's subject and issuer DNs in the slash form, or a UsageError.

    Run before the database is opened (and perhaps created): what could never
    match a signature, or not fit its column, is refused first.
    """
    for text in (identifier, *subjects, *issuers):
        if too_long(text, DN_LIMIT):
            raise UsageError(f"'{text[:40]}...' is longer than {DN_LIMIT} characters.")
    if not identifier.strip():
        raise UsageError("Empty endorser identifier (-e): give the endorser a name.")
    return (
        [slash_dn(text, "subject (--dn)") for text in subjects],
        [slash_dn(text, "issuer (-I)") for text in issuers],
    )


def slash_dn(text: str, what: str) -> str:
    """A DN as stored and compared: the slash form (docs/commands/vmcatcher_endorser.md).

    OpenSSL 3's default ``DC = org, CN = Name`` is converted; anything else that is
    not a slash-form DN is refused, so an endorser can never hold a DN that no list
    signature would match.
    """
    converted = slash_form(text)
    if converted is None:
        shown = text if text.strip() else "(empty)"
        raise UsageError(
            f"Invalid {what} DN '{shown}': give it as '/DC=org/CN=Name' "
            "(openssl x509 -noout -subject -nameopt compat) or as OpenSSL 3 prints it "
            "('DC = org, CN = Name')"
        )
    if converted != text:
        log.info("Storing %s DN '%s' as '%s'.", what, text, converted)
    return converted
