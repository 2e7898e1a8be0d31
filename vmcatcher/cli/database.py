"""Open the configured database for a command: resolve the URL, connect, migrate."""

from __future__ import annotations

import argparse

from vmcatcher.settings import resolve_database


def open_configured_database(args: argparse.Namespace):  # -> vmcatcher.db.engine.Database
    """Open ``-d``/``VMCATCHER_RDBMS``/default and bring its schema to the current version."""
    from vmcatcher.db.engine import open_database
    from vmcatcher.db.migrate import ensure_schema

    database = open_database(resolve_database(args.database), echo=args.log_sql_info)
    ensure_schema(database)
    return database
