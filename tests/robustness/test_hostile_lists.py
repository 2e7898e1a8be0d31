"""Hostile image lists, validly signed by the trusted endorser.

A signature says who wrote a list, not that its content is harmless (signature
checks are tested elsewhere). Here a trusted publisher -- compromised, buggy or
malicious -- sends identifiers that try to escape the cache (``../``, ``/``,
NUL, very long), duplicate UUIDs, absurd sizes, URIs and titles full of shell
metacharacters, non-ASCII text everywhere, 100,000 images, deeply nested JSON
and dates at the ends of the calendar. Each test runs the real commands and
checks the documented outcome, that no traceback escapes, that nothing lands
outside the cache, that no shell ever runs list content, and that the stored
state stays consistent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from requests.utils import requote_uri

from tests.robustness.hostile_support import (
    SUBSCRIPTION,
    Site,
    assert_clean,
    assert_failure,
    open_site,
)
from tests.support.lists import image_bytes, list_payload, make_image

pytestmark = pytest.mark.robustness


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as opened:
        yield opened


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("WARNING:")]


def _subscribe_caching(site: Site, url: str) -> None:
    """Subscribe with new images cached (``--imagelist-newimage-subscribe``) and import."""
    site.subscribe(url, "--imagelist-newimage-subscribe")


# --- identifiers and sizes ---------------------------------------------------------------

UNSAFE_IDENTIFIERS = [
    "../escape",
    "../../../../tmp/escape",
    "/etc/vmcatcher-escape",
    "a/b",
    "a\x00b",
    "x" * 201,
    "..",
    ".",
    ".hidden",
    "-rf",
    "",
    "ïmage",
    "cache.index",  # would overwrite the index of the cache and partial directories
    "cache.index.corrupt-20250101T000000Z",
    "a b",
    "a\nb",
]
ABSURD_SIZES: list[Any] = [-1, -(2**63), 2**60, 10**400, "1e30", 1.5, "abc", "-5", True, None, []]


def test_unsafe_identifiers_and_absurd_sizes_are_dropped(site: Site, tmp_path: Path) -> None:
    """Each bad entry is dropped with a WARNING; the rest of the list is imported and cached."""
    server = site.server()
    good = site.image(server, "good-image")
    longest = site.image(server, "y" * 200)  # the longest safe name
    empty = site.image(server, "empty-image", 0)  # a zero-byte image is legitimate
    huge = site.image(server, "petabyte-image")
    huge["hv:size"] = 2**50  # allowed by the format, impossible on this disk
    bad = []
    for identifier in UNSAFE_IDENTIFIERS:
        image = site.image(server, "template")
        image["dc:identifier"] = identifier
        bad.append(image)
    for number, size in enumerate(ABSURD_SIZES):
        image = site.image(server, f"size-{number}")
        image["hv:size"] = size
        bad.append(image)
    _subscribe_caching(site, site.publish_file("image.list", [good, *bad, longest, empty, huge]))
    result = site.update(expect=0)
    dropped = [line for line in _warnings(result.stderr) if "dropping image" in line]
    assert len(dropped) == len(bad), result
    assert site.definitions() == {"good-image", "y" * 200, "empty-image", "petabyte-image"}

    result = site.cache(expect=0)
    assert "dropping image" not in result.stderr, "warnings of -U repeated by every cache run"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "'petabyte-image'" in errors[0], result
    assert "too large at 1125899906842624 bytes" in errors[0]
    assert site.cached() == {"good-image", "y" * 200, "empty-image"}
    assert (site.cache_dir / "empty-image").read_bytes() == b""
    escaped = [p for p in tmp_path.rglob("*escape*")] + [p for p in tmp_path.parent.glob("escape")]
    assert escaped == [] and not Path("/etc/vmcatcher-escape").exists()
    assert not Path("/tmp/escape").exists()
    site.check_consistent()


def test_duplicate_uuids_in_one_list_and_across_lists(site: Site) -> None:
    """Within a list the first entry wins; another list cannot take over a UUID (32)."""
    server = site.server()
    first = site.image(server, "twin")
    second = site.image(server, "twin-other-bytes")
    second["dc:identifier"] = "twin"  # same UUID, other bytes, size and URI
    _subscribe_caching(site, site.publish_file("image.list", [first, second]))
    assert site.database.count("ImageInstance") == 1
    row = site.database.sql('SELECT sha512, uri FROM "ImageInstance"')[0]
    assert row == (first["sl:checksum:sha512"], first["hv:uri"])
    site.cache(expect=0)
    assert site.cached() == {"twin"}
    assert (site.cache_dir / "twin").read_bytes() == image_bytes("twin", 2048)[0]

    thief = site.image(server, "thief-bytes")
    thief["dc:identifier"] = "twin"
    path = site.root / "other.list"
    other = "5b0c6a7e-1111-4000-8000-000000000001"
    document = site.document(path.as_uri(), [thief], identifier=other, version="1")
    path.write_bytes(site.signed(document))
    site.run("vmcatcher_subscribe", "-s", path.as_uri(), "-e", "--imagelist-newimage-subscribe",
             expect=0)  # fmt: skip
    result = site.update()
    assert_clean(result)
    assert result.returncode == 32, result
    assert "belongs to another subscription" in result.stderr
    owner = site.database.scalar(
        'SELECT s.identifier FROM "ImageDefinition" d JOIN subscription s '
        "ON s.id = d.subscription WHERE d.identifier = 'twin'"
    )
    assert owner == SUBSCRIPTION
    site.cache(expect=0)
    assert (site.cache_dir / "twin").read_bytes() == image_bytes("twin", 2048)[0]
    site.check_consistent()


# --- shell metacharacters and non-ASCII text -----------------------------------------------


def test_shell_metacharacters_in_list_values_never_run(site: Site, tmp_path: Path) -> None:
    """URIs, titles and identifiers with ``;``, backticks, ``$(...)``, ``|``, ``&&``:
    no marker file ever appears, even with a handler that expands them unquoted."""
    marker = tmp_path / "pwned"
    server = site.server()
    tricks = [
        f"; touch {marker}-semicolon",
        f"`touch {marker}-backtick`",
        f"$(touch {marker}-dollar)",
        f"| touch {marker}-pipe",
        f"&& touch {marker}-and",
        f"\n touch {marker}-newline",
    ]
    uri = server.url(f"/img{''.join(tricks)}.img".replace("\n", "%0A"))
    image = site.image(server, "meta-image", uri=uri, title=" ".join(tricks),
                       description=f"'; touch {marker}-quote; '")  # fmt: skip
    server.add(urlsplit(requote_uri(uri)).path, image_bytes("meta-image", 2048)[0])
    identifier = f"sub-$(touch {marker}-subscription)"
    url = site.publish_file("image.list", [image], identifier=identifier,
                            extra={"ad:vo": f"`touch {marker}-vo`"})  # fmt: skip
    unquoted = (
        f"echo $VMCATCHER_EVENT_HV_URI $VMCATCHER_EVENT_DC_TITLE $VMCATCHER_EVENT_VO "
        f"$VMCATCHER_EVENT_IL_DC_IDENTIFIER $VMCATCHER_EVENT_DC_DESCRIPTION >> {tmp_path}/seen; "
        f"{site.event_logger}"
    )
    site.run("vmcatcher_subscribe", "-s", url, "-e", "--imagelist-newimage-subscribe",
             "-x", unquoted, expect=0)  # fmt: skip
    site.run("vmcatcher_subscribe", "-U", "-x", unquoted, expect=0)
    site.cache(handler=unquoted, expect=0)
    for command in (
        ["vmcatcher_subscribe", "-l"],
        ["vmcatcher_subscribe", "-i", "-u", identifier],
        ["vmcatcher_image", "-l"],
        ["vmcatcher_image", "-i", "-u", "meta-image"],
    ):
        site.run(*command, expect=0)  # fmt: skip

    assert list(tmp_path.glob("pwned*")) == [], "list content ran as a shell command"
    assert site.cached() == {"meta-image"}, "the URI was not requested verbatim"
    available = [e for e in site.events() if e["VMCATCHER_EVENT_TYPE"] == "AvailablePostfix"]
    assert available[0]["VMCATCHER_EVENT_HV_URI"] == uri
    assert available[0]["VMCATCHER_EVENT_DC_TITLE"] == " ".join(tricks)
    assert available[0]["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == identifier
    assert (tmp_path / "seen").read_text().count(f"touch {marker}-backtick") >= 1
    site.check_consistent()


def test_non_ascii_everywhere(site: Site) -> None:
    """Cyrillic, CJK, emoji, right-to-left marks, combining accents, lone surrogates:
    stored, shown (also on an ASCII-only stdout), exported to handlers, indexed."""
    server = site.server()
    path = "/образы/🙂-ünïcödé.img"
    uri = server.url(path)
    server.add(urlsplit(requote_uri(uri)).path, image_bytes("unicode-image", 4096)[0])
    title = "Образ 🙂 日本語 \u202eevil\u202c e\u0301"
    image = site.image(server, "unicode-image", 4096, uri=uri, title=title,
                       description="Beschreibung — ñ ø ß 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", os="Lïnux ☃",
                       osversion="२४.०४", arch="x86_64", comments="✓ « » “ ” ‘ ’",
                       hypervisor="ＫＶＭ", version="1.0-β",
                       extra={"hv:format": "qcöw2", "x:surrogate": "\ud800 \udcff"})  # fmt: skip
    identifier = "список-🙂-リスト"
    url = site.publish_file("image.list", [image], identifier=identifier, extra={
        "dc:title": "Список 🙂", "dc:description": "נתונים \u200f עברית",
        "ad:vo": "vo-ü.example", "dc:source": "https://例え.テスト/"})  # fmt: skip
    _subscribe_caching(site, url)
    site.cache(expect=0)
    assert site.cached() == {"unicode-image"}
    assert site.index()["unicode-image"]["dc:title"] == title
    event = next(e for e in site.events() if e["VMCATCHER_EVENT_TYPE"] == "AvailablePostfix")
    assert event["VMCATCHER_EVENT_DC_TITLE"] == title
    assert event["VMCATCHER_EVENT_HV_URI"] == uri
    assert event["VMCATCHER_EVENT_VO"] == "vo-ü.example"
    assert event["VMCATCHER_EVENT_IL_DC_IDENTIFIER"] == identifier

    views = [
        ("vmcatcher_subscribe", "-l"),
        ("vmcatcher_subscribe", "-i", "-u", identifier),
        ("vmcatcher_subscribe", "-i", "-f", "json", "-u", identifier),
        ("vmcatcher_subscribe", "--image-list", "-u", identifier),
        ("vmcatcher_image", "-l"),
        ("vmcatcher_image", "-i", "-u", "unicode-image"),
        ("vmcatcher_image", "-i", "-f", "json", "-u", "unicode-image"),
    ]
    for view in views:  # an ASCII-only stdout (a non-UTF-8 locale) must not crash them
        site.run(*view, env={"PYTHONIOENCODING": "ascii"}, expect=0)
    shown = site.run("vmcatcher_image", "-i", "-u", "unicode-image", expect=0).stdout
    assert title in shown and identifier in shown
    info = json.loads(site.run("vmcatcher_image", "-i", "-f", "json", "-u", "unicode-image",
                               expect=0).stdout)  # fmt: skip
    assert title in json.dumps(info, ensure_ascii=False)
    site.check_consistent()


# --- size and shape --------------------------------------------------------------------------

HUNDRED_THOUSAND = 100_000


def test_hundred_thousand_images_import_in_seconds(site: Site, record_property: Any) -> None:
    """A 44 MB signed list of 100,000 images: ``-s`` and ``-U`` each take seconds."""
    digest = "ab" * 64
    images = [
        make_image(
            str(uuid.UUID(int=number + 1)),
            data=b"",
            size=1024,
            sha512=digest,
            uri=f"http://127.0.0.1:9/{number}.img",
            title=f"image {number}",
            description="",
            comments="",
            osversion="9",
        )
        for number in range(HUNDRED_THOUSAND)
    ]
    path = site.root / "image.list"
    document = site.document(path.as_uri(), images)
    payload = (json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n").encode()
    path.write_bytes(site.signed(payload))
    size = path.stat().st_size

    site.run("vmcatcher_subscribe", "-s", path.as_uri(), "-e", expect=0, timeout=300)
    subscribe_s = site.last_duration
    site.update(expect=0, timeout=300)
    update_s = site.last_duration
    record_property("list_bytes", size)
    record_property("subscribe_seconds", round(subscribe_s, 1))
    record_property("update_seconds", round(update_s, 1))
    print(f"\n100,000 images ({size / 1e6:.1f} MB signed): -s {subscribe_s:.1f} s, "
          f"-U {update_s:.1f} s")  # fmt: skip

    assert site.database.count("ImageInstance") == HUNDRED_THOUSAND
    latest = site.database.scalar(
        'SELECT count(*) FROM "ImageDefinition" d JOIN "ImageInstance" m ON m.id = d.latest '
        'AND m."fkIdentifier" = d.id'
    )
    assert latest == HUNDRED_THOUSAND, "every definition points at its new instance"
    assert subscribe_s < 60 and update_s < 60, "importing 100,000 images must take seconds"
    site.check_consistent()


def _nested_list(site: Site, depth: int, images: list[dict[str, Any]]) -> None:
    """Publish the next version with an array nested ``depth`` deep in the first image."""
    path = site.root / "image.list"
    images[0]["x:nested"] = "@NEST@"
    document = site.document(path.as_uri(), images)
    payload = list_payload(document).replace(b'"@NEST@"', b"[" * depth + b"1" + b"]" * depth)
    path.write_bytes(site.signed(payload))


def test_deeply_nested_json(site: Site) -> None:
    """100,000 levels and 65 levels are refused the same way (37) whatever the stack depth
    of the caller; 64 levels are accepted, cached and written into cache.index."""
    server = site.server()
    images = [site.image(server, "nested-image")]
    _subscribe_caching(site, site.publish_file("image.list", images))
    for depth in (100_000, 2_000, 990, 980, 65):
        _nested_list(site, depth, images)
        result = site.update()
        assert_failure(result, 37, "the signed payload is")  # not valid JSON / nested
    assert site.list_versions() == ["1"]

    _nested_list(site, 55, images)  # 64 levels in all, with the list's own five
    site.update(expect=0)
    site.cache(expect=0)
    value, levels = site.index()["nested-image"]["hv:image.x:nested"], 0
    while isinstance(value, list):
        value, levels = value[0], levels + 1
    assert (value, levels) == (1, 55)
    site.run("vmcatcher_image", "-i", "-f", "json", "-u", "nested-image", expect=0)
    site.check_consistent()


# --- dates ---------------------------------------------------------------------------------


def test_dates_at_the_ends_of_the_calendar(site: Site) -> None:
    """Year 1 to 9999 is a valid (if odd) validity window; dates beyond the calendar,
    or that overflow once converted to UTC, are refused (38); the past and the future
    keep their codes (34, 33). Nothing refused is stored."""
    server = site.server()
    images = [site.image(server, "dated-image")]
    url = site.publish_file("image.list", images, created="0001-01-01T00:00:00Z",
                            expires="9999-12-31T23:59:59Z")  # fmt: skip
    _subscribe_caching(site, url)
    site.cache(expect=0)
    assert site.cached() == {"dated-image"}
    for view in (
        ["vmcatcher_subscribe", "-i", "-u", SUBSCRIPTION],
        ["vmcatcher_subscribe", "-i", "-f", "json", "-u", SUBSCRIPTION],
        ["vmcatcher_image", "-i", "-u", "dated-image"],
    ):
        site.run(*view, expect=0)  # fmt: skip

    for dates, code, words in [
        ({"expires": "1970-01-01T00:00:00Z"}, 34, "has expired"),
        ({"created": "9999-12-31T23:59:59Z"}, 33, "in the future"),
        ({"expires": "9999-12-31T23:59:59-12:00"}, 38, "invalid date"),  # past 9999 in UTC
    ]:
        site.publish_file("image.list", images, **dates)
        assert_failure(site.update(), code, words)
    assert site.list_versions() == ["1"]
    site.publish_file("image.list", images)
    site.update(expect=0)
    assert site.latest_version() == str(site.version)
    site.cache(expect=0)
    site.check_consistent()


@pytest.mark.parametrize(
    "date",
    [
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",  # before year 1 once converted to UTC
        "9999-12-31T23:59:59-00:01",  # after year 9999 once converted to UTC
        "9" * 5000,
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:01Z",
        "2024-01-01",  # no time of day
        "1e308",
        1e308,
        -(2**70),
        None,
        ["2024-01-01T00:00:00Z"],
    ],
)
def test_dates_beyond_the_calendar_are_not_an_image_list(date: Any) -> None:
    """What ``-U`` decodes: every such date is a one-line 38, never an exception."""
    from tests.support.lists import make_image_list
    from vmcatcher.errors import NotAnImageListError
    from vmcatcher.imagelist import decode_image_list

    for key in ("dc:date:created", "dc:date:expires"):
        document = make_image_list(SUBSCRIPTION, "https://example.org/l", "1", [make_image()],
                                   "/CN=x", "/CN=y")  # fmt: skip
        document["hv:imagelist"][key] = date
        with pytest.raises(NotAnImageListError) as raised:
            decode_image_list(list_payload(document))
        assert "invalid date" in str(raised.value) and "\n" not in str(raised.value)
