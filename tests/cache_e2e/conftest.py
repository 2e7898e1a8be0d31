"""A throw-away site for end-to-end tests of the installed ``vmcatcher_cache``.

Why: the cache is where a signed list turns into files on disk and shell events,
so it is only proven by running the real commands against real servers. Each test
gets a :class:`CacheSite` in its own directory with:

* a Grid CA directory from one :class:`~tests.support.pki.TestPKI` per worker
  (key generation is the slow part);
* a :class:`~tests.support.servers.TestServer` on 127.0.0.1 serving the images
  (fault injection and request log), closed when the test ends;
* a signed list published as a ``file://`` URL, imported with the real
  ``vmcatcher_subscribe -s ... -e`` / ``-U`` and ``vmcatcher_image -a``;
* ``cache/partial`` and ``cache/expired`` created as the README says;
* an event handler (``-x``) that appends every event's ``VMCATCHER_*`` environment
  as one JSON line, so tests can check event order and values.

The database comes from :func:`tests.support.databases.test_database` (SQLite, or
PostgreSQL when ``VMCATCHER_TEST_DATABASE`` says so). It is only read or changed
with plain SQL where a test needs state that no command can produce (an expired
list, a hostile identifier).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.commands import Result, clean_env, command_path, run
from tests.support.databases import ScratchDatabase, test_database
from tests.support.lists import image_bytes, list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from tests.support.servers import Content, TestServer

SUBSCRIPTION = "251c2259-0c3e-4b8a-9f52-6a3cbb1ab001"

# One JSON line per event: every VMCATCHER_* variable the handler received.
EVENT_LOGGER = """\
import json, os, sys
record = {k: v for k, v in os.environ.items() if k.startswith("VMCATCHER_")}
with open(sys.argv[1], "a") as handle:
    handle.write(json.dumps(record, sort_keys=True) + "\\n")
"""


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="session")
def ca_dir(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pki.write_ca_dir(tmp_path_factory.mktemp("grid") / "certificates")


class SlowContent(Content):
    """Bytes served after a pause, recording how many bodies are being sent at once."""

    def __init__(self, data: bytes, delay: float, meter: ConcurrencyMeter) -> None:
        self.data = data
        self.size = len(data)
        self.delay = delay
        self.meter = meter

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        self.meter.enter()
        try:
            time.sleep(self.delay)
            yield self.data[start:end]
        finally:
            self.meter.leave()


class ConcurrencyMeter:
    """Counts concurrent users; ``peak`` is the most seen at one time."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


@dataclass
class CacheSite:
    """One site directory: database, CA dir, image server, list, cache dirs and events."""

    root: Path
    pki: TestPKI
    ca_dir: Path
    server: TestServer
    database: ScratchDatabase
    env: dict[str, str]
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    version: int = 0
    _stack: ExitStack = field(default_factory=ExitStack)

    # --- paths -----------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return self.database.url

    @property
    def shown_database_url(self) -> str:
        """The database URL as handlers must see it: without the password."""
        from sqlalchemy.engine import URL, make_url

        url = make_url(self.database.url)
        bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                          url.query)  # fmt: skip
        return bare.render_as_string(hide_password=False)

    @property
    def list_path(self) -> Path:
        return self.root / "image.list"

    @property
    def list_url(self) -> str:
        return self.list_path.as_uri()

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
    def handler(self) -> str:
        script = self.root / "event_logger.py"
        if not script.exists():
            script.write_text(EVENT_LOGGER)
        return " ".join(
            shlex.quote(str(p)) for p in (sys.executable, "-I", "-S", script, self.events_file)
        )

    # --- images and lists --------------------------------------------------------

    def add_image(
        self,
        identifier: str,
        size: int = 4096,
        *,
        seed: str | None = None,
        data: bytes | None = None,
        serve: bool = True,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Describe an image of ``size`` generated bytes (or ``data``), served at
        ``/<identifier>.img`` unless ``serve=False``."""
        if data is None:
            data, _ = image_bytes(seed or identifier, size)
        path = f"/{identifier}.img"
        if serve:
            self.server.add(path, data)
        overrides.setdefault("uri", self.server.url(path))
        image = make_image(identifier, data=data, **overrides)
        self.images[identifier] = image
        self.data[identifier] = data
        return image

    def publish(self, identifiers: Sequence[str] | None = None, **list_options: Any) -> None:
        """Sign a new version of the list holding these images (default: all added)."""
        self.version += 1
        chosen = list(self.images) if identifiers is None else list(identifiers)
        document = make_image_list(
            SUBSCRIPTION,
            self.list_url,
            str(self.version),
            [self.images[i] for i in chosen],
            self.pki.endorser.subject,
            self.pki.endorser.issuer,
            **list_options,
        )
        self.list_path.write_bytes(sign(list_payload(document), self.pki.endorser))

    def command(self, name: str, *args: str, expect: int | None = 0, **kwargs: Any) -> Result:
        env = dict(self.env)
        env.update(kwargs.pop("env", None) or {})
        result = run(name, *args, cwd=self.root, env=env, **kwargs)
        if expect is not None:
            assert result.returncode == expect, f"{name} {args}: {result}"
        return result

    def subscribe(self) -> None:
        """``vmcatcher_subscribe -s <list> -e`` then ``-U``."""
        self.command("vmcatcher_subscribe", "-s", self.list_url, "-e")
        self.update()

    def update(self) -> Result:
        return self.command("vmcatcher_subscribe", "-U")

    def accept(self, *identifiers: str) -> None:
        args = [a for i in identifiers for a in ("-u", i)]
        self.command("vmcatcher_image", "-a", *args)

    def remove(self, *identifiers: str) -> None:
        args = [a for i in identifiers for a in ("-u", i)]
        self.command("vmcatcher_image", "-r", *args)

    def ready(self, *identifiers: str) -> None:
        """Publish the list, subscribe, update and subscribe to these images (default: all)."""
        self.publish()
        self.subscribe()
        self.accept(*(identifiers or tuple(self.images)))

    def clone(self, name: str) -> CacheSite:
        """A copy of this site's directory (list, cache directories) sharing the server and
        the database: ``vmcatcher_cache`` only reads the database."""
        root = self.root.parent / name
        shutil.copytree(self.root, root, symlinks=True)
        copy = CacheSite(root, self.pki, self.ca_dir, self.server, self.database, dict(self.env),
                         dict(self.images), dict(self.data), self.version, self._stack)  # fmt: skip
        copy.clear_events()
        return copy

    # --- the command under test -----------------------------------------------------

    def cache(
        self, *args: str, events: bool = True, expect: int | None = 0, **kwargs: Any
    ) -> Result:
        """Run ``vmcatcher_cache`` (with the JSON event logger unless ``events=False``)."""
        extra = ["-x", self.handler] if events else []
        return self.command("vmcatcher_cache", *extra, *args, expect=expect, **kwargs)

    def start_cache(self, *args: str, events: bool = True) -> subprocess.Popen[str]:
        """Start ``vmcatcher_cache`` in the background (stopped at the end of the test)."""
        extra = ["-x", self.handler] if events else []
        proc = subprocess.Popen(
            [command_path("vmcatcher_cache"), *extra, *args],
            cwd=self.root,
            env=clean_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stack.callback(_stop, proc)
        return proc

    def events(self) -> list[dict[str, str]]:
        if not self.events_file.exists():
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]

    def event_types(self) -> list[str]:
        return [event["VMCATCHER_EVENT_TYPE"] for event in self.events()]

    def clear_events(self) -> None:
        self.events_file.unlink(missing_ok=True)

    def index(self, directory: Path) -> dict[str, dict[str, Any]]:
        path = directory / "cache.index"
        return json.loads(path.read_text()) if path.exists() else {}

    def files(self, directory: Path) -> set[str]:
        """Regular, visible files in a directory other than ``cache.index``."""
        return {
            entry.name
            for entry in directory.iterdir()
            if entry.is_file() and entry.name != "cache.index" and not entry.name.startswith(".")
        }

    # --- database (plain SQL, SQLite or PostgreSQL) ------------------------------------

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.database.sql(query, params)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.database.execute(statement, params)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


@pytest.fixture
def site(tmp_path: Path, pki: TestPKI, ca_dir: Path) -> Iterator[CacheSite]:
    root = tmp_path / "site"
    root.mkdir()
    (root / "cache" / "partial").mkdir(parents=True)
    (root / "cache" / "expired").mkdir()
    database = test_database(root).prepare()
    env = {
        "VMCATCHER_RDBMS": database.url,
        "VMCATCHER_DIR_CERT": str(ca_dir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    with TestServer() as server:
        state = CacheSite(root, pki, ca_dir, server, database, env)
        with state._stack:
            yield state
