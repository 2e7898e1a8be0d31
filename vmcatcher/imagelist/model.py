"""Typed, immutable image lists: what the rest of vmcatcher reads instead of raw JSON dicts.

Why: the original passed ``json`` dicts around and indexed them with string
keys everywhere, so a missing key crashed deep in the update, or came out as
code 34 for a KeyError (docs/compatibility.md, "image-list parsing"). Here the
decoder checks everything once and produces these objects; every consumer gets
attributes with known types.
``metadata`` keeps the raw key/value pairs (read-only) because the database
stores and the event handlers export fields this model does not name
(``hv:format``, ``ad:mpuri``, ``ad:vo``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["DroppedImage", "Endorser", "Image", "ImageList"]


@dataclass(frozen=True)
class Endorser:
    """``hv:endorser`` -> ``hv:x509`` of a list."""

    dn: str  # hv:dn, the signer's subject in OpenSSL slash form
    ca: str  # hv:ca, the signer's issuer in OpenSSL slash form
    email: str  # hv:email
    creator: str  # dc:creator


@dataclass(frozen=True)
class Image:
    """One ``hv:images[]`` -> ``hv:image`` entry that passed the decoder's checks."""

    identifier: str  # dc:identifier, a safe file name (vmcatcher.names.is_safe_name)
    title: str  # dc:title
    description: str  # dc:description
    size: int  # hv:size in bytes, 0 <= size <= MAX_IMAGE_SIZE
    sha512: str  # sl:checksum:sha512, 128 lower-case hex digits
    arch: str  # sl:arch
    uri: str  # hv:uri
    os: str  # sl:os
    osversion: str  # sl:osversion
    comments: str  # sl:comments
    hypervisor: str  # hv:hypervisor
    version: str  # hv:version
    metadata: Mapping[str, Any]  # every key of the hv:image object, read-only


@dataclass(frozen=True)
class DroppedImage:
    """An ``hv:images`` entry the decoder left out, and why (the caller logs it)."""

    position: int  # index in hv:images
    label: str  # the identifier as repr() when it is a string, else '#<position>'
    reason: str


@dataclass(frozen=True)
class ImageList:
    """A decoded ``hv:imagelist``; dates are naive UTC datetimes."""

    identifier: str  # dc:identifier
    description: str  # dc:description
    title: str  # dc:title
    source: str  # dc:source
    version: str  # hv:version
    uri: str  # hv:uri
    created: datetime  # dc:date:created
    expires: datetime  # dc:date:expires
    endorser: Endorser
    images: tuple[Image, ...]
    metadata: Mapping[str, Any]  # list keys except dc:date:*, hv:endorser, hv:images
    #: Entries of hv:images that could not be used (the list survives without them).
    dropped: tuple[DroppedImage, ...] = ()
    #: True for the deprecated flat form without the ``hv:imagelist`` wrapper.
    legacy_form: bool = False

    def image(self, identifier: str) -> Image | None:
        """The first image with this identifier, or ``None``."""
        for candidate in self.images:
            if candidate.identifier == identifier:
                return candidate
        return None
