"""From downloaded bytes to a verified, decoded image list, in the original's check order.

Both ``vmcatcher_subscribe -s`` and ``-U`` (and the ``message`` output format)
need the same pipeline: S/MIME verification against the CA directory (11),
JSON (37), image list structure (38), endorser DN and CA against the signer
(12), the list's ``hv:uri`` (a warning only), its identifier (31), and its
dates (33 future, 34 expired) — docs/trust.md. Each failure is a typed error
carrying its code; this module only sequences the pure checks.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from vmcatcher.imagelist import ImageList, decode_image_list
from vmcatcher.imagelist.checks import check_update
from vmcatcher.trust import CrlPolicy, TrustStore, VerifiedMessage, verify_message
from vmcatcher.uri import mask_password

log = logging.getLogger("vmcatcher.verification")


@dataclass(frozen=True)
class VerifiedList:
    """A signed list that passed every check, with its raw bytes and their sha512."""

    data: bytes
    data_hash: str
    message: VerifiedMessage
    image_list: ImageList


def message_hash(data: bytes) -> str:
    """The ``data_hash`` of a stored list: sha512 hex of the bytes as downloaded."""
    return hashlib.sha512(data).hexdigest()


def verify_list(
    data: bytes,
    store: TrustStore,
    *,
    crl_policy: CrlPolicy,
    now: datetime,
    expected_identifier: str | None = None,
    expected_uri: str | None = None,
) -> VerifiedList:
    """Verify and decode ``data``; raise the first failing check's typed error."""
    message = verify_message(data, store, crl_policy=crl_policy, now=now)
    for warning in message.crl_warnings:
        log.warning("%s", warning)
    image_list = decode_image_list(message.payload)
    log_decoder_findings(image_list)
    uri_ok = check_update(
        image_list,
        message,
        expected_identifier=expected_identifier,
        expected_uri=expected_uri,
        now=now,
    )
    if not uri_ok:
        log.warning("list hv:uri does not match subscription uri for '%s'", expected_identifier)
        log.info("Expected URI '%s'", expected_uri)
        log.info("Downloaded URI '%s'", mask_password(image_list.uri))
    return VerifiedList(data, message_hash(data), message, image_list)


def log_decoder_findings(image_list: ImageList) -> None:
    """One WARNING for the deprecated flat form and one per image the decoder dropped."""
    if image_list.legacy_form:
        log.warning(
            "image list %r: parsing deprecated hepiximagelist format", image_list.identifier
        )
    for item in image_list.dropped:
        log.warning("image list %r: dropping image %s: %s", image_list.identifier, item.label,
                    item.reason)  # fmt: skip


def verified_payload(data: bytes, store: TrustStore, crl_policy: CrlPolicy) -> bytes:
    """The payload of a stored signed list, verified again (the ``message`` output format)."""
    message = verify_message(data, store, crl_policy=crl_policy)
    for warning in message.crl_warnings:
        log.warning("%s", warning)
    return message.payload
