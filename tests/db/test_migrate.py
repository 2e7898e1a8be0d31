"""Schema creation and upgrades: old databases open with every row intact.

Tests marked ``db`` run on every backend (SQLite, then PostgreSQL in the
second pass of ``make test``); the ones built on raw original SQLite files stay
SQLite-only. PostgreSQL-only migration tests live in ``tests/postgres``.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, select

from tests.db import legacy
from tests.db.conftest import backups_of
from tests.support.databases import test_database_url
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
from vmcatcher.db.migrate import _alembic_config
from vmcatcher.errors import DatabaseError

REPO = Path(__file__).resolve().parents[2]
#: Tables added by this rewrite (revision v0_7_runs), not in any original database.
RUN_TABLES = ("vmcatcher_run", "vmcatcher_subscription_status")


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        return {row[0] for row in rows}


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return list(connection.iterdump())


def table_names(database) -> set[str]:
    with database.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


#: The CHECK constraints of a vmcatcher database on SQLite: the original's, one per
#: ``authorised`` flag. PostgreSQL stores the flags as BOOLEAN and has none.
SQLITE_CHECKS = {
    "subscription": ["authorised IN (0, 1)"],
    "subscriptionAuth": ["authorised IN (0, 1)"],
}


def check_constraints(connection) -> dict[str, list[str]]:
    inspector = inspect(connection)
    found = {}
    for table in inspector.get_table_names():
        texts = sorted(c["sqltext"] for c in inspector.get_check_constraints(table))
        if texts:
            found[table] = texts
    return found


def schema_diff(database) -> list:
    """Alembic's model comparison, plus the CHECK constraints it does not compare."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = list(compare_metadata(context, Base.metadata))
        expected = SQLITE_CHECKS if connection.dialect.name == "sqlite" else {}
        checks = check_constraints(connection)
        if checks != expected:
            diff.append(("check constraints", checks, expected))
        return diff


def test_head_constant_matches_the_revision_scripts() -> None:
    script = ScriptDirectory.from_config(_alembic_config())
    assert script.get_current_head() == HEAD_REVISION
    chain = [rev.revision for rev in script.walk_revisions()]
    assert chain == ["v0_7_runs", "v0_7", "v0_6", "v0_4", "pre_0_4"]


@pytest.mark.db
def test_fresh_database_is_created_at_head_without_backup(tmp_path: Path) -> None:
    database = prepare_database(test_database_url(tmp_path))
    try:
        assert schema_revision(database) == HEAD_REVISION
        assert table_names(database) == set(legacy.ddl(legacy.V0_6)) | {
            "alembic_version",
            *RUN_TABLES,
        }
        assert schema_diff(database) == []
    finally:
        database.close()
    assert list(tmp_path.glob("*.backup-*")) == []


@pytest.mark.db
def test_upgrade_chain_from_nothing_equals_create_all(tmp_path: Path) -> None:
    """The baseline + every revision builds exactly the models' schema; downgrade undoes it."""
    database = open_database(test_database_url(tmp_path))
    try:
        config = _alembic_config()
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        assert schema_revision(database) == HEAD_REVISION
        assert schema_diff(database) == []
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert table_names(database) == {"alembic_version"}
    finally:
        database.close()


@pytest.mark.parametrize("version", legacy.VERSIONS)
def test_original_database_is_upgraded_with_backup(
    version: str, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy.make_legacy_db(db_path, version)
    db_path.chmod(0o640)
    old_columns = columns(db_path, "subscription")
    assert len(old_columns) == {"pre_0_4": 7, "v0_4": 10, "v0_6": 11}[version]

    with caplog.at_level(logging.INFO, logger="vmcatcher.db"):
        database = prepare_database(f"sqlite:///{db_path}")
    try:
        assert schema_revision(database) == HEAD_REVISION
        assert schema_diff(database) == []
        assert_rows_intact(database, version)
    finally:
        database.close()

    # Column names and order kept, new ones appended in the original order.
    assert columns(db_path, "subscription") == list(legacy.SUBSCRIPTION_COLUMNS_0_6)
    with sqlite3.connect(db_path) as connection:  # compacted after the table rebuilds
        assert connection.execute("PRAGMA freelist_count").fetchone() == (0,)

    (backup,) = backups_of(db_path)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640  # no wider than the original
    assert columns(backup, "subscription") == old_columns
    assert "alembic_version" not in tables(backup)
    with sqlite3.connect(backup) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count = connection.execute('SELECT count(*) FROM "ImageInstance"').fetchone()[0]
        assert count == len(legacy.IMAGES)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)

    (record,) = [r for r in caplog.records if r.name == "vmcatcher.db"]
    assert record.levelno == logging.WARNING  # cron mail shows it (issue 11)
    assert str(backup) in record.getMessage()
    assert f"revision {version}" in record.getMessage()
    assert f"revision {HEAD_REVISION}" in record.getMessage()


def assert_rows_intact(database, version: str) -> None:
    with database.session() as session:
        endorsers = session.scalars(select(Endorser).order_by(Endorser.id)).all()
        assert [(e.id, e.identifier) for e in endorsers] == legacy.ENDORSERS
        assert [(p.id, p.hv_dn, p.hv_ca, p.endorser_id) for p in endorsers[0].principals] == [
            legacy.PRINCIPALS[0],
            legacy.PRINCIPALS[1],
        ]
        assert endorsers[1].principals[0].hv_dn == legacy.PRINCIPALS[2][1]

        subscriptions = session.scalars(select(Subscription).order_by(Subscription.id)).all()
        expected_count = 4 if version == legacy.V0_6 else 3
        assert len(subscriptions) == expected_count
        for sub, row in zip(subscriptions, legacy.subscription_rows(version), strict=False):
            assert (sub.id, sub.identifier, sub.description, sub.uri) == row[:4]
            assert sub.authorised is bool(row[4])
            assert sub.imagelist_latest == row[5]
            assert sub.updated == legacy.parse(row[6])
            if version == legacy.PRE_0_4:
                assert (sub.trust_anchor, sub.username, sub.password) == (0, None, None)
            else:
                assert (sub.trust_anchor, sub.username, sub.password) == row[7:10]
            assert sub.update_mode == (row[10] if version == legacy.V0_6 else 0)
        if version == legacy.V0_6:
            readme = subscriptions[3]
            assert (readme.identifier, readme.imagelist_latest, readme.update_mode) == (
                "uuid-4",
                5,
                0,
            )
            assert readme.updated.microsecond == 305093

        auths = session.scalars(select(SubscriptionAuth).order_by(SubscriptionAuth.id)).all()
        assert [(a.id, a.subscription_id, a.endorser_id, a.authorised) for a in auths] == [
            (1, 1, 1, True),
            (2, 2, 2, True),
            (3, 3, 1, False),
        ]
        assert auths[0].subscription.identifier == legacy.SUBSCRIPTIONS_7[0][1]
        assert auths[1].endorser.identifier == legacy.LONG_DN

        definitions = session.scalars(select(ImageDefinition).order_by(ImageDefinition.id)).all()
        assert [
            (d.id, d.identifier, d.latest, d.cache, d.subscription_id) for d in definitions
        ] == legacy.DEFINITIONS

        instances = session.scalars(select(ImageListInstance).order_by(ImageListInstance.id)).all()
        for instance, row in zip(instances, legacy.LIST_INSTANCES, strict=True):
            assert instance.data == row[1]
            assert isinstance(instance.data, bytes)
            assert (instance.data_hash, instance.sub_auth_id, instance.version) == (
                row[2],
                row[4],
                row[8],
            )
            assert instance.expired == legacy.parse(row[3])
            assert instance.imported == legacy.parse(row[5])
            assert instance.created == legacy.parse(row[6])
            assert instance.expires == legacy.parse(row[7])

        images = session.scalars(select(ImageInstance).order_by(ImageInstance.id)).all()
        fields = [
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
            "definition_id",
            "list_instance_id",
        ]
        assert [tuple(getattr(i, f) for f in fields) for i in images] == legacy.IMAGES
        assert images[0].size == legacy.BIG_SIZE
        assert images[0].definition.identifier == "img-1"
        assert images[0].list_instance.data == legacy.BLOB_1
        assert images[2].list_instance is None  # the original's orphan survives untouched


def test_second_open_runs_one_query_and_writes_no_backup(db_path: Path) -> None:
    legacy.make_legacy_db(db_path, legacy.V0_6)
    prepare_database(f"sqlite:///{db_path}").close()
    assert len(backups_of(db_path)) == 1

    database = open_database(f"sqlite:///{db_path}")
    statements: list[str] = []
    event.listen(
        database.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    try:
        ensure_schema(database)
    finally:
        database.close()
    assert statements == ["SELECT version_num FROM alembic_version"]
    assert len(backups_of(db_path)) == 1


@pytest.mark.db
def test_up_to_date_open_runs_exactly_one_query(any_db) -> None:
    statements: list[str] = []
    event.listen(
        any_db.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    ensure_schema(any_db)
    assert statements == ["SELECT version_num FROM alembic_version"]


def test_up_to_date_start_does_not_import_alembic(db_path: Path) -> None:
    prepare_database(f"sqlite:///{db_path}").close()
    code = textwrap.dedent(
        f"""
        import sys
        from vmcatcher.db import prepare_database
        prepare_database({f"sqlite:///{db_path}"!r}).close()
        print(sorted(m for m in sys.modules if m.split(".")[0] == "alembic"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.db
def test_stale_revision_is_upgraded(tmp_path: Path) -> None:
    database = open_database(test_database_url(tmp_path))
    config = _alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "v0_4")
        connection.exec_driver_sql(
            "INSERT INTO subscription VALUES (1,'id','d','http://h/l',TRUE,NULL,NULL,2,'u','p')"
        )
    assert schema_revision(database) == "v0_4"
    ensure_schema(database)
    assert schema_revision(database) == HEAD_REVISION
    assert schema_diff(database) == []
    with database.session() as session:
        sub = session.get(Subscription, 1)
        assert (sub.trust_anchor, sub.username, sub.password, sub.update_mode) == (2, "u", "p", 0)
    database.close()
    if database.is_sqlite:
        (backup,) = backups_of(tmp_path / "vmcatcher.db")
        assert columns(backup, "subscription") == list(legacy.SUBSCRIPTION_COLUMNS_0_6[:10])
    else:
        assert list(tmp_path.glob("*.backup-*")) == []


def test_missing_tables_of_an_old_database_are_created(db_path: Path) -> None:
    legacy.make_legacy_db(
        db_path, legacy.PRE_0_4, skip_tables=("imageListInstance", "ImageInstance")
    )
    database = prepare_database(f"sqlite:///{db_path}")
    try:
        assert schema_diff(database) == []
        with database.session() as session:
            assert session.get(Subscription, 2).identifier == "uuid"
            assert session.scalars(select(ImageInstance)).all() == []
    finally:
        database.close()


def test_unrecognised_subscription_columns_are_refused_untouched(db_path: Path) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE subscription (id INTEGER PRIMARY KEY, other TEXT)")
    before = dump(db_path)
    database = open_database(f"sqlite:///{db_path}")
    with pytest.raises(DatabaseError, match="unrecognised columns \\(id, other\\)"):
        ensure_schema(database)
    database.close()
    assert backups_of(db_path) == []
    assert tables(db_path) == {"subscription"}
    assert dump(db_path) == before


@pytest.mark.db
def test_revision_from_a_newer_release_is_refused(any_db, tmp_path: Path) -> None:
    with any_db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'v9_9'")
    with pytest.raises(DatabaseError, match="'v9_9', unknown to this vmcatcher"):
        ensure_schema(any_db)
    assert schema_revision(any_db) == "v9_9"
    assert list(tmp_path.glob("*.backup-*")) == []


def test_failed_upgrade_leaves_the_old_database_as_it_was(db_path: Path) -> None:
    """A rebuild failing half-way (name clash on the temp table) rolls everything back."""
    legacy.make_legacy_db(db_path, legacy.V0_4)
    with sqlite3.connect(db_path) as connection:
        connection.execute('CREATE TABLE "_alembic_tmp_ImageInstance" (x INTEGER)')
    database = open_database(f"sqlite:///{db_path}")
    with pytest.raises(DatabaseError) as caught:
        ensure_schema(database)
    database.close()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Cannot migrate database 'sqlite:///{db_path}'")
    assert columns(db_path, "subscription") == list(legacy.SUBSCRIPTION_COLUMNS_0_6[:10])
    assert "alembic_version" not in tables(db_path)
    assert columns(db_path, "ImageInstance")[9] == "size"
    with sqlite3.connect(db_path) as connection:
        sql = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name='endorserPrincible'"
        ).fetchone()[0]
        assert "VARCHAR(50)" in sql  # the already-rebuilt tables were rolled back too
        assert connection.execute('SELECT count(*) FROM "ImageInstance"').fetchone()[0] == 3


def test_concurrent_first_starts_migrate_once(db_path: Path) -> None:
    legacy.make_legacy_db(db_path, legacy.V0_6)
    code = textwrap.dedent(
        f"""
        from vmcatcher.db import prepare_database, schema_revision
        db = prepare_database({f"sqlite:///{db_path}"!r})
        print(schema_revision(db))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outputs == [HEAD_REVISION] * 3
    assert len(backups_of(db_path)) == 1


@pytest.mark.db
def test_upgrade_from_v0_7_adds_the_run_status_tables_keeping_rows(tmp_path: Path) -> None:
    """A database of the first 0.7 schema gains vmcatcher_run and the subscription status."""
    url = test_database_url(tmp_path)
    database = open_database(url)
    try:
        config = _alembic_config()
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "v0_7")
            connection.exec_driver_sql(
                'INSERT INTO subscription (id, identifier, uri, authorised, "trustAnchor", '
                "\"updateMode\") VALUES (1, 'kept', 'https://x/l', true, 0, 0)"
            )
        assert not set(RUN_TABLES) & table_names(database)
        ensure_schema(database)
        assert schema_revision(database) == HEAD_REVISION
        assert set(RUN_TABLES) <= table_names(database)
        assert schema_diff(database) == []
        with database.session() as session:
            assert session.get(Subscription, 1).identifier == "kept"
    finally:
        database.close()
