"""A new database keeps the original's constraints on the ``authorised`` flags.

Why: the original's tables carried ``CHECK (authorised IN (0, 1))`` on
``subscription`` and ``subscriptionAuth`` (SQLite); a database we create must
refuse the same values. On PostgreSQL the flags are BOOLEAN columns, and the type
itself refuses ``2`` (docs/database.md).
"""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from vmcatcher.db import prepare_database

ROWS = [
    "INSERT INTO endorser (id, identifier) VALUES (1, 'endorser')",
    'INSERT INTO subscription (id, identifier, uri, authorised, "trustAnchor", "updateMode")'
    " VALUES (1, 'list', 'https://example.org/list', {flag}, 0, 0)",
    'INSERT INTO "subscriptionAuth" (id, subscription, endorser, authorised)'
    " VALUES (1, 1, 1, {flag})",
]


def _true(dialect: str) -> str:
    return "1" if dialect == "sqlite" else "TRUE"


def _assert_refused(error: exc.DBAPIError, dialect: str) -> None:
    if dialect == "sqlite":
        assert isinstance(error, exc.IntegrityError)
        assert "CHECK constraint failed" in str(error.orig)
    else:
        assert "boolean" in str(error.orig)


@pytest.mark.db
@pytest.mark.parametrize("table", ["subscription", "subscriptionAuth"])
def test_a_new_database_refuses_authorised_2(database_url: str, table: str) -> None:
    database = prepare_database(database_url)
    try:
        dialect = database.engine.dialect.name
        with database.engine.begin() as connection:
            for statement in ROWS:
                connection.exec_driver_sql(statement.format(flag=_true(dialect)))

        with pytest.raises(exc.DBAPIError) as update, database.engine.begin() as connection:
            connection.exec_driver_sql(f'UPDATE "{table}" SET authorised = 2')
        _assert_refused(update.value, dialect)

        with pytest.raises(exc.DBAPIError) as insert, database.engine.begin() as connection:
            connection.exec_driver_sql('DELETE FROM "subscriptionAuth"')
            if table == "subscription":
                connection.exec_driver_sql("DELETE FROM subscription")
            statement = ROWS[1 if table == "subscription" else 2]
            connection.exec_driver_sql(statement.format(flag="2"))
        _assert_refused(insert.value, dialect)

        # 0 and 1 (false and true) stay accepted, and nothing was changed.
        with database.engine.begin() as connection:
            false = "0" if dialect == "sqlite" else "FALSE"
            connection.exec_driver_sql(f'UPDATE "{table}" SET authorised = {false}')
            rows = connection.exec_driver_sql(f'SELECT id, authorised FROM "{table}"').all()
        assert [(row[0], bool(row[1])) for row in rows] == [(1, False)]
    finally:
        database.close()
