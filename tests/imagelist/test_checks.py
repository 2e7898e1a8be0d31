"""Post-verification checks (spec 4.3): each rule, the messages, and the order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from vmcatcher.errors import (
    Code,
    CreatedInFutureError,
    EndorserMismatchError,
    IdentifierMismatchError,
    ListExpiredError,
)
from vmcatcher.imagelist import (
    check_dates,
    check_endorser,
    check_identifier,
    check_update,
    decode_image_list,
    uri_matches,
)
from vmcatcher.trust import VerifiedMessage, load_trust_store, verify_message

DN = "/DC=org/DC=example-grid/O=People/CN=Jane Endorser"
CA = "/DC=org/DC=example-grid/CN=Example Grid Test CA"
LIST_ID = "251c2259-fb08-4892-80fa-13b739813a90"
URI = "https://images.example-grid.org/image.list"
NOW = datetime(2026, 12, 1, 12, 0, 0)
SIGNED = VerifiedMessage(b"{}", DN, CA, "4097")


def _list(dn=DN, ca=CA, identifier=LIST_ID, uri=URI, created=None, expires=None):
    document = make_image_list(
        identifier,
        uri,
        "1",
        [make_image("c8bb4e9b-8e63-4ea5-8dca-979b3686e229")],
        dn,
        ca,
        created=created or NOW - timedelta(days=1),
        expires=expires or NOW + timedelta(days=27),
    )
    return decode_image_list(list_payload(document))


# --- endorser (12) ------------------------------------------------------------------------------


def test_matching_endorser_passes():
    check_endorser(_list(), SIGNED)


def test_dn_mismatch_is_12_with_both_dns():
    """The list's hv:dn is what was expected; the signer's subject is what was downloaded."""
    with pytest.raises(EndorserMismatchError) as caught:
        check_endorser(_list(dn="/DC=org/DC=example-grid/O=People/CN=Mallory"), SIGNED)
    assert caught.value.code == Code.ENDORSER_MISMATCH == 12
    text = str(caught.value)
    assert text.startswith(f"Endorser DN does not match signature for '{LIST_ID}'")
    assert "Expected DN '/DC=org/DC=example-grid/O=People/CN=Mallory'" in text
    assert f"Downloaded DN '{DN}'" in text


def test_ca_mismatch_is_12():
    with pytest.raises(EndorserMismatchError, match="list hv:ca does not match signature") as c:
        check_endorser(_list(ca="/DC=org/DC=example-grid/CN=Other CA"), SIGNED)
    assert "Expected CA '/DC=org/DC=example-grid/CN=Other CA'" in str(c.value)
    assert f"Downloaded CA '{CA}'" in str(c.value)


def test_dn_is_checked_before_ca():
    with pytest.raises(EndorserMismatchError, match="Endorser DN"):
        check_endorser(_list(dn="/CN=x", ca="/CN=y"), SIGNED)


def test_endorser_comparison_tolerates_openssl3_escaping():
    signer = VerifiedMessage(b"{}", "/DC=org/OU=http:\\/\\/x.org/CN=J\\xC3\\xBCrgen", CA, "1")
    check_endorser(_list(dn="/DC=org/OU=http://x.org/CN=Jürgen"), signer)


# --- uri (warning only) -------------------------------------------------------------------------


def test_uri_matches():
    image_list = _list()
    assert uri_matches(image_list, URI)
    assert not uri_matches(image_list, "https://elsewhere.example/image.list")


# --- identifier (31) ----------------------------------------------------------------------------


def test_identifier_mismatch_is_31():
    check_identifier(_list(), LIST_ID)
    with pytest.raises(IdentifierMismatchError) as caught:
        check_identifier(_list(), "other-id")
    assert caught.value.code == 31
    assert "Expected identifier 'other-id'" in str(caught.value)
    assert f"Downloaded identifier '{LIST_ID}'" in str(caught.value)


# --- dates (33, 34) -----------------------------------------------------------------------------


def test_dates_inside_window_pass():
    check_dates(_list(), NOW)


def test_created_in_future_is_33():
    with pytest.raises(CreatedInFutureError) as caught:
        check_dates(_list(created=NOW + timedelta(seconds=1)), NOW)
    assert caught.value.code == 33
    assert str(caught.value).startswith(
        f"Image list '{LIST_ID}' has an invalid creation date as in the future."
    )


def test_expired_is_34():
    with pytest.raises(ListExpiredError) as caught:
        check_dates(_list(expires=NOW - timedelta(seconds=1)), NOW)
    assert caught.value.code == 34
    assert str(caught.value).startswith(f"Downloaded image list '{LIST_ID}' has expired.")


def test_boundaries_are_inclusive():
    check_dates(_list(created=NOW, expires=NOW), NOW)


def test_aware_now_is_converted_to_utc():
    aware = datetime(2026, 12, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    check_dates(_list(created=NOW, expires=NOW), aware)


def test_default_now_is_the_clock():
    with pytest.raises(ListExpiredError):
        check_dates(_list(created="2001-01-01T00:00:00Z", expires="2001-02-01T00:00:00Z"))


# --- order (spec 4.3) ---------------------------------------------------------------------------

EVERYTHING_WRONG = {
    "dn": "/CN=wrong",
    "ca": "/CN=wrong CA",
    "identifier": "wrong-id",
    "uri": "https://elsewhere.example/",
    "created": NOW + timedelta(days=2),
    "expires": NOW - timedelta(days=2),
}


@pytest.mark.parametrize(
    ("fixed", "expected"),
    [
        ((), EndorserMismatchError),  # 12: DN first
        (("dn",), EndorserMismatchError),  # 12: then CA
        (("dn", "ca"), IdentifierMismatchError),  # uri only warns, then 31
        (("dn", "ca", "identifier"), CreatedInFutureError),  # 33 before 34
        (("dn", "ca", "identifier", "created"), ListExpiredError),
    ],
)
def test_check_order(fixed, expected):
    wrong = {k: v for k, v in EVERYTHING_WRONG.items() if k not in fixed}
    with pytest.raises(expected) as caught:
        check_update(_list(**wrong), SIGNED, expected_identifier=LIST_ID, expected_uri=URI, now=NOW)
    if fixed == ():
        assert "Endorser DN" in str(caught.value)
    if fixed == ("dn",):
        assert "hv:ca" in str(caught.value)


def test_uri_mismatch_alone_is_reported_not_raised():
    image_list = _list(uri="https://elsewhere.example/")
    kwargs = {"expected_identifier": LIST_ID, "now": NOW}
    assert check_update(image_list, SIGNED, expected_uri=URI, **kwargs) is False
    assert check_update(_list(), SIGNED, expected_uri=URI, **kwargs) is True
    assert check_update(image_list, SIGNED, **kwargs) is True  # nothing to compare with


def test_whole_pipeline_on_a_really_signed_list(tmp_path):
    pki = TestPKI()
    store = load_trust_store(pki.write_ca_dir(tmp_path / "certs"))
    document = make_image_list(
        LIST_ID, URI, "1", [make_image()], pki.endorser.subject, pki.endorser.issuer
    )
    verified = verify_message(sign(list_payload(document), pki.endorser), store)
    image_list = decode_image_list(verified.payload)
    assert check_update(image_list, verified, expected_identifier=LIST_ID, expected_uri=URI)
    # Signed by someone else than the endorser it names: 12.
    forged_doc = make_image_list(
        LIST_ID, URI, "1", [make_image()], pki.endorser.subject, pki.endorser.issuer
    )
    other = verify_message(sign(list_payload(forged_doc), pki.intermediate_endorser), store)
    with pytest.raises(EndorserMismatchError):
        check_update(decode_image_list(other.payload), other, expected_identifier=LIST_ID)


# --- rollback (17) -------------------------------------------------------------------------


def test_check_version_refuses_a_rollback_with_17():
    from vmcatcher.errors import LowerVersionError
    from vmcatcher.imagelist.checks import check_version

    with pytest.raises(LowerVersionError) as caught:
        check_version("list-id", "1.10", "1.9")
    assert caught.value.code == 17
    assert str(caught.value) == (
        'Downloaded version "list-id" version "1.9" has lower version number than the old '
        'version "1.10".'
    )


@pytest.mark.parametrize(
    ("newest", "downloaded", "same"),
    [(None, "1", False), ("1", "2", False), ("1.9", "1.10", False), ("2", "2", True)],
)
def test_check_version_accepts_newer_and_flags_the_same_number(newest, downloaded, same):
    from vmcatcher.imagelist.checks import check_version

    assert check_version("list-id", newest, downloaded) is same
