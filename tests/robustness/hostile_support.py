"""A throw-away vmcatcher site under attack: hostile servers, lists and handlers.

Why a module of its own: the robustness tests must prove more than "the command
failed". For every attack they check that

* the command ends with its documented exit code (``vmcatcher_subscribe -U``:
  10 for any transport failure, 11-38 for list errors; ``vmcatcher_cache``:
  download failures are logged and the run exits 0),
* it says what went wrong in an ERROR line, and no traceback, ``CRITICAL`` or
  "Unexpected error" (our catch-all for bugs) reaches the user,
* nothing is lost: the database is consistent, ``cache/`` holds only verified
  images, every ``cache.index`` parses, and the next normal run finishes the job.

:class:`Site` gives each test its own directory with a database (SQLite, or
PostgreSQL when ``VMCATCHER_TEST_DATABASE`` says so), the Grid CA directory
of a per-process :class:`~tests.support.pki.TestPKI`, cache directories, an
event handler that logs every event as a JSON line, and started
:class:`~tests.support.servers.TestServer` instances that are closed when the
test ends. :meth:`Site.check_consistent` is the "nothing is lost" check.

Test modules build the fixture with :func:`open_site` (the robustness
``conftest.py`` belongs to another helper)::

    @pytest.fixture
    def site(tmp_path):
        with open_site(tmp_path) as opened:
            yield opened
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shlex
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import databases
from tests.support.commands import Result, run
from tests.support.lists import image_bytes, list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from tests.support.servers import TestServer
from tests.support.tls import TestPKI as TlsPKI
from tests.support.tls import make_test_pki

SUBSCRIPTION = "8a5f3c52-7d0e-4a51-9d6e-3f0b6c1ab0e1"

#: Text that must never reach a user, whatever the attack.
FORBIDDEN_OUTPUT = ("Traceback (most recent call last)", "CRITICAL", "Unexpected error")

# One JSON line per event: every VMCATCHER_* variable the handler received.
EVENT_LOGGER = """\
import json, os, sys
record = {k: v for k, v in os.environ.items() if k.startswith("VMCATCHER_")}
with open(sys.argv[1], "a", encoding="utf-8", errors="surrogateescape") as handle:
    handle.write(json.dumps(record, sort_keys=True) + "\\n")
"""


@functools.cache
def grid_pki() -> TestPKI:
    """The Grid PKI signing every list, one per test process (key generation is slow)."""
    return TestPKI()


@functools.cache
def tls_pki() -> TlsPKI:
    """A TLS CA with a server certificate for 127.0.0.1 and one for another host name."""
    directory = Path(tempfile.mkdtemp(prefix="vmcatcher-hostile-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    return make_test_pki(directory)


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def assert_clean(result: Result) -> None:
    """Nothing a user must never see: no traceback, no CRITICAL, no catch-all bug line."""
    text = result.stdout + result.stderr
    for forbidden in FORBIDDEN_OUTPUT:
        assert forbidden not in text, f"{forbidden!r} in the output:\n{result}"


def assert_failure(result: Result, code: int, *fragments: str) -> list[str]:
    """The command failed with ``code``, cleanly, with an ERROR line naming the problem.

    Every ``fragment`` must appear in one ERROR line; returns the ERROR lines.
    """
    assert_clean(result)
    assert result.returncode == code, f"expected exit code {code}:\n{result}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert errors, f"no ERROR line:\n{result}"
    for fragment in fragments:
        assert any(fragment in line for line in errors), f"no ERROR with {fragment!r}:\n{result}"
    return errors


@dataclass
class Site:
    """One site directory under attack; see the module docstring."""

    root: Path
    pki: TestPKI
    database: databases.ScratchDatabase
    env: dict[str, str]
    stack: ExitStack
    version: int = 0
    durations: list[tuple[str, float]] = field(default_factory=list)

    # --- paths -------------------------------------------------------------------

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def partial_dir(self) -> Path:
        return self.cache_dir / "partial"

    @property
    def expired_dir(self) -> Path:
        return self.cache_dir / "expired"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def event_logger(self) -> str:
        """A ``-x`` command appending every event's environment to :attr:`events_file`."""
        script = self.root / "event_logger.py"
        if not script.exists():
            script.write_text(EVENT_LOGGER)
        parts = (sys.executable, "-I", "-S", script, self.events_file)
        return " ".join(shlex.quote(str(part)) for part in parts)

    # --- servers and lists ----------------------------------------------------------

    def server(
        self, tls: TlsPKI | ssl.SSLContext | None = None, *, wrong_host: bool = False
    ) -> TestServer:
        """A started server on 127.0.0.1, closed when the test ends."""
        return self.stack.enter_context(TestServer(tls, wrong_host=wrong_host))

    def image(
        self,
        server: TestServer | None,
        identifier: str | None = None,
        size: int = 2048,
        *,
        serve: bool = True,
        **overrides: Any,
    ) -> dict[str, Any]:
        """An ``hv:image`` of ``size`` generated bytes, served at ``/<identifier>.img``."""
        identifier = identifier or str(uuid.uuid4())
        data, _ = image_bytes(identifier, size)
        path = f"/{identifier}.img"
        if server is not None:
            if serve:
                server.add(path, data)
            overrides.setdefault("uri", server.url(path))
        return make_image(identifier, data=data, **overrides)

    def document(
        self,
        url: str,
        images: Sequence[Mapping[str, Any]],
        *,
        version: str | None = None,
        identifier: str = SUBSCRIPTION,
        **options: Any,
    ) -> dict[str, Any]:
        """A list document for ``url``; each call without ``version`` is the next version."""
        if version is None:
            self.version += 1
            version = str(self.version)
        signer = self.pki.endorser
        return make_image_list(
            identifier, url, version, images, signer.subject, signer.issuer, **options
        )

    def signed(self, document: Mapping[str, Any] | bytes) -> bytes:
        """The S/MIME message of a document (or of raw payload bytes), by the endorser."""
        payload = document if isinstance(document, bytes) else list_payload(document)
        return sign(payload, self.pki.endorser)

    def publish(
        self, server: TestServer, path: str, images: Sequence[Mapping[str, Any]], **options: Any
    ) -> str:
        """Serve a signed list naming its own URL at ``path``; return the URL."""
        url = server.url(path)
        server.add(path, self.signed(self.document(url, images, **options)))
        return url

    def publish_file(self, name: str, images: Sequence[Mapping[str, Any]], **options: Any) -> str:
        """Write a signed list naming its own ``file://`` URL; return the URL."""
        path = self.root / name
        url = path.as_uri()
        path.write_bytes(self.signed(self.document(url, images, **options)))
        return url

    # --- commands ----------------------------------------------------------------------

    def run(
        self,
        name: str,
        *args: str,
        expect: int | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> Result:
        """Run an installed command in the site; ``expect``: assert this exit code."""
        started = time.monotonic()
        result = run(name, *args, cwd=self.root, env={**self.env, **(env or {})}, timeout=timeout)
        self.durations.append((f"{name} {' '.join(args)}", time.monotonic() - started))
        if expect is not None:
            assert result.returncode == expect, f"{name} {args}:\n{result}"
            assert_clean(result)
        return result

    @property
    def last_duration(self) -> float:
        return self.durations[-1][1]

    def subscribe(self, url: str, *extra: str) -> None:
        """``vmcatcher_subscribe -s URL -e`` (plus ``extra``) then ``-U``; both must succeed."""
        self.run("vmcatcher_subscribe", "-s", url, "-e", *extra, expect=0)
        self.update(expect=0)

    def update(self, *extra: str, expect: int | None = None, **kwargs: Any) -> Result:
        return self.run("vmcatcher_subscribe", "-U", *extra, expect=expect, **kwargs)

    def accept(self, *identifiers: str) -> None:
        """``vmcatcher_image -a -u ...``: subscribe to (cache) these images."""
        args = [part for identifier in identifiers for part in ("-u", identifier)]
        self.run("vmcatcher_image", "-a", *args, expect=0)

    def cache(
        self, *args: str, handler: str | None = None, expect: int | None = 0, **kwargs: Any
    ) -> Result:
        """``vmcatcher_cache`` with the JSON event logger (or ``handler``) as ``-x``."""
        command = handler if handler is not None else self.event_logger
        return self.run("vmcatcher_cache", "-x", command, *args, expect=expect, **kwargs)

    # --- what happened -----------------------------------------------------------------

    def events(self) -> list[dict[str, str]]:
        if not self.events_file.exists():
            return []
        text = self.events_file.read_text(encoding="utf-8", errors="surrogateescape")
        return [json.loads(line) for line in text.splitlines()]

    def event_types(self, identifier: str | None = None) -> list[str]:
        """Event types in order; with ``identifier``, only that image's events."""
        return [
            event["VMCATCHER_EVENT_TYPE"]
            for event in self.events()
            if identifier is None or event.get("VMCATCHER_EVENT_DC_IDENTIFIER") == identifier
        ]

    def clear_events(self) -> None:
        self.events_file.unlink(missing_ok=True)

    def index(self, directory: Path | None = None) -> dict[str, dict[str, Any]]:
        """A directory's ``cache.index`` (default: the cache's); ``{}`` when absent."""
        path = (directory or self.cache_dir) / "cache.index"
        return json.loads(path.read_text()) if path.exists() else {}

    def cached(self) -> set[str]:
        """Image files in the cache directory."""
        return _files(self.cache_dir)

    def list_versions(self) -> list[str]:
        """Versions of the stored list instances, oldest first."""
        rows = self.database.sql('SELECT version FROM "imageListInstance" ORDER BY id')
        return [row[0] for row in rows]

    def latest_version(self) -> str | None:
        """``hv:version`` of the list instance the subscription points at."""
        return self.database.scalar(
            'SELECT i.version FROM subscription s JOIN "imageListInstance" i '
            "ON i.id = s.imagelist_latest WHERE s.identifier = ?",
            (SUBSCRIPTION,),
        )

    def definitions(self) -> set[str]:
        return {row[0] for row in self.database.sql('SELECT identifier FROM "ImageDefinition"')}

    # --- the "nothing is lost" check ---------------------------------------------------

    def check_consistent(self) -> None:
        """Database consistent, cache holds only verified images, every index parses."""
        self._check_database()
        self._check_cache()

    def _check_database(self) -> None:
        db = self.database
        if not db.exists():
            return
        if not db.is_postgresql:
            assert db.sql("PRAGMA integrity_check") == [("ok",)]
            assert db.sql("PRAGMA foreign_key_check") == []
        dangling = db.sql(
            "SELECT s.identifier FROM subscription s WHERE s.imagelist_latest IS NOT NULL "
            'AND NOT EXISTS (SELECT 1 FROM "imageListInstance" i WHERE i.id = s.imagelist_latest)'
        )
        assert dangling == [], f"subscriptions pointing at missing list instances: {dangling}"
        stray = db.sql(
            'SELECT d.identifier FROM "ImageDefinition" d WHERE d.latest IS NOT NULL '
            'AND d.latest <> 0 AND NOT EXISTS (SELECT 1 FROM "ImageInstance" m '
            'WHERE m.id = d.latest AND m."fkIdentifier" = d.id)'
        )
        assert stray == [], f"image definitions pointing at foreign instances: {stray}"
        orphans = db.sql(
            'SELECT m.id FROM "ImageInstance" m WHERE m."fkimagelistinstance" IS NULL '
            'OR NOT EXISTS (SELECT 1 FROM "imageListInstance" i '
            'WHERE i.id = m."fkimagelistinstance")'
        )
        assert orphans == [], f"image instances without a list instance: {orphans}"

    def _check_cache(self) -> None:
        indexes = {}
        for directory in (self.cache_dir, self.partial_dir, self.expired_dir):
            path = directory / "cache.index"
            if path.exists():
                data = json.loads(path.read_text())
                assert isinstance(data, dict), f"{path} is not a JSON object"
                assert all(isinstance(entry, dict) for entry in data.values()), path
                indexes[directory] = data
        index = indexes.get(self.cache_dir, {})
        files = _files(self.cache_dir)
        named = {str(entry.get("filename", key)) for key, entry in index.items()}
        assert files <= named, f"files in the cache that no index entry names: {files - named}"
        for key, entry in index.items():
            path = self.cache_dir / str(entry.get("filename", key))
            assert path.is_file(), f"cache.index names {path.name}, which does not exist"
            data = path.read_bytes()
            assert len(data) == int(entry["size"]), f"{path.name}: wrong size in the cache"
            assert sha512(data) == str(entry["sha512"]).lower(), f"{path.name}: wrong sha512"


def _files(directory: Path) -> set[str]:
    """Visible regular files other than ``cache.index`` (and its corrupt copies)."""
    if not directory.is_dir():
        return set()
    return {
        entry.name
        for entry in directory.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and not entry.name.startswith("cache.index")
    }


@contextmanager
def open_site(tmp_path: Path) -> Iterator[Site]:
    """A fresh :class:`Site` in ``tmp_path/site``; servers are closed on exit."""
    root = tmp_path / "site"
    (root / "cache" / "partial").mkdir(parents=True)
    (root / "cache" / "expired").mkdir()
    pki = grid_pki()
    ca_dir = pki.write_ca_dir(tmp_path / "certificates")
    database = databases.test_database(tmp_path).prepare()
    env = {
        "VMCATCHER_RDBMS": database.url,
        "VMCATCHER_DIR_CERT": str(ca_dir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    with ExitStack() as stack:
        yield Site(root, pki, database, env, stack)
