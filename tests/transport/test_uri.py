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


# --- one parser for every URL: only typed errors (docs/robustness.md) ----------------------

HOSTILE_URLS = [
    "A://[::]@]",  # found by a property test: urlsplit raised a bare "Invalid IPv6 URL"
    "http://[::1]x/",
    "https://[zz]/list",
    "https://[v1.fe]/list",
    "http://[::1",
    "http://host:99999/",
    "http://host:-1/",
    "http://host:８０/",  # non-ASCII digits
    "http://:80/list",
    "http://user:pw@/list",
    "http:user:pw@host/list",  # credentials without an authority
    "https:///list",
    "file://user:pw@/etc/passwd",
    "http://a b/list",
    "http://ho^st/list",
    "http://ex\u2100ample.org/list",
    "http://bad\u0000host/",
    "http://host/list\x1b[2J",
    "http://host/list\r\nX-Injected: 1",
    "http://host/\u2028",
    "http://h\tost/",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_every_malformed_url_is_one_typed_error(url: str) -> None:
    with pytest.raises(InvalidURIError) as caught:
        parse(url)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "pw" not in message.replace("pw@", "") or ":***@" in message


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_fetchers_refuse_malformed_urls_with_their_own_codes(url: str, tmp_path) -> None:
    from vmcatcher.cache.download import download_image
    from vmcatcher.errors import DownloadError, FetchError
    from vmcatcher.fetch import fetch_list

    with pytest.raises(FetchError) as fetched:
        fetch_list(url, timeout=(1, 1))
    assert fetched.value.code == Code.FETCH_FAILED
    with pytest.raises(DownloadError):
        download_image(url, tmp_path / "partial", expected_size=1, expected_sha512="0" * 128)
    assert not (tmp_path / "partial").exists()


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://bücher.example/list", "bücher.example"),
        ("http://xn--bcher-kva.example/list", "xn--bcher-kva.example"),
        ("https://[2001:db8::1]:8443/x", "[2001:db8::1]"),
        ("http://a_b.example/list", "a_b.example"),
        ("file://localhost/tmp/my list", "localhost"),
    ],
)
def test_well_formed_urls_still_parse(url: str, host: str) -> None:
    assert parse(url).host == host
    assert normalise_anonymous(url)


def test_credentials_without_authority_are_masked() -> None:
    assert mask_password("http:user:secret@host/x") == "http:user:***@host/x"
    with pytest.raises(InvalidURIError) as caught:
        parse("http:user:secret@host/x")
    assert "secret" not in str(caught.value)
