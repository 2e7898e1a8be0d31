"""fetch_list against real servers: schemes, trust anchors, limits, timeouts, redirects, auth."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytest

from tests.support.servers import GeneratedContent, TestServer, basic_auth_header, free_port
from tests.support.tls import TestPKI
from vmcatcher import __version__
from vmcatcher.errors import Code, FetchError, UsageError
from vmcatcher.fetch import fetch_list
from vmcatcher.vocabulary import TrustAnchor

BODY = b"MIME-Version: 1.0\nsigned image list bytes\n"
FAST = (2.0, 0.5)  # connect, read timeouts for tests that provoke a timeout


def fetch_error(url: str, **options: object) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_list(url, **options)  # type: ignore[arg-type]
    assert caught.value.code == Code.FETCH_FAILED  # never an HTTP status
    assert "\n" not in str(caught.value)
    return caught.value


# --- trust anchor enum -------------------------------------------------------------------


def test_trust_anchor_values_and_labels() -> None:
    assert [int(a) for a in TrustAnchor] == [0, 1, 2]
    assert [a.label for a in TrustAnchor] == ["None", "Browser", "IGTF"]
    assert TrustAnchor.parse("none") is TrustAnchor.NONE
    assert TrustAnchor.parse("Browser") is TrustAnchor.BROWSER
    assert TrustAnchor.parse("IGTF") is TrustAnchor.IGTF
    with pytest.raises(UsageError, match="Invalid trust anchor value"):
        TrustAnchor.parse("grid")


def test_invalid_stored_trust_anchor_is_a_fetch_error(https_server: TestServer) -> None:
    https_server.add("/l", BODY)
    assert "invalid trust anchor" in str(fetch_error(https_server.url("/l"), trust_anchor=7))


# --- file:// -------------------------------------------------------------------------------


def test_file_url(tmp_path: Path) -> None:
    path = tmp_path / "my list.smime"
    path.write_bytes(BODY)
    assert fetch_list(path.as_uri()) == BODY
    assert fetch_list(f"file://localhost{path}") == BODY


def test_missing_file(tmp_path: Path) -> None:
    error = fetch_error((tmp_path / "absent").as_uri())
    assert "file does not exist" in str(error)
    assert str(tmp_path / "absent") in str(error)


def test_file_directory_and_size_limit(tmp_path: Path) -> None:
    assert "directory" in str(fetch_error(tmp_path.as_uri()))
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    assert "too large" in str(fetch_error(big.as_uri(), max_bytes=100))
    assert fetch_list(big.as_uri(), max_bytes=101) == b"x" * 101


def test_file_url_for_another_host_is_refused(tmp_path: Path) -> None:
    assert "another host" in str(fetch_error(f"file://elsewhere{tmp_path}"))


@pytest.mark.parametrize("url", ["ftp://host/list", "gopher://host/x", "/just/a/path"])
def test_unsupported_scheme(url: str) -> None:
    assert "unsupported scheme" in str(fetch_error(url))


def test_bad_port_is_a_fetch_error() -> None:
    assert "invalid port" in str(fetch_error("http://127.0.0.1:notaport/list"))


# --- plain http -----------------------------------------------------------------------------


def test_http_fetch_sends_user_agent_and_keeps_query(http_server: TestServer) -> None:
    http_server.add("/list?vo=atlas&v=2", BODY)
    assert fetch_list(http_server.url("/list?vo=atlas&v=2")) == BODY
    (request,) = http_server.requests
    assert request.path == "/list?vo=atlas&v=2"
    assert request.user_agent == f"vmcatcher/{__version__}"
    assert request.authorization is None
    assert request.headers.get("accept-encoding") == "identity"


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal"), (403, "")])
def test_http_status_is_in_the_message(http_server: TestServer, status: int, reason: str) -> None:
    http_server.status("/list", status)
    error = fetch_error(http_server.url("/list"))
    assert f"HTTP {status}" in str(error)
    assert reason in str(error)
    assert http_server.url("/list") in str(error)


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/list"
    assert "connection refused" in str(fetch_error(url))


def test_unknown_host_name() -> None:
    error = fetch_error("http://no-such-host.invalid/list", timeout=FAST)
    # NXDOMAIN where DNS works; a resolver that does not answer shows as a timeout
    assert "cannot resolve host name" in str(error) or "timed out" in str(error)


def test_chunked_body(http_server: TestServer) -> None:
    http_server.add("/list", BODY * 100, chunked=True)
    assert fetch_list(http_server.url("/list")) == BODY * 100


# --- redirects ------------------------------------------------------------------------------


def test_redirect_followed_and_query_kept(http_server: TestServer) -> None:
    http_server.redirect("/old?x=1", http_server.url("/mid?y=2"), status=301)
    http_server.redirect("/mid?y=2", "/new?z=3", status=307)  # relative Location
    http_server.add("/new?z=3", BODY)
    assert fetch_list(http_server.url("/old?x=1")) == BODY
    assert [r.path for r in http_server.requests] == ["/old?x=1", "/mid?y=2", "/new?z=3"]


def test_redirect_loop_fails_cleanly(http_server: TestServer) -> None:
    http_server.redirect("/a", "/b")
    http_server.redirect("/b", "/a")
    assert "redirect loop" in str(fetch_error(http_server.url("/a")))
    assert len(http_server.requests) == 2


def test_too_many_redirects(http_server: TestServer) -> None:
    for number in range(15):
        http_server.redirect(f"/r{number}", f"/r{number + 1}")
    assert "too many redirects" in str(fetch_error(http_server.url("/r0")))
    assert len(http_server.requests) == 11  # the first request plus 10 redirects


def test_redirect_to_file_url_refused(http_server: TestServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"local file")
    http_server.redirect("/list", secret.as_uri())
    error = fetch_error(http_server.url("/list"))
    assert "redirect to a file: URL refused" in str(error)


def test_redirect_to_an_invalid_url(http_server: TestServer) -> None:
    http_server.redirect("/list", "http://127.0.0.1:notaport/x")
    assert "redirect to an invalid URL" in str(fetch_error(http_server.url("/list")))


def test_redirect_body_is_never_read(http_server: TestServer) -> None:
    """A redirect whose body never ends must not hang or fill memory."""
    http_server.add("/list", BODY)
    http_server.redirect("/start", "/list", body=GeneratedContent(10**12))  # ~1 TB body
    started = time.monotonic()
    assert fetch_list(http_server.url("/start"), timeout=FAST) == BODY
    assert time.monotonic() - started < 5
    assert http_server.requests[0].status == 302


# --- limits and timeouts --------------------------------------------------------------------


def test_stalled_server_times_out_quickly(http_server: TestServer) -> None:
    http_server.stall("/list", BODY, seconds=30)
    started = time.monotonic()
    error = fetch_error(http_server.url("/list"), timeout=FAST)
    assert time.monotonic() - started < 5
    assert "timed out reading" in str(error)


def test_server_silent_before_headers_times_out(http_server: TestServer) -> None:
    http_server.stall("/list", BODY, seconds=30, before_headers=True)
    started = time.monotonic()
    assert "timed out" in str(fetch_error(http_server.url("/list"), timeout=FAST))
    assert time.monotonic() - started < 5


def test_dripping_server_hits_the_total_time_budget(http_server: TestServer) -> None:
    http_server.drip("/list", b"x" * 1000, interval=0.05, piece=1)
    started = time.monotonic()
    error = fetch_error(http_server.url("/list"), timeout=FAST, total_timeout=0.5)
    assert time.monotonic() - started < 5
    assert "total time" in str(error)


def test_size_limit_announced(http_server: TestServer) -> None:
    http_server.add("/list", b"x" * 1001)
    assert "server announces 1001 bytes" in str(
        fetch_error(http_server.url("/list"), max_bytes=1000)
    )
    http_server.clear_requests()
    assert fetch_list(http_server.url("/list"), max_bytes=1001) == b"x" * 1001


def test_size_limit_enforced_while_streaming(http_server: TestServer) -> None:
    http_server.endless("/list")
    started = time.monotonic()
    error = fetch_error(http_server.url("/list"), max_bytes=64 * 1024)
    assert "too large: more than 65536 bytes" in str(error)
    assert time.monotonic() - started < 5


def test_truncated_body(http_server: TestServer) -> None:
    http_server.truncate("/list", BODY * 10, after=25)
    error = fetch_error(http_server.url("/list"))
    assert "closed before the end" in str(error) or "closed after 25" in str(error)


def test_wrong_content_length(http_server: TestServer) -> None:
    http_server.wrong_length("/list", BODY, declared=len(BODY) + 50)
    fetch_error(http_server.url("/list"))


@pytest.mark.parametrize(("line_length", "count"), [(70_000, 1), (10, 150)])
def test_huge_headers(http_server: TestServer, line_length: int, count: int) -> None:
    http_server.huge_headers("/list", BODY, line_length=line_length, count=count)
    fetch_error(http_server.url("/list"))


# --- Basic auth -----------------------------------------------------------------------------


def test_basic_auth_sent_with_both_parts(http_server: TestServer) -> None:
    http_server.auth = ("alice", "s3cret")
    http_server.add("/list", BODY)
    assert fetch_list(http_server.url("/list"), username="alice", password="s3cret") == BODY
    assert http_server.requests[0].authorization == basic_auth_header("alice", "s3cret")


@pytest.mark.parametrize(("username", "password"), [("alice", None), ("alice", ""), (None, "pw")])
def test_no_basic_auth_with_one_part(
    http_server: TestServer, username: str | None, password: str | None
) -> None:
    http_server.add("/list", BODY)
    assert fetch_list(http_server.url("/list"), username=username, password=password) == BODY
    assert http_server.requests[0].authorization is None


def test_credentials_from_the_url(http_server: TestServer) -> None:
    http_server.auth = ("bob", "p@ss")
    http_server.add("/list", BODY)
    assert fetch_list(http_server.url("/list", user="bob", password="p%40ss")) == BODY
    assert http_server.requests[0].authorization == basic_auth_header("bob", "p@ss")


def test_explicit_credentials_override_the_url(http_server: TestServer) -> None:
    http_server.auth = ("db-user", "db-pass")
    http_server.add("/list", BODY)
    url = http_server.url("/list", user="url-user", password="url-pass")
    assert fetch_list(url, username="db-user", password="db-pass") == BODY
    # each part overrides on its own, as the original applied DB values over the URL
    http_server.auth = ("url-user", "db-pass")
    assert fetch_list(url, password="db-pass") == BODY


def test_wrong_credentials_give_401(http_server: TestServer) -> None:
    http_server.auth = ("alice", "right")
    http_server.add("/list", BODY)
    error = fetch_error(http_server.url("/list", user="alice", password="wrong"))
    assert "HTTP 401" in str(error)
    assert "wrong" not in str(error)
    assert "alice:***@" in str(error)


def test_credentials_not_sent_to_another_origin(http_server: TestServer) -> None:
    with TestServer() as elsewhere:
        elsewhere.add("/list", BODY)
        http_server.redirect("/list", elsewhere.url("/list"))
        assert fetch_list(http_server.url("/list"), username="u", password="p") == BODY
        assert http_server.requests[0].authorization == basic_auth_header("u", "p")
        assert elsewhere.requests[0].authorization is None


def test_plain_http_credentials_warn(http_server: TestServer, caplog) -> None:
    http_server.add("/list", BODY)
    with caplog.at_level(logging.WARNING, logger="vmcatcher.fetch"):
        fetch_list(http_server.url("/list"), username="u", password="pw")
    assert "plain http" in caplog.text
    assert "pw" not in caplog.text.replace("plain http", "")


# --- HTTPS and trust anchors ----------------------------------------------------------------


def test_none_accepts_the_untrusted_server(https_server: TestServer) -> None:
    https_server.add("/list", BODY)
    assert fetch_list(https_server.url("/list"), trust_anchor=TrustAnchor.NONE) == BODY


def test_no_per_request_insecure_warning_noise(https_server: TestServer) -> None:
    https_server.add("/list", BODY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fetch_list(https_server.url("/list"), trust_anchor=TrustAnchor.NONE)
    assert [str(w.message) for w in caught] == []


def test_none_with_credentials_warns(https_server: TestServer, caplog) -> None:
    https_server.add("/list", BODY)
    with caplog.at_level(logging.WARNING, logger="vmcatcher.fetch"):
        fetch_list(https_server.url("/list"), trust_anchor=0, username="u", password="p")
    assert "without TLS verification" in caplog.text


def test_browser_refuses_the_untrusted_server(https_server: TestServer) -> None:
    https_server.add("/list", BODY)
    error = fetch_error(https_server.url("/list"), trust_anchor=TrustAnchor.BROWSER)
    assert "TLS certificate verification failed" in str(error)
    assert https_server.requests == []


def test_browser_accepts_when_the_system_bundle_trusts_it(
    https_server: TestServer, pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'browser' uses the system bundle; REQUESTS_CA_BUNDLE (honoured like requests
    does) points it at the test CA, standing in for a site-installed CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_cert))
    https_server.add("/list", BODY)
    assert fetch_list(https_server.url("/list"), trust_anchor=TrustAnchor.BROWSER) == BODY


def test_igtf_refuses_without_the_ca(https_server: TestServer, other_pki: TestPKI) -> None:
    https_server.add("/list", BODY)
    error = fetch_error(
        https_server.url("/list"), trust_anchor=TrustAnchor.IGTF, ca_dir=other_pki.ca_dir
    )
    assert "TLS certificate verification failed" in str(error)


def test_igtf_accepts_with_the_ca_in_the_directory(https_server: TestServer, pki: TestPKI) -> None:
    https_server.add("/list", BODY)
    url = https_server.url("/list")
    assert fetch_list(url, trust_anchor=TrustAnchor.IGTF, ca_dir=pki.ca_dir) == BODY
    assert fetch_list(url, trust_anchor=TrustAnchor.IGTF, ca_dir=str(pki.ca_dir)) == BODY


def test_igtf_checks_the_host_name(pki: TestPKI) -> None:
    with TestServer(tls=pki, wrong_host=True) as server:
        server.add("/list", BODY)
        error = fetch_error(server.url("/list"), trust_anchor=TrustAnchor.IGTF, ca_dir=pki.ca_dir)
        assert "TLS certificate verification failed" in str(error)
        assert "127.0.0.1" in str(error)
        # 'none' does not care
        assert fetch_list(server.url("/list"), trust_anchor=TrustAnchor.NONE) == BODY


def test_igtf_needs_an_existing_ca_dir(https_server: TestServer, tmp_path: Path) -> None:
    https_server.add("/list", BODY)
    url = https_server.url("/list")
    assert "needs a CA directory" in str(fetch_error(url, trust_anchor=TrustAnchor.IGTF))
    error = fetch_error(url, trust_anchor=TrustAnchor.IGTF, ca_dir=tmp_path / "absent")
    assert "does not exist" in str(error)


def test_https_basic_auth_and_redirect_upgrade(
    http_server: TestServer, https_server: TestServer, pki: TestPKI
) -> None:
    https_server.auth = ("u", "p")
    https_server.add("/list", BODY)
    http_server.redirect("/list", https_server.url("/list"))
    # different port: credentials are not forwarded, so the server refuses
    error = fetch_error(
        http_server.url("/list"),
        username="u",
        password="p",
        trust_anchor=TrustAnchor.IGTF,
        ca_dir=pki.ca_dir,
    )
    assert "HTTP 401" in str(error)
    assert (
        fetch_list(
            https_server.url("/list"),
            username="u",
            password="p",
            trust_anchor=TrustAnchor.IGTF,
            ca_dir=pki.ca_dir,
        )
        == BODY
    )


def test_plain_http_server_spoken_to_as_https(http_server: TestServer) -> None:
    http_server.add("/list", BODY)
    url = http_server.url("/list").replace("http://", "https://")
    assert "TLS" in str(fetch_error(url, trust_anchor=TrustAnchor.NONE, timeout=FAST))
