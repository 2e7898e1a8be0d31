"""Upgrading a site from the original vmcatcher 0.6.x: install ours, change nothing else.

Why: DECISIONS.md promises a drop-in replacement. A site keeps its
``vmcatcher.db``, its cache directories with their ``cache.index`` files, its
cron line and its event handler. This module builds such a site exactly as the
original leaves it, without using any of our code to do so:

* the database by raw SQL with the original's CREATE TABLE statements
  (:mod:`tests.db.legacy`), holding a subscription, an endorser with its
  principal, the link between them, one imported list instance whose ``data``
  is a real S/MIME signed list (signed by the test PKI, verifiable against the
  test CA directory), and that list's image instances and definitions, one of
  them subscribed (``cache=1``);
* the cache directories as the original writes them (spec §10.3): the image
  bytes in ``<cache>/<uuid>``, ``cache.index`` with the original's keys
  (``message``, ``msgHash``, ``DownLoadTrys``, ``hv:image.*``...) in Python 2's
  ``json.dumps(sort_keys=True, indent=4)`` layout, and ``{}`` in the partial
  and expired indexes.

Then the *installed* commands run on it. They must show the same
subscriptions, endorsers and image states, back the database up before
migrating it, and ``vmcatcher_cache`` must adopt the cached image as it is:
no download (the image server records every request), no Expire event, the
file untouched.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.db import legacy
from tests.support.commands import Result, clean_env, run
from tests.support.lists import image_bytes, list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign
from tests.support.servers import TestServer

REPO = Path(__file__).resolve().parents[2]

LIST_ID = "63175437-7d59-4851-b333-c96cb6545a86"
CACHED = "858a817e-0ca2-473f-89d3-d5bdfc51968e"  # subscribed, in the cache
OTHER = "327016b0-6508-41d2-bce0-c1724cb3d3e2"  # available, not subscribed
ENDORSER_ID = "Predrag Buncic"  # the README's human-readable endorser identifier
DB_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how the original's SQLAlchemy stored DateTime on SQLite


def db_time(moment: datetime) -> str:
    return moment.strftime(DB_TIME)


def py2_json(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, indent=4)`` as Python 2 wrote it (", " at line ends)."""
    return json.dumps(value, sort_keys=True, indent=4, separators=(", ", ": "))


@dataclass
class LegacySite:
    """A site as vmcatcher 0.6.x left it, plus the server its lists and images come from."""

    root: Path
    server: TestServer
    ca_dir: Path
    db_path: Path
    cache_dir: Path
    partial_dir: Path
    expired_dir: Path
    list_data: bytes
    images: dict[str, bytes]
    endorser_dn: str
    endorser_ca: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, name: str, *args: str, env: dict[str, str] | None = None) -> Result:
        return run(name, *args, cwd=self.root, env={**self.env, **(env or {})})

    def sql(self, query: str) -> list[tuple]:
        with sqlite3.connect(self.db_path) as db:
            return db.execute(query).fetchall()

    def index(self, directory: Path) -> dict[str, Any]:
        return json.loads((directory / "cache.index").read_text())

    def backups(self) -> list[Path]:
        return sorted(self.db_path.parent.glob(self.db_path.name + ".backup-*"))


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


def build_site(root: Path, pki: TestPKI, server: TestServer, layout: str) -> LegacySite:
    """Write the original's database and cache directories under ``root``."""
    ca_dir = pki.write_ca_dir(root / "certificates")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    created = (now - timedelta(days=2)).replace(microsecond=0)
    expires = (now + timedelta(days=28)).replace(microsecond=0)
    imported = now - timedelta(days=1, hours=3, microseconds=-123456)

    # -- the published list and its images ------------------------------------------
    images = {CACHED: image_bytes("cernvm-3", 48 * 1024)[0], OTHER: image_bytes("sl-6", 8192)[0]}
    titles = {CACHED: "CernVM 3", OTHER: "Scientific Linux 6"}
    entries = []
    for uuid, data in images.items():
        server.add(f"/images/{uuid}", data)
        entries.append(
            make_image(
                uuid,
                data=data,
                uri=server.url(f"/images/{uuid}"),
                title=titles[uuid],
                version="3.1.4",
                arch="x86_64",
                hypervisor="kvm",
                os="Linux",
                osversion="3",
                comments="built by the test",
                extra={"hv:format": "raw", "ad:mpuri": f"https://market.example.org/{uuid}"},
            )
        )
    document = make_image_list(
        LIST_ID,
        server.url("/image.list"),
        "20240101",
        entries,
        pki.endorser.subject,
        pki.endorser.issuer,
        created=created,
        expires=expires,
        extra={"ad:vo": "vo.example.org"},
    )
    list_data = sign(list_payload(document), pki.endorser)
    server.add("/image.list", list_data)
    data_hash = hashlib.sha512(list_data).hexdigest()

    # -- the database, by raw SQL with the original's DDL -------------------------------
    db_path = root / "var" / "lib" / "vmcatcher" / "vmcatcher.db"
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    try:
        for statement in legacy.ddl(legacy.V0_6).values():
            db.execute(statement)
        db.execute("INSERT INTO endorser VALUES (1, ?)", (ENDORSER_ID,))
        db.execute(
            'INSERT INTO "endorserPrincible" VALUES (1, ?, ?, 1)',
            (pki.endorser.subject, pki.endorser.issuer),
        )
        db.execute(
            "INSERT INTO subscription VALUES (1, ?, ?, ?, 1, 1, ?, 0, NULL, NULL, 0)",
            (
                LIST_ID,
                document["hv:imagelist"]["dc:description"],
                server.url("/image.list"),
                db_time(imported + timedelta(seconds=1)),
            ),
        )
        db.execute('INSERT INTO "subscriptionAuth" VALUES (1, 1, 1, 1)')
        db.execute(
            'INSERT INTO "imageListInstance" VALUES (1, ?, ?, NULL, 1, ?, ?, ?, ?)',
            (
                sqlite3.Binary(list_data),
                data_hash,
                db_time(imported),
                db_time(created),
                db_time(expires),
                "20240101",
            ),
        )
        for row_id, entry in enumerate(entries, start=1):
            db.execute(
                'INSERT INTO "ImageDefinition" VALUES (?, ?, ?, ?, 1)',
                (
                    row_id,
                    entry["dc:identifier"],
                    row_id,
                    1 if entry["dc:identifier"] == CACHED else 0,
                ),
            )
            db.execute(
                'INSERT INTO "ImageInstance" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)',
                (
                    row_id,
                    entry["dc:description"],
                    entry["hv:hypervisor"],
                    entry["sl:checksum:sha512"],
                    entry["hv:uri"],
                    entry["sl:os"],
                    entry["sl:osversion"],
                    entry["sl:arch"],
                    entry["hv:version"],
                    entry["hv:size"],
                    entry["dc:title"],
                    entry["sl:comments"],
                    row_id,
                ),
            )
        db.commit()
    finally:
        db.close()

    # -- the cache directories, as the original lays them out ----------------------------
    if layout == "nested":  # the default: ./cache, ./cache/partial, ./cache/expired
        cache_dir = root / "cache"
        partial_dir, expired_dir = cache_dir / "partial", cache_dir / "expired"
    else:  # the README's production layout
        base = root / "var" / "cache" / "vmimages"
        cache_dir, partial_dir, expired_dir = base / "endorsed", base / "partial", base / "expired"
    for directory in (cache_dir, partial_dir, expired_dir):
        directory.mkdir(parents=True)
    cached_entry = next(e for e in entries if e["dc:identifier"] == CACHED)
    index_entry: dict[str, Any] = {
        "dc:identifier": CACHED,
        "uuid": CACHED,
        "hv:uri": cached_entry["hv:uri"],
        "uri": cached_entry["hv:uri"],
        "sl:checksum:sha512": cached_entry["sl:checksum:sha512"],
        "sha512": cached_entry["sl:checksum:sha512"],
        "hv:size": cached_entry["hv:size"],
        "size": cached_entry["hv:size"],
        "hv:imagelist.dc:identifier": LIST_ID,
        "hv:imagelist.ad:vo": "vo.example.org",
        "message": list_data.decode("utf-8"),
        "msgHash": data_hash,
        "dc:title": cached_entry["dc:title"],
        "dc:description": cached_entry["dc:description"],
        "hv:version": cached_entry["hv:version"],
        "hv:hypervisor": cached_entry["hv:hypervisor"],
        "sl:arch": cached_entry["sl:arch"],
        "sl:comments": cached_entry["sl:comments"],
        "sl:os": cached_entry["sl:os"],
        "sl:osversion": cached_entry["sl:osversion"],
        "DownLoadTrys": {"count": 1, "msgHash": data_hash},
        "filename": CACHED,
    }
    for key, value in cached_entry.items():
        index_entry[f"hv:image.{key}"] = value
    (cache_dir / CACHED).write_bytes(images[CACHED])
    (cache_dir / "cache.index").write_text(py2_json({CACHED: index_entry}))
    (partial_dir / "cache.index").write_text("{}")
    (expired_dir / "cache.index").write_text("{}")

    env = {
        "VMCATCHER_RDBMS": f"sqlite:///{db_path}",
        "VMCATCHER_DIR_CERT": str(ca_dir),
    }
    if layout != "nested":  # the README's cron file exports these, with trailing slashes
        env["VMCATCHER_CACHE_DIR_CACHE"] = f"{cache_dir}/"
        env["VMCATCHER_CACHE_DIR_DOWNLOAD"] = f"{partial_dir}/"
        env["VMCATCHER_CACHE_DIR_EXPIRE"] = f"{expired_dir}/"
    return LegacySite(
        root=root,
        server=server,
        ca_dir=ca_dir,
        db_path=db_path,
        cache_dir=cache_dir,
        partial_dir=partial_dir,
        expired_dir=expired_dir,
        list_data=list_data,
        images=images,
        endorser_dn=pki.endorser.subject,
        endorser_ca=pki.endorser.issuer,
        env=env,
    )


@pytest.fixture
def site(tmp_path: Path, pki: TestPKI) -> Iterator[LegacySite]:
    """The original's default layout: ./cache, ./cache/partial, ./cache/expired."""
    with TestServer() as server:
        yield build_site(tmp_path, pki, server, "nested")


@pytest.fixture(params=["nested", "production"])
def any_site(request: pytest.FixtureRequest, tmp_path: Path, pki: TestPKI) -> Iterator[LegacySite]:
    """Both layouts; "production" is the README's /var/cache/vmimages/{endorsed,...}/."""
    with TestServer() as server:
        yield build_site(tmp_path, pki, server, request.param)


def example_handler(log: Path) -> str:
    """The original cron file's handler line, pointing at our example handler launcher."""
    launcher = REPO / "vmcatcher_eventHndlExpl"
    return (
        f"{shlex.quote(sys.executable)} {shlex.quote(str(launcher))}"
        f" --output_file={shlex.quote(str(log))} --datetime"
    )


def event_types(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["VMCATCHER_EVENT_TYPE"], r["VMCATCHER_EVENT_DC_IDENTIFIER"]) for r in records]


# --- the tests -------------------------------------------------------------------------------


def test_first_command_migrates_with_a_backup_of_the_original_file(site: LegacySite) -> None:
    before = list(sqlite3.connect(site.db_path).iterdump())
    result = site.run("vmcatcher_subscribe", "-l")
    assert result.returncode == 0, result
    backups = site.backups()
    assert len(backups) == 1, backups
    assert list(sqlite3.connect(backups[0]).iterdump()) == before
    tables = {row[0] for row in site.sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" in tables
    # Later runs find the schema current: no second backup.
    assert site.run("vmcatcher_subscribe", "-l").returncode == 0
    assert len(site.backups()) == 1


def test_listings_show_the_original_state(site: LegacySite) -> None:
    subs = site.run("vmcatcher_subscribe", "-l")
    assert subs.returncode == 0, subs
    assert subs.stdout == f"{LIST_ID}\tTrue\tNone\t{site.server.url('/image.list')}\n"

    endorsers = site.run("vmcatcher_endorser", "-l")
    assert endorsers.returncode == 0, endorsers
    assert endorsers.stdout == f"'{ENDORSER_ID}'\t'{site.endorser_dn}'\t'{site.endorser_ca}'\n"

    links = site.run("vmcatcher_endorser", "-K")
    assert links.returncode == 0, links
    assert links.stdout == f"'{ENDORSER_ID}'\t'{LIST_ID}'\t'True'\n"

    images = site.run("vmcatcher_image", "-l")
    assert images.returncode == 0, images
    assert images.stdout == f"{CACHED}\t3\t{LIST_ID}\n{OTHER}\t2\t{LIST_ID}\n"


def test_subscription_info_reads_the_original_rows(site: LegacySite) -> None:
    (imported, updated, created, expires) = site.sql(
        "SELECT i.imported, s.updated, i.created, i.expires"
        ' FROM subscription s JOIN "imageListInstance" i ON i.id = s.imagelist_latest'
    )[0]

    def shown(value: str) -> str:
        return datetime.strptime(value, DB_TIME).strftime("%Y-%m-%dT%H:%M:%SZ")

    info = site.run("vmcatcher_subscribe", "-i", "-u", LIST_ID)
    assert info.returncode == 0, info
    assert info.stdout.splitlines() == [
        f"imagelist.dc:identifier={LIST_ID}",
        f"subscription.dc:identifier={LIST_ID}",
        "subscription.dc:description=Images endorsed for the example-grid.org test sites.",
        "subscription.sl:authorised=True",
        f"subscription.hv:uri={site.server.url('/image.list')}",
        "subscription.hv:uri.trustAnchor=None",
        f"subscription.dc:date:updated={shown(updated)}",
        "subscription.updateMode=0",
        "imagelist.expired=False",
        f"imagelist.dc:date:imported={shown(imported)}",
        f"imagelist.dc:date:created={shown(created)}",
        f"imagelist.dc:date:expires={shown(expires)}",
    ]
    # The stored list is the real signed message: SMIME prints it byte for byte.
    raw = site.run("vmcatcher_subscribe", "-i", "-u", LIST_ID, "-f", "SMIME")
    assert raw.returncode == 0, raw
    assert raw.stdout.encode() == site.list_data.replace(b"\r\n", b"\n")


def test_cache_adopts_the_original_cache_without_downloading(any_site: LegacySite) -> None:
    site = any_site
    log = site.root / "events.log"
    result = site.run("vmcatcher_cache", "-x", example_handler(log))
    assert result.returncode == 0, result
    assert site.server.requests == [], [r.path for r in site.server.requests]
    assert event_types(log) == [("ProcessPrefix", ""), ("ProcessPostfix", "")]
    assert (site.cache_dir / CACHED).read_bytes() == site.images[CACHED]
    assert sorted(p.name for p in site.expired_dir.iterdir()) == ["cache.index"]
    assert site.index(site.expired_dir) == {}
    assert site.index(site.partial_dir) == {}
    index = site.index(site.cache_dir)
    assert list(index) == [CACHED]
    entry = index[CACHED]
    for key in ("message", "msgHash", "DownLoadTrys", "hv:image.hv:format", "filename"):
        assert key in entry, key
    assert entry["filename"] == CACHED
    # The state is unchanged, and a second run is just as quiet.
    assert site.run("vmcatcher_image", "-l").stdout.startswith(f"{CACHED}\t3\t")
    again = site.run("vmcatcher_cache", "-x", example_handler(log))
    assert again.returncode == 0, again
    assert site.server.requests == []
    assert [t for t, _ in event_types(log)] == ["ProcessPrefix", "ProcessPostfix"] * 2


def test_the_original_cron_job_runs_unchanged(any_site: LegacySite) -> None:
    """``(vmcatcher_subscribe -U; vmcatcher_cache)`` with VMCATCHER_CACHE_EVENT, as in cron."""
    site = any_site
    log = site.root / "foo"
    bin_dir = Path(sys.executable).parent
    cron = f"({bin_dir}/vmcatcher_subscribe -U; {bin_dir}/vmcatcher_cache)"
    env = clean_env({**site.env, "VMCATCHER_CACHE_EVENT": example_handler(log)})
    done = subprocess.run(
        ["/bin/sh", "-c", cron], cwd=site.root, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    # The schema upgrade is announced once at WARNING, so cron mail shows it (issue 11);
    # nothing else at WARNING or above for a healthy site.
    [line] = done.stderr.splitlines()
    assert line.startswith("WARNING:vmcatcher.db:Upgrading database '"), done.stderr
    assert "backup written to" in line
    # -U fetched the list once and found the very bytes the original had imported.
    assert [r.path for r in site.server.requests] == ["/image.list"]
    assert site.sql('SELECT count(*) FROM "imageListInstance"') == [(1,)]
    assert event_types(log) == [("ProcessPrefix", ""), ("ProcessPostfix", "")]
    assert (site.cache_dir / CACHED).read_bytes() == site.images[CACHED]
    # Both runs are recorded for monitoring (docs/monitoring.md), and the probe agrees.
    runs = site.sql("SELECT command, exit_code FROM vmcatcher_run ORDER BY id")
    assert runs == [("update", 0), ("cache", 0)]
    probe = subprocess.run(
        [str(bin_dir / "vmcatcher_check"), "--free-warning", "0", "--free-critical", "0"],
        cwd=site.root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.stdout.startswith("VMCATCHER "), probe
    assert "no vmcatcher" not in probe.stdout and "exited" not in probe.stdout
    # Quiet on success from then on.
    again = subprocess.run(
        ["/bin/sh", "-c", cron], cwd=site.root, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stderr == "", again.stderr
