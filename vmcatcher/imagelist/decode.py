"""Turn a verified payload into an :class:`ImageList`, or say in one line why it is not one.

Why: the payload is signed, but signed by a remote publisher; a signature says
who wrote it, not that it is well formed. The original crashed on invalid
JSON, bad dates, an array-valued endorser or non-object images
(docs/compatibility.md, "image-list parsing"), and one crash stopped every other
subscription's update. Here every structural problem becomes
:class:`~vmcatcher.errors.InvalidJSONError` (37) or
:class:`~vmcatcher.errors.NotAnImageListError` (38).

What is kept from the reference decoder (hepixvmitrust): the ``hv:imagelist``
wrapper or the legacy flat form (with a warning), the required list and
endorser keys, unknown keys preserved, and images lacking a required key
*dropped* -- the list survives with fewer images. What is added: each dropped
image is returned with its reason (:attr:`ImageList.dropped`, which the services
log as WARNINGs; this module never logs), and an image is also dropped when its values
cannot be used safely: an identifier that is not a safe file name (path
traversal, docs/compatibility.md), a size that is not a non-negative integer of
sane magnitude, a checksum that is not 128 hex digits, or text fields that
are not strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from vmcatcher.errors import InvalidJSONError, NotAnImageListError, first_line
from vmcatcher.imagelist.model import DroppedImage, Endorser, Image, ImageList
from vmcatcher.jsondepth import nesting_depth
from vmcatcher.limits import DN_LIMIT, IMAGE_FIELD_LIMITS, LIST_FIELD_LIMITS, too_long
from vmcatcher.names import is_safe_name
from vmcatcher.timeutil import parse_list_date

__all__ = [
    "ENDORSER_KEYS",
    "IMAGE_KEYS",
    "LIST_KEYS",
    "MAX_IMAGE_SIZE",
    "decode_image_list",
    "parse_payload",
]

LIST_KEYS = (
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
)
ENDORSER_KEYS = ("hv:dn", "hv:ca", "hv:email", "dc:creator")
IMAGE_KEYS = (
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
)
MAX_IMAGE_SIZE = 2**50  # 1 PiB: anything larger is a typo or an attack
MAX_JSON_DEPTH = 64  # arrays/objects inside each other; real lists use about six
# Line breaks and other control characters would forge log lines and break the lines format.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA512 = re.compile(r"[0-9a-fA-F]{128}")
_DECIMAL = re.compile(r"[0-9]{1,20}")


class _Invalid(ValueError):
    """A value that cannot be used; the message names the key."""


def _text(container: Mapping[str, Any], key: str) -> str:
    """A required text value; numbers are accepted as their decimal text."""
    value = container[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"'{key}' must be a string, not {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise _Invalid(f"'{key}' contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"'{key}' contains an unpaired surrogate") from None
    return text


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid("'hv:size' must be a number")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        size = int(value.strip())
    else:
        raise _Invalid(f"'hv:size' {value!r} is not a whole number of bytes")
    if size < 0 or size > MAX_IMAGE_SIZE:
        raise _Invalid(f"'hv:size' {size} is out of range (0..{MAX_IMAGE_SIZE})")
    return size


def parse_payload(payload: bytes | str) -> Any:
    """``json.loads`` with the failures mapped to :class:`InvalidJSONError` (37)."""
    try:
        document = json.loads(payload)
    except (ValueError, TypeError, RecursionError) as error:
        raise InvalidJSONError(
            f"the signed payload is not valid JSON: {first_line(error)}"
        ) from None
    if document is None:
        raise InvalidJSONError("the signed payload is JSON null, not an image list")
    if nesting_depth(document) > MAX_JSON_DEPTH:  # a fixed limit: see vmcatcher.jsondepth
        raise InvalidJSONError(
            f"the signed payload is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )
    return document


def _endorser(body: Mapping[str, Any]) -> Endorser:
    raw = body["hv:endorser"]
    if isinstance(raw, list):
        raise NotAnImageListError(
            "'hv:endorser' is an array (multi-endorser form); one "
            '{"hv:x509": {...}} object is required'
        )
    if not isinstance(raw, dict) or not isinstance(raw.get("hv:x509"), dict):
        raise NotAnImageListError("'hv:endorser' must be an object holding an 'hv:x509' object")
    x509 = raw["hv:x509"]
    missing = [key for key in ENDORSER_KEYS if key not in x509]
    if missing:
        raise NotAnImageListError(
            "endorser 'hv:x509' lacks required key(s) " + ", ".join(f"'{k}'" for k in missing)
        )
    try:
        for key in ("hv:dn", "hv:ca"):
            if too_long(_text(x509, key), DN_LIMIT):
                raise _Invalid(f"'{key}' is longer than {DN_LIMIT} characters")
        return Endorser(
            dn=_text(x509, "hv:dn"),
            ca=_text(x509, "hv:ca"),
            email=_text(x509, "hv:email"),
            creator=_text(x509, "dc:creator"),
        )
    except _Invalid as error:
        raise NotAnImageListError(f"endorser {error}") from None


def _image(entry: Any, position: int) -> Image | DroppedImage:
    """Decode one ``{"hv:image": {...}}`` entry, or say why it is dropped."""
    label = f"#{position}"
    raw = entry.get("hv:image") if isinstance(entry, dict) else None
    if not isinstance(raw, dict):
        return DroppedImage(position, label, 'not an {"hv:image": {...}} object')
    identifier = raw.get("dc:identifier")
    if isinstance(identifier, str):
        label = repr(identifier)
    missing = [key for key in IMAGE_KEYS if key not in raw]
    if missing:
        keys = ", ".join(f"'{k}'" for k in missing)
        return DroppedImage(position, label, f"missing required key(s) {keys}")
    if not isinstance(identifier, str) or not is_safe_name(identifier):
        return DroppedImage(position, label, "'dc:identifier' is not a safe file name")
    try:
        sha512 = _text(raw, "sl:checksum:sha512")
        if not _SHA512.fullmatch(sha512):
            raise _Invalid("'sl:checksum:sha512' is not 128 hexadecimal digits")
        for key, limit in IMAGE_FIELD_LIMITS.items():
            if too_long(_text(raw, key), limit):
                raise _Invalid(f"'{key}' is longer than {limit} characters")
        return Image(
            identifier=identifier,
            title=_text(raw, "dc:title"),
            description=_text(raw, "dc:description"),
            size=_size(raw["hv:size"]),
            sha512=sha512.lower(),
            arch=_text(raw, "sl:arch"),
            uri=_text(raw, "hv:uri"),
            os=_text(raw, "sl:os"),
            osversion=_text(raw, "sl:osversion"),
            comments=_text(raw, "sl:comments"),
            hypervisor=_text(raw, "hv:hypervisor"),
            version=_text(raw, "hv:version"),
            metadata=MappingProxyType(dict(raw)),
        )
    except _Invalid as error:
        return DroppedImage(position, label, str(error))


def decode_image_list(payload: bytes | str) -> ImageList:
    """Decode a verified payload; raise 37/38 errors with one-line messages."""
    document = parse_payload(payload)
    if not isinstance(document, dict):
        raise NotAnImageListError(
            f"the signed payload is a JSON {type(document).__name__}, not an image list object"
        )
    legacy = "hv:imagelist" not in document
    body = document if legacy else document["hv:imagelist"]
    if not isinstance(body, dict):
        raise NotAnImageListError("'hv:imagelist' must be a JSON object")
    missing = [key for key in LIST_KEYS if key not in body]
    if missing:
        raise NotAnImageListError(
            "image list lacks required key(s) " + ", ".join(f"'{k}'" for k in missing)
        )
    try:
        identifier = _text(body, "dc:identifier")
        texts = {
            key: _text(body, key)
            for key in ("dc:description", "dc:title", "dc:source", "hv:version", "hv:uri")
        }
    except _Invalid as error:
        raise NotAnImageListError(f"image list {error}") from None
    for key, limit in LIST_FIELD_LIMITS.items():
        if too_long(identifier if key == "dc:identifier" else texts[key], limit):
            raise NotAnImageListError(f"image list '{key}' is longer than {limit} characters")
        if _CONTROL.search(identifier if key == "dc:identifier" else texts[key]):
            raise NotAnImageListError(f"image list '{key}' contains control characters")
    dates = {}
    for key in ("dc:date:created", "dc:date:expires"):
        try:
            dates[key] = parse_list_date(body[key])
        except NotAnImageListError as error:
            raise NotAnImageListError(f"image list '{key}': {error}") from None
    endorser = _endorser(body)
    raw_images = body["hv:images"]
    if not isinstance(raw_images, list):
        raise NotAnImageListError("'hv:images' must be a JSON array")
    images: list[Image] = []
    dropped: list[DroppedImage] = []
    for position, entry in enumerate(raw_images):
        decoded = _image(entry, position)
        if isinstance(decoded, Image):
            images.append(decoded)
        else:
            dropped.append(decoded)
    metadata = {
        key: value
        for key, value in body.items()
        if not key.startswith("dc:date:") and key not in ("hv:endorser", "hv:images")
    }
    return ImageList(
        identifier=identifier,
        description=texts["dc:description"],
        title=texts["dc:title"],
        source=texts["dc:source"],
        version=texts["hv:version"],
        uri=texts["hv:uri"],
        created=dates["dc:date:created"],
        expires=dates["dc:date:expires"],
        endorser=endorser,
        images=tuple(images),
        metadata=MappingProxyType(metadata),
        dropped=tuple(dropped),
        legacy_form=legacy,
    )
