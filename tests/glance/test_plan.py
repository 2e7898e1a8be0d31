"""The planner alone: desired + actual -> actions, without a Glance (fast)."""

from __future__ import annotations

from pathlib import Path

from vmcatcher.glance.model import (
    PROP_IDENTIFIER,
    PROP_SHA512,
    PROP_SOURCE_FORMAT,
    ActionKind,
    ActualImage,
    DesiredImage,
    ImageStatus,
    Visibility,
)
from vmcatcher.glance.plan import plan

SHA_A = "a" * 128
SHA_B = "b" * 128


def desired(identifier: str = "img-1", sha: str = SHA_A, **kw) -> DesiredImage:
    props = {PROP_IDENTIFIER: identifier, PROP_SHA512: sha, "vmcatcher_event_dc_title": "T"}
    props.update(kw.pop("properties", {}))
    return DesiredImage(identifier, sha, 10, Path("/x"), kw.pop("name", "T"), props, **kw)


def actual(identifier: str = "img-1", sha: str = SHA_A, image_id: str = "g1", **kw) -> ActualImage:
    props = {PROP_IDENTIFIER: identifier, PROP_SHA512: sha, "vmcatcher_event_dc_title": "T"}
    props.update(kw.pop("properties", {}))
    return ActualImage(
        id=image_id,
        name=kw.pop("name", "T"),
        status=kw.pop("status", ImageStatus.ACTIVE),
        visibility=kw.pop("visibility", "private"),
        protected=False,
        properties=props,
        os_hash_value=kw.pop("os_hash_value", sha),
        created_at=kw.pop("created_at", "2026-01-01T00:00:00Z"),
        **kw,
    )


def kinds(actions) -> list[tuple[str, str | None]]:
    return [(a.kind.value, a.image_id) for a in actions]


def test_new_image_is_uploaded() -> None:
    steps = plan({"img-1": desired()}, [])
    assert kinds(steps) == [("upload", None)]


def test_nothing_changed_plans_nothing() -> None:
    assert plan({"img-1": desired()}, [actual()]) == []


def test_new_sha512_uploads_then_retires_the_old_one() -> None:
    steps = plan({"img-1": desired(sha=SHA_B)}, [actual()])
    assert kinds(steps) == [("upload", None), ("retire", "g1")]
    assert steps[1].after_upload


def test_metadata_only_change_updates_in_place() -> None:
    want = desired(name="New", properties={"vmcatcher_event_dc_title": "New"})
    steps = plan({"img-1": want}, [actual(properties={"vmcatcher_event_old": "x"})])
    assert kinds(steps) == [("update", "g1")]
    assert steps[0].name == "New"
    assert steps[0].set_properties == {"vmcatcher_event_dc_title": "New"}
    assert steps[0].remove_properties == ("vmcatcher_event_old",)


def test_foreign_properties_are_left_alone() -> None:
    assert plan({"img-1": desired()}, [actual(properties={"hw_disk_bus": "scsi"})]) == []


def test_not_desired_is_retired() -> None:
    assert kinds(plan({}, [actual()])) == [("retire", "g1")]


def test_leftovers_are_removed_first() -> None:
    steps = plan(
        {"img-1": desired()},
        [actual(image_id="q", status=ImageStatus.SAVING), actual(image_id="g1")],
    )
    assert kinds(steps) == [("remove-leftover", "q")]


def test_duplicates_keep_the_oldest() -> None:
    old = actual(image_id="old", created_at="2026-01-01")
    new = actual(image_id="new", created_at="2026-02-01")
    assert kinds(plan({"img-1": desired()}, [new, old])) == [("retire", "new")]


def test_wrong_glance_hash_is_not_current() -> None:
    steps = plan({"img-1": desired()}, [actual(os_hash_value=SHA_B)])
    assert kinds(steps) == [("upload", None), ("retire", "g1")]


def test_converted_image_is_current_by_its_recorded_sha512() -> None:
    converted = actual(os_hash_value=SHA_B, properties={PROP_SOURCE_FORMAT: "vmdk"})
    assert plan({"img-1": desired()}, [converted]) == []


def test_deactivated_desired_image_is_reactivated() -> None:
    steps = plan({"img-1": desired()}, [actual(status=ImageStatus.DEACTIVATED)])
    assert kinds(steps) == [("reactivate", "g1")]


def test_shared_members_are_corrected() -> None:
    want = desired(visibility=Visibility.SHARED, members=frozenset({"p1", "p2"}))
    have = actual(visibility="shared", members=frozenset({"p2", "p3"}))
    steps = plan({"img-1": want}, [have])
    assert kinds(steps) == [("members", "g1")]
    assert steps[0].add_members == ("p1",) and steps[0].remove_members == ("p3",)


def test_private_image_becoming_shared_gets_visibility_and_members() -> None:
    want = desired(visibility=Visibility.SHARED, members=frozenset({"p1"}))
    steps = plan({"img-1": want}, [actual()])
    assert [a.kind for a in steps] == [ActionKind.UPDATE, ActionKind.MEMBERS]
    assert steps[0].visibility == "shared"


def test_tagged_by_hand_is_left_alone() -> None:
    stranger = actual(image_id="x", properties={PROP_IDENTIFIER: ""})
    assert plan({}, [stranger]) == []
