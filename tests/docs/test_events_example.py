"""The Glance handler printed in docs/events.md really works, and keeps list values as data.

Why: sites copy that script. It is extracted from the page as published and run
by vmcatcher's own :class:`~vmcatcher.events.EventRunner` under ``/bin/sh``,
with a stand-in ``openstack`` command on ``PATH`` that records its arguments
(no cloud is reachable here). The event metadata carries hostile values, as a
malicious list publisher would write them: none of them may run a command or
turn into an option.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from vmcatcher.events import EventRunner

REPO = Path(__file__).resolve().parents[2]
EVENTS_PAGE = REPO / "docs" / "events.md"

FAKE_OPENSTACK = """#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["image", "list"]:
    if os.path.exists(os.environ["FAKE_IDS"] + ".down"):
        sys.exit("Failed to contact the endpoint")
    sys.stdout.write(open(os.environ["FAKE_IDS"]).read())
"""

UUID = "858a817e-0ca2-473f-89d3-d5bdfc51968e"
SHA = "ab" * 64
HOSTILE_TITLE = "-rf $(touch PWNED_1) `touch PWNED_2`; touch PWNED_3 \"x\" 'y'"


def glance_script() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", EVENTS_PAGE.read_text(), re.DOTALL)
    scripts = [b for b in blocks if b.startswith("#!/bin/sh") and "openstack image create" in b]
    assert len(scripts) == 1, "docs/events.md must hold exactly one Glance handler script"
    return scripts[0]


@pytest.fixture
def handler(tmp_path: Path):
    script = tmp_path / "vmcatcher-glance"
    script.write_text(glance_script())
    script.chmod(0o755)
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    fake = fakebin / "openstack"
    fake.write_text(FAKE_OPENSTACK.format(python=sys.executable))
    fake.chmod(0o755)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / UUID).write_bytes(b"image bytes")
    ids = tmp_path / "ids"
    ids.write_text("")
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{fakebin}:/usr/bin:/bin",
        "FAKE_LOG": str(log),
        "FAKE_IDS": str(ids),
        "VMCATCHER_CACHE_DIR_CACHE": str(cache),
    }
    runner = EventRunner(str(script), base_env=env, timeout=20)

    class Handler:
        workdir = tmp_path
        cache_dir = cache

        def fire(self, event_type: str, **changes: str):
            metadata = {
                "dc:identifier": UUID,
                "filename": UUID,
                "dc:title": HOSTILE_TITLE,
                "sl:checksum:sha512": SHA,
                "hv:image.hv:format": "QCOW2",
                "hv:imagelist.dc:identifier": "63175437-7d59-4851-b333-c96cb6545a86",
                "hv:version": "3.1.4",
            }
            metadata.update(changes)
            return runner.fire(event_type, metadata)

        def glance_down(self) -> None:
            Path(str(ids) + ".down").write_text("")

        def glance_has(self, *glance_ids: str) -> None:
            ids.write_text("".join(f"{i}\n" for i in glance_ids))

        def calls(self) -> list[list[str]]:
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Handler()


def list_call() -> list[str]:
    return ["image", "list", "--property", f"vmcatcher_uuid={UUID}", "--property",
            f"vmcatcher_sha512={SHA}", "-f", "value", "-c", "ID"]  # fmt: skip


def test_available_postfix_uploads_the_cached_file(handler) -> None:
    result = handler.fire("AvailablePostfix")
    assert result.rc == 0, result
    create = [
        "image", "create",
        "--disk-format", "qcow2",
        "--container-format", "bare",
        "--file", str(handler.cache_dir / UUID),
        "--property", f"vmcatcher_uuid={UUID}",
        "--property", f"vmcatcher_sha512={SHA}",
        "--property", "vmcatcher_list=63175437-7d59-4851-b333-c96cb6545a86",
        "--property", "vmcatcher_version=3.1.4",
        "_" + HOSTILE_TITLE,
    ]  # fmt: skip
    assert handler.calls() == [list_call(), create]
    assert not list(handler.workdir.glob("PWNED*"))
    assert not list(Path.cwd().glob("PWNED*"))


def test_available_postfix_skips_an_image_glance_already_has(handler) -> None:
    handler.glance_has("0b6a4a55-1111-4a4a-9c9c-000000000001")
    result = handler.fire("AvailablePostfix")
    assert result.rc == 0, result
    assert handler.calls() == [list_call()]


def test_expire_prefix_deletes_every_matching_glance_image(handler) -> None:
    handler.glance_has("0b6a4a55-1111-4a4a-9c9c-000000000001", "0b6a4a55-2222-4a4a-9c9c-0002")
    result = handler.fire("ExpirePrefix")
    assert result.rc == 0, result
    assert handler.calls() == [
        list_call(),
        ["image", "delete", "0b6a4a55-1111-4a4a-9c9c-000000000001"],
        ["image", "delete", "0b6a4a55-2222-4a4a-9c9c-0002"],
    ]


@pytest.mark.parametrize("fmt", ["OVA; touch PWNED_4", "$(touch PWNED_5)"])
def test_an_unknown_format_is_refused_without_uploading(handler, fmt: str) -> None:
    result = handler.fire("AvailablePostfix", **{"hv:image.hv:format": fmt})
    assert result.rc != 0
    assert "unsupported format" in result.stderr
    assert handler.calls() == [list_call()]
    assert not list(handler.workdir.glob("PWNED*"))


@pytest.mark.parametrize("event", ["ProcessPrefix", "AvailablePrefix", "ExpirePostfix"])
def test_other_events_do_nothing(handler, event: str) -> None:
    result = handler.fire(event)
    assert result.rc == 0, result
    assert handler.calls() == []


def test_a_missing_cache_file_fails_loudly(handler) -> None:
    (handler.cache_dir / UUID).unlink()
    result = handler.fire("AvailablePostfix")
    assert result.rc != 0
    assert "is missing" in result.stderr


@pytest.mark.parametrize("event", ["AvailablePostfix", "ExpirePrefix"])
def test_a_failing_glance_lookup_fails_the_event_and_changes_nothing(handler, event) -> None:
    handler.glance_down()
    result = handler.fire(event)
    assert result.rc != 0
    assert "Failed to contact the endpoint" in result.stderr
    assert handler.calls() == [list_call()]
