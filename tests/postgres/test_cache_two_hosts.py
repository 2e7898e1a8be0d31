"""Two hosts, one PostgreSQL database, one shared cache: ``vmcatcher_cache`` runs never overlap.

Each "host" is its own working directory with its own path to the cache
(``host-a/cache`` and ``host-b/cache``, as if the shared cache were mounted at
different places), so the per-directory file lock cannot see the other run:
only the database's advisory lock keeps them apart. An event handler that
sleeps in ``ProcessPrefix`` keeps each run busy long enough to overlap, and
logs every event with its host, so any interleaving shows in the log.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.commands import clean_env, command_path
from tests.support.databases import requires_postgresql
from vmcatcher.db import prepare_database

pytestmark = requires_postgresql

HANDLER = """
import os, sys, time
event, host = os.environ["VMCATCHER_EVENT_TYPE"], os.environ["TEST_HOST"]
with open(sys.argv[1], "a") as log:
    log.write(f"{host} {event} start {time.time():.3f}\\n")
if event == "ProcessPrefix":
    time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "a") as log:
    log.write(f"{host} {event} end {time.time():.3f}\\n")
"""


def start_run(host: Path, url: str, cache: str, handler: str, *extra: str) -> subprocess.Popen:
    (host / cache / "partial").mkdir(parents=True, exist_ok=True)
    (host / cache / "expired").mkdir(exist_ok=True)
    env = clean_env({"VMCATCHER_RDBMS": url, "TEST_HOST": host.name})
    return subprocess.Popen(
        [command_path("vmcatcher_cache"), "-C", cache, "-x", handler, *extra],
        cwd=host,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_pair(tmp_path: Path, url: str, caches: tuple[str, str], *extra: str, sleep: float = 1.5):
    """Start the two hosts' runs at the same moment; return [(rc, stderr)] and the event log."""
    log = tmp_path / "events.log"
    log.touch()
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    handler = f"{sys.executable} {script} {log} {sleep}"
    prepare_database(url).close()  # schema first: the race under test is the cache lock
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    for host in hosts:
        host.mkdir()
    procs = [
        start_run(host, url, cache, handler, *extra)
        for host, cache in zip(hosts, caches, strict=True)
    ]
    results = []
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, err))
    entries = [line.split() for line in log.read_text().splitlines()]
    return results, entries


def hosts_in_order(entries: list[list[str]]) -> list[str]:
    return [entry[0] for entry in sorted(entries, key=lambda e: float(e[3]))]


def test_second_host_exits_with_the_lock_message(tmp_path: Path, pg_url: str) -> None:
    results, entries = run_pair(tmp_path, pg_url, ("cache", "cache"))
    codes = sorted(rc for rc, _err in results)
    assert codes == [0, 1], results
    (winner,) = [i for i, (rc, _err) in enumerate(results) if rc == 0]
    loser_err = results[1 - winner][1]
    assert "Another vmcatcher_cache is running on cache" in loser_err, loser_err
    assert "@127.0.0.1:" in loser_err  # names the database host
    assert "vmcatcher_cache pid" in loser_err  # and the run holding the lock
    assert "Traceback" not in loser_err
    winner_host = ["host-a", "host-b"][winner]
    assert {entry[0] for entry in entries} == {winner_host}
    assert [(e[1], e[2]) for e in entries] == [
        ("ProcessPrefix", "start"),
        ("ProcessPrefix", "end"),
        ("ProcessPostfix", "start"),
        ("ProcessPostfix", "end"),
    ]


def test_waiting_host_runs_after_the_first_without_interleaving(
    tmp_path: Path, pg_url: str
) -> None:
    began = time.monotonic()
    results, entries = run_pair(tmp_path, pg_url, ("cache", "cache"), "--wait", "60")
    assert [rc for rc, _err in results] == [0, 0], results
    order = hosts_in_order(entries)
    assert len(order) == 8
    assert order[:4] == [order[0]] * 4 and order[4:] == [order[4]] * 4
    assert order[0] != order[4]
    assert time.monotonic() - began >= 3.0  # two 1.5 s runs, one after the other


def test_caches_with_other_names_do_run_at_the_same_time(tmp_path: Path, pg_url: str) -> None:
    """Control: with different lock keys the runs do overlap (so the tests above could see it)."""
    results, entries = run_pair(tmp_path, pg_url, ("cache", "images"), sleep=2.5)
    assert [rc for rc, _err in results] == [0, 0], results
    order = hosts_in_order(entries)
    assert order[:2] in (["host-a", "host-b"], ["host-b", "host-a"]), order
