"""download_image against real servers: verify, size cut-off, resume, restart, TLS, file://."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.servers import GeneratedContent, TestServer, basic_auth_header
from tests.support.tls import TestPKI
from vmcatcher.cache import sink as sink_module
from vmcatcher.cache.download import (
    DownloadResult,
    download_image,
    install_file,
)
from vmcatcher.errors import DownloadError
from vmcatcher.fetch import CombinedTrust, image_tls_verify, system_ca_bundle

IMAGE = GeneratedContent(3 * 1024 * 1024 + 12345, seed=7, block=64 * 1024).read_all()
SHA512 = hashlib.sha512(IMAGE).hexdigest()
SIZE = len(IMAGE)
FAST = (2.0, 0.5)


def download(url: str, partial: Path, **options: object) -> DownloadResult:
    options.setdefault("expected_size", SIZE)
    options.setdefault("expected_sha512", SHA512)
    return download_image(url, partial, **options)  # type: ignore[arg-type]


def download_error(url: str, partial: Path, **options: object) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        download(url, partial, **options)
    assert "\n" not in str(caught.value)
    return caught.value


def test_good_image_verifies(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image.img", IMAGE)
    seen: list[tuple[int, int]] = []
    result = download(
        http_server.url("/image.img"), partial, progress=lambda d, t: seen.append((d, t))
    )
    assert result == DownloadResult(partial, SIZE, SHA512, 0, SIZE)
    assert partial.read_bytes() == IMAGE
    assert seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    (request,) = http_server.requests
    assert request.range is None
    assert request.user_agent.startswith("vmcatcher/")


def test_uppercase_expected_sha512_and_chunked_body(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image", IMAGE, chunked=True)
    result = download(http_server.url("/image"), partial, expected_sha512=SHA512.upper())
    assert result.sha512 == SHA512


def test_empty_image(http_server: TestServer, partial: Path) -> None:
    http_server.add("/empty", b"")
    empty = hashlib.sha512(b"").hexdigest()
    result = download(http_server.url("/empty"), partial, expected_size=0, expected_sha512=empty)
    assert result.size == 0
    assert partial.read_bytes() == b""


def test_wrong_sha512_leaves_nothing(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image", IMAGE)
    wrong = hashlib.sha512(b"other").hexdigest()
    error = download_error(http_server.url("/image"), partial, expected_sha512=wrong)
    assert "unexpected sha512" in str(error)
    assert f"expected {wrong}, got {SHA512}" in str(error)
    assert not partial.exists()


def test_short_complete_body_is_incorrect_size(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image", IMAGE[:-10])
    error = download_error(http_server.url("/image"), partial)
    assert f"incorrect size: expected {SIZE} bytes, got {SIZE - 10}" in str(error)
    assert not partial.exists()


def test_announced_size_too_large_refused_before_reading(
    http_server: TestServer, partial: Path
) -> None:
    http_server.add("/image", IMAGE + b"extra")
    error = download_error(http_server.url("/image"), partial)
    assert f"server announces {SIZE + 5}" in str(error)
    assert not partial.exists()


@pytest.mark.parametrize("mode", ["endless", "chunked"])
def test_more_bytes_than_expected_cut_at_size_plus_one(
    http_server: TestServer, partial: Path, mode: str
) -> None:
    """However the server sends too much (no length announced), at most size+1 bytes
    are read, the partial file never holds more than size+1 bytes, and it is deleted."""
    if mode == "endless":
        http_server.endless("/image")
    else:
        http_server.add("/image", IMAGE, chunked=True)
    on_disk: list[int] = []

    def progress(done: int, total: int) -> None:
        on_disk.append(os.path.getsize(partial))
        assert done <= total

    small = 100_000
    error = download_error(
        http_server.url("/image"), partial, expected_size=small, progress=progress
    )
    assert f"more than the expected {small} bytes" in str(error)
    assert max(on_disk) <= small + 1
    assert not partial.exists()


def test_truncated_download_is_kept_and_resumed(http_server: TestServer, partial: Path) -> None:
    cut = 1_000_000
    http_server.truncate("/image", IMAGE, after=cut, times=1)
    error = download_error(http_server.url("/image"), partial, timeout=FAST)
    assert f"{cut} of {SIZE} bytes kept for resuming" in str(error)
    assert partial.read_bytes() == IMAGE[:cut]

    result = download(http_server.url("/image"), partial)
    assert result.resumed_from == cut
    assert result.transferred == SIZE - cut
    assert partial.read_bytes() == IMAGE
    first, second = http_server.requests
    assert first.range is None
    assert second.range == f"bytes={cut}-"
    assert second.status == 206
    assert second.bytes_sent == SIZE - cut


def test_server_ignoring_range_restarts_and_verifies(
    http_server: TestServer, partial: Path
) -> None:
    http_server.ignore_range = True
    http_server.add("/image", IMAGE)
    partial.write_bytes(IMAGE[:5000])
    result = download(http_server.url("/image"), partial)
    assert (result.resumed_from, result.transferred) == (0, SIZE)
    assert partial.read_bytes() == IMAGE
    (request,) = http_server.requests
    assert (request.range, request.status) == ("bytes=5000-", 200)


def test_range_not_satisfiable_restarts(http_server: TestServer, partial: Path) -> None:
    http_server.fail("/image", IMAGE, 416, times=1)
    partial.write_bytes(IMAGE[:5000])
    result = download(http_server.url("/image"), partial)
    assert result.resumed_from == 0
    assert [r.range for r in http_server.requests] == ["bytes=5000-", None]


def test_mismatched_content_range_restarts(http_server: TestServer, partial: Path) -> None:
    http_server.bad_range("/image", IMAGE, times=1)
    partial.write_bytes(IMAGE[:5000])
    result = download(http_server.url("/image"), partial)
    assert result.resumed_from == 0
    assert [r.range for r in http_server.requests] == ["bytes=5000-", None]


def test_corrupt_prefix_is_downloaded_again(http_server: TestServer, partial: Path) -> None:
    """A stale or damaged partial file makes the resumed result fail: start from zero."""
    http_server.add("/image", IMAGE)
    partial.write_bytes(b"\0" * 5000)
    result = download(http_server.url("/image"), partial)
    assert result.resumed_from == 0
    assert partial.read_bytes() == IMAGE
    assert [r.range for r in http_server.requests] == ["bytes=5000-", None]


def test_server_side_size_change_seen_in_content_range(
    http_server: TestServer, partial: Path
) -> None:
    http_server.add("/image", IMAGE + b"more")
    partial.write_bytes(IMAGE[:5000])
    error = download_error(http_server.url("/image"), partial)
    assert f"server has {SIZE + 4}" in str(error)
    assert not partial.exists()


def test_complete_partial_from_an_earlier_run_needs_no_request(
    http_server: TestServer, partial: Path
) -> None:
    http_server.add("/image", IMAGE)
    partial.write_bytes(IMAGE)
    result = download(http_server.url("/image"), partial)
    assert (result.resumed_from, result.transferred) == (SIZE, 0)
    assert http_server.requests == []


def test_oversized_partial_is_discarded(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image", IMAGE)
    partial.write_bytes(IMAGE + b"junk")
    assert download(http_server.url("/image"), partial).resumed_from == 0
    assert http_server.requests[0].range is None


def test_http_error_status(http_server: TestServer, partial: Path) -> None:
    http_server.status("/image", 404)
    error = download_error(http_server.url("/image"), partial)
    assert "HTTP 404 Not Found" in str(error)
    assert http_server.url("/image") in str(error)
    assert not partial.exists()


def test_http_error_keeps_a_partial_for_later(http_server: TestServer, partial: Path) -> None:
    http_server.fail("/image", IMAGE, 503, times=1)
    partial.write_bytes(IMAGE[:4000])
    assert "HTTP 503" in str(download_error(http_server.url("/image"), partial))
    assert partial.read_bytes() == IMAGE[:4000]
    assert download(http_server.url("/image"), partial).resumed_from == 4000


def test_stalled_image_server_times_out(http_server: TestServer, partial: Path) -> None:
    http_server.stall("/image", IMAGE, seconds=30)
    started = time.monotonic()
    error = download_error(http_server.url("/image"), partial, timeout=FAST)
    assert time.monotonic() - started < 5
    assert "timed out reading" in str(error)


def test_total_timeout(http_server: TestServer, partial: Path) -> None:
    http_server.drip("/image", IMAGE, interval=0.02, piece=100)
    error = download_error(http_server.url("/image"), partial, timeout=FAST, total_timeout=0.5)
    assert "total time" in str(error)
    assert 0 < partial.stat().st_size < SIZE  # kept for resuming


def test_free_space_check(http_server: TestServer, partial: Path) -> None:
    http_server.add("/image", IMAGE)
    huge = 10**18
    error = download_error(http_server.url("/image"), partial, expected_size=huge)
    assert f"too large at {huge} bytes, available disk space is" in str(error)
    assert http_server.requests == []


def test_missing_partial_directory(http_server: TestServer, tmp_path: Path) -> None:
    http_server.add("/image", IMAGE)
    error = download_error(http_server.url("/image"), tmp_path / "absent" / "x")
    assert "does not exist" in str(error)


def test_symlinked_partial_refused(http_server: TestServer, partial: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    partial.symlink_to(target)
    http_server.add("/image", IMAGE)
    assert "not a regular file" in str(download_error(http_server.url("/image"), partial))
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("size", "sha"), [(-1, SHA512), ("12", SHA512), (True, SHA512), (SIZE, "abc"), (SIZE, None)]
)
def test_invalid_expectations(partial: Path, size: object, sha: object) -> None:
    with pytest.raises(DownloadError, match="invalid expected"):
        download_image("http://127.0.0.1/x", partial, expected_size=size, expected_sha512=sha)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["ftp://host/image", "host/image", "data:,x"])
def test_unknown_transport(partial: Path, url: str) -> None:
    assert "Unknown transport" in str(download_error(url, partial))


def test_file_url_refused_unless_allowed(tmp_path: Path, partial: Path) -> None:
    source = tmp_path / "source image"
    source.write_bytes(IMAGE)
    error = download_error(source.as_uri(), partial)
    assert "file:// image URLs are not allowed" in str(error)
    assert not partial.exists()
    result = download(source.as_uri(), partial, allow_file=True)
    assert result.size == SIZE
    assert partial.read_bytes() == IMAGE
    missing = download_error((tmp_path / "nope").as_uri(), tmp_path / "p2", allow_file=True)
    assert "file does not exist" in str(missing)


def test_file_url_size_limit(tmp_path: Path, partial: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(IMAGE)
    error = download_error(source.as_uri(), partial, allow_file=True, expected_size=1000)
    assert "more than the expected 1000 bytes" in str(error)
    assert not partial.exists()


def test_redirects_and_credentials_for_images(http_server: TestServer, partial: Path) -> None:
    http_server.auth = ("u", "p")
    http_server.redirect("/moved", "/image?token=1")
    http_server.add("/image?token=1", IMAGE)
    download(http_server.url("/moved", user="u", password="p"), partial)
    assert [r.path for r in http_server.requests] == ["/moved", "/image?token=1"]
    assert http_server.requests[1].authorization == basic_auth_header("u", "p")


def test_redirect_with_endless_body(http_server: TestServer, partial: Path) -> None:
    http_server.redirect("/image", "/real", status=301, body=GeneratedContent(10**12))
    http_server.add("/real", IMAGE)
    started = time.monotonic()
    assert download(http_server.url("/image"), partial, timeout=FAST).size == SIZE
    assert time.monotonic() - started < 5


def test_redirect_to_file_refused(http_server: TestServer, partial: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.write_bytes(IMAGE)
    http_server.redirect("/image", local.as_uri())
    error = download_error(http_server.url("/image"), partial, allow_file=True)
    assert "redirect to a file: URL refused" in str(error)


def test_large_generated_image_with_background_sync(
    http_server: TestServer, partial: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exercise the periodic background fdatasync (made frequent here)."""
    monkeypatch.setattr(sink_module, "SYNC_EVERY", 1024 * 1024)
    content = GeneratedContent(24 * 1024 * 1024 + 3, seed=3)
    http_server.add("/big", content)
    result = download(
        http_server.url("/big"),
        partial,
        expected_size=content.size,
        expected_sha512=content.sha512(),
        chunk_size=256 * 1024,
    )
    assert result.size == content.size


# --- TLS for images -----------------------------------------------------------------------


def test_image_tls_verify_choices(pki: TestPKI, tmp_path: Path) -> None:
    assert image_tls_verify(pki.ca_dir, insecure=True) is False
    assert image_tls_verify(None) == system_ca_bundle()
    assert image_tls_verify(tmp_path / "absent") == system_ca_bundle()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert image_tls_verify(empty) == system_ca_bundle()


def test_system_and_grid_cas_are_trusted_without_a_bundle_file(
    pki: TestPKI, tmp_path: Path
) -> None:
    ca_dir = tmp_path / "certificates"
    ca_dir.mkdir()
    (ca_dir / f"{pki.ca_hash}.0").write_bytes(pki.ca_cert.read_bytes())
    (ca_dir / f"{pki.ca_hash}.r0").write_text("-----BEGIN X509 CRL-----\nnot a cert\n")
    (ca_dir / f"{pki.ca_hash}.signing_policy").write_text("policy\n")
    before = set(os.listdir(tempfile.gettempdir()))
    assert image_tls_verify(ca_dir) == CombinedTrust(system_ca_bundle(), str(ca_dir))
    assert set(os.listdir(tempfile.gettempdir())) - before == set()


def test_system_cas_still_trusted_beside_the_ca_dir(
    https_server: TestServer, pki: TestPKI, partial: Path, tmp_path: Path
) -> None:
    """A server certified by a CA of the bundle file verifies with a CA dir beside it."""
    https_server.add("/image", IMAGE)
    other_dir = tmp_path / "unrelated-ca-dir"
    other_dir.mkdir()
    (other_dir / "0badcafe.0").write_text("not even a certificate\n")
    trust = CombinedTrust(str(pki.ca_cert), str(other_dir))
    assert download(https_server.url("/image"), partial, verify=trust).size == SIZE


def test_https_image_verified_against_the_ca_dir(
    https_server: TestServer, pki: TestPKI, partial: Path
) -> None:
    https_server.add("/image", IMAGE)
    url = https_server.url("/image")
    error = download_error(url, partial, verify=image_tls_verify(None))
    assert "TLS certificate verification failed" in str(error)
    assert download(url, partial, verify=image_tls_verify(pki.ca_dir)).size == SIZE
    partial.unlink()
    assert download(url, partial, verify=image_tls_verify(pki.ca_dir, insecure=True)).size == SIZE


def test_https_truncated_then_resumed(
    https_server: TestServer, pki: TestPKI, partial: Path
) -> None:
    https_server.truncate("/image", IMAGE, after=777_777, times=1)
    verify = image_tls_verify(pki.ca_dir)
    download_error(https_server.url("/image"), partial, verify=verify, timeout=FAST)
    result = download(https_server.url("/image"), partial, verify=verify)
    assert result.resumed_from == 777_777
    assert https_server.requests[1].range == "bytes=777777-"


# --- install_file ---------------------------------------------------------------------------


def test_install_file_replaces_atomically(tmp_path: Path) -> None:
    source, dest = tmp_path / "partial-file", tmp_path / "cache" / "uuid"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    source.write_bytes(b"new")
    install_file(source, dest)
    assert dest.read_bytes() == b"new"
    assert not source.exists()


def test_install_file_failure_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot move"):
        install_file(tmp_path / "absent", tmp_path / "dest")


def test_install_file_across_file_systems(tmp_path: Path) -> None:
    """partial/ and the cache may be configured on different file systems (EXDEV)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different file system than the temp dir")
    source = shm / f"vmcatcher-test-{os.getpid()}-{time.monotonic_ns()}"
    source.write_bytes(IMAGE)
    dest = tmp_path / "uuid"
    try:
        install_file(source, dest)
    finally:
        source.unlink(missing_ok=True)
    assert dest.read_bytes() == IMAGE
    assert not source.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uuid"]  # no temporary left
