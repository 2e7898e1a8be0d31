"""The checks a verified, decoded list must pass before anything is stored (docs/trust.md).

Why separate functions: subscribe (``-s``) and update (``-U``) run different
subsets (docs/commands/vmcatcher_subscribe.md), and each rule deserves its own
test. They raise the typed errors carrying the original's result codes and
messages; :func:`check_update` runs the update subset in the original's order,
where the first failure wins:

1. ``hv:dn`` equals the signer's subject, then ``hv:ca`` its issuer (12) --
   compared with :func:`vmcatcher.trust.dn_equal`, robust to OpenSSL 3
   escaping. (The original crashed on the DN branch: docs/compatibility.md.)
2. ``hv:uri`` differs from the subscription's URI: a warning only, so
   :func:`uri_matches` returns a bool and the caller logs.
3. ``dc:identifier`` equals the subscription's identifier (31).
4. ``dc:date:created`` not in the future (33), ``dc:date:expires`` not passed (34).

:func:`check_version` (rollback, 17) runs later, once the update knows the
newest version it stores.
"""

from __future__ import annotations

from datetime import datetime

from vmcatcher.errors import (
    CreatedInFutureError,
    EndorserMismatchError,
    IdentifierMismatchError,
    ListExpiredError,
    LowerVersionError,
)
from vmcatcher.imagelist.model import ImageList
from vmcatcher.timeutil import format_time, utcnow
from vmcatcher.trust.dn import dn_equal
from vmcatcher.trust.smime import VerifiedMessage
from vmcatcher.versions import compare_versions

__all__ = [
    "check_dates",
    "check_endorser",
    "check_identifier",
    "check_update",
    "check_version",
    "uri_matches",
]


def check_endorser(image_list: ImageList, verified: VerifiedMessage) -> None:
    """``hv:dn``/``hv:ca`` must name the certificate that signed the list (code 12).

    As in the original, the list's own values are the *expected* ones and the
    signer's subject and issuer the *downloaded* ones (docs/troubleshooting.md).
    """
    endorser = image_list.endorser
    if not dn_equal(endorser.dn, verified.signer_subject):
        raise EndorserMismatchError(
            f"Endorser DN does not match signature for '{image_list.identifier}': "
            f"Expected DN '{endorser.dn}', Downloaded DN '{verified.signer_subject}'"
        )
    if not dn_equal(endorser.ca, verified.signer_issuer):
        raise EndorserMismatchError(
            f"list hv:ca does not match signature for '{image_list.identifier}': "
            f"Expected CA '{endorser.ca}', Downloaded CA '{verified.signer_issuer}'"
        )


def uri_matches(image_list: ImageList, expected_uri: str) -> bool:
    """Whether the list's ``hv:uri`` is the subscription's URI (credentials ignored).

    A mismatch is only a WARNING in the original, as here; the caller logs it.
    """
    if image_list.uri == expected_uri:
        return True
    from vmcatcher.errors import InvalidURIError
    from vmcatcher.uri import normalise_anonymous

    try:
        return normalise_anonymous(image_list.uri) == normalise_anonymous(expected_uri)
    except InvalidURIError:  # a list's hv:uri that is not even a URL does not match
        return False


def check_identifier(image_list: ImageList, expected: str) -> None:
    """The list must be the subscribed one (code 31)."""
    if image_list.identifier != expected:
        raise IdentifierMismatchError(
            f"image list identifier does not match the subscription: "
            f"Expected identifier '{expected}', Downloaded identifier '{image_list.identifier}'"
        )


def check_dates(image_list: ImageList, now: datetime | None = None) -> None:
    """Refuse a list created in the future (33) or already expired (34); ``now`` naive UTC."""
    moment = utcnow() if now is None else now
    if moment.tzinfo is not None:
        from datetime import timezone

        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    if moment < image_list.created:
        raise CreatedInFutureError(
            f"Image list '{image_list.identifier}' has an invalid creation date as in the "
            f"future. (created {format_time(image_list.created)}, now {format_time(moment)})"
        )
    if moment > image_list.expires:
        raise ListExpiredError(
            f"Downloaded image list '{image_list.identifier}' has expired. "
            f"(expired {format_time(image_list.expires)}, now {format_time(moment)})"
        )


def check_update(
    image_list: ImageList,
    verified: VerifiedMessage,
    *,
    expected_identifier: str | None = None,
    expected_uri: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Run the update-time checks in the original's order; first failure raises.

    Returns whether ``hv:uri`` matches ``expected_uri`` (``True`` when not given),
    so the caller can log the original's WARNING.
    """
    check_endorser(image_list, verified)
    uri_ok = True if expected_uri is None else uri_matches(image_list, expected_uri)
    if expected_identifier is not None:
        check_identifier(image_list, expected_identifier)
    check_dates(image_list, now)
    return uri_ok


def check_version(identifier: str, newest: str | None, downloaded: str) -> bool:
    """Refuse a rollback: ``downloaded`` lower than the ``newest`` stored version (17).

    Returns True when both carry the same version number (the caller warns: a
    changed list should have a new number), False otherwise.
    """
    if newest is None:
        return False
    order = compare_versions(newest, downloaded)
    if order < 0:
        raise LowerVersionError(
            f'Downloaded version "{identifier}" version "{downloaded}" has lower version '
            f'number than the old version "{newest}".'
        )
    return order == 0
