"""The test servers and PKI themselves: other suites rely on these behaving as documented."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from tests.support.servers import GeneratedContent, TestServer
from tests.support.tls import TestPKI


def raw_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@examples(60)
@given(
    size=st.integers(0, 5000),
    block=st.integers(16, 700),
    start=st.integers(0, 5000),
    length=st.integers(0, 5000),
)
def test_generated_content_slices_are_consistent(
    size: int, block: int, start: int, length: int
) -> None:
    content = GeneratedContent(size, seed=5, block=block)
    whole = content.read_all()
    assert len(whole) == size
    start = min(start, size)
    end = min(size, start + length)
    assert b"".join(content.chunks(start, end)) == whole[start:end]
    assert content.sha512() == hashlib.sha512(whole).hexdigest()


def test_range_requests(http_server: TestServer) -> None:
    http_server.add("/f", b"0123456789")
    assert raw_get(http_server.url("/f"), {"Range": "bytes=3-"})[::2] == (206, b"3456789")
    status, headers, body = raw_get(http_server.url("/f"), {"Range": "bytes=2-4"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-4/10", b"234")
    status, headers, _ = raw_get(http_server.url("/f"), {"Range": "bytes=10-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */10")
    http_server.ignore_range = True
    assert raw_get(http_server.url("/f"), {"Range": "bytes=3-"})[::2] == (200, b"0123456789")
    assert [r.range for r in http_server.requests] == [
        "bytes=3-",
        "bytes=2-4",
        "bytes=10-",
        "bytes=3-",
    ]


def test_routes_auth_and_recording(http_server: TestServer) -> None:
    http_server.add("/a?x=1", b"with query")
    http_server.add("/a", b"bare")
    http_server.add("/private", b"secret", auth=("u", "p"))
    assert raw_get(http_server.url("/a?x=1"))[2] == b"with query"
    assert raw_get(http_server.url("/a?y=2"))[2] == b"bare"
    assert raw_get(http_server.url("/missing"))[0] == 404
    status, headers, _ = raw_get(http_server.url("/private"))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert [r.path for r in http_server.requests_for("/a")] == ["/a?x=1", "/a?y=2"]
    http_server.set_content("/a", b"replaced")
    assert raw_get(http_server.url("/a"))[2] == b"replaced"


def test_fault_limited_to_first_requests(http_server: TestServer) -> None:
    http_server.fail("/f", b"fine", 503, times=2)
    assert [raw_get(http_server.url("/f"))[0] for _ in range(3)] == [503, 503, 200]


def test_ca_dir_uses_the_openssl_subject_hash(pki: TestPKI) -> None:
    expected = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pki.ca_cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert pki.ca_hash == expected
    assert [p.name for p in pki.ca_dir.iterdir()] == [f"{expected}.0"]


def test_https_server_presents_the_test_certificate(https_server: TestServer, pki: TestPKI) -> None:
    import ssl

    https_server.add("/x", b"tls")
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with urllib.request.urlopen(https_server.url("/x"), context=context, timeout=5) as response:
        assert response.read() == b"tls"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(
            https_server.url("/x"), context=ssl.create_default_context(), timeout=5
        )


def test_transport_modules_do_not_import_requests_at_start_up() -> None:
    """Commands that never fetch must not pay for importing requests."""
    code = (
        "import sys, vmcatcher.fetch, vmcatcher.uri, vmcatcher.cache.download;"
        "print('requests' in sys.modules, 'urllib3' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert output.split() == ["False", "False"]
