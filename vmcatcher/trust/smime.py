"""Verify an S/MIME signed image list against a Grid CA directory, with M2Crypto.

Why this is more than one ``SMIME.verify`` call: OpenSSL checks the signature,
the chain, the validity windows, the S/MIME purpose and (if asked) CRLs, but
it knows nothing about Grid namespace policies, cannot tell a *missing* CRL
from a *forged* one, and reports everything as one opaque string. The
original (smimeX509validation) got most of this wrong (docs/compatibility.md).
The steps, in order, each failing with its own typed error:

1. parse the message: ``multipart/signed`` (``application/pkcs7-signature`` or
   ``application/x-pkcs7-signature``, any digest OpenSSL supports: sha1,
   sha256, ...) or opaque ``pkcs7-mime`` signed data -> :class:`SignatureError`;
2. exactly one signer, whose certificate is embedded -> :class:`SignatureError`;
3. build the chain signer -> ... -> self-signed root from the directory only
   (certificates embedded in the message are never used as CAs), each link
   checked by name and signature -> :class:`SignatureError`;
4. every certificate of the chain inside its validity window at ``now``, and
   allowed for S/MIME signing (key usage / extended key usage ``emailProtection``);
5. namespace policy: each certificate's subject allowed by its issuer's
   ``.namespaces``/``.signing_policy`` -> :class:`NamespaceError`;
6. CRLs of every CA of the chain per :class:`CrlPolicy` -> :class:`RevocationError`
   (relaxed acceptances are returned in :attr:`VerifiedMessage.crl_warnings`, one
   sentence naming each CA, for the caller to log);
7. ``PKCS7_verify`` against a store holding exactly that chain and the CRLs
   whose signatures were checked in step 6, with CRL checking of the whole
   chain: signature/digest, purpose, revocation -> typed error from OpenSSL's
   reason code.

The result, :class:`VerifiedMessage`, carries the payload exactly as signed
(text-mode S/MIME: CRLF line ends) and the signer's subject / issuer in the
OpenSSL oneline form that ``hv:dn`` / ``hv:ca`` are compared with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vmcatcher.errors import NamespaceError, RevocationError, SignatureError, first_line
from vmcatcher.trust.crl import CrlPolicy, CrlState, CrlStatus, classify
from vmcatcher.trust.store import CaCertificate, TrustStore

__all__ = ["VerifiedMessage", "extract_payload_unverified", "verify_message"]

MAX_CHAIN_LENGTH = 10

# M2Crypto keeps the store's verify callback in a process-global slot; serialise.
_M2_LOCK = threading.Lock()

# OpenSSL X509_V_ERR_* codes we translate (stable numbers, see x509_vfy.h).
_UNABLE_TO_GET_ISSUER_CERT = 2
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_CERT_REVOKED = 23
_INVALID_PURPOSE = 26
# "No usable CRL": missing (3), not yet valid / expired (11, 12), bad date fields (15, 16),
# no CRL issuer (33), CA key lacks cRLSign (35), unhandled critical extension (36), CRL
# scope (issuingDistributionPoint) not covering the certificate (44). Relaxed mode
# accepts these (with a warning); a bad CRL signature (5, 8) or a revocation (23) never.
_CRL_UNUSABLE_ERRORS = frozenset({3, 11, 12, 15, 16, 33, 35, 36, 44})
_REVOCATION_ERRORS = _CRL_UNUSABLE_ERRORS | {5, 8, _CERT_REVOKED}


@dataclass(frozen=True)
class VerifiedMessage:
    """A message whose signature, chain, namespace and revocation checks all passed."""

    payload: bytes  # exactly as signed (CRLF line ends for text-mode S/MIME)
    signer_subject: str  # OpenSSL oneline form, e.g. '/DC=org/DC=x/O=People/CN=Jane'
    signer_issuer: str  # the signer's immediate issuer, same form
    serial: str  # signer certificate serial number, decimal
    #: One sentence per CA accepted without a current CRL under the relaxed policy; the
    #: caller logs them as WARNINGs (this module decides, it does not log).
    crl_warnings: tuple[str, ...] = ()


def _as_bytes(data: bytes) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"signed message must be bytes, not {type(data).__name__}")
    return data


def _load(data: bytes) -> tuple[Any, Any]:
    """Parse S/MIME into (PKCS7, detached content BIO or None)."""
    from M2Crypto import BIO, SMIME

    if not data.strip():
        raise SignatureError("not an S/MIME signed message: the input is empty")
    try:
        p7, content = SMIME.smime_load_pkcs7_bio(BIO.MemoryBuffer(data))
    except Exception as error:  # M2Crypto/OpenSSL parse errors come in several types
        raise SignatureError(f"not an S/MIME signed message: {first_line(error)}") from None
    try:
        kind = p7.type()
    except Exception as error:
        raise SignatureError(f"not an S/MIME signed message: {first_line(error)}") from None
    if kind != SMIME.PKCS7_SIGNED:
        raise SignatureError("not an S/MIME signed message: the PKCS#7 content is not signed data")
    return p7, content


def _clear_openssl_errors() -> None:
    from M2Crypto import m2

    m2.err_clear_error()


def _signer(p7: Any) -> Any:
    """The single signer certificate, as an independent copy (not tied to ``p7``)."""
    from M2Crypto import X509

    try:
        signers = p7.get0_signers(X509.X509_Stack())
        count = len(signers)
        copies = [X509.load_cert_der_string(signers[i].as_der()) for i in range(count)]
    except Exception as error:
        raise SignatureError(
            f"cannot find the signer certificate in the message: {first_line(error)}"
        ) from None
    if count == 0:
        raise SignatureError("the message has no signer")
    if count > 1:
        raise SignatureError(f"the message has {count} signers; exactly one is required")
    return copies[0]


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_window(cert: Any, what: str, subject: str, now: datetime) -> None:
    try:
        not_before = cert.get_not_before().get_datetime()
        not_after = cert.get_not_after().get_datetime()
    except Exception as error:
        raise SignatureError(f"{what} '{subject}' has unreadable validity dates: {error}") from None
    if now < not_before:
        raise SignatureError(f"{what} '{subject}' is not valid before {_stamp(not_before)}")
    if now > not_after:
        raise SignatureError(f"{what} '{subject}' expired on {_stamp(not_after)}")


def _check_purpose(cert: Any, subject: str, *, ca: bool) -> None:
    """X509_check_purpose for S/MIME signing: what PKCS7_verify's "smime_sign" default
    checks along the chain (PKCS7_NOCHAIN, which we need, skips that default)."""
    from M2Crypto import X509

    try:
        ok = cert.check_purpose(X509.X509_PURPOSE_SMIME_SIGN, 1 if ca else 0)
    except Exception:
        ok = 0
    if ok != 1:
        what = "CA certificate" if ca else "signer certificate"
        raise SignatureError(
            f"{what} '{subject}' may not be used for S/MIME signing (unsuitable certificate "
            "purpose: its key usage or extended key usage lacks digitalSignature/emailProtection)"
        )


def _chain(signer: Any, subject: str, store: TrustStore) -> list[CaCertificate]:
    """CAs from the signer's issuer up to a self-signed root, all from the directory."""
    chain: list[CaCertificate] = []
    current, current_subject = signer, subject
    while True:
        issuer = store.issuer_of(current)
        if issuer is None:
            issuer_hash = "%08x" % current.get_issuer().as_hash()
            unreadable = _unreadable(store, issuer_hash, (".0", ".1", ".2", ".pem"))
            if unreadable:
                raise SignatureError(
                    f"'{current_subject}' was issued by '{current.get_issuer()}', whose CA "
                    f"certificate in '{store.path}' cannot be used: {unreadable}"
                )
            raise SignatureError(
                f"'{current_subject}' was issued by '{current.get_issuer()}', "
                f"which is not a trusted CA in '{store.path}'"
            )
        if any(issuer is seen for seen in chain) or len(chain) >= MAX_CHAIN_LENGTH:
            raise SignatureError(f"certificate chain of '{subject}' loops or is too long")
        chain.append(issuer)
        if issuer.self_issued:
            return chain
        current, current_subject = issuer.x509, issuer.subject


def crl_verdicts(
    chain: list[CaCertificate], store: TrustStore, now: datetime
) -> tuple[list[tuple[CaCertificate, CrlStatus]], list[Any]]:
    """Classify every chain CA's CRL; return verdicts and the CRLs fit for OpenSSL."""
    verdicts: list[tuple[CaCertificate, CrlStatus]] = []
    usable: list[Any] = []
    for ca in chain:
        candidates: list[tuple[str, datetime | None, datetime | None, bool | None]] = []
        for crl_file in store.crl_files(ca):
            if crl_file.crl is None:
                candidates.append((str(crl_file.path), None, None, None))
                continue
            try:
                ok = crl_file.crl.verify(ca.x509.get_pubkey()) == 1
            except Exception:
                ok = False
            if not ok and store.crl_signed_by_same_name_ca(crl_file, ca):
                continue  # belongs to a rolled-over CA of the same name
            if ok:
                usable.append(crl_file.crl)
            candidates.append((str(crl_file.path), crl_file.last_update, crl_file.next_update, ok))
        crl_name = str(Path(store.path) / f"{ca.hash}.r0")
        verdicts.append((ca, classify(candidates, now, ca.subject, crl_name)))
    return verdicts, usable


def _apply_crl_policy(
    verdicts: list[tuple[CaCertificate, CrlStatus]], policy: CrlPolicy, signer_subject: str
) -> dict[str, str]:
    """Raise per ``policy``; return {CA subject: warning} for the CAs relaxed into trust."""
    warnings: dict[str, str] = {}
    for ca, status in verdicts:
        if status.state is CrlState.CURRENT:
            continue
        if status.state is CrlState.FORGED or policy is CrlPolicy.STRICT:
            hint = "" if status.state is CrlState.FORGED else " (run fetch-crl)"
            raise RevocationError(
                f"cannot check revocation for CA '{ca.subject}': {status.detail}{hint}"
            )
        warnings[ca.subject] = (
            f"CRL policy relaxed: accepting '{signer_subject}' although CA '{ca.subject}' "
            f"has no current CRL: {status.detail}"
        )
    return warnings


@dataclass
class _Outcome:
    """What PKCS7_verify said: the payload, or the errors that made it fail."""

    payload: bytes | None = None
    fatal: list[tuple[int, int, str]] = field(default_factory=list)  # (code, depth, subject)
    ignored: list[tuple[int, int, str]] = field(default_factory=list)  # relaxed CRL errors
    text: str = ""


def _pkcs7_verify(
    p7: Any,
    content: Any,
    chain: list[CaCertificate],
    crls: list[Any],
    policy: CrlPolicy,
    check_time: bool,
) -> _Outcome:
    """Run PKCS7_verify against exactly ``chain`` (and its checked CRLs)."""
    from M2Crypto import SMIME, X509, m2

    x509_store = X509.X509_Store()
    for ca in chain:
        x509_store.add_x509(ca.x509)
    flags = 0
    if policy is not CrlPolicy.OFF:
        for crl in crls:
            x509_store.add_crl(crl)
        flags |= m2.X509_V_FLAG_CRL_CHECK | m2.X509_V_FLAG_CRL_CHECK_ALL
    if not check_time:
        flags |= m2.X509_V_FLAG_NO_CHECK_TIME
    x509_store.set_flags(flags)
    outcome = _Outcome()

    def callback(ok: int, ctx: Any) -> int:
        if ok:
            return ok
        try:
            code, depth = ctx.get_error(), ctx.get_error_depth()
            current = ctx.get_current_cert()
            subject = str(current.get_subject()) if current is not None else ""
        except Exception:
            return 0
        if policy is CrlPolicy.RELAXED and code in _CRL_UNUSABLE_ERRORS:
            outcome.ignored.append((code, depth, subject))
            return 1  # judged from the CRL files already; warned about after success
        outcome.fatal.append((code, depth, subject))
        return 0

    x509_store.set_verify_cb(callback)
    smime = SMIME.SMIME()
    smime.set_x509_stack(X509.X509_Stack())
    smime.set_x509_store(x509_store)
    try:
        if content is None:
            payload = smime.verify(p7, flags=SMIME.PKCS7_NOCHAIN)
        else:
            payload = smime.verify(p7, content, flags=SMIME.PKCS7_NOCHAIN)
    except Exception as error:
        outcome.text = first_line(error)
        return outcome
    finally:
        x509_store.set_verify_cb(None)
    outcome.payload = bytes(payload)
    return outcome


def _add_ignored_crl_warnings(
    outcome: _Outcome, chain: list[CaCertificate], warnings: dict[str, str], signer_subject: str
) -> None:
    """Relaxed mode: name every CA whose CRL OpenSSL could not use, unless already named."""
    from M2Crypto import m2

    for code, depth, _subject in outcome.ignored:
        # The certificate at ``depth`` is checked against its issuer's CRL: chain[depth].
        if depth >= len(chain) or chain[depth].subject in warnings:
            continue
        warnings[chain[depth].subject] = (
            f"CRL policy relaxed: accepting '{signer_subject}' although the CRL of CA "
            f"'{chain[depth].subject}' was not usable: {m2.x509_get_verify_error(code)}"
        )


def _openssl_failure(
    seen: list[tuple[int, int, str]], text: str, signer_subject: str
) -> SignatureError | RevocationError:
    from M2Crypto import m2

    if not seen:
        return SignatureError(
            f"signature of '{signer_subject}' does not verify ({text}): "
            "the content was changed after signing, or the signature is corrupt"
        )
    code, _depth, subject = seen[-1]
    reason = m2.x509_get_verify_error(code)
    subject = subject or signer_subject
    if code == _CERT_REVOKED:
        return RevocationError(f"certificate '{subject}' has been revoked ({reason})")
    if code in _REVOCATION_ERRORS:
        return RevocationError(f"cannot check revocation of '{subject}': {reason}")
    if code == _INVALID_PURPOSE:
        return SignatureError(
            f"certificate '{subject}' may not sign S/MIME messages ({reason}: "
            "its extended key usage lacks emailProtection)"
        )
    if code in (_UNABLE_TO_GET_ISSUER_CERT, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        return SignatureError(f"certificate '{subject}' does not chain to a trusted CA ({reason})")
    if code in (_CERT_HAS_EXPIRED, _CERT_NOT_YET_VALID):
        return SignatureError(f"certificate '{subject}' is outside its validity period ({reason})")
    return SignatureError(f"certificate verification failed for '{subject}': {reason}")


def verify_message(
    data: bytes,
    store: TrustStore,
    *,
    crl_policy: CrlPolicy = CrlPolicy.STRICT,
    now: datetime | None = None,
) -> VerifiedMessage:
    """Verify a signed image list; return the payload and the signer, or raise.

    Raises :class:`~vmcatcher.errors.SignatureError` (not S/MIME, signer count,
    untrusted chain, validity window, purpose, bad signature),
    :class:`~vmcatcher.errors.NamespaceError` and
    :class:`~vmcatcher.errors.RevocationError`; all are ``TrustError`` (code 11).

    ``now`` (naive = UTC) fixes the time for the validity-window and CRL
    freshness checks, which this module does itself; when it is given,
    OpenSSL's own clock checks are switched off so that both agree. With
    ``now=None`` the system clock is used and OpenSSL checks times as well.
    """
    data = _as_bytes(data)
    policy = CrlPolicy(crl_policy)
    moment = _utc(now)
    with _M2_LOCK:
        _clear_openssl_errors()
        try:
            return _verify_locked(data, store, policy, moment, check_time=now is None)
        finally:
            _clear_openssl_errors()


def _verify_locked(
    data: bytes, store: TrustStore, policy: CrlPolicy, now: datetime, *, check_time: bool
) -> VerifiedMessage:
    p7, content = _load(data)
    signer = _signer(p7)
    subject, issuer = str(signer.get_subject()), str(signer.get_issuer())
    serial = str(signer.get_serial_number())
    _check_window(signer, "signer certificate", subject, now)
    chain = _chain(signer, subject, store)
    for ca in chain:
        _check_window(ca.x509, "CA certificate", ca.subject, now)
    _check_purpose(signer, subject, ca=False)
    for ca in chain:
        _check_purpose(ca.x509, ca.subject, ca=True)
    child = subject
    for ca in chain:
        try:
            store.policies.check(ca.subject, child)
        except NamespaceError as error:
            unreadable = _unreadable(store, ca.hash, (".namespaces", ".signing_policy"))
            if unreadable and "has no namespace policy" in str(error):
                raise NamespaceError(
                    f"certificate '{child}' cannot be checked against the namespace of CA "
                    f"'{ca.subject}': {unreadable}"
                ) from None
            raise
        if ca.self_issued:
            break
        child = ca.subject
    crls: list[Any] = []
    warnings: dict[str, str] = {}
    if policy is not CrlPolicy.OFF:
        verdicts, crls = crl_verdicts(chain, store, now)
        warnings = _apply_crl_policy(verdicts, policy, subject)
    outcome = _pkcs7_verify(p7, content, chain, crls, policy, check_time)
    if outcome.payload is None:
        raise _openssl_failure(outcome.fatal, outcome.text, subject)
    _add_ignored_crl_warnings(outcome, chain, warnings, subject)
    return VerifiedMessage(outcome.payload, subject, issuer, serial, tuple(warnings.values()))


def extract_payload_unverified(data: bytes) -> bytes:
    """The signed content of an S/MIME message, *without* any verification.

    For re-reading lists that were verified when they were stored. Raises
    :class:`~vmcatcher.errors.SignatureError` when ``data`` is not S/MIME signed data.
    """
    from M2Crypto import SMIME, X509

    data = _as_bytes(data)
    with _M2_LOCK:
        _clear_openssl_errors()
        try:
            p7, content = _load(data)
            if content is not None:
                return bytes(content.read() or b"")
            smime = SMIME.SMIME()
            smime.set_x509_stack(X509.X509_Stack())
            smime.set_x509_store(X509.X509_Store())
            try:
                payload = smime.verify(p7, flags=SMIME.PKCS7_NOVERIFY | SMIME.PKCS7_NOSIGS)
            except Exception as error:
                raise SignatureError(
                    f"cannot read the signed content: {first_line(error)}"
                ) from None
            return bytes(payload)
        finally:
            _clear_openssl_errors()


def _unreadable(store: TrustStore, ca_hash: str, suffixes: tuple[str, ...]) -> str:
    """The store's problems with files of ``ca_hash`` (unreadable CA or policy files).

    An unreadable file is not the same failure as a missing one: name it.
    """
    found = [
        problem
        for problem in store.problems
        if any(f"/{ca_hash}{suffix}:" in problem for suffix in suffixes)
    ]
    return "; ".join(dict.fromkeys(found))
