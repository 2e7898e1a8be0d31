"""How long each stored text may be: one rule for the schema and for everything checked before it.

PostgreSQL enforces column widths and SQLite ignores them, so a value that
only the database would refuse makes the same signed list import on one
backend and fail on the other. The widths live here; the models declare their
columns with them, and the list decoder and the endorser service refuse (or
drop, for a single image) whatever would not fit, before the database is
touched.
"""

from __future__ import annotations

#: Identities and locations: DNs, URIs, endorser identifiers, titles.
LONG = 1024
#: Short tokens: UUIDs, versions, OS names, architectures, hypervisors.
SHORT = 255
#: A sha512 hex digest.
DIGEST = 128

#: Image fields stored in width-limited columns (ImageInstance, ImageDefinition).
IMAGE_FIELD_LIMITS = {
    "dc:identifier": SHORT,
    "dc:title": LONG,
    "hv:uri": LONG,
    "hv:hypervisor": SHORT,
    "hv:version": SHORT,
    "sl:arch": SHORT,
    "sl:os": SHORT,
    "sl:osversion": SHORT,
}

#: List fields stored in width-limited columns (subscription, imageListInstance).
LIST_FIELD_LIMITS = {
    "dc:identifier": SHORT,
    "hv:uri": LONG,
    "hv:version": SHORT,
}

#: Subject and issuer DNs (endorserPrincible).
DN_LIMIT = LONG


def too_long(value: object, limit: int) -> bool:
    """True when ``str(value)`` would not fit a column of ``limit`` characters."""
    return len(str(value)) > limit
