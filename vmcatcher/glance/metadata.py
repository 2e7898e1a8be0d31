"""Glance name and properties of one image, derived from its cache index entry (no I/O).

Why derived from the entry: the ``VMCATCHER_EVENT_*`` variables handlers see
come from the same entry (:func:`vmcatcher.events.event_variables`), so a site
moving from an event-handler upload script to ``vmcatcher_glance`` finds the
same values under the lower-cased names (docs/glance.md, "Properties").
Every value comes from a remote list: control characters are removed and
lengths bounded before anything reaches Glance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from vmcatcher.events import event_variables
from vmcatcher.glance.model import (
    EVENT_PROPERTY_PREFIX,
    PROP_APPLIANCE,
)

#: Glance refuses names longer than this.
MAX_NAME = 255
#: Longest property value we send (the record as JSON is the only long one).
MAX_VALUE = 65535
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_IMAGE_PREFIX = "hv:image."
_MISSING = {"", "None", "none", "null"}


def clean_text(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` as one line without control characters, at most ``limit`` characters."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return _CONTROL.sub(" ", text).strip()[:limit]


def image_name(entry: Mapping[str, Any], prefix: str = "") -> str:
    """``--name-prefix`` + ``dc:title`` (the identifier when the title is missing)."""
    title = clean_text(entry.get("dc:title", ""))
    if title in _MISSING:
        title = clean_text(entry.get("dc:identifier", ""))
    return clean_text(prefix + title, MAX_NAME)


def appliance_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The image's own HEPiX record (the ``hv:image.*`` keys of the entry)."""
    return {k[len(_IMAGE_PREFIX) :]: v for k, v in entry.items() if k.startswith(_IMAGE_PREFIX)}


def standard_properties(entry: Mapping[str, Any]) -> dict[str, str]:
    """``os_distro``/``os_version``/``architecture`` where the list gives them."""
    record = appliance_record(entry)
    found: dict[str, str] = {}
    distro = record.get("sl:osname") or entry.get("sl:os")
    if distro is not None and clean_text(distro) not in _MISSING:
        found["os_distro"] = clean_text(distro, 255).lower().replace(" ", "")
    version = entry.get("sl:osversion", record.get("sl:osversion"))
    if version is not None and clean_text(version) not in _MISSING:
        found["os_version"] = clean_text(version, 255)
    arch = entry.get("sl:arch", record.get("sl:arch"))
    if arch is not None and clean_text(arch) not in _MISSING:
        found["architecture"] = clean_text(arch, 255).lower()
    return found


def image_properties(entry: Mapping[str, Any]) -> dict[str, str]:
    """Every property we set: ``vmcatcher_event_*``, APPLIANCE_ATTRIBUTES, standard ones."""
    properties: dict[str, str] = {}
    for variable, value in event_variables(entry).items():
        name = EVENT_PROPERTY_PREFIX + variable[len("VMCATCHER_EVENT_") :].lower()
        properties[name] = clean_text(value)
    properties[PROP_APPLIANCE] = json.dumps(
        appliance_record(entry), sort_keys=True, ensure_ascii=True, default=str
    )[:MAX_VALUE]
    properties.update(standard_properties(entry))
    return properties
