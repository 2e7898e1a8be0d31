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
from vmcatcher.vocabulary import TrustAnchor

PASSWORD_MASK = "********"


def json_text(value: Any) -> str:
    """JSON as the original printed it: sorted keys, indent 4, no trailing newline.

    ``ensure_ascii`` (the default, as in the original) writes every control
    character of a list's text as a ``\\u`` escape: nothing raw reaches a terminal.
    """
    return json.dumps(value, sort_keys=True, indent=4)


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
        f"subscription.hv:uri.trustAnchor={TrustAnchor.label_of(sub.trust_anchor)}",
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
        "uri.trustAnchor": TrustAnchor.label_of(sub.trust_anchor),
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


# --- views assembled from several records -------------------------------------


def subscription_list_line(sub: Any) -> str:
    """One line of ``vmcatcher_subscribe -l``: identifier, authorised, trust anchor, URI."""
    anchor = TrustAnchor.label_of(sub.trust_anchor)
    return f"{sub.identifier}\t{bool(sub.authorised)}\t{anchor}\t{sub.uri}"


def subscription_list_json(sub: Any) -> dict[str, Any]:
    """One entry of ``vmcatcher_subscribe -l -f json``."""
    return {"authorised": bool(sub.authorised), "identifier": sub.identifier, "uri": sub.uri}


def subscription_images_lines(sub: Any, instance: Any | None) -> list[str]:
    """``vmcatcher_subscribe --image-list``: the subscription, its list, its images."""
    lines = subscription_lines(sub)
    if instance is not None:
        lines += list_instance_lines(instance)
    for definition in sub.image_definitions:
        lines += image_definition_lines(definition)
    return lines


def subscription_images_json(sub: Any, instance: Any | None) -> dict[str, Any]:
    """``vmcatcher_subscribe --image-list -f json``."""
    record: dict[str, Any] = {"Subscription": subscription_json(sub)}
    if instance is not None:
        record["ImageListInstance"] = list_instance_json(instance)
    record["ImageDefinition"] = [image_definition_json(d) for d in sub.image_definitions]
    return record


def image_state_line(state: Any) -> str:
    """One line of ``vmcatcher_image -l``: image, state bitmap, subscription."""
    return f"{state.image}\t{state.state}\t{state.subscription}"


def image_state_json(state: Any) -> dict[str, Any]:
    return {"image": state.image, "state": state.state, "subscription": state.subscription}


def image_detail_lines(row: Any) -> list[str]:
    """``vmcatcher_image -i``: one image in its subscription's latest list, with the signer."""
    return [
        *subscription_lines(row.subscription),
        *list_instance_lines(row.list_instance),
        *image_instance_lines(row.image),
        *image_definition_lines(row.definition),
        *principal_lines(row.principal),
    ]


def image_detail_json(row: Any) -> dict[str, Any]:
    return {
        "Endorser": endorser_json(row.endorser),
        "EndorserPrincible": principal_json(row.principal),
        "ImageDefinition": image_definition_json(row.definition),
        "ImageInstance": image_instance_json(row.image),
        "ImageListInstance": list_instance_json(row.list_instance),
        "Subscription": subscription_json(row.subscription),
        "SubscriptionAuth": {},
    }


def image_without_list_lines(sub: Any, definition: Any) -> list[str]:
    """``vmcatcher_image -i`` for an image whose subscription needs an update."""
    return [*subscription_lines(sub), *image_definition_lines(definition)]


def image_without_list_json(sub: Any, definition: Any) -> dict[str, Any]:
    return {
        "ImageDefinition": image_definition_json(definition),
        "Subscription": subscription_json(sub),
    }


def endorser_principal_line(endorser: Any, principal: Any) -> str:
    """One line of ``vmcatcher_endorser -l``."""
    return f"'{endorser.identifier}'\t'{principal.hv_dn}'\t'{principal.hv_ca}'"


def endorser_principals_json(pairs: Any) -> list[dict[str, Any]]:
    """``vmcatcher_endorser -l -f json``: one record per endorser with its principals."""
    grouped: dict[int, dict[str, Any]] = {}
    for endorser, principal in pairs:
        record = grouped.setdefault(endorser.id, {"endorser": endorser.identifier})
        record.setdefault("princibles", []).append(
            {"issuer": principal.hv_ca, "subject": principal.hv_dn}
        )
    return list(grouped.values())


def endorser_link_line(link: Any) -> str:
    """One line of ``vmcatcher_endorser --links``."""
    return f"'{link.endorser}'\t'{link.subscription}'\t'{link.authorised}'"


def endorser_link_json(link: Any) -> dict[str, Any]:
    return {
        "authorised": link.authorised,
        "endorser": link.endorser,
        "subscription": link.subscription,
    }


def endorser_info_json(endorser: Any, subscriptions: Any) -> dict[str, Any]:
    """``vmcatcher_endorser -i -f json``."""
    return {
        "Princables": [{"hv:ca": p.hv_ca, "hv:dn": p.hv_dn} for p in endorser.principals],
        "Subscription": [subscription_json(s) for s in subscriptions],
    }


def endorser_identity_lines(endorser: Any) -> list[str]:
    return [f"endorser.dc:identifier={endorser.identifier}"]


def endorser_credential_lines(principal: Any) -> list[str]:
    return [f"endorser.hv:dn={principal.hv_dn}", f"endorser.hv:ca={principal.hv_ca}"]
