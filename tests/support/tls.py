"""A throw-away TLS PKI for test servers, built at test time with ``cryptography``.

Trust-anchor tests need a server certificate that is *not* trusted by default (so
``browser`` and ``igtf`` must refuse it), a CA directory in the IGTF/OpenSSL ``capath``
layout (``<subject-hash>.0``) that does trust it, and a certificate for the wrong host
name. :func:`make_test_pki` writes all of that as PEM files into a directory::

    pki = make_test_pki(tmp_path)
    with TestServer(tls=pki) as server:              # cert for 127.0.0.1 / localhost / ::1
        fetch_list(server.url("/l"), trust_anchor=TrustAnchor.IGTF, ca_dir=pki.ca_dir)

The subject hash is computed with M2Crypto (``X509_NAME_hash``, the same value as
``openssl x509 -hash``). EC P-256 keys keep generation fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_NAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")
WRONG_HOST = "wrong-host.example.invalid"


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files making up one test PKI."""

    __test__ = False

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path  # for 127.0.0.1, ::1 and localhost
    server_key: Path
    wrong_host_cert: Path  # same CA, for WRONG_HOST only
    wrong_host_key: Path
    ca_dir: Path  # c_rehash'ed directory holding the CA as <hash>.0
    ca_hash: str

    def server_context(self, wrong_host: bool = False) -> ssl.SSLContext:
        """A server-side SSLContext presenting the (right or wrong host) certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if wrong_host:
            context.load_cert_chain(self.wrong_host_cert, self.wrong_host_key)
        else:
            context.load_cert_chain(self.server_cert, self.server_key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vmcatcher tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return builder.not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(
        now + dt.timedelta(days=2)
    )


def make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return _validity(builder).sign(key, hashes.SHA256()), key


def make_server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    dns_names, ip_addresses = list(dns_names), list(ip_addresses)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else ip_addresses[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    return _validity(builder).sign(ca_key, hashes.SHA256()), key


def subject_hash(cert_path: Path) -> str:
    """OpenSSL's subject hash of a PEM certificate (the ``<hash>`` in ``<hash>.0``)."""
    from M2Crypto import X509

    cert = X509.load_cert(str(cert_path))  # keep alive: the name points into it
    return f"{cert.get_subject().as_hash():08x}"


def write_hashed_dir(directory: Path, ca_certs: Iterable[Path]) -> Path:
    """Fill ``directory`` like ``c_rehash``: each CA as ``<hash>.N`` (a copy, not a link)."""
    directory.mkdir(parents=True, exist_ok=True)
    for cert in ca_certs:
        digest = subject_hash(cert)
        number = 0
        while (directory / f"{digest}.{number}").exists():
            number += 1
        (directory / f"{digest}.{number}").write_bytes(Path(cert).read_bytes())
    return directory


def make_test_pki(directory: Path, ca_name: str = "vmcatcher test CA") -> TestPKI:
    """Create CA, server and wrong-host certificates plus a hashed CA dir in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(ca_name)
    server_cert, server_key = make_server_cert(ca_cert, ca_key, LOCAL_NAMES, LOCAL_ADDRESSES)
    wrong_cert, wrong_key = make_server_cert(ca_cert, ca_key, [WRONG_HOST])
    paths = {
        "ca_cert": directory / "ca.pem",
        "ca_key": directory / "ca.key",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "wrong_host_cert": directory / "wrong-host.pem",
        "wrong_host_key": directory / "wrong-host.key",
    }
    _write_cert(ca_cert, paths["ca_cert"])
    _write_key(ca_key, paths["ca_key"])
    _write_cert(server_cert, paths["server_cert"])
    _write_key(server_key, paths["server_key"])
    _write_cert(wrong_cert, paths["wrong_host_cert"])
    _write_key(wrong_key, paths["wrong_host_key"])
    ca_dir = write_hashed_dir(directory / "certificates", [paths["ca_cert"]])
    return TestPKI(
        directory=directory,
        ca_dir=ca_dir,
        ca_hash=subject_hash(paths["ca_cert"]),
        **paths,
    )
