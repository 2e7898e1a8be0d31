"""decode_image_list: structure, dropped images, legacy form, values, error codes."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from types import MappingProxyType

import pytest

from tests.support.lists import image_bytes, list_payload, make_image, make_image_list
from vmcatcher.errors import Code, InvalidJSONError, NotAnImageListError
from vmcatcher.imagelist import MAX_IMAGE_SIZE, Image, ImageList, decode_image_list

DN = "/DC=org/DC=example-grid/O=People/CN=Jane Endorser"
CA = "/DC=org/DC=example-grid/CN=Example Grid Test CA"
LIST_ID = "251c2259-fb08-4892-80fa-13b739813a90"
IMAGE_ID = "c8bb4e9b-8e63-4ea5-8dca-979b3686e229"


def _doc(images=None, **kwargs):
    if images is None:
        images = [make_image(IMAGE_ID)]
    kwargs.setdefault("created", "2026-11-25T09:00:00Z")
    kwargs.setdefault("expires", "2026-12-23T09:00:00Z")
    return make_image_list(
        LIST_ID, "https://images.example-grid.org/image.list", "3.0.1", images, DN, CA, **kwargs
    )


def _decode(document) -> ImageList:
    return decode_image_list(list_payload(document))


def _body(document):
    return document["hv:imagelist"]


# --- the good case ----------------------------------------------------------------------


def test_complete_list():
    data, digest = image_bytes("alma", 3000)
    image = make_image(
        IMAGE_ID,
        data=data,
        uri="https://images.example-grid.org/alma.qcow2",
        extra={"hv:format": "qcow2", "ad:mpuri": "https://appdb.example/x:17/"},
    )
    result = _decode(_doc([image], extra={"ad:vo": "vo.example-grid.org"}))
    assert result.identifier == LIST_ID
    assert result.version == "3.0.1"
    assert result.uri == "https://images.example-grid.org/image.list"
    assert result.source == "https://images.example-grid.org/"
    assert result.title == f"Test list {LIST_ID}"
    assert result.description.startswith("Images endorsed")
    assert result.created == datetime(2026, 11, 25, 9, 0, 0)
    assert result.expires == datetime(2026, 12, 23, 9, 0, 0)
    assert result.created.tzinfo is None
    assert result.endorser.dn == DN
    assert result.endorser.ca == CA
    assert result.endorser.email == "jane.endorser@example-grid.org"
    assert result.endorser.creator == "Jane Endorser"
    (img,) = result.images
    assert isinstance(img, Image)
    assert img.identifier == IMAGE_ID
    assert img.size == 3000
    assert img.sha512 == digest
    assert img.uri == "https://images.example-grid.org/alma.qcow2"
    assert (img.arch, img.os, img.osversion, img.hypervisor) == ("x86_64", "Linux", "24.04", "KVM")
    assert img.version == "1"
    assert img.comments == ""
    assert img.metadata["hv:format"] == "qcow2"
    assert img.metadata["ad:mpuri"] == "https://appdb.example/x:17/"
    assert img.metadata["hv:size"] == 3000
    assert result.image(IMAGE_ID) is img
    assert result.image("nope") is None


def test_metadata_keeps_optional_keys_and_drops_dates_endorser_images():
    result = _decode(_doc(extra={"ad:vo": "vo.example", "ad:swid": 7}))
    assert result.metadata["ad:vo"] == "vo.example"
    assert result.metadata["ad:swid"] == 7
    assert result.metadata["dc:identifier"] == LIST_ID
    assert result.metadata["hv:version"] == "3.0.1"
    for key in ("dc:date:created", "dc:date:expires", "hv:endorser", "hv:images"):
        assert key not in result.metadata


def test_result_is_immutable():
    result = _decode(_doc())
    assert isinstance(result.metadata, MappingProxyType)
    with pytest.raises(TypeError):
        result.metadata["ad:vo"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        result.images[0].metadata["hv:size"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        result.version = "9"  # type: ignore[misc]
    assert isinstance(result.images, tuple)


def test_crlf_payload_as_returned_by_verification():
    payload = list_payload(_doc()).replace(b"\n", b"\r\n")
    assert decode_image_list(payload).identifier == LIST_ID


def test_empty_image_list_is_legal():
    assert _decode(_doc(images=[])).images == ()


# --- JSON level (37) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"not json", b'{"a": 1,}', b"\xff\xfe\x00garbage", "{" * 100000]
)
def test_invalid_json_is_37(payload):
    with pytest.raises(InvalidJSONError, match="not valid JSON") as caught:
        decode_image_list(payload)
    assert caught.value.code == Code.INVALID_JSON == 37
    assert "\n" not in str(caught.value)


def test_json_null_is_37():
    with pytest.raises(InvalidJSONError, match="JSON null"):
        decode_image_list(b"null")


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"text"', b"true", b"[{}]"])
def test_json_that_is_not_an_object_is_38(payload):
    with pytest.raises(NotAnImageListError, match="not an image list object") as caught:
        decode_image_list(payload)
    assert caught.value.code == Code.NOT_AN_IMAGE_LIST == 38


# --- list structure (38) -----------------------------------------------------------------------


def test_legacy_flat_form_is_decoded_and_flagged(caplog):
    document = _body(_doc())
    with caplog.at_level(logging.DEBUG):
        result = decode_image_list(json.dumps(document).encode())
    assert result.identifier == LIST_ID
    assert len(result.images) == 1
    assert result.legacy_form is True
    assert caplog.records == [], "the decoder returns what it found; the services log it"


def test_wrapped_form_is_not_flagged():
    assert _decode(_doc()).legacy_form is False


@pytest.mark.parametrize(
    "key",
    [
        "dc:date:created",
        "dc:date:expires",
        "dc:identifier",
        "dc:description",
        "dc:title",
        "dc:source",
        "hv:version",
        "hv:uri",
        "hv:endorser",
        "hv:images",
    ],
)
def test_missing_list_key_is_38(key):
    document = _doc()
    del _body(document)[key]
    with pytest.raises(NotAnImageListError, match=f"lacks required key\\(s\\) '{key}'"):
        _decode(document)


def test_all_missing_keys_are_named():
    with pytest.raises(NotAnImageListError) as caught:
        decode_image_list(b'{"hv:imagelist": {"dc:identifier": "x"}}')
    assert "'dc:title'" in str(caught.value)
    assert "'hv:uri'" in str(caught.value)
    assert "'dc:identifier'" not in str(caught.value)


def test_imagelist_not_an_object_is_38():
    with pytest.raises(NotAnImageListError, match="'hv:imagelist' must be a JSON object"):
        decode_image_list(b'{"hv:imagelist": []}')


@pytest.mark.parametrize("key", ["hv:dn", "hv:ca", "hv:email", "dc:creator"])
def test_missing_endorser_key_is_38(key):
    document = _doc()
    del _body(document)["hv:endorser"]["hv:x509"][key]
    with pytest.raises(NotAnImageListError, match=f"endorser 'hv:x509' lacks .*'{key}'"):
        _decode(document)


@pytest.mark.parametrize(
    ("endorser", "text"),
    [
        ({}, "must be an object holding an 'hv:x509'"),
        ({"hv:x509": "x"}, "must be an object holding an 'hv:x509'"),
        ("text", "must be an object holding an 'hv:x509'"),
        ([{"hv:x509": {}}], "multi-endorser"),
    ],
)
def test_bad_endorser_is_38(endorser, text):
    document = _doc()
    _body(document)["hv:endorser"] = endorser
    with pytest.raises(NotAnImageListError, match=text):
        _decode(document)


def test_endorser_values_must_be_text():
    document = _doc()
    _body(document)["hv:endorser"]["hv:x509"]["hv:dn"] = ["a"]
    with pytest.raises(NotAnImageListError, match="endorser 'hv:dn' must be a string"):
        _decode(document)


def test_images_not_an_array_is_38():
    document = _doc()
    _body(document)["hv:images"] = {"hv:image": make_image()}
    with pytest.raises(NotAnImageListError, match="'hv:images' must be a JSON array"):
        _decode(document)


@pytest.mark.parametrize("key", ["dc:identifier", "dc:title", "hv:uri"])
@pytest.mark.parametrize("value", [None, True, {"a": 1}, [1]])
def test_list_text_values_must_be_text(key, value):
    document = _doc()
    _body(document)[key] = value
    with pytest.raises(NotAnImageListError, match=f"'{key}' must be a string"):
        _decode(document)


def test_numeric_version_is_accepted_as_text():
    document = _doc()
    _body(document)["hv:version"] = 20150618211400
    assert _decode(document).version == "20150618211400"


def test_nul_in_text_is_38():
    document = _doc()
    _body(document)["dc:title"] = "a\x00b"
    with pytest.raises(NotAnImageListError, match="NUL"):
        _decode(document)


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T09:00:00Z", datetime(2026, 11, 25, 9, 0, 0)),
        ("2026-11-25T11:00:00+02:00", datetime(2026, 11, 25, 9, 0, 0)),
        ("2026-11-25T04:00:00-05:00", datetime(2026, 11, 25, 9, 0, 0)),
        ("2026-11-25T09:00:00.123Z", datetime(2026, 11, 25, 9, 0, 0, 123000)),
        ("2026-11-25 09:00:00", datetime(2026, 11, 25, 9, 0, 0)),
        ("2499-12-31T22:00:00Z", datetime(2499, 12, 31, 22, 0, 0)),
    ],
)
def test_list_dates_are_naive_utc(text, expected):
    result = _decode(_doc(created=text, expires=text))
    assert result.created == expected
    assert result.expires == expected


@pytest.mark.parametrize("key", ["dc:date:created", "dc:date:expires"])
@pytest.mark.parametrize("value", ["yesterday", "2026-11-25", "2026-13-01T00:00:00Z", "", 12, None])
def test_bad_list_date_is_38(key, value):
    document = _doc()
    _body(document)[key] = value
    with pytest.raises(NotAnImageListError, match=f"'{key}': invalid date"):
        _decode(document)


# --- images: dropped with a warning ---------------------------------------------------------------


def _decode_with_images(images, caplog):
    """The decoded list and one sentence per dropped image; the decoder itself logs nothing."""
    with caplog.at_level(logging.DEBUG):
        result = _decode(_doc(images=images))
    assert caplog.records == []
    return result, [f"dropping image {item.label}: {item.reason}" for item in result.dropped]


def test_image_missing_a_required_key_is_dropped_and_named(caplog):
    broken = make_image("7c8f5d07-8dab-40c2-8d89-960431a74b46")
    del broken["sl:comments"]
    result, warnings = _decode_with_images([make_image(IMAGE_ID), broken], caplog)
    assert [i.identifier for i in result.images] == [IMAGE_ID]
    assert len(warnings) == 1
    assert "7c8f5d07-8dab-40c2-8d89-960431a74b46" in warnings[0]
    assert "'sl:comments'" in warnings[0]


@pytest.mark.parametrize(
    "key",
    [
        "dc:identifier",
        "dc:title",
        "dc:description",
        "hv:size",
        "sl:checksum:sha512",
        "sl:arch",
        "hv:uri",
        "sl:os",
        "sl:osversion",
        "sl:comments",
        "hv:hypervisor",
        "hv:version",
    ],
)
def test_each_required_image_key(key, caplog):
    image = make_image(IMAGE_ID)
    del image[key]
    result, warnings = _decode_with_images([image], caplog)
    assert result.images == ()
    assert f"'{key}'" in warnings[0]


@pytest.mark.parametrize("entry", [{"image": {}}, {"hv:image": "x"}, "text", 7, None, []])
def test_entry_without_image_object_is_dropped(entry, caplog):
    result, warnings = _decode_with_images([entry, make_image(IMAGE_ID)], caplog)
    assert [i.identifier for i in result.images] == [IMAGE_ID]
    assert "image #0" in warnings[0]


@pytest.mark.parametrize(
    "identifier", ["../etc/passwd", "/etc/passwd", ".hidden", "-rf", "a b", "", "x" * 201, 42]
)
def test_unsafe_image_identifier_is_dropped(identifier, caplog):
    image = make_image(IMAGE_ID)
    image["dc:identifier"] = identifier
    result, warnings = _decode_with_images([image], caplog)
    assert result.images == ()
    assert "not a safe file name" in warnings[0]


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1048576, 1048576), ("121243136", 121243136), (" 42 ", 42), (0, 0), (2048.0, 2048)],
)
def test_size_as_number_or_numeric_string(size, expected):
    image = make_image(IMAGE_ID, size=size)
    assert _decode(_doc(images=[image])).images[0].size == expected


@pytest.mark.parametrize(
    "size", [-1, "-5", MAX_IMAGE_SIZE + 1, "1e9", "12 MB", 1.5, True, None, [], "", "0x10"]
)
def test_bad_size_drops_the_image(size, caplog):
    image = make_image(IMAGE_ID)
    image["hv:size"] = size
    result, warnings = _decode_with_images([image], caplog)
    assert result.images == ()
    assert "'hv:size'" in warnings[0]


def test_sha512_is_lowercased():
    _, digest = image_bytes("x", 10)
    image = make_image(IMAGE_ID, sha512=digest.upper())
    assert _decode(_doc(images=[image])).images[0].sha512 == digest


@pytest.mark.parametrize("digest", ["abc", "g" * 128, "a" * 127, "a" * 129, 12, None])
def test_bad_sha512_drops_the_image(digest, caplog):
    image = make_image(IMAGE_ID)
    image["sl:checksum:sha512"] = digest
    result, warnings = _decode_with_images([image], caplog)
    assert result.images == ()
    assert "sl:checksum:sha512" in warnings[0]


def test_non_text_image_field_drops_the_image(caplog):
    image = make_image(IMAGE_ID)
    image["sl:os"] = {"name": "Linux"}
    result, warnings = _decode_with_images([image], caplog)
    assert result.images == ()
    assert "'sl:os' must be a string" in warnings[0]


def test_numeric_image_fields_become_text():
    image = make_image(IMAGE_ID, osversion="x")
    image["sl:osversion"] = 9.4
    image["hv:version"] = 3
    decoded = _decode(_doc(images=[image])).images[0]
    assert (decoded.osversion, decoded.version) == ("9.4", "3")


def test_duplicate_identifiers_are_kept_for_the_caller_to_decide():
    images = [make_image(IMAGE_ID), make_image(IMAGE_ID)]
    assert len(_decode(_doc(images=images)).images) == 2


@pytest.mark.parametrize(("key", "limit"), [("dc:identifier", 255), ("hv:uri", 1024),
                                            ("hv:version", 255)])  # fmt: skip
def test_list_field_wider_than_its_column_is_38(key, limit):
    document = _doc()
    _body(document)[key] = "x" * (limit + 1)
    with pytest.raises(NotAnImageListError, match=f"'{key}' is longer than {limit}"):
        _decode(document)


@pytest.mark.parametrize("key", ["hv:dn", "hv:ca"])
def test_endorser_dn_wider_than_its_column_is_38(key):
    document = _doc()
    _body(document)["hv:endorser"]["hv:x509"][key] = "/CN=" + "x" * 1100
    with pytest.raises(NotAnImageListError, match=f"'{key}' is longer than 1024"):
        _decode(document)


@pytest.mark.parametrize(("key", "limit"), [("dc:title", 1024), ("sl:os", 255),
                                            ("hv:hypervisor", 255)])  # fmt: skip
def test_image_field_wider_than_its_column_drops_only_that_image(key, limit, caplog):
    wide = make_image(extra={key: "y" * (limit + 1)})
    document = _doc(images=[make_image(), wide])
    decoded = _decode(document)
    assert len(decoded.images) == 1
    assert wide["dc:identifier"] not in {image.identifier for image in decoded.images}
    [dropped] = decoded.dropped
    assert dropped.reason == f"'{key}' is longer than {limit} characters"


@pytest.mark.parametrize("key", ["dc:identifier", "hv:uri", "hv:version"])
def test_list_field_with_a_line_break_is_38(key):
    document = _doc()
    _body(document)[key] = "1\nERROR:main:forged log line"
    with pytest.raises(NotAnImageListError, match=f"'{key}' contains control characters"):
        _decode(document)
