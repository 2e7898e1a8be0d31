"""Schema creation and upgrades on a real PostgreSQL server.

The original vmcatcher ran on any SQLAlchemy URL, so a site may have an
un-versioned 0.2-0.6 schema in PostgreSQL (with the lengths PostgreSQL did
enforce). It must be adopted and upgraded like an old SQLite file, in one
transaction (PostgreSQL DDL is transactional), with concurrent first starts
serialised by the advisory lock in :mod:`vmcatcher.db.migrate`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from tests.support.databases import requires_postgresql
from vmcatcher.db import (
    HEAD_REVISION,
    Base,
    Endorser,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
    ensure_schema,
    open_database,
    prepare_database,
    schema_revision,
)
from vmcatcher.db.migrations.legacy import PRE_0_4, V0_4, V0_6, legacy_metadata
from vmcatcher.errors import DatabaseError

pytestmark = requires_postgresql

REPO = Path(__file__).resolve().parents[2]
WHEN = datetime(2014, 5, 29, 19, 59, 5, 305093)
BIG = 5 * 2**30


def schema_diff(database) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def make_legacy(database, version: str) -> None:
    """The original's tables on PostgreSQL, filled through the sequences as the original did."""
    metadata = legacy_metadata(version)
    t = metadata.tables
    sub = {"identifier": "sub-1", "description": "d", "uri": "https://h/l", "authorised": True,
           "imagelist_latest": 1, "updated": WHEN}  # fmt: skip
    if version in (V0_4, V0_6):
        sub.update(trustAnchor=2, userName="u", password="p")
    if version == V0_6:
        sub["updateMode"] = 3
    with database.engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(insert(t["endorser"]).values(identifier="E"))
        connection.execute(
            insert(t["endorserPrincible"]).values(hv_dn="/CN=a", hv_ca="/CN=ca", endorser=1)
        )
        connection.execute(insert(t["subscription"]).values(**sub))
        connection.execute(
            insert(t["subscriptionAuth"]).values(subscription=1, endorser=1, authorised=True)
        )
        connection.execute(
            insert(t["ImageDefinition"]).values(identifier="img", latest=1, cache=1, subscription=1)
        )
        connection.execute(
            insert(t["imageListInstance"]).values(
                data=b"\x00\xffsigned", data_hash="h" * 128, expired=None, sub_auth=1,
                imported=WHEN, created=WHEN, expires=WHEN, version="1",
            )
        )  # fmt: skip
        connection.execute(
            insert(t["ImageInstance"]).values(
                description="d", hypervisor="kvm", sha512="0" * 128, uri="https://h/i",
                os="Linux", osversion="9", arch="x86_64", version="1", size=2**31 - 1,
                title="t", comments=None, fkIdentifier=1, fkimagelistinstance=1,
            )
        )  # fmt: skip


@pytest.mark.parametrize("version", [PRE_0_4, V0_4, V0_6])
def test_original_schema_on_postgresql_is_adopted_and_upgraded(
    version: str, pg_db, tmp_path: Path
) -> None:
    make_legacy(pg_db, version)
    ensure_schema(pg_db)
    assert schema_revision(pg_db) == HEAD_REVISION
    assert schema_diff(pg_db) == []
    assert list(tmp_path.iterdir()) == []  # no file backup for a server database
    with pg_db.session() as session:
        sub = session.scalars(select(Subscription)).one()
        assert (sub.identifier, sub.authorised, sub.updated, sub.imagelist_latest) == (
            "sub-1", True, WHEN, 1,
        )  # fmt: skip
        expected = {PRE_0_4: (0, None, None, 0), V0_4: (2, "u", "p", 0), V0_6: (2, "u", "p", 3)}
        assert (sub.trust_anchor, sub.username, sub.password, sub.update_mode) == expected[version]
        instance = session.scalars(select(ImageListInstance)).one()
        assert instance.data == b"\x00\xffsigned" and instance.imported == WHEN
        image = session.scalars(select(ImageInstance)).one()
        assert image.definition.identifier == "img"
        assert image.list_instance.sub_auth.endorser.identifier == "E"
        # The widened columns take what the original's could not...
        image.size = BIG
        sub.uri = "https://h/" + "x" * 900
        # ...and new rows get fresh ids from the original sequences.
        endorser = Endorser(identifier="/DC=org/CN=" + "long " * 30)
        session.add(endorser)
        session.add(SubscriptionAuth(subscription=sub, endorser=endorser, authorised=False))
        session.commit()
        assert endorser.id == 2
    with pg_db.session() as session:
        assert session.scalars(select(ImageInstance.size)).one() == BIG
    with pg_db.engine.connect() as connection:
        indexes = {ix["name"] for ix in inspect(connection).get_indexes("ImageInstance")}
        assert {"ix_ImageInstance_fkIdentifier", "ix_ImageInstance_fkimagelistinstance"} <= indexes


def test_failed_upgrade_rolls_back_everything(pg_db) -> None:
    """PostgreSQL DDL is transactional: a failure in the last step undoes the earlier ones."""
    make_legacy(pg_db, V0_4)
    with pg_db.engine.begin() as connection:  # an index name the v0_7 step needs, taken
        connection.exec_driver_sql('CREATE INDEX "ix_ImageInstance_fkIdentifier" ON endorser (id)')
    with pytest.raises(DatabaseError) as caught:
        ensure_schema(pg_db)
    message = str(caught.value)
    assert message.startswith("Cannot migrate database 'postgresql+psycopg://vmcatcher:***@")
    assert "\n" not in message
    with pg_db.engine.connect() as connection:
        inspector = inspect(connection)
        assert "alembic_version" not in inspector.get_table_names()
        columns = {c["name"]: c for c in inspector.get_columns("subscription")}
        assert "updateMode" not in columns  # the v0_6 step was undone too
        assert columns["identifier"]["type"].length == 50
        size = {c["name"]: c for c in inspector.get_columns("ImageInstance")}["size"]
        assert size["type"].__class__.__name__ == "INTEGER"


def test_unrecognised_table_is_refused_untouched(pg_db) -> None:
    with pg_db.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE subscription (id INTEGER PRIMARY KEY, other TEXT)")
    with pytest.raises(DatabaseError, match=r"unrecognised columns \(id, other\)"):
        ensure_schema(pg_db)
    with pg_db.engine.connect() as connection:
        assert inspect(connection).get_table_names() == ["subscription"]


CONCURRENT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    from vmcatcher.db import prepare_database, schema_revision
    db = prepare_database(sys.argv[1])
    print(schema_revision(db))
    """
)


@pytest.mark.parametrize("start", ["empty", "original_0_6"])
def test_concurrent_first_starts_migrate_once(start: str, pg_url: str) -> None:
    if start != "empty":
        database = open_database(pg_url)
        make_legacy(database, V0_6)
        database.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, pg_url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, outputs
    assert [out.strip() for out, _err in outputs] == [HEAD_REVISION] * 3
    logs = "".join(err for _out, err in outputs)
    verb = "Created database schema" if start == "empty" else "Upgrading database"
    assert logs.count(verb) == 1, logs
    database = prepare_database(pg_url)
    try:
        assert schema_diff(database) == []
        with database.session() as session:
            count = len(session.scalars(select(ImageDefinition)).all())
            assert count == (0 if start == "empty" else 1)
    finally:
        database.close()


def test_plain_postgresql_url_opens_with_psycopg(pg_url: str) -> None:
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    assert plain.startswith("postgresql://")
    database = prepare_database(plain)
    try:
        assert database.url.drivername == "postgresql+psycopg"
        assert schema_revision(database) == HEAD_REVISION
    finally:
        database.close()


def test_wrong_password_is_one_line_without_the_password(pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    wrong = make_url(pg_url).set(password="not-the-password")
    with pytest.raises(DatabaseError) as caught:
        open_database(wrong.render_as_string(hide_password=False))
    message = str(caught.value)
    assert "not-the-password" not in message and "\n" not in message
    assert "password authentication failed" in message
