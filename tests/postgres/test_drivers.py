"""Plain ``postgresql://`` URLs open with whichever driver a site has (docs/database.md).

Deployments of the original used Debian's ``python3-psycopg2``; SQLAlchemy 2.1
made psycopg 3 the default driver of the plain form, so such a site would get
"No module named 'psycopg'". These tests run the real command against the real
server with one driver hidden from the process (a ``sitecustomize`` that makes
its import fail exactly as if it were not installed).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.commands import Result, command_path, run
from tests.support.databases import requires_postgresql

pytestmark = requires_postgresql

HIDER = """\
import importlib.abc
import sys

HIDDEN = {hidden!r}


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""


def _plain(url: str) -> str:
    scheme, rest = url.split("://", 1)
    assert scheme.startswith("postgresql"), url
    return f"postgresql://{rest}"


def _env(tmp_path: Path, url: str, *hidden: str) -> dict[str, str]:
    site = tmp_path / "site-hiding"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDER.format(hidden=set(hidden)))
    return {"PYTHONPATH": str(site), "VMCATCHER_RDBMS": _plain(url)}


def _endorser(tmp_path: Path, env: dict[str, str], *args: str) -> Result:
    return run("vmcatcher_endorser", *args, cwd=tmp_path, env=env)


def test_the_hider_really_hides(tmp_path: Path, pg_url: str) -> None:
    env = _env(tmp_path, pg_url, "psycopg")
    python = Path(command_path("vmcatcher_endorser")).with_name("python")
    hidden = subprocess.run([str(python), "-c", "import psycopg"], env=env, capture_output=True)
    assert hidden.returncode != 0 and b"No module named 'psycopg'" in hidden.stderr
    shown = subprocess.run([str(python), "-c", "import psycopg2"], env=env, capture_output=True)
    assert shown.returncode == 0, shown.stderr


def test_plain_url_with_only_psycopg2(tmp_path: Path, pg_url: str) -> None:
    env = _env(tmp_path, pg_url, "psycopg")
    created = _endorser(tmp_path, env, "-C", "-e", "qa", "--dn", "/DC=org/CN=QA Signer",
                        "-I", "/DC=org/CN=QA CA")  # fmt: skip
    assert created.returncode == 0, created
    listed = _endorser(tmp_path, env, "-l")
    assert listed.returncode == 0, listed
    assert "qa" in listed.stdout
    assert "psycopg" not in listed.stderr


def test_plain_url_with_only_psycopg3(tmp_path: Path, pg_url: str) -> None:
    env = _env(tmp_path, pg_url, "psycopg2")
    created = _endorser(tmp_path, env, "-C", "-e", "qa", "--dn", "/DC=org/CN=QA Signer",
                        "-I", "/DC=org/CN=QA CA")  # fmt: skip
    assert created.returncode == 0, created
    assert "qa" in _endorser(tmp_path, env, "-l").stdout


def test_plain_url_without_a_driver_is_one_line_naming_the_extra(
    tmp_path: Path, pg_url: str
) -> None:
    env = _env(tmp_path, pg_url, "psycopg", "psycopg2")
    result = _endorser(tmp_path, env, "-l")
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert "no PostgreSQL driver" in line and "pip install 'vmcatcher[postgresql]'" in line
    assert "Traceback" not in result.stderr


def test_explicit_missing_driver_is_named(tmp_path: Path, pg_url: str) -> None:
    env = _env(tmp_path, pg_url, "psycopg2")
    env["VMCATCHER_RDBMS"] = env["VMCATCHER_RDBMS"].replace(
        "postgresql://", "postgresql+psycopg2://"
    )
    result = _endorser(tmp_path, env, "-l")
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert "driver module 'psycopg2' is not installed" in line
