"""What each database object looks like in the ``lines`` and ``json`` formats (docs/commands/*.md).

Each function returns either the ordered ``key=value`` lines of one block or the
dict that ``json`` prints for it. Layouts are byte-for-byte the original's,
apart from the fixed bugs: ``image.sl:arch`` prints the architecture (not the
hypervisor) and passwords are masked.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from vmcatcher.timeutil import format_time, utcnow

PASSWORD_MASK = "********"
TRUST_ANCHOR_NAMES = {0: "None", 1: "Browser", 2: "IGTF"}


def json_text(value: Any) -> str:
    """JSON as the original printed it: sorted keys, indent 4, no trailing newline.

    ``ensure_ascii`` (the default, as in the original) writes every control
    character of a list's text as a ``\\u`` escape: nothing raw reaches a terminal.
    """
    return json.dumps(value, sort_keys=True, indent=4)


def trust_anchor_name(value: int | None) -> str:
    """Display name of a stored trust anchor; unknown values are shown, not crashed on."""
    return TRUST_ANCHOR_NAMES.get(value or 0, f"Unknown({value})")


def _time_or_false(value: datetime | None) -> str:
    return format_time(value) if value is not None else "False"


def list_instance_is_expired(instance: Any, now: datetime | None = None) -> bool:
    """A stored list counts as expired once marked, or once its own expiry date passes."""
    if instance.expired is not None:
        return True
    moment = now or utcnow()
    return instance.expires is not None and instance.expires < moment


# --- lines -------------------------------------------------------------------


def subscription_lines(sub: Any) -> list[str]:
    lines = [
        f"imagelist.dc:identifier={sub.identifier}",
        f"subscription.dc:identifier={sub.identifier}",
        f"subscription.dc:description={sub.description}",
        f"subscription.sl:authorised={bool(sub.authorised)}",
        f"subscription.hv:uri={sub.uri}",
        f"subscription.hv:uri.trustAnchor={trust_anchor_name(sub.trust_anchor)}",
    ]
    if sub.username:
        lines.append(f"subscription.hv:uri.username={sub.username}")
    if sub.password:
        lines.append(f"subscription.hv:uri.password={PASSWORD_MASK}")
    lines.append(f"subscription.dc:date:updated={_time_or_false(sub.updated)}")
    lines.append(f"subscription.updateMode={sub.update_mode}")
    return lines


def list_instance_lines(instance: Any) -> list[str]:
    lines = []
    if instance.expired is not None:
        lines.append(f"imagelist.vmcatcher.dc:date:expired={format_time(instance.expired)}")
    lines.append(f"imagelist.expired={list_instance_is_expired(instance)}")
    lines.append(f"imagelist.dc:date:imported={format_time(instance.imported)}")
    lines.append(f"imagelist.dc:date:created={format_time(instance.created)}")
    lines.append(f"imagelist.dc:date:expires={format_time(instance.expires)}")
    return lines


def image_instance_lines(image: Any) -> list[str]:
    return [
        f"image.dc:description={image.description}",
        f"image.dc:title={image.title}",
        f"image.hv:hypervisor={image.hypervisor}",
        f"image.hv:size={image.size}",
        f"image.hv:uri={image.uri}",
        f"image.hv:version={image.version}",
        f"image.sl:arch={image.arch}",
        f"image.sl:checksum:sha512={image.sha512}",
        f"image.sl:comments={image.comments}",
        f"image.sl:os={image.os}",
        f"image.sl:osversion={image.osversion}",
    ]


def image_definition_lines(definition: Any) -> list[str]:
    return [f"imagedef.dc:identifier={definition.identifier}", f"imagedef.cache={definition.cache}"]


def principal_lines(principal: Any) -> list[str]:
    return [f"endorser:hv:subject={principal.hv_dn}", f"endorser:hv:issuer={principal.hv_ca}"]


# --- json --------------------------------------------------------------------


def subscription_json(sub: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "authorised": bool(sub.authorised),
        "description": sub.description,
        "identifier": sub.identifier,
        "updateMode": sub.update_mode,
        "updated": format_time(sub.updated) if sub.updated is not None else False,
        "uri": sub.uri,
        "uri.trustAnchor": trust_anchor_name(sub.trust_anchor),
    }
    if sub.username:
        record["uri.username"] = sub.username
    if sub.password:
        record["uri.password"] = PASSWORD_MASK
    return record


def list_instance_json(instance: Any) -> dict[str, Any]:
    return {
        "created": format_time(instance.created),
        "expires": format_time(instance.expires),
        "imported": format_time(instance.imported),
    }


def image_instance_json(image: Any) -> dict[str, Any]:
    return {
        "arch": image.arch,
        "comments": image.comments,
        "description": image.description,
        "hypervisor": image.hypervisor,
        "sha512": image.sha512,
        "size": image.size,
        "sl:os": image.os,
        "sl:osversion": image.osversion,
        "title": image.title,
        "uri": image.uri,
        "version": image.version,
    }


def image_definition_json(definition: Any) -> dict[str, Any]:
    return {"cache": definition.cache, "identifier": definition.identifier}


def endorser_json(endorser: Any) -> dict[str, Any]:
    return {"identifier": endorser.identifier}


def principal_json(principal: Any) -> dict[str, Any]:
    return {"issuer": principal.hv_ca, "subject": principal.hv_dn}
