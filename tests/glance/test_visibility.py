"""Visibility and sharing with projects (mapping file) on a real Glance."""

from __future__ import annotations

import json

import requests

from tests.cache_e2e.conftest import SUBSCRIPTION
from tests.glance.conftest import GlanceSite

A = "4d6e8a5c-0000-4000-8000-00000000000a"
P1 = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
P2 = "1f1e2d3c4b5a69788796a5b4c3d2e1f0"
P3 = "2f1e2d3c4b5a69788796a5b4c3d2e1f0"


def members(gsite: GlanceSite, image_id: str) -> set[str]:
    answer = requests.get(f"{gsite.endpoint}/v2/images/{image_id}/members", timeout=30)
    answer.raise_for_status()
    return {m["member_id"] for m in answer.json()["members"]}


def test_shared_images_follow_the_projects_map(gsite: GlanceSite) -> None:
    gsite.site.add_image(A, 4096)
    gsite.site.ready()
    gsite.site.cache(events=False)
    mapping = gsite.site.root / "projects.json"
    mapping.write_text(json.dumps({"subscriptions": {SUBSCRIPTION: [P1, P2]}}))
    gsite.run("--visibility", "shared", "--projects", str(mapping))
    (image,) = gsite.by_identifier()[A]
    assert image["visibility"] == "shared"
    assert members(gsite, image["id"]) == {P1, P2}

    mapping.write_text(json.dumps({"subscriptions": {SUBSCRIPTION: [P2, P3]}}))
    gsite.run("--visibility", "shared", "--projects", str(mapping))
    assert members(gsite, image["id"]) == {P2, P3}
    again = gsite.run("--visibility", "shared", "--projects", str(mapping), "--dry-run")
    assert again.stdout.strip() == "nothing to do"

    gsite.run("--visibility", "community")
    (same,) = gsite.by_identifier()[A]
    assert same["id"] == image["id"] and same["visibility"] == "community"


def test_a_broken_projects_map_is_one_error_line(gsite: GlanceSite) -> None:
    mapping = gsite.site.root / "projects.json"
    mapping.write_text('{"subscriptions": {"x": [1, 2]}}')
    result = gsite.run("--visibility", "shared", "--projects", str(mapping), expect=1)
    assert result.stderr.count("\n") == 1 and "must map to project IDs" in result.stderr


def test_an_unknown_visibility_is_refused(gsite: GlanceSite) -> None:
    result = gsite.run("--visibility", "everyone", expect=1)
    assert "Invalid visibility 'everyone'" in result.stderr
