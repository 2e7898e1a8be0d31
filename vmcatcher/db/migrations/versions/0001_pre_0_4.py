"""Baseline: the schema of the original vmcatcher before 0.4.

Seven tables; ``subscription`` without ``trustAnchor``, ``userName``,
``password`` and ``updateMode``. Old un-versioned databases of that release are
stamped with this revision instead of being created by it.

Revision ID: pre_0_4
Revises:
"""

from __future__ import annotations

from alembic import op

from vmcatcher.db.migrations.legacy import PRE_0_4, legacy_metadata

revision = "pre_0_4"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    legacy_metadata(PRE_0_4).create_all(op.get_bind())


def downgrade() -> None:
    legacy_metadata(PRE_0_4).drop_all(op.get_bind())
