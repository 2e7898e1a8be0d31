"""Hostile or unlucky conditions: hung handlers, hostile identifiers, concurrent runs, bad dirs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path

from tests.cache_e2e.conftest import SUBSCRIPTION, CacheSite

IMAGE = "6f1d2c3b-4a59-4e68-9d7c-2b1a0f9e8d01"
IMAGE_PATH = f"/{IMAGE}.img"

HUNG_HANDLER = """\
echo "$VMCATCHER_EVENT_TYPE" >> types.log
if [ "$VMCATCHER_EVENT_TYPE" = ProcessPrefix ]; then
    sh -c 'sleep 61' &
    echo $! > child.pid
    echo $$ > handler.pid
    exec sleep 60
fi
"""


def is_gone(pid: int) -> bool:
    """True if ``pid`` has exited (a zombie waiting for a reaper counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.05)
    return is_gone(pid)


def test_hung_handler_and_its_child_are_killed_after_the_timeout(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.ready()
    (site.root / "handler.sh").write_text(HUNG_HANDLER)

    started = time.monotonic()
    result = site.cache("-x", "sh handler.sh", "--event-timeout", "1", events=False)
    elapsed = time.monotonic() - started

    assert elapsed < 20, result
    assert "Event 'ProcessPrefix' timed out after 1 seconds" in result.stderr
    handler_pid = int((site.root / "handler.pid").read_text())
    child_pid = int((site.root / "child.pid").read_text())
    try:
        assert wait_gone(handler_pid), "the handler outlived its timeout"
        assert wait_gone(child_pid), "the handler's child outlived the timeout"
    finally:  # never leave them behind, even when the product failed to end them
        for pid in (handler_pid, child_pid):
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)
    # The run went on: the image is cached and every later event ran.
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert (site.root / "types.log").read_text().split() == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip


def test_failing_handler_changes_nothing(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.ready()
    result = site.cache("-x", "echo oops >&2; exit 3", events=False)
    assert "Event 'AvailablePostfix' executed 'echo oops >&2; exit 3' with exit code '3'." in (
        result.stderr
    )
    assert (site.cache_dir / IMAGE).exists()


def test_traversal_identifier_never_becomes_a_path(site: CacheSite) -> None:
    hostile = "../x"
    outside = site.root / "x"
    outside.write_bytes(b"precious")

    # 1. A list naming an image '../x' decodes only without it.
    site.add_image(hostile, data=b"evil", uri=site.server.url("/evil"))
    site.add_image(IMAGE)
    site.ready(IMAGE)
    assert site.sql('SELECT identifier FROM "ImageDefinition"') == [(IMAGE,)]
    dropped = site.command("vmcatcher_subscribe", "-U", "-v")
    assert "dropping image '../x'" in dropped.stderr

    # 2. '../x' registered through the command line.
    site.command("vmcatcher_subscribe", "--image-accept", hostile, "-u", SUBSCRIPTION, expect=None)
    site.command("vmcatcher_image", "-a", "-u", hostile, expect=None)
    site.update()
    site.cache()
    assert site.files(site.cache_dir) == {IMAGE}

    # 3. Database rows making '../x' a subscribed, available image.
    site.execute('DELETE FROM "ImageDefinition" WHERE identifier = ?', (hostile,))
    site.execute(
        'UPDATE "ImageDefinition" SET identifier = ? WHERE identifier = ?', (hostile, IMAGE)
    )
    result = site.cache("-s", "-D")
    assert "'../x' is not a safe file name" in result.stderr
    assert outside.read_bytes() == b"precious"
    assert not (site.cache_dir / "x").exists()
    assert site.files(site.cache_dir) == set()
    assert hostile not in site.index(site.cache_dir)
    assert hostile not in site.index(site.partial_dir)
    assert [n for n in site.files(site.expired_dir) if not n.startswith(IMAGE)] == []

    # 4. Hand-made index entries naming '../x' are never used as paths either, and
    #    never reach a handler as a file name (handlers build paths from it).
    site.clear_events()
    entry = {"dc:identifier": hostile, "filename": hostile, "sha512": "0" * 128, "size": 8}
    (site.cache_dir / "cache.index").write_text(json.dumps({hostile: entry, IMAGE: dict(
        entry, **{"dc:identifier": IMAGE})}))  # fmt: skip
    (site.partial_dir / "cache.index").write_text(json.dumps({hostile: entry}))
    before = sorted(p for p in site.root.rglob("*") if p.name != "events.jsonl")
    hand_made = site.cache("-s", "-D")
    assert "is not a safe file name" in hand_made.stderr
    assert outside.read_bytes() == b"precious"
    assert not (site.cache_dir / "x").exists()
    after = sorted(p for p in site.root.rglob("*") if p.name != "events.jsonl")
    assert [p for p in after if p not in before and "cache.index" not in p.name] == []
    assert site.event_types() == ["ProcessPrefix", "ProcessPostfix"]
    assert site.index(site.cache_dir) == {}
    assert site.index(site.partial_dir) == {}
    assert site.cache().stderr.count("ERROR") == 1  # only the DB row is left to complain


def test_identifier_naming_a_cache_directory_is_refused(site: CacheSite) -> None:
    """'partial' is a safe name, but in the default layout it is a directory of ours."""
    site.add_image("partial", 100)
    site.add_image(IMAGE)
    site.ready()
    result = site.cache()
    assert "'partial'" in result.stderr
    assert "Traceback" not in result.stderr and "Unexpected" not in result.stderr
    assert site.partial_dir.is_dir()
    assert site.files(site.cache_dir) == {IMAGE}
    assert site.event_types() == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip


def test_failed_move_into_the_cache_does_not_stop_the_run(site: CacheSite) -> None:
    other = IMAGE[:-2] + "02"
    site.add_image(IMAGE)
    site.add_image(other)
    site.ready()
    (site.cache_dir / IMAGE).mkdir()  # something in the way of the move

    result = site.cache("--parallel", "1")

    assert f"Failed to Move file '{IMAGE}'" in result.stderr
    assert (site.cache_dir / other).read_bytes() == site.data[other]
    assert list(site.index(site.cache_dir)) == [other]
    types = site.event_types()
    assert types[0] == "ProcessPrefix" and types[-1] == "ProcessPostfix"
    assert types.count("AvailablePostfix") == 1


def test_second_concurrent_run_exits_with_a_clear_message(site: CacheSite) -> None:
    site.add_image(IMAGE, 20_000)
    site.ready()
    site.server.stall(IMAGE_PATH, site.data[IMAGE], 4, times=1)

    first, second = site.start_cache(), site.start_cache()
    outcomes = sorted((proc.wait(timeout=60), proc.communicate()[1]) for proc in (first, second))

    (ok_rc, _), (busy_rc, busy_err) = outcomes
    assert (ok_rc, busy_rc) == (0, 1), outcomes
    assert f"Another vmcatcher_cache is running on '{site.cache_dir}'" in busy_err
    assert site.event_types() == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    assert list(site.index(site.cache_dir)) == [IMAGE]
    assert len(site.server.requests_for(IMAGE_PATH)) == 1


def test_concurrent_runs_with_wait_serialise(site: CacheSite) -> None:
    site.add_image(IMAGE, 20_000)
    site.ready()
    site.server.stall(IMAGE_PATH, site.data[IMAGE], 2, times=1)

    procs = [site.start_cache("--wait"), site.start_cache("--wait")]
    results = [(proc.wait(timeout=60), proc.communicate()[1]) for proc in procs]

    assert [rc for rc, _ in results] == [0, 0], results
    events = site.events()
    sessions = [e["VMCATCHER_EVENT_UUID_SESSION"] for e in events]
    # One whole run, then the other: the session changes exactly once.
    assert len(set(sessions)) == 2
    assert sum(a != b for a, b in itertools.pairwise(sessions)) == 1
    assert [e["VMCATCHER_EVENT_TYPE"] for e in events] == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
        "ProcessPrefix", "ProcessPostfix",
    ]  # fmt: skip
    assert len(site.server.requests_for(IMAGE_PATH)) == 1
    index = json.loads((site.cache_dir / "cache.index").read_text())
    assert list(index) == [IMAGE]
    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]


def test_missing_directories_say_how_to_create_them(site: CacheSite) -> None:
    (site.expired_dir).rmdir()
    (site.partial_dir).rmdir()
    result = site.cache(expect=1)
    assert f"mkdir -p {site.partial_dir}" in result.stderr
    assert f"mkdir -p {site.expired_dir}" in result.stderr
    assert "Traceback" not in result.stderr

    missing = site.cache("-C", "nowhere", expect=1)
    assert f"mkdir -p {site.root / 'nowhere'}" in missing.stderr
    assert not (site.root / "nowhere").exists()
    assert site.event_types() == []


def test_identical_or_nested_directories_are_refused(site: CacheSite) -> None:
    keep = site.partial_dir / "0a0a0a0a-keep-me"
    keep.write_bytes(b"data")
    same = site.cache("-p", "cache/partial", "-e", "cache/partial", expect=1)
    assert "same directory" in same.stderr
    (site.expired_dir / "inner").mkdir()
    nested = site.cache("-p", "cache/expired/inner", expect=1)
    assert "lies inside" in nested.stderr
    env_same = site.cache(
        expect=1,
        env={"VMCATCHER_CACHE_DIR_CACHE": "cache", "VMCATCHER_CACHE_DIR_DOWNLOAD": "cache"},
    )
    assert "same directory" in env_same.stderr
    assert keep.read_bytes() == b"data"  # no sweep ran
    assert site.event_types() == []
    assert os.listdir(site.expired_dir) == ["inner"]
