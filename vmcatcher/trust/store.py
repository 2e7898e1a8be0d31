"""The trust store: a Grid CA directory (``/etc/grid-security/certificates`` style).

Why this shape: an IGTF directory holds ~100 CAs, each as ``<hash>.0`` (PEM
CA certificate, usually a symlink to ``<alias>.pem``), ``<hash>.r0`` (PEM CRL
written by fetch-crl), ``<hash>.namespaces`` and ``<hash>.signing_policy``.
A verification needs only the two or three CAs of one chain, and a cron job
verifies a handful of lists, so :func:`load_trust_store` just lists the
directory; certificates and CRLs are parsed on first use, found through the
OpenSSL subject hash in their file name; the policy files (small text) are
parsed together on the first policy question.

Rules kept from the original, and the fixes (docs/compatibility.md):

* every ``<hash>.N`` is read (not only ``.0``), so CA roll-overs and hash
  collisions work; a certificate is used as issuer only if its subject equals
  the child's issuer *and* its key verifies the child's signature;
* ``*.pem`` files without a hash link are still found (parsed on a miss);
* CRLs are ``<hash>.rN``; their signature is checked against the CA key, and
  their text is never parsed;
* the default directory is never read when another one is asked for.

M2Crypto is imported inside the functions that need it, so importing
:mod:`vmcatcher.trust` stays cheap for commands that never verify.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from vmcatcher.errors import TrustStoreError
from vmcatcher.trust.policy import PolicySet

__all__ = ["CaCertificate", "CrlFile", "TrustStore", "load_trust_store"]

_HASHED_CERT = re.compile(r"([0-9a-f]{8})\.(\d+)")
_HASHED_CRL = re.compile(r"([0-9a-f]{8})\.r(\d+)")


@dataclass(frozen=True, eq=False)
class CaCertificate:
    """A parsed CA certificate of the directory (holds the M2Crypto X509 alive)."""

    path: Path
    x509: Any  # M2Crypto.X509.X509
    subject: str  # OpenSSL oneline form
    issuer: str
    subject_der: bytes
    issuer_der: bytes
    hash: str

    @property
    def self_issued(self) -> bool:
        return self.subject_der == self.issuer_der

    def signed(self, cert: Any) -> bool:
        """True when this CA's key verifies the signature on ``cert`` (an M2Crypto X509)."""
        try:
            return cert.verify(self.x509.get_pubkey()) == 1
        except Exception:  # M2Crypto raises assorted errors on odd keys: not a match
            return False


@dataclass(frozen=True, eq=False)
class CrlFile:
    """One ``<hash>.rN`` file; ``crl`` is ``None`` when it cannot be read."""

    path: Path
    crl: Any  # M2Crypto.X509.CRL | None
    issuer_der: bytes | None
    last_update: datetime | None
    next_update: datetime | None


def _read_cert(path: Path) -> Any:
    from M2Crypto import X509

    data = path.read_bytes()
    try:
        return X509.load_cert_string(data, X509.FORMAT_PEM)
    except (X509.X509Error, ValueError):
        return X509.load_cert_der_string(data)


def _asn1_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return value.get_datetime()
    except (ValueError, TypeError, OverflowError, AttributeError):
        return None


class TrustStore:
    """A lazily parsed CA directory. Build it with :func:`load_trust_store`.

    Parsed certificates, CRLs and policies are cached for the store's lifetime
    (one command run); load a new store to see files changed since (fetch-crl).
    Not thread-safe by itself; :func:`vmcatcher.trust.verify_message` serialises use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []  # unreadable files, bad policy lines
        self._cert_files: dict[str, list[Path]] = {}
        self._crl_files: dict[str, list[Path]] = {}
        # Policy files with the identity (st_dev, st_ino) of what they point to.
        self._namespaces_files: list[tuple[Path, tuple[int, int]]] = []
        self._signing_policy_files: list[tuple[Path, tuple[int, int]]] = []
        self._loose_pems: list[Path] = []
        self._certs: dict[str, list[CaCertificate]] = {}
        self._crls: dict[str, list[CrlFile]] = {}
        self._policies: PolicySet | None = None
        self._loose_loaded = False
        self._scan()

    # -- directory scan (no parsing) -------------------------------------------------

    def _scan(self) -> None:
        # One scandir; identities come from the (cached) stat that is_file() needs anyway,
        # which is much cheaper than realpath() on hundreds of IGTF symlinks.
        hashed_targets: set[tuple[int, int]] = set()
        pems: list[tuple[Path, tuple[int, int]]] = []
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except OSError as error:
            raise TrustStoreError(
                f"cannot read CA directory '{self.path}': {error.strerror or error}"
            ) from None
        for entry in entries:
            name = entry.name
            try:
                if not entry.is_file():  # follows symlinks; skips dirs and dangling links
                    continue
                info = entry.stat()
            except OSError:
                continue
            identity = (info.st_dev, info.st_ino)
            if match := _HASHED_CERT.fullmatch(name):
                self._cert_files.setdefault(match.group(1), []).append(Path(entry.path))
                hashed_targets.add(identity)
            elif match := _HASHED_CRL.fullmatch(name):
                self._crl_files.setdefault(match.group(1), []).append(Path(entry.path))
            elif name.endswith(".namespaces"):
                self._namespaces_files.append((Path(entry.path), identity))
            elif name.endswith(".signing_policy"):
                self._signing_policy_files.append((Path(entry.path), identity))
            elif name.endswith(".pem"):
                pems.append((Path(entry.path), identity))
        for files in (*self._cert_files.values(), *self._crl_files.values()):
            files.sort(key=lambda p: int(p.name.rsplit(".", 1)[1].lstrip("r")))
        self._loose_pems = [path for path, ident in pems if ident not in hashed_targets]
        if not self._cert_files and not self._loose_pems:
            raise TrustStoreError(
                f"CA directory '{self.path}' holds no CA certificates (<hash>.0 or *.pem files)"
            )

    @property
    def ca_file_count(self) -> int:
        """Number of certificate files found (hashed plus unlinked ``*.pem``)."""
        return sum(len(v) for v in self._cert_files.values()) + len(self._loose_pems)

    # -- certificates -----------------------------------------------------------------

    def _parse_cert(self, path: Path) -> CaCertificate | None:
        from M2Crypto import X509

        try:
            cert = _read_cert(path)
        except (OSError, X509.X509Error, ValueError, TypeError) as error:
            self.problems.append(f"{path}: not a readable certificate ({error})")
            return None
        if not cert.check_ca():
            self.problems.append(f"{path}: not a CA certificate, ignored")
            return None
        subject, issuer = cert.get_subject(), cert.get_issuer()
        return CaCertificate(
            path=path,
            x509=cert,
            subject=str(subject),
            issuer=str(issuer),
            subject_der=subject.as_der(),
            issuer_der=issuer.as_der(),
            hash="%08x" % subject.as_hash(),
        )

    def certificates(self, subject_hash: str) -> list[CaCertificate]:
        """The CA certificates whose OpenSSL subject hash is ``subject_hash``."""
        found = self._certs.get(subject_hash)
        if found is None:
            found = []
            for path in self._cert_files.get(subject_hash, ()):
                parsed = self._parse_cert(path)
                if parsed is not None:
                    found.append(parsed)
            self._certs[subject_hash] = found
        if not self._loose_loaded and not found and self._loose_pems:
            self._load_loose()
            found = self._certs.get(subject_hash, [])
        return found

    def _load_loose(self) -> None:
        self._loose_loaded = True
        for path in self._loose_pems:
            parsed = self._parse_cert(path)
            if parsed is None:
                continue
            known = self.certificates(parsed.hash)
            if not any(c.x509.as_der() == parsed.x509.as_der() for c in known):
                known.append(parsed)

    def issuer_of(self, cert: Any) -> CaCertificate | None:
        """The directory CA that issued ``cert`` (M2Crypto X509): same name, key verifies."""
        issuer_name = cert.get_issuer()
        issuer_der = issuer_name.as_der()
        for candidate in self.certificates("%08x" % issuer_name.as_hash()):
            if candidate.subject_der == issuer_der and candidate.signed(cert):
                return candidate
        return None

    def all_certificates(self) -> list[CaCertificate]:
        """Every parsed CA certificate of the directory (the monitoring probe checks each)."""
        for subject_hash in list(self._cert_files):
            self.certificates(subject_hash)
        if not self._loose_loaded:
            self._load_loose()
        return [ca for subject_hash in sorted(self._certs) for ca in self._certs[subject_hash]]

    # -- CRLs -------------------------------------------------------------------------

    def crl_files(self, ca: CaCertificate) -> list[CrlFile]:
        """The parsed ``<hash>.rN`` files of ``ca``'s hash that name ``ca``'s subject."""
        cached = self._crls.get(ca.hash)
        if cached is None:
            cached = [self._parse_crl(path) for path in self._crl_files.get(ca.hash, ())]
            self._crls[ca.hash] = cached
        return [c for c in cached if c.issuer_der is None or c.issuer_der == ca.subject_der]

    def _parse_crl(self, path: Path) -> CrlFile:
        from M2Crypto import X509

        try:
            crl = X509.load_crl(str(path))
            issuer_der = crl.get_issuer().as_der()
        except (OSError, X509.X509Error, ValueError, TypeError, AttributeError) as error:
            self.problems.append(f"{path}: not a readable PEM CRL ({error})")
            return CrlFile(path, None, None, None, None)
        return CrlFile(
            path,
            crl,
            issuer_der,
            _asn1_time(crl.get_lastUpdate()),
            _asn1_time(crl.get_nextUpdate()),
        )

    def crl_signed_by_same_name_ca(self, crl: CrlFile, ca: CaCertificate) -> bool:
        """True if another directory CA with ``ca``'s subject signed ``crl`` (roll-over)."""
        return any(
            other is not ca
            and other.subject_der == ca.subject_der
            and crl.crl.verify(other.x509.get_pubkey()) == 1
            for other in self.certificates(ca.hash)
        )

    # -- policies ---------------------------------------------------------------------

    @property
    def policies(self) -> PolicySet:
        """All ``.namespaces`` / ``.signing_policy`` rules of the directory (parsed once)."""
        if self._policies is None:
            self._policies = self._load_policies()
        return self._policies

    def _load_policies(self) -> PolicySet:
        policies = PolicySet()
        for files, kind in (
            (self._namespaces_files, "namespaces"),
            (self._signing_policy_files, "signing_policy"),
        ):
            # IGTF ships '<alias>.x' plus a '<hash>.x' symlink: read each file once,
            # preferring the hash-named path (it tells which CA 'SELF' is).
            by_target: dict[tuple[int, int], Path] = {}
            for path, target in files:
                if target not in by_target or _HASHED_CERT.fullmatch(path.stem + ".0"):
                    by_target[target] = path
            for path in sorted(by_target.values()):
                try:
                    text = path.read_text(encoding="utf-8", errors="replace")
                except OSError as error:
                    self.problems.append(f"{path}: cannot read ({error.strerror or error})")
                    continue
                if kind == "namespaces":
                    self_dn = self._self_dn(path) if "SELF" in text.upper() else None
                    policies.add_namespaces(text, path.name, self_dn)
                else:
                    policies.add_signing_policy(text, path.name)
        self.problems.extend(policies.problems)
        return policies

    def _self_dn(self, policy_path: Path) -> str | None:
        """Subject of the CA a policy file belongs to (``<stem>.0`` or ``<stem>.pem``)."""
        stem = policy_path.name.rsplit(".", 1)[0]
        if re.fullmatch(r"[0-9a-f]{8}", stem):
            certs = self.certificates(stem)
            return certs[0].subject if certs else None
        for suffix in (".pem", ".0"):
            candidate = policy_path.with_name(stem + suffix)
            if candidate.is_file():
                parsed = self._parse_cert(candidate)
                if parsed is not None:
                    return parsed.subject
        return None


def load_trust_store(path: str | os.PathLike[str]) -> TrustStore:
    """Open the CA directory at ``path`` (cheap: lists it, parses nothing).

    Raises :class:`~vmcatcher.errors.TrustStoreError` when the directory does
    not exist, is not a directory, cannot be read, or holds no CA certificate.
    """
    directory = Path(path)
    if not directory.exists():
        raise TrustStoreError(
            f"CA directory '{directory}' does not exist "
            "(install the IGTF trust anchors or set VMCATCHER_DIR_CERT)"
        )
    if not directory.is_dir():
        raise TrustStoreError(f"CA directory '{directory}' is not a directory")
    return TrustStore(directory)
