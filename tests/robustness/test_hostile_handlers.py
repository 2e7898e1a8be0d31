"""Hostile event handlers (``vmcatcher_cache -x``).

The handler is the operator's command, but it runs third-party code (cloud
clients, scripts) that can hang, leave children behind, flood its output, fail
or remove the very file it was told about. None of that may stop the run,
change its exit code, exhaust vmcatcher's memory, or leave the cache in a
state the next run cannot repair. Every handler below first runs the JSON
event logger, so the tests see which events fired, then misbehaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.hostile_support import Site, assert_clean, open_site
from tests.support.commands import clean_env, command_path

pytestmark = pytest.mark.robustness

EVENT_TIMEOUT = "1"
FULL_RUN = ["ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as opened:
        yield opened


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[Path]:
    """A file where handlers write the pids they start; those processes are killed after
    the test (by pid, one at a time) in case the product left one running."""
    pids = tmp_path / "pids"
    yield pids
    if pids.exists():
        for pid in {int(word) for word in pids.read_text().split()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _ready(site: Site) -> None:
    """One subscribed image waiting to be downloaded."""
    server = site.server()
    images = [site.image(server, "handled-image", 64 * 1024)]
    site.subscribe(site.publish_file("image.list", images), "--imagelist-newimage-subscribe")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Living (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ERROR:")]


def test_hanging_handler_is_killed_with_its_process_group(site: Site, leftovers: Path) -> None:
    _ready(site)
    handler = f"{site.event_logger}; echo $$ >> {leftovers}; sleep 60"
    result = site.cache("--event-timeout", EVENT_TIMEOUT, handler=handler, expect=0)
    assert site.last_duration < 30, "each event must end after the timeout"
    timeouts = [line for line in _errors(result.stderr) if "timed out after 1 seconds" in line]
    assert len(timeouts) == len(FULL_RUN), result
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    for pgid in {int(word) for word in leftovers.read_text().split()}:
        assert _group_members(pgid) == [], "processes of the handler's group survive"
    site.check_consistent()


def test_handler_leaving_children_that_hold_its_output(site: Site, leftovers: Path) -> None:
    """A child in the handler's group is killed; one that escaped with setsid is abandoned
    (its pipe is no longer read) so that it cannot hold the run."""
    _ready(site)
    handler = (
        f"{site.event_logger}; sleep 60 & echo $! >> {leftovers}; "
        f"setsid sleep 60 & echo $! >> {leftovers}; echo started"
    )
    result = site.cache("--event-timeout", "2", handler=handler, expect=0)
    assert_clean(result)
    assert site.last_duration < 40, "children holding the pipes must not hold the run"
    assert "left processes holding its output" in result.stderr
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    pids = [int(word) for word in leftovers.read_text().split()]
    in_group, escaped = pids[0::2], pids[1::2]
    assert not any(_alive(pid) for pid in in_group), "children in the handler's group survive"
    assert len(escaped) == len(FULL_RUN)
    site.check_consistent()


def test_handler_flooding_its_output(site: Site) -> None:
    """Gigabytes on stdout and stderr: read and dropped, vmcatcher's memory stays flat."""
    _ready(site)
    handler = f"{site.event_logger}; cat /dev/zero & cat /dev/zero >&2"
    measure = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(code, peak)\n"
    )
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            command_path("vmcatcher_cache"),
            "-x",
            handler,
            "--event-timeout",
            EVENT_TIMEOUT,
        ],
        cwd=site.root,
        env=clean_env(site.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    code, peak_kib = (int(word) for word in completed.stdout.split())
    assert code == 0, completed
    assert elapsed < 30
    assert peak_kib < 300 * 1024, f"vmcatcher grew to {peak_kib // 1024} MiB"
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    site.check_consistent()


def test_handler_exiting_non_zero(site: Site) -> None:
    _ready(site)
    handler = f"{site.event_logger}; echo 'it broke' >&2; exit 7"
    result = site.cache(handler=handler, expect=0)
    failures = [line for line in _errors(result.stderr) if "with exit code '7'" in line]
    assert len(failures) == len(FULL_RUN), result
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    site.check_consistent()


def test_handler_deleting_the_cached_file(site: Site) -> None:
    """The next run notices the file is gone and downloads it again, with events."""
    _ready(site)
    handler = (
        f'{site.event_logger}; if [ "$VMCATCHER_EVENT_TYPE" = AvailablePostfix ]; then '
        'rm -f "$VMCATCHER_CACHE_DIR_CACHE/$VMCATCHER_EVENT_FILENAME"; fi'
    )
    site.cache(handler=handler, expect=0)
    assert site.cached() == set(), "the handler did not delete the file"
    assert set(site.index()) == {"handled-image"}

    site.clear_events()
    result = site.cache(expect=0)
    assert "Image 'handled-image' is missing from the cache directory" in result.stderr
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    site.check_consistent()
    site.clear_events()
    site.cache(expect=0)
    assert site.event_types() == ["ProcessPrefix", "ProcessPostfix"], "downloaded twice"


def test_handler_deleting_the_download_before_it_is_installed(site: Site) -> None:
    """Removing the verified file from partial/ at AvailablePrefix: the move fails, is
    logged, nothing half-done is indexed, and the next run downloads it again."""
    _ready(site)
    handler = (
        f'{site.event_logger}; if [ "$VMCATCHER_EVENT_TYPE" = AvailablePrefix ]; then '
        'rm -f "$VMCATCHER_CACHE_DIR_DOWNLOAD/$VMCATCHER_EVENT_FILENAME"; fi'
    )
    result = site.cache(handler=handler, expect=0)
    assert_clean(result)
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "'handled-image'" in errors[0], result
    assert site.cached() == set()
    assert site.index() == {}
    site.check_consistent()

    site.clear_events()
    site.cache(expect=0)
    assert site.event_types() == FULL_RUN
    assert site.cached() == {"handled-image"}
    site.check_consistent()
