"""The exact states a killed ``vmcatcher_cache`` can leave between a rename and an index write.

The random crash trials (``test_crash_cache.py``) reach these states only now
and then; here each one is built by hand, deterministically, from a real run:
the files are renamed the way the killed run renamed them and the indexes are
left as the killed run left them. The next normal run must finish the move
(and fire the event the killed run never fired), download nothing again, and
leave a consistent cache. A file that does not verify is never adopted.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.robustness.consistency import read_index
from tests.robustness.sitekit import Site, image_path, uuids

pytestmark = pytest.mark.robustness

STAMP = "2020-01-02_03-04-05"


def _write_index(directory: Path, data: dict) -> None:
    (directory / "cache.index").write_text(json.dumps(data, sort_keys=True, indent=4))


def _events(site: Site) -> list[str]:
    return site.events_log.read_text().splitlines() if site.events_log.exists() else []


def _cached_site(site: Site, count: int = 3) -> list[str]:
    rng = random.Random(42)
    site.publish({uuid: rng.randbytes(4096) for uuid in uuids(count, rng)})
    site.subscribe()
    site.check(site.command("vmcatcher_cache", *site.cache_args()))
    site.assert_consistent(strict=True)
    site.events_log.unlink()
    return sorted(site.images)


def _interrupted_install(site: Site, uuid: str) -> None:
    """cache/<uuid> renamed from partial/, cache index not written (partial index still old)."""
    cache_index = read_index(site.cache_dir)
    entry = cache_index.pop(uuid)
    msg_hash = entry["msgHash"]
    _write_index(site.cache_dir, cache_index)
    partial_entry = dict(entry, DownLoadTrys={"count": 1, "msgHash": msg_hash})
    _write_index(site.partial_dir, {uuid: partial_entry})


def test_install_interrupted_before_the_cache_index_write(site: Site) -> None:
    images = _cached_site(site)
    victim = images[1]
    _interrupted_install(site, victim)
    mark = len(site.server.requests)

    site.check(site.command("vmcatcher_cache", *site.cache_args()))
    site.assert_consistent(strict=True)
    assert site.image_requests(mark) == {}, "an installed image was downloaded again"
    assert f"AvailablePostfix {victim}" in _events(site)
    # The recovered entry is the partial one, DownLoadTrys included, as a normal install.
    entry = read_index(site.cache_dir)[victim]
    assert entry["DownLoadTrys"] == {"count": 1, "msgHash": entry["msgHash"]}


def test_install_interrupted_between_the_two_index_writes(site: Site) -> None:
    """Cache index written, partial index not: the stale partial entry is dropped."""
    images = _cached_site(site)
    victim = images[0]
    entry = read_index(site.cache_dir)[victim]
    _write_index(site.partial_dir, {victim: dict(entry, DownLoadTrys={"count": 1})})
    mark = len(site.server.requests)

    site.check(site.command("vmcatcher_cache", *site.cache_args()))
    site.assert_consistent(strict=True)
    assert site.image_requests(mark) == {}
    assert f"AvailablePostfix {victim}" in _events(site)


def test_a_file_that_does_not_verify_is_not_adopted(site: Site) -> None:
    images = _cached_site(site)
    victim = images[2]
    _interrupted_install(site, victim)
    (site.cache_dir / victim).write_bytes(b"not the signed image")
    mark = len(site.server.requests)

    site.check(site.command("vmcatcher_cache", *site.cache_args()))
    site.assert_consistent(strict=True)
    requests = site.image_requests(mark)
    assert list(requests) == [image_path(victim, site.images[victim])]


def _expire_one(site: Site) -> tuple[str, bytes]:
    """Publish a version without one cached image; return it and its bytes."""
    victim = sorted(site.images)[0]
    data = site.images[victim]
    site.publish({u: d for u, d in site.images.items() if u != victim})
    site.check(site.command("vmcatcher_subscribe", "-U"))
    return victim, data


def test_expiry_interrupted_before_any_index_write(site: Site) -> None:
    _cached_site(site)
    victim, data = _expire_one(site)
    os.rename(site.cache_dir / victim, site.expired_dir / f"{victim}.{STAMP}")

    result = site.command("vmcatcher_cache", *site.cache_args())
    site.check(result)
    assert "does not exist" not in result.stderr, result
    site.assert_consistent(strict=True)
    expired = read_index(site.expired_dir)
    assert list(expired) == [f"{victim}.{STAMP}"]
    assert (site.expired_dir / f"{victim}.{STAMP}").read_bytes() == data
    assert f"ExpirePostfix {victim}" in _events(site)


def test_expiry_interrupted_between_the_two_index_writes(site: Site) -> None:
    """Expired index written, cache index not: the stale cache entry is dropped."""
    _cached_site(site)
    victim, data = _expire_one(site)
    entry = read_index(site.cache_dir)[victim]
    name = f"{victim}.{STAMP}"
    os.rename(site.cache_dir / victim, site.expired_dir / name)
    _write_index(site.expired_dir, {name: dict(entry, filename=name)})

    result = site.command("vmcatcher_cache", *site.cache_args())
    site.check(result)
    site.assert_consistent(strict=True)
    assert list(read_index(site.expired_dir)) == [name]
    assert (site.expired_dir / name).read_bytes() == data
    assert f"ExpirePostfix {victim}" in _events(site)


def test_a_really_missing_cached_file_is_still_reported(site: Site) -> None:
    """No expired copy either: the image was lost by someone else; say so, exit 1 as before."""
    _cached_site(site)
    victim, _ = _expire_one(site)
    (site.cache_dir / victim).unlink()

    result = site.command("vmcatcher_cache", *site.cache_args())
    assert result.returncode == 1, result
    assert "does not exist" in result.stderr, result
    site.assert_consistent(strict=True)
