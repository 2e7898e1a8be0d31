"""Complete deletes: no orphaned rows, no dangling pointers, with or without SQLite FKs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from tests.support.databases import test_database_url
from vmcatcher.db import (
    Deleted,
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
    delete_endorser,
    delete_image_definition,
    delete_subscription,
    delete_subscription_auth,
    prepare_database,
)

pytestmark = pytest.mark.db

NOW = datetime(2024, 5, 1, 12, 0, 0)

# Every way a row can be left pointing at nothing.
DANGLING = {
    "principal without endorser": 'SELECT id FROM "endorserPrincible" WHERE endorser IS NULL '
    "OR endorser NOT IN (SELECT id FROM endorser)",
    "auth without subscription": 'SELECT id FROM "subscriptionAuth" WHERE subscription IS NULL '
    "OR subscription NOT IN (SELECT id FROM subscription)",
    "auth without endorser": 'SELECT id FROM "subscriptionAuth" WHERE endorser IS NULL '
    "OR endorser NOT IN (SELECT id FROM endorser)",
    "list instance without auth": 'SELECT id FROM "imageListInstance" WHERE sub_auth IS NULL '
    'OR sub_auth NOT IN (SELECT id FROM "subscriptionAuth")',
    "definition without subscription": 'SELECT id FROM "ImageDefinition" WHERE '
    "subscription IS NULL OR subscription NOT IN (SELECT id FROM subscription)",
    "image without definition": 'SELECT id FROM "ImageInstance" WHERE "fkIdentifier" IS NULL '
    'OR "fkIdentifier" NOT IN (SELECT id FROM "ImageDefinition")',
    "image without list instance": 'SELECT id FROM "ImageInstance" WHERE '
    "fkimagelistinstance IS NULL OR fkimagelistinstance NOT IN "
    '(SELECT id FROM "imageListInstance")',
    "imagelist_latest dangling": "SELECT id FROM subscription WHERE imagelist_latest IS NOT NULL "
    'AND imagelist_latest NOT IN (SELECT id FROM "imageListInstance")',
    "latest dangling": 'SELECT id FROM "ImageDefinition" WHERE latest IS NOT NULL AND latest != 0 '
    'AND latest NOT IN (SELECT id FROM "ImageInstance")',
}


def assert_consistent(session: Session) -> None:
    problems = {
        name: ids
        for name, query in DANGLING.items()
        if (ids := session.connection().exec_driver_sql(query).scalars().all())
    }
    assert problems == {}


@dataclass
class World:
    """Ids of a small but tangled database (see build_world)."""

    e1: int
    e2: int
    s1: int
    s2: int
    a1: int
    a2: int
    a3: int
    l1: int
    l2: int
    l3: int
    l4: int
    d1: int
    d2: int
    d3: int


def image(definition: ImageDefinition, instance: ImageListInstance) -> ImageInstance:
    return ImageInstance(
        description="d",
        hypervisor="kvm",
        sha512="0" * 128,
        uri="https://h/i",
        os="Linux",
        osversion="9",
        arch="x86_64",
        version="1",
        size=1,
        title="t",
        definition=definition,
        list_instance=instance,
    )


def list_instance(auth: SubscriptionAuth, version: str) -> ImageListInstance:
    return ImageListInstance(
        data=b"x",
        data_hash="h",
        sub_auth=auth,
        imported=NOW,
        created=NOW,
        expires=NOW,
        version=version,
    )


def build_world(session: Session) -> World:
    """E1 signs S1 (A1) and S2 (A3); E2 signs S1 (A2).

    S1 has definitions D1, D2 and list instances L1, L4 (under A1) and L2 (under E2's
    A2, the latest); S2 has D3 and L3 (latest). Each ``latest`` points at an image.
    """
    e1 = Endorser(identifier="E1")
    e2 = Endorser(identifier="E2")
    e1.principals = [
        EndorserPrincipal(hv_dn="/CN=one", hv_ca="/CN=CA"),
        EndorserPrincipal(hv_dn="/CN=one-b", hv_ca="/CN=CA2"),
    ]
    e2.principals = [EndorserPrincipal(hv_dn="/CN=two", hv_ca="/CN=CA")]
    s1 = Subscription(identifier="S1", uri="https://one/l", authorised=True)
    s2 = Subscription(identifier="S2", uri="https://two/l", authorised=True)
    a1 = SubscriptionAuth(subscription=s1, endorser=e1, authorised=True)
    a2 = SubscriptionAuth(subscription=s1, endorser=e2, authorised=True)
    a3 = SubscriptionAuth(subscription=s2, endorser=e1, authorised=True)
    d1 = ImageDefinition(identifier="D1", cache=1, subscription=s1)
    d2 = ImageDefinition(identifier="D2", cache=0, subscription=s1)
    d3 = ImageDefinition(identifier="D3", cache=1, subscription=s2)
    l1, l2, l3, l4 = (
        list_instance(a1, "1"),
        list_instance(a2, "3"),
        list_instance(a3, "1"),
        list_instance(a1, "2"),
    )
    images = {
        "l1d1": image(d1, l1),
        "l1d2": image(d2, l1),
        "l2d1": image(d1, l2),
        "l3d3": image(d3, l3),
        "l4d1": image(d1, l4),
        "l4d2": image(d2, l4),
    }
    session.add_all([e1, e2, s1, s2, *images.values()])
    session.flush()
    s1.imagelist_latest = l2.id
    s2.imagelist_latest = l3.id
    d1.latest = images["l2d1"].id
    d2.latest = images["l4d2"].id
    d3.latest = images["l3d3"].id
    session.flush()
    return World(
        e1.id, e2.id, s1.id, s2.id, a1.id, a2.id, a3.id, l1.id, l2.id, l3.id, l4.id, d1.id, d2.id,
        d3.id,
    )  # fmt: skip


@pytest.fixture(params=["our_engine", "bare_engine"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    """A session on our engine, or on a bare engine like an old tool's.

    On SQLite the bare engine has foreign keys off, so only our explicit deletes
    keep the rows consistent; PostgreSQL always enforces them.
    """
    database = prepare_database(test_database_url(tmp_path))
    ours = request.param == "our_engine"
    engine = database.engine if ours else create_engine(database.url)
    with Session(engine) as session:
        if database.is_sqlite:
            enabled = session.connection().exec_driver_sql("PRAGMA foreign_keys").scalar()
            assert enabled == ours
        yield session
    engine.dispose()
    database.close()


def ids(session: Session, model: type) -> set[int]:
    return set(session.scalars(select(model.id)))


def test_world_starts_consistent(session: Session) -> None:
    build_world(session)
    assert_consistent(session)


def test_delete_subscription_removes_everything_under_it(session: Session) -> None:
    w = build_world(session)
    images_of_s2 = set(session.scalars(select(ImageInstance.id).where(
        ImageInstance.list_instance_id == w.l3)))  # fmt: skip
    counts = delete_subscription(session, session.get(Subscription, w.s1))
    session.commit()

    assert counts == Deleted(
        subscriptions=1, auths=2, list_instances=3, image_definitions=2, images=5
    )
    assert ids(session, Subscription) == {w.s2}
    assert ids(session, SubscriptionAuth) == {w.a3}
    assert ids(session, ImageListInstance) == {w.l3}
    assert ids(session, ImageDefinition) == {w.d3}
    assert ids(session, ImageInstance) == images_of_s2
    assert ids(session, Endorser) == {w.e1, w.e2}  # endorsers are kept
    assert len(ids(session, EndorserPrincipal)) == 3
    assert session.get(Subscription, w.s2).imagelist_latest == w.l3
    assert session.get(ImageDefinition, w.d3).latest in images_of_s2
    assert_consistent(session)


def test_delete_endorser_clears_pointers_into_its_imports(session: Session) -> None:
    w = build_world(session)
    counts = delete_endorser(session, session.get(Endorser, w.e2))
    session.commit()

    assert counts == Deleted(endorsers=1, principals=1, auths=1, list_instances=1, images=1)
    assert ids(session, Endorser) == {w.e1}
    assert ids(session, SubscriptionAuth) == {w.a1, w.a3}
    assert ids(session, ImageListInstance) == {w.l1, w.l3, w.l4}
    s1 = session.get(Subscription, w.s1)
    assert s1.imagelist_latest is None  # pointed at L2, imported under E2
    assert session.get(ImageDefinition, w.d1).latest == 0  # pointed at L2's image
    assert session.get(ImageDefinition, w.d2).latest != 0  # untouched
    assert session.get(Subscription, w.s2).imagelist_latest == w.l3
    assert ids(session, ImageDefinition) == {w.d1, w.d2, w.d3}  # definitions stay
    assert_consistent(session)


def test_delete_endorser_signing_several_subscriptions(session: Session) -> None:
    w = build_world(session)
    d1_latest = session.get(ImageDefinition, w.d1).latest
    delete_endorser(session, session.get(Endorser, w.e1))
    session.commit()

    assert ids(session, SubscriptionAuth) == {w.a2}
    assert ids(session, ImageListInstance) == {w.l2}
    assert session.get(Subscription, w.s1).imagelist_latest == w.l2
    assert session.get(Subscription, w.s2).imagelist_latest is None
    assert session.get(ImageDefinition, w.d1).latest == d1_latest
    assert session.get(ImageDefinition, w.d2).latest == 0
    assert session.get(ImageDefinition, w.d3).latest == 0
    assert len(ids(session, EndorserPrincipal)) == 1
    assert_consistent(session)


def test_delete_subscription_auth(session: Session) -> None:
    w = build_world(session)
    counts = delete_subscription_auth(session, session.get(SubscriptionAuth, w.a1))
    session.commit()

    assert counts == Deleted(auths=1, list_instances=2, images=4)
    assert ids(session, SubscriptionAuth) == {w.a2, w.a3}
    assert ids(session, ImageListInstance) == {w.l2, w.l3}
    assert session.get(ImageDefinition, w.d2).latest == 0
    assert session.get(Subscription, w.s1).imagelist_latest == w.l2
    assert ids(session, Endorser) == {w.e1, w.e2}
    assert_consistent(session)


def test_delete_image_definition(session: Session) -> None:
    w = build_world(session)
    counts = delete_image_definition(session, session.get(ImageDefinition, w.d1))
    session.commit()

    assert counts == Deleted(image_definitions=1, images=3)
    assert ids(session, ImageDefinition) == {w.d2, w.d3}
    remaining = session.scalars(select(ImageInstance.definition_id)).all()
    assert w.d1 not in remaining and len(remaining) == 3
    assert ids(session, ImageListInstance) == {w.l1, w.l2, w.l3, w.l4}
    assert_consistent(session)


def test_loaded_collections_do_not_show_deleted_rows(session: Session) -> None:
    w = build_world(session)
    s1 = session.get(Subscription, w.s1)
    e1 = session.get(Endorser, w.e1)
    assert len(s1.auths) == 2 and len(e1.auths) == 2
    delete_endorser(session, session.get(Endorser, w.e2))
    assert [a.id for a in s1.auths] == [w.a1]
    delete_subscription(session, session.get(Subscription, w.s2))
    assert [a.id for a in e1.auths] == [w.a1]
    session.commit()
    assert_consistent(session)


def test_unflushed_changes_are_kept(session: Session) -> None:
    w = build_world(session)
    session.get(Subscription, w.s2).update_mode = 3
    session.add(Endorser(identifier="pending"))
    delete_subscription(session, session.get(Subscription, w.s1))
    session.commit()
    assert session.get(Subscription, w.s2).update_mode == 3
    assert session.scalars(select(Endorser.identifier)).all() == ["E1", "E2", "pending"]


def test_plain_orm_delete_leaves_no_orphans_either(session: Session) -> None:
    """``session.delete`` follows the ORM cascades down to the image instances."""
    w = build_world(session)
    session.delete(session.get(Subscription, w.s2))
    session.delete(session.get(Endorser, w.e2))
    session.commit()
    assert ids(session, ImageListInstance) == {w.l1, w.l4}
    assert len(ids(session, ImageInstance)) == 4
    orphans = session.scalars(
        select(ImageInstance.id).where(
            ImageInstance.list_instance_id.is_(None) | ImageInstance.definition_id.is_(None)
        )
    ).all()
    assert orphans == []


def test_objects_loaded_before_a_delete_stay_correct_after_the_session_closes(
    tmp_path: Path,
) -> None:
    """With the commands' sessions (expire_on_commit=False) nothing is left stale or expired."""
    database = prepare_database(test_database_url(tmp_path))
    try:
        with database.session() as session:
            w = build_world(session)
            session.commit()
        with database.session() as session:
            s1 = session.get(Subscription, w.s1)
            d1 = session.get(ImageDefinition, w.d1)
            e1 = session.get(Endorser, w.e1)
            assert len(s1.auths) == 2 and len(d1.instances) == 3 and len(e1.auths) == 2
            delete_endorser(session, session.get(Endorser, w.e2))
            session.commit()
        # Session closed: read what a command would print.
        assert s1.imagelist_latest is None
        assert d1.latest == 0
        assert [a.id for a in s1.auths] == [w.a1]
        assert len(d1.instances) == 2
        assert [a.id for a in e1.auths] == [w.a1, w.a3]
        assert e1.identifier == "E1"
    finally:
        database.close()
