"""Numeric settings from the command line or the environment are checked before any work."""

from __future__ import annotations

import pytest

from tests.support.commands import run


@pytest.mark.parametrize(
    ("command", "args", "env", "message"),
    [
        ("vmcatcher_cache", [], {"VMCATCHER_CACHE_PARALLEL": "abc"}, "Invalid parallel downloads"),
        ("vmcatcher_cache", [], {"VMCATCHER_EVENT_TIMEOUT": "-1"}, "Invalid event timeout '-1'"),
        ("vmcatcher_cache", ["--timeout", "0"], {}, "Invalid download timeout '0'"),
        # One rule for every numeric option (issue 11): exit 1, the same message shape.
        (
            "vmcatcher_cache",
            ["--event-timeout", "abc"],
            {},
            "Invalid event timeout 'abc': a number of seconds above 0",
        ),
        (
            "vmcatcher_cache",
            ["--timeout", "abc"],
            {},
            "Invalid download timeout 'abc': a number of seconds above 0",
        ),
        (
            "vmcatcher_cache",
            ["--parallel", "0"],
            {},
            "Invalid parallel downloads '0': a whole number above 0",
        ),
        (
            "vmcatcher_cache",
            ["--expired-max-count", "-1"],
            {},
            "Invalid expired max count '-1': a whole number 0 or more",
        ),
        (
            "vmcatcher_cache",
            ["--expired-max-age", "nan"],
            {},
            "Invalid expired max age 'nan': a number of days 0 or more",
        ),
        (
            "vmcatcher_cache",
            ["--wait", "soon"],
            {},
            "Invalid wait 'soon': a number of seconds 0 or more",
        ),
        ("vmcatcher_cache", [], {"VMCATCHER_DOWNLOAD_TIMEOUT": "inf"}, "Invalid download timeout"),
        (
            "vmcatcher_subscribe",
            ["-U"],
            {"VMCATCHER_FETCH_TIMEOUT": "soon"},
            "Invalid fetch timeout",
        ),
    ],
)
def test_bad_numbers_are_one_line_errors(tmp_path, command, args, env, message) -> None:
    for sub in ("cache/partial", "cache/expired"):
        (tmp_path / sub).mkdir(parents=True)
    result = run(command, *args, cwd=tmp_path, env=env)
    assert result.returncode == 1, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Unexpected" not in result.stderr
    assert not (tmp_path / "vmcatcher.db").exists()
