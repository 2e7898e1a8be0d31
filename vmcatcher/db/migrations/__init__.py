"""Alembic migrations of the vmcatcher schema, run programmatically.

Why Alembic: the original vmcatcher had no migrations (its README told sites to
dump the SQLite file and hand-edit INSERT lines). We upgrade old databases in
place instead, with a backup, through a linear chain of revisions that mirror
the original releases (see ``versions/``). :mod:`vmcatcher.db.migrate` drives
them without any ``alembic.ini``; ``env.py`` receives the connection through
``config.attributes["connection"]``.

:mod:`.legacy` describes the tables exactly as the original releases created
them; the baseline revision and the adoption of un-versioned old databases both
use it.
"""
