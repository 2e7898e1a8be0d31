"""The test gate is deterministic: property tests draw the same examples on every run.

``make test`` must give the same verdict twice on the same commit
(tests/support/fuzzing.py); these tests fail if the ``ci`` profile stops
deriving its examples from the test itself or starts writing an example
database into the working tree.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import fuzzing

REPO = Path(__file__).resolve().parents[1]


def _draw_twice() -> tuple[list[str], list[str]]:
    runs: list[list[str]] = []

    def collect() -> list[str]:
        drawn: list[str] = []

        @fuzzing.examples(50)
        @given(st.text(max_size=20))
        def property_under_test(text: str) -> None:
            drawn.append(text)

        property_under_test()
        return drawn

    runs.append(collect())
    runs.append(collect())
    return runs[0], runs[1]


def test_the_gate_profile_is_active_and_fixed() -> None:
    assert fuzzing.active_profile() == fuzzing.CI
    assert settings.default.derandomize is True
    assert settings.default.database is None


def test_two_runs_draw_the_same_examples() -> None:
    first, second = _draw_twice()
    assert len(first) >= 10
    assert first == second


def test_nothing_written_into_the_tree() -> None:
    from hypothesis.configuration import storage_directory

    _draw_twice()
    home = Path(storage_directory().home_directory).resolve()
    assert not home.is_relative_to(REPO), f"hypothesis writes into the working tree: {home}"
