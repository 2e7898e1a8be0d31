"""Issue 11, item 1: a wrong database never empties the cache.

An operator's typo in ``-d``, or ``vmcatcher_cache`` started from another
directory without ``VMCATCHER_RDBMS``, used to create an empty database and
expire every cached image (exit 0). Only configuring commands create a
database; ``vmcatcher_cache`` also refuses to expire everything because the
database it was given holds no subscription (docs/database.md,
docs/commands/vmcatcher_cache.md).
"""

from __future__ import annotations

import pytest

from tests.cache_e2e.conftest import CacheSite
from tests.support.commands import run
from tests.support.databases import test_database

IMAGE = "0b6f5d7e-2c1a-4f3e-9b8d-7a6c5e4d3f21"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


def cached(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.ready()
    site.cache()
    assert site.files(site.cache_dir) == {IMAGE}


@pytest.mark.sqlite_only
def test_a_typo_in_the_database_url_is_refused_and_the_cache_kept(site: CacheSite) -> None:
    cached(site)
    typo = site.root / "vmcatchr.db"
    url = f"sqlite:///{typo}"

    result = site.cache("-d", url, expect=1)

    [line] = error_lines(result.stderr)
    assert f"Database '{url}' (set by option -d) does not exist" in line, result
    assert "Traceback" not in result.stderr
    assert not typo.exists()
    assert site.files(site.cache_dir) == {IMAGE}
    assert IMAGE in site.index(site.cache_dir)
    assert site.files(site.expired_dir) == set()


@pytest.mark.sqlite_only
def test_running_from_another_directory_without_the_variable_is_refused(
    site: CacheSite, tmp_path
) -> None:
    cached(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in site.env.items() if k != "VMCATCHER_RDBMS"}
    env["VMCATCHER_CACHE_DIR_CACHE"] = str(site.cache_dir)

    result = run("vmcatcher_cache", cwd=elsewhere, env=env)  # site.env has VMCATCHER_RDBMS

    assert result.returncode == 1, result
    [line] = error_lines(result.stderr)
    assert (
        f"Database 'sqlite:///{elsewhere / 'vmcatcher.db'}' (the default: neither -d nor "
        "VMCATCHER_RDBMS is set) does not exist" in line
    ), result
    assert not (elsewhere / "vmcatcher.db").exists()
    assert site.files(site.cache_dir) == {IMAGE}


def test_a_database_without_tables_is_refused_by_every_non_configuring_command(
    site: CacheSite, tmp_path
) -> None:
    cached(site)
    empty = test_database(tmp_path, "empty.db")
    if empty.path is not None:
        empty.path.touch()  # an existing file, no tables (PostgreSQL: a new empty database)
    env = {"VMCATCHER_RDBMS": empty.url}

    result = site.cache(env=env, expect=1)
    [line] = error_lines(result.stderr)
    assert "(set by environment variable VMCATCHER_RDBMS) has no vmcatcher tables" in line
    for command, args in (("vmcatcher_image", ["-l"]), ("vmcatcher_subscribe", ["-U"]),
                          ("vmcatcher_endorser", ["-l"])):  # fmt: skip
        refused = site.command(command, *args, env=env, expect=1)
        assert "has no vmcatcher tables" in refused.stderr, refused
    if empty.path is None:
        assert not empty.exists()  # still no table
    else:
        assert empty.scalar("SELECT count(*) FROM sqlite_master") == 0
    assert site.files(site.cache_dir) == {IMAGE}


def test_an_empty_database_does_not_expire_a_full_cache(site: CacheSite, tmp_path) -> None:
    cached(site)
    empty = test_database(tmp_path, "new.db").prepare()  # vmcatcher tables, no subscription
    env = {"VMCATCHER_RDBMS": empty.url}

    refused = site.cache(env=env, expect=1)

    [line] = error_lines(refused.stderr)
    assert "holds no subscription while the cache index lists 1 image(s)" in line, refused
    assert "--allow-empty-database" in line
    assert site.files(site.cache_dir) == {IMAGE}
    assert site.files(site.expired_dir) == set()

    allowed = site.cache("--allow-empty-database", env=env)
    assert site.files(site.cache_dir) == set(), allowed
    [expired] = site.files(site.expired_dir)
    assert expired.startswith(f"{IMAGE}.")


def test_configuring_commands_create_a_missing_database_with_a_warning(
    site: CacheSite, tmp_path
) -> None:
    fresh = test_database(tmp_path, "fresh.db")
    env = {"VMCATCHER_RDBMS": fresh.url}
    created = site.command(
        "vmcatcher_endorser", "-C", "-e", "E", "--dn", "/CN=x", "-I", "/CN=y", env=env
    )
    assert "WARNING" in created.stderr and "Created database schema" in created.stderr
    if fresh.path is not None:
        assert f"WARNING:vmcatcher.db:Created new database file '{fresh.path}'" in created.stderr
    assert fresh.count("endorser") == 1
    again = site.command("vmcatcher_endorser", "-l", env=env)
    assert "WARNING" not in again.stderr, again
