"""The example handler ``vmcatcher_eventHndlExpl`` as the ``-x`` handler of a real cache run.

Spec §12 and §16 item 12: it appends one sorted JSON line per event holding every
interesting key, the missing ones as ``""``.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta, timezone

from tests.cache_e2e.conftest import SUBSCRIPTION, CacheSite
from tests.support.commands import command_path, run

IMAGE = "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4"

INTERESTING = {
    "VMCATCHER_EVENT_TYPE", "VMCATCHER_EVENT_DC_DESCRIPTION", "VMCATCHER_EVENT_DC_IDENTIFIER",
    "VMCATCHER_EVENT_DC_TITLE", "VMCATCHER_EVENT_HV_HYPERVISOR", "VMCATCHER_EVENT_HV_SIZE",
    "VMCATCHER_EVENT_HV_URI", "VMCATCHER_EVENT_HV_VERSION", "VMCATCHER_EVENT_HV_FORMAT",
    "VMCATCHER_EVENT_SL_ARCH", "VMCATCHER_EVENT_SL_CHECKSUM_SHA512",
    "VMCATCHER_EVENT_SL_COMMENTS", "VMCATCHER_EVENT_SL_OS", "VMCATCHER_EVENT_SL_OSVERSION",
    "VMCATCHER_EVENT_FILENAME", "VMCATCHER_EVENT_IL_DC_IDENTIFIER", "VMCATCHER_EVENT_VO",
    "VMCATCHER_EVENT_AD_MPURI", "VMCATCHER_EVENT_UUID_SESSION",
    "VMCATCHER_RDBMS", "VMCATCHER_CACHE_EVENT", "VMCATCHER_LOG_CONF", "VMCATCHER_DIR_CERT",
    "VMCATCHER_CACHE_DIR_CACHE", "VMCATCHER_CACHE_DIR_DOWNLOAD", "VMCATCHER_CACHE_DIR_EXPIRE",
    "VMCATCHER_CACHE_ACTION_DOWNLOAD", "VMCATCHER_CACHE_ACTION_CHECK",
    "VMCATCHER_CACHE_ACTION_EXPIRE",
}  # fmt: skip


def test_scenario_12_one_line_with_every_interesting_key(tmp_path) -> None:
    output = tmp_path / "f"
    output.write_text('{"earlier": "line"}\n')
    result = run("vmcatcher_eventHndlExpl", "--output_file", "f", cwd=tmp_path,
                 env={"VMCATCHER_EVENT_TYPE": "X"})  # fmt: skip
    assert result.returncode == 0, result
    lines = output.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == '{"earlier": "line"}'
    record = json.loads(lines[1])
    assert set(record) == INTERESTING
    assert record["VMCATCHER_EVENT_TYPE"] == "X"
    assert {v for k, v in record.items() if k != "VMCATCHER_EVENT_TYPE"} == {""}
    assert lines[1] == json.dumps(record, sort_keys=True)


def test_example_handler_records_a_real_cache_run(site: CacheSite) -> None:
    image = site.add_image(IMAGE, 6000, extra={"ad:mpuri": "https://mp.example/x"})
    site.publish(extra={"ad:vo": "dteam"})
    site.subscribe()
    site.accept(IMAGE)
    log = site.root / "events.json"
    handler = f"{shlex.quote(command_path('vmcatcher_eventHndlExpl'))} --output_file events.json"
    before = datetime.now(timezone.utc).replace(microsecond=0)

    site.cache("-x", handler, events=False, env={"VMCATCHER_CACHE_ACTION_DOWNLOAD": "1"})
    site.remove(IMAGE)
    minimal = handler + " --datetime --generator minium"
    site.cache(events=False, env={"VMCATCHER_CACHE_EVENT": minimal})

    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [line == json.dumps(r, sort_keys=True) for line, r in zip(lines, records)] == [True] * 8
    assert [r["VMCATCHER_EVENT_TYPE"] for r in records] == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ProcessPostfix",
    ]  # fmt: skip
    download_run, expire_run = records[:4], records[4:]
    for record in download_run:  # default generator: every key, "" when unset
        assert set(record) == INTERESTING
        assert record["VMCATCHER_CACHE_EVENT"] == ""  # -x is not exported (spec §11.2)
        assert record["VMCATCHER_CACHE_ACTION_DOWNLOAD"] == "1"
        assert record["VMCATCHER_CACHE_ACTION_CHECK"] == ""
        assert record["VMCATCHER_CACHE_DIR_CACHE"] == str(site.cache_dir)
        assert record["VMCATCHER_CACHE_DIR_DOWNLOAD"] == str(site.partial_dir)
        assert record["VMCATCHER_CACHE_DIR_EXPIRE"] == str(site.expired_dir)
        assert record["VMCATCHER_RDBMS"] == site.shown_database_url
        assert record["VMCATCHER_DIR_CERT"] == str(site.ca_dir)
    assert download_run[0]["VMCATCHER_EVENT_DC_IDENTIFIER"] == ""
    for record in download_run[1:3]:
        assert record["VMCATCHER_EVENT_FILENAME"] == IMAGE
        assert record["VMCATCHER_EVENT_DC_IDENTIFIER"] == IMAGE
        assert record["VMCATCHER_EVENT_HV_SIZE"] == "6000"
        assert record["VMCATCHER_EVENT_HV_URI"] == image["hv:uri"]
        assert record["VMCATCHER_EVENT_SL_CHECKSUM_SHA512"] == image["sl:checksum:sha512"]
        assert record["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == SUBSCRIPTION
        assert record["VMCATCHER_EVENT_VO"] == "dteam"
        assert record["VMCATCHER_EVENT_AD_MPURI"] == "https://mp.example/x"
        assert record["VMCATCHER_EVENT_HV_FORMAT"] == "raw"
    assert len({r["VMCATCHER_EVENT_UUID_SESSION"] for r in download_run}) == 1
    # --generator minium: only what is set; --datetime: UTC with a Z.
    assert "VMCATCHER_EVENT_FILENAME" not in expire_run[0]
    assert "VMCATCHER_CACHE_ACTION_DOWNLOAD" not in expire_run[1]
    assert expire_run[1]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert expire_run[2]["VMCATCHER_EVENT_FILENAME"].startswith(IMAGE + ".")
    for record in expire_run:
        assert record["VMCATCHER_CACHE_EVENT"] == minimal  # inherited from the environment
        stamp = datetime.strptime(record["DATETIME"], "%Y-%m-%dT%H:%M:%SZ")
        stamp = stamp.replace(tzinfo=timezone.utc)
        assert before - timedelta(seconds=1) <= stamp <= datetime.now(timezone.utc)
    assert len({r["VMCATCHER_EVENT_UUID_SESSION"] for r in expire_run}) == 1
    assert (
        expire_run[0]["VMCATCHER_EVENT_UUID_SESSION"]
        != download_run[0]["VMCATCHER_EVENT_UUID_SESSION"]
    )


def test_a_failing_handler_error_line_carries_its_first_stderr_line(site: CacheSite) -> None:
    """Issue 11, item 9: cron mail used to show only "exit code '127'"."""
    site.add_image("3e1a9c7b-6d5f-4b2e-8a1c-9f0e7d6c5b4a")
    site.ready()
    result = site.cache("-x", "no-such-vmcatcher-handler --flag", events=False)
    lines = [line for line in result.stderr.splitlines() if "ProcessPrefix" in line]
    [line] = [line for line in lines if line.startswith("ERROR:")]
    assert "with exit code '127'. stderr: " in line, result
    assert "no-such-vmcatcher-handler" in line.split(" stderr: ", 1)[1]
