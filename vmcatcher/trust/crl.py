"""How much a CA's certificate revocation list is allowed to be missing: the CRL policy.

Why: revocation only works if the CRLs in the CA directory are current.
fetch-crl sometimes fails and leaves them stale, which makes sites want a way
out; silently accepting is how revocation bypasses happen. So the default is
*strict*, and the relaxations are explicit, narrow and loud:

* ``strict`` (default): every CA in the chain needs a CRL that is current and
  whose signature verifies with that CA's key; a listed serial fails.
* ``relaxed``: a *missing*, *expired* or *not yet valid* CRL is accepted with
  a WARNING on logger ``vmcatcher.trust`` naming the CA. A revoked serial
  (even in an expired CRL) or a CRL with a bad signature still fails.
* ``off``: CRLs are ignored entirely.

This module only classifies the CRL files of one CA; :mod:`vmcatcher.trust.smime`
applies the policy. M2Crypto objects are passed in, never imported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from vmcatcher.errors import UsageError

__all__ = ["CRL_POLICY_ENV", "CrlPolicy", "CrlState", "CrlStatus"]

CRL_POLICY_ENV = "VMCATCHER_CRL_POLICY"


class CrlPolicy(str, enum.Enum):
    """``--crl-policy {strict,relaxed,off}`` / ``VMCATCHER_CRL_POLICY``."""

    STRICT = "strict"
    RELAXED = "relaxed"
    OFF = "off"

    @classmethod
    def parse(cls, text: str) -> CrlPolicy:
        """``"strict"``/``"relaxed"``/``"off"`` (any case, surrounding blanks ignored).

        Raises :class:`~vmcatcher.errors.UsageError` for anything else.
        """
        value = text.strip().lower() if isinstance(text, str) else ""
        for member in cls:
            if member.value == value:
                return member
        choices = ", ".join(m.value for m in cls)
        raise UsageError(f"invalid CRL policy {text!r}: choose one of {choices}")

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    def __str__(self) -> str:
        return self.value


class CrlState(enum.Enum):
    """What the CA directory offers as CRL for one CA."""

    CURRENT = "current"
    MISSING = "missing"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    FORGED = "forged"


@dataclass(frozen=True)
class CrlStatus:
    """The verdict for one CA: its state and a human explanation naming files/dates."""

    state: CrlState
    detail: str


def classify(
    candidates: list[tuple[str, datetime | None, datetime | None, bool | None]],
    now: datetime,
    expected_name: str,
    crl_name: str = "<hash>.r0",
) -> CrlStatus:
    """Classify the CRL files of one CA.

    ``candidates``: ``(path, last_update, next_update, signature_ok)`` per file;
    ``signature_ok`` is ``None`` for an unreadable file, ``False`` for a CRL with
    this CA's name that no certificate of that name signed. Datetimes are aware UTC.
    """
    forged = [path for path, _, _, ok in candidates if ok is False]
    if forged:
        return CrlStatus(
            CrlState.FORGED,
            f"CRL file {', '.join(forged)} names '{expected_name}' as issuer but its "
            "signature does not verify with that CA's key (forged or corrupt CRL)",
        )
    good = [c for c in candidates if c[3] is True]
    unreadable = [path for path, _, _, ok in candidates if ok is None]
    if not good:
        if unreadable:
            detail = f"its CRL file {', '.join(unreadable)} cannot be read"
        else:
            detail = f"no CRL file ({crl_name}) was found"
        return CrlStatus(CrlState.MISSING, detail)
    # Several CRLs: judge the freshest one.
    path, last_update, next_update, _ = max(
        good, key=lambda c: c[1] or datetime.min.replace(tzinfo=now.tzinfo)
    )
    if last_update is not None and now < last_update:
        return CrlStatus(
            CrlState.NOT_YET_VALID,
            f"its CRL {path} is not valid before {last_update:%Y-%m-%dT%H:%M:%SZ}",
        )
    if next_update is not None and now >= next_update:
        return CrlStatus(
            CrlState.EXPIRED, f"its CRL {path} expired on {next_update:%Y-%m-%dT%H:%M:%SZ}"
        )
    return CrlStatus(CrlState.CURRENT, f"CRL {path} is current")
