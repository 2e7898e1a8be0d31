"""A throw-away vmcatcher site for robustness tests: one list, many images, one server.

Why a kit of its own: crash trials publish dozens of list versions in one test,
so publishing, running and checking must be cheap one-liners. The site has:

* a SQLite database and a subscription (``--imagelist-newimage-subscribe``, so
  every image of every version is wanted in the cache without ``vmcatcher_image``);
* one :class:`~tests.support.servers.TestServer` serving the signed list at
  ``/image.list`` and every image version at ``/img/<uuid>-<sha prefix>``, so
  the request log tells image versions apart; images can be served slowly
  (``drip``) so that kills land mid-download;
* ``cache/partial`` and ``cache/expired`` as the README creates them;
* :meth:`Site.start` / :meth:`Site.run` for the forked commands of
  :mod:`tests.robustness.runner`, and :meth:`Site.command` for the real
  console scripts.
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.robustness import runner
from tests.robustness.consistency import assert_cache_consistent, assert_db_consistent
from tests.support.commands import Result
from tests.support.commands import run as run_command
from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from tests.support.servers import RecordedRequest, TestServer

SUBSCRIPTION = "6f1d3c2e-93a4-4b9f-a1b7-0c2d5e8f7a61"
LIST_PATH = "/image.list"


def image_path(uuid: str, data: bytes) -> str:
    return f"/img/{uuid}-{hashlib.sha512(data).hexdigest()[:12]}"


@dataclass
class Site:
    root: Path
    pki: TestPKI
    ca_dir: Path
    server: TestServer
    images: dict[str, bytes] = field(default_factory=dict)
    version: int = 0
    drip: tuple[float, int] | None = None  # (seconds between pieces, piece size)
    runs: int = 0

    def __post_init__(self) -> None:
        for directory in (self.cache_dir, self.partial_dir, self.expired_dir, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)

    # --- paths and environment --------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.root / "vmcatcher.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

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
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def events_log(self) -> Path:
        return self.root / "events.log"

    @property
    def list_url(self) -> str:
        return self.server.url(LIST_PATH)

    @property
    def env(self) -> dict[str, str]:
        return {
            "VMCATCHER_RDBMS": self.db_url,
            "VMCATCHER_DIR_CERT": str(self.ca_dir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
        }

    # --- publishing ---------------------------------------------------------------------

    def publish(self, images: dict[str, bytes] | None = None, **list_options: object) -> None:
        """Serve every image version and a newly signed list version naming ``images``."""
        if images is not None:
            self.images = dict(images)
        self.version += 1
        entries = []
        for uuid, data in self.images.items():
            path = image_path(uuid, data)
            if self.drip is None:
                self.server.add(path, data)
            else:
                self.server.drip(path, data, self.drip[0], piece=self.drip[1])
            entries.append(make_image(uuid, data=data, uri=self.server.url(path)))
        document = make_image_list(
            SUBSCRIPTION,
            self.list_url,
            str(self.version),
            entries,
            self.pki.endorser.subject,
            self.pki.endorser.issuer,
            **list_options,
        )
        self.server.add(LIST_PATH, sign(list_payload(document), self.pki.endorser))

    def subscribe(self) -> None:
        """Subscribe (new images subscribed automatically) and import the current version."""
        self.check(self.command("vmcatcher_subscribe", "-s", self.list_url, "-e",
                                "--imagelist-newimage-subscribe"))  # fmt: skip
        self.check(self.command("vmcatcher_subscribe", "-U"))

    # --- running commands ---------------------------------------------------------------

    def command(self, name: str, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> Result:  # fmt: skip
        """Run the installed console script ``name`` in the site directory."""
        return run_command(name, *args, cwd=self.root, env={**self.env, **(env or {})},
                           timeout=timeout)  # fmt: skip

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> runner.Child:
        """Start ``name`` as a forked child that can be killed (see :mod:`runner`)."""
        self.runs += 1
        output = self.root / f"run-{self.runs:04d}.out"
        return runner.start(name, list(args), self.root, {**self.env, **(env or {})}, output)

    def run(self, name: str, *args: str, env: dict[str, str] | None = None) -> runner.Outcome:
        return self.start(name, *args, env=env).wait()

    @staticmethod
    def check(result: Result | runner.Outcome, expected: int = 0) -> None:
        assert result.returncode == expected, str(result)

    def cache_args(self, *extra: str) -> list[str]:
        fields = '"$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER"'
        handler = f"echo {fields} >> {shlex.quote(str(self.events_log))}"
        return ["-x", handler, *extra]

    # --- checks ---------------------------------------------------------------------------

    def assert_consistent(self, *, strict: bool = False) -> None:
        assert_db_consistent(self.db_path)
        assert_cache_consistent(
            self.db_path,
            self.cache_dir,
            self.partial_dir,
            self.expired_dir,
            wanted=self.images if strict else None,
            strict=strict,
        )

    def image_requests(self, since: int = 0) -> dict[str, list[RecordedRequest]]:
        """Image requests after position ``since`` of the request log, by path."""
        found: dict[str, list[RecordedRequest]] = {}
        for request in self.server.requests[since:]:
            if request.path.startswith("/img/"):
                found.setdefault(request.path, []).append(request)
        return found


def mutate(images: dict[str, bytes], rng: random.Random, size: tuple[int, int],
           *, change: int, remove: int, add: int) -> dict[str, bytes]:  # fmt: skip
    """A new image set: ``change`` images get new bytes, ``remove`` go, ``add`` arrive."""
    result = dict(images)
    keys = sorted(result)
    rng.shuffle(keys)
    for uuid in keys[:change]:
        result[uuid] = rng.randbytes(rng.randint(*size))
    for uuid in keys[change : change + remove]:
        del result[uuid]
    for _ in range(add):
        result[_uuid(rng)] = rng.randbytes(rng.randint(*size))
    return result


def _uuid(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def seeded(name: str) -> tuple[int, random.Random]:
    """A seed (VMCATCHER_ROBUSTNESS_SEED, or a fresh one) printed for replay, and its RNG."""
    text = os.environ.get("VMCATCHER_ROBUSTNESS_SEED")
    seed = int(text) if text else random.SystemRandom().randrange(2**32)
    print(f"{name}: seed {seed} (replay with VMCATCHER_ROBUSTNESS_SEED={seed})", file=sys.stderr)
    return seed, random.Random(seed)


def uuids(count: int, rng: random.Random) -> Iterable[str]:
    return [_uuid(rng) for _ in range(count)]
