"""vmcatcher 0.7 (this rewrite): wide strings, 64-bit image sizes, foreign-key indexes.

Why: the original's ``String(50)`` DNs/URIs/titles only worked because SQLite
ignores lengths, and ``Integer`` sizes overflow for images above 2 GiB on
strict databases. Names and column order stay as they were. The new indexes
serve the cascading deletes and the "available image" join. ``trustAnchor`` and
``updateMode`` get a server-side default of 0 so rows inserted by other tools
(e.g. the README's dump/reload recipe) stay valid.

On SQLite every touched table is rebuilt (batch mode); this runs with foreign
keys switched off, inside one transaction, after a backup of the file.

Revision ID: v0_7
Revises: v0_6
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0_7"
down_revision = "v0_6"
branch_labels = None
depends_on = None

LONG = sa.String(1024)
SHORT = sa.String(255)

#: table -> [(column, old type, new type)]
WIDENED: dict[str, list[tuple[str, sa.types.TypeEngine, sa.types.TypeEngine]]] = {
    "endorser": [("identifier", sa.String(50), LONG)],
    "endorserPrincible": [
        ("hv_dn", sa.String(50), LONG),
        ("hv_ca", sa.String(50), LONG),
    ],
    "subscription": [
        ("identifier", sa.String(50), SHORT),
        ("description", sa.String(200), sa.Text()),
        ("uri", sa.String(200), LONG),
        ("userName", sa.String(200), LONG),
        ("password", sa.String(200), LONG),
    ],
    "ImageDefinition": [("identifier", sa.String(50), SHORT)],
    "imageListInstance": [("version", sa.String(50), SHORT)],
    "ImageInstance": [
        ("description", sa.String(50), sa.Text()),
        ("hypervisor", sa.String(50), SHORT),
        ("uri", sa.String(128), LONG),
        ("os", sa.String(50), SHORT),
        ("osversion", sa.String(50), SHORT),
        ("arch", sa.String(50), SHORT),
        ("version", sa.String(50), SHORT),
        ("size", sa.Integer(), sa.BigInteger()),
        ("title", sa.String(100), LONG),
        ("comments", sa.String(100), sa.Text()),
    ],
}

#: (index name, table, column): one per foreign key.
INDEXES = [
    ("ix_endorserPrincible_endorser", "endorserPrincible", "endorser"),
    ("ix_subscriptionAuth_subscription", "subscriptionAuth", "subscription"),
    ("ix_subscriptionAuth_endorser", "subscriptionAuth", "endorser"),
    ("ix_ImageDefinition_subscription", "ImageDefinition", "subscription"),
    ("ix_imageListInstance_sub_auth", "imageListInstance", "sub_auth"),
    ("ix_ImageInstance_fkIdentifier", "ImageInstance", "fkIdentifier"),
    ("ix_ImageInstance_fkimagelistinstance", "ImageInstance", "fkimagelistinstance"),
]

DEFAULTED = ("trustAnchor", "updateMode")


def _reflect_args(table: str) -> tuple[sa.Column, ...]:
    """Keep the original's ``CHECK (authorised IN (0, 1))`` through a SQLite table rebuild.

    Batch mode does not carry unnamed CHECK constraints over to the rebuilt table;
    declaring the flag's type with its constraint does (docs/database.md).
    """
    if table != "subscription":
        return ()
    return (sa.Column("authorised", sa.Boolean(create_constraint=True), nullable=False),)


def upgrade() -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, reflect_args=_reflect_args(table)) as batch:
            for name, old, new in columns:
                batch.alter_column(name, existing_type=old, type_=new)
            if table == "subscription":
                for name in DEFAULTED:
                    batch.alter_column(
                        name,
                        existing_type=sa.Integer(),
                        existing_nullable=False,
                        server_default=sa.text("0"),
                    )
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _column in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, reflect_args=_reflect_args(table)) as batch:
            for name, old, new in columns:
                batch.alter_column(name, existing_type=new, type_=old)
