"""Fixtures of the robustness suite: one Grid PKI per worker and a fresh :class:`Site`.

Every test here is marked ``robustness`` (module-level ``pytestmark``) and also
runs in the normal ``make test``. Randomised tests print their seed; set
``VMCATCHER_ROBUSTNESS_SEED`` to replay one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.sitekit import Site
from tests.support.pki import TestPKI
from tests.support.servers import TestServer


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def ca_dir(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pki.write_ca_dir(tmp_path_factory.mktemp("grid") / "certificates")


@pytest.fixture
def site(tmp_path: Path, pki: TestPKI, ca_dir: Path) -> Iterator[Site]:
    """An empty site (nothing subscribed yet) with its own image server."""
    with TestServer() as server:
        yield Site(tmp_path / "site", pki, ca_dir, server)


@pytest.fixture
def ram_site(tmp_path: Path, pki: TestPKI, ca_dir: Path) -> Iterator[Site]:
    """Like ``site``, but in ``/dev/shm`` when there is one (crash trials: many runs).

    A SIGKILL leaves the same files behind whether or not they were fsync'ed
    (fsync only matters when the machine loses power), so the crash trials
    may run where fsync costs nothing and spend their time on the trials.
    """
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="vmcatcher-robust-", dir=shm)) if shm.is_dir() else None
    try:
        with TestServer() as server:
            yield Site((base or tmp_path) / "site", pki, ca_dir, server)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
