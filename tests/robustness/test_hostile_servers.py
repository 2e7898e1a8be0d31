"""Hostile servers against list fetching (``vmcatcher_subscribe -U``) and image downloads.

Every server here runs on 127.0.0.1 and misbehaves on purpose: it stalls after
the headers (slow loris) or before them, cuts the body short, lies in
Content-Length, never ends the body, redirects in a loop or to ``file://``,
sends header lines too long or too many, presents a certificate for another
host name, answers a Range request with the whole file, or changes the file
between two runs. Each test checks the documented outcome (``-U`` exits 10
for any transport failure; ``vmcatcher_cache`` logs a failed download and
exits 0), that no traceback escapes, that nothing stored is damaged
(:meth:`Site.check_consistent`), and that the next run against a healthy
server finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.robustness.hostile_support import (
    Site,
    assert_clean,
    assert_failure,
    open_site,
    sha512,
    tls_pki,
)
from tests.support.lists import image_bytes
from tests.support.servers import TestServer

pytestmark = pytest.mark.robustness

TIMEOUT = "1"  # seconds of silence before a stalled server is abandoned
STALL = 30.0  # the server would stay silent this long: the client must give up first
IMAGE_SIZE = 300_000


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as opened:
        yield opened


# --- image list servers (vmcatcher_subscribe -U) ---------------------------------------

# name -> (sets the fault on `path` serving `data`, words of the expected ERROR line)
ListFault = Callable[[TestServer, str, bytes, Path], None]
LIST_FAULTS: dict[str, tuple[ListFault, str]] = {
    "stall-after-headers": (
        lambda s, p, d, _: s.stall(p, d, STALL, times=1),
        "timed out reading after 1 s",
    ),
    "stall-before-headers": (
        lambda s, p, d, _: s.stall(p, d, STALL, before_headers=True, times=1),
        "timed out reading after 1 s",
    ),
    "truncated-body": (
        lambda s, p, d, _: s.truncate(p, d, 200, times=1),
        "connection closed before the end of the body (after 200 bytes)",
    ),
    "content-length-too-long": (
        lambda s, p, d, _: s.wrong_length(p, d, len(d) + 500, times=1),
        "connection closed before the end of the body",
    ),
    "endless-body": (
        lambda s, p, d, _: s.endless(p, times=1),
        "too large: more than",
    ),
    "redirect-loop": (
        lambda s, p, d, _: s.redirect(p, p),
        "redirect loop at",
    ),
    "redirect-to-file": (
        lambda s, p, d, copy: s.redirect(p, copy.as_uri()),
        "redirect to a file: URL refused",
    ),
    "header-line-too-long": (
        lambda s, p, d, _: s.huge_headers(p, d, line_length=70_000, times=1),
        "header line too long",
    ),
    "too-many-headers": (
        lambda s, p, d, _: s.huge_headers(p, d, line_length=100, count=150, times=1),
        "too many header lines",
    ),
}


def test_every_hostile_list_server_fails_with_10_and_loses_nothing(site: Site) -> None:
    """One subscription per fault, one ``-U`` for all: each fails alone with code 10."""
    server = site.server()
    urls: dict[str, str] = {}
    images = {}
    for number, name in enumerate(LIST_FAULTS):
        identifier = f"5b0c6a7e-0000-4000-8000-{number:012d}"
        images[name] = [site.image(server, size=512)]
        urls[name] = site.publish(server, f"/{name}.list", images[name], identifier=identifier,
                                  version="1")  # fmt: skip
    subscribe = [part for url in urls.values() for part in ("-s", url)]
    site.run("vmcatcher_subscribe", *subscribe, "-e", expect=0)
    site.update(expect=0)
    assert site.list_versions() == ["1"] * len(LIST_FAULTS)

    healthy: dict[str, bytes] = {}
    for number, (name, (fault, _)) in enumerate(LIST_FAULTS.items()):
        path = f"/{name}.list"
        identifier = f"5b0c6a7e-0000-4000-8000-{number:012d}"
        data = site.signed(site.document(urls[name], images[name], identifier=identifier,
                                         version="2"))  # fmt: skip
        healthy[path] = data
        copy = site.root / f"{name}.copy"
        copy.write_bytes(data)  # a redirect to file:// would find a valid list here
        fault(server, path, data, copy)

    result = site.update("--fetch-timeout", TIMEOUT, timeout=60)
    errors = assert_failure(result, 10)
    for name, (_, words) in LIST_FAULTS.items():
        lines = [line for line in errors if f"/{name}.list:" in line]
        assert lines, f"{name}: no ERROR line:\n{result}"
        assert any(words in line for line in lines), f"{name}: {lines}"
    assert result.stderr.count("ERROR:") == len(LIST_FAULTS), result
    assert site.last_duration < 25, "stalled servers must be abandoned after the timeout"
    assert site.list_versions() == ["1"] * len(LIST_FAULTS), "a failed fetch stored something"
    site.check_consistent()

    for path, data in healthy.items():
        server.add(path, data)  # the fault is over (redirects replaced by the real list)
    site.update("--fetch-timeout", TIMEOUT, expect=0)
    assert sorted(site.list_versions()) == ["1"] * len(LIST_FAULTS) + ["2"] * len(LIST_FAULTS)
    site.check_consistent()


def test_list_server_changing_the_file_between_runs(site: Site) -> None:
    """New version, then a changed byte, a replay of an old version, a Content-Length
    shorter than the body (the cut message fails its signature: 11), then a new version."""
    server = site.server()
    images = [site.image(server)]
    url = site.publish(server, "/image.list", images)
    site.subscribe(url)
    old = site.signed(site.document(url, images, version="1"))

    site.publish(server, "/image.list", images)  # version 2
    site.update(expect=0)
    assert site.latest_version() == "2"

    tampered = bytearray(site.signed(site.document(url, images, version="3")))
    at = tampered.index(b'"hv:version": "3"')
    tampered[at : at + 17] = b'"hv:version": "9"'  # a changed byte under the signature
    server.add("/image.list", bytes(tampered))
    assert_failure(site.update(), 11)
    server.add("/image.list", old)  # a replay of version 1
    assert_failure(site.update(), 17, "lower version number")
    lying = site.signed(site.document(url, images, version="3"))
    server.wrong_length("/image.list", lying, len(lying) - 300)  # declares less than it sends
    assert_failure(site.update(), 11, "not an S/MIME signed message")
    assert site.latest_version() == "2"
    assert site.list_versions() == ["1", "2"]
    site.check_consistent()

    site.publish(server, "/image.list", images, version="4")
    site.update(expect=0)
    assert site.latest_version() == "4"
    site.check_consistent()


# --- image servers (vmcatcher_cache) ----------------------------------------------------

ImageFault = Callable[[TestServer, str, bytes, Path], None]
IMAGE_FAULTS: dict[str, tuple[ImageFault, str]] = {
    "stall-after-headers": (
        lambda s, p, d, _: s.stall(p, d, STALL, times=1),
        "timed out reading after 1 s",
    ),
    "stall-before-headers": (
        lambda s, p, d, _: s.stall(p, d, STALL, before_headers=True, times=1),
        "timed out reading after 1 s",
    ),
    "truncated-body": (
        lambda s, p, d, _: s.truncate(p, d, 100_000, times=1),
        "connection closed before the end of the body; 100000 of 300000 bytes kept",
    ),
    "content-length-too-long": (
        lambda s, p, d, _: s.wrong_length(p, d, len(d) + 1, times=1),
        "server announces 300001",
    ),
    "content-length-too-short": (
        lambda s, p, d, _: s.wrong_length(p, d, len(d) // 2, times=1),
        "expected 300000 bytes, got 150000",
    ),
    "endless-body": (
        lambda s, p, d, _: s.endless(p, times=1),
        "more than the expected 300000 bytes",
    ),
    "redirect-loop": (
        lambda s, p, d, _: s.redirect(p, p),
        "redirect loop at",
    ),
    "redirect-to-file": (
        lambda s, p, d, copy: s.redirect(p, copy.as_uri()),
        "redirect to a file: URL refused",
    ),
    "header-line-too-long": (
        lambda s, p, d, _: s.huge_headers(p, d, line_length=70_000, times=1),
        "header line too long",
    ),
    "too-many-headers": (
        lambda s, p, d, _: s.huge_headers(p, d, line_length=100, count=150, times=1),
        "too many header lines",
    ),
    "bytes-not-in-the-list": (
        lambda s, p, d, _: s.add(p, bytes(reversed(d))),  # same size, other bytes
        "unexpected sha512",
    ),
    # Cut short now; the next run's Range request is answered with the whole file (200),
    # or with a 206 carrying the whole file, or the publisher replaces the image and the
    # list between the two runs: the resumed download must not mix old and new bytes.
    "range-answered-200": (
        lambda s, p, d, _: s.truncate(p, d, 120_000, times=1),
        "120000 of 300000 bytes kept",
    ),
    "range-answered-206-whole": (
        lambda s, p, d, _: s.truncate(p, d, 120_000, times=1),
        "120000 of 300000 bytes kept",
    ),
    "replaced-between-runs": (
        lambda s, p, d, _: s.truncate(p, d, 150_000, times=1),
        "150000 of 300000 bytes kept",
    ),
}


def _cache_site(site: Site, server: TestServer, names: list[str]) -> dict[str, bytes]:
    """Subscribe to a list of one cached image per name (``img-<name>``); return the bytes."""
    images = [site.image(server, f"img-{name}", IMAGE_SIZE) for name in names]
    site.subscribe(site.publish_file("image.list", images), "--imagelist-newimage-subscribe")
    return {name: image_bytes(f"img-{name}", IMAGE_SIZE)[0] for name in names}


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ERROR:")]


def test_every_hostile_image_server_is_logged_and_the_next_run_finishes(site: Site) -> None:
    """One image per fault, all in one run: each failure logged, exit 0, only verified
    images in the cache; then healthy servers, and the next run caches everything."""
    server = site.server()
    names = [*IMAGE_FAULTS, "healthy"]
    data = _cache_site(site, server, names)
    for name, (fault, _) in IMAGE_FAULTS.items():
        copy = site.root / f"{name}.copy"
        copy.write_bytes(data[name])  # the exact bytes: a followed redirect would verify
        fault(server, f"/img-{name}.img", data[name], copy)

    result = site.cache("--timeout", TIMEOUT, "--parallel", "4", "--allow-file-uri",
                        timeout=90)  # fmt: skip
    assert_clean(result)
    errors = _errors(result.stderr)
    for name, (_, words) in IMAGE_FAULTS.items():
        lines = [line for line in errors if f"'img-{name}'" in line]
        assert len(lines) == 1, f"{name}: {lines}\n{result}"
        assert words in lines[0], f"{name}: {lines[0]}"
    assert len(errors) == len(IMAGE_FAULTS), result
    assert site.last_duration < 30, "stalled image servers must be abandoned after the timeout"
    assert site.cached() == {"img-healthy"}
    assert set(site.index()) == {"img-healthy"}
    assert site.event_types("img-healthy") == ["AvailablePrefix", "AvailablePostfix"]
    for name in IMAGE_FAULTS:
        assert site.event_types(f"img-{name}") == [], f"{name}: events for a failed download"
    assert not (site.partial_dir / "img-bytes-not-in-the-list").exists(), "unverified bytes kept"
    site.check_consistent()

    # The servers are healthy again, in their own ways.
    for name in IMAGE_FAULTS:
        server.add(f"/img-{name}.img", data[name])
    server.add("/img-range-answered-200.img", data["range-answered-200"], honour_range=False)
    server.bad_range("/img-range-answered-206-whole.img", data["range-answered-206-whole"])
    rebuilt, _ = image_bytes("the publisher's rebuild", IMAGE_SIZE)
    server.add("/img-replaced-between-runs.img", rebuilt)
    images = [site.image(server, f"img-{name}", IMAGE_SIZE, serve=False) for name in names]
    images[names.index("replaced-between-runs")]["sl:checksum:sha512"] = sha512(rebuilt)
    list_path = site.root / "image.list"
    list_path.write_bytes(site.signed(site.document(list_path.as_uri(), images)))
    site.update(expect=0)
    server.clear_requests()
    site.clear_events()

    result = site.cache("--timeout", TIMEOUT, "--parallel", "4", "-v", expect=0)
    assert site.cached() == {f"img-{name}" for name in names}
    ranges = {name: [r.range for r in server.requests_for(f"/img-{name}.img")] for name in names}
    assert ranges["truncated-body"] == ["bytes=100000-"], "the partial file was not resumed"
    assert ranges["range-answered-200"] == ["bytes=120000-"], ranges
    assert "Server ignored the range request" in result.stderr
    assert ranges["range-answered-206-whole"] == ["bytes=120000-", None], "no restart"
    assert "Server answered with another range" in result.stderr
    assert ranges["replaced-between-runs"] == ["bytes=150000-", None], "no restart"
    assert "did not verify; starting again from zero" in result.stderr
    assert (site.cache_dir / "img-replaced-between-runs").read_bytes() == rebuilt
    for name in IMAGE_FAULTS:
        assert site.event_types(f"img-{name}") == ["AvailablePrefix", "AvailablePostfix"]
    assert site.index(site.partial_dir) == {}
    site.check_consistent()


def test_https_server_presenting_a_certificate_for_another_host(site: Site) -> None:
    """One HTTPS server for the list and the image, its certificate swapped for another
    host's and back: ``-U`` exits 10, the cache logs the failure, then both recover."""
    tls = tls_pki()
    context = tls.server_context()
    server = site.server(context)
    trust = {"REQUESTS_CA_BUNDLE": str(tls.ca_cert)}  # the 'browser' anchor's bundle
    image_trust = ("-c", str(tls.ca_dir), "--timeout", TIMEOUT)  # extra CAs for images
    images = [site.image(server, "img-tls", IMAGE_SIZE)]
    url = site.publish(server, "/image.list", images)
    site.run("vmcatcher_subscribe", "-s", url, "-e", "--uri-trustanchor-set", "browser",
             "--imagelist-newimage-subscribe", env=trust, expect=0)  # fmt: skip
    site.update(env=trust, expect=0)

    site.publish(server, "/image.list", images)
    context.load_cert_chain(tls.wrong_host_cert, tls.wrong_host_key)
    result = site.update(env=trust)
    assert_failure(result, 10, "TLS certificate verification failed", "not valid for '127.0.0.1'")
    assert site.list_versions() == ["1"]
    result = site.cache(*image_trust, expect=0)
    errors = _errors(result.stderr)
    assert len(errors) == 1, result
    assert "TLS certificate verification failed" in errors[0], result
    assert "not valid for '127.0.0.1'" in errors[0], result
    assert site.cached() == set()
    site.check_consistent()

    context.load_cert_chain(tls.server_cert, tls.server_key)
    site.update(env=trust, expect=0)
    assert site.latest_version() == "2"
    site.cache(*image_trust, expect=0)
    assert site.cached() == {"img-tls"}
    site.check_consistent()
