"""dn_equal: slash-form DN comparison robust to OpenSSL 3 escaping, but not loose."""

from __future__ import annotations

import pytest

from tests.support.pki import sign
from vmcatcher.trust import dn_equal, dn_key, dn_unescaped, verify_message

JANE = "/DC=org/DC=example-grid/O=People/CN=Jane Endorser"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (JANE, JANE),
        ("/OU=http:\\/\\/www.usertrust.com/CN=x", "/OU=http://www.usertrust.com/CN=x"),
        ("/CN=a\\+b", "/CN=a+b"),
        ("/CN=J\\xC3\\xBCrgen", "/CN=Jürgen"),
        ("/CN=J\\xc3\\xbcrgen", "/CN=J\\xC3\\xBCrgen"),
        ("/DC=ch/emailAddress=a@b.ch", "/DC=ch/Email=a@b.ch"),
        ("/DC=ch/emailAddress=a@b.ch", "/DC=ch/E=a@b.ch"),
        ("/DC=ch/UID=jdoe", "/DC=ch/USERID=jdoe"),
        ("/dc=ch/cn=x", "/DC=ch/CN=x"),
        ("/CN=x+L=Geneva", "/CN=x+L=Geneva"),
        ("not a dn", "not a dn"),
    ],
)
def test_equal(a, b):
    assert dn_equal(a, b)
    assert dn_equal(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (JANE, JANE + " "),
        (JANE, JANE.lower()),  # values are case-sensitive
        (JANE, "/DC=org/DC=example-grid/CN=Jane Endorser"),
        # A value containing "/CN=" must not pass for two RDNs (spoofing).
        ("/DC=org/DC=example-grid/O=People\\/CN=Jane Endorser", JANE),
        # Multi-valued RDN vs value containing "+".
        ("/CN=x\\+L=Geneva", "/CN=x+L=Geneva"),
        ("/DC=org/CN=a", "/DC=org/CN=a/CN=b"),
        ("", JANE),
        ("not a dn", "not  a dn"),
        (JANE, None),
        (None, None),
    ],
)
def test_not_equal(a, b):
    assert not dn_equal(a, b)
    assert not dn_equal(b, a)


def test_key_structure():
    assert dn_key("/DC=org/CN=a+L=b") == ((("dc", b"org"),), (("cn", b"a"), ("l", b"b")))
    assert dn_key("/OU=http://x.org/CN=y") == ((("ou", b"http://x.org"),), (("cn", b"y"),))
    assert dn_key("no slash") is None
    assert dn_key("/") is None
    assert dn_key("/novalue") is None


def test_unescaped_is_the_openssl1_form():
    assert dn_unescaped("/OU=http:\\/\\/x/CN=a\\+b") == "/OU=http://x/CN=a+b"


SPECIAL = [
    ("DC", "org"),
    ("DC", "example-grid"),
    ("OU", "http://www.usertrust.com"),
    ("CN", "Jürgen + Co"),
]


def test_real_openssl3_subject_matches_the_plain_spelling(pki, store, payload):
    """A certificate whose DN OpenSSL 3 prints with escapes verifies, and its subject
    equals the hv:dn an old publisher (OpenSSL 1.x) would have written."""
    special = pki.leaf("special", SPECIAL)
    assert special.subject == (
        "/DC=org/DC=example-grid/OU=http:\\/\\/www.usertrust.com/CN=J\\xC3\\xBCrgen \\+ Co"
    )
    result = verify_message(sign(payload, special), store)  # namespace pattern matches too
    assert dn_equal(
        result.signer_subject, "/DC=org/DC=example-grid/OU=http://www.usertrust.com/CN=Jürgen + Co"
    )
    assert dn_equal(result.signer_subject, special.subject)


def test_real_spoof_attempt_is_not_equal(pki):
    spoof = pki.leaf(
        "spoof", [("DC", "org"), ("DC", "example-grid"), ("O", "People/CN=Jane Endorser")]
    )
    assert spoof.subject == "/DC=org/DC=example-grid/O=People\\/CN=Jane Endorser"
    assert not dn_equal(spoof.subject, pki.endorser.subject)
