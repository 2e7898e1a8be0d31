"""vmcatcher 0.5 / 0.6: per-subscription update mode.

Existing subscriptions get ``updateMode`` 0 (refuse new image UUIDs), the
behaviour they had before the column existed.

Revision ID: v0_6
Revises: v0_4
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0_6"
down_revision = "v0_4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription") as batch:
        batch.add_column(
            sa.Column("updateMode", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("subscription") as batch:
        batch.drop_column("updateMode")
