"""Namespace constraints of Grid CAs: parse `*.namespaces` / `*.signing_policy`, enforce them.

Why: an IGTF CA directory trusts many CAs, and each may only certify names in
its own namespace (``/DC=ch/DC=cern/...`` for CERN, ...). OpenSSL knows
nothing about these files, so without this module any trusted CA could mint a
certificate carrying another community's endorser DN. The original
(smimeX509validation) enforced them loosely: unanchored ``re.match``,
``.signing_policy`` globs turned into regexes without escaping (``.`` matching
anything), no ``DENY``, no ``SELF``. Here:

* ``.namespaces`` (IGTF): ``TO Issuer "<CA DN>" PERMIT|DENY Subject "<regex>"``,
  ``TO Issuer SELF ...`` (the CA of the file itself), backslash continuation
  lines, ``#`` comments, keywords case-insensitive. A subject passes when it
  matches at least one PERMIT and no DENY of its issuer. Regexes must match
  the *whole* DN.
* ``.signing_policy`` (Globus EACL): ``access_id_CA X509 '<CA DN>'`` followed
  by ``cond_subjects globus '"<glob>" "<glob>"'``; ``*`` is the only wildcard,
  everything else is literal, whole-DN match. ``pos_rights`` lines are
  accepted and ignored, as everywhere else in the Grid world.
* A CA with rules in both files must satisfy both; a CA with rules in neither
  may not certify anything (fail closed; the original did not load such CAs).
* Patterns are matched against the OpenSSL 1.x rendering of the DN (no
  ``\\/`` escapes): that is what the policy files were written for.

Parsing is pure text work; unusable lines are skipped and reported in
``problems`` (the CA then simply gets fewer permits: fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmcatcher.errors import NamespaceError
from vmcatcher.trust.dn import DNKey, dn_key, dn_unescaped

__all__ = [
    "CaPolicy",
    "NamespaceRule",
    "PolicySet",
    "glob_to_regex",
    "parse_namespaces",
    "parse_signing_policy",
    "tokenize",
]

SELF = None  # issuer marker for ``TO Issuer SELF`` rules

_TOKEN = re.compile(
    r"""\s*(?:
        "(?P<dq>(?:[^"\\]|\\.)*)"   # double-quoted, backslash escapes \" and \\
      | '(?P<sq>[^']*)'             # single-quoted, literal
      | (?P<comment>\#.*)           # comment to end of line
      | (?P<word>[^\s"'#]+)         # bare word
    )""",
    re.VERBOSE,
)
_DQ_ESCAPE = re.compile(r"\\([\"\\])")
_BLANK_TO_END = re.compile(r"\s*\Z")


def tokenize(line: str) -> list[str] | None:
    """Split one logical line into tokens, shell-style; ``None`` if quotes are unbalanced."""
    tokens: list[str] = []
    pos = 0
    length = len(line)
    while pos < length:
        if _BLANK_TO_END.match(line, pos):
            break
        match = _TOKEN.match(line, pos)
        if match is None or match.end() == pos:
            return None
        pos = match.end()
        if match.group("comment") is not None:
            break
        if match.group("dq") is not None:
            tokens.append(_DQ_ESCAPE.sub(r"\1", match.group("dq")))
        elif match.group("sq") is not None:
            tokens.append(match.group("sq"))
        else:
            tokens.append(match.group("word"))
    return tokens


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Join backslash-continued lines; yield (first line number, logical line)."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\") and not stripped.lstrip().startswith("#"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(raw)
        yield start, " ".join(buffer)
        buffer = []
    if buffer:
        yield start, " ".join(buffer)


def parse_namespaces(
    text: str, source: str = "<namespaces>"
) -> tuple[list[tuple[str | None, bool, str]], list[str]]:
    """Parse an IGTF ``.namespaces`` file.

    Returns ``(rules, problems)``; each rule is ``(issuer DN or None for SELF,
    permit?, regex)``.
    """
    rules: list[tuple[str | None, bool, str]] = []
    problems: list[str] = []
    for number, line in _logical_lines(text):
        tokens = tokenize(line)
        if tokens is None:
            problems.append(f"{source}:{number}: unbalanced quotes")
            continue
        if not tokens:
            continue
        words = [t.upper() for t in tokens]
        if (
            len(tokens) == 6
            and words[0] == "TO"
            and words[1] == "ISSUER"
            and words[3] in ("PERMIT", "DENY")
            and words[4] == "SUBJECT"
        ):
            issuer: str | None = tokens[2]
            if words[2] == "SELF" and not tokens[2].startswith("/"):
                issuer = SELF
            rules.append((issuer, words[3] == "PERMIT", tokens[5]))
        else:
            problems.append(
                f"{source}:{number}: not a 'TO Issuer ... PERMIT|DENY Subject ...' rule"
            )
    return rules, problems


def parse_signing_policy(
    text: str, source: str = "<signing_policy>"
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Parse a Globus ``.signing_policy`` file.

    Returns ``(entries, problems)``; each entry is ``(CA DN, [glob, ...])``.
    """
    entries: list[tuple[str, list[str]]] = []
    problems: list[str] = []
    current: tuple[str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        tokens = tokenize(line)
        if tokens is None:
            problems.append(f"{source}:{number}: unbalanced quotes")
            continue
        if not tokens:
            continue
        keyword = tokens[0].lower()
        if keyword == "access_id_ca":
            if len(tokens) != 3 or tokens[1].upper() != "X509":
                problems.append(f"{source}:{number}: expected access_id_CA X509 '<DN>'")
                current = None
                continue
            current = (tokens[2], [])
            entries.append(current)
        elif keyword == "cond_subjects":
            if current is None:
                problems.append(f"{source}:{number}: cond_subjects without access_id_CA")
                continue
            if len(tokens) != 3 or tokens[1].lower() != "globus":
                problems.append(f"{source}:{number}: expected cond_subjects globus '\"<glob>\"'")
                continue
            inner = tokens[2]
            patterns = tokenize(inner) if ('"' in inner or "'" in inner) else [inner]
            if patterns is None:
                problems.append(f"{source}:{number}: unbalanced quotes in cond_subjects")
                continue
            current[1].extend(p for p in patterns if p)
        elif keyword in ("pos_rights", "neg_rights"):
            continue
        else:
            problems.append(f"{source}:{number}: unknown statement {tokens[0]!r}")
    return entries, problems


def glob_to_regex(glob: str) -> str:
    """Globus glob -> anchored-by-fullmatch regex: ``*`` is any text, all else literal."""
    return ".*".join(re.escape(part) for part in glob.split("*"))


@dataclass(frozen=True)
class NamespaceRule:
    """One compiled ``.namespaces`` rule."""

    permit: bool
    pattern: re.Pattern[str]
    source: str


@dataclass
class CaPolicy:
    """Everything the policy files say about one CA."""

    dn: str
    namespaces: list[NamespaceRule] = field(default_factory=list)
    signing_policy: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def violation(self, subject: str) -> str | None:
        """Why ``subject`` may not be certified by this CA, or ``None`` if it may."""
        if not self.namespaces and not self.signing_policy:
            return "it has no namespace policy (.namespaces or .signing_policy)"
        target = dn_unescaped(subject)
        if self.namespaces:
            for rule in self.namespaces:
                if not rule.permit and rule.pattern.fullmatch(target):
                    return f"it is denied by {rule.source}"
            if not any(r.permit and r.pattern.fullmatch(target) for r in self.namespaces):
                sources = sorted({r.source for r in self.namespaces})
                return f"no PERMIT rule matches in {', '.join(sources)}"
        if self.signing_policy and not any(p.fullmatch(target) for p, _ in self.signing_policy):
            sources = sorted({s for _, s in self.signing_policy})
            return f"no cond_subjects pattern matches in {', '.join(sources)}"
        return None


def _key(dn: str) -> DNKey | tuple[str, str]:
    return dn_key(dn) or ("unparsed", dn)


class PolicySet:
    """The namespace policies of a CA directory, keyed by CA DN."""

    def __init__(self) -> None:
        self._by_ca: dict[object, CaPolicy] = {}
        self.problems: list[str] = []

    def _entry(self, dn: str) -> CaPolicy:
        key = _key(dn)
        policy = self._by_ca.get(key)
        if policy is None:
            policy = self._by_ca[key] = CaPolicy(dn)
        return policy

    def _compile(self, regex: str, source: str) -> re.Pattern[str] | None:
        try:
            return re.compile(regex)
        except (re.error, RecursionError, OverflowError) as error:
            self.problems.append(f"{source}: invalid pattern {regex!r}: {error}")
            return None

    def add_namespaces(self, text: str, source: str, self_dn: str | None = None) -> None:
        """Add the rules of one ``.namespaces`` file; ``self_dn`` resolves ``SELF``."""
        rules, problems = parse_namespaces(text, source)
        self.problems.extend(problems)
        for issuer, permit, regex in rules:
            if issuer is SELF:
                if self_dn is None:
                    self.problems.append(f"{source}: 'TO Issuer SELF' but no CA certificate")
                    continue
                issuer = self_dn
            pattern = self._compile(regex, source)
            if pattern is not None:
                self._entry(issuer).namespaces.append(NamespaceRule(permit, pattern, source))

    def add_signing_policy(self, text: str, source: str) -> None:
        """Add the entries of one ``.signing_policy`` file."""
        entries, problems = parse_signing_policy(text, source)
        self.problems.extend(problems)
        for ca_dn, globs in entries:
            policy = self._entry(ca_dn)
            for glob in globs:
                pattern = self._compile(glob_to_regex(glob), source)
                if pattern is not None:
                    policy.signing_policy.append((pattern, source))

    def get(self, ca_dn: str) -> CaPolicy | None:
        return self._by_ca.get(_key(ca_dn))

    def __len__(self) -> int:
        return len(self._by_ca)

    def check(self, ca_dn: str, subject: str) -> None:
        """Raise :class:`NamespaceError` unless CA ``ca_dn`` may certify ``subject``."""
        policy = self.get(ca_dn) or CaPolicy(ca_dn)
        reason = policy.violation(subject)
        if reason is not None:
            raise NamespaceError(
                f"certificate '{subject}' is outside the namespace of CA '{ca_dn}': {reason}"
            )
