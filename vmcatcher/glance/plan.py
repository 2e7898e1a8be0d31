"""The planner: desired images + Glance's images of ours -> the list of actions (no I/O).

Why pure: every decision about what to upload, update or retire is made here
and tested without a Glance (tests/glance/test_plan.py); the service only
carries the actions out (docs/glance.md, "How a run converges").

Rules, per image identifier (``dc:identifier``):

* an image of ours still ``queued``/``saving``/``importing``/``killed`` is the
  leftover of an interrupted run (uploads run one at a time, so there is at
  most one): removed first;
* a *current* image is a complete (active or deactivated) one whose recorded
  sha512 is the desired one and, unless we converted it, whose Glance hash
  (``os_hash_value``) agrees. If there is none: upload, then retire every
  other image of that identifier (only after the upload succeeded). If there
  are several: keep the oldest, retire the others;
* a current image whose name, visibility or properties differ is updated in
  place (no re-upload); a deactivated one is reactivated; a shared one gets
  its project memberships corrected;
* every image of ours whose identifier is no longer desired is retired;
* an image carrying our tag without our identifier property was not created
  by us (we set both when creating): it is left alone.

A second plan with nothing changed is empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vmcatcher.glance.model import (
    EVENT_PROPERTY_PREFIX,
    OWN_PROPERTIES,
    PROP_SOURCE_FORMAT,
    UNFINISHED,
    USABLE,
    Action,
    ActionKind,
    ActualImage,
    DesiredImage,
    ImageStatus,
    Visibility,
)


def is_current(image: ActualImage, desired: DesiredImage) -> bool:
    """``image`` holds the desired bytes (by our record and, when unconverted, Glance's hash)."""
    if image.status not in USABLE or image.sha512 != desired.sha512:
        return False
    if PROP_SOURCE_FORMAT in image.properties:
        return True  # converted: Glance hashed the converted bytes, our property the original
    return image.os_hash_value in (None, "", desired.sha512)


def _managed(name: str) -> bool:
    return name.startswith(EVENT_PROPERTY_PREFIX) or name in OWN_PROPERTIES


def metadata_changes(image: ActualImage, desired: DesiredImage) -> Action | None:
    """The in-place UPDATE bringing ``image``'s name, visibility and properties to ``desired``."""
    wanted = dict(desired.properties)
    if PROP_SOURCE_FORMAT in image.properties:
        wanted.setdefault(PROP_SOURCE_FORMAT, image.properties[PROP_SOURCE_FORMAT])
    set_properties = {k: v for k, v in wanted.items() if image.properties.get(k) != v}
    remove = tuple(sorted(k for k in image.properties if _managed(k) and k not in wanted))
    name = desired.name if image.name != desired.name else None
    visibility = desired.visibility.value if image.visibility != desired.visibility.value else None
    if not (set_properties or remove or name or visibility):
        return None
    changed = sorted(set(set_properties) | set(remove))
    parts = (["name"] if name else []) + (["visibility"] if visibility else []) + changed
    return Action(
        ActionKind.UPDATE,
        desired.identifier,
        image.id,
        desired=desired,
        name=name,
        visibility=visibility,
        set_properties=set_properties,
        remove_properties=remove,
        reason="metadata changed: " + ", ".join(parts),
    )


def member_changes(image: ActualImage, desired: DesiredImage) -> Action | None:
    """Add/remove projects of a shared image (only when its members were read)."""
    if desired.visibility is not Visibility.SHARED:
        return None
    members = image.members
    if members is None:  # not read: only a not-yet-shared image has none to compare
        if image.visibility == Visibility.SHARED.value:
            return None
        members = frozenset()
    add = tuple(sorted(desired.members - members))
    remove = tuple(sorted(members - desired.members))
    if not (add or remove):
        return None
    return Action(
        ActionKind.MEMBERS,
        desired.identifier,
        image.id,
        desired=desired,
        add_members=add,
        remove_members=remove,
        reason=f"members +{len(add)} -{len(remove)}",
    )


def _oldest_first(images: Iterable[ActualImage]) -> list[ActualImage]:
    return sorted(images, key=lambda image: (image.created_at, image.id))


def plan(desired: Mapping[str, DesiredImage], actual: Iterable[ActualImage]) -> list[Action]:
    """The actions converging Glance's images of ours on ``desired`` (keyed by identifier)."""
    leftovers: list[Action] = []
    by_identifier: dict[str | None, list[ActualImage]] = {}
    for image in actual:
        if not image.identifier:
            continue  # tagged by hand, not created by us: never touched (see foreign_images)
        if image.status in UNFINISHED:
            reason = f"unfinished upload ({image.status.value})"
            leftovers.append(
                Action(ActionKind.REMOVE_LEFTOVER, image.identifier, image.id, reason=reason)
            )
        elif image.status in USABLE or image.status is None:
            by_identifier.setdefault(image.identifier, []).append(image)
        # deleted / pending_delete: already going away

    steps: list[Action] = []
    for identifier in sorted(desired):
        target = desired[identifier]
        images = _oldest_first(by_identifier.pop(identifier, []))
        current = [image for image in images if is_current(image, target)]
        stale = [image for image in images if image not in current]
        if not current:
            steps.append(Action(ActionKind.UPLOAD, identifier, desired=target,
                                reason="new image" if not stale else "new sha512"))  # fmt: skip
            steps.extend(
                Action(
                    ActionKind.RETIRE,
                    identifier,
                    image.id,
                    after_upload=True,
                    reason="replaced by a new version",
                )
                for image in stale
            )
            continue
        keep = next((i for i in current if i.status is ImageStatus.ACTIVE), current[0])
        if keep.status is ImageStatus.DEACTIVATED:
            steps.append(Action(ActionKind.REACTIVATE, identifier, keep.id, desired=target,
                                reason="wanted again"))  # fmt: skip
        for change in (metadata_changes(keep, target), member_changes(keep, target)):
            if change is not None:
                steps.append(change)
        steps.extend(
            Action(ActionKind.RETIRE, identifier, image.id,
                   reason="duplicate" if image in current else "replaced by a new version")
            for image in images
            if image is not keep
        )  # fmt: skip

    for undesired in sorted(by_identifier, key=lambda i: i or ""):
        for image in _oldest_first(by_identifier[undesired]):
            steps.append(Action(ActionKind.RETIRE, undesired, image.id, reason="no longer desired"))
    return leftovers + steps


def foreign_images(actual: Iterable[ActualImage]) -> list[ActualImage]:
    """Images carrying our tag but not our identifier property: reported, never changed."""
    return [image for image in actual if not image.identifier]
