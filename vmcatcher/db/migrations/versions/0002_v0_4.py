"""vmcatcher 0.4: per-subscription trust anchor and HTTP Basic credentials.

Existing subscriptions get ``trustAnchor`` 0 (None) and no credentials, which
is what they meant before the columns existed.

Revision ID: v0_4
Revises: pre_0_4
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0_4"
down_revision = "pre_0_4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription") as batch:
        batch.add_column(
            sa.Column("trustAnchor", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("userName", sa.String(200), nullable=True))
        batch.add_column(sa.Column("password", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription") as batch:
        batch.drop_column("password")
        batch.drop_column("userName")
        batch.drop_column("trustAnchor")
