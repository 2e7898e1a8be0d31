"""URI normalisation (spec §5.5) with the fixes: query kept, IPv6, typed port errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from vmcatcher.errors import Code, InvalidURIError, UsageError
from vmcatcher.uri import mask_password, normalise_anonymous, parse, split_credentials


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the spec's verified examples, except that the query string is now kept
        ("https://user:pw@host:8443/path/x?y=1", "https://host:8443/path/x?y=1"),
        ("file:///tmp/x", "file:///tmp/x"),
        ("http://host:0/a", "http://host/a"),
        ("", "://"),
        # more of the original algorithm
        ("http://host/a", "http://host/a"),
        ("http://user@host:80/a", "http://host:80/a"),
        ("https://host", "https://host"),
        ("HTTP://Host/A", "http://Host/A"),
        ("host/path", "://host/path"),
        ("file:/tmp/x", "file:///tmp/x"),
        ("http://host:/a", "http://host/a"),
        # fixes
        ("http://host/a?b=1&c=2#frag", "http://host/a?b=1&c=2"),
        ("http://host/a;type=i", "http://host/a;type=i"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://u:p@[2001:db8::1]/x", "https://[2001:db8::1]/x"),
        ("http://u:p:with:colons@host/x", "http://host/x"),
    ],
)
def test_normalise_anonymous(url: str, expected: str) -> None:
    assert normalise_anonymous(url) == expected


def test_non_string_counts_as_empty() -> None:
    assert normalise_anonymous(None) == "://"
    assert normalise_anonymous(42) == "://"


@pytest.mark.parametrize(
    "url",
    ["http://host:abc/", "http://host:99999/", "http://a:b:c/", "http://[::1/x", "http://[::1]x/"],
)
def test_bad_port_or_host_is_a_typed_error(url: str) -> None:
    with pytest.raises(InvalidURIError) as caught:
        normalise_anonymous(url)
    assert isinstance(caught.value, UsageError)
    assert caught.value.code == Code.FAILURE
    assert "URL" in str(caught.value)


def test_error_message_masks_the_password() -> None:
    with pytest.raises(InvalidURIError) as caught:
        normalise_anonymous("http://user:secret@host:port/")
    assert "secret" not in str(caught.value)
    assert "'port'" in str(caught.value)


def test_parse_parts() -> None:
    parsed = parse("https://us%40er:p%3Aw:x@[::1]:8443/a/b?q=1")
    assert parsed.scheme == "https"
    assert parsed.username == "us@er"
    assert parsed.password == "p:w:x"
    assert (parsed.host, parsed.port) == ("[::1]", 8443)
    assert (parsed.path, parsed.query) == ("/a/b", "q=1")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@host:8443/x?y=1", ("https://host:8443/x?y=1", "u", "p")),
        ("https://u@host/x", ("https://host/x", "u", None)),
        ("https://:p@host/x", ("https://host/x", None, "p")),
        ("https://host/x", ("https://host/x", None, None)),
        ("http://a%40b:c%2Fd@host/", ("http://host/", "a@b", "c/d")),
        ("http://u:p@[::1]:81/", ("http://[::1]:81/", "u", "p")),
    ],
)
def test_split_credentials(url: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_credentials(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:secret@host/x?y", "https://u:***@host/x?y"),
        ("https://u@host/x", "https://u@host/x"),
        ("https://host/x", "https://host/x"),
        ("http://u:secret@[::1/x", "http://u:***@[::1/x"),  # unparsable: regex fallback
    ],
)
def test_mask_password(url: str, expected: str) -> None:
    assert mask_password(url) == expected


@examples(300)
@given(st.text(max_size=60))
def test_never_crashes_with_an_untyped_error(text: str) -> None:
    for function in (normalise_anonymous, split_credentials):
        try:
            function(text)
        except InvalidURIError:
            pass
    mask_password(text)  # never raises at all


_PLAIN = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#@:[]\\%"),
    min_size=1,
    max_size=12,
)


@examples(200)
@given(user=_PLAIN, secret=_PLAIN)
def test_password_never_survives(user: str, secret: str) -> None:
    url = f"https://{user}:{secret}@example.org/list?x=1"
    assert mask_password(url) == f"https://{user}:***@example.org/list?x=1"
    assert normalise_anonymous(url) == "https://example.org/list?x=1"
    assert split_credentials(url) == ("https://example.org/list?x=1", user, secret)
