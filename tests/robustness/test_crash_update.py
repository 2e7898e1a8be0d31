"""``vmcatcher_subscribe -U`` killed with SIGKILL at random points loses nothing.

Each trial publishes a new version of a list with a few hundred images (a
third of them changed, some removed, some new), starts ``-U`` and SIGKILLs it
either after a random delay in ``[0, typical runtime]`` (while the list
downloads, while its signature is checked, while rows are written, around the
commit) or right after the n-th ``SubscriptionImageNew`` event, which fires
for each new image in the middle of the import transaction. The import is one
transaction, so after the kill
the version is either stored completely (and the subscription points at it) or
not at all, and the database is consistent. The next normal ``-U`` then
imports it exactly once.
"""

from __future__ import annotations

import shlex
import sqlite3
import time

import pytest

from tests.robustness.consistency import assert_db_consistent
from tests.robustness.runner import Child
from tests.robustness.sitekit import SUBSCRIPTION, Site, mutate, seeded, uuids

pytestmark = pytest.mark.robustness

TRIALS = 50
IMAGES = 300
NEW_PER_VERSION = 10
SIZE = (64, 256)  # the images are never downloaded here: only the list matters


def _stored(site: Site, version: int) -> tuple[int, bool, dict[str, str]]:
    """(instances of ``version``, subscription points at it, {uuid: sha512} of its images)."""
    instances = (
        'SELECT l.id FROM "imageListInstance" l JOIN "subscriptionAuth" a ON a.id = l.sub_auth'
        " JOIN subscription s ON s.id = a.subscription WHERE s.identifier = ? AND l.version = ?"
    )
    members = (
        'SELECT d.identifier, i.sha512 FROM "ImageInstance" i JOIN "ImageDefinition" d'
        ' ON d.id = i."fkIdentifier" WHERE i.fkimagelistinstance = ?'
    )
    with sqlite3.connect(site.db_path) as db:
        ids = [row[0] for row in db.execute(instances, (SUBSCRIPTION, str(version)))]
        latest = db.execute(
            "SELECT imagelist_latest FROM subscription WHERE identifier = ?", (SUBSCRIPTION,)
        ).fetchone()[0]
        images: dict[str, str] = dict(db.execute(members, (ids[0],))) if len(ids) == 1 else {}
    return len(ids), bool(ids) and latest == ids[-1], images


def _kill_at_new_image(site: Site, child: Child, nth: int, jitter: float) -> bool:
    """SIGKILL ``jitter`` s after the handler logged the ``nth`` SubscriptionImageNew event."""
    log = site.events_log
    start = len(log.read_text().splitlines()) if log.exists() else 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.process.exitcode is None:
        if log.exists() and len(log.read_text().splitlines()) - start >= nth:
            time.sleep(jitter)
            return child.kill_after(0)
        time.sleep(0.001)
    return child.kill_after(0)


def _published(site: Site) -> dict[str, str]:
    import hashlib

    return {uuid: hashlib.sha512(data).hexdigest() for uuid, data in site.images.items()}


def test_sigkill_update_at_random_points_loses_nothing(ram_site: Site) -> None:
    site = ram_site
    seed, rng = seeded("update crash trials")
    site.publish({uuid: rng.randbytes(rng.randint(*SIZE)) for uuid in uuids(IMAGES, rng)})
    site.subscribe()
    site.run("vmcatcher_image", "-l")  # starts the forkserver: not part of the timing
    site.publish(mutate(site.images, rng, SIZE, change=IMAGES // 3, remove=10, add=NEW_PER_VERSION))
    first = site.run("vmcatcher_subscribe", "-U", "-x", "true")
    site.check(first)
    typical = first.duration
    outcomes = {"killed, not stored": 0, "killed, stored": 0, "finished first": 0}
    inside = 0
    handler = f'echo "$VMCATCHER_EVENT_DC_IDENTIFIER" >> {shlex.quote(str(site.events_log))}'
    for trial in range(TRIALS):
        where = f"seed {seed}, trial {trial}"
        site.publish(mutate(site.images, rng, SIZE, change=IMAGES // 3, remove=10,
                            add=NEW_PER_VERSION))  # fmt: skip
        child = site.start("vmcatcher_subscribe", "-U", "-x", handler)
        if rng.random() < 0.5:
            delay = rng.uniform(0, typical * 1.5)  # some land after the commit
            trigger = f"after {delay:.3f}s"
            killed = child.kill_after(delay)
        else:  # inside the import transaction: while new image rows are being added
            nth = rng.randint(1, NEW_PER_VERSION)
            trigger = f"at new image #{nth}"
            killed = _kill_at_new_image(site, child, nth, rng.uniform(0, 0.005))
            inside += killed
        outcome = child.wait()
        if not killed:
            assert outcome.returncode == 0, f"{where}: {outcome}"
        try:
            assert_db_consistent(site.db_path)
        except AssertionError as error:
            raise AssertionError(f"{where}, killed {trigger}: {error}") from None
        count, current, images = _stored(site, site.version)
        assert count in (0, 1), f"{where}: version stored {count} times"
        if count:
            assert current, f"{where}: version stored but the subscription does not point at it"
            assert images == _published(site), f"{where}: version stored incompletely"
        outcomes["finished first" if not killed else
                 "killed, stored" if count else "killed, not stored"] += 1  # fmt: skip

        repair = site.run("vmcatcher_subscribe", "-U")
        assert repair.returncode == 0, f"{where}, repair after a kill {trigger}: {repair}"
        assert_db_consistent(site.db_path)
        count, current, images = _stored(site, site.version)
        assert (count, current) == (1, True), f"{where}: after repair {count} instances"
        assert images == _published(site), f"{where}: after repair the images differ"
        if not killed:
            typical = 0.8 * typical + 0.2 * outcome.duration
    print(f"update crash trials: {outcomes}, {inside} of them inside the import transaction")
    assert outcomes["killed, not stored"] >= TRIALS // 4, outcomes
    assert inside >= TRIALS // 5, inside
