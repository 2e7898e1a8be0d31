"""The tables as the original vmcatcher (0.2 to 0.6.x) created them.

Why keep this: a database written by the original has no ``alembic_version``.
We recognise its release from the ``subscription`` columns, create any table it
lacks *as that release would have*, stamp the matching revision and let the
ordinary upgrade chain take it to head. The baseline revision builds the same
tables, so "old database adopted" and "upgraded from nothing" end identical.

Only ``subscription`` changed between releases:

* before 0.4: 7 columns (``id`` ... ``updated``);
* 0.4: + ``trustAnchor``, ``userName``, ``password``;
* 0.5 / 0.6: + ``updateMode`` (11 columns).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    text,
)

from vmcatcher.db.models import cascading_foreign_key


def _flag() -> Boolean:
    """An ``authorised`` flag as the original's SQLAlchemy created it: on SQLite with
    ``CHECK (authorised IN (0, 1))``; PostgreSQL's BOOLEAN needs none (docs/database.md)."""
    return Boolean(create_constraint=True)


#: Alembic revision ids of the original releases, oldest first.
PRE_0_4 = "pre_0_4"
V0_4 = "v0_4"
V0_6 = "v0_6"

#: The ``subscription`` columns of each original release, in table order.
SUBSCRIPTION_COLUMNS: dict[str, tuple[str, ...]] = {
    PRE_0_4: (
        "id",
        "identifier",
        "description",
        "uri",
        "authorised",
        "imagelist_latest",
        "updated",
    ),
}
SUBSCRIPTION_COLUMNS[V0_4] = (*SUBSCRIPTION_COLUMNS[PRE_0_4], "trustAnchor", "userName", "password")
SUBSCRIPTION_COLUMNS[V0_6] = (*SUBSCRIPTION_COLUMNS[V0_4], "updateMode")

#: Every table of the original schema, parents first.
TABLES: tuple[str, ...] = (
    "endorser",
    "subscription",
    "endorserPrincible",
    "subscriptionAuth",
    "ImageDefinition",
    "imageListInstance",
    "ImageInstance",
)


def detect_revision(subscription_columns: list[str] | tuple[str, ...]) -> str | None:
    """Map the column names of an old ``subscription`` table to a revision id.

    Returns ``None`` for a column set no original release produced.
    """
    found = tuple(subscription_columns)
    for revision, columns in SUBSCRIPTION_COLUMNS.items():
        if found == columns:
            return revision
    # Same set in another order (a hand-rebuilt table): still recognisable.
    for revision, columns in SUBSCRIPTION_COLUMNS.items():
        if sorted(found) == sorted(columns):
            return revision
    return None


def legacy_metadata(revision: str) -> MetaData:
    """A MetaData holding the seven tables as the release *revision* created them."""
    if revision not in SUBSCRIPTION_COLUMNS:
        raise ValueError(f"unknown legacy revision {revision!r}")
    metadata = MetaData()

    Table(
        "endorser",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("identifier", String(50), nullable=False, unique=True),
    )
    Table(
        "endorserPrincible",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("hv_dn", String(50), nullable=False, unique=True),
        Column("hv_ca", String(50), nullable=False),
        Column("endorser", Integer, cascading_foreign_key("endorser.id")),
    )
    subscription: list[Any] = [
        Column("id", Integer, primary_key=True),
        Column("identifier", String(50), nullable=False, unique=True),
        Column("description", String(200)),
        Column("uri", String(200), nullable=False, unique=True),
        Column("authorised", _flag(), nullable=False),
        Column("imagelist_latest", Integer),
        Column("updated", DateTime),
    ]
    if revision in (V0_4, V0_6):
        subscription += [
            Column("trustAnchor", Integer, nullable=False, server_default=text("0")),
            Column("userName", String(200)),
            Column("password", String(200)),
        ]
    if revision == V0_6:
        subscription.append(Column("updateMode", Integer, nullable=False, server_default=text("0")))
    Table("subscription", metadata, *subscription)
    Table(
        "subscriptionAuth",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("subscription", Integer, cascading_foreign_key("subscription.id")),
        Column("endorser", Integer, cascading_foreign_key("endorser.id")),
        Column("authorised", _flag(), nullable=False),
    )
    Table(
        "ImageDefinition",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("identifier", String(50), nullable=False, unique=True),
        Column("latest", Integer),
        Column("cache", Integer, nullable=False),
        Column("subscription", Integer, cascading_foreign_key("subscription.id")),
    )
    Table(
        "imageListInstance",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("data", LargeBinary, nullable=False),
        Column("data_hash", String(128), nullable=False),
        Column("expired", DateTime),
        Column("sub_auth", Integer, cascading_foreign_key("subscriptionAuth.id")),
        Column("imported", DateTime, nullable=False),
        Column("created", DateTime, nullable=False),
        Column("expires", DateTime, nullable=False),
        Column("version", String(50), nullable=False),
    )
    Table(
        "ImageInstance",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("description", String(50), nullable=False),
        Column("hypervisor", String(50), nullable=False),
        Column("sha512", String(128), nullable=False),
        Column("uri", String(128), nullable=False),
        Column("os", String(50), nullable=False),
        Column("osversion", String(50), nullable=False),
        Column("arch", String(50), nullable=False),
        Column("version", String(50), nullable=False),
        Column("size", Integer, nullable=False),
        Column("title", String(100), nullable=False),
        Column("comments", String(100)),
        Column("fkIdentifier", Integer, cascading_foreign_key("ImageDefinition.id")),
        Column("fkimagelistinstance", Integer, cascading_foreign_key("imageListInstance.id")),
    )
    return metadata
