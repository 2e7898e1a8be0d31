"""Open the configured database for a command: resolve the URL, connect, migrate."""

from __future__ import annotations

import argparse

from vmcatcher.settings import database_origin, resolve_database


def open_configured_database(
    args: argparse.Namespace, *, create: bool = False, read_only: bool = False
):  # -> vmcatcher.db.engine.Database
    """Open ``-d``/``VMCATCHER_RDBMS``/default and bring its schema to the current version.

    Only configuring actions pass ``create=True``: every other action refuses a
    database that does not exist or has no tables (docs/database.md).
    ``read_only=True`` for actions that only read (listing, info).
    """
    from vmcatcher.db.engine import open_database
    from vmcatcher.db.migrate import ensure_schema

    database = open_database(
        resolve_database(args.database),
        echo=args.log_sql_info,
        create=create,
        read_only=read_only,
        origin=database_origin(args.database),
    )
    try:
        ensure_schema(database)
    except BaseException:
        database.close()
        raise
    return database
