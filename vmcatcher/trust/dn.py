"""Distinguished names in the original's slash ("oneline") form, and how to compare them.

Why: image lists name their endorser as ``hv:dn``/``hv:ca`` strings, the
database stores the same strings, and policy files are written against them.
They are OpenSSL ``X509_NAME_oneline()`` output (``/DC=ch/DC=cern/CN=...``),
which changed in OpenSSL 3.0: ``/`` and ``+`` inside a value are now escaped
(``OU=http:\\/\\/www.usertrust.com``), OpenSSL 1.x printed them bare. A byte
comparison between an old stored string and what we print today can then
fail for the same certificate (docs/trust.md).

So every DN comparison in vmcatcher goes through :func:`dn_equal`, which
compares *structures* instead of bytes: both strings are parsed into RDNs of
``(attribute type, value bytes)``. Escaped ``\\/`` and ``\\+`` are literal
characters; an unescaped ``/`` or ``+`` separates RDNs / RDN members only when
an attribute assignment (``CN=``) follows -- otherwise it is part of the value,
as in ``http://``. ``\\xHH`` escapes are the value's raw bytes, so
``J\\xC3\\xBCrgen`` equals ``Jürgen``. Attribute types compare
case-insensitively, with the Globus spellings ``E``/``Email`` for
``emailAddress`` and ``USERID`` for ``UID``.

This is deliberately *not* a loose comparison: an escaped value that contains
``/CN=`` (one RDN) never equals the unescaped string that reads as two RDNs,
so a certificate with ``O=People\\/CN=Jane`` cannot pass for ``.../O=People/CN=Jane``.
"""

from __future__ import annotations

import re

__all__ = ["DNKey", "dn_equal", "dn_from_comma_form", "dn_key", "dn_unescaped", "slash_form"]

# One RDN member: (lower-cased attribute type, value bytes).
DNKey = tuple[tuple[tuple[str, bytes], ...], ...]

_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)=")
_HEX = re.compile(r"x([0-9A-Fa-f]{2})")
_TYPE_ALIASES = {"e": "emailaddress", "email": "emailaddress", "userid": "uid"}


def _canonical_type(name: str) -> str:
    lowered = name.lower()
    return _TYPE_ALIASES.get(lowered, lowered)


def dn_key(dn: str) -> DNKey | None:
    """Parse a slash-form DN into a comparable structure; ``None`` if it is not one.

    ``dn_key("/DC=org/CN=a+L=b") == ((("dc", b"org"),), (("cn", b"a"), ("l", b"b")))``.
    """
    if not isinstance(dn, str) or not dn.startswith("/"):
        return None
    rdns: list[tuple[tuple[str, bytes], ...]] = []
    members: list[tuple[str, bytes]] = []
    pos = 0
    length = len(dn)
    separator = "/"
    while pos < length:
        # dn[pos] is a separator ('/' or '+') followed by an attribute assignment.
        match = _ATTRIBUTE.match(dn, pos + 1)
        if match is None:
            return None
        if separator == "/" and members:
            rdns.append(tuple(members))
            members = []
        attribute = _canonical_type(match.group()[:-1])
        pos = match.end()
        value = bytearray()
        while pos < length:
            char = dn[pos]
            if char == "\\" and pos + 1 < length:
                following = dn[pos + 1]
                if following in "/+":
                    value += following.encode()
                    pos += 2
                    continue
                hexbyte = _HEX.match(dn, pos + 1)
                if hexbyte is not None:
                    value.append(int(hexbyte.group(1), 16))
                    pos = hexbyte.end()
                    continue
            if char in "/+" and _ATTRIBUTE.match(dn, pos + 1) is not None:
                break
            value += char.encode("utf-8", "surrogateescape")
            pos += 1
        members.append((attribute, bytes(value)))
        if pos < length:
            separator = dn[pos]
    if members:
        rdns.append(tuple(members))
    return tuple(rdns) if rdns else None


def dn_equal(a: str | None, b: str | None) -> bool:
    """True when two slash-form DNs name the same entity (see the module docstring).

    Identical strings are always equal; strings that do not parse as DNs are
    equal only if identical. ``None`` equals nothing.
    """
    if a is None or b is None:
        return False
    if a == b:
        return True
    key_a = dn_key(a)
    return key_a is not None and key_a == dn_key(b)


def dn_unescaped(dn: str) -> str:
    """The OpenSSL 1.x rendering of an OpenSSL 3 oneline DN (``\\/`` -> ``/``, ``\\+`` -> ``+``).

    Policy files (``.namespaces``, ``.signing_policy``) were written against
    that form, so their patterns are matched against it.
    """
    return dn.replace("\\/", "/").replace("\\+", "+")


_COMMA_SPECIALS = ',+"\\<>;#= '


def _split_unescaped(text: str, separator: str) -> list[str] | None:
    """Split *text* at *separator* characters not preceded by a backslash."""
    parts, current, pos = [], [], 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text):
                return None
            current.append(text[pos : pos + 2])
            pos += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        pos += 1
    parts.append("".join(current))
    return parts


def _unescape_comma_value(value: str) -> str | None:
    out, pos = [], 0
    while pos < len(value):
        char = value[pos]
        if char == "\\":
            following = value[pos + 1 : pos + 2]
            if following and following in _COMMA_SPECIALS:
                out.append(following)
                pos += 2
                continue
            return None  # hex escapes and the like: not worth guessing
        out.append(char)
        pos += 1
    return "".join(out)


def dn_from_comma_form(text: str) -> str | None:
    """The slash form of a DN as OpenSSL 3 prints it by default, or ``None``.

    ``openssl x509 -noout -subject`` prints ``DC = org, DC = qa-grid, CN = QA Signer``
    (most significant RDN first, like the slash form; ``+`` joins the members of a
    multi-valued RDN). That becomes ``/DC=org/DC=qa-grid/CN=QA Signer``; ``/`` and ``+``
    inside a value are escaped as OpenSSL 3 does (``\\/``, ``\\+``).
    """
    if not isinstance(text, str) or text.startswith("/") or "=" not in text:
        return None
    if re.search(r"/[A-Za-z][A-Za-z0-9-]*=", text):
        return None  # a slash form without its leading '/': ambiguous, refuse
    rdns = _split_unescaped(text, ",")
    if rdns is None:
        return None
    out = []
    for rdn in rdns:
        members = _split_unescaped(rdn, "+")
        if members is None:
            return None
        rendered = []
        for member in members:
            attribute, equals, raw = member.partition("=")
            attribute = attribute.strip()
            value = _unescape_comma_value(raw.strip())
            if not equals or value is None or not value:
                return None
            if _ATTRIBUTE.fullmatch(f"{attribute}=") is None:
                return None
            escaped = value.replace("/", "\\/").replace("+", "\\+")
            rendered.append(f"{attribute}={escaped}")
        out.append("/" + "+".join(rendered))
    slash = "".join(out)
    return slash if dn_key(slash) is not None else None


def slash_form(text: str) -> str | None:
    """*text* if it is a slash-form DN, its slash form if it is OpenSSL 3's default form.

    ``None`` when it is neither (empty, ``CN=x`` alone is accepted as ``/CN=x``).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    if text.startswith("/"):
        return text if dn_key(text) is not None else None
    return dn_from_comma_form(text)
