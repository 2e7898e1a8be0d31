"""Parsing and enforcing .namespaces / .signing_policy (pure text, no certificates)."""

from __future__ import annotations

import pytest

from vmcatcher.errors import NamespaceError
from vmcatcher.trust.policy import (
    PolicySet,
    glob_to_regex,
    parse_namespaces,
    parse_signing_policy,
    tokenize,
)

CA = "/DC=org/DC=example-grid/CN=Example Grid Test CA"

IGTF_NAMESPACES = f"""\
##############################################################################
#NAMESPACES-VERSION: 1.0
#
# @(#)ExampleGridTestCA.namespaces
#
TO Issuer "{CA}" \\
  PERMIT Subject "/DC=org/DC=example-grid/.*"

TO Issuer "{CA}" \\
  DENY Subject "/DC=org/DC=example-grid/O=Banned/.*"
"""

GLOBUS_SIGNING_POLICY = f"""\
# EACL for the example grid
 access_id_CA      X509         '{CA}'
 pos_rights        globus        CA:sign
 cond_subjects     globus       '"/DC=org/DC=example-grid/*" "/C=XX/O=Example Grid/*"'
"""


def test_tokenize():
    assert tokenize('TO Issuer "/C=X/CN=a b" PERMIT # trailing') == [
        "TO",
        "Issuer",
        "/C=X/CN=a b",
        "PERMIT",
    ]
    assert tokenize('cond_subjects globus \'"/a/*" "/b/*"\'') == [
        "cond_subjects",
        "globus",
        '"/a/*" "/b/*"',
    ]
    assert tokenize('"a \\" b"') == ['a " b']
    assert tokenize('"unbalanced') is None
    assert tokenize("   ") == []


def test_parse_namespaces_igtf_file():
    rules, problems = parse_namespaces(IGTF_NAMESPACES)
    assert problems == []
    assert rules == [
        (CA, True, "/DC=org/DC=example-grid/.*"),
        (CA, False, "/DC=org/DC=example-grid/O=Banned/.*"),
    ]


def test_parse_namespaces_keywords_case_insensitive_and_self():
    rules, problems = parse_namespaces('to issuer SELF permit subject "/C=X/.*"\n')
    assert problems == []
    assert rules == [(None, True, "/C=X/.*")]


def test_parse_namespaces_reports_bad_lines():
    rules, problems = parse_namespaces('TO Issuer "/C=X" ALLOW Subject "/C=X/.*"\nTO "x\n')
    assert rules == []
    assert len(problems) == 2
    assert "<namespaces>:1" in problems[0]
    assert "unbalanced" in problems[1]


def test_parse_signing_policy_globus_file():
    entries, problems = parse_signing_policy(GLOBUS_SIGNING_POLICY)
    assert problems == []
    assert entries == [(CA, ["/DC=org/DC=example-grid/*", "/C=XX/O=Example Grid/*"])]


def test_parse_signing_policy_several_cas_and_errors():
    text = (
        "access_id_CA X509 '/C=A/CN=A'\ncond_subjects globus '\"/C=A/*\"'\n"
        "access_id_CA X509 '/C=B/CN=B'\ncond_subjects globus '\"/C=B/*\"'\n"
        "cond_subjects nonsense\nfrobnicate\n"
    )
    entries, problems = parse_signing_policy(text)
    assert entries == [("/C=A/CN=A", ["/C=A/*"]), ("/C=B/CN=B", ["/C=B/*"])]
    assert len(problems) == 2


def test_glob_escapes_everything_but_star():
    regex = glob_to_regex("/DC=org/DC=example.grid/*")
    assert regex == r"/DC=org/DC=example\.grid/.*"


def _policies(namespaces: str | None = None, signing_policy: str | None = None) -> PolicySet:
    policies = PolicySet()
    if namespaces is not None:
        policies.add_namespaces(namespaces, "test.namespaces")
    if signing_policy is not None:
        policies.add_signing_policy(signing_policy, "test.signing_policy")
    return policies


def test_permit_and_deny():
    policies = _policies(IGTF_NAMESPACES)
    policies.check(CA, "/DC=org/DC=example-grid/O=People/CN=Jane")
    with pytest.raises(NamespaceError, match=r"denied by test\.namespaces"):
        policies.check(CA, "/DC=org/DC=example-grid/O=Banned/CN=Joe")
    with pytest.raises(NamespaceError, match="no PERMIT rule matches"):
        policies.check(CA, "/DC=net/DC=elsewhere/CN=x")


def test_patterns_are_anchored_at_both_ends():
    policies = _policies('TO Issuer "/C=X/CN=CA" PERMIT Subject "/C=X/O=A"\n')
    policies.check("/C=X/CN=CA", "/C=X/O=A")
    with pytest.raises(NamespaceError):
        policies.check("/C=X/CN=CA", "/C=X/O=A/CN=longer")  # re.match would accept this
    with pytest.raises(NamespaceError):
        policies.check("/C=X/CN=CA", "/C=Y/C=X/O=A")


def test_signing_policy_dot_is_literal():
    policies = _policies(signing_policy=GLOBUS_SIGNING_POLICY)
    policies.check(CA, "/DC=org/DC=example-grid/CN=x")
    policies.check(CA, "/C=XX/O=Example Grid/CN=y")
    with pytest.raises(NamespaceError):
        policies.check(CA, "/DC=org/DC=exampleXgrid/CN=x")


def test_both_files_must_permit():
    policies = _policies(IGTF_NAMESPACES, GLOBUS_SIGNING_POLICY)
    policies.check(CA, "/DC=org/DC=example-grid/CN=x")
    with pytest.raises(NamespaceError, match="no PERMIT"):
        policies.check(CA, "/C=XX/O=Example Grid/CN=y")  # signing_policy yes, namespaces no


def test_unknown_ca_has_no_policy():
    with pytest.raises(NamespaceError, match="has no namespace policy"):
        _policies(IGTF_NAMESPACES).check("/C=ZZ/CN=Other", "/C=ZZ/CN=x")


def test_ca_lookup_tolerates_openssl3_escaping():
    policies = _policies('TO Issuer "/O=http://ca.org/CN=CA" PERMIT Subject "/O=x/.*"\n')
    policies.check("/O=http:\\/\\/ca.org/CN=CA", "/O=x/CN=y")


def test_subjects_match_in_unescaped_form():
    policies = _policies(f'TO Issuer "{CA}" PERMIT Subject "/OU=http://x.org/.*"\n')
    policies.check(CA, "/OU=http:\\/\\/x.org/CN=y")


def test_self_needs_a_ca():
    policies = PolicySet()
    policies.add_namespaces('TO Issuer SELF PERMIT Subject "/C=X/.*"', "h.namespaces")
    assert any("SELF" in p for p in policies.problems)
    policies.add_namespaces('TO Issuer SELF PERMIT Subject "/C=X/.*"', "h.namespaces", "/C=X/CN=CA")
    policies.check("/C=X/CN=CA", "/C=X/CN=y")


def test_invalid_regex_is_a_problem_not_a_crash():
    policies = _policies(f'TO Issuer "{CA}" PERMIT Subject "/C=X/(unclosed"\n')
    assert any("invalid pattern" in p for p in policies.problems)
    with pytest.raises(NamespaceError):
        policies.check(CA, "/C=X/(unclosed")
