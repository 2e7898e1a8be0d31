"""The verifying core's content half: signed payload bytes -> a typed, checked image list.

:func:`decode_image_list` builds an immutable :class:`ImageList` or raises
37/38; :mod:`vmcatcher.imagelist.checks` holds the post-verification checks
(endorser, identifier, dates) in the original's order.
"""

from vmcatcher.imagelist.checks import (
    check_dates,
    check_endorser,
    check_identifier,
    check_update,
    uri_matches,
)
from vmcatcher.imagelist.decode import MAX_IMAGE_SIZE, decode_image_list, parse_payload
from vmcatcher.imagelist.model import DroppedImage, Endorser, Image, ImageList

__all__ = [
    "MAX_IMAGE_SIZE",
    "DroppedImage",
    "Endorser",
    "Image",
    "ImageList",
    "check_dates",
    "check_endorser",
    "check_identifier",
    "check_update",
    "decode_image_list",
    "parse_payload",
    "uri_matches",
]
