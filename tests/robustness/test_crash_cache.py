"""``vmcatcher_cache`` killed with SIGKILL at random points loses nothing.

Each trial publishes a new list version (some images change, some go, some
arrive; every few trials most of the cache is churned so that many images
expire at once), imports it normally, starts ``vmcatcher_cache`` while the
server drips the images slowly, and SIGKILLs it:

* after a random delay in ``[0, typical runtime]``, or
* right after (0-5 ms) the n-th event of a random type, as seen in the event
  handler's log: ``ExpirePrefix``/``ExpirePostfix`` land inside the expiry,
  ``AvailablePrefix`` lands between the verified download and its rename into
  ``cache/`` and the index write, ``AvailablePostfix`` just after.

After the kill the database and the three directories must be consistent
(cache/ holds only verified images, every index parses); then one normal run
must finish the job, with no verified image downloaded twice in full: a
half-downloaded image is resumed with a ``Range`` request, a complete one is
not requested again.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.robustness.consistency import image_files, read_index, sha512_of
from tests.robustness.runner import Child
from tests.robustness.sitekit import Site, image_path, mutate, seeded, uuids

pytestmark = pytest.mark.robustness

TRIALS = 50
SIZES = (4 * 1024, 24 * 1024)
EVENT_TRIGGERS = ("ExpirePrefix", "ExpirePostfix", "AvailablePrefix", "AvailablePostfix")


def _events(site: Site) -> list[str]:
    if not site.events_log.exists():
        return []
    return [line.split(" ")[0] for line in site.events_log.read_text().splitlines()]


def _kill_on_event(
    site: Site, child: Child, event: str, nth: int, jitter: float, limit: float
) -> bool:
    """Kill ``jitter`` s after the ``nth`` ``event`` was logged; False if the run ended first."""
    deadline = time.monotonic() + limit
    before = len(_events(site))
    while time.monotonic() < deadline:
        if child.process.exitcode is not None:
            return False
        if _events(site)[before:].count(event) >= nth:
            time.sleep(jitter)
            return child.kill_after(0)
        time.sleep(0.001)
    return child.kill_after(0)


def _state_after_kill(site: Site) -> tuple[dict[str, int], dict[str, tuple[int, str]]]:
    partial = {name: path.stat().st_size for name, path in image_files(site.partial_dir).items()}
    cached = {name: sha512_of(path) for name, path in image_files(site.cache_dir).items()}
    return partial, cached


def _states(site: Site, partial: dict[str, int], cached: dict[str, tuple[int, str]]) -> set[str]:
    """What a kill left behind, for the statistics printed at the end."""
    states = set()
    index = read_index(site.cache_dir)
    for uuid, kept in partial.items():
        data = site.images.get(uuid, b"")
        states.add("complete in partial/" if kept == len(data) else "half-downloaded")
    if set(cached) - set(index):
        states.add("in cache/ but not in its index")
    if any(uuid not in cached for uuid in index):
        states.add("indexed in cache/ but moved to expired/")
    return states


def _check_no_second_full_download(
    site: Site, mark: int, partial: dict[str, int], cached: dict[str, tuple[int, str]]
) -> list[str]:
    """The repair run resumed or reused whatever the killed run had downloaded."""
    problems = []
    requests = site.image_requests(mark)
    for uuid, data in site.images.items():
        got = requests.get(image_path(uuid, data), [])
        expected = sha512_of_bytes(data)
        kept = partial.get(uuid, 0)
        if cached.get(uuid) == expected:
            if got:
                problems.append(f"{uuid}: was in cache/ after the kill, requested again {got}")
        elif kept == len(data):
            if got:
                problems.append(f"{uuid}: complete in partial/, requested again {got}")
        elif kept > 0 and (not got or got[0].range != f"bytes={kept}-"):
            problems.append(f"{uuid}: {kept} bytes kept but no Range resume: {got}")
        if sum(1 for request in got if request.range is None) > 1:
            problems.append(f"{uuid}: downloaded from zero more than once: {got}")
    return problems


def sha512_of_bytes(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha512(data).hexdigest()


def test_sigkill_cache_at_random_points_loses_nothing(ram_site: Site) -> None:
    site = ram_site
    seed, rng = seeded("cache crash trials")
    site.drip = (0.003, 2048)
    site.publish({uuid: rng.randbytes(rng.randint(*SIZES)) for uuid in uuids(6, rng)})
    site.subscribe()
    site.run("vmcatcher_image", "-l")  # starts the forkserver: not part of the timing
    first = site.run("vmcatcher_cache", *site.cache_args())
    site.check(first)
    site.assert_consistent(strict=True)
    typical = first.duration
    kills = {"time": 0, "event": 0, "finished first": 0}
    seen: dict[str, int] = {}
    for trial in range(TRIALS):
        where = f"seed {seed}, trial {trial}"
        churn = trial % 5 == 4
        images = mutate(site.images, rng, SIZES, change=2, remove=5 if churn else 1,
                        add=5 if churn else 2)  # fmt: skip
        site.publish(images)
        site.check(site.run("vmcatcher_subscribe", "-U"))
        child = site.start("vmcatcher_cache", *site.cache_args())
        if rng.random() < 0.5:
            trigger = f"after {typical:.2f}s x random"
            killed = child.kill_after(rng.uniform(0, typical * 1.1))
            kills["time" if killed else "finished first"] += 1
        else:
            event, nth = rng.choice(EVENT_TRIGGERS), rng.randint(1, 3)
            trigger = f"{event} #{nth}"
            killed = _kill_on_event(site, child, event, nth, rng.uniform(0, 0.005), typical * 3)
            kills["event" if killed else "finished first"] += 1
        outcome = child.wait()
        if not killed:
            assert outcome.returncode == 0, f"{where}: {outcome}"
        try:
            site.assert_consistent(strict=False)
        except AssertionError as error:
            raise AssertionError(f"{where}, killed at {trigger}: {error}") from None
        partial, cached = _state_after_kill(site)
        for state in _states(site, partial, cached):
            seen[state] = seen.get(state, 0) + 1
        mark = len(site.server.requests)
        repair = site.run("vmcatcher_cache", *site.cache_args())
        assert repair.returncode == 0, f"{where}, repair after kill at {trigger}: {repair}"
        try:
            site.assert_consistent(strict=True)
        except AssertionError as error:
            raise AssertionError(f"{where}, after repair of kill at {trigger}: {error}") from None
        problems = _check_no_second_full_download(site, mark, partial, cached)
        assert not problems, f"{where}, kill at {trigger}:\n" + "\n".join(problems)
        for directory in (site.cache_dir, site.partial_dir, site.expired_dir):
            read_index(directory)
    print(f"cache crash trials: {kills}; states left by the kills: {seen}")
    assert kills["time"] + kills["event"] >= TRIALS // 2, kills
    assert seen.get("half-downloaded", 0) >= 3, seen
