"""Loading Grid CA directories: errors, laziness, IGTF layouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.pki import TestPKI, sign
from vmcatcher.errors import SignatureError, TrustStoreError
from vmcatcher.trust import load_trust_store, verify_message


def test_missing_directory(tmp_path):
    with pytest.raises(TrustStoreError, match=r"CA directory '.*nowhere' does not exist"):
        load_trust_store(tmp_path / "nowhere")


def test_not_a_directory(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(TrustStoreError, match="is not a directory"):
        load_trust_store(file)


def test_directory_without_ca_certificates(tmp_path):
    (tmp_path / "README").write_text("nothing here")
    (tmp_path / "6e7ebcdb.r0").write_text("a CRL alone is not enough")
    with pytest.raises(TrustStoreError, match="holds no CA certificates"):
        load_trust_store(tmp_path)


def test_string_path_and_counts(pki, tmp_path):
    store = load_trust_store(str(pki.write_ca_dir(tmp_path / "certs")))
    assert store.path == tmp_path / "certs"
    assert store.ca_file_count == 2


def test_unrelated_files_are_parsed_only_when_needed(pki, tmp_path, payload):
    """Loading is a directory listing: 50 corrupt CA files do not cost or break anything
    until a chain actually leads to them."""
    junk = {f"{n:08x}.0": b"-----BEGIN CERTIFICATE-----\njunk\n" for n in range(50)}
    junk.update({f"{n:08x}.r0": b"junk" for n in range(50)})
    directory = pki.write_ca_dir(tmp_path / "certs", files=junk)
    store = load_trust_store(directory)
    assert verify_message(sign(payload, pki.endorser), store)
    assert store.problems == []


def test_corrupt_ca_file_on_the_chain_is_reported(pki, tmp_path, payload):
    store = load_trust_store(
        pki.write_ca_dir(tmp_path / "certs", files={f"{pki.root.hash}.0": b"garbage"})
    )
    # The unreadable file is named, not reported as an unknown CA (issue 11).
    with pytest.raises(SignatureError, match=r"cannot be used: .*\.0: not a readable certificate"):
        verify_message(sign(payload, pki.endorser), store)
    assert any("not a readable certificate" in p for p in store.problems)


def test_igtf_alias_layout_with_symlinks_and_self(pki, tmp_path, payload):
    """IGTF style: <alias>.pem/.namespaces/.signing_policy plus <hash>.* symlinks,
    and a namespaces file using 'TO Issuer SELF'."""
    directory = tmp_path / "certs"
    directory.mkdir()
    for alias, ca in (("ExampleGridTestCA", pki.root), ("ExampleGridIssuingCA", pki.intermediate)):
        (directory / f"{alias}.pem").write_bytes(ca.cert_pem)
        (directory / f"{alias}.namespaces").write_text(
            'TO Issuer SELF \\\n  PERMIT Subject "/DC=org/DC=example-grid/.*"\n'
        )
        (directory / f"{alias}.signing_policy").write_text(TestPKI.signing_policy_text(ca))
        for suffix in ("pem", "namespaces", "signing_policy"):
            target = {"pem": "0"}.get(suffix, suffix)
            (directory / f"{ca.hash}.{target}").symlink_to(f"{alias}.{suffix}")
        (directory / f"{ca.hash}.r0").write_bytes(pki.crl(ca))
    store = load_trust_store(directory)
    assert store.ca_file_count == 2  # the .pem files are the link targets, not extra CAs
    assert verify_message(sign(payload, pki.intermediate_endorser), store)
    with pytest.raises(Exception, match="outside the namespace"):
        verify_message(sign(payload, pki.outside), store)
    assert store.problems == []


def test_pem_without_hash_link_is_found(pki, tmp_path, payload):
    h = pki.root.hash
    directory = pki.write_ca_dir(
        tmp_path / "certs",
        include_intermediate=False,
        files={f"{h}.0": None, "ExampleGridTestCA.pem": pki.root.cert_pem},
    )
    store = load_trust_store(directory)
    assert store.ca_file_count == 1
    assert verify_message(sign(payload, pki.endorser), store).signer_issuer == pki.root.subject


def test_der_ca_certificate_is_accepted(pki, tmp_path, payload):
    der = pki.root.cert.public_bytes(serialization.Encoding.DER)
    directory = pki.write_ca_dir(tmp_path / "certs", files={f"{pki.root.hash}.0": der})
    assert verify_message(sign(payload, pki.endorser), load_trust_store(directory))


def test_non_ca_certificate_in_directory_is_not_an_issuer(pki, tmp_path, payload):
    # Put Jane's own (end-entity) certificate under the hash a child of hers would look up.
    child = pki.leaf("child", "/DC=org/DC=example-grid/O=People/CN=Child", issuer=pki.endorser)
    directory = pki.write_ca_dir(
        tmp_path / "certs", files={f"{pki.endorser.hash}.0": pki.endorser.cert_pem}
    )
    store = load_trust_store(directory)
    with pytest.raises(SignatureError, match=r"cannot be used: .*\.0: not a CA certificate"):
        verify_message(sign(payload, child), store)
    assert any("not a CA certificate" in p for p in store.problems)


def test_importing_the_package_does_not_load_m2crypto():
    code = "import sys, vmcatcher.trust, vmcatcher.imagelist; print('M2Crypto' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"
