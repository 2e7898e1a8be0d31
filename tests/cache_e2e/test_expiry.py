"""Which actions run, and when cached images are expired (spec §10.2, §10.4, §14.1 item 7)."""

from __future__ import annotations

import hashlib
import re

from tests.cache_e2e.conftest import CacheSite

A = "a0000000-0000-4000-8000-00000000000a"
B = "b0000000-0000-4000-8000-00000000000b"
C = "c0000000-0000-4000-8000-00000000000c"
STAMP = r"\.\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"


def expired_ids(site: CacheSite) -> list[str]:
    """Image identifiers of the files in expired/, sorted."""
    return sorted(re.sub(STAMP + "$", "", name) for name in site.files(site.expired_dir))


def test_actions_are_the_union_of_flags_and_environment(site: CacheSite) -> None:
    # A cached then corrupted, B subscribed but not cached, C cached then unsubscribed.
    for identifier in (A, B, C):
        site.add_image(identifier)
    site.ready(A, C)
    site.cache()
    (site.cache_dir / A).write_bytes(b"corrupt")
    site.remove(C)
    site.accept(B)

    def outcome(variant: CacheSite) -> tuple[list[str], list[str]]:
        return sorted(variant.files(variant.cache_dir)), expired_ids(variant)

    default = site.clone("default")
    result = default.cache("-v")
    assert "Defaulting actions as 'expire', and 'download'." in result.stderr
    assert outcome(default) == ([A, B], [C])  # no sha512 check by default
    assert (default.cache_dir / A).read_bytes() == b"corrupt"

    check = site.clone("check")
    result = check.cache("-s")
    assert f"Image '{A}' size incorrect." in result.stderr
    assert outcome(check) == ([C], [A])

    expire = site.clone("expire")
    expire.cache(env={"VMCATCHER_CACHE_ACTION_EXPIRE": "1"})
    assert outcome(expire) == ([A], [C])

    download = site.clone("download")
    result = download.cache("-D", "-v")
    assert "Defaulting action 'expire', as 'download' is requested." in result.stderr
    assert outcome(download) == ([A, B], [C])

    union = site.clone("union")
    union.cache("-E", env={"VMCATCHER_CACHE_ACTION_CHECK": "1"})
    assert outcome(union) == ([], [A, C])

    everything = site.clone("everything")
    everything.cache(
        env={"VMCATCHER_CACHE_ACTION_CHECK": "1", "VMCATCHER_CACHE_ACTION_DOWNLOAD": "1"}
    )
    assert outcome(everything) == ([A, B], [A, C])
    assert (everything.cache_dir / A).read_bytes() == everything.data[A]

    not_one = site.clone("not_one")  # only the exact value "1" selects an action
    result = not_one.cache("-v", env={"VMCATCHER_CACHE_ACTION_CHECK": "yes"})
    assert "Defaulting actions as 'expire', and 'download'." in result.stderr
    assert outcome(not_one) == ([A, B], [C])


def test_expired_list_expires_its_images(site: CacheSite) -> None:
    site.add_image(A)
    site.add_image(B)
    site.ready()
    site.cache()
    assert site.files(site.cache_dir) == {A, B}
    site.clear_events()

    site.execute("UPDATE \"imageListInstance\" SET expires = '2001-01-01 00:00:00.000000'")
    site.cache()

    assert site.files(site.cache_dir) == set()
    assert expired_ids(site) == [A, B]
    events = site.events()
    assert [e["VMCATCHER_EVENT_TYPE"] for e in events] == [
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ExpirePrefix", "ExpirePostfix",
        "ProcessPostfix",
    ]  # fmt: skip
    assert [e["VMCATCHER_EVENT_DC_IDENTIFIER"] for e in events[1:5]] == [A, A, B, B]
    assert site.index(site.cache_dir) == {}
    # Nothing is downloaded again while the list stays expired.
    site.clear_events()
    site.cache()
    assert site.event_types() == ["ProcessPrefix", "ProcessPostfix"]


def test_new_list_version_dropping_and_changing_images(site: CacheSite) -> None:
    site.add_image(A, 3000)
    site.add_image(B, 3000)
    site.add_image(C, 3000)
    site.ready()
    site.cache()
    old_b = site.data[B]
    site.clear_events()
    site.server.clear_requests()

    # Version 2: A is gone, B has new bytes (same URL), C is unchanged.
    new_b = b"version two of B " * 100
    site.server.set_content(f"/{B}.img", new_b)
    site.images[B].update(
        {"hv:size": len(new_b), "sl:checksum:sha512": hashlib.sha512(new_b).hexdigest()}
    )
    site.data[B] = new_b
    site.publish([B, C])
    site.update()
    site.cache()

    events = site.events()
    types = [e["VMCATCHER_EVENT_TYPE"] for e in events]
    assert types == [
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ExpirePrefix", "ExpirePostfix",
        "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip
    assert sorted(e["VMCATCHER_EVENT_DC_IDENTIFIER"] for e in events[1:5]) == [A, A, B, B]
    assert [e["VMCATCHER_EVENT_DC_IDENTIFIER"] for e in events[5:7]] == [B, B]
    assert events[6]["VMCATCHER_EVENT_SL_CHECKSUM_SHA512"] == hashlib.sha512(new_b).hexdigest()
    assert site.files(site.cache_dir) == {B, C}
    assert (site.cache_dir / B).read_bytes() == new_b
    assert expired_ids(site) == [A, B]
    old_b_name = next(n for n in site.files(site.expired_dir) if n.startswith(B))
    assert (site.expired_dir / old_b_name).read_bytes() == old_b
    # C stays, with the new list's message and msgHash in its entry.
    assert len(site.server.requests_for(f"/{C}.img")) == 0
    entry = site.index(site.cache_dir)[C]
    assert entry["message"] == site.list_path.read_bytes().decode()
    assert entry["msgHash"] == site.index(site.cache_dir)[B]["msgHash"]


def test_expired_max_count_bounds_the_expired_directory(site: CacheSite) -> None:
    for identifier in (A, B, C):
        site.add_image(identifier)
    site.ready()
    site.cache()
    site.remove(A, B, C)

    site.cache("--expired-max-count", "2")

    # Expired in index order A, B, C: A has the oldest stamp (or the same one, and
    # ties go by name), so A is the one removed.
    assert expired_ids(site) == [B, C]
    assert set(site.index(site.expired_dir)) == site.files(site.expired_dir)

    site.cache("--expired-max-count", "1")
    assert expired_ids(site) == [C]
    assert set(site.index(site.expired_dir)) == site.files(site.expired_dir)


def test_expired_max_age_and_count_zero_both_empty_the_expired_directory(
    site: CacheSite,
) -> None:
    """0 is one rule for both pruning options: keep none (issue 11; it was ignored for age)."""
    for identifier in (A, B):
        site.add_image(identifier)
    site.ready()
    site.cache()
    site.remove(A)
    site.cache("--expired-max-age", "0")
    assert expired_ids(site) == []
    assert site.index(site.expired_dir) == {}

    site.remove(B)
    site.cache("--expired-max-count", "0")
    assert expired_ids(site) == []
    assert site.index(site.expired_dir) == {}
