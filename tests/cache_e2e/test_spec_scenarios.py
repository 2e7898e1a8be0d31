"""Acceptance scenarios 8 and 9 of behaviour-spec §16 for ``vmcatcher_cache``, run as written.

Scenario 9 is checked with our fix (DECISIONS "Cache and events"): a corrupt image
is moved to ``expired/`` with Expire events instead of being deleted silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.cache_e2e.conftest import SUBSCRIPTION, CacheSite

IMAGE = "c8bb4e9b-8e63-4ea5-8dca-979b3686e229"
STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"

# Every key of a cache.index entry for a downloaded image (spec §10.3), DownLoadTrys
# included as the original kept it; the list has no ad:vo, so hv:imagelist.ad:vo
# must be absent.
ENTRY_KEYS = {
    "dc:identifier", "uuid", "hv:uri", "uri", "sl:checksum:sha512", "sha512",
    "hv:size", "size", "hv:imagelist.dc:identifier", "message", "msgHash",
    "dc:title", "dc:description", "hv:version", "hv:hypervisor", "sl:arch",
    "sl:comments", "sl:os", "sl:osversion", "DownLoadTrys", "filename",
}  # fmt: skip
IMAGE_FIELDS = {
    "dc:identifier", "dc:title", "dc:description", "hv:size", "sl:checksum:sha512",
    "sl:arch", "hv:uri", "sl:os", "sl:osversion", "sl:comments", "hv:hypervisor",
    "hv:version", "hv:format", "ad:mpuri",
}  # fmt: skip


def env_lines(path: Path, name: str) -> list[str]:
    """Values of ``name`` in an ``env >> file`` log, in the order they were written."""
    prefix = name + "="
    return [
        line[len(prefix) :] for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


def assert_index_layout(directory: Path) -> dict:
    raw = (directory / "cache.index").read_text()
    index = json.loads(raw)
    assert raw == json.dumps(index, sort_keys=True, indent=4), "not sort_keys=True, indent=4"
    return index


def test_scenario_8_download_then_expire_with_env_handler(site: CacheSite) -> None:
    mpuri = "https://marketplace.example-grid.org/a"
    image = site.add_image(IMAGE, 20000, extra={"ad:mpuri": mpuri, "hv:format": "qcow2"})
    site.ready()
    log = site.root / "ev.log"
    # A database URL with a password: handlers must never see it.
    if site.database.path is not None:  # SQLite takes one as a (ignored) URI parameter
        database = f"sqlite:///file:{site.database.path}?password=s3cret&uri=true"
        shown, secret = f"sqlite:///file:{site.database.path}?uri=true", "s3cret"
    else:
        database, shown = site.database_url, site.shown_database_url
        secret = make_url(database).password or "no password"

    site.command("vmcatcher_cache", "-x", "env >> ev.log", "-d", database)

    assert env_lines(log, "VMCATCHER_EVENT_TYPE") == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip
    assert env_lines(log, "VMCATCHER_EVENT_FILENAME") == [IMAGE, IMAGE]
    assert len(set(env_lines(log, "VMCATCHER_EVENT_UUID_SESSION"))) == 1
    assert len(env_lines(log, "VMCATCHER_EVENT_UUID_SESSION")) == 4
    cache = str(site.cache_dir)
    assert env_lines(log, "VMCATCHER_CACHE_DIR_CACHE") == [cache] * 4
    assert env_lines(log, "VMCATCHER_CACHE_DIR_DOWNLOAD") == [f"{cache}/partial"] * 4
    assert env_lines(log, "VMCATCHER_CACHE_DIR_EXPIRE") == [f"{cache}/expired"] * 4
    assert env_lines(log, "VMCATCHER_RDBMS") == [shown] * 4
    assert secret not in log.read_text()
    assert env_lines(log, "VMCATCHER_EVENT_AD_MPURI") == [mpuri, mpuri]
    assert env_lines(log, "VMCATCHER_EVENT_HV_FORMAT") == ["qcow2", "qcow2"]

    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE]
    index = assert_index_layout(site.cache_dir)
    assert list(index) == [IMAGE]
    entry = index[IMAGE]
    expected_keys = ENTRY_KEYS | {f"hv:image.{key}" for key in IMAGE_FIELDS}
    assert set(entry) == expected_keys
    assert entry["filename"] == IMAGE
    assert entry["sha512"] == entry["sl:checksum:sha512"] == image["sl:checksum:sha512"]
    assert entry["size"] == entry["hv:size"] == 20000
    assert entry["hv:imagelist.dc:identifier"] == SUBSCRIPTION
    assert entry["message"] == site.list_path.read_bytes().decode()
    assert entry["sl:comments"] == ""
    assert entry["hv:image.ad:mpuri"] == mpuri
    assert assert_index_layout(site.partial_dir) == {}

    # Unsubscribe: the next run expires it.
    log.unlink()
    site.remove(IMAGE)
    site.command("vmcatcher_cache", "-x", "env >> ev.log")

    assert env_lines(log, "VMCATCHER_EVENT_TYPE") == [
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ProcessPostfix",
    ]  # fmt: skip
    prefix_name, postfix_name = env_lines(log, "VMCATCHER_EVENT_FILENAME")
    assert prefix_name == IMAGE
    assert re.fullmatch(re.escape(IMAGE) + r"\." + STAMP, postfix_name)
    assert not (site.cache_dir / IMAGE).exists()
    assert (site.expired_dir / postfix_name).read_bytes() == site.data[IMAGE]
    assert assert_index_layout(site.cache_dir) == {}
    expired = assert_index_layout(site.expired_dir)
    assert list(expired) == [postfix_name]
    assert expired[postfix_name]["filename"] == postfix_name
    assert expired[postfix_name]["dc:identifier"] == IMAGE


def test_scenario_8_event_values(site: CacheSite) -> None:
    """Every VMCATCHER_EVENT_* value of the Available and Expire events, per event."""
    image = site.add_image(IMAGE, 5000, comments="no comment")
    site.publish(extra={"ad:vo": "atlas"})
    site.subscribe()
    site.accept(IMAGE)
    site.cache()
    assert site.index(site.cache_dir)[IMAGE]["hv:imagelist.ad:vo"] == "atlas"
    site.remove(IMAGE)
    site.cache()

    events = site.events()
    assert [e["VMCATCHER_EVENT_TYPE"] for e in events] == [
        "ProcessPrefix", "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix", "ProcessPostfix",
    ]  # fmt: skip
    first_run, second_run = events[:4], events[4:]
    assert len({e["VMCATCHER_EVENT_UUID_SESSION"] for e in first_run}) == 1
    assert len({e["VMCATCHER_EVENT_UUID_SESSION"] for e in second_run}) == 1
    assert (
        first_run[0]["VMCATCHER_EVENT_UUID_SESSION"]
        != second_run[0]["VMCATCHER_EVENT_UUID_SESSION"]
    )
    for process_event in (events[0], events[3], events[4], events[7]):
        assert not {k for k in process_event if k.startswith("VMCATCHER_EVENT_")} - {
            "VMCATCHER_EVENT_TYPE",
            "VMCATCHER_EVENT_UUID_SESSION",
        }
    expected = {
        "VMCATCHER_EVENT_DC_IDENTIFIER": IMAGE,
        "VMCATCHER_EVENT_HV_URI": image["hv:uri"],
        "VMCATCHER_EVENT_HV_SIZE": "5000",
        "VMCATCHER_EVENT_DC_DESCRIPTION": image["dc:description"],
        "VMCATCHER_EVENT_IL_DC_IDENTIFIER": SUBSCRIPTION,
        "VMCATCHER_EVENT_DC_TITLE": image["dc:title"],
        "VMCATCHER_EVENT_HV_HYPERVISOR": "KVM",
        "VMCATCHER_EVENT_HV_FORMAT": "raw",
        "VMCATCHER_EVENT_HV_VERSION": "1",
        "VMCATCHER_EVENT_SL_ARCH": "x86_64",
        "VMCATCHER_EVENT_SL_COMMENTS": "no comment",
        "VMCATCHER_EVENT_SL_OS": "Linux",
        "VMCATCHER_EVENT_SL_OSVERSION": "24.04",
        "VMCATCHER_EVENT_SL_CHECKSUM_SHA512": image["sl:checksum:sha512"],
        "VMCATCHER_EVENT_VO": "atlas",
    }
    for event in (events[1], events[2], events[5], events[6]):
        for key, value in expected.items():
            assert event.get(key) == value, (event["VMCATCHER_EVENT_TYPE"], key)
        assert "VMCATCHER_EVENT_AD_MPURI" not in event  # the image has no ad:mpuri
    assert events[1]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert events[2]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert events[5]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert re.fullmatch(re.escape(IMAGE) + r"\." + STAMP, events[6]["VMCATCHER_EVENT_FILENAME"])
    for event in events:
        assert event["VMCATCHER_CACHE_DIR_CACHE"] == str(site.cache_dir)
        assert event["VMCATCHER_RDBMS"] == site.shown_database_url


def test_scenario_9_corrupt_image_is_expired_then_downloaded_again(site: CacheSite) -> None:
    site.add_image(IMAGE, 30000)
    site.ready()
    site.cache()
    cached = site.cache_dir / IMAGE
    corrupt = bytearray(cached.read_bytes())
    corrupt[100] ^= 0xFF
    cached.write_bytes(bytes(corrupt))
    site.clear_events()
    site.server.clear_requests()

    result = site.cache("-s", "-D")

    assert f"Image '{IMAGE}' sha512 incorrect." in result.stderr
    events = site.events()
    assert [e["VMCATCHER_EVENT_TYPE"] for e in events] == [
        "ProcessPrefix", "ExpirePrefix", "ExpirePostfix",
        "AvailablePrefix", "AvailablePostfix", "ProcessPostfix",
    ]  # fmt: skip
    assert events[1]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    expired_name = events[2]["VMCATCHER_EVENT_FILENAME"]
    assert re.fullmatch(re.escape(IMAGE) + r"\." + STAMP, expired_name)
    assert events[3]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert events[4]["VMCATCHER_EVENT_FILENAME"] == IMAGE
    assert len({e["VMCATCHER_EVENT_UUID_SESSION"] for e in events}) == 1
    # The corrupt bytes are kept in expired/, the good ones are back in the cache.
    assert (site.expired_dir / expired_name).read_bytes() == bytes(corrupt)
    assert cached.read_bytes() == site.data[IMAGE]
    assert len(site.server.requests_for(f"/{IMAGE}.img")) == 1
    assert list(assert_index_layout(site.expired_dir)) == [expired_name]
    assert list(assert_index_layout(site.cache_dir)) == [IMAGE]
