"""The shared vocabulary of the Glance synchroniser: statuses, visibilities, actions, images.

Why one module: the planner, the adapter and the service must agree on what an
image of ours is and what may be done to it; keeping the words here (as enums
and frozen dataclasses) keeps the planner free of I/O and the adapter free of
decisions (docs/glance.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

#: The tag marking every image this tool manages (``--tag``).
DEFAULT_TAG = "vmcatcher"
#: Prefix of the properties derived from the ``VMCATCHER_EVENT_*`` variables.
EVENT_PROPERTY_PREFIX = "vmcatcher_event_"
#: Which image of the list an image of ours is (its ``dc:identifier``).
PROP_IDENTIFIER = "vmcatcher_event_dc_identifier"
#: The list's sha512 of the image's bytes (of the original, when we converted it).
PROP_SHA512 = "vmcatcher_event_sl_checksum_sha512"
#: The image's HEPiX record as JSON, as atrope sets it.
PROP_APPLIANCE = "APPLIANCE_ATTRIBUTES"
#: Set only when we converted: the format of the cached original (e.g. ``vmdk``, ``ova``).
PROP_SOURCE_FORMAT = "vmcatcher_source_format"
#: Properties of ours that are not event variables (removed when no longer wanted).
OWN_PROPERTIES = frozenset({PROP_APPLIANCE, PROP_SOURCE_FORMAT})
#: Standard properties we set from the list when it gives them.
STANDARD_PROPERTIES = ("os_distro", "os_version", "architecture")


class ImageStatus(str, enum.Enum):
    """Glance's image statuses (API v2)."""

    QUEUED = "queued"
    SAVING = "saving"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    KILLED = "killed"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"

    @classmethod
    def parse(cls, value: object) -> ImageStatus | None:
        try:
            return cls(str(value))
        except ValueError:
            return None


#: An image of ours in one of these is the leftover of an interrupted upload.
UNFINISHED = frozenset(
    {
        ImageStatus.QUEUED,
        ImageStatus.SAVING,
        ImageStatus.UPLOADING,
        ImageStatus.IMPORTING,
        ImageStatus.KILLED,
    }
)
#: Statuses of an image whose data is complete.
USABLE = frozenset({ImageStatus.ACTIVE, ImageStatus.DEACTIVATED})


class Visibility(str, enum.Enum):
    PRIVATE = "private"
    SHARED = "shared"
    COMMUNITY = "community"
    PUBLIC = "public"


class ActionKind(str, enum.Enum):
    """What the service may do to Glance, in the order a plan lists them."""

    REMOVE_LEFTOVER = "remove-leftover"  # delete an unfinished upload of ours
    UPLOAD = "upload"  # create and upload a new image
    REACTIVATE = "reactivate"  # a deactivated image of ours is wanted again
    UPDATE = "update"  # metadata only: name, visibility, properties
    MEMBERS = "members"  # add/remove projects of a shared image
    RETIRE = "retire"  # delete; when refused, deactivate and make private


@dataclass(frozen=True)
class DesiredImage:
    """One image that should be in Glance: cached, verified, selected and available."""

    identifier: str
    sha512: str
    size: int
    path: Path
    name: str
    properties: dict[str, str]
    visibility: Visibility = Visibility.PRIVATE
    members: frozenset[str] = frozenset()
    declared_format: str = ""  # hv:format as the list says (never trusted alone)


@dataclass(frozen=True)
class ActualImage:
    """One Glance image carrying our tag, as the adapter read it."""

    id: str
    name: str
    status: ImageStatus | None
    visibility: str
    protected: bool
    properties: dict[str, str]
    os_hash_value: str | None = None
    created_at: str = ""
    members: frozenset[str] | None = None  # read only for shared images

    @property
    def identifier(self) -> str | None:
        return self.properties.get(PROP_IDENTIFIER)

    @property
    def sha512(self) -> str | None:
        return self.properties.get(PROP_SHA512)


@dataclass(frozen=True)
class Action:
    """One step of a plan; ``after_upload`` makes it wait for that identifier's upload."""

    kind: ActionKind
    identifier: str | None
    image_id: str | None = None
    desired: DesiredImage | None = None
    name: str | None = None
    visibility: str | None = None
    set_properties: dict[str, str] = field(default_factory=dict)
    remove_properties: tuple[str, ...] = ()
    add_members: tuple[str, ...] = ()
    remove_members: tuple[str, ...] = ()
    after_upload: bool = False
    reason: str = ""

    @property
    def glance_id(self) -> str:
        """The Glance image this step acts on (every kind but an upload names one)."""
        if self.image_id is None:
            raise ValueError(f"{self.kind.value} of {self.identifier!r} names no image")
        return self.image_id

    def describe(self) -> str:
        """One line for ``--dry-run`` and the log."""
        target = self.image_id or "(new image)"
        what = f"{self.kind.value} {self.identifier or '?'} {target}"
        return f"{what}: {self.reason}" if self.reason else what
