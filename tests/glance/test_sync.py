"""vmcatcher_glance against a real Glance: first sync, idempotence, replace, metadata, expiry."""

from __future__ import annotations

import hashlib
import json

from tests.glance.conftest import GlanceSite

A = "1a6e8a5c-0000-4000-8000-00000000000a"
B = "1a6e8a5c-0000-4000-8000-00000000000b"


def cached(gsite: GlanceSite, *identifiers: str) -> None:
    gsite.site.ready(*identifiers)
    gsite.site.cache(events=False)


def test_first_sync_publishes_with_metadata_then_nothing_changes(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 8192, extra={"ad:mpuri": "https://mp.example/a", "sl:osname": "Ubuntu"})
    gsite.site.add_image(B, 4096, title="Image B")
    cached(gsite)
    gsite.run("--name-prefix", "EGI ")
    images = gsite.by_identifier()
    assert sorted(images) == [A, B]
    a = images[A][0]
    data = gsite.site.data[A]
    sha = hashlib.sha512(data).hexdigest()
    assert a["status"] == "active" and a["os_hash_value"] == sha and a["size"] == len(data)
    assert a["vmcatcher_event_sl_checksum_sha512"] == sha
    assert a["vmcatcher_event_ad_mpuri"] == "https://mp.example/a"
    assert a["vmcatcher_event_hv_version"] == "1"
    assert a["vmcatcher_event_dc_identifier"] == A
    assert a["name"] == f"EGI Test image {A}"
    assert a["os_distro"] == "ubuntu" and a["os_version"] == "24.04"
    assert a["architecture"] == "x86_64" and a["visibility"] == "private"
    assert a["disk_format"] == "raw" and gsite.tag in a["tags"]
    assert json.loads(a["APPLIANCE_ATTRIBUTES"])["dc:identifier"] == A
    assert images[B][0]["name"] == "EGI Image B"

    before = {i["id"]: i["updated_at"] for i in gsite.images()}
    second = gsite.run("--name-prefix", "EGI ", "--dry-run")
    assert second.stdout.strip() == "nothing to do"
    gsite.run("--name-prefix", "EGI ")
    assert {i["id"]: i["updated_at"] for i in gsite.images()} == before


def test_new_version_replaces_the_old_image(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096, seed="one")
    cached(gsite)
    gsite.run()
    (old,) = gsite.by_identifier()[A]
    gsite.site.add_image(A, 5000, seed="two", version="2")
    gsite.site.publish()
    gsite.site.update()
    gsite.site.cache(events=False)
    gsite.run()
    (new,) = gsite.by_identifier()[A]
    assert new["id"] != old["id"]
    assert new["os_hash_value"] == hashlib.sha512(gsite.site.data[A]).hexdigest()
    assert new["vmcatcher_event_hv_version"] == "2"


def test_metadata_only_change_keeps_the_image(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096, title="Old title", extra={"ad:mpuri": "https://mp/1"})
    cached(gsite)
    gsite.run()
    (old,) = gsite.by_identifier()[A]
    gsite.site.add_image(A, 4096, title="New title", description="new text", version="1.1")
    gsite.site.publish()
    gsite.site.update()
    gsite.site.cache(events=False)
    plan = gsite.run("--dry-run").stdout
    assert "update" in plan and "upload" not in plan
    gsite.run()
    (new,) = gsite.by_identifier()[A]
    assert new["id"] == old["id"]
    assert new["name"] == "New title"
    assert new["vmcatcher_event_dc_description"] == "new text"
    assert new["vmcatcher_event_hv_version"] == "1.1"
    assert "vmcatcher_event_ad_mpuri" not in new
    assert json.loads(new["APPLIANCE_ATTRIBUTES"])["dc:title"] == "New title"


def test_image_no_longer_wanted_is_deleted(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096)
    gsite.site.add_image(B, 4096)
    cached(gsite)
    gsite.run()
    gsite.site.remove(B)
    gsite.site.cache(events=False)
    gsite.run()
    assert sorted(gsite.by_identifier()) == [A]


def test_foreign_images_are_left_alone(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096)
    cached(gsite)
    other = gsite.create_foreign("not ours", ["somebody-else"])
    gsite.run()
    import requests

    answer = requests.get(f"{gsite.endpoint}/v2/images/{other}", timeout=30)
    assert answer.status_code == 200


def test_dry_run_changes_nothing(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096)
    cached(gsite)
    result = gsite.run("--dry-run")
    assert f"upload {A}" in result.stdout
    assert gsite.images() == []


def test_images_of_an_expired_list_are_deleted(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096)
    cached(gsite)
    gsite.run()
    assert sorted(gsite.by_identifier()) == [A]
    gsite.site.execute("UPDATE \"imageListInstance\" SET expires = '2001-01-01 00:00:00.000000'")
    gsite.run()  # even before vmcatcher_cache expires the file: no longer available
    assert gsite.images() == []


def test_an_image_tagged_by_hand_is_left_alone(gsite: GlanceSite) -> None:
    stranger = gsite.create_foreign("by hand", [gsite.tag])
    result = gsite.run()
    assert "not created by vmcatcher_glance" in result.stderr
    assert [i["id"] for i in gsite.images()] == [stranger]
