"""Fixtures for transport tests: a test PKI and real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import TestServer
from tests.support.tls import TestPKI, make_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """CA + server certificate for 127.0.0.1, and a hashed CA dir trusting it."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """An unrelated CA: its CA dir must not make the test server trusted."""
    return make_test_pki(tmp_path_factory.mktemp("other-pki"), ca_name="unrelated CA")


@pytest.fixture
def http_server() -> Iterator[TestServer]:
    with TestServer() as server:
        yield server


@pytest.fixture
def https_server(pki: TestPKI) -> Iterator[TestServer]:
    with TestServer(tls=pki) as server:
        yield server


@pytest.fixture
def partial(tmp_path: Path) -> Path:
    """Where an image download writes (the directory exists, the file does not)."""
    directory = tmp_path / "partial"
    directory.mkdir()
    return directory / "image-uuid"
