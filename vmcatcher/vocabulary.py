"""The words vmcatcher shares between its layers, each defined once.

Why one module: event type names, update-mode bits, trust anchors, the cache
flag and the image-state bits are stored in databases, exported to handlers
and printed by commands; a literal ``3`` or ``"ExpirePostfix"`` repeated in
several places drifts. Every value here is the original's (docs/events.md,
docs/commands/), so databases and handlers of existing sites keep working.
This module imports nothing of vmcatcher: every layer may use it.
"""

from __future__ import annotations

from enum import Enum, IntEnum, IntFlag

from vmcatcher.errors import UsageError


class EventType(str, Enum):
    """The event types handlers receive in ``VMCATCHER_EVENT_TYPE`` (docs/events.md)."""

    PROCESS_PREFIX = "ProcessPrefix"
    PROCESS_POSTFIX = "ProcessPostfix"
    AVAILABLE_PREFIX = "AvailablePrefix"
    AVAILABLE_POSTFIX = "AvailablePostfix"
    EXPIRE_PREFIX = "ExpirePrefix"
    EXPIRE_POSTFIX = "ExpirePostfix"
    SUBSCRIPTION_IMAGE_NEW = "SubscriptionImageNew"

    def __str__(self) -> str:
        return self.value


#: The original's README spells the expiry event ``ExpirePosfix``; its code has emitted
#: ``ExpirePostfix`` since 0.2.1. We emit only the latter (docs/events.md).
HISTORICAL_EXPIRE_POSTFIX = "ExpirePosfix"


class UpdateMode(IntFlag):
    """``subscription.updateMode``: what ``-U`` does with an image UUID it does not know.

    0 refuses it (``-U`` exits 32), ``ADD`` registers it unselected, ``ADD |
    SUBSCRIBE`` registers it selected for the cache.
    """

    REFUSE = 0
    ADD = 1
    SUBSCRIBE = 2

    @classmethod
    def from_option(cls, name: str) -> UpdateMode:
        """``refuse``/``accept``/``subscribe`` (the ``--imagelist-newimage-*`` options)."""
        return _NEWIMAGE_OPTIONS[name]


_NEWIMAGE_OPTIONS = {
    "refuse": UpdateMode.REFUSE,
    "accept": UpdateMode.ADD,
    "subscribe": UpdateMode.ADD | UpdateMode.SUBSCRIBE,
}


class Caching(IntEnum):
    """``ImageDefinition.cache``: whether ``vmcatcher_cache`` keeps the image."""

    OFF = 0
    ON = 1


class ImageState(IntFlag):
    """The state column of ``vmcatcher_image -l``: ``cache + 2 * available``."""

    KNOWN = 0
    SUBSCRIBED = 1
    AVAILABLE = 2


class TrustAnchor(IntEnum):
    """How the HTTPS server of an image list is authenticated (``subscription.trustAnchor``)."""

    NONE = 0
    BROWSER = 1
    IGTF = 2

    @property
    def label(self) -> str:
        """The name shown by ``-l``/``-i`` output: ``None``, ``Browser`` or ``IGTF``."""
        return _ANCHOR_LABELS[self]

    @classmethod
    def parse(cls, text: object) -> TrustAnchor:
        """``none``/``browser``/``igtf`` (any case) -> member; anything else -> UsageError."""
        key = text.strip().lower() if isinstance(text, str) else ""
        for member in cls:
            if member.label.lower() == key:
                return member
        shown = text.strip().lower() if isinstance(text, str) else text
        raise UsageError(
            f"Invalid trust anchor value '{shown}': allowed trust anchors 'none', 'browser', 'igtf'"
        )

    @classmethod
    def label_of(cls, value: int | None) -> str:
        """Display name of a stored value; unknown values are shown, not crashed on."""
        try:
            return cls(value or 0).label
        except ValueError:
            return f"Unknown({value})"


_ANCHOR_LABELS = {
    TrustAnchor.NONE: "None",
    TrustAnchor.BROWSER: "Browser",
    TrustAnchor.IGTF: "IGTF",
}


class CacheAction(str, Enum):
    """The actions of one ``vmcatcher_cache`` run, always in this order."""

    EXPIRE = "expire"
    CHECK = "sha512"
    DOWNLOAD = "download"
