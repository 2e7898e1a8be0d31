"""The only module talking to OpenStack: Glance API v2 through openstacksdk's session.

Why raw REST on the SDK's authenticated adapter: authentication (``clouds.yaml``,
``OS_CLOUD``, ``--os-cloud``, application credentials) is the SDK's job, but the
image calls must be exact: custom properties are changed with one JSON patch
(the SDK's ``update_image`` drops properties it does not know), listing filters
on our tag server-side, and uploads stream from an open file. Every answer is
remote input: statuses are parsed into :class:`ImageStatus`, and errors become
one-line :class:`~vmcatcher.errors.GlanceError` messages (docs/glance.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, BinaryIO

from vmcatcher.errors import GlanceError
from vmcatcher.glance.model import ActualImage, ImageStatus
from vmcatcher.safetext import escape_controls

log = logging.getLogger("vmcatcher.glance")

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
#: Stop listing after this many pages (a hostile or broken server could page for ever).
MAX_PAGES = 1000
PAGE_SIZE = 200
#: Core image attributes: everything else in an image record is a property.
CORE_FIELDS = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
        "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "min_ram",
        "min_disk", "disk_format", "container_format", "created_at", "updated_at", "tags",
        "self", "file", "schema", "direct_url", "locations", "stores",
    }
)  # fmt: skip
READ_CHUNK = 1024 * 1024


class RefusedError(GlanceError):
    """Glance answered 403 or 409 to a change (e.g. a protected or in-use image)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


_TAG = re.compile(r"<[^>]{0,200}>")


def _short(text: object, limit: int = 200) -> str:
    """A server's text as one short line (HTML error pages reduced to their words)."""
    return escape_controls(" ".join(_TAG.sub(" ", str(text)).split()))[:limit]


class _ProgressReader:
    """A file reader with a length (so requests sends Content-Length) and a progress hook."""

    def __init__(self, handle: BinaryIO, size: int, progress: Callable[[int], None] | None):
        self.handle = handle
        self.size = size
        self.progress = progress
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        wanted = READ_CHUNK if amount is None or amount < 0 else max(amount, READ_CHUNK)
        data = self.handle.read(min(wanted, self.size - self.sent))
        self.sent += len(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


def connect(cloud: str | None, timeout: float = 60.0) -> GlanceClient:
    """Authenticate like every OpenStack client (clouds.yaml, ``OS_CLOUD``, ``OS_*``)."""
    try:
        import openstack
        import openstack.config
    except ImportError as error:
        raise GlanceError(
            "openstacksdk is not installed: pip install 'vmcatcher[openstack]'"
        ) from error
    try:
        connection = openstack.connect(cloud=cloud, api_timeout=timeout)
        adapter = connection.image
        adapter.get_endpoint()
    except Exception as error:  # the SDK raises many types for config and auth failures
        raise GlanceError(f"Cannot connect to the image service: {_short(error)}") from error
    return GlanceClient(adapter)


class GlanceClient:
    """Glance v2 calls on an authenticated keystoneauth adapter (``connection.image``)."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    # --- plumbing -------------------------------------------------------------------

    def _call(self, method: str, url: str, what: str, ok: tuple[int, ...], **kwargs: Any) -> Any:
        try:
            response = self.adapter.request(url, method, raise_exc=False, **kwargs)
        except Exception as error:  # keystoneauth connection/timeout errors
            raise GlanceError(f"Glance: {what}: {_short(error)}") from error
        if response.status_code in ok:
            return response
        detail = _short(getattr(response, "text", ""), 160)
        message = f"Glance refused to {what} (HTTP {response.status_code}): {detail}"
        if response.status_code in (403, 409):
            raise RefusedError(message, response.status_code)
        raise GlanceError(message)

    @staticmethod
    def _json(response: Any, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as error:
            raise GlanceError(f"Glance: {what}: the answer is not JSON") from error
        if not isinstance(data, dict):
            raise GlanceError(f"Glance: {what}: the answer is not a JSON object")
        return data

    @staticmethod
    def parse_image(record: dict[str, Any]) -> ActualImage:
        if not isinstance(record.get("id"), str):
            raise GlanceError("Glance: an image record without an id")
        properties = {
            str(k): v for k, v in record.items() if k not in CORE_FIELDS and isinstance(v, str)
        }
        return ActualImage(
            id=record["id"],
            name=str(record.get("name") or ""),
            status=ImageStatus.parse(record.get("status")),
            visibility=str(record.get("visibility") or ""),
            protected=record.get("protected") is True,
            properties=properties,
            os_hash_value=record.get("os_hash_value") if record.get("os_hash_algo") in
            (None, "sha512") else None,
            created_at=str(record.get("created_at") or ""),
        )  # fmt: skip

    # --- reading ------------------------------------------------------------------

    def images(self, tag: str) -> list[ActualImage]:
        """Every image carrying ``tag`` (filtered by the server), all pages.

        Glance leaves community images out of a plain listing, so they are asked
        for separately.
        """
        found: dict[str, ActualImage] = {}
        for visibility in (None, "community"):
            for image in self._list(tag, visibility):
                found.setdefault(image.id, image)
        return list(found.values())

    def _list(self, tag: str, visibility: str | None) -> list[ActualImage]:
        found: list[ActualImage] = []
        url = "/images"
        query: dict[str, Any] = {"tag": tag, "limit": PAGE_SIZE}
        if visibility:
            query["visibility"] = visibility
        params: dict[str, Any] | None = query
        for _page in range(MAX_PAGES):
            response = self._call("GET", url, "list images", (200,), params=params)
            data = self._json(response, "list images")
            records = data.get("images")
            if not isinstance(records, list):
                raise GlanceError("Glance: list images: no 'images' list in the answer")
            found.extend(self.parse_image(r) for r in records if isinstance(r, dict))
            following = data.get("next")
            if not following or not isinstance(following, str):
                return found
            url = following.removeprefix("/v2")
            params = None
        raise GlanceError(f"Glance: list images: more than {MAX_PAGES} pages")

    def image(self, image_id: str) -> ActualImage:
        response = self._call("GET", f"/images/{image_id}", f"read image {image_id}", (200,))
        return self.parse_image(self._json(response, "read image"))

    def members(self, image_id: str) -> frozenset[str]:
        response = self._call("GET", f"/images/{image_id}/members", "list members", (200,))
        records = self._json(response, "list members").get("members") or []
        return frozenset(
            str(r["member_id"]) for r in records if isinstance(r, dict) and "member_id" in r
        )

    # --- changing -----------------------------------------------------------------

    def create(
        self,
        name: str,
        disk_format: str,
        visibility: str,
        tag: str,
        properties: dict[str, str],
    ) -> str:
        """A queued image record with every property and our tag (the crash-safe first step)."""
        body: dict[str, Any] = dict(properties)
        body.update(
            name=name,
            disk_format=disk_format,
            container_format="bare",
            visibility=visibility,
            tags=[tag],
        )
        response = self._call("POST", "/images", f"create image '{name}'", (201,), json=body)
        image_id = self._json(response, "create image").get("id")
        if not isinstance(image_id, str):
            raise GlanceError("Glance: create image: no id in the answer")
        return image_id

    def upload(
        self,
        image_id: str,
        handle: BinaryIO,
        size: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream ``size`` bytes from ``handle`` (bounded memory: one chunk at a time)."""
        reader = _ProgressReader(handle, size, progress)
        self._call(
            "PUT",
            f"/images/{image_id}/file",
            f"upload image {image_id}",
            (204, 201, 200),
            data=reader,
            headers={"Content-Type": "application/octet-stream"},
        )

    def patch(self, image_id: str, operations: list[dict[str, Any]]) -> None:
        if not operations:
            return
        self._call(
            "PATCH",
            f"/images/{image_id}",
            f"update image {image_id}",
            (200,),
            json=operations,
            headers={"Content-Type": PATCH_TYPE},
        )

    def delete(self, image_id: str) -> None:
        self._call("DELETE", f"/images/{image_id}", f"delete image {image_id}", (204, 404))

    def deactivate(self, image_id: str) -> None:
        self._call("POST", f"/images/{image_id}/actions/deactivate",
                   f"deactivate image {image_id}", (204,))  # fmt: skip

    def reactivate(self, image_id: str) -> None:
        self._call("POST", f"/images/{image_id}/actions/reactivate",
                   f"reactivate image {image_id}", (204,))  # fmt: skip

    def add_member(self, image_id: str, project: str) -> None:
        self._call("POST", f"/images/{image_id}/members", f"share image {image_id}",
                   (200, 409), json={"member": project})  # fmt: skip
        try:  # accepting is the member's call; an admin may do it for them
            self._call("PUT", f"/images/{image_id}/members/{project}",
                       f"accept membership of {project}", (200,),
                       json={"status": "accepted"})  # fmt: skip
        except GlanceError as error:
            log.debug("%s", error)

    def remove_member(self, image_id: str, project: str) -> None:
        self._call("DELETE", f"/images/{image_id}/members/{project}",
                   f"unshare image {image_id}", (204, 404))  # fmt: skip
