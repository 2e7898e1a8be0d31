"""Persistence: the original vmcatcher schema, opened through any SQLAlchemy URL.

Typical use by a command::

    database = prepare_database(url)          # open + ensure_schema
    with database.session() as session, session.begin():
        ...

Modules: :mod:`.models` (tables), :mod:`.engine` (open, SQLite settings,
error mapping), :mod:`.migrate` (versioned upgrades, cheap when current),
:mod:`.cascade` (complete deletes). Alembic is imported only when a
migration actually runs.
"""

from __future__ import annotations

from vmcatcher.db.cascade import (
    Deleted,
    delete_endorser,
    delete_image_definition,
    delete_subscription,
    delete_subscription_auth,
)
from vmcatcher.db.engine import DEFAULT_URL, Database, database_error, mask_url, open_database
from vmcatcher.db.migrate import HEAD_REVISION, ensure_schema, schema_revision
from vmcatcher.db.models import (
    Base,
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageInstance,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)


def prepare_database(
    url: str,
    *,
    echo: bool = False,
    create: bool = True,
    read_only: bool = False,
    origin: str | None = None,
) -> Database:
    """Open *url* and bring its schema to head: what every command does first.

    ``create``, ``read_only`` and ``origin`` as for :func:`open_database`.
    """
    database = open_database(url, echo=echo, create=create, read_only=read_only, origin=origin)
    try:
        ensure_schema(database)
    except BaseException:
        database.close()
        raise
    return database


__all__ = [
    "DEFAULT_URL",
    "HEAD_REVISION",
    "Base",
    "Database",
    "Deleted",
    "Endorser",
    "EndorserPrincipal",
    "ImageDefinition",
    "ImageInstance",
    "ImageListInstance",
    "Subscription",
    "SubscriptionAuth",
    "database_error",
    "delete_endorser",
    "delete_image_definition",
    "delete_subscription",
    "delete_subscription_auth",
    "ensure_schema",
    "mask_url",
    "open_database",
    "prepare_database",
    "schema_revision",
]
