"""vmcatcher_eventHndlExpl end to end: run the top-level script as a handler would be run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from vmcatcher.cli import event_handler_example as example
from vmcatcher.events import EventRunner
from vmcatcher.vocabulary import EventType

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "vmcatcher_eventHndlExpl"


def run_script(args, env, cwd):
    # -I -S: no site-packages at all, so the handler must work with the stdlib alone
    return subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def event_env(**extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "JST-9"}
    env.update(extra)
    return env


def test_script_is_executable_and_prints_version(tmp_path):
    assert os.access(SCRIPT, os.X_OK)
    out = subprocess.run(
        [str(SCRIPT), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert out.returncode == 0
    assert out.stdout.strip() == "vmcatcher_eventHndlExpl 0.0.2"


def test_default_generator_writes_every_key_and_utc_datetime(tmp_path):
    output = tmp_path / "events.log"
    env = event_env(
        VMCATCHER_EVENT_TYPE="AvailablePostfix",
        VMCATCHER_EVENT_DC_IDENTIFIER="f0e1d2c3-0000-4000-8000-000000000001",
        VMCATCHER_EVENT_AD_MPURI="https://marketplace.example.org/x",
        VMCATCHER_EVENT_UUID_SESSION="0d9e3c6a-0000-1000-8000-000000000000",
        VMCATCHER_EVENT_DC_TITLE="Grüße",
        VMCATCHER_CACHE_DIR_CACHE="/srv/cache",
        UNRELATED="not recorded",
    )
    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    out = run_script(["--output_file", str(output), "--datetime"], env, tmp_path)
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert out.returncode == 0, out.stderr
    text = output.read_text(encoding="ascii")
    assert text.endswith("\n") and text.count("\n") == 1
    record = json.loads(text)
    assert text == json.dumps(record, sort_keys=True) + "\n"  # compact, sorted, ASCII-escaped
    assert set(record) == set(example.INTERESTING_KEYS) | {"DATETIME"}
    assert record["VMCATCHER_EVENT_TYPE"] == "AvailablePostfix"
    assert record["VMCATCHER_EVENT_AD_MPURI"] == "https://marketplace.example.org/x"
    assert record["VMCATCHER_EVENT_UUID_SESSION"] == "0d9e3c6a-0000-1000-8000-000000000000"
    assert record["VMCATCHER_EVENT_DC_TITLE"] == "Grüße"
    assert "\\u00fc" in text
    assert record["VMCATCHER_EVENT_VO"] == ""
    assert record["VMCATCHER_RDBMS"] == ""
    assert "UNRELATED" not in record
    # TZ is UTC+9 here: a local-time stamp with a Z suffix would be 9 hours off.
    stamp = datetime.strptime(record["DATETIME"], "%Y-%m-%dT%H:%M:%SZ")
    assert before <= stamp <= after


def test_minium_generator_writes_only_present_keys(tmp_path):
    output = tmp_path / "events.log"
    env = event_env(VMCATCHER_EVENT_TYPE="ProcessPrefix", VMCATCHER_EVENT_UUID_SESSION="s")
    out = run_script(["--output_file", str(output), "--generator", "minium"], env, tmp_path)
    assert out.returncode == 0
    assert json.loads(output.read_text()) == {
        "VMCATCHER_EVENT_TYPE": "ProcessPrefix",
        "VMCATCHER_EVENT_UUID_SESSION": "s",
    }


def test_other_generator_values_fall_back_to_default(tmp_path):
    output = tmp_path / "events.log"
    env = event_env(VMCATCHER_EVENT_TYPE="ProcessPrefix")
    out = run_script(["--output_file", str(output), "--generator", "minimum"], env, tmp_path)
    assert out.returncode == 0
    assert set(json.loads(output.read_text())) == set(example.INTERESTING_KEYS)


def test_appends_one_line_per_run(tmp_path):
    output = tmp_path / "events.log"
    for kind in ("ExpirePrefix", "ExpirePostfix"):
        out = run_script(
            ["--output_file", str(output)], event_env(VMCATCHER_EVENT_TYPE=kind), tmp_path
        )
        assert out.returncode == 0
    lines = output.read_text().splitlines()
    assert [json.loads(line)["VMCATCHER_EVENT_TYPE"] for line in lines] == [
        "ExpirePrefix",
        "ExpirePostfix",
    ]


def test_without_output_file_it_only_points_to_help(tmp_path):
    out = run_script([], event_env(VMCATCHER_EVENT_TYPE="ProcessPrefix"), tmp_path)
    assert out.returncode == 0
    assert out.stdout == ""
    assert out.stderr == "INFO:main:'--help' for options.\n"
    assert list(tmp_path.iterdir()) == []


def test_missing_log_config_is_an_error(tmp_path):
    missing = tmp_path / "nope.conf"
    out = run_script(["--log-config", str(missing)], event_env(), tmp_path)
    assert out.returncode == 1
    assert out.stderr == f"ERROR:main:Logfile configuration file '{missing}' was not found.\n"


def test_log_config_file_is_used(tmp_path):
    logfile = tmp_path / "handler.log"
    config = tmp_path / "logger.conf"
    config.write_text(
        "[loggers]\nkeys=root\n\n"
        "[handlers]\nkeys=file\n\n"
        "[formatters]\nkeys=plain\n\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n\n"
        "[handler_file]\nclass=FileHandler\nlevel=INFO\nformatter=plain\n"
        f"args=({str(logfile)!r}, 'a')\n\n"
        "[formatter_plain]\nformat=CONFIGURED %(levelname)s %(name)s %(message)s\n"
    )
    out = run_script(["--log-config", str(config)], event_env(), tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert logfile.read_text() == "CONFIGURED INFO main '--help' for options.\n"


def test_broken_log_config_is_a_clean_error(tmp_path):
    config = tmp_path / "broken.conf"
    config.write_text("[loggers]\nkeys=root\n")
    out = run_script(["--log-config", str(config)], event_env(), tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(
        f"ERROR:main:Logfile configuration file '{config}' could not be used"
    )


def test_unwritable_output_is_a_clean_error(tmp_path):
    out = run_script(
        ["--output_file", str(tmp_path / "no" / "such" / "dir")], event_env(), tmp_path
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "Cannot write to" in out.stderr


def test_bad_option_is_a_usage_error(tmp_path):
    out = run_script(["--bogus"], event_env(), tmp_path)
    assert out.returncode == 2
    assert "usage:" in out.stderr


def test_module_imports_only_the_standard_library(tmp_path):
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "before = set(sys.modules)\n"
        "import vmcatcher.cli.event_handler_example\n"
        "new = set(sys.modules) - before\n"
        "foreign = (m for m in new if m.split('.')[0] not in sys.stdlib_module_names)\n"
        "print('\\n'.join(sorted(foreign)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "vmcatcher",
        "vmcatcher.cli",
        "vmcatcher.cli.event_handler_example",
    ]


def test_runner_fires_the_example_handler(tmp_path):
    """The real pair: EventRunner's environment as recorded by the example handler."""
    output = tmp_path / "events.log"
    command = " ".join(
        shlex.quote(p)
        for p in (sys.executable, "-I", "-S", str(SCRIPT), "--output_file", str(output))
    )
    runner = EventRunner(
        command,
        base_env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "VMCATCHER_RDBMS": "postgresql://vmc:hunter2@db/vmc",
            "VMCATCHER_CACHE_DIR_CACHE": str(tmp_path),
        },
    )
    entry = {
        "dc:identifier": "f0e1d2c3-0000-4000-8000-000000000001",
        "filename": "f0e1d2c3-0000-4000-8000-000000000001",
        "hv:image.ad:mpuri": "https://marketplace.example.org/x",
        "hv:image.hv:format": "raw",
    }
    assert runner.fire(EventType.EXPIRE_PREFIX, entry).rc == 0
    assert runner.fire(EventType.PROCESS_POSTFIX).rc == 0
    first, second = (json.loads(line) for line in output.read_text().splitlines())
    assert first["VMCATCHER_EVENT_TYPE"] == "ExpirePrefix"
    assert first["VMCATCHER_EVENT_AD_MPURI"] == "https://marketplace.example.org/x"
    assert first["VMCATCHER_EVENT_HV_FORMAT"] == "raw"
    assert first["VMCATCHER_EVENT_UUID_SESSION"] == runner.session_uuid
    assert first["VMCATCHER_RDBMS"] == "postgresql://vmc@db/vmc"
    assert first["VMCATCHER_CACHE_DIR_CACHE"] == str(tmp_path)
    assert second["VMCATCHER_EVENT_TYPE"] == "ProcessPostfix"
    assert second["VMCATCHER_EVENT_DC_IDENTIFIER"] == ""
    assert second["VMCATCHER_EVENT_UUID_SESSION"] == runner.session_uuid


def test_main_in_process_returns_status(tmp_path, monkeypatch):
    output = tmp_path / "events.log"
    monkeypatch.setenv("VMCATCHER_EVENT_TYPE", "ProcessPrefix")
    assert example.main(["--output_file", str(output), "--generator", "minium"]) == 0
    assert json.loads(output.read_text())["VMCATCHER_EVENT_TYPE"] == "ProcessPrefix"
    assert example.main(["--version"]) == 0
