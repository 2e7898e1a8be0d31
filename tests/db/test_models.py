"""The models keep the original's table names, column names and column order."""

from __future__ import annotations

import warnings
from datetime import datetime

import pytest
from sqlalchemy import BigInteger, inspect, select
from sqlalchemy.orm import configure_mappers

from vmcatcher.db import (
    Base,
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)

# Spec §3.1, in declaration order.
ORIGINAL_COLUMNS = {
    "endorser": ["id", "identifier"],
    "endorserPrincible": ["id", "hv_dn", "hv_ca", "endorser"],
    "subscription": [
        "id",
        "identifier",
        "description",
        "uri",
        "authorised",
        "imagelist_latest",
        "updated",
        "trustAnchor",
        "userName",
        "password",
        "updateMode",
    ],
    "subscriptionAuth": ["id", "subscription", "endorser", "authorised"],
    "ImageDefinition": ["id", "identifier", "latest", "cache", "subscription"],
    "imageListInstance": [
        "id",
        "data",
        "data_hash",
        "expired",
        "sub_auth",
        "imported",
        "created",
        "expires",
        "version",
    ],
    "ImageInstance": [
        "id",
        "description",
        "hypervisor",
        "sha512",
        "uri",
        "os",
        "osversion",
        "arch",
        "version",
        "size",
        "title",
        "comments",
        "fkIdentifier",
        "fkimagelistinstance",
    ],
}


def test_tables_and_column_order_match_the_original() -> None:
    found = {name: [c.name for c in table.columns] for name, table in Base.metadata.tables.items()}
    assert {name: found[name] for name in ORIGINAL_COLUMNS} == ORIGINAL_COLUMNS
    # The only additions: the run status tables (revision v0_7_runs, docs/monitoring.md).
    assert set(found) - set(ORIGINAL_COLUMNS) == {"vmcatcher_run", "vmcatcher_subscription_status"}


def test_pointer_columns_have_no_foreign_key_and_sizes_are_64_bit() -> None:
    subscription = Base.metadata.tables["subscription"]
    definition = Base.metadata.tables["ImageDefinition"]
    assert not subscription.c.imagelist_latest.foreign_keys
    assert not definition.c.latest.foreign_keys
    assert isinstance(Base.metadata.tables["ImageInstance"].c.size.type, BigInteger)
    assert Base.metadata.tables["endorserPrincible"].c.hv_dn.type.length >= 1024


def test_mappers_configure_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        configure_mappers()
    pairs = {
        (Endorser, "principals"): "endorser",
        (Endorser, "auths"): "endorser",
        (Subscription, "auths"): "subscription",
        (Subscription, "image_definitions"): "subscription",
        (SubscriptionAuth, "list_instances"): "sub_auth",
        (ImageDefinition, "instances"): "definition",
        (ImageListInstance, "images"): "list_instance",
    }
    for (model, name), back in pairs.items():
        relationship = inspect(model).relationships[name]
        assert relationship.back_populates == back
        assert relationship.cascade.delete


@pytest.mark.db
def test_attribute_names_map_to_original_columns(any_db) -> None:
    now = datetime(2024, 1, 2, 3, 4, 5, 678901)
    with any_db.session() as session, session.begin():
        endorser = Endorser(identifier="e")
        principal = EndorserPrincipal(hv_dn="/CN=dn", hv_ca="/CN=ca", endorser=endorser)
        sub = Subscription(
            identifier="s", uri="https://h/l", authorised=True, username="u", password="p"
        )
        auth = SubscriptionAuth(subscription=sub, endorser=endorser, authorised=True)
        definition = ImageDefinition(identifier="img", cache=1, subscription=sub)
        instance = ImageListInstance(
            data=b"\x00raw",
            data_hash="h",
            sub_auth=auth,
            imported=now,
            created=now,
            expires=now,
            version="1",
        )
        image = ImageInstance(
            description="d",
            hypervisor="kvm",
            sha512="0" * 128,
            uri="https://h/i",
            os="Linux",
            osversion="9",
            arch="x86_64",
            version="1",
            size=2**40,
            title="t",
            definition=definition,
            list_instance=instance,
        )
        session.add_all([principal, image])
    with any_db.engine.connect() as connection:
        row = connection.exec_driver_sql(
            'SELECT "trustAnchor", "userName", password, "updateMode" FROM subscription'
        ).one()
        assert tuple(row) == (0, "u", "p", 0)
        assert connection.exec_driver_sql('SELECT endorser FROM "endorserPrincible"').scalar() == 1
        row = connection.exec_driver_sql(
            'SELECT subscription, endorser FROM "subscriptionAuth"'
        ).one()
        assert tuple(row) == (1, 1)
        assert connection.exec_driver_sql('SELECT latest FROM "ImageDefinition"').scalar() == 0
        row = connection.exec_driver_sql(
            'SELECT "fkIdentifier", fkimagelistinstance, size FROM "ImageInstance"'
        ).one()
        assert tuple(row) == (1, 1, 2**40)
    with any_db.session() as session:
        loaded = session.scalars(select(ImageListInstance)).one()
        assert loaded.imported == now
        assert loaded.sub_auth.subscription.image_definitions[0].instances[0].size == 2**40


@pytest.mark.db
def test_subscription_status_goes_with_its_subscription(tmp_path) -> None:
    """The run status row of a subscription is deleted with it (foreign key cascade)."""
    from datetime import datetime

    from tests.support.databases import test_database_url
    from vmcatcher.db import Subscription, delete_subscription, prepare_database
    from vmcatcher.db.models import RunRecord, SubscriptionStatus

    database = prepare_database(test_database_url(tmp_path))
    try:
        moment = datetime(2026, 1, 2, 3, 4, 5)
        with database.session() as session, session.begin():
            sub = Subscription(identifier="s", uri="https://x/l", authorised=True)
            session.add(sub)
            session.flush()
            session.add(SubscriptionStatus(subscription_id=sub.id, last_success=moment))
            session.add(RunRecord(command="update", started=moment, finished=moment,
                                  exit_code=0, counts="{}"))  # fmt: skip
        with database.session() as session, session.begin():
            delete_subscription(session, session.get(Subscription, sub.id))
        with database.session() as session:
            assert session.query(SubscriptionStatus).count() == 0
            assert session.query(RunRecord).one().finished == moment
    finally:
        database.close()
