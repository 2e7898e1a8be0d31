"""vmcatcher 0.7 with run status: the outcome of every ``-U`` and cache run.

Why: a cron job that fails, or stops running, is silent; ``vmcatcher_check``
needs each run's outcome and each subscription's last successful fetch to say
so (docs/monitoring.md). Two new tables, nothing existing is touched, so the
step is cheap and needs no table rebuild on SQLite.

Revision ID: v0_7_runs
Revises: v0_7
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0_7_runs"
down_revision = "v0_7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vmcatcher_run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("command", sa.String(255), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text()),
    )
    op.create_index("ix_vmcatcher_run_command_finished", "vmcatcher_run", ["command", "finished"])
    op.create_table(
        "vmcatcher_subscription_status",
        sa.Column(
            "subscription",
            sa.Integer(),
            sa.ForeignKey("subscription.id", onupdate="CASCADE", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("last_attempt", sa.DateTime()),
        sa.Column("last_success", sa.DateTime()),
        sa.Column("last_code", sa.Integer()),
    )


def downgrade() -> None:
    op.drop_table("vmcatcher_subscription_status")
    op.drop_index("ix_vmcatcher_run_command_finished", table_name="vmcatcher_run")
    op.drop_table("vmcatcher_run")
