"""Open the configured database for an action: connect, check, migrate (docs/database.md).

Why a service: every command opens the database the same way, and only the
actions that configure (``vmcatcher_endorser -C``, ``vmcatcher_subscribe -s``)
may create one; everything else refuses a missing or empty database, so that
a typo in ``-d`` can never make ``vmcatcher_cache`` expire a site's cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmcatcher.settings import DatabaseSettings

if TYPE_CHECKING:
    from vmcatcher.db.engine import Database


def open_configured_database(
    settings: DatabaseSettings, *, create: bool = False, read_only: bool = False
) -> Database:
    """Open the configured database and bring its schema to the current version.

    Only configuring actions pass ``create=True``: every other action refuses a
    database that does not exist or has no tables (docs/database.md).
    ``read_only=True`` for actions that only read (listing, info).
    """
    from vmcatcher.db import prepare_database

    return prepare_database(
        settings.url,
        echo=settings.echo,
        create=create,
        read_only=read_only,
        origin=settings.origin,
    )


def describe_database_error(error: BaseException) -> str:
    """One line for an unexpected database failure (see :mod:`vmcatcher.db.engine`)."""
    from vmcatcher.db.engine import describe_database_error as describe

    return describe(error)
