"""The update service in-process: every result code of ``-U`` and the rules behind them."""

from __future__ import annotations

from datetime import datetime, timezone

from tests.services.conftest import World, days
from vmcatcher.vocabulary import UpdateMode

A, B = "https://lists.example.org/a.list", "https://lists.example.org/b.list"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def test_first_update_imports_the_list(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "1", "img-1", "img-2")
    assert world.update() == 0
    assert world.versions("list-a") == ["1"]
    assert world.images("list-a") == {"img-1", "img-2"}


def test_same_version_is_recognised_and_not_imported_again(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "1", "img-1")
    assert world.update() == 0
    assert world.update() == 0
    assert world.versions("list-a") == ["1"]
    assert world.repository.fetched == [A, A]


def test_unauthorised_signer_is_13(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "1", "img-1", signer=world.pki.intermediate_endorser)
    assert world.update() == 13
    assert world.versions("list-a") == []


def test_rollback_is_17_and_keeps_the_newest(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "2", "img-1")
    assert world.update() == 0
    world.publish("list-a", A, "1", "img-1")
    assert world.update() == 17
    assert world.versions("list-a") == ["2"]
    assert world.latest_version("list-a") == "2"


def test_new_image_refused_under_the_default_mode_is_32(world: World) -> None:
    world.subscribe("list-a", A, update_mode=0)
    world.publish("list-a", A, "1", "img-1")
    assert world.update() == 32, "the first version's images are new too"
    world.subscribe("list-b", B, update_mode=UpdateMode.ADD | UpdateMode.SUBSCRIBE)
    world.publish("list-b", B, "1", "img-2")
    assert world.update() == 0  # list-a unchanged (recognised by its hash), list-b adds img-2
    assert world.images("list-b") == {"img-2"}
    assert world.images("list-a") == set()
    assert world.versions("list-a") == ["1"], "the version is stored, without the image"


def test_expired_download_is_34_and_changes_nothing(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "1", "img-1")
    assert world.update() == 0
    world.publish("list-a", A, "2", "img-1", created=_now() - days(3), expires=_now() - days(1))
    assert world.update() == 34
    assert world.versions("list-a") == ["1"]


def test_stored_list_past_its_expiry_is_marked_expired(world: World) -> None:
    world.subscribe("list-a", A)
    world.publish("list-a", A, "1", "img-1", created=_now() - days(2), expires=_now() + days(1))
    assert world.update() == 0
    world.repository.failing.add(A)
    world.sql("UPDATE imageListInstance SET expires = :past", past=_now() - days(1))
    assert world.update() == 10  # the server is gone; the stored list is marked all the same
    [(expired,)] = world.sql("SELECT expired FROM imageListInstance")
    assert expired is not None


def test_rollback_refused_after_image_refuse_reset(world: World) -> None:
    """--image-refuse forces a re-import; an older version is still refused (17)."""
    from vmcatcher.services.subscriptions import image_refuse

    world.subscribe("list-a", A, update_mode=UpdateMode.ADD)
    world.publish("list-a", A, "3", "img-1")
    assert world.update() == 0
    with world.database.session() as session:
        image_refuse(session, ["img-1"], ["list-a"])
    world.publish("list-a", A, "2", "img-1")
    assert world.update() == 17
    assert world.versions("list-a") == ["3"]


def test_a_list_may_move_its_subscription_within_https(world: World) -> None:
    moved = "https://mirror.example.org/a.list"
    world.subscribe("list-a", A, update_mode=UpdateMode.ADD)
    world.publish("list-a", A, "1", "img-1", hv_uri=moved)
    assert world.update() == 0
    assert world.subscription("list-a").uri == moved


def test_one_broken_subscription_never_stops_the_others(world: World) -> None:
    world.subscribe("list-a", A, update_mode=UpdateMode.ADD)
    world.subscribe("list-b", B, update_mode=UpdateMode.ADD)
    world.repository.failing.add(A)
    world.publish("list-b", B, "1", "img-2")
    assert world.update() == 10
    assert world.versions("list-a") == []
    assert world.versions("list-b") == ["1"]
