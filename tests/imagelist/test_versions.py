"""compare_versions: the spec 6.8 examples and its algebra."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from vmcatcher.versions import compare_versions

# Verified examples from behaviour-spec 6.8: (old, new) -> result.
SPEC_EXAMPLES = [
    ("1.2", "1.10", 1),
    ("1.10", "1.2", -1),
    ("1.0", "1.0.1", 1),
    ("1.0.0", "1.0", -1),
    ("1.0a", "1.0b", 1),
    ("2", "1.9", -1),
    ("1.0", "1.0-rc1", 1),
    ("1.a", "1.1", 1),
    ("20140101", "20140102", 1),
]


@pytest.mark.parametrize(("old", "new", "expected"), SPEC_EXAMPLES)
def test_spec_examples(old, new, expected):
    assert compare_versions(old, new) == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("3.0.1", "3.0.1", 0),
        ("", "", 0),
        ("", "1", 1),
        ("01", "1", 0),  # numerically equal tokens
        ("1.0b", "1.0a", -1),
        ("20150618211400", "20150618211401", 1),
        ("1-2", "1.2", 1),  # delimiters compare lexically: '-' < '.'
        ("1" + "0" * 5000, "2" + "0" * 5000, 1),  # no int() digit limit
        ("a", "b", 1),
        ("b", "a", -1),
    ],
)
def test_more_cases(old, new, expected):
    assert compare_versions(old, new) == expected


_versions = st.text(alphabet="0123456789abc.-,/rc", max_size=12) | st.text(max_size=12)


@examples(1000)
@given(_versions, _versions)
def test_antisymmetric_and_total(a, b):
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions(a, a) == 0
    assert compare_versions(a, b) in (-1, 0, 1)
