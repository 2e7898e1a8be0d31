"""How ``vmcatcher_cache`` moves bytes: verification, size limit, resume, retries, TLS, file://."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.cache_e2e.conftest import CacheSite, ConcurrencyMeter, SlowContent
from tests.support.servers import MiB, TestServer
from tests.support.tls import TestPKI as TlsPKI
from tests.support.tls import make_test_pki

IMAGE = "0b4f5d8e-52b5-4c3b-8a8e-3a4c9e1f0a01"
IMAGE_PATH = f"/{IMAGE}.img"
QUIET_RUN = ["ProcessPrefix", "ProcessPostfix"]
DOWNLOAD_RUN = ["ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix"]


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPKI:
    return make_test_pki(tmp_path_factory.mktemp("tls"))


def assert_nothing_cached(site: CacheSite) -> None:
    assert site.files(site.cache_dir) == set()
    assert site.index(site.cache_dir) == {}
    assert site.files(site.partial_dir) == set()


def test_wrong_sha512_in_list_never_enters_the_cache(site: CacheSite) -> None:
    site.add_image(IMAGE, 50_000, sha512=hashlib.sha512(b"something else").hexdigest())
    site.ready()

    result = site.cache()

    assert "unexpected sha512" in result.stderr
    assert f"Failed to download file '{IMAGE}'" in result.stderr
    assert site.event_types() == QUIET_RUN
    assert_nothing_cached(site)  # and the partial file was removed
    assert len(site.server.requests_for(IMAGE_PATH)) == 1


def test_more_bytes_than_hv_size_without_length_is_cut_off(site: CacheSite) -> None:
    size = 256 * 1024
    site.add_image(IMAGE, size)
    site.ready()
    site.server.endless(IMAGE_PATH)  # chunked, no Content-Length, never ends

    started = time.monotonic()
    result = site.cache()

    assert time.monotonic() - started < 30
    assert f"more than the expected {size} bytes" in result.stderr
    assert_nothing_cached(site)
    [request] = site.server.requests_for(IMAGE_PATH)
    # The client stopped reading at hv:size + 1; what the server got out is that plus
    # what fits in the loopback socket buffers, never the endless stream.
    deadline = time.monotonic() + 5
    while request.bytes_sent == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert size < request.bytes_sent < size + 32 * MiB


def test_announced_length_above_hv_size_is_refused_before_reading(site: CacheSite) -> None:
    size = 10_000
    site.add_image(IMAGE, size)
    site.ready()
    site.server.add(IMAGE_PATH, b"\0" * (size + 1))

    result = site.cache()

    assert "server announces" in result.stderr
    assert_nothing_cached(site)


def test_interrupted_download_is_resumed_with_a_range_request(site: CacheSite) -> None:
    size, cut = 300_000, 120_000
    site.add_image(IMAGE, size)
    site.ready()
    site.server.truncate(IMAGE_PATH, site.data[IMAGE], after=cut, times=1)

    first = site.cache()

    assert "kept for resuming" in first.stderr
    assert site.event_types() == QUIET_RUN
    assert (site.partial_dir / IMAGE).stat().st_size == cut
    assert site.files(site.cache_dir) == set()
    assert site.index(site.partial_dir)[IMAGE]["DownLoadTrys"]["count"] == 1

    site.clear_events()
    site.cache()

    requests = site.server.requests_for(IMAGE_PATH)
    assert [r.range for r in requests] == [None, f"bytes={cut}-"]
    assert requests[1].status == 206
    assert requests[1].bytes_sent == size - cut
    assert site.event_types() == DOWNLOAD_RUN
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert site.files(site.partial_dir) == set()
    assert site.index(site.partial_dir) == {}


def test_retry_downloads_a_parked_image_now(site: CacheSite) -> None:
    """Issue 11, item 10: after 5 failures the admin need not wait for a new list version."""
    site.add_image(IMAGE)
    site.ready()
    site.server.status(IMAGE_PATH, 500)
    for _ in range(5):
        site.cache()
    parked = site.cache()
    assert "giving up until new image list" in parked.stderr
    assert len(site.server.requests_for(IMAGE_PATH)) == 5

    site.server.add(IMAGE_PATH, site.data[IMAGE])  # the server is fixed
    retried = site.cache("--retry", IMAGE)

    assert "giving up" not in retried.stderr, retried
    assert len(site.server.requests_for(IMAGE_PATH)) == 6
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert site.index(site.partial_dir) == {}


def test_five_tries_per_list_version(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.ready()
    site.server.status(IMAGE_PATH, 500)

    for attempt in range(1, 6):
        result = site.cache()
        assert "HTTP 500" in result.stderr
        assert len(site.server.requests_for(IMAGE_PATH)) == attempt
        assert site.index(site.partial_dir)[IMAGE]["DownLoadTrys"]["count"] == attempt
    sixth = site.cache()
    assert (
        f"WARNING:vmcatcher.cache:Image '{IMAGE}' has failed to download '5' times, "
        "giving up until new image list.\n"
        f"ERROR:vmcatcher.cache:Failed to download file '{IMAGE}'.\n" in sixth.stderr
    )
    assert len(site.server.requests_for(IMAGE_PATH)) == 5

    # A new version of the list (same image) resets the counter.
    site.publish()
    site.update()
    site.cache()
    assert len(site.server.requests_for(IMAGE_PATH)) == 6
    tries = site.index(site.partial_dir)[IMAGE]["DownLoadTrys"]
    assert tries["count"] == 1
    assert tries["msgHash"] == site.sql('SELECT data_hash FROM "imageListInstance" '
                                        "ORDER BY id DESC LIMIT 1")[0][0]  # fmt: skip

    site.server.add(IMAGE_PATH, site.data[IMAGE])
    site.cache()
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert site.index(site.partial_dir) == {}


def test_giving_up_is_an_error_that_quiet_cron_jobs_see(site: CacheSite) -> None:
    """After the 5th failed try, -q (ERROR and above) still reports the stuck image."""
    site.add_image(IMAGE)
    site.ready()
    site.server.status(IMAGE_PATH, 500)

    for _ in range(5):
        result = site.cache("-q")
        assert f"ERROR:vmcatcher.cache:Failed to download file '{IMAGE}': " in result.stderr
    sixth = site.cache("-q")
    assert len(site.server.requests_for(IMAGE_PATH)) == 5
    assert sixth.stderr.splitlines() == [
        f"ERROR:vmcatcher.cache:Failed to download file '{IMAGE}'."
    ]


def test_file_uri_images_need_allow_file_uri(site: CacheSite) -> None:
    source = site.root / "local-image.bin"
    site.add_image(IMAGE, 7000, serve=False, uri=source.as_uri())
    source.write_bytes(site.data[IMAGE])
    site.ready()

    refused = site.cache()
    assert "file:// image URLs are not allowed" in refused.stderr
    assert_nothing_cached(site)

    site.clear_events()
    site.cache("--allow-file-uri")
    assert site.event_types() == DOWNLOAD_RUN
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert source.exists()  # copied, not moved


def test_parallel_downloads_overlap_and_all_verify(site: CacheSite) -> None:
    identifiers = [f"{IMAGE[:-2]}{n:02d}" for n in range(1, 6)]
    for identifier in identifiers:
        site.add_image(identifier, 40_000)
    site.ready()
    meter = ConcurrencyMeter()
    for identifier in identifiers:
        site.server.add(f"/{identifier}.img", SlowContent(site.data[identifier], 1.0, meter))

    site.cache("--parallel", "3")

    assert meter.peak == 3
    for identifier in identifiers:
        assert (site.cache_dir / identifier).read_bytes() == site.data[identifier]
    assert set(site.index(site.cache_dir)) == set(identifiers)
    types = site.event_types()
    assert types[0] == "ProcessPrefix" and types[-1] == "ProcessPostfix"
    # Events come from the main thread one image at a time: Prefix then Postfix.
    assert types[1:-1] == ["AvailablePrefix", "AvailablePostfix"] * len(identifiers)
    names = [e["VMCATCHER_EVENT_FILENAME"] for e in site.events()[1:-1]]
    assert names[0::2] == names[1::2]
    assert sorted(names[0::2]) == identifiers


def test_https_image_server_trust(site: CacheSite, tls_pki: TlsPKI) -> None:
    with TestServer(tls=tls_pki) as https:
        data = b"https image " * 1000
        site.add_image(IMAGE, data=data, serve=False, uri=https.url(IMAGE_PATH))
        https.add(IMAGE_PATH, data)
        site.ready()
        insecure = site.clone("insecure")

        # VMCATCHER_DIR_CERT is the Grid CA directory, which lacks the TLS test CA.
        refused = site.cache()
        assert "TLS certificate verification failed" in refused.stderr
        assert_nothing_cached(site)
        assert https.requests_for(IMAGE_PATH) == []

        site.clear_events()
        site.cache("-c", str(tls_pki.ca_dir))
        assert site.event_types() == DOWNLOAD_RUN
        assert (site.cache_dir / IMAGE).read_bytes() == data

        insecure.cache("--insecure")
        assert (insecure.cache_dir / IMAGE).read_bytes() == data
        assert len(https.requests_for(IMAGE_PATH)) == 2
