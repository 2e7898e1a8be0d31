"""Alembic environment for vmcatcher.

Run by :mod:`vmcatcher.db.migrate`, which hands over an open connection in
``config.attributes["connection"]`` (already inside the transaction that holds
the migration lock), so the migration, the version stamp and the lock share one
transaction. For a developer running Alembic by hand, ``sqlalchemy.url`` in the
config is used instead.
"""

from __future__ import annotations

import warnings

from alembic import context
from sqlalchemy import create_engine, pool

from vmcatcher.db.models import Base

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with warnings.catch_warnings(), context.begin_transaction():
        # The original's Booleans carry unnamed CHECK (x IN (0, 1)) constraints; a
        # SQLite table rebuild drops them, matching what create_all makes today.
        warnings.filterwarnings("ignore", message="Unnamed CHECK constraint on reflected table")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(str(config.get_main_option("sqlalchemy.url")), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit("vmcatcher migrations run online only (offline SQL is not supported)")
run_migrations_online()
