"""A throw-away Grid PKI for tests, demos and benchmarks, built at run time.

Why this exists: the verifying core must be tested against real certificates,
real CRLs and real S/MIME messages -- the failure modes that matter (revoked
signer, stale or forged CRL, namespace violation, wrong purpose) only show up
with the real thing. Nothing secret is kept in git; everything is generated
here with the ``cryptography`` package and signed exactly like HEPiX
publishers sign (M2Crypto ``SMIME.sign`` in text mode, detached, signer
certificate embedded; see imagelist-format.md section 8).

Typical use::

    from tests.support.pki import TestPKI, sign

    pki = TestPKI()                                  # ~50 ms after the first one
    certdir = pki.write_ca_dir(tmp_path / "certs")   # root + intermediate, current CRLs
    message = sign(payload, pki.endorser)            # multipart/signed S/MIME bytes
    pki.endorser.subject                             # '/DC=org/DC=example-grid/O=People/CN=...'

Variants of the CA directory are cheap: every call to :meth:`TestPKI.write_ca_dir`
writes a fresh directory, e.g. ``write_ca_dir(p, root_crl="expired")``,
``write_ca_dir(p, root_crl="missing")``, ``write_ca_dir(p, root_crl="forged")``
or ``write_ca_dir(p, files={name: None})`` to delete / override single files.

Key generation is the only slow part, so RSA-2048 keys come from a small
per-process pool (:func:`pool_key`); different roles get different pool slots
where that matters (the forged-CRL key differs from the CA key, the unknown
CA's key differs from the trusted ones).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CrlState",
    "Identity",
    "TestPKI",
    "pool_key",
    "sign",
    "sign_multi",
    "signed_form",
    "subject_hash",
]

CrlState = Literal["current", "expired", "not_yet_valid", "missing", "forged", "garbage"]

# --- keys -------------------------------------------------------------------------

POOL_SIZE = 6
_KEY_POOL: dict[int, rsa.RSAPrivateKey] = {}


def pool_key(slot: int) -> rsa.RSAPrivateKey:
    """RSA-2048 key number ``slot % POOL_SIZE``, generated once per process."""
    slot %= POOL_SIZE
    key = _KEY_POOL.get(slot)
    if key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY_POOL[slot] = key
    return key


# Pool slots per role: keep CA, forger and unknown CA keys distinct.
ROOT_KEY, INTERMEDIATE_KEY, ENDORSER_KEY, FORGER_KEY, UNKNOWN_CA_KEY, OTHER_KEY = range(6)

# --- names ------------------------------------------------------------------------

_OIDS = {
    "DC": NameOID.DOMAIN_COMPONENT,
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
}

NameSpec = str | Sequence[tuple[str, str]]


def make_name(spec: NameSpec) -> x509.Name:
    """Build an x509 Name, in the given order.

    ``spec`` is either a simple slash string ``/DC=org/DC=x/CN=Jane`` (values
    must not contain ``/``) or a sequence of ``(short name, value)`` pairs for
    values with ``/``, ``+`` or non-ASCII characters.
    """
    if isinstance(spec, str):
        pairs = []
        for part in spec.split("/")[1:]:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    else:
        pairs = list(spec)
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in pairs])


def _m2_cert(der: bytes):
    from M2Crypto import X509

    return X509.load_cert_der_string(der)


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL subject hash (``openssl x509 -hash``) as 8 lower-case hex digits."""
    m2cert = _m2_cert(cert.public_bytes(serialization.Encoding.DER))
    # Keep m2cert referenced while using the name: the X509_Name points into it.
    return "%08x" % m2cert.get_subject().as_hash()


# --- identities ---------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A certificate with its private key; ``subject``/``issuer`` in OpenSSL slash form."""

    label: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)

    @cached_property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @cached_property
    def subject(self) -> str:
        """Subject DN exactly as OpenSSL's X509_NAME_oneline prints it (what hv:dn holds)."""
        m2cert = _m2_cert(self.cert.public_bytes(serialization.Encoding.DER))
        return str(m2cert.get_subject())

    @cached_property
    def issuer(self) -> str:
        """Issuer DN in OpenSSL slash form (what hv:ca holds)."""
        m2cert = _m2_cert(self.cert.public_bytes(serialization.Encoding.DER))
        return str(m2cert.get_issuer())

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @cached_property
    def hash(self) -> str:
        """OpenSSL subject hash: the ``<hash>`` of ``<hash>.0`` in a CA directory."""
        return subject_hash(self.cert)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``<label>.pem`` and ``<label>.key`` into ``directory``; return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{self.label}.pem"
        key_path = directory / f"{self.label}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem)
        os.chmod(key_path, 0o600)
        return cert_path, key_path


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def issue(
    label: str,
    subject: NameSpec,
    *,
    issuer: Identity | None,
    key: rsa.RSAPrivateKey,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    ca: bool = False,
    eku: Iterable[x509.ObjectIdentifier] | None = (
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ),
    digest: hashes.HashAlgorithm | None = None,
) -> Identity:
    """Issue one certificate. ``issuer=None`` makes it self-signed (a root CA)."""
    name = make_name(subject)
    signing_key = key if issuer is None else issuer.key
    issuer_name = name if issuer is None else issuer.cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    cert = builder.sign(signing_key, digest or hashes.SHA256())
    return Identity(label, cert, key)


def make_crl(
    issuer: Identity,
    *,
    revoked: Iterable[Identity | int] = (),
    last_update: _dt.datetime,
    next_update: _dt.datetime,
    signing_key: rsa.RSAPrivateKey | None = None,
    number: int = 1,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A PEM CRL with ``issuer``'s name; signed by ``signing_key`` (default: issuer's key).

    ``extensions``: extra ``(extension, critical)`` pairs, e.g. an IssuingDistributionPoint.
    """
    key = signing_key or issuer.key
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for item in revoked:
        serial = item if isinstance(item, int) else item.serial
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(last_update - _dt.timedelta(hours=1))
            .build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- the PKI ------------------------------------------------------------------------

ROOT_DN = "/DC=org/DC=example-grid/CN=Example Grid Test CA"
INTERMEDIATE_DN = "/DC=org/DC=example-grid/CN=Example Grid Issuing CA"
UNKNOWN_CA_DN = "/DC=org/DC=elsewhere/CN=Unknown Test CA"
NAMESPACE_PATTERN = "/DC=org/DC=example-grid/"


class TestPKI:
    """Root CA, intermediate CA and a cast of endorser certificates.

    Issued by the root (``issuer == ROOT_DN``):
      ``endorser`` (good), ``revoked`` (listed in the root CRL), ``expired``,
      ``not_yet_valid``, ``outside`` (subject outside the CA namespace),
      ``hostonly`` (EKU serverAuth/clientAuth: no S/MIME purpose).
    Issued by the intermediate: ``intermediate_endorser`` (good),
      ``intermediate_revoked`` (listed in the intermediate's CRL).
    Issued by ``unknown_ca`` (never written to a CA directory): ``stranger``.
    ``forger`` has the root's subject but another key: it signs forged CRLs.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, now: _dt.datetime | None = None) -> None:
        self.now = now or _utcnow()
        day = _dt.timedelta(days=1)
        start, end = self.now - day, self.now + 3650 * day
        self._serial = 0x1000
        self.root = issue(
            "root",
            ROOT_DN,
            issuer=None,
            key=pool_key(ROOT_KEY),
            serial=1,
            not_before=start,
            not_after=end,
            ca=True,
        )
        self.intermediate = issue(
            "intermediate",
            INTERMEDIATE_DN,
            issuer=self.root,
            key=pool_key(INTERMEDIATE_KEY),
            serial=2,
            not_before=start,
            not_after=end - day,
            ca=True,
        )
        self.unknown_ca = issue(
            "unknown_ca",
            UNKNOWN_CA_DN,
            issuer=None,
            key=pool_key(UNKNOWN_CA_KEY),
            serial=3,
            not_before=start,
            not_after=end,
            ca=True,
        )
        self.forger = issue(
            "forger",
            ROOT_DN,
            issuer=None,
            key=pool_key(FORGER_KEY),
            serial=4,
            not_before=start,
            not_after=end,
            ca=True,
        )
        people = "/DC=org/DC=example-grid/O=People/CN="
        self.endorser = self.leaf("endorser", people + "Jane Endorser")
        self.revoked = self.leaf("revoked", people + "Rex Revoked")
        self.expired = self.leaf(
            "expired",
            people + "Old Timer",
            not_before=self.now - 400 * day,
            not_after=self.now - 30 * day,
        )
        self.not_yet_valid = self.leaf(
            "not_yet_valid",
            people + "Future Person",
            not_before=self.now + 30 * day,
            not_after=self.now + 400 * day,
        )
        self.outside = self.leaf("outside", "/DC=net/DC=elsewhere/CN=Outside Namespace")
        self.hostonly = self.leaf(
            "hostonly",
            "/DC=org/DC=example-grid/O=Hosts/CN=images.example-grid.org",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        self.intermediate_endorser = self.leaf(
            "intermediate_endorser", people + "Ivan Intermediate", issuer=self.intermediate
        )
        self.intermediate_revoked = self.leaf(
            "intermediate_revoked", people + "Ida Revoked", issuer=self.intermediate
        )
        self.stranger = self.leaf("stranger", people + "Stranger Danger", issuer=self.unknown_ca)

    # -- building blocks ------------------------------------------------------------

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def leaf(
        self,
        label: str,
        subject: NameSpec,
        *,
        issuer: Identity | None = None,
        key: rsa.RSAPrivateKey | None = None,
        not_before: _dt.datetime | None = None,
        not_after: _dt.datetime | None = None,
        eku: Iterable[x509.ObjectIdentifier] | None = (
            ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ),
    ) -> Identity:
        """Issue an end-entity (endorser) certificate; issuer defaults to the root."""
        day = _dt.timedelta(days=1)
        return issue(
            label,
            subject,
            issuer=issuer or self.root,
            key=key or pool_key(ENDORSER_KEY),
            serial=self.next_serial(),
            not_before=not_before or self.now - day,
            not_after=not_after or self.now + 395 * day,
            eku=eku,
        )

    def sub_ca(self, label: str, subject: NameSpec, *, issuer: Identity | None = None) -> Identity:
        """Issue another CA certificate (default issuer: the root)."""
        day = _dt.timedelta(days=1)
        return issue(
            label,
            subject,
            issuer=issuer or self.root,
            key=pool_key(OTHER_KEY),
            serial=self.next_serial(),
            not_before=self.now - day,
            not_after=self.now + 3000 * day,
            ca=True,
        )

    def crl(
        self, ca: Identity, state: CrlState = "current", revoked: Iterable[Identity | int] = ()
    ) -> bytes | None:
        """The CRL of ``ca`` in the given state as PEM (``None`` for "missing")."""
        day = _dt.timedelta(days=1)
        if state == "missing":
            return None
        if state == "garbage":
            return b"-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n"
        if state == "expired":
            return make_crl(
                ca,
                revoked=revoked,
                last_update=self.now - 60 * day,
                next_update=self.now - 30 * day,
            )
        if state == "not_yet_valid":
            return make_crl(
                ca, revoked=revoked, last_update=self.now + 2 * day, next_update=self.now + 30 * day
            )
        if state == "forged":
            # Same issuer name, signed by another key, revoking nothing.
            return make_crl(
                ca,
                last_update=self.now - day,
                next_update=self.now + 30 * day,
                signing_key=pool_key(FORGER_KEY),
            )
        return make_crl(
            ca, revoked=revoked, last_update=self.now - day, next_update=self.now + 30 * day
        )

    # -- CA directories -------------------------------------------------------------

    @staticmethod
    def namespaces_text(ca: Identity, pattern: str = NAMESPACE_PATTERN + ".*") -> str:
        """An IGTF ``.namespaces`` file permitting subjects that match the regex ``pattern``."""
        return (
            f'#NAMESPACES-VERSION: 1.0\nTO Issuer "{ca.subject}" \\\n  PERMIT Subject "{pattern}"\n'
        )

    @staticmethod
    def signing_policy_text(ca: Identity, pattern: str = NAMESPACE_PATTERN + "*") -> str:
        """A Globus ``.signing_policy`` file permitting the glob ``pattern``."""
        return (
            f"access_id_CA   X509   '{ca.subject}'\n"
            "pos_rights     globus CA:sign\n"
            f"cond_subjects  globus '\"{pattern}\"'\n"
        )

    def write_ca_dir(
        self,
        path: Path | str,
        *,
        root_crl: CrlState = "current",
        intermediate_crl: CrlState = "current",
        include_intermediate: bool = True,
        revoke_intermediate: bool = False,
        namespaces: bool = True,
        signing_policy: bool = True,
        extra_cas: Sequence[Identity] = (),
        files: Mapping[str, bytes | str | None] | None = None,
    ) -> Path:
        """Write a fresh Grid-style CA directory and return its path.

        Layout: ``<hash>.0`` (PEM CA cert), ``<hash>.r0`` (PEM CRL),
        ``<hash>.namespaces`` and ``<hash>.signing_policy`` for the root and (unless
        ``include_intermediate=False``) the intermediate, plus ``extra_cas`` (with
        current, empty CRLs and the default policies). The root CRL revokes
        ``revoked`` (and the intermediate if ``revoke_intermediate``); the
        intermediate's CRL revokes ``intermediate_revoked``. ``files`` is applied
        last: ``{file name: content}`` adds or replaces a file, ``None`` deletes it.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        root_revoked: list[Identity] = [self.revoked]
        if revoke_intermediate:
            root_revoked.append(self.intermediate)
        plan: list[tuple[Identity, CrlState, list[Identity]]] = [
            (self.root, root_crl, root_revoked)
        ]
        if include_intermediate:
            plan.append((self.intermediate, intermediate_crl, [self.intermediate_revoked]))
        plan.extend((ca, "current", []) for ca in extra_cas)
        for ca, state, revoked in plan:
            h = ca.hash
            (out / f"{h}.0").write_bytes(ca.cert_pem)
            crl = self.crl(ca, state, revoked)
            if crl is not None:
                (out / f"{h}.r0").write_bytes(crl)
            if namespaces:
                (out / f"{h}.namespaces").write_text(self.namespaces_text(ca))
            if signing_policy:
                (out / f"{h}.signing_policy").write_text(self.signing_policy_text(ca))
        for name, content in (files or {}).items():
            target = out / name
            if content is None:
                if target.exists() or target.is_symlink():
                    target.unlink()
            elif isinstance(content, str):
                target.write_text(content)
            else:
                target.write_bytes(content)
        return out


# --- signing ---------------------------------------------------------------------------

Protocol = Literal["application/pkcs7-signature", "application/x-pkcs7-signature"]


def sign(
    payload: bytes,
    signer: Identity,
    *,
    detached: bool = True,
    digest: str = "sha256",
    protocol: Protocol = "application/pkcs7-signature",
    extra_certs: Sequence[Identity] = (),
) -> bytes:
    """S/MIME-sign ``payload`` the way HEPiX publishers do, with M2Crypto.

    Text-mode canonicalisation (LF -> CRLF), signer certificate embedded,
    ``digest`` "sha256" or "sha1". ``detached=True`` gives ``multipart/signed``
    (the normal wire form); ``detached=False`` an opaque ``pkcs7-mime`` message.
    M2Crypto writes OpenSSL's PKCS#7 headers (``application/x-pkcs7-*``); for
    ``protocol="application/pkcs7-signature"`` the headers are rewritten to the
    exact form ``openssl cms -sign`` produces (header only: the signed bytes and
    the DER signature are the same).
    """
    from M2Crypto import BIO, SMIME, X509

    smime = SMIME.SMIME()
    smime.load_key_bio(BIO.MemoryBuffer(signer.key_pem), BIO.MemoryBuffer(signer.cert_pem))
    if extra_certs:
        stack = X509.X509_Stack()
        for cert in extra_certs:
            stack.push(X509.load_cert_string(cert.cert_pem))
        smime.set_x509_stack(stack)
    flags = SMIME.PKCS7_DETACHED if detached else 0
    p7 = smime.sign(BIO.MemoryBuffer(payload), flags, algo=digest)
    out = BIO.MemoryBuffer()
    if detached:
        smime.write(out, p7, BIO.MemoryBuffer(payload))
    else:
        smime.write(out, p7)
    data = out.read()
    if protocol == "application/pkcs7-signature":
        data = _cms_headers(data)
    elif protocol != "application/x-pkcs7-signature":
        raise ValueError(f"unknown protocol {protocol!r}")
    return data


def signed_form(payload: bytes) -> bytes:
    """The bytes a text-mode signature covers, and what verification returns: CRLF line ends."""
    return payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _cms_headers(message: bytes) -> bytes:
    """Rewrite the MIME headers (not the body) from PKCS#7 to CMS naming."""
    head, sep, rest = message.partition(b"\n\n")
    head = head.replace(b"application/x-pkcs7-", b"application/pkcs7-")
    # The signature part of a multipart message has its own headers.
    rest = re.sub(
        rb"\nContent-Type: application/x-pkcs7-signature;",
        b"\nContent-Type: application/pkcs7-signature;",
        rest,
    )
    return head + sep + rest


def sign_multi(payload: bytes, signers: Sequence[Identity], *, digest: str = "sha256") -> bytes:
    """A detached S/MIME message carrying one SignerInfo per signer (for the
    "exactly one signer" rule). Built with ``cryptography``'s PKCS7 builder."""
    algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}[digest]
    builder = pkcs7.PKCS7SignatureBuilder().set_data(payload)
    for signer in signers:
        builder = builder.add_signer(signer.cert, signer.key, algorithm)
    return builder.sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
