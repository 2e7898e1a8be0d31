"""A throw-away vmcatcher site for end-to-end tests of the installed commands.

Why: ``vmcatcher_subscribe`` and ``vmcatcher_image`` are only proven when a
real signed list travels through the real command line into a real database.
The ``site`` fixture gives each test its own directory with:

* a Grid CA directory from the session's :class:`~tests.support.pki.TestPKI`
  (key generation is the slow part, so one PKI per test session/worker);
* a fresh database from :func:`tests.support.databases.test_database`, its schema
  created (only configuring commands create a database; docs/database.md) (SQLite
  by default, a new PostgreSQL database in the second pass of ``make test``),
  handed to the commands as ``VMCATCHER_RDBMS``, and ``VMCATCHER_DIR_CERT``
  pointing at that CA directory;
* helpers to build and sign lists, publish them as files (``file://``) or on
  a :class:`~tests.support.servers.TestServer`, run the commands, and read the
  database with plain SQL through
  :class:`~tests.support.databases.ScratchDatabase` (never through vmcatcher's
  own models), so the same assertions hold on both backends.

Servers are started with ``site.server()`` and closed when the test ends.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.commands import Result, clean_env, command_path, run
from tests.support.databases import ScratchDatabase, test_database
from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import Identity, TestPKI, sign, signed_form
from tests.support.servers import TestServer
from tests.support.tls import TestPKI as TlsPKI
from tests.support.tls import make_test_pki

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPKI:
    """A TLS CA and a server certificate for 127.0.0.1 (not in any system bundle)."""
    return make_test_pki(tmp_path_factory.mktemp("tls"))


@dataclass
class PublishedList:
    """A signed list as published: its document, its signed bytes, where it lives."""

    document: dict[str, Any]
    data: bytes
    url: str
    path: Path | None = None

    @property
    def body(self) -> dict[str, Any]:
        return self.document["hv:imagelist"]

    @property
    def identifier(self) -> str:
        return self.body["dc:identifier"]

    @property
    def images(self) -> list[dict[str, Any]]:
        return [entry["hv:image"] for entry in self.body["hv:images"]]

    @property
    def image_ids(self) -> list[str]:
        return [image["dc:identifier"] for image in self.images]

    @property
    def payload(self) -> bytes:
        """What signature verification returns: the signed JSON with CRLF line ends."""
        return signed_form(list_payload(self.document))


@dataclass
class Site:
    root: Path
    pki: TestPKI
    ca_dir: Path
    env: dict[str, str]
    database: ScratchDatabase
    _stack: ExitStack = field(default_factory=ExitStack)

    # --- database (plain SQL, SQLite or PostgreSQL) --------------------------------

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.database.sql(query, params)

    def dicts(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.database.dicts(query, params)

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        return self.database.scalar(query, params)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.database.execute(statement, params)

    def count(self, table: str) -> int:
        return self.database.count(table)

    def tables(self) -> list[str]:
        """Every table the database holds (vmcatcher's and any bookkeeping), sorted."""
        if self.database.is_postgresql:
            query = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY table_name"
            )
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        return [name for (name,) in self.sql(query)]

    def schema(self) -> list[tuple]:
        """The schema as the database describes it (sqlite_master; PostgreSQL: columns, indexes)."""
        if self.database.is_postgresql:
            columns = self.sql(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            )
            indexes = self.sql(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            )
            return sorted(columns + indexes, key=repr)
        return sorted(self.sql("SELECT type, name, tbl_name, sql FROM sqlite_master"), key=repr)

    def dump(self) -> dict[str, list[tuple]]:
        """The schema and every row of every table, to prove that a failed command wrote nothing.

        Rows are sorted (a table is a set; PostgreSQL may return rows in another
        order after an update that was rolled back). PostgreSQL sequences are
        left out: a rolled-back insert still advances them, which writes no row.
        """
        dumped = {"(schema)": self.schema()}
        for table in self.tables():
            dumped[table] = sorted(self.sql(f'SELECT * FROM "{table}"'), key=repr)
        return dumped

    def counts(self) -> dict[str, int]:
        tables = ("subscription", "subscriptionAuth", "imageListInstance", "ImageInstance",
                  "ImageDefinition", "endorser", "endorserPrincible")  # fmt: skip
        return {table: self.count(table) for table in tables}

    def states(self) -> dict[str, int]:
        """``vmcatcher_image -l`` as {image: state}; asserts the command succeeded."""
        result = self.image("-l")
        assert result.returncode == 0, result
        found = {}
        for line in result.stdout.splitlines():
            image, state, _sub = line.split("\t")
            found[image] = int(state)
        return found

    # --- commands ----------------------------------------------------------------

    def run(
        self, name: str, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
    ) -> Result:
        return run(name, *args, cwd=self.root, env={**self.env, **(env or {})}, input=input)

    def run_bytes(self, name: str, *args: str) -> tuple[int, bytes, str]:
        """Run a command capturing stdout as raw bytes (no newline translation)."""
        completed = subprocess.run(
            [command_path(name), *args],
            cwd=self.root,
            env=clean_env(self.env),
            capture_output=True,
            timeout=120,
        )
        return completed.returncode, completed.stdout, completed.stderr.decode()

    def subscribe(self, *args: str, **kwargs: Any) -> Result:
        return self.run("vmcatcher_subscribe", *args, **kwargs)

    def image(self, *args: str, **kwargs: Any) -> Result:
        return self.run("vmcatcher_image", *args, **kwargs)

    def endorser(self, *args: str, **kwargs: Any) -> Result:
        return self.run("vmcatcher_endorser", *args, **kwargs)

    # --- lists -------------------------------------------------------------------

    def file_url(self, name: str) -> str:
        return (self.root / name).as_uri()

    def document(
        self,
        uri: str,
        *,
        identifier: str | None = None,
        version: str = "1",
        images: Sequence[dict[str, Any]] | None = None,
        signer: Identity | None = None,
        dn: str | None = None,
        ca: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        signer = signer or self.pki.endorser
        return make_image_list(
            identifier or str(uuid.uuid4()),
            uri,
            version,
            images if images is not None else [make_image(), make_image()],
            dn or signer.subject,
            ca or signer.issuer,
            **options,
        )

    def signed(self, document: dict[str, Any], signer: Identity | None = None) -> bytes:
        return sign(list_payload(document), signer or self.pki.endorser)

    def publish_file(
        self,
        name: str,
        document: dict[str, Any],
        signer: Identity | None = None,
        data: bytes | None = None,
    ) -> PublishedList:
        """Sign ``document`` and write it to ``<root>/<name>`` (replacing what was there)."""
        data = data if data is not None else self.signed(document, signer)
        path = self.root / name
        path.write_bytes(data)
        return PublishedList(document, data, path.as_uri(), path)

    def file_list(self, name: str = "image.list", **options: Any) -> PublishedList:
        """A list whose ``hv:uri`` is its own ``file://`` URL, so ``-U`` can fetch it."""
        url = self.file_url(name)
        signer = options.get("signer")
        return self.publish_file(name, self.document(url, **options), signer)

    def republish(self, published: PublishedList, **changes: Any) -> PublishedList:
        """The same list (same identifier and URI) with changed fields, re-signed in place."""
        body = published.body
        options: dict[str, Any] = {
            "identifier": body["dc:identifier"],
            "version": body["hv:version"],
            "images": published.images,
        }
        options.update(changes)
        document = self.document(body["hv:uri"], **options)
        assert published.path is not None, "only file lists are republished in place"
        return self.publish_file(published.path.name, document, changes.get("signer"))

    def server(self, tls: TlsPKI | None = None) -> TestServer:
        """A started TestServer, closed when the test ends."""
        return self._stack.enter_context(TestServer(tls))

    def publish_http(self, server: TestServer, path: str, **options: Any) -> PublishedList:
        """A list served at ``server`` ``path`` whose ``hv:uri`` is that URL."""
        url = server.url(path)
        document = self.document(url, **options)
        data = self.signed(document, options.get("signer"))
        server.add(path, data)
        return PublishedList(document, data, url)

    # --- convenience ---------------------------------------------------------------

    def subscribed(self, published: PublishedList, *extra: str) -> None:
        """Subscribe (auto-endorse) and import the first version; both must succeed."""
        result = self.subscribe("-s", published.url, "-e", *extra)
        assert result.returncode == 0, result
        result = self.subscribe("-U")
        assert result.returncode == 0, result

    def sub_row(self, identifier: str) -> dict[str, Any]:
        rows = self.dicts("SELECT * FROM subscription WHERE identifier = ?", (identifier,))
        assert rows, f"no subscription {identifier}"
        [row] = rows
        return row


@pytest.fixture
def site(tmp_path: Path, pki: TestPKI) -> Iterator[Site]:
    ca_dir = pki.write_ca_dir(tmp_path / "certificates")
    database = test_database(tmp_path).prepare()
    env = {"VMCATCHER_RDBMS": database.url, "VMCATCHER_DIR_CERT": str(ca_dir)}
    work = Site(tmp_path, pki, ca_dir, env, database)
    with work._stack:
        yield work


def db_time(value: str | None) -> datetime | None:
    """A DateTime column as sqlite3 returns it (``YYYY-MM-DD HH:MM:SS[.ffffff]``).

    :class:`~tests.support.databases.ScratchDatabase` returns PostgreSQL's the same way.
    """
    if value is None:
        return None
    return datetime.fromisoformat(value)


def shown(value: str | None) -> str:
    """A DateTime column in the output format ``%Y-%m-%dT%H:%M:%SZ``."""
    moment = db_time(value)
    assert moment is not None
    return moment.strftime(TIME_FORMAT)
