"""verify_message against a real test PKI: one test per accepted or refused case."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from cryptography import x509

from tests.support.pki import TestPKI, make_crl, sign, sign_multi, signed_form
from vmcatcher.errors import (
    Code,
    NamespaceError,
    RevocationError,
    SignatureError,
    TrustError,
)
from vmcatcher.trust import CrlPolicy, VerifiedMessage, extract_payload_unverified, verify_message

ROOT = "/DC=org/DC=example-grid/CN=Example Grid Test CA"
INTERMEDIATE = "/DC=org/DC=example-grid/CN=Example Grid Issuing CA"
RELAXED = CrlPolicy.RELAXED


# --- the good case --------------------------------------------------------------------


def test_good_list_verifies_with_exact_payload_and_slash_dns(pki, store, payload):
    result = verify_message(sign(payload, pki.endorser), store)
    assert isinstance(result, VerifiedMessage)
    assert result.payload == signed_form(payload)
    assert result.signer_subject == "/DC=org/DC=example-grid/O=People/CN=Jane Endorser"
    assert result.signer_issuer == ROOT
    assert result.serial == str(pki.endorser.serial)


def test_result_is_frozen(pki, store, payload):
    result = verify_message(sign(payload, pki.endorser), store)
    with pytest.raises(AttributeError):
        result.payload = b"other"  # type: ignore[misc]


@pytest.mark.parametrize("digest", ["sha1", "sha256"])
@pytest.mark.parametrize(
    "protocol", ["application/pkcs7-signature", "application/x-pkcs7-signature"]
)
@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
def test_digests_protocols_and_opaque_signing(pki, store, payload, digest, protocol, detached):
    message = sign(payload, pki.endorser, digest=digest, protocol=protocol, detached=detached)
    if detached:
        assert f'protocol="{protocol}"'.encode() in message
        assert f'micalg="{"sha1" if digest == "sha1" else "sha-256"}"'.encode() in message
    else:
        assert protocol.replace("signature", "mime").encode() in message
    assert verify_message(message, store).payload == signed_form(payload)


def test_intermediate_chain_verifies(pki, store, payload):
    result = verify_message(sign(payload, pki.intermediate_endorser), store)
    assert result.signer_issuer == INTERMEDIATE
    assert result.payload == signed_form(payload)


def test_bytearray_input_is_accepted(pki, store, payload):
    result = verify_message(bytearray(sign(payload, pki.endorser)), store)
    assert result.payload == signed_form(payload)


# --- signature and structure -------------------------------------------------------------


def test_tampered_body_fails(pki, store, payload):
    message = sign(payload, pki.endorser).replace(b'"3.0.1"', b'"3.0.2"')
    with pytest.raises(SignatureError, match=r"does not verify.*changed after signing"):
        verify_message(message, store)


def test_tampered_body_fails_in_relaxed_mode_too(pki, make_store, payload):
    message = sign(payload, pki.endorser).replace(b'"3.0.1"', b'"3.0.2"')
    with pytest.raises(SignatureError, match="does not verify"):
        verify_message(message, make_store(root_crl="missing"), crl_policy=RELAXED)


def test_two_signers_fail(pki, store, payload):
    message = sign_multi(payload, [pki.endorser, pki.intermediate_endorser])
    with pytest.raises(SignatureError, match="2 signers; exactly one is required"):
        verify_message(message, store)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"   \n", b"hello world", b'{"hv:imagelist": {}}', b"\x00\xff" * 100],
    ids=["empty", "blank", "text", "json", "binary"],
)
def test_garbage_input_fails(store, garbage):
    with pytest.raises(SignatureError, match="not an S/MIME signed message"):
        verify_message(garbage, store)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.8, 0.95, 0.99])
def test_truncated_input_fails(pki, store, payload, keep):
    message = sign(payload, pki.endorser)
    with pytest.raises(SignatureError):
        verify_message(message[: int(len(message) * keep)], store)


def test_truncated_opaque_input_fails(pki, store, payload):
    message = sign(payload, pki.endorser, detached=False)
    with pytest.raises(SignatureError, match="not an S/MIME signed message"):
        verify_message(message[: len(message) // 2], store)


def test_str_input_is_a_programming_error(store):
    with pytest.raises(TypeError):
        verify_message("text", store)  # type: ignore[arg-type]


# --- chain ----------------------------------------------------------------------------------


def test_signer_from_unknown_ca_fails(pki, store, payload):
    with pytest.raises(SignatureError, match="Unknown Test CA', which is not a trusted CA"):
        verify_message(sign(payload, pki.stranger), store)


def test_self_signed_signer_fails(pki, store, payload):
    with pytest.raises(SignatureError, match="not a trusted CA"):
        verify_message(sign(payload, pki.unknown_ca), store)


def test_cert_with_root_name_but_other_key_is_not_the_root(pki, store, payload):
    # forger has the root's exact subject; a leaf signed by it must not chain to the root.
    impostor = pki.leaf("impostor", "/DC=org/DC=example-grid/O=People/CN=Imp", issuer=pki.forger)
    with pytest.raises(SignatureError, match="not a trusted CA"):
        verify_message(sign(payload, impostor), store)


def test_intermediate_missing_from_directory_fails(pki, make_store, payload):
    store = make_store(include_intermediate=False)
    with pytest.raises(SignatureError, match="Issuing CA', which is not a trusted CA"):
        verify_message(sign(payload, pki.intermediate_endorser), store)


def test_intermediate_embedded_in_message_is_not_trusted(pki, make_store, payload):
    store = make_store(include_intermediate=False)
    message = sign(payload, pki.intermediate_endorser, extra_certs=[pki.intermediate])
    with pytest.raises(SignatureError, match="not a trusted CA"):
        verify_message(message, store)


def test_ca_rollover_same_subject_two_keys(pki, make_store, payload):
    # <hash>.0 is another certificate with the root's name (the "old" CA), <hash>.1 the real one.
    h = pki.root.hash
    store = make_store(
        files={
            f"{h}.0": pki.forger.cert_pem,
            f"{h}.1": pki.root.cert_pem,
            f"{h}.r1": pki.crl(pki.forger),  # the old CA's CRL: not forged, just not ours
        }
    )
    assert verify_message(sign(payload, pki.endorser), store).signer_issuer == ROOT
    with pytest.raises(RevocationError, match="revoked"):
        verify_message(sign(payload, pki.revoked), store)


# --- validity windows and purpose ---------------------------------------------------------------


def test_expired_signer_fails(pki, store, payload):
    with pytest.raises(SignatureError, match="Old Timer' expired on"):
        verify_message(sign(payload, pki.expired), store)


def test_not_yet_valid_signer_fails(pki, store, payload):
    with pytest.raises(SignatureError, match="Future Person' is not valid before"):
        verify_message(sign(payload, pki.not_yet_valid), store)


def test_now_parameter_moves_the_clock(pki, store, payload):
    message = sign(payload, pki.not_yet_valid)
    later = pki.now.replace(tzinfo=None) + timedelta(days=31)
    # In 31 days the future signer is valid, but the CRLs (30 days) are stale.
    with pytest.raises(RevocationError, match="expired on"):
        verify_message(message, store, now=later)
    with pytest.raises(SignatureError, match="expired on"):
        verify_message(sign(payload, pki.endorser), store, now=later + timedelta(days=400))
    earlier = pki.now.replace(tzinfo=None) - timedelta(days=2)
    with pytest.raises(SignatureError, match="Jane Endorser' is not valid before"):
        verify_message(sign(payload, pki.endorser), store, now=earlier)


def test_now_inside_every_window_verifies_without_the_system_clock(pki, store, payload):
    later = pki.now.replace(tzinfo=None) + timedelta(days=31)
    with pytest.raises(RevocationError):
        verify_message(sign(payload, pki.not_yet_valid), store, now=later)
    result = verify_message(
        sign(payload, pki.not_yet_valid), store, now=later, crl_policy=CrlPolicy.OFF
    )
    assert result.signer_subject.endswith("CN=Future Person")


def test_signer_without_smime_purpose_fails(pki, store, payload):
    with pytest.raises(SignatureError, match="may not be used for S/MIME signing"):
        verify_message(sign(payload, pki.hostonly), store)


# --- namespaces ---------------------------------------------------------------------------------


def test_signer_outside_ca_namespace_fails(pki, store, payload):
    with pytest.raises(NamespaceError, match="Outside Namespace' is outside the namespace of CA"):
        verify_message(sign(payload, pki.outside), store)


@pytest.mark.parametrize(
    ("namespaces", "signing_policy"), [(True, False), (False, True)], ids=["ns", "sp"]
)
def test_each_policy_file_alone_is_enforced(pki, make_store, payload, namespaces, signing_policy):
    store = make_store(namespaces=namespaces, signing_policy=signing_policy)
    assert verify_message(sign(payload, pki.endorser), store)
    with pytest.raises(NamespaceError):
        verify_message(sign(payload, pki.outside), store)


def test_ca_without_any_policy_certifies_nothing(pki, make_store, payload):
    store = make_store(namespaces=False, signing_policy=False)
    with pytest.raises(NamespaceError, match="has no namespace policy"):
        verify_message(sign(payload, pki.endorser), store)


def test_namespace_is_enforced_for_intermediates_too(pki, make_store, payload):
    # The root may only certify /DC=org/DC=example-grid/O=People/*: not the intermediate.
    store = make_store(
        files={
            f"{pki.root.hash}.namespaces": TestPKI.namespaces_text(
                pki.root, "/DC=org/DC=example-grid/O=People/.*"
            )
        }
    )
    assert verify_message(sign(payload, pki.endorser), store)
    with pytest.raises(NamespaceError, match="Issuing CA' is outside the namespace"):
        verify_message(sign(payload, pki.intermediate_endorser), store)


def test_both_policy_files_must_agree(pki, make_store, payload):
    store = make_store(
        files={
            f"{pki.root.hash}.signing_policy": TestPKI.signing_policy_text(
                pki.root, "/DC=org/DC=example-grid/O=Hosts/*"
            )
        }
    )
    with pytest.raises(NamespaceError, match="no cond_subjects pattern matches"):
        verify_message(sign(payload, pki.endorser), store)


# --- CRLs: strict -------------------------------------------------------------------------------


def test_revoked_signer_fails(pki, store, payload):
    with pytest.raises(RevocationError, match="Rex Revoked' has been revoked"):
        verify_message(sign(payload, pki.revoked), store)


def test_revoked_by_intermediate_crl_fails(pki, store, payload):
    with pytest.raises(RevocationError, match="Ida Revoked' has been revoked"):
        verify_message(sign(payload, pki.intermediate_revoked), store)


def test_intermediate_revoked_by_root_crl_fails(pki, make_store, payload):
    store = make_store(revoke_intermediate=True)
    with pytest.raises(RevocationError, match="Issuing CA' has been revoked"):
        verify_message(sign(payload, pki.intermediate_endorser), store)


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("missing", "no CRL file"),
        ("expired", "expired on"),
        ("not_yet_valid", "is not valid before"),
        ("garbage", "cannot be read"),
    ],
)
def test_strict_refuses_unusable_root_crl(pki, make_store, payload, state, text):
    store = make_store(root_crl=state)
    with pytest.raises(RevocationError, match=f"CA '{ROOT}': .*{text}.*run fetch-crl"):
        verify_message(sign(payload, pki.endorser), store)


def test_strict_needs_the_crl_of_every_ca_in_the_chain(pki, make_store, payload):
    store = make_store(root_crl="missing")
    with pytest.raises(RevocationError, match=f"CA '{ROOT}'"):
        verify_message(sign(payload, pki.intermediate_endorser), store)
    store = make_store(intermediate_crl="expired")
    with pytest.raises(RevocationError, match=f"CA '{INTERMEDIATE}'"):
        verify_message(sign(payload, pki.intermediate_endorser), store)


def test_strict_is_the_default(pki, make_store, payload):
    with pytest.raises(RevocationError):
        verify_message(sign(payload, pki.endorser), make_store(root_crl="missing"))


@pytest.mark.parametrize("policy", [CrlPolicy.STRICT, CrlPolicy.RELAXED])
def test_forged_crl_fails(pki, make_store, payload, policy):
    store = make_store(root_crl="forged")
    for signer in (pki.endorser, pki.revoked):  # the forged CRL would "unrevoke" Rex
        with pytest.raises(RevocationError, match=r"signature does not verify.*forged"):
            verify_message(sign(payload, signer), store, crl_policy=policy)


# --- CRLs: relaxed and off ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("missing", "no CRL file"),
        ("expired", "expired on"),
        ("not_yet_valid", "not valid before"),
        ("garbage", "cannot be read"),
    ],
)
def test_relaxed_accepts_unusable_crl_with_a_warning_naming_the_ca(
    pki, make_store, payload, caplog, state, text
):
    store = make_store(root_crl=state)
    with caplog.at_level(logging.DEBUG):
        result = verify_message(sign(payload, pki.endorser), store, crl_policy=RELAXED)
    assert result.payload == signed_form(payload)
    assert caplog.records == [], "the verifying core decides; it does not log"
    [warning] = result.crl_warnings
    assert warning.startswith("CRL policy relaxed: accepting")
    assert ROOT in warning
    assert text in warning


def test_relaxed_still_refuses_a_revoked_signer(pki, make_store, payload):
    with pytest.raises(RevocationError, match="has been revoked"):
        verify_message(sign(payload, pki.revoked), make_store(), crl_policy=RELAXED)
    # ... even when the CRL listing it has expired.
    with pytest.raises(RevocationError, match="has been revoked"):
        verify_message(
            sign(payload, pki.revoked), make_store(root_crl="expired"), crl_policy=RELAXED
        )


def test_relaxed_warns_for_each_ca_of_the_chain(pki, make_store, payload):
    store = make_store(root_crl="missing", intermediate_crl="expired")
    result = verify_message(sign(payload, pki.intermediate_endorser), store, crl_policy=RELAXED)
    messages = result.crl_warnings
    assert len(messages) == 2
    assert any(INTERMEDIATE in m and "expired on" in m for m in messages)
    assert any(ROOT in m and "no CRL file" in m for m in messages)


def test_relaxed_with_current_crls_warns_nothing(pki, store, payload, caplog):
    with caplog.at_level(logging.DEBUG):
        result = verify_message(sign(payload, pki.endorser), store, crl_policy=RELAXED)
    assert result.crl_warnings == ()
    assert caplog.records == []


def test_off_ignores_crls_entirely(pki, make_store, payload):
    for state in ("missing", "expired", "forged"):
        store = make_store(root_crl=state)
        assert verify_message(sign(payload, pki.endorser), store, crl_policy=CrlPolicy.OFF)
    # off means off: not even a current CRL is consulted.
    assert verify_message(sign(payload, pki.revoked), make_store(), crl_policy=CrlPolicy.OFF)


def test_off_still_checks_everything_else(pki, store, payload):
    off = CrlPolicy.OFF
    with pytest.raises(NamespaceError):
        verify_message(sign(payload, pki.outside), store, crl_policy=off)
    with pytest.raises(SignatureError):
        verify_message(sign(payload, pki.stranger), store, crl_policy=off)
    with pytest.raises(SignatureError):
        verify_message(
            sign(payload, pki.endorser).replace(b"3.0.1", b"3.0.2"), store, crl_policy=off
        )


# --- error typing -------------------------------------------------------------------------------


def test_every_trust_failure_is_code_11(pki, store, payload):
    cases = [
        b"garbage",
        sign(payload, pki.revoked),
        sign(payload, pki.outside),
        sign(payload, pki.stranger),
    ]
    for message in cases:
        with pytest.raises(TrustError) as caught:
            verify_message(message, store)
        assert caught.value.code == Code.NOT_VERIFIED == 11
        assert "\n" not in str(caught.value)


# --- unverified extraction ----------------------------------------------------------------------


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "opaque"])
def test_extract_payload_unverified(pki, payload, detached):
    # Even a signer the store would refuse: nothing is verified here.
    message = sign(payload, pki.stranger, detached=detached)
    assert extract_payload_unverified(message) == signed_form(payload)


@pytest.mark.parametrize("garbage", [b"", b"not smime", b"MIME-Version: 1.0\n\n"])
def test_extract_payload_unverified_refuses_garbage(garbage):
    with pytest.raises(SignatureError):
        extract_payload_unverified(garbage)


def _ca_only_crl(pki: TestPKI) -> bytes:
    """A correctly signed, current root CRL whose scope excludes end-entity certificates:
    our file checks find it fine, OpenSSL cannot use it for the signer."""
    scope = x509.IssuingDistributionPoint(
        full_name=None,
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=True,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    now = pki.now
    return make_crl(
        pki.root,
        last_update=now - timedelta(days=1),
        next_update=now + timedelta(days=30),
        extensions=[(scope, True)],
    )


def test_strict_fails_when_openssl_cannot_use_the_crl(pki, make_store, payload):
    store = make_store(files={f"{pki.root.hash}.r0": _ca_only_crl(pki)})
    with pytest.raises(RevocationError, match=r"cannot check revocation.*different CRL scope"):
        verify_message(sign(payload, pki.endorser), store)


def test_relaxed_names_the_ca_when_openssl_cannot_use_the_crl(pki, make_store, payload):
    store = make_store(files={f"{pki.root.hash}.r0": _ca_only_crl(pki)})
    result = verify_message(sign(payload, pki.endorser), store, crl_policy=RELAXED)
    messages = result.crl_warnings
    assert len(messages) == 1
    assert ROOT in messages[0]
    assert "was not usable: different CRL scope" in messages[0]
