"""Over-long list fields are handled the same on SQLite and PostgreSQL.

PostgreSQL enforces the schema's widths (``String(1024)`` for DNs, URIs and
titles, ``String(255)`` for versions, OS names, identifiers) and SQLite ignores
them. The widths live in :mod:`vmcatcher.limits`, and the checks refuse what
would not fit before the database is touched: an image with an over-long field
is dropped with a warning (like the other per-image checks) and the rest of its
list imports; an over-long DN is refused with a clear message. Found by the
PostgreSQL pass, where the whole update used to fail with "value too long".
"""

from __future__ import annotations

import pytest

from tests.support.databases import test_database
from tests.support.lists import make_image


@pytest.fixture
def db(site, tmp_path):
    database = test_database(tmp_path, "widths.db")
    site.env["VMCATCHER_RDBMS"] = database.url
    return database


def test_image_with_an_over_long_title_is_dropped_on_every_backend(site, db) -> None:
    good, long = make_image(), make_image(title="T" * 1100)
    published = site.file_list(images=[good, long])
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    result = site.subscribe("-U")
    assert result.returncode == 0, result
    assert long["dc:identifier"] in result.stderr and "dc:title" in result.stderr
    rows = db.sql('SELECT "ImageDefinition".identifier FROM "ImageDefinition"')
    assert {row[0] for row in rows} == {good["dc:identifier"]}


def test_endorser_dn_over_the_column_width_is_refused_on_every_backend(site, db) -> None:
    result = site.endorser("-C", "-e", "E", "--dn", "/CN=" + "x" * 1100, "-I", "/CN=CA")
    assert result.returncode == 1, result
    assert "1024" in result.stderr and "Traceback" not in result.stderr
    assert "Database error" not in result.stderr  # refused by a check, not by the server
    assert not db.exists()  # refused before the database was even created (issue 11)
