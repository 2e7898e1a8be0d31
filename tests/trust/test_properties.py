"""Property tests: mutated S/MIME messages never escape as anything but typed errors,
and whatever still verifies carries exactly the content that was signed."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from tests.support.pki import sign, signed_form
from vmcatcher.errors import SignatureError, TrustError
from vmcatcher.trust import extract_payload_unverified, verify_message

SETTINGS = examples(2000)


@pytest.fixture(scope="module")
def messages(pki, payload):
    return [
        sign(payload, pki.endorser),
        sign(payload, pki.intermediate_endorser, digest="sha1"),
        sign(payload, pki.endorser, detached=False),
        sign(payload, pki.endorser, protocol="application/x-pkcs7-signature"),
    ]


_operation = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate", "crlf"]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.integers(min_value=1, max_value=64),
    st.binary(min_size=1, max_size=16)
    | st.sampled_from([b"\n", b"\r\n", b"--", b"=", b"Content-Type: text/plain\n", b"\x00"]),
)


def _mutate(message: bytes, operations) -> bytes:
    data = bytearray(message)
    for kind, where, length, blob in operations:
        pos = int(where * len(data))
        if kind == "flip" and data:
            pos = min(pos, len(data) - 1)
            data[pos] ^= blob[0] or 1
        elif kind == "delete":
            del data[pos : pos + length]
        elif kind == "insert":
            data[pos:pos] = blob
        elif kind == "truncate":
            del data[pos:]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + length]
        elif kind == "crlf":
            data = bytearray(bytes(data).replace(b"\n", b"\r\n", 1))
    return bytes(data)


@SETTINGS
@given(
    which=st.integers(min_value=0, max_value=3),
    operations=st.lists(_operation, min_size=1, max_size=4),
)
def test_mutated_messages_fail_cleanly_or_keep_the_signed_content(
    messages, store, payload, which, operations
):
    mutated = _mutate(messages[which], operations)
    try:
        result = verify_message(mutated, store)
    except TrustError as error:
        event(f"refused: {type(error).__name__}")
    else:
        event("verified")
        # Mutations outside the signed part (MIME preamble, headers) may be harmless;
        # anything that verifies must still be the signed content.
        assert result.payload == signed_form(payload)
    try:
        extracted = extract_payload_unverified(mutated)
    except SignatureError:
        pass
    else:
        assert isinstance(extracted, bytes)


@examples(300)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(store, data):
    with pytest.raises(TrustError):
        verify_message(data, store)
