"""Every failure vmcatcher can report, and the exit code each one maps to.

This is the single place where failures meet exit codes. Deep code raises one
of these typed errors with a one-line message naming the problem; the CLI layer
catches :class:`VmcatcherError`, logs ``str(error)`` once at ERROR and exits
with ``error.code``. Nothing else in the package chooses an exit code.

The numeric codes are the original vmcatcher's (docs/commands/*.md, "Exit codes"), kept so
that existing cron wrappers and monitoring keep working.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Process exit statuses and ``vmcatcher_subscribe`` result codes (docs/commands/*.md)."""

    OK = 0
    FAILURE = 1  # bad command line, missing file/dir, failed action
    USAGE = 2  # argparse usage error
    FETCH_FAILED = 10  # image list could not be downloaded (any transport failure)
    NOT_VERIFIED = 11  # S/MIME signature, chain, CRL or namespace check failed
    ENDORSER_MISMATCH = 12  # hv:dn / hv:ca differ from the signer; endorser create failed
    NOT_AUTHORISED = 13  # signer not linked to the subscription
    DB_INTEGRITY = 15  # storing the list instance violated a constraint
    LOWER_VERSION = 17  # rollback: hv:version lower than the newest stored
    IDENTIFIER_MISMATCH = 31  # list dc:identifier differs from the subscription's
    IMAGE_REFUSED = 32  # new or foreign image UUID refused by the update mode
    CREATED_IN_FUTURE = 33  # dc:date:created lies in the future
    EXPIRED = 34  # dc:date:expires has passed
    INVALID_JSON = 37  # signed payload is not JSON
    NOT_AN_IMAGE_LIST = 38  # JSON is not a valid image list
    IMAGE_DEFINITION_FAILED = 39  # creating the image definition failed


class VmcatcherError(Exception):
    """Base of every expected failure: a one-line message plus an exit code."""

    code: Code = Code.FAILURE

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(VmcatcherError):
    """The command line or environment asks for something invalid (exit 1)."""


class ConfigError(VmcatcherError):
    """A configured file or directory is missing or unusable (exit 1)."""


class DatabaseError(VmcatcherError):
    """The database cannot be opened, migrated or written (exit 1)."""


class EndorserCreateError(VmcatcherError):
    """Creating an endorser's credentials violated a constraint (exit 12)."""

    code = Code.ENDORSER_MISMATCH


# --- trust core -------------------------------------------------------------


class TrustError(VmcatcherError):
    """A signed message could not be verified against the trust store (code 11)."""

    code = Code.NOT_VERIFIED


class TrustStoreError(TrustError):
    """The CA directory is missing or holds nothing usable."""


class SignatureError(TrustError):
    """The S/MIME structure, signer count, signature or chain is wrong."""


class RevocationError(TrustError):
    """A certificate is revoked, or a CRL is missing, stale or forged."""


class NamespaceError(TrustError):
    """The signer's DN is outside what its CA may sign (namespaces/signing_policy)."""


# --- image list content ------------------------------------------------------


class ImageListError(VmcatcherError):
    """A verified payload is not an acceptable image list."""

    code = Code.NOT_AN_IMAGE_LIST


class InvalidJSONError(ImageListError):
    code = Code.INVALID_JSON


class NotAnImageListError(ImageListError):
    code = Code.NOT_AN_IMAGE_LIST


class EndorserMismatchError(ImageListError):
    code = Code.ENDORSER_MISMATCH


class IdentifierMismatchError(ImageListError):
    code = Code.IDENTIFIER_MISMATCH


class CreatedInFutureError(ImageListError):
    code = Code.CREATED_IN_FUTURE


class ListExpiredError(ImageListError):
    code = Code.EXPIRED


class LowerVersionError(ImageListError):
    """A downloaded list is older than the newest stored version (rollback, code 17)."""

    code = Code.LOWER_VERSION


class NotAuthorisedError(VmcatcherError):
    """The list's signer is not an authorised endorser of the subscription (code 13)."""

    code = Code.NOT_AUTHORISED


# --- transport ----------------------------------------------------------------


class FetchError(VmcatcherError):
    """Downloading an image list failed; the reason (HTTP status...) is in the text."""

    code = Code.FETCH_FAILED


class DownloadError(VmcatcherError):
    """Downloading an image file failed or produced the wrong bytes."""


class InvalidURIError(UsageError):
    """A URL cannot be parsed (bad port, bad IPv6 literal...); the text says why (exit 1)."""


# --- cache directories ---------------------------------------------------------


class CacheError(VmcatcherError):
    """A cache directory operation (move, sweep, index write) failed (exit 1)."""


class CacheFileMissingError(CacheError):
    """A cache index entry names a file that does not exist."""


class CacheLockedError(CacheError):
    """Another vmcatcher_cache holds the lock on the same cache directory (exit 1)."""


# --- Glance (vmcatcher_glance) ----------------------------------------------------------


class GlanceError(VmcatcherError):
    """The image service refused, failed or could not be reached (exit 1)."""


class ImageFormatError(VmcatcherError):
    """A cached image's format is refused or cannot be converted (exit 1)."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's text (its type name when it has none).

    Library errors (OpenSSL, drivers, JSON) can span several lines; a user
    gets one (see :func:`vmcatcher.cli.common.run_cli`).
    """
    inner = getattr(error, "orig", None) or error  # a driver's error wrapped by SQLAlchemy
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__
