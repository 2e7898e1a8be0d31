"""Builders for HEPiX image list JSON, shared by the whole test suite, demos and benchmarks.

Why: every layer (decoder, update service, cache, CLI end-to-end) needs
realistic lists; building them by hand in each test drifts from the format.
Defaults give a list that decodes and passes every check *now*: created five
minutes ago, expires in 30 days, images with a real sha512 of small
deterministic content (see :func:`image_bytes`), so a test server can serve
the exact bytes the list promises.

    data, digest = image_bytes("alma", 4096)
    image = make_image("c8bb4e9b-8e63-4ea5-8dca-979b3686e229", data=data,
                       uri="http://127.0.0.1:8000/alma.img")
    doc = make_image_list("251c2259-...", "http://127.0.0.1:8000/image.list", "1",
                          [image], pki.endorser.subject, pki.endorser.issuer)
    message = sign(list_payload(doc), pki.endorser)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "TIME_FORMAT",
    "image_bytes",
    "list_payload",
    "make_image",
    "make_image_list",
]

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def _when(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime(TIME_FORMAT)


def image_bytes(seed: str | int, size: int) -> tuple[bytes, str]:
    """Deterministic pseudo-random content of ``size`` bytes and its sha512 hex digest."""
    out = bytearray()
    counter = 0
    base = str(seed).encode()
    while len(out) < size:
        out += hashlib.sha512(base + counter.to_bytes(8, "big")).digest()
        counter += 1
    data = bytes(out[:size])
    return data, hashlib.sha512(data).hexdigest()


def make_image(
    identifier: str | None = None,
    *,
    data: bytes | None = None,
    uri: str | None = None,
    version: str = "1",
    title: str | None = None,
    description: str = "A test image.",
    arch: str = "x86_64",
    os: str = "Linux",
    osversion: str = "24.04",
    hypervisor: str = "KVM",
    comments: str = "",
    size: int | str | None = None,
    sha512: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``hv:image`` object (the inner dict) with all 12 required keys.

    ``size``/``sha512`` default to those of ``data`` (default: 1 KiB from
    :func:`image_bytes` seeded with the identifier). ``extra`` adds or overrides
    keys (``hv:format``, ``ad:mpuri``...).
    """
    identifier = identifier or str(uuid.uuid4())
    if data is None:
        data, _ = image_bytes(identifier, 1024)
    image: dict[str, Any] = {
        "dc:identifier": identifier,
        "dc:title": title or f"Test image {identifier}",
        "dc:description": description,
        "hv:size": len(data) if size is None else size,
        "sl:checksum:sha512": sha512 or hashlib.sha512(data).hexdigest(),
        "sl:arch": arch,
        "hv:uri": uri or f"https://images.example-grid.org/{identifier}.img",
        "sl:os": os,
        "sl:osversion": osversion,
        "sl:comments": comments,
        "hv:hypervisor": hypervisor,
        "hv:version": version,
        "hv:format": "raw",
    }
    image.update(extra or {})
    return image


def _entry(image: Any) -> Any:
    if not isinstance(image, Mapping):
        return image  # deliberately malformed entries pass through unchanged
    return dict(image) if "hv:image" in image else {"hv:image": dict(image)}


def make_image_list(
    identifier: str,
    uri: str,
    version: str,
    images: Iterable[Mapping[str, Any]],
    endorser_dn: str,
    endorser_ca: str,
    created: datetime | str | None = None,
    expires: datetime | str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete ``{"hv:imagelist": {...}}`` document.

    ``images`` items may be inner ``hv:image`` dicts (from :func:`make_image`) or
    already wrapped ``{"hv:image": {...}}`` entries; anything else (for malformed-list
    tests) is passed through unchanged.
    ``created`` defaults to five minutes ago, ``expires`` to 30 days from now
    (naive datetimes are UTC; strings are used verbatim). ``extra`` adds or
    overrides list-level keys (``ad:vo``...).
    """
    now = _utcnow()
    entries = [_entry(image) for image in images]
    body: dict[str, Any] = {
        "dc:date:created": _when(created if created is not None else now - timedelta(minutes=5)),
        "dc:date:expires": _when(expires if expires is not None else now + timedelta(days=30)),
        "dc:description": "Images endorsed for the example-grid.org test sites.",
        "dc:identifier": identifier,
        "dc:source": "https://images.example-grid.org/",
        "dc:title": f"Test list {identifier}",
        "hv:endorser": {
            "hv:x509": {
                "dc:creator": "Jane Endorser",
                "hv:ca": endorser_ca,
                "hv:dn": endorser_dn,
                "hv:email": "jane.endorser@example-grid.org",
            }
        },
        "hv:images": entries,
        "hv:uri": uri,
        "hv:version": version,
    }
    body.update(extra or {})
    return {"hv:imagelist": body}


def list_payload(document: Mapping[str, Any]) -> bytes:
    """The JSON bytes a publisher signs: sorted keys, 4-space indent, trailing newline."""
    return (json.dumps(document, indent=4, sort_keys=True) + "\n").encode("utf-8")
