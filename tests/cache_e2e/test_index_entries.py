"""The entries of the three ``cache.index`` files carry exactly the original's keys.

Why: sites' event handlers and scripts read these files, and an index written by
us must look like one written by 0.6.3 (docs/commands/vmcatcher_cache.md,
"cache.index"). The original moved an image's partial entry whole into
``cache/cache.index`` on a successful download -- ``DownLoadTrys`` included -- and
on into ``expired/cache.index`` on expiry. Indexes written by an earlier version
of ours, without ``DownLoadTrys``, must still be read as they are.
"""

from __future__ import annotations

import json
import re

from tests.cache_e2e.conftest import SUBSCRIPTION, CacheSite

IMAGE = "6f0e3a5b-1c2d-4e5f-8a9b-0c1d2e3f4a51"
IMAGE_PATH = f"/{IMAGE}.img"
STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"

# The keys the original writes for an image of a list with an ad:vo.
ORIGINAL_KEYS = {
    "dc:identifier", "uuid", "hv:uri", "uri", "sl:checksum:sha512", "sha512",
    "hv:size", "size", "hv:imagelist.dc:identifier", "message", "msgHash",
    "dc:title", "dc:description", "hv:version", "hv:hypervisor", "sl:arch",
    "sl:comments", "sl:os", "sl:osversion", "hv:imagelist.ad:vo", "DownLoadTrys",
    "filename",
}  # fmt: skip
IMAGE_FIELDS = {
    "dc:identifier", "dc:title", "dc:description", "hv:size", "sl:checksum:sha512",
    "sl:arch", "hv:uri", "sl:os", "sl:osversion", "sl:comments", "hv:hypervisor",
    "hv:version", "hv:format",
}  # fmt: skip
EXPECTED_KEYS = ORIGINAL_KEYS | {f"hv:image.{key}" for key in IMAGE_FIELDS}


def _list_hash(site: CacheSite) -> str:
    return site.sql('SELECT data_hash FROM "imageListInstance" ORDER BY id DESC LIMIT 1')[0][0]


def _ready(site: CacheSite) -> None:
    site.add_image(IMAGE, 12_000, extra={"hv:format": "raw"})
    site.publish(extra={"ad:vo": "dteam"})
    site.subscribe()
    site.accept(IMAGE)


def test_download_then_expiry_keep_every_key_of_the_original(site: CacheSite) -> None:
    _ready(site)
    site.server.status(IMAGE_PATH, 500)
    site.cache()  # one failed try: the count the entry carries on is 2
    site.server.add(IMAGE_PATH, site.data[IMAGE])
    site.cache()

    assert site.index(site.partial_dir) == {}
    entry = site.index(site.cache_dir)[IMAGE]
    assert set(entry) == EXPECTED_KEYS
    assert entry["DownLoadTrys"] == {"count": 2, "msgHash": _list_hash(site)}
    assert entry["filename"] == IMAGE
    assert entry["hv:imagelist.dc:identifier"] == SUBSCRIPTION

    site.remove(IMAGE)
    site.cache()

    assert site.index(site.cache_dir) == {}
    [(name, expired)] = site.index(site.expired_dir).items()
    assert re.fullmatch(re.escape(IMAGE) + r"\." + STAMP, name)
    assert set(expired) == EXPECTED_KEYS
    assert expired == dict(entry, filename=name)


def test_entries_without_download_trys_from_an_earlier_version_still_work(
    site: CacheSite,
) -> None:
    """A cache index written before DownLoadTrys was kept: read as it is, nothing fetched."""
    _ready(site)
    site.cache()
    index = site.index(site.cache_dir)
    del index[IMAGE]["DownLoadTrys"]
    (site.cache_dir / "cache.index").write_text(json.dumps(index, sort_keys=True, indent=4))
    requests = len(site.server.requests_for(IMAGE_PATH))

    site.clear_events()
    site.cache()
    assert site.event_types() == ["ProcessPrefix", "ProcessPostfix"]
    assert len(site.server.requests_for(IMAGE_PATH)) == requests
    assert site.index(site.cache_dir) == index

    site.remove(IMAGE)
    site.cache()
    [(name, expired)] = site.index(site.expired_dir).items()
    assert expired == dict(index[IMAGE], filename=name)
