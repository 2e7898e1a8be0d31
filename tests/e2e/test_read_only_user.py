"""Issue 11, item 3: users with read permission only can list (the original README's promise).

``VMCATCHER_RDBMS=... vmcatcher_image -l`` as a user who may read the database
file and its directory but write neither. Our SQLite database is in WAL mode;
listing and info actions open it read-only (docs/database.md, "Read-only users").
The test runs the commands as the unprivileged user ``nobody`` with ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.commands import command_path

pytestmark = pytest.mark.sqlite_only

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "vmcatcher_image": "vmcatcher.cli.image",
    "vmcatcher_subscribe": "vmcatcher.cli.subscribe",
    "vmcatcher_endorser": "vmcatcher.cli.endorser",
}


def _runuser() -> str:
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if runuser is None:
        pytest.skip("runuser is not installed: cannot run a command as another user")
    if os.geteuid() != 0:
        pytest.skip("the tests do not run as root: cannot switch to user 'nobody'")
    return runuser


def _launcher(runuser: str, name: str) -> list[str]:
    """How ``nobody`` starts command ``name``: the installed script, when it may run it.

    The test virtualenv's interpreter may live where ``nobody`` cannot go (e.g. a pyenv
    under ``/root``); then the same entry point runs under the system Python of the same
    version, with this checkout and the virtualenv's packages on ``PYTHONPATH``.
    """
    script = command_path(name)
    probe = subprocess.run([runuser, "-u", "nobody", "--", script, "-h"],
                           capture_output=True, timeout=60)  # fmt: skip
    if probe.returncode == 0:
        return [script]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"'nobody' cannot run {script} and there is no system {version}")
    module = ENTRY_POINTS[name]
    return [system, "-c", f"import sys; from {module} import main; sys.exit(main())"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp tree (mode 700), readable by everyone."""
    path = Path(tempfile.mkdtemp(prefix="vmcatcher-readonly-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_user_with_read_permission_only_can_list_and_show(site, shared_dir) -> None:
    runuser = _runuser()
    database = shared_dir / "vmcatcher.db"
    url = f"sqlite:///{database}"
    env = {"VMCATCHER_RDBMS": url}
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e", env=env).returncode == 0
    assert site.subscribe("-U", env=env).returncode == 0
    assert site.image("-a", "-u", published.image_ids[0], env=env).returncode == 0
    database.chmod(0o644)
    assert sorted(p.name for p in shared_dir.iterdir()) == ["vmcatcher.db"]  # WAL closed
    before = database.read_bytes()
    site_packages = next(Path(sys.prefix).glob("lib/python3*/site-packages"))

    def as_nobody(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        variables = [f"VMCATCHER_RDBMS={url}", f"PYTHONPATH={REPO}:{site_packages}",
                     "PATH=/usr/bin:/bin"]  # fmt: skip
        return subprocess.run(
            [runuser, "-u", "nobody", "--", "env", "-i", *variables,
             *_launcher(runuser, name), *args],
            cwd=shared_dir, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    listed = as_nobody("vmcatcher_image", "-l")
    assert listed.returncode == 0, listed.stderr
    assert "readonly" not in listed.stderr
    states = dict(line.split("\t")[:2] for line in listed.stdout.splitlines())
    assert states == {published.image_ids[0]: "3", published.image_ids[1]: "2"}

    info = as_nobody("vmcatcher_image", "-i", "-u", published.image_ids[0])
    assert info.returncode == 0, info.stderr
    assert published.image_ids[0] in info.stdout

    subscriptions = as_nobody("vmcatcher_subscribe", "-l")
    assert subscriptions.returncode == 0, subscriptions.stderr
    assert published.identifier in subscriptions.stdout

    shown = as_nobody("vmcatcher_subscribe", "-i", "-u", published.identifier)
    assert shown.returncode == 0, shown.stderr
    assert published.url in shown.stdout

    endorsers = as_nobody("vmcatcher_endorser", "-l")
    assert endorsers.returncode == 0, endorsers.stderr

    # Reading changed nothing, and a write is still refused with one line.
    assert database.read_bytes() == before
    assert sorted(p.name for p in shared_dir.iterdir()) == ["vmcatcher.db"]
    refused = as_nobody("vmcatcher_image", "-r", "-u", published.image_ids[0])
    assert refused.returncode == 1, refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.strip()][-1].startswith(
        "ERROR:"
    ), refused.stderr
    assert "Traceback" not in refused.stderr
