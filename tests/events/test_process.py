"""How handlers are run: logging, exit codes, the enforced timeout, output limits (spec §11.3)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmcatcher.events import OUTPUT_CAP, EventRunner
from vmcatcher.vocabulary import EventType

from .conftest import process_gone

REPO = Path(__file__).resolve().parents[2]


def messages(caplog, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "vmcatcher.events" and r.levelno == level
    ]


def test_success_logs_debug_lines(caplog, base_env):
    caplog.set_level(logging.DEBUG, logger="vmcatcher.events")
    runner = EventRunner("echo out; echo err >&2", base_env=base_env)
    result = runner.fire(EventType.PROCESS_PREFIX)
    assert (result.rc, result.stdout, result.stderr, result.timed_out) == (
        0,
        "out\n",
        "err\n",
        False,
    )
    assert messages(caplog, logging.DEBUG) == [
        "event 'ProcessPrefix' executed 'echo out; echo err >&2'",
        "stdout=out\n",
        "stderr=err\n",
    ]
    assert messages(caplog, logging.ERROR) == []


def test_failure_logs_exact_error_and_info_lines(caplog, base_env):
    caplog.set_level(logging.DEBUG, logger="vmcatcher.events")
    runner = EventRunner("echo partial; echo broken >&2; exit 3", base_env=base_env)
    result = runner.fire(EventType.EXPIRE_PREFIX, {"dc:identifier": "u"})
    assert result.rc == 3 and not result.timed_out
    assert messages(caplog, logging.ERROR) == [
        "Event 'ExpirePrefix' executed 'echo partial; echo broken >&2; exit 3' with exit code '3'."
        " stderr: broken"  # the first stderr line, at ERROR: cron mail shows why (issue 11)
    ]
    assert messages(caplog, logging.INFO) == ["stdout=partial\n", "stderr=broken\n"]


def test_handler_result_never_raises_even_for_missing_program(caplog, base_env):
    runner = EventRunner("/nonexistent/handler --flag", base_env=base_env)
    result = runner.fire(EventType.AVAILABLE_POSTFIX)
    assert result.rc == 127
    [line] = messages(caplog, logging.ERROR)
    assert line.startswith(
        "Event 'AvailablePostfix' executed '/nonexistent/handler --flag' with exit code '127'."
        " stderr: "
    )
    assert "/nonexistent/handler" in line.split(" stderr: ", 1)[1]  # sh's "not found" line


def test_hung_handler_and_its_child_are_killed_after_timeout(tmp_path, caplog, base_env):
    pidfile = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pidfile}; sleep 60"
    runner = EventRunner(command, base_env=base_env, timeout=1.0, kill_grace=0.5)
    start = time.monotonic()
    result = runner.fire(EventType.EXPIRE_PREFIX)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.rc == -9
    assert 0.9 <= elapsed < 4.0
    child = int(pidfile.read_text())
    assert process_gone(child), f"background child {child} survived the timeout"
    errors = messages(caplog, logging.ERROR)
    assert any("timed out after 1 seconds" in line for line in errors)
    assert f"Event 'ExpirePrefix' executed '{command}' with exit code '-9'." in errors
    # the run goes on: the next event works normally
    follow_up = EventRunner("echo next", base_env=base_env, timeout=1.0).fire(
        EventType.EXPIRE_POSTFIX
    )
    assert follow_up.rc == 0 and follow_up.stdout == "next\n"


def test_handler_ignoring_sigterm_gets_sigkill(tmp_path, base_env):
    pidfile = tmp_path / "child.pid"
    command = f"trap '' TERM; sh -c 'trap \"\" TERM; sleep 60' & echo $! > {pidfile}; sleep 60"
    runner = EventRunner(command, base_env=base_env, timeout=1.0, kill_grace=0.5)
    start = time.monotonic()
    result = runner.fire(EventType.PROCESS_PREFIX)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.rc == -9
    assert 1.4 <= elapsed < 4.0  # TERM at 1 s ignored, KILL after the 0.5 s grace
    assert process_gone(int(pidfile.read_text()))


def test_background_child_holding_stdout_does_not_hang(tmp_path, caplog, base_env):
    pidfile = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pidfile}; echo done"
    runner = EventRunner(command, base_env=base_env, timeout=10.0, kill_grace=0.5)
    start = time.monotonic()
    result = runner.fire(EventType.AVAILABLE_POSTFIX)
    elapsed = time.monotonic() - start
    assert result.rc == 0 and not result.timed_out
    assert result.stdout == "done\n"
    assert elapsed < 3.0
    assert process_gone(int(pidfile.read_text()))
    assert any("left processes holding its output" in r.getMessage() for r in caplog.records)


def test_detached_background_child_is_left_alone(tmp_path, base_env):
    pidfile = tmp_path / "child.pid"
    command = f"sleep 30 > /dev/null 2>&1 & echo $! > {pidfile}"
    result = EventRunner(command, base_env=base_env, kill_grace=0.5).fire(EventType.PROCESS_POSTFIX)
    child = int(pidfile.read_text())
    try:
        assert result.rc == 0
        assert not process_gone(child, within=0.0)  # it did not hold our pipes: not ours to kill
    finally:
        os.kill(child, 9)


def test_child_escaping_the_group_cannot_hang_us(tmp_path, base_env):
    pidfile = tmp_path / "escaped.pid"
    command = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & sleep 60"
    runner = EventRunner(command, base_env=base_env, timeout=1.0, kill_grace=0.3)
    start = time.monotonic()
    try:
        result = runner.fire(EventType.PROCESS_PREFIX)
        elapsed = time.monotonic() - start
        assert result.timed_out and result.rc == -9
        assert elapsed < 4.0
    finally:
        for _ in range(50):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), 9)


def test_flooding_output_is_capped_and_does_not_block(base_env):
    command = "head -c 50000000 /dev/zero | tr '\\0' x; head -c 50000000 /dev/zero >&2; exit 5"
    runner = EventRunner(command, base_env=base_env, timeout=30.0)
    start = time.monotonic()
    result = runner.fire(EventType.PROCESS_PREFIX)
    assert time.monotonic() - start < 15.0
    assert result.rc == 5 and not result.timed_out
    assert result.stdout.startswith("x" * OUTPUT_CAP)
    assert len(result.stdout) < OUTPUT_CAP + 200
    assert "50000000 bytes in total" in result.stdout
    assert "50000000 bytes in total" in result.stderr


def test_flooding_output_keeps_memory_bounded(tmp_path):
    """Measured in a fresh interpreter, so the peak RSS is this run's alone."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, os, resource, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from vmcatcher.events import EventRunner\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = EventRunner('head -c 50000000 /dev/urandom', base_env=dict(os.environ),"
        " timeout=30).fire('ProcessPrefix')\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'rc': r.rc, 'kib': after - before, 'len': len(r.stdout)}))\n"
    )
    out = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout)
    assert report["rc"] == 0
    assert report["kib"] < 16 * 1024, report  # far below the 50 MB that went through
    assert report["len"] < 2 * OUTPUT_CAP


def test_concurrent_fires_from_threads(base_env):
    from concurrent.futures import ThreadPoolExecutor

    runner = EventRunner('printf %s "$VMCATCHER_EVENT_DC_TITLE"', base_env=base_env)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda i: runner.fire(EventType.AVAILABLE_POSTFIX, {"dc:title": f"t{i}"}), range(12)
            )
        )
    assert [r.stdout for r in results] == [f"t{i}" for i in range(12)]


@pytest.mark.parametrize("status", [1, 2, 126, 255])
def test_exit_codes_are_reported(base_env, status):
    assert (
        EventRunner(f"exit {status}", base_env=base_env).fire(EventType.PROCESS_PREFIX).rc == status
    )
