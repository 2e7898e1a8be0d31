"""Fixtures for the trust tests: one test PKI per session, fresh CA directories per test."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import TestPKI
from vmcatcher.trust import TrustStore, load_trust_store


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def store(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    """The default directory: root + intermediate, current CRLs, both policy files."""
    return load_trust_store(pki.write_ca_dir(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def make_store(pki: TestPKI, tmp_path: Path) -> Callable[..., TrustStore]:
    """``make_store(**write_ca_dir options)`` -> a store over a fresh directory."""
    counter = itertools.count()

    def _make(**options: object) -> TrustStore:
        return load_trust_store(pki.write_ca_dir(tmp_path / f"certs{next(counter)}", **options))

    return _make


@pytest.fixture(scope="session")
def payload(pki: TestPKI) -> bytes:
    """A realistic image list, endorsed by ``pki.endorser`` (LF line ends, as written)."""
    document = make_image_list(
        "251c2259-fb08-4892-80fa-13b739813a90",
        "https://images.example-grid.org/lists/base/image.list",
        "3.0.1",
        [make_image("c8bb4e9b-8e63-4ea5-8dca-979b3686e229")],
        pki.endorser.subject,
        pki.endorser.issuer,
    )
    return list_payload(document)
